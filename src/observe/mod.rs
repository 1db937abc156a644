//! Observability: metric names and per-shard counters, and the access log.

pub mod access_log;
pub mod metrics;
