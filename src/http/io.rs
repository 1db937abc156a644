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

/// Read room after a read of `n` bytes with `spare` of room: doubled (up to [`SPARE`]) when the read
/// filled it, since more is likely waiting; never shrinks, so the request path always reads [`SPARE`].
fn next_spare(spare: usize, n: usize) -> usize {
    if n >= spare && spare < SPARE {
        (spare * 2).min(SPARE)
    } else {
        spare
    }
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
    /// Room [`Peer::fill`] makes before a read.
    spare: usize,
    /// The connection mostly waits ([`Peer::new_small`], [`Peer::park`]): it holds no buffers
    /// while it does.
    waits: bool,
}

/// Read room of a request-path connection, and the most a small-start connection grows to.
const SPARE: usize = 8 * 1024;

/// Read room of a connection that mostly waits (a long-lived stream): a read in flight holds its
/// buffer for as long as it waits, so thousands of open streams would pin a full [`SPARE`] each.
pub const SMALL_SPARE: usize = 1024;

impl Peer {
    /// Wrap a connection.
    pub fn new(io: crate::tls::Stream, cap: usize) -> Self {
        Peer { io, buf: BytesMut::with_capacity(cap), out: Vec::with_capacity(1024), spare: SPARE, waits: false }
    }

    /// Wrap a connection that will mostly wait for small messages (an upstream event stream): reads
    /// start with [`SMALL_SPARE`] of room and grow towards the request path's as reads come back full.
    pub fn new_small(io: crate::tls::Stream) -> Self {
        Peer { io, buf: BytesMut::new(), out: Vec::new(), spare: SMALL_SPARE, waits: true }
    }

    /// From now on this connection only waits (its response is a long-lived stream, or the client is
    /// not expected to send more): give back an empty read buffer and the write scratch buffer, and
    /// read with [`SMALL_SPARE`] of room.
    pub fn park(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
        self.out = Vec::new();
        self.spare = SMALL_SPARE;
        self.waits = true;
    }

    /// Read more into `buf`; `Ok(0)` is end of stream. A waiting connection with nothing
    /// buffered first waits until its socket is readable, so no buffer is lent to a read that
    /// may wait for minutes (an idle event stream).
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.waits && self.buf.is_empty() {
            // what is left of the last read's allocation is released too
            self.buf = BytesMut::new();
            // TLS may hold decrypted bytes already: only a plain socket's readiness says it all.
            // Not relaxed: the epoll driver's remembered readiness may be stale, and a read
            // started on it would wait holding its buffer
            if let crate::tls::Stream::Plain(s) = &self.io {
                s.readable(false).await?;
            }
        }
        let b = std::mem::take(&mut self.buf);
        let (r, b) = read_more(&mut self.io, b, self.spare).await;
        self.buf = b;
        if let Ok(n) = r {
            self.spare = next_spare(self.spare, n);
        }
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
        if !self.waits {
            self.out = v;
        }
        r.map(|_| ())
    }

    /// Write `data` fully.
    pub async fn send(&mut self, data: bytes::Bytes) -> io::Result<()> {
        use monoio::io::AsyncWriteRentExt;
        self.io.write_all(data).await.0.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn small_spare_grows_only_when_reads_fill_it() {
        assert_eq!(next_spare(SMALL_SPARE, 200), SMALL_SPARE);
        assert_eq!(next_spare(SMALL_SPARE, SMALL_SPARE), 2 * SMALL_SPARE);
        let mut s = SMALL_SPARE;
        for _ in 0..10 {
            s = next_spare(s, s);
        }
        assert_eq!(s, SPARE);
        // the request path's room is the cap: a full read does not grow it
        assert_eq!(next_spare(SPARE, 64 * 1024), SPARE);
    }

    #[test]
    fn small_peer_reads_a_message_bigger_than_its_room_and_grows() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().build().unwrap();
        rt.block_on(async {
            use monoio::io::AsyncWriteRentExt;
            let l = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let msg: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
            let want = msg.clone();
            let writer = monoio::spawn(async move {
                let mut c = monoio::net::TcpStream::connect(addr).await.unwrap();
                c.write_all(msg).await.0.unwrap();
            });
            let (s, _) = l.accept().await.unwrap();
            let mut p = Peer::new_small(crate::tls::Stream::Plain(s));
            assert_eq!(p.buf.capacity(), 0, "nothing allocated before the first read");
            let mut got = Vec::new();
            loop {
                let n = p.fill().await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&p.buf.split());
            }
            writer.await;
            assert_eq!(got, want);
            assert_eq!(p.spare, SPARE, "full reads grew the room");
        });
    }

    #[test]
    fn a_parked_peer_reads_what_arrives_after_it_began_waiting() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().unwrap();
        rt.block_on(async {
            use monoio::io::AsyncWriteRentExt;
            let l = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let c = monoio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            let mut p = Peer::new(crate::tls::Stream::Plain(s), 8 * 1024);
            p.park();
            assert_eq!(p.take_out().capacity(), 0, "the write scratch buffer is given back");
            // the writer runs only once the reader waits on its silent socket
            let writer = monoio::spawn(async move {
                let mut c = c;
                c.write_all(b"event".to_vec()).await.0.unwrap();
                c
            });
            let wait = Duration::from_secs(10);
            assert_eq!(monoio::time::timeout(wait, p.fill()).await.unwrap().unwrap(), 5);
            assert_eq!(&p.buf.split()[..], b"event");
            drop(writer.await);
            assert_eq!(monoio::time::timeout(wait, p.fill()).await.unwrap().unwrap(), 0, "end of stream");
            let out = p.take_out();
            p.send_out(out).await.ok();
            assert_eq!(p.take_out().capacity(), 0, "a parked peer keeps no write buffer");
        });
    }

    #[test]
    fn parking_releases_an_empty_buffer_only() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().build().unwrap();
        rt.block_on(async {
            let l = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let c = monoio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let mut p = Peer::new(crate::tls::Stream::Plain(c), 8 * 1024);
            p.buf.extend_from_slice(b"pipelined");
            p.park();
            assert_eq!(&p.buf[..], b"pipelined", "unread bytes are kept");
            p.buf.clear();
            p.park();
            assert_eq!(p.buf.capacity(), 0);
            assert_eq!(p.spare, SMALL_SPARE);
        });
    }
}
