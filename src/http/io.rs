//! Owned-buffer I/O helpers: append reads into a `BytesMut`, write a head and a body in one `writev`, probe whether a pooled socket is still open.

use std::io;
use std::os::fd::AsRawFd;

use bytes::{Bytes, BytesMut};
use monoio::buf::{IoBufMut, IoVecBuf};
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
    /// Size of the read buffer's allocation, taken back whole once everything read was consumed.
    cap: usize,
}

/// Read room of a request-path connection, and the most a small-start connection grows to.
const SPARE: usize = 8 * 1024;

/// Read room of a connection that mostly waits (a long-lived stream): a read in flight holds its
/// buffer for as long as it waits, so thousands of open streams would pin a full [`SPARE`] each.
pub const SMALL_SPARE: usize = 1024;

impl Peer {
    /// Wrap a connection.
    pub fn new(io: crate::tls::Stream, cap: usize) -> Self {
        Peer { io, buf: BytesMut::with_capacity(cap), out: Vec::with_capacity(1024), spare: SPARE, waits: false, cap }
    }

    /// Wrap a connection with the buffers of an earlier one ([`Peer::into_parts`]); `buf` must
    /// hold no unread bytes.
    pub fn with_buffers(io: crate::tls::Stream, buf: BytesMut, out: Vec<u8>, cap: usize) -> Self {
        debug_assert!(buf.is_empty());
        Peer { io, buf, out, spare: SPARE, waits: false, cap }
    }

    /// The connection, its read buffer and its scratch buffer.
    pub fn into_parts(self) -> (crate::tls::Stream, BytesMut, Vec<u8>) {
        (self.io, self.buf, self.out)
    }

