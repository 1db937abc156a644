//! Thread-per-core shards for ringgate: CPU discovery, pinned monoio runtimes with driver fallback, SO_REUSEPORT listeners, shard-local signals and the two-phase swap.

pub mod cpus;
pub mod listen;
pub mod shard;
pub mod signal;
pub mod swap;

pub use listen::{bind_shared, BindError};
pub use shard::{spawn_shards, DriverChoice, DriverKind, ShardHandle, ShardSpawnError};
pub use signal::Signal;
