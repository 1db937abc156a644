//! The socket type of every HTTP connection: plain TCP, or TLS over TCP driven through rustls' `Connection` with monoio's owned-buffer I/O.

use std::io::{self, BufRead, Write};
use std::os::fd::{AsRawFd, RawFd};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;

/// Ciphertext read per socket read: one full TLS record and its header.
const CIPHER_READ: usize = 16 * 1024 + 256;

/// A client or upstream connection. Plain connections pay one `match` per read or write.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS (either side); boxed because a rustls connection is about a kilobyte.
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The TLS session, when there is one.
    pub fn tls(&self) -> Option<&rustls::Connection> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(t) => Some(&t.conn),
        }
    }

    /// Whether a pooled, idle connection is still usable: nothing buffered, no EOF or stray
    /// bytes on the socket (a TLS peer closing sends `close_notify` first, which counts as bytes).
    pub fn is_idle_and_open(&self) -> bool {
        match self {
            Stream::Plain(s) => crate::http::io::is_idle_and_open(s),
            Stream::Tls(t) => t.roff == t.rbuf.len() && crate::http::io::is_idle_and_open(&t.io),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Plain(s) => s.as_raw_fd(),
            Stream::Tls(t) => t.io.as_raw_fd(),
        }
    }
}

/// Why a TLS handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// The socket failed.
    Io(io::Error),
    /// The peer closed before the handshake finished.
    Eof,
    /// TLS itself refused (bad certificate, no common protocol, …).
    Tls(rustls::Error),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "{e}"),
            HandshakeError::Eof => f.write_str("the peer closed the connection during the TLS handshake"),
            HandshakeError::Tls(e) => write!(f, "{e}"),
        }
    }
}

/// TLS over a TCP socket. Ciphertext is read into `rbuf` (consumed from `roff`) and handed to
/// rustls; plaintext is copied out of rustls' buffer straight into the caller's buffer.
pub struct TlsStream {
    io: TcpStream,
    conn: rustls::Connection,
    rbuf: Vec<u8>,
    roff: usize,
    wbuf: Vec<u8>,
    /// The socket reached EOF (rustls was told).
    eof: bool,
}

impl TlsStream {
    /// Wrap `io` with a fresh session; `pending` is ciphertext already read from the socket
    /// (the bytes an acceptor looked at).
    pub fn new(io: TcpStream, conn: rustls::Connection, pending: Vec<u8>, roff: usize) -> Self {
        let mut rbuf = pending;
        rbuf.reserve(CIPHER_READ.saturating_sub(rbuf.capacity()));
        TlsStream { io, conn, rbuf, roff, wbuf: Vec::with_capacity(CIPHER_READ), eof: false }
    }

    /// The session.
    pub fn conn(&self) -> &rustls::Connection {
        &self.conn
    }

    /// Drive the handshake to its end (including our last flight).
    pub async fn handshake(&mut self) -> Result<(), HandshakeError> {
        while self.conn.is_handshaking() {
            if self.conn.wants_write() {
                self.flush_tls().await.map_err(HandshakeError::Io)?;
                continue;
            }
            if self.roff == self.rbuf.len() {
                if self.eof {
                    return Err(HandshakeError::Eof);
                }
                self.fill_cipher().await.map_err(HandshakeError::Io)?;
            }
            if let Err(e) = self.feed() {
                // rustls queued an alert telling the peer why; send it on a best-effort basis
                let _ = self.flush_tls().await;
                return Err(match e {
                    Fed::Tls(e) => HandshakeError::Tls(e),
                    Fed::Io(e) => HandshakeError::Io(e),
                });
            }
        }
        self.flush_tls().await.map_err(HandshakeError::Io)
    }