    /// Wrap a connection that will mostly wait for small messages (an upstream event stream): reads
    /// start with [`SMALL_SPARE`] of room and grow towards the request path's as reads come back full.
    pub fn new_small(io: crate::tls::Stream) -> Self {
        Peer { io, buf: BytesMut::new(), out: Vec::new(), spare: SMALL_SPARE, waits: true, cap: 0 }
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
        } else if self.buf.is_empty() && self.cap > 0 {
            // once the pieces handed out are gone, read into the whole allocation again instead
            // of only what is left after them (no allocation; a no-op while pieces are alive)
            let _ = self.buf.try_reclaim(self.cap);
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

    /// Give back a buffer from [`Peer::take_out`] that was not sent.
    pub fn put_out(&mut self, out: Vec<u8>) {
        self.out = out;
    }

    /// Write `out` (a head built in [`Peer::take_out`]'s buffer) and then `body` fully, with one
    /// `writev` when the socket takes it all, and keep `out`'s allocation for next time.
    pub async fn send_out_with(&mut self, out: Vec<u8>, body: Bytes) -> io::Result<()> {
        use monoio::io::AsyncWriteRent;
        if body.is_empty() {
            return self.send_out(out).await;
        }
        // not monoio's `write_vectored_all`: after a partial write inside an iovec it resends that
        // iovec from its start (0.2.4's `IoVecMeta::consume` drops the advanced pointer)
        let mut buf = HeadAndBody::new(out, body);
        let mut res = Ok(());
        while !buf.is_done() {
            let (r, b) = self.io.writev(buf).await;
            buf = b;
            match r {
                Ok(0) => {
                    res = Err(io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(n) => buf.consume(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        self.out = buf.head;
        res
    }

    /// Write `data` fully.
    pub async fn send(&mut self, data: Bytes) -> io::Result<()> {
        use monoio::io::AsyncWriteRentExt;
        self.io.write_all(data).await.0.map(|_| ())
    }
}

/// A head and a body handed to the kernel as two iovecs: one syscall (and one TCP segment when
/// they fit) instead of two, without copying the body.
struct HeadAndBody {
    head: Vec<u8>,
    /// Only kept alive: the second iovec points into it.
    _body: Bytes,
    /// On the heap so that its address stays put while the driver holds `self` (the io_uring
    /// driver reads it when the operation is submitted, after `self` moved into the operation).
    iov: Box<[libc::iovec; 2]>,
    /// First iovec not yet written.
    first: usize,
}

impl HeadAndBody {
    fn new(head: Vec<u8>, body: Bytes) -> Self {
        let iov = Box::new([
            libc::iovec { iov_base: head.as_ptr() as *mut libc::c_void, iov_len: head.len() },
            libc::iovec { iov_base: body.as_ptr() as *mut libc::c_void, iov_len: body.len() },
        ]);
        // an empty head is skipped, so no write is ever asked for with nothing in its first iovec
        let first = usize::from(head.is_empty());
        HeadAndBody { head, _body: body, iov, first }
    }

    fn is_done(&self) -> bool {
        self.first >= self.iov.len()
    }

    /// Account for `n` written bytes.
    fn consume(&mut self, mut n: usize) {
        while let Some(v) = self.iov.get_mut(self.first) {
            if n < v.iov_len {
                // SAFETY: n < iov_len, so the pointer stays inside the buffer this iovec describes.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n) }.cast();
                v.iov_len -= n;
                return;
            }
            n -= v.iov_len;
            self.first += 1;
        }
    }
}

// SAFETY: the iovecs live in a Box owned by `self` and point into `head` and `body`, whose heap
// bytes neither move nor change while `self` is alive (a `Vec` and a `Bytes` moved with `self`
// keep their allocations). `first <= 2`, so the pointer and length describe live iovecs only.
unsafe impl IoVecBuf for HeadAndBody {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iov.as_ptr().wrapping_add(self.first)
    }

    fn read_iovec_len(&self) -> usize {
        self.iov.len() - self.first
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
    fn head_and_body_consume_walks_both_iovecs() {
        let mut hb = HeadAndBody::new(b"HEAD".to_vec(), Bytes::from_static(b"body!"));
        let left = |hb: &HeadAndBody| -> Vec<u8> {
            let mut v = Vec::new();
            for i in hb.first..2 {
                let io = hb.iov[i];
                // SAFETY: the iovecs point into hb's live buffers.
                v.extend_from_slice(unsafe { std::slice::from_raw_parts(io.iov_base.cast::<u8>(), io.iov_len) });
            }
            v
        };
        assert_eq!(hb.read_iovec_len(), 2);
        hb.consume(2);
        assert_eq!(left(&hb), b"ADbody!");
        hb.consume(2);
        assert_eq!(left(&hb), b"body!");
        assert_eq!(hb.read_iovec_len(), 1);
        hb.consume(3);
        assert_eq!(left(&hb), b"y!");
        assert!(!hb.is_done());
        hb.consume(2);
        assert!(hb.is_done());
        assert_eq!(hb.read_iovec_len(), 0);
        let hb = HeadAndBody::new(Vec::new(), Bytes::from_static(b"x"));
        assert_eq!(hb.read_iovec_len(), 1, "an empty head is never written");
    }

    /// Several MiB after a head: the socket takes it in partial writes (some ending inside an
    /// iovec), and the reader must still get every byte once, in order.
    fn head_and_big_body_arrive_whole<D: monoio::Driver + 'static>(mut rt: monoio::Runtime<D>) {
        rt.block_on(async {
            let l = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let body: Vec<u8> = (0..6_000_000u32).map(|i| (i % 253) as u8).collect();
            let head = b"HTTP/1.1 200 OK\r\ncontent-length: 6000000\r\n\r\n".to_vec();
            let mut want = head.clone();
            want.extend_from_slice(&body);
            let reader = monoio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut got = Vec::new();
                loop {
                    let (r, b) = s.read(vec![0u8; 64 * 1024]).await;
                    let n = r.unwrap();
                    if n == 0 {
                        return got;
                    }
                    got.extend_from_slice(&b[..n]);
                }
            });
            let c = monoio::net::TcpStream::connect(addr).await.unwrap();
            let mut p = Peer::new(crate::tls::Stream::Plain(c), 1024);
            let mut out = p.take_out();
            out.extend_from_slice(&head);
            p.send_out_with(out, Bytes::from(body)).await.unwrap();
            assert!(p.take_out().capacity() >= head.len(), "the head's buffer is kept");
            drop(p);
            let got = reader.await;
            assert_eq!(got.len(), want.len());
            assert!(got == want, "bytes differ");
        });
    }

    #[test]
    fn head_and_big_body_arrive_whole_legacy() {
        head_and_big_body_arrive_whole(monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().build().unwrap());
    }

    #[test]
    fn head_and_big_body_arrive_whole_io_uring() {
        // where the kernel refuses io_uring (some sandboxes), the legacy test above still runs
        if let Ok(rt) = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().build() {
            head_and_big_body_arrive_whole(rt);
        }
    }

    #[test]
    fn an_emptied_buffer_is_read_into_whole_again() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().build().unwrap();
        rt.block_on(async {
            use monoio::io::AsyncWriteRentExt;
            let l = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let c = monoio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (mut s, _) = l.accept().await.unwrap();
            let mut p = Peer::new(crate::tls::Stream::Plain(c), 32 * 1024);
            let start = p.buf.as_ptr();
            s.write_all(vec![1u8; 20 * 1024]).await.0.unwrap();
            let mut got = 0;
            while got < 20 * 1024 {
                got += p.fill().await.unwrap();
            }
            let piece = p.buf.split().freeze();
            s.write_all(vec![2u8; 100]).await.0.unwrap();
            // a piece still out: the buffer cannot be taken back, the read goes after it
            assert_eq!(p.fill().await.unwrap(), 100);
            assert_ne!(p.buf.as_ptr(), start);
            p.buf.clear();
            drop(piece);
            s.write_all(vec![3u8; 100]).await.0.unwrap();
            assert_eq!(p.fill().await.unwrap(), 100);
            assert_eq!(&p.buf[..], &[3u8; 100][..]);
            assert_eq!(p.buf.as_ptr(), start, "read at the start of the same allocation");
            assert_eq!(p.buf.capacity(), 32 * 1024, "with all of it as room");
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
