//! HTTP/1.1 framing shared by the fixture and the load generator: request and response heads, incremental chunked decoding, SSE events. No I/O.

use crate::check::ErrorKind;

/// Most headers a head may carry.
const MAX_HEADERS: usize = 48;

/// How a message body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// The parts of a response head the load generator looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// How the body ends.
    pub framing: Framing,
    /// `Mcp-Session-Id`, if sent.
    pub session: Option<String>,
    /// `Content-Type` (as sent), empty when absent.
    pub content_type: String,
    /// The server will close the connection after this response.
    pub close: bool,
}

impl ResponseHead {
    /// The body is an SSE stream.
    pub fn is_sse(&self) -> bool {
        self.content_type.trim_start().starts_with("text/event-stream")
    }
}

/// The parts of a request head the fixture looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// Method.
    pub method: String,
    /// Request target.
    pub path: String,
    /// How the body ends (`None` or `Length` or `Chunked`).
    pub framing: Option<Framing>,
    /// `Mcp-Session-Id`.
    pub session: Option<String>,
    /// `MCP-Protocol-Version`.
    pub protocol_version: Option<String>,
    /// `Mcp-Method`.
    pub mcp_method: Option<String>,
    /// `Mcp-Name`.
    pub mcp_name: Option<String>,
    /// The client asked to close the connection after this exchange (or spoke HTTP/1.0).
    pub close: bool,
}

fn header_is(name: &str, want: &str) -> bool {
    name.eq_ignore_ascii_case(want)
}

fn value_str(v: &[u8]) -> String {
    String::from_utf8_lossy(v).trim().to_string()
}

fn has_token(v: &[u8], token: &str) -> bool {
    String::from_utf8_lossy(v).split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Parse a response head at the start of `buf`: `Ok(None)` until it is complete, else the head
/// and its length in bytes. `head_request` is true when the request was a HEAD (no body follows).
pub fn parse_response_head(buf: &[u8], head_request: bool) -> Result<Option<(ResponseHead, usize)>, ErrorKind> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ErrorKind::BadHttp),
    };
    let status = r.code.ok_or(ErrorKind::BadHttp)?;
    let mut head =
        ResponseHead { status, framing: Framing::Close, session: None, content_type: String::new(), close: false };
    head.close = r.version == Some(0);
    let mut length = None;
    let mut chunked = false;
    for h in r.headers.iter() {
        if header_is(h.name, "content-length") {
            length = Some(value_str(h.value).parse::<usize>().map_err(|_| ErrorKind::BadHttp)?);
        } else if header_is(h.name, "transfer-encoding") {
            chunked = has_token(h.value, "chunked");
        } else if header_is(h.name, "mcp-session-id") {
            head.session = Some(value_str(h.value));
        } else if header_is(h.name, "content-type") {
            head.content_type = value_str(h.value);
        } else if header_is(h.name, "connection") {
            head.close = has_token(h.value, "close");
        }
    }
    head.framing = if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(l) = length {
        if l == 0 {
            Framing::None
        } else {
            Framing::Length(l)
        }
    } else {
        head.close = true;
        Framing::Close
    };
    Ok(Some((head, n)))
}

/// Parse a request head at the start of `buf`: `Ok(None)` until it is complete.
pub fn parse_request_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, ErrorKind> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Request::new(&mut headers);
    let n = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ErrorKind::BadHttp),
    };
    let mut head = RequestHead {
        method: r.method.unwrap_or("").to_string(),
        path: r.path.unwrap_or("/").to_string(),
        close: r.version == Some(0),
        ..RequestHead::default()
    };
    let mut length = None;
    let mut chunked = false;
    for h in r.headers.iter() {
        let n = h.name;
        if header_is(n, "content-length") {
            length = Some(value_str(h.value).parse::<usize>().map_err(|_| ErrorKind::BadHttp)?);
        } else if header_is(n, "transfer-encoding") {
            chunked = has_token(h.value, "chunked");
        } else if header_is(n, "mcp-session-id") {
            head.session = Some(value_str(h.value));
        } else if header_is(n, "mcp-protocol-version") {
            head.protocol_version = Some(value_str(h.value));
        } else if header_is(n, "mcp-method") {
            head.mcp_method = Some(value_str(h.value));
        } else if header_is(n, "mcp-name") {
            head.mcp_name = Some(value_str(h.value));
        } else if header_is(n, "connection") {
            head.close = has_token(h.value, "close");
        }
    }
    head.framing = Some(if chunked {
        Framing::Chunked
    } else {
        match length {
            Some(l) if l > 0 => Framing::Length(l),
            _ => Framing::None,
        }
    });
    Ok(Some((head, n)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(usize),
    DataEnd,
    Trailer,
    Done,
}

/// An incremental `Transfer-Encoding: chunked` decoder: feed it what arrived, it appends the
/// payload and says how much input it used (a partial size line waits for more).
#[derive(Clone, Debug)]
pub struct Chunked {
    state: ChunkState,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked { state: ChunkState::Size }
    }
}