    /// Read from the socket into `rbuf` (which is fully consumed); EOF is passed on to rustls.
    async fn fill_cipher(&mut self) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.rbuf);
        buf.clear();
        self.roff = 0;
        if buf.capacity() < CIPHER_READ {
            buf.reserve(CIPHER_READ);
        }
        let (r, buf) = self.io.read(buf).await;
        self.rbuf = buf;
        if r? == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// Hand buffered ciphertext (or the EOF) to rustls and process it.
    fn feed(&mut self) -> Result<(), Fed> {
        if self.roff < self.rbuf.len() {
            let n = self.conn.read_tls(&mut &self.rbuf[self.roff..]).map_err(Fed::Io)?;
            if n == 0 {
                // rustls took nothing although bytes wait: it has seen close_notify; drop the rest
                self.roff = self.rbuf.len();
            }
            self.roff += n;
        } else if self.eof {
            let _ = self.conn.read_tls(&mut &[][..]);
        }
        self.conn.process_new_packets().map(|_| ()).map_err(Fed::Tls)
    }

    /// Send everything rustls has queued.
    async fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.wbuf.clear();
            self.conn.write_tls(&mut self.wbuf)?;
            let (r, b) = self.io.write_all(std::mem::take(&mut self.wbuf)).await;
            self.wbuf = b;
            r?;
        }
        Ok(())
    }

    /// Copy available plaintext into `dst` (at most `cap` bytes); `Ok(0)` is the end of stream.
    async fn read_plain(&mut self, dst: *mut u8, cap: usize) -> io::Result<usize> {
        if cap == 0 {
            return Ok(0);
        }
        loop {
            match self.conn.reader().fill_buf() {
                Ok(chunk) => {
                    let n = chunk.len().min(cap);
                    // SAFETY: `dst` points to `cap` writable bytes owned by the caller's buffer,
                    // which does not overlap rustls' internal buffer.
                    unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), dst, n) };
                    self.conn.reader().consume(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // a peer that closes without close_notify: for HTTP/1.1 (framed bodies) this is
                // just the end of the connection, as most TLS stacks treat it
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.roff == self.rbuf.len() {
                if self.eof {
                    return Ok(0);
                }
                self.fill_cipher().await?;
            }
            if let Err(e) = self.feed() {
                let _ = self.flush_tls().await;
                return Err(match e {
                    Fed::Io(e) => e,
                    Fed::Tls(e) => io::Error::new(io::ErrorKind::InvalidData, e),
                });
            }
            // key updates and the like may need an answer
            if self.conn.wants_write() {
                self.flush_tls().await?;
            }
        }
    }

    /// Encrypt and send as much of `src` as rustls takes in one go.
    async fn write_plain(&mut self, src: &[u8]) -> io::Result<usize> {
        if src.is_empty() {
            return Ok(0);
        }
        let n = self.conn.writer().write(src)?;
        self.flush_tls().await?;
        Ok(n)
    }

    async fn close(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush_tls().await?;
        self.io.shutdown().await
    }
}

enum Fed {
    Io(io::Error),
    Tls(rustls::Error),
}

impl AsyncReadRent for TlsStream {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let r = self.read_plain(buf.write_ptr(), buf.bytes_total()).await;
        if let Ok(n) = r {
            // SAFETY: `read_plain` initialised exactly `n` bytes at `write_ptr`.
            unsafe { buf.set_init(n) };
        }
        (r, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw view of the first iovec lives no longer than `buf`, which we hold.
        let r = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(mut raw) => self.read_plain(raw.write_ptr(), raw.bytes_total()).await,
            None => Ok(0),
        };
        if let Ok(n) = r {
            // SAFETY: `n` bytes of the first iovec were initialised.
            unsafe { buf.set_init(n) };
        }
        (r, buf)
    }
}

impl AsyncWriteRent for TlsStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `buf` owns `bytes_init` initialised bytes at `read_ptr` for this whole call.
        let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let r = self.write_plain(src).await;
        (r, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: as for `write`, for the first iovec.
        let r = match unsafe { RawBuf::new_from_iovec(&buf) } {
            Some(raw) => {
                let src = unsafe { std::slice::from_raw_parts(raw.read_ptr(), raw.bytes_init()) };
                self.write_plain(src).await
            }
            None => Ok(0),
        };
        (r, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.close().await
    }
}

// The TLS branches are boxed: inlined, their state (several times a plain socket's operation)
// would size every future that reads or writes a `Stream`, the connection task and each open
// event stream's included, whether the connection is TLS or not.
impl AsyncReadRent for Stream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(t) => Box::pin(t.read(buf)).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.readv(buf).await,
            Stream::Tls(t) => Box::pin(t.readv(buf)).await,
        }
    }
}

impl AsyncWriteRent for Stream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.write(buf).await,
            Stream::Tls(t) => Box::pin(t.write(buf)).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.writev(buf).await,
            Stream::Tls(t) => Box::pin(t.writev(buf)).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush().await,
            Stream::Tls(t) => t.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(t) => t.shutdown().await,
        }
    }
}
