//! A socket with its read buffer: read one request or response (any framing), or follow an SSE stream.

use std::net::SocketAddr;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::check::ErrorKind;
use crate::http::{parse_request_head, parse_response_head, Chunked, Framing, RequestHead, ResponseHead, SseEvents};

/// Largest head or body accepted.
const MAX_MESSAGE: usize = 64 << 20;

/// A connection and the bytes read from it but not used yet.
pub struct Conn {
    /// The socket.
    pub io: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Wrap a socket.
    pub fn new(io: TcpStream) -> Conn {
        Conn { io, buf: Vec::with_capacity(8 * 1024) }
    }

    /// Connect with Nagle off.
    pub async fn connect(addr: SocketAddr) -> Result<Conn, ErrorKind> {
        let io = TcpStream::connect(addr).await.map_err(|_| ErrorKind::Connect)?;
        let _ = io.set_nodelay(true);
        Ok(Conn::new(io))
    }

    /// Write all of `bytes`.
    pub async fn send(&mut self, bytes: Vec<u8>) -> Result<(), ErrorKind> {
        self.io.write_all(bytes).await.0.map(|_| ()).map_err(|_| ErrorKind::Io)
    }

    /// Read more; `Closed` at end of stream.
    async fn fill(&mut self) -> Result<(), ErrorKind> {
        if self.buf.len() > MAX_MESSAGE {
            return Err(ErrorKind::BadHttp);
        }
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        let (len, cap) = (self.buf.len(), self.buf.capacity());
        let b = std::mem::take(&mut self.buf);
        let (r, slice) = self.io.read(b.slice_mut(len..cap)).await;
        self.buf = slice.into_inner();
        match r {
            Ok(0) => Err(ErrorKind::Closed),
            Ok(_) => Ok(()),
            Err(_) => Err(ErrorKind::Io),
        }
    }

    /// Read a body with `framing` from the buffer (and the socket), consuming it.
    async fn body(&mut self, framing: Framing) -> Result<Vec<u8>, ErrorKind> {
        match framing {
            Framing::None => Ok(Vec::new()),
            Framing::Length(n) => {
                if n > MAX_MESSAGE {
                    return Err(ErrorKind::BadHttp);
                }
                while self.buf.len() < n {
                    self.fill().await?;
                }
                let rest = self.buf.split_off(n);
                Ok(std::mem::replace(&mut self.buf, rest))
            }
            Framing::Chunked => {
                let mut d = Chunked::default();
                let mut out = Vec::new();
                loop {
                    let used = d.feed(&self.buf, &mut out)?;
                    self.buf.drain(..used);
                    if d.done() {
                        return Ok(out);
                    }
                    self.fill().await?;
                }
            }
            Framing::Close => {
                loop {
                    match self.fill().await {
                        Ok(()) => {}
                        Err(ErrorKind::Closed) => break,
                        Err(e) => return Err(e),
                    }
                }
                Ok(std::mem::take(&mut self.buf))
            }
        }
    }

    /// Read one response head (without its body).
    pub async fn response_head(&mut self) -> Result<ResponseHead, ErrorKind> {
        loop {
            if let Some((head, n)) = parse_response_head(&self.buf, false)? {
                self.buf.drain(..n);
                return Ok(head);
            }
            self.fill().await?;
        }
    }

    /// Read one full response.
    pub async fn response(&mut self) -> Result<(ResponseHead, Vec<u8>), ErrorKind> {
        let head = self.response_head().await?;
        let body = self.body(head.framing).await?;
        Ok((head, body))
    }

    /// Read one full request; `Ok(None)` when the peer closed cleanly between requests.
    pub async fn request(&mut self) -> Result<Option<(RequestHead, Vec<u8>)>, ErrorKind> {
        loop {
            if let Some((head, n)) = parse_request_head(&self.buf)? {
                self.buf.drain(..n);
                let body = self.body(head.framing.unwrap_or(Framing::None)).await?;
                return Ok(Some((head, body)));
            }
            match self.fill().await {
                Err(ErrorKind::Closed) if self.buf.is_empty() => return Ok(None),
                Err(e) => return Err(e),
                Ok(()) => {}
            }
        }
    }

    /// The next SSE event's data on a stream whose head was read; `Closed` when it ends.
    pub async fn next_event(
        &mut self,
        framing: Framing,
        dec: &mut Chunked,
        ev: &mut SseEvents,
    ) -> Result<String, ErrorKind> {
        loop {
            if let Some(e) = ev.next_event() {
                return Ok(e);
            }
            if dec.done() {
                return Err(ErrorKind::Closed);
            }
            if !self.buf.is_empty() {
                let used = if framing == Framing::Chunked {
                    let mut out = Vec::new();
                    let used = dec.feed(&self.buf, &mut out)?;
                    ev.push(&out);
                    used
                } else {
                    ev.push(&self.buf);
                    self.buf.len()
                };
                self.buf.drain(..used);
                if used > 0 {
                    continue;
                }
            }
            self.fill().await?;
        }
    }
}