fn line_end(input: &[u8]) -> Option<usize> {
    input.windows(2).position(|w| w == b"\r\n")
}

impl Chunked {
    /// The terminating chunk and trailer have been read.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decode from `input`, appending payload to `out`; returns the bytes of `input` consumed.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ErrorKind> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                ChunkState::Done => return Ok(pos),
                ChunkState::Size => {
                    let Some(end) = line_end(rest) else {
                        return if rest.len() > 1024 { Err(ErrorKind::BadHttp) } else { Ok(pos) };
                    };
                    let line = std::str::from_utf8(&rest[..end]).map_err(|_| ErrorKind::BadHttp)?;
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(hex, 16).map_err(|_| ErrorKind::BadHttp)?;
                    pos += end + 2;
                    self.state = if size == 0 { ChunkState::Trailer } else { ChunkState::Data(size) };
                }
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok(pos);
                    }
                    let take = left.min(rest.len());
                    out.extend_from_slice(&rest[..take]);
                    pos += take;
                    self.state = if take == left { ChunkState::DataEnd } else { ChunkState::Data(left - take) };
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(pos);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ErrorKind::BadHttp);
                    }
                    pos += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(end) = line_end(rest) else { return Ok(pos) };
                    pos += end + 2;
                    if end == 0 {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
    }
}

/// Splits an SSE byte stream into events and yields each event's data (its `data:` lines
/// joined by newlines); comments and data-less events are skipped.
#[derive(Default, Debug)]
pub struct SseEvents {
    buf: Vec<u8>,
}

impl SseEvents {
    /// Add stream bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event's data, if one has fully arrived.
    pub fn next_event(&mut self) -> Option<String> {
        loop {
            let (end, sep) = find_blank_line(&self.buf)?;
            let raw: Vec<u8> = self.buf.drain(..end + sep).collect();
            let text = String::from_utf8_lossy(&raw[..end]);
            let mut data: Option<String> = None;
            for line in text.lines() {
                let Some(v) = line.strip_prefix("data:") else { continue };
                let v = v.strip_prefix(' ').unwrap_or(v);
                match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(v);
                    }
                    None => data = Some(v.to_string()),
                }
            }
            if data.is_some() {
                return data;
            }
        }
    }
}

