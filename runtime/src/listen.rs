//! Per-shard SO_REUSEPORT listening sockets that refuse to share a port another process already serves.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Why a port could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Someone (maybe another ringgate) already listens there.
    #[error("address {0} is already in use by another process; refusing to share it")]
    InUse(SocketAddr),
    /// Any other socket error.
    #[error("cannot listen on {addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
}

/// Bind `count` listening sockets on `addr`, one per shard, sharing the port through SO_REUSEPORT.
///
/// SO_REUSEPORT would silently let a second instance join the port, so a probe socket without it
/// is bound first: it fails with EADDRINUSE when anyone else listens there. Port 0 is resolved by
/// the probe so that every shard ends up on the same port.
pub fn bind_shared(addr: SocketAddr, count: usize, backlog: i32) -> Result<Vec<TcpListener>, BindError> {
    let io_err = |source| BindError::Io { addr, source };
    let probe = new_socket(addr).map_err(io_err)?;
    match probe.bind(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(BindError::InUse(addr)),
        Err(e) => return Err(io_err(e)),
    }
    let bound = probe
        .local_addr()
        .map_err(io_err)?
        .as_socket()
        .ok_or_else(|| io_err(io::Error::other("not an inet socket")))?;
    drop(probe);

    let mut out = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let s = new_socket(bound).map_err(io_err)?;
        s.set_reuse_port(true).map_err(io_err)?;
        match s.bind(&bound.into()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(BindError::InUse(bound)),
            Err(e) => return Err(io_err(e)),
        }
        s.listen(backlog).map_err(io_err)?;
        out.push(s.into());
    }
    Ok(out)
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    // Accepted sockets inherit TCP_NODELAY on Linux; Nagle stalls small SSE writes by 40 ms.
    s.set_nodelay(true)?;
    s.set_cloexec(true)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gives_all_shards_one_port() {
        let ls = bind_shared("127.0.0.1:0".parse().unwrap(), 3, 128).unwrap();
        let ports: Vec<u16> = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
        assert!(ports[0] != 0);
        assert!(ports.iter().all(|p| *p == ports[0]));
    }

    #[test]
    fn second_instance_is_refused() {
        let first = bind_shared("127.0.0.1:0".parse().unwrap(), 2, 128).unwrap();
        let addr = first[0].local_addr().unwrap();
        match bind_shared(addr, 2, 128) {
            Err(BindError::InUse(a)) => assert_eq!(a, addr),
            other => panic!("expected InUse, got {other:?}"),
        }
    }

    #[test]
    fn plain_listener_is_detected_too() {
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = plain.local_addr().unwrap();
        assert!(matches!(bind_shared(addr, 1, 128), Err(BindError::InUse(_))));
    }
}
