//! Load tools for ringgate's benchmarks: rg-fixture (fast upstreams) and rg-load (an MCP-aware load generator), and their pure parts.

pub mod args;
pub mod check;
pub mod client;
pub mod fixture;
pub mod hist;
pub mod http;
pub mod load;
pub mod mcp;
pub mod schedule;
