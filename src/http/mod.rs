//! HTTP/1.1: the pure codec and the few I/O helpers the proxy needs on monoio's owned-buffer API.

pub mod codec;
pub mod io;
pub mod url;
