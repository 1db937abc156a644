//! Owned-buffer I/O helpers: append reads into a `BytesMut`, probe whether a pooled socket is still open.

use std::io;
use std::os::fd::AsRawFd;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;

/// Read more bytes, appending to `buf` (growing it so at least `min_spare` bytes fit).
pub async fn read_more<S: AsyncReadRent>(
    s: &mut S,
    mut buf: BytesMut,
    min_spare: usize,
) -> (io::Result<usize>, BytesMut) {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let len = buf.len();
    let cap = buf.capacity();
    let (res, slice) = s.read(buf.slice_mut(len..cap)).await;
    (res, slice.into_inner())
}

/// Whether a pooled, idle socket is still usable: no EOF or unexpected bytes waiting.
///
/// A non-blocking `MSG_PEEK` costs one syscall and catches the usual stale-pool race (the
/// upstream closed an idle keep-alive connection) before a request is written into it.
pub fn is_idle_and_open<S: AsRawFd>(s: &S) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: recv on a valid fd into a 1-byte stack buffer we own; MSG_PEEK leaves data in place.
    let n = unsafe { libc::recv(s.as_raw_fd(), b.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    n < 0 && matches!(io::Error::last_os_error().raw_os_error(), Some(libc::EAGAIN))
}

/// A connection (plain or TLS) with its read buffer. Reads append to `buf`; a read cancelled by a timeout leaves
/// `buf` empty, which is fine because a timed-out connection is never used again.
pub struct Peer {
    /// The connection.
    pub io: crate::tls::Stream,
    /// Bytes read and not yet consumed.
    pub buf: BytesMut,
    out: Vec<u8>,
}

impl Peer {
    /// Wrap a connection.
    pub fn new(io: crate::tls::Stream, cap: usize) -> Self {
        Peer { io, buf: BytesMut::with_capacity(cap), out: Vec::with_capacity(1024) }
    }

    /// Read more into `buf`; `Ok(0)` is end of stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        let b = std::mem::take(&mut self.buf);
        let (r, b) = read_more(&mut self.io, b, 8 * 1024).await;
        self.buf = b;
        r
    }

    /// A cleared scratch buffer for building a head; give it back with [`Peer::send_out`].
    pub fn take_out(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.out);
        v.clear();
        v
    }

    /// Write `out` fully and keep its allocation for next time.
    pub async fn send_out(&mut self, out: Vec<u8>) -> io::Result<()> {
        use monoio::io::AsyncWriteRentExt;
        let (r, v) = self.io.write_all(out).await;
        self.out = v;
        r.map(|_| ())
    }

    /// Write `data` fully.
    pub async fn send(&mut self, data: bytes::Bytes) -> io::Result<()> {
        use monoio::io::AsyncWriteRentExt;
        self.io.write_all(data).await.0.map(|_| ())
    }
}