/// Position and length of the first blank line (`\n\n` or `\r\n\r\n`).
fn find_blank_line(b: &[u8]) -> Option<(usize, usize)> {
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| (p, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Append a response head: status line, `Content-Type`, extra headers, and `Content-Length`
/// (`None` = chunked). Ends with the blank line.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    extra: &[(&str, &str)],
    length: Option<usize>,
) {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Status",
    };
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    if !content_type.is_empty() {
        out.extend_from_slice(format!("content-type: {content_type}\r\n").as_bytes());
    }
    for (n, v) in extra {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    match length {
        Some(l) => out.extend_from_slice(format!("content-length: {l}\r\n\r\n").as_bytes()),
        None => out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n"),
    }
}

/// Append one chunk of a chunked body.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nmcp-session-id: abc\r\nContent-Length: 5\r\n\r\nhello";
        let (h, n) = parse_response_head(raw, false).unwrap().unwrap();
        assert_eq!(n, raw.len() - 5);
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(5));
        assert_eq!(h.session.as_deref(), Some("abc"));
        assert!(!h.is_sse() && !h.close);
        assert_eq!(parse_response_head(&raw[..20], false), Ok(None));

        let sse = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: gzip, chunked\r\n\r\n";
        let (h, _) = parse_response_head(sse, false).unwrap().unwrap();
        assert!(h.is_sse());
        assert_eq!(h.framing, Framing::Chunked);

        let accepted = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let (h, _) = parse_response_head(accepted, false).unwrap().unwrap();
        assert_eq!((h.status, h.framing, h.close), (202, Framing::None, true));
        let (h, _) = parse_response_head(b"HTTP/1.1 200 OK\r\n\r\n", false).unwrap().unwrap();
        assert_eq!((h.framing, h.close), (Framing::Close, true));
        assert_eq!(parse_response_head(b"HTTP/1.1 abc\r\n\r\n", false), Err(ErrorKind::BadHttp));
        assert_eq!(
            parse_response_head(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", false),
            Err(ErrorKind::BadHttp)
        );
    }

    #[test]
    fn request_heads() {
        let raw = b"POST /mcp HTTP/1.1\r\nHost: x\r\nMcp-Method: tools/call\r\nmcp-name: echo\r\nMCP-Protocol-Version: 2026-07-28\r\nContent-Length: 2\r\n\r\n{}";
        let (h, n) = parse_request_head(raw).unwrap().unwrap();
        assert_eq!(&raw[n..], b"{}");
        assert_eq!((h.method.as_str(), h.path.as_str()), ("POST", "/mcp"));
        assert_eq!(h.framing, Some(Framing::Length(2)));
        assert_eq!(h.mcp_method.as_deref(), Some("tools/call"));
        assert_eq!(h.mcp_name.as_deref(), Some("echo"));
        assert_eq!(h.protocol_version.as_deref(), Some("2026-07-28"));
        assert!(!h.close && h.session.is_none());
        let (h, _) = parse_request_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.framing, h.close), (Some(Framing::None), true));
        let (h, _) = parse_request_head(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, Some(Framing::Chunked));
    }

    #[test]
    fn chunked_in_any_split() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for cut in 0..wire.len() {
            let mut d = Chunked::default();
            let mut out = Vec::new();
            let mut pending = wire[..cut].to_vec();
            let used = d.feed(&pending, &mut out).unwrap();
            pending.drain(..used);
            pending.extend_from_slice(&wire[cut..]);
            let used = d.feed(&pending, &mut out).unwrap();
            assert!(d.done(), "cut {cut}");
            assert_eq!(out, b"hello, world", "cut {cut}");
            assert_eq!(&pending[used..], b"NEXT", "cut {cut}");
        }
        let mut out = Vec::new();
        assert_eq!(Chunked::default().feed(b"zz\r\n", &mut out), Err(ErrorKind::BadHttp));
        assert_eq!(Chunked::default().feed(b"1\r\nabc", &mut out), Err(ErrorKind::BadHttp));
    }

    #[test]
    fn sse_events_split_and_join() {
        let mut s = SseEvents::default();
        s.push(b": stream open\n\nevent: message\ndata: {\"a\":1}\n\nid: 3\ndata: x\ndata:y\r\n\r\ndata: part");
        assert_eq!(s.next_event().as_deref(), Some("{\"a\":1}"));
        assert_eq!(s.next_event().as_deref(), Some("x\ny"));
        assert_eq!(s.next_event(), None);
        s.push(b"ial\n\n");
        assert_eq!(s.next_event().as_deref(), Some("partial"));
    }

    #[test]
    fn written_heads_parse_back() {
        let mut out = Vec::new();
        write_response_head(&mut out, 200, "application/json", &[("mcp-session-id", "s1")], Some(2));
        out.extend_from_slice(b"{}");
        let (h, n) = parse_response_head(&out, false).unwrap().unwrap();
        assert_eq!(
            (h.status, h.framing, h.session.as_deref(), n + 2),
            (200, Framing::Length(2), Some("s1"), out.len())
        );
        let mut out = Vec::new();
        write_response_head(&mut out, 200, "text/event-stream", &[], None);
        let start = out.len();
        write_chunk(&mut out, b"data: 1\n\n");
        out.extend_from_slice(b"0\r\n\r\n");
        let (h, _) = parse_response_head(&out, false).unwrap().unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let mut body = Vec::new();
        let mut d = Chunked::default();
        d.feed(&out[start..], &mut body).unwrap();
        assert!(d.done());
        assert_eq!(body, b"data: 1\n\n");
    }
}
