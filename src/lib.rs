//! ringgate: an agent gateway (MCP, A2A, LLM, HTTP) on a thread-per-core io_uring data plane.

pub mod admin;
pub mod auth;
pub mod config;
pub mod digest;
pub mod error;
pub mod gateway;
pub mod http;
pub mod mcp;
pub mod observe;
pub mod proxy;
pub mod ratelimit;
pub mod tls;
