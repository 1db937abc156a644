//! Configuration: the YAML model, loading with `$VAR` expansion and located errors, compilation into a shard-ready snapshot.

pub mod compile;
pub mod dns;
pub mod duration;
pub mod gateways;
pub mod live;
pub mod load;
pub mod mcp;
pub mod model;
pub mod security;
pub mod targeted;
pub mod tls;

pub use compile::Snapshot;
pub use load::{load_file, parse_str, ConfigError};
pub use model::Config;
