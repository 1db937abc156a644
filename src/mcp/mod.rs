//! MCP gateway: many MCP servers (targets) federated behind one Streamable HTTP endpoint (and the legacy HTTP+SSE one), for clients of both protocol eras.

pub mod access;
pub mod catalog;
pub mod cursor;
pub mod demo;
pub mod era;
pub mod http_client;
pub mod hub;
pub mod jsonrpc;
pub mod legacy_sse;
pub mod merge;
pub mod names;
pub mod plan;
pub mod poison;
pub mod raw;
pub mod relay;
pub mod resume;
pub mod seal;
pub mod serve;
pub mod session;
pub mod sse;
pub mod sse_client;
pub mod stdio;
pub mod stdio_io;
pub mod subscriptions;
pub mod toolguard;
pub mod waiters;
