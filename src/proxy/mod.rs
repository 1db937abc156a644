//! The HTTP data plane on each shard: accept, route, apply policies, forward, answer.

pub mod admission;
pub mod conn;
pub mod ext_authz;
pub mod policy;
pub mod route;
pub mod shard;
pub mod transform;
pub mod upstream;
