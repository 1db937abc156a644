//! HTTP/1.1 wire codec: head parsing with limits and smuggling defences, body framing, chunked decoding and head/chunk serialization.

use std::mem::MaybeUninit;

use bytes::Bytes;

/// Byte span [start, end) into a head's raw bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte of the span.
    pub start: u32,
    /// One past the last byte of the span.
    pub end: u32,
}

impl Span {
    /// The bytes this span covers in `raw`; empty if the span does not fit,
    /// so a mismatched `raw` can never cause a panic.
    pub fn slice<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        raw.get(self.start as usize..self.end as usize).unwrap_or_default()
    }

    /// Length of the span in bytes.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }

    /// Whether the span covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Location of one header field's name and (whitespace-trimmed) value in a head.
#[derive(Clone, Copy, Debug)]
pub struct HeaderSpan {
    /// Field name as written.
    pub name: Span,
    /// Field value without surrounding whitespace.
    pub value: Span,
}

/// Hard limits applied while parsing a head.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Maximum size of the head, start line through the blank line.
    pub max_head_bytes: usize,
    /// Maximum number of header fields.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_head_bytes: 16384, max_headers: 100 }
    }
}

/// How the body that follows a head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes follow.
    Length(u64),
    /// A chunked body follows; decode with [`ChunkedDecoder`].
    Chunked,
    /// The body runs until the peer closes the connection (responses only).
    CloseDelimited,
}

/// Why a head was rejected.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// The head exceeds `max_head_bytes`.
    #[error("message head exceeds the size limit")]
    HeadTooLarge,
    /// The head has more than `max_headers` fields.
    #[error("message head has too many header fields")]
    TooManyHeaders,
    /// Syntax problem; the text names it.
    #[error("malformed message head: {0}")]
    Malformed(&'static str),
    /// A line in the head ends in LF without CR.
    #[error("message head contains a bare LF line ending")]
    BareLf,
    /// A header line starts with whitespace (obsolete line folding).
    #[error("message head uses obsolete line folding")]
    ObsFold,
    /// A request carries both Content-Length and Transfer-Encoding.
    #[error("request has both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    /// A Content-Length value is not a valid non-negative decimal.
    #[error("invalid Content-Length value")]
    InvalidContentLength,
    /// Several Content-Length values that differ.
    #[error("conflicting Content-Length values")]
    DuplicateContentLength,
    /// A request Transfer-Encoding other than exactly `chunked`.
    #[error("unsupported Transfer-Encoding (only a single chunked coding is accepted)")]
    UnsupportedTransferEncoding,
    /// Invalid byte in a header name or value.
    #[error("invalid header field name or value")]
    InvalidHeaderValue,
    /// The version is not HTTP/1.0 or HTTP/1.1.
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    /// An HTTP/1.1 request without Host, or any request with several Host fields.
    #[error("request is missing a Host header or has more than one")]
    MissingHost,
    /// The path has a `.` or `..` segment (also `%2e`); see [`has_dot_segment`].
    #[error("request path has a `.` or `..` segment; send the resolved path")]
    DotSegment,
}

impl HeadError {
    /// Status code to answer a request that failed with this error.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::HeadTooLarge | HeadError::TooManyHeaders => 431,
            HeadError::UnsupportedVersion => 505,
            _ => 400,
        }
    }

    /// Short snake_case label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HeadError::HeadTooLarge => "head_too_large",
            HeadError::TooManyHeaders => "too_many_headers",
            HeadError::Malformed(_) => "malformed",
            HeadError::BareLf => "bare_lf",
            HeadError::ObsFold => "obs_fold",
            HeadError::ContentLengthWithTransferEncoding => "cl_with_te",
            HeadError::InvalidContentLength => "invalid_content_length",
            HeadError::DuplicateContentLength => "duplicate_content_length",
            HeadError::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            HeadError::InvalidHeaderValue => "invalid_header_value",
            HeadError::UnsupportedVersion => "unsupported_version",
            HeadError::MissingHost => "missing_host",
            HeadError::DotSegment => "dot_segment",
        }
    }
}

/// A parsed request head. `raw` holds exactly the head bytes (start line through the blank line).
#[derive(Clone, Debug)]
pub struct RequestHead {
    /// The head bytes the spans point into.
    pub raw: Bytes,
    /// Request method.
    pub method: Span,
    /// Request target as sent.
    pub target: Span,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields in order.
    pub headers: Vec<HeaderSpan>,
    /// Body framing: `None`, `Length` or `Chunked` (never `CloseDelimited`).
    pub framing: Framing,
    /// Whether the connection may be reused after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// `Connection: upgrade` plus an `Upgrade` header on an HTTP/1.1 request.
    pub upgrade: bool,
}

impl RequestHead {
    /// Request method, e.g. `GET`.
    pub fn method(&self) -> &str {
        span_str(&self.raw, self.method)
    }

    /// Request target as sent.
    pub fn target(&self) -> &str {
        span_str(&self.raw, self.target)
    }

    /// Path part of the target (before '?'); for absolute-form, the path after the authority.
    pub fn path(&self) -> &str {
        path_of(self.target())
    }

    /// Query of the target (after '?', without it), if any.
    pub fn query(&self) -> Option<&str> {
        let t = self.target();
        let q = t.split_once('?')?.1;
        let end = q.find('#').unwrap_or(q.len());
        q.get(..end)
    }

    /// First header value whose name matches `name` case-insensitively.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.raw, &self.headers, name)
    }

    /// Like [`RequestHead::header`], but `None` if the value is not valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        as_str(self.header(name)?)
    }

    /// All header fields in order, names as written.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        iter_headers(&self.raw, &self.headers)
    }

    /// Authority of an absolute-form target, else the Host header value
    /// (RFC 9112 3.2.2: the target's authority overrides Host).
    pub fn host(&self) -> Option<&str> {
        if let Some((authority, _)) = absolute_form_split(self.target()) {
            return Some(authority);
        }
        self.header_str("host")
    }
}

/// Result of a successful request parse; spans are relative to `buf[..head_len]`.
#[derive(Clone, Debug)]
pub struct ParsedRequest {
    /// Length of the head in the parsed buffer; the body starts right after it.
    pub head_len: usize,
    head: RequestHead,
}

impl ParsedRequest {
    /// Body framing of the parsed request.
    pub fn framing(&self) -> Framing {
        self.head.framing
    }

    /// Attach the head bytes; `raw` must be `buf[..head_len]`.
    pub fn into_head(self, raw: Bytes) -> RequestHead {
        RequestHead { raw, ..self.head }
    }
}

/// A parsed response head. `raw` holds exactly the head bytes.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    /// The head bytes the spans point into.
    pub raw: Bytes,
    /// Status code.
    pub status: u16,
    /// Reason phrase (possibly empty).
    pub reason: Span,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields in order.
    pub headers: Vec<HeaderSpan>,
    /// Body framing per RFC 9112 6.3.
    pub framing: Framing,
    /// Whether the upstream connection may be reused after this body.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// First header value whose name matches `name` case-insensitively.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.raw, &self.headers, name)
    }

    /// All header fields in order, names as written.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        iter_headers(&self.raw, &self.headers)
    }

    /// Reason phrase; empty if absent or not valid UTF-8.
    pub fn reason(&self) -> &str {
        span_str(&self.raw, self.reason)
    }
}

/// Result of a successful response parse; spans are relative to `buf[..head_len]`.
#[derive(Clone, Debug)]
pub struct ParsedResponse {
    /// Length of the head in the parsed buffer; the body starts right after it.
    pub head_len: usize,
    head: ResponseHead,
}

impl ParsedResponse {
    /// Body framing of the parsed response.
    pub fn framing(&self) -> Framing {
        self.head.framing
    }

    /// Attach the head bytes; `raw` must be `buf[..head_len]`.
    pub fn into_head(self, raw: Bytes) -> ResponseHead {
        ResponseHead { raw, ..self.head }
    }
}

/// Path part of a request target (before '?' or '#'); for absolute-form, the path after the authority.
fn path_of(t: &str) -> &str {
    let rest = match absolute_form_split(t) {
        Some((_, rest)) => {
            if rest.is_empty() || rest.starts_with('?') || rest.starts_with('#') {
                // An absolute-form target with an empty path means "/" (RFC 9112 3.2.2).
                return "/";
            }
            rest
        }
        None => t,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    rest.get(..end).unwrap_or(rest)
}

/// Whether a path has a `.` or `..` segment, also percent-encoded (`%2e`).
///
/// Routes, rules and rewrites see the path as sent while the upstream resolves dot-segments, so
/// `/public/../admin` would match a `/public` route and reach `/admin` (or escape a rewritten
/// prefix). Clients resolve dot-segments before sending (RFC 3986 5.2.4), so refusing them costs
/// real clients nothing.
pub fn has_dot_segment(path: &str) -> bool {
    if !path.contains('.') && !path.contains('%') {
        return false;
    }
    path.split('/').any(|seg| {
        let mut dots = 0;
        let mut rest = seg.as_bytes();
        while !rest.is_empty() {
            match rest {
                [b'.', tail @ ..] => rest = tail,
                [b'%', b'2', b'e' | b'E', tail @ ..] => rest = tail,
                _ => return false,
            }
            dots += 1;
        }
        dots == 1 || dots == 2
    })
}

/// httparse needs a header slot array; this many live on the stack so common
/// heads need no allocation beyond the span Vec.
const STACK_HEADERS: usize = 64;

/// Try to parse a request head from the start of `buf`.
///
/// `Ok(None)`: incomplete (need more bytes) and `buf.len()` is still within the limit.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<ParsedRequest>, HeadError> {
    let Some(scan) = scan_head(buf, limits)? else {
        return Ok(None);
    };
    let head_buf = buf.get(..scan.head_len).unwrap_or_default();

    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if scan.header_lines <= STACK_HEADERS {
        &mut stack[..]
    } else {
        heap.resize_with(scan.header_lines, MaybeUninit::uninit);
        &mut heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head_buf, slots) {
        Ok(httparse::Status::Complete(n)) if n == scan.head_len => {}
        Ok(_) => return Err(HeadError::Malformed("head terminator mismatch")),
        Err(httparse::Error::Version) => return Err(version_error(first_line(head_buf), true)),
        Err(e) => return Err(map_httparse_error(e)),
    }

    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    let method = span_in(head_buf, method.as_bytes()).ok_or(INTERNAL)?;
    let target_span = span_in(head_buf, target.as_bytes()).ok_or(INTERNAL)?;
    let headers = collect_spans(head_buf, req.headers)?;

    let mut conn = ConnectionFlags::default();
    let mut host_count = 0usize;
    let mut has_cl = false;
    let mut cl = ContentLength::default();
    let mut has_te = false;
    let mut has_upgrade = false;
    let mut expect_continue = false;
    for h in &headers {
        let name = h.name.slice(head_buf);
        let value = h.value.slice(head_buf);
        if name.eq_ignore_ascii_case(b"host") {
            host_count += 1;
            if !is_valid_authority(value, true) {
                return Err(HeadError::Malformed("invalid Host header"));
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            has_cl = true;
            cl.add(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_te = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            conn.add(value);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            has_upgrade |= !value.is_empty();
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue |= list_tokens(value).any(|t| t.eq_ignore_ascii_case(b"100-continue"));
        }
    }

    let framing = if has_te {
        // RFC 9112 6.1: TE in an HTTP/1.0 message means the framing is faulty.
        if minor_version == 0 {
            return Err(HeadError::Malformed("transfer-encoding in HTTP/1.0 request"));
        }
        if has_cl {
            return Err(HeadError::ContentLengthWithTransferEncoding);
        }
        let mut codings = header_values(head_buf, &headers, "transfer-encoding").flat_map(list_tokens);
        match (codings.next(), codings.next()) {
            (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
            _ => return Err(HeadError::UnsupportedTransferEncoding),
        }
    } else if has_cl {
        match cl.get()? {
            Some(n) => Framing::Length(n),
            None => return Err(HeadError::InvalidContentLength),
        }
    } else {
        Framing::None
    };

    if host_count > 1 || (minor_version == 1 && host_count == 0) {
        return Err(HeadError::MissingHost);
    }
    if let Some((authority, _)) = absolute_form_split(target) {
        if !is_valid_authority(authority.as_bytes(), false) {
            return Err(HeadError::Malformed("invalid authority in request target"));
        }
    }
    if has_dot_segment(path_of(target)) {
        return Err(HeadError::DotSegment);
    }

    let keep_alive = conn.keep_alive(minor_version);
    // RFC 9110 7.8 / 10.1.1: Upgrade and 100-continue are ignored in HTTP/1.0 requests.
    let upgrade = minor_version == 1 && conn.upgrade && has_upgrade;
    let expect_continue = minor_version == 1 && expect_continue;

    Ok(Some(ParsedRequest {
        head_len: scan.head_len,
        head: RequestHead {
            raw: Bytes::new(),
            method,
            target: target_span,
            minor_version,
            headers,
            framing,
            keep_alive,
            expect_continue,
            upgrade,
        },
    }))
}

/// Try to parse a response head from the start of `buf`.
///
/// `request_was_head` must be true when the request was HEAD, since such a
/// response never has a body whatever its headers say.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    request_was_head: bool,
) -> Result<Option<ParsedResponse>, HeadError> {
    let Some(scan) = scan_head(buf, limits)? else {
        return Ok(None);
    };
    let head_buf = buf.get(..scan.head_len).unwrap_or_default();

    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if scan.header_lines <= STACK_HEADERS {
        &mut stack[..]
    } else {
        heap.resize_with(scan.header_lines, MaybeUninit::uninit);
        &mut heap[..]
    };
    let mut resp = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, head_buf, slots) {
        Ok(httparse::Status::Complete(n)) if n == scan.head_len => {}
        Ok(_) => return Err(HeadError::Malformed("head terminator mismatch")),
        Err(httparse::Error::Version) => return Err(version_error(first_line(head_buf), false)),
        Err(e) => return Err(map_httparse_error(e)),
    }
    let (Some(minor_version), Some(status)) = (resp.version, resp.code) else {
        return Err(HeadError::Malformed("incomplete status line"));
    };
    if status < 100 {
        return Err(HeadError::Malformed("invalid status code"));
    }
    let headers = collect_spans(head_buf, resp.headers)?;
    let reason = reason_span(head_buf).ok_or(INTERNAL)?;

    let mut conn = ConnectionFlags::default();
    let mut has_cl = false;
    let mut cl = ContentLength::default();
    let mut has_te = false;
    for h in &headers {
        let name = h.name.slice(head_buf);
        if name.eq_ignore_ascii_case(b"content-length") {
            has_cl = true;
            cl.add(h.value.slice(head_buf));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_te = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            conn.add(h.value.slice(head_buf));
        }
    }

    let mut keep_alive = conn.keep_alive(minor_version);
    let bodiless = request_was_head || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if bodiless {
        Framing::None
    } else if has_te {
        // TE wins over CL (RFC 9112 6.3 item 3), but a message carrying both,
        // or TE in HTTP/1.0, is suspect, so never reuse the connection after it.
        if has_cl || minor_version == 0 {
            keep_alive = false;
        }
        let last = header_values(head_buf, &headers, "transfer-encoding").flat_map(list_tokens).last();
        match last {
            Some(c) if c.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
            _ => Framing::CloseDelimited,
        }
    } else if has_cl {
        match cl.get()? {
            Some(n) => Framing::Length(n),
            None => return Err(HeadError::InvalidContentLength),
        }
    } else {
        Framing::CloseDelimited
    };
    if framing == Framing::CloseDelimited {
        keep_alive = false;
    }

    Ok(Some(ParsedResponse {
        head_len: scan.head_len,
        head: ResponseHead { raw: Bytes::new(), status, reason, minor_version, headers, framing, keep_alive },
    }))
}

/// Hop-by-hop header names a proxy must not forward (RFC 9110 7.6.1). Case-insensitive.
pub fn is_hop_by_hop(name: &str) -> bool {
    // by length first: most names are ruled out without comparing a byte
    let candidates: &[&str] = match name.len() {
        2 => &["te"],
        7 => &["trailer", "upgrade"],
        10 => &["connection", "keep-alive"],
        16 => &["proxy-connection"],
        17 => &["transfer-encoding"],
        18 => &["proxy-authenticate"],
        19 => &["proxy-authorization"],
        _ => return false,
    };
    candidates.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Iterate comma-separated tokens of a Connection header value, trimmed, skipping empty elements.
pub fn connection_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    list_tokens(value)
}

// ---------------------------------------------------------------------------
// Head scanning and helpers
// ---------------------------------------------------------------------------

const INTERNAL: HeadError = HeadError::Malformed("header span outside head");

struct HeadScan {
    head_len: usize,
    header_lines: usize,
}

/// Find the end of the head ourselves because httparse accepts bare LF and
/// we must reject it (and obs-fold) before anything interprets the fields.
fn scan_head(buf: &[u8], limits: &Limits) -> Result<Option<HeadScan>, HeadError> {
    // Spans are u32, so a head can never be allowed past that.
    let max = limits.max_head_bytes.min(u32::MAX as usize);
    let scan = buf.get(..buf.len().min(max)).unwrap_or_default();
    let mut prev = 0u8;
    let mut line_start = 0usize;
    let mut seen_start_line = false;
    let mut header_lines = 0usize;
    let mut i = 0;
    while let Some(&b) = scan.get(i) {
        // inside a line (past its first byte, not after a CR) only CR and LF matter: jump to the
        // next one, up to 8 bytes at a time
        if i > line_start && prev != b'\r' {
            // `first_chunk`: a fixed-size read, where copying from a slice would call memcpy
            if let Some(w) = scan.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
                let skip = plain_prefix(u64::from_le_bytes(*w));
                if skip > 0 {
                    prev = w[skip - 1];
                    i += skip;
                    continue;
                }
            }
        }
        if prev == b'\r' && b != b'\n' {
            return Err(HeadError::Malformed("bare CR in head"));
        }
        match b {
            b'\n' => {
                if prev != b'\r' {
                    return Err(HeadError::BareLf);
                }
                let line_len = i + 1 - line_start;
                if line_len == 2 {
                    if seen_start_line {
                        return Ok(Some(HeadScan { head_len: i + 1, header_lines }));
                    }
                    // Empty lines before the start line are tolerated (RFC 9112 2.2).
                } else if seen_start_line {
                    header_lines += 1;
                    if header_lines > limits.max_headers {
                        return Err(HeadError::TooManyHeaders);
                    }
                } else {
                    seen_start_line = true;
                }
                line_start = i + 1;
            }
            b' ' | b'\t' if seen_start_line && i == line_start => return Err(HeadError::ObsFold),
            _ => {}
        }
        prev = b;
        i += 1;
    }
    if buf.len() > max {
        return Err(HeadError::HeadTooLarge);
    }
    Ok(None)
}

/// How many bytes of `w` (little-endian: its first bytes in memory are the low ones) come before
/// the first CR or LF; 8 if there is none.
#[inline]
fn plain_prefix(w: u64) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // the classic zero-byte test on w ^ (byte repeated): borrows can only flag bytes above a
    // real match, so the lowest flag is exact
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let hits = zero(w ^ (LO * u64::from(b'\r'))) | zero(w ^ (LO * u64::from(b'\n')));
    (hits.trailing_zeros() / 8) as usize
}

fn map_httparse_error(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::HeaderName | httparse::Error::HeaderValue => HeadError::InvalidHeaderValue,
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending"),
        httparse::Error::Status => HeadError::Malformed("invalid status line"),
        httparse::Error::Token => HeadError::Malformed("invalid request line"),
        httparse::Error::Version => HeadError::Malformed("invalid HTTP version"),
    }
}

/// First non-empty line of the head, without its CRLF.
fn first_line(head: &[u8]) -> &[u8] {
    head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).find(|l| !l.is_empty()).unwrap_or_default()
}

/// A well-formed but different version deserves 505; garbage deserves 400.
fn version_error(line: &[u8], request: bool) -> HeadError {
    let version = if request { line.rsplit(|&b| b == b' ').next() } else { line.split(|&b| b == b' ').next() };
    match version {
        Some([b'H', b'T', b'T', b'P', b'/', major, b'.', minor])
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            HeadError::UnsupportedVersion
        }
        _ => HeadError::Malformed("invalid HTTP version"),
    }
}

/// Reason phrase of a status line: whatever follows "HTTP/1.x NNN ".
fn reason_span(head: &[u8]) -> Option<Span> {
    let line = first_line(head);
    let base = span_in(head, line)?;
    let offset = match line.get(12) {
        Some(b' ') => 13,
        _ => line.len(),
    };
    let offset = u32::try_from(offset.min(line.len())).ok()?;
    Some(Span { start: base.start.checked_add(offset)?, end: base.end })
}

/// Position of `sub` inside `base`, by pointer arithmetic, since httparse hands back sub-slices.
fn span_in(base: &[u8], sub: &[u8]) -> Option<Span> {
    let start = (sub.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
    let end = start.checked_add(sub.len())?;
    if end > base.len() {
        return None;
    }
    Some(Span { start: u32::try_from(start).ok()?, end: u32::try_from(end).ok()? })
}

fn collect_spans(head: &[u8], parsed: &[httparse::Header<'_>]) -> Result<Vec<HeaderSpan>, HeadError> {
    let mut out = Vec::with_capacity(parsed.len());
    for h in parsed {
        let name = span_in(head, h.name.as_bytes()).ok_or(INTERNAL)?;
        let value = match span_in(head, h.value) {
            Some(v) => v,
            // An empty value's position is irrelevant; anchor it after the name.
            None if h.value.is_empty() => Span { start: name.end, end: name.end },
            None => return Err(INTERNAL),
        };
        out.push(HeaderSpan { name, value });
    }
    Ok(out)
}

fn span_str(raw: &[u8], span: Span) -> &str {
    as_str(span.slice(raw)).unwrap_or_default()
}

/// `b` as text, or `None` if it is not UTF-8. Methods, targets, names and most values are ASCII,
/// which a word-wise test confirms for less than full UTF-8 validation costs on short strings.
#[inline]
fn as_str(b: &[u8]) -> Option<&str> {
    if b.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        std::str::from_utf8(b).ok()
    }
}

fn find_header<'a>(raw: &'a [u8], headers: &[HeaderSpan], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.slice(raw).eq_ignore_ascii_case(name.as_bytes())).map(|h| h.value.slice(raw))
}

fn iter_headers<'a>(raw: &'a [u8], headers: &'a [HeaderSpan]) -> impl Iterator<Item = (&'a str, &'a [u8])> {
    headers.iter().map(move |h| (span_str(raw, h.name), h.value.slice(raw)))
}

fn header_values<'a>(raw: &'a [u8], headers: &'a [HeaderSpan], name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |h| h.name.slice(raw).eq_ignore_ascii_case(name.as_bytes()))
        .map(move |h| h.value.slice(raw))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9110 5.6.1: recipients ignore empty list elements.
fn list_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows).filter(|t| !t.is_empty())
}

/// All Content-Length values must be 1*DIGIT and agree (RFC 9110 8.6);
/// identical repeats collapse to one value.
/// Fed each Content-Length value in order during the one pass over the fields, so no second
/// search for them is needed; the first fault is the answer, as if all were checked at the end.
#[derive(Default)]
struct ContentLength {
    found: Option<u64>,
    fault: Option<HeadError>,
}

impl ContentLength {
    fn add(&mut self, value: &[u8]) {
        if self.fault.is_some() {
            return;
        }
        for elem in value.split(|&b| b == b',') {
            let Some(n) = parse_decimal(trim_ows(elem)) else {
                self.fault = Some(HeadError::InvalidContentLength);
                return;
            };
            match self.found {
                None => self.found = Some(n),
                Some(prev) if prev == n => {}
                Some(_) => {
                    self.fault = Some(HeadError::DuplicateContentLength);
                    return;
                }
            }
        }
    }

    fn get(&self) -> Result<Option<u64>, HeadError> {
        match self.fault {
            Some(e) => Err(e),
            None => Ok(self.found),
        }
    }
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[derive(Default)]
struct ConnectionFlags {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
}

impl ConnectionFlags {
    fn add(&mut self, value: &[u8]) {
        for t in list_tokens(value) {
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if t.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            }
        }
    }

    fn keep_alive(&self, minor_version: u8) -> bool {
        !self.close && (minor_version >= 1 || self.keep_alive)
    }
}

/// Split an absolute-form target into (authority, rest starting at path/query).
fn absolute_form_split(target: &str) -> Option<(&str, &str)> {
    // The scheme holds no ':', so its end is the first ':' and must be followed by "//": the same
    // answer as searching for "://", without a substring searcher on every origin-form target.
    if !target.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) {
        return None;
    }
    let (scheme, rest) = target.split_once(':')?;
    let rest = rest.strip_prefix("//")?;
    let mut chars = scheme.bytes();
    if !chars.next()?.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some((rest.get(..end)?, rest.get(end..)?))
}

/// uri-host [":" port] characters only; '@' (userinfo) is refused because
/// it is a classic vector for host confusion between proxy and origin.
fn is_valid_authority(value: &[u8], allow_empty: bool) -> bool {
    if value.is_empty() {
        return allow_empty;
    }
    value.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
                    | b'%'
            )
    })
}

// ---------------------------------------------------------------------------
// Chunked decoding
// ---------------------------------------------------------------------------

/// Longest accepted chunk-size line (size plus extensions, without CRLF).
const MAX_CHUNK_LINE: usize = 4096;
/// Default cap on the trailer section size.
const DEFAULT_MAX_TRAILER_BYTES: usize = 16 * 1024;

/// One step of chunked decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// buf[start..start+len] is payload; `consumed` bytes (>= start+len) of buf are used up.
    Data {
        /// Offset of the payload in the buffer passed to `decode`.
        start: usize,
        /// Payload length (never 0).
        len: usize,
        /// Bytes of the buffer used up, framing included.
        consumed: usize,
    },
    /// Need more input; `consumed` bytes were used up (framing bytes), call again with more.
    NeedMore {
        /// Bytes of the buffer used up.
        consumed: usize,
    },
    /// Last chunk and trailers are complete; `consumed` bytes used up. Bytes after that belong to the next message.
    Done {
        /// Bytes of the buffer used up.
        consumed: usize,
    },
}

/// Why a chunked body was rejected.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// Chunk size is non-hex, empty, too long, signed or has junk around it.
    #[error("invalid chunk size")]
    BadSize,
    /// Chunk size line including extensions exceeds 4096 bytes.
    #[error("chunk size line too long")]
    LineTooLong,
    /// Chunk data not followed by CRLF, or a bare LF / bare CR in framing.
    #[error("missing CRLF in chunked framing")]
    MissingCrlf,
    /// Trailer section exceeds the limit.
    #[error("chunked trailer section too large")]
    TrailersTooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizePhase {
    Digits,
    /// Whitespace after the size; only legal before ';'.
    Bws,
    Ext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size { digits: u8, value: u64, line_len: usize, phase: SizePhase },
    SizeLf { value: u64 },
    Data { remaining: u64 },
    DataCr,
    DataLf,
    TrailerLineStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
    Failed(ChunkError),
}

const SIZE_START: ChunkState = ChunkState::Size { digits: 0, value: 0, line_len: 0, phase: SizePhase::Digits };

/// Incremental decoder for a chunked body. Feed it the bytes you have; it tells you which are payload.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    trailer_bytes: usize,
    max_trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// Decoder with a 16 KiB trailer limit.
    pub fn new() -> Self {
        Self::with_max_trailer_bytes(DEFAULT_MAX_TRAILER_BYTES)
    }

    /// Decoder with a custom trailer section limit.
    pub fn with_max_trailer_bytes(max_trailer_bytes: usize) -> Self {
        ChunkedDecoder { state: SIZE_START, trailer_bytes: 0, max_trailer_bytes }
    }

    /// Whether the last chunk and trailers have been fully consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decode every complete piece in `buf` (same rule as [`ChunkedDecoder::decode`]), handing
    /// each payload's range in `buf` to `on_data`. Returns the bytes consumed and whether the
    /// body ended.
    pub fn decode_available(
        &mut self,
        buf: &[u8],
        mut on_data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<(usize, bool), ChunkError> {
        let mut pos = 0;
        loop {
            match self.decode(&buf[pos..])? {
                Chunk::Data { start, len, consumed } => {
                    on_data(pos + start..pos + start + len);
                    pos += consumed;
                }
                Chunk::NeedMore { consumed } => return Ok((pos + consumed, false)),
                Chunk::Done { consumed } => return Ok((pos + consumed, true)),
            }
        }
    }

    /// Decode from `buf`, which must start right after the bytes consumed by the previous call.
    /// After an error the decoder stays failed and keeps returning that error.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Chunk, ChunkError> {
        let mut pos = 0usize;
        loop {
            match self.state {
                ChunkState::Done => return Ok(Chunk::Done { consumed: pos }),
                ChunkState::Failed(e) => return Err(e),
                ChunkState::Data { remaining } => {
                    let avail = buf.len().saturating_sub(pos);
                    if avail == 0 {
                        return Ok(Chunk::NeedMore { consumed: pos });
                    }
                    let take = usize::try_from(remaining).map_or(avail, |r| r.min(avail));
                    let left = remaining.saturating_sub(take as u64);
                    self.state = if left == 0 { ChunkState::DataCr } else { ChunkState::Data { remaining: left } };
                    return Ok(Chunk::Data { start: pos, len: take, consumed: pos + take });
                }
                _ => {
                    let Some(&b) = buf.get(pos) else {
                        return Ok(Chunk::NeedMore { consumed: pos });
                    };
                    pos += 1;
                    match self.step(b) {
                        Ok(next) => self.state = next,
                        Err(e) => {
                            self.state = ChunkState::Failed(e);
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    fn step(&mut self, b: u8) -> Result<ChunkState, ChunkError> {
        use ChunkState as S;
        Ok(match self.state {
            S::Size { digits, value, line_len, phase } => {
                if b == b'\r' {
                    if digits == 0 || phase == SizePhase::Bws {
                        return Err(ChunkError::BadSize);
                    }
                    return Ok(S::SizeLf { value });
                }
                if b == b'\n' {
                    return Err(ChunkError::MissingCrlf);
                }
                let line_len = line_len + 1;
                if line_len > MAX_CHUNK_LINE {
                    return Err(ChunkError::LineTooLong);
                }
                let phase = match phase {
                    SizePhase::Digits => {
                        if let Some(d) = hex_value(b) {
                            // 16 hex digits fill a u64 exactly, so the shift cannot overflow.
                            if digits >= 16 {
                                return Err(ChunkError::BadSize);
                            }
                            return Ok(S::Size {
                                digits: digits + 1,
                                value: (value << 4) | u64::from(d),
                                line_len,
                                phase,
                            });
                        }
                        if digits == 0 {
                            return Err(ChunkError::BadSize);
                        }
                        match b {
                            b';' => SizePhase::Ext,
                            b' ' | b'\t' => SizePhase::Bws,
                            _ => return Err(ChunkError::BadSize),
                        }
                    }
                    SizePhase::Bws => match b {
                        b';' => SizePhase::Ext,
                        b' ' | b'\t' => SizePhase::Bws,
                        _ => return Err(ChunkError::BadSize),
                    },
                    SizePhase::Ext => {
                        if b != b'\t' && (b < 0x20 || b == 0x7f) {
                            return Err(ChunkError::BadSize);
                        }
                        SizePhase::Ext
                    }
                };
                S::Size { digits, value, line_len, phase }
            }
            S::SizeLf { value } => match (b, value) {
                (b'\n', 0) => S::TrailerLineStart,
                (b'\n', remaining) => S::Data { remaining },
                _ => return Err(ChunkError::MissingCrlf),
            },
            S::DataCr => match b {
                b'\r' => S::DataLf,
                _ => return Err(ChunkError::MissingCrlf),
            },
            S::DataLf => match b {
                b'\n' => SIZE_START,
                _ => return Err(ChunkError::MissingCrlf),
            },
            S::TrailerLineStart => match b {
                b'\r' => S::FinalLf,
                b'\n' => return Err(ChunkError::MissingCrlf),
                _ => {
                    self.count_trailer(1)?;
                    S::TrailerLine
                }
            },
            S::TrailerLine => match b {
                b'\r' => S::TrailerLf,
                b'\n' => return Err(ChunkError::MissingCrlf),
                _ => {
                    self.count_trailer(1)?;
                    S::TrailerLine
                }
            },
            S::TrailerLf => match b {
                b'\n' => {
                    self.count_trailer(2)?;
                    S::TrailerLineStart
                }
                _ => return Err(ChunkError::MissingCrlf),
            },
            S::FinalLf => match b {
                b'\n' => S::Done,
                _ => return Err(ChunkError::MissingCrlf),
            },
            // decode() never steps in these states.
            s @ (S::Data { .. } | S::Done | S::Failed(_)) => s,
        })
    }

    fn count_trailer(&mut self, n: usize) -> Result<(), ChunkError> {
        self.trailer_bytes = self.trailer_bytes.saturating_add(n);
        if self.trailer_bytes > self.max_trailer_bytes {
            return Err(ChunkError::TrailersTooLarge);
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Serialization
// ---------------------------------------------------------------------------

/// Bytes that follow each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The last chunk with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Append a chunk-size line: `"{len:x}\r\n"`.
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    let bits = usize::BITS - len.leading_zeros();
    let digits = bits.div_ceil(4).max(1);
    for i in (0..digits).rev() {
        // Masked to a nibble, so the cast is lossless.
        let nibble = ((len >> (i * 4)) & 0xf) as u8;
        out.push(if nibble < 10 { b'0' + nibble } else { b'a' + nibble - 10 });
    }
    out.extend_from_slice(b"\r\n");
}

/// Append `"HTTP/1.1 {status} {reason}\r\n"` with the canonical reason phrase.
pub fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(out, status);
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_decimal(out: &mut Vec<u8>, n: u16) {
    write_u64(out, u64::from(n));
}

/// Append `n` in decimal, without going through `fmt` or a temporary `String`.
pub fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        // Always < 10, so the cast is lossless.
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

/// Append an IP address as text (dotted quad, or RFC 5952 for IPv6), without a temporary `String`.
pub fn write_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    text[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    text[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                text[n] = b'0' + octet % 10;
                n += 1;
            }
            out.extend_from_slice(text.get(..n).unwrap_or_default());
        }
        // rare on this path; `fmt` into the buffer itself still allocates nothing
        std::net::IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Canonical reason phrase for common status codes, "Unknown" otherwise.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Append `"name: value\r\n"`. CR, LF and NUL are replaced by spaces so a
/// value taken from elsewhere can never split the head (response splitting).
pub fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    write_clean(out, name.as_bytes());
    out.extend_from_slice(b": ");
    write_clean(out, value);
    out.extend_from_slice(b"\r\n");
}

/// Append `bytes` with CR, LF and NUL replaced by spaces; bytes without them (all of a parsed
/// head's) are copied whole.
fn write_clean(out: &mut Vec<u8>, bytes: &[u8]) {
    // no early exit, so the check runs over whole words
    let dirty = bytes.iter().fold(false, |d, &b| d | matches!(b, b'\r' | b'\n' | 0));
    if dirty {
        out.extend(bytes.iter().map(|&b| if matches!(b, b'\r' | b'\n' | 0) { b' ' } else { b }));
    } else {
        out.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_available_hands_out_every_complete_piece() {
        let wire = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\n";
        let mut dec = ChunkedDecoder::new();
        let mut got = Vec::new();
        // a cut inside the second chunk: only the first comes out, and decoding resumes after it
        let (used, done) = dec.decode_available(&wire[..15], |r| got.extend_from_slice(&wire[r])).unwrap();
        assert!(!done);
        let (rest, done) = dec.decode_available(&wire[used..], |r| got.extend_from_slice(&wire[used..][r])).unwrap();
        assert_eq!((done, used + rest, got.as_slice()), (true, wire.len(), &b"helloabc"[..]));
    }

    fn parse_req(buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        parse_req_with(buf, &Limits::default())
    }

    fn parse_req_with(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, HeadError> {
        Ok(parse_request(buf, limits)?.map(|p| {
            assert!(p.head_len <= buf.len());
            let raw = Bytes::copy_from_slice(&buf[..p.head_len]);
            p.into_head(raw)
        }))
    }

    fn req(buf: &[u8]) -> RequestHead {
        parse_req(buf).expect("parse ok").expect("complete head")
    }

    fn req_err(buf: &[u8]) -> HeadError {
        parse_req(buf).expect_err("parse should fail")
    }

    fn parse_resp(buf: &[u8], was_head: bool) -> Result<Option<ResponseHead>, HeadError> {
        Ok(parse_response(buf, &Limits::default(), was_head)?.map(|p| {
            assert!(p.head_len <= buf.len());
            let raw = Bytes::copy_from_slice(&buf[..p.head_len]);
            p.into_head(raw)
        }))
    }

    fn resp(buf: &[u8]) -> ResponseHead {
        parse_resp(buf, false).expect("parse ok").expect("complete head")
    }

    fn resp_err(buf: &[u8]) -> HeadError {
        parse_resp(buf, false).expect_err("parse should fail")
    }

    fn with_headers(lines: &str) -> Vec<u8> {
        format!("POST /u HTTP/1.1\r\nHost: a\r\n{lines}\r\n").into_bytes()
    }

    // ---- requests -------------------------------------------------------

    #[test]
    fn realistic_request_with_three_headers() {
        let buf = b"POST /v1/chat/completions?stream=true&x=1 HTTP/1.1\r\n\
Host: api.example.com:8443\r\n\
Content-Type: application/json\r\n\
Content-Length: 13\r\n\
\r\n\
{\"model\":\"x\"}";
        let p = parse_request(buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(p.head_len, buf.len() - 13);
        assert_eq!(p.framing(), Framing::Length(13));
        let h = p.into_head(Bytes::copy_from_slice(&buf[..buf.len() - 13]));
        assert_eq!(h.method(), "POST");
        assert_eq!(h.target(), "/v1/chat/completions?stream=true&x=1");
        assert_eq!(h.path(), "/v1/chat/completions");
        assert_eq!(h.query(), Some("stream=true&x=1"));
        assert_eq!(h.minor_version, 1);
        assert_eq!(h.framing, Framing::Length(13));
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert!(!h.upgrade);
        assert_eq!(h.host(), Some("api.example.com:8443"));
        assert_eq!(h.header("content-type"), Some(&b"application/json"[..]));
        assert_eq!(h.header_str("CONTENT-LENGTH"), Some("13"));
        assert_eq!(h.header("x-missing"), None);
        let names: Vec<&str> = h.headers().map(|(n, _)| n).collect();
        assert_eq!(names, ["Host", "Content-Type", "Content-Length"]);
        assert_eq!(h.headers.len(), 3);
    }

    #[test]
    fn request_without_query_and_no_body() {
        let h = req(b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.path(), "/index.html");
        assert_eq!(h.query(), None);
        assert_eq!(h.framing, Framing::None);
        let h = req(b"GET /p? HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.path(), "/p");
        assert_eq!(h.query(), Some(""));
    }

    #[test]
    fn incomplete_prefixes_return_none_until_complete() {
        let buf = b"GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nBODY";
        let head_len = buf.len() - 4;
        for n in 0..head_len {
            assert!(parse_req(&buf[..n]).unwrap().is_none(), "prefix {n}");
        }
        for n in head_len..=buf.len() {
            let p = parse_request(&buf[..n], &Limits::default()).unwrap().unwrap();
            assert_eq!(p.head_len, head_len);
        }
    }

    #[test]
    fn terminator_detection_with_crlf_in_body() {
        // The body itself starts with CRLF; the head must end at the first blank line.
        let buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n\r\n\r\n";
        let p = parse_request(buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(p.head_len, buf.len() - 4);
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = req(buf);
        assert_eq!(h.raw.len(), buf.len());
        assert_eq!(h.method(), "GET");
        assert_eq!(h.target(), "/");
    }

    #[test]
    fn bare_lf_is_rejected_in_requests() {
        // Prove httparse alone would accept this, so the check is ours.
        let sneaky = b"GET / HTTP/1.1\nHost: a\n\n";
        let mut hs = [httparse::EMPTY_HEADER; 4];
        assert!(httparse::Request::new(&mut hs).parse(sneaky).unwrap().is_complete());
        assert_eq!(req_err(sneaky), HeadError::BareLf);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a\n\r\n"), HeadError::BareLf);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a\r\n\n"), HeadError::BareLf);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nX: a\nHost: a\r\n\r\n"), HeadError::BareLf);
        // Detected before the head is complete.
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a\n"), HeadError::BareLf);
        assert_eq!(req_err(b"\n"), HeadError::BareLf);
        // A bare LF in the body is not the head's business.
        let h = req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n\n\n");
        assert_eq!(h.framing, Framing::Length(2));
    }

    #[test]
    fn bare_lf_is_rejected_in_responses() {
        assert_eq!(resp_err(b"HTTP/1.1 200 OK\nContent-Length: 0\n\n"), HeadError::BareLf);
        assert_eq!(resp_err(b"HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n"), HeadError::BareLf);
    }

    #[test]
    fn bare_cr_is_rejected() {
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), HeadError::Malformed("bare CR in head"));
    }

    #[test]
    fn obs_fold_is_rejected() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n";
        // httparse reports a generic header-name error for this; we must be specific.
        let mut hs = [httparse::EMPTY_HEADER; 4];
        assert!(httparse::Request::new(&mut hs).parse(buf).is_err());
        assert_eq!(req_err(buf), HeadError::ObsFold);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n"), HeadError::ObsFold);
        // Whitespace before the first header is folded-line territory too.
        assert_eq!(req_err(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"), HeadError::ObsFold);
        // Detected on an incomplete head.
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a\r\n c"), HeadError::ObsFold);
        assert_eq!(resp_err(b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n"), HeadError::ObsFold);
    }

    #[test]
    fn content_length_with_transfer_encoding_is_rejected() {
        let e = req_err(&with_headers("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"));
        assert_eq!(e, HeadError::ContentLengthWithTransferEncoding);
        let e = req_err(&with_headers("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"));
        assert_eq!(e, HeadError::ContentLengthWithTransferEncoding);
        assert_eq!(e.to_string(), "request has both Content-Length and Transfer-Encoding");
    }

    #[test]
    fn content_length_duplicates_and_lists() {
        let ok = |l: &str| req(&with_headers(l)).framing;
        assert_eq!(ok("Content-Length: 5\r\n"), Framing::Length(5));
        assert_eq!(ok("Content-Length: 5, 5\r\n"), Framing::Length(5));
        assert_eq!(ok("Content-Length: 5,5\r\n"), Framing::Length(5));
        assert_eq!(ok("Content-Length: 5\r\ncontent-length: 5\r\n"), Framing::Length(5));
        assert_eq!(ok("Content-Length: 0\r\n"), Framing::Length(0));
        assert_eq!(ok("Content-Length: 18446744073709551615\r\n"), Framing::Length(u64::MAX));
        let err = |l: &str| req_err(&with_headers(l));
        assert_eq!(err("Content-Length: 5, 6\r\n"), HeadError::DuplicateContentLength);
        assert_eq!(err("Content-Length: 5\r\nContent-Length: 6\r\n"), HeadError::DuplicateContentLength);
        for bad in ["+5", "-1", " 5x", "5x", "", "5,", ",5", "0x5", "5 5", "18446744073709551616"] {
            assert_eq!(err(&format!("Content-Length: {bad}\r\n")), HeadError::InvalidContentLength, "value {bad:?}");
        }
    }

    #[test]
    fn transfer_encoding_rules() {
        let ok = |l: &str| req(&with_headers(l)).framing;
        assert_eq!(ok("Transfer-Encoding: chunked\r\n"), Framing::Chunked);
        assert_eq!(ok("Transfer-Encoding: CHUNKED\r\n"), Framing::Chunked);
        assert_eq!(ok("Transfer-Encoding:   Chunked  \r\n"), Framing::Chunked);
        let err = |l: &str| req_err(&with_headers(l));
        for bad in [
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked, gzip\r\n",
            "Transfer-Encoding: gzip\r\n",
            "Transfer-Encoding: chunked, chunked\r\n",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: identity\r\n",
            "Transfer-Encoding: chunked;q=1\r\n",
            "Transfer-Encoding: \r\n",
        ] {
            assert_eq!(err(bad), HeadError::UnsupportedTransferEncoding, "{bad:?}");
        }
        assert_eq!(
            req_err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HeadError::Malformed("transfer-encoding in HTTP/1.0 request")
        );
    }

    #[test]
    fn head_size_limit() {
        let limits = Limits { max_head_bytes: 64, max_headers: 100 };
        // Incomplete and within the limit: keep reading.
        let mut buf = b"GET / HTTP/1.1\r\nX: ".to_vec();
        buf.resize(64, b'a');
        assert!(parse_req_with(&buf, &limits).unwrap().is_none());
        // One more byte without a terminator: too large, no need to wait.
        buf.push(b'a');
        assert_eq!(parse_req_with(&buf, &limits).unwrap_err(), HeadError::HeadTooLarge);
        // A complete head exactly at the limit is fine...
        let mut head = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        head.resize(64 - 4, b'b');
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(head.len(), 64);
        assert!(parse_req_with(&head, &limits).unwrap().is_some());
        // ...but one byte over is not, even when complete.
        head.insert(30, b'b');
        assert_eq!(parse_req_with(&head, &limits).unwrap_err(), HeadError::HeadTooLarge);
        // Default limit is 16 KiB.
        let mut big = b"GET /".to_vec();
        big.resize(20_000, b'a');
        assert_eq!(req_err(&big), HeadError::HeadTooLarge);
        assert_eq!(HeadError::HeadTooLarge.status(), 431);
    }

    #[test]
    fn header_count_limit() {
        let lines = |n: usize| (0..n).map(|i| format!("X-{i}: v\r\n")).collect::<String>();
        // 99 extra + Host = 100: at the default limit.
        assert_eq!(req(&with_headers(&lines(99))).headers.len(), 100);
        assert_eq!(req_err(&with_headers(&lines(100))), HeadError::TooManyHeaders);
        let small = Limits { max_head_bytes: 16384, max_headers: 3 };
        assert!(parse_req_with(&with_headers(&lines(2)), &small).unwrap().is_some());
        assert_eq!(parse_req_with(&with_headers(&lines(3)), &small).unwrap_err(), HeadError::TooManyHeaders);
        // More headers than the stack slot array exercises the heap fallback.
        let many = Limits { max_head_bytes: 65536, max_headers: 300 };
        let h = parse_req_with(&with_headers(&lines(200)), &many).unwrap().unwrap();
        assert_eq!(h.headers.len(), 201);
        assert_eq!(h.header("x-199"), Some(&b"v"[..]));
        assert_eq!(HeadError::TooManyHeaders.status(), 431);
    }

    #[test]
    fn host_rules() {
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"), HeadError::MissingHost);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), HeadError::MissingHost);
        assert_eq!(req_err(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), HeadError::MissingHost);
        let h = req(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.host(), None);
        // Empty Host is legal when the target has no authority.
        assert_eq!(req(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").host(), Some(""));
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), HeadError::Malformed("invalid Host header"));
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: u@evil\r\n\r\n"), HeadError::Malformed("invalid Host header"));
        assert_eq!(HeadError::MissingHost.status(), 400);
    }

    #[test]
    fn absolute_form_target() {
        let h = req(b"GET http://a.example/x HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!(h.host(), Some("a.example"));
        assert_eq!(h.path(), "/x");
        assert_eq!(h.query(), None);
        let h = req(b"GET https://a.example:8080/x/y?q=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.host(), Some("a.example:8080"));
        assert_eq!(h.path(), "/x/y");
        assert_eq!(h.query(), Some("q=1"));
        let h = req(b"GET http://a.example HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.path(), "/");
        let h = req(b"GET http://a.example?q HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.path(), "/");
        assert_eq!(h.query(), Some("q"));
        assert_eq!(
            req_err(b"GET http://user@a.example/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            HeadError::Malformed("invalid authority in request target")
        );
        assert_eq!(
            req_err(b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"),
            HeadError::Malformed("invalid authority in request target")
        );
        // Origin-form containing "://" later is not absolute-form.
        let h = req(b"GET /r?u=http://x/ HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.path(), "/r");
        assert_eq!(h.host(), Some("a"));
    }

    #[test]
    fn absolute_form_split_agrees_with_a_search_for_the_separator() {
        // the search it replaced: first "://", then the scheme's characters
        fn by_search(target: &str) -> Option<(&str, &str)> {
            let (scheme, rest) = target.split_once("://")?;
            let mut chars = scheme.bytes();
            if !chars.next()?.is_ascii_alphabetic()
                || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
            {
                return None;
            }
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            Some((rest.get(..end)?, rest.get(end..)?))
        }
        let fixed = [
            "http://a/x",
            "h://",
            "://a",
            "1http://a",
            "a:b://c/",
            "a:/b://c",
            "a+b.c-d://h?q",
            "/x://y",
            "http:/x",
            "http:",
            "http",
            "",
            "*",
            "HTTP://A:1#f",
            "ht%tp://a/",
            "a://b://c/d",
        ];
        for t in fixed {
            assert_eq!(absolute_form_split(t), by_search(t), "{t:?}");
        }
        let alphabet = b"ab1:/?#+.%@";
        let mut rng = XorShift(0x5eed);
        for _ in 0..20_000 {
            let len = (rng.next() % 12) as usize;
            let t: String = (0..len).map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize] as char).collect();
            assert_eq!(absolute_form_split(&t), by_search(&t), "{t:?}");
        }
    }

    #[test]
    fn scan_head_agrees_with_a_byte_at_a_time_scan() {
        // the scan before words were skipped, kept as the reference
        fn reference(buf: &[u8], limits: &Limits) -> Result<Option<(usize, usize)>, HeadError> {
            let max = limits.max_head_bytes.min(u32::MAX as usize);
            let scan = buf.get(..buf.len().min(max)).unwrap_or_default();
            let (mut prev, mut line_start, mut seen_start_line, mut header_lines) = (0u8, 0usize, false, 0usize);
            for (i, &b) in scan.iter().enumerate() {
                if prev == b'\r' && b != b'\n' {
                    return Err(HeadError::Malformed("bare CR in head"));
                }
                match b {
                    b'\n' => {
                        if prev != b'\r' {
                            return Err(HeadError::BareLf);
                        }
                        if i + 1 - line_start == 2 {
                            if seen_start_line {
                                return Ok(Some((i + 1, header_lines)));
                            }
                        } else if seen_start_line {
                            header_lines += 1;
                            if header_lines > limits.max_headers {
                                return Err(HeadError::TooManyHeaders);
                            }
                        } else {
                            seen_start_line = true;
                        }
                        line_start = i + 1;
                    }
                    b' ' | b'\t' if seen_start_line && i == line_start => return Err(HeadError::ObsFold),
                    _ => {}
                }
                prev = b;
            }
            if buf.len() > max {
                return Err(HeadError::HeadTooLarge);
            }
            Ok(None)
        }
        let limits = Limits { max_head_bytes: 200, max_headers: 6 };
        let check = |buf: &[u8]| {
            let got = scan_head(buf, &limits).map(|o| o.map(|s| (s.head_len, s.header_lines)));
            assert_eq!(got, reference(buf, &limits), "{:?}", String::from_utf8_lossy(buf));
        };
        let base: &[u8] =
            b"GET /a/long/enough/path?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Longer-Name: a value\r\n\r\n";
        check(base);
        for cut in 0..base.len() {
            check(&base[..cut]);
        }
        let pieces: [&[u8]; 10] =
            [b"\r\n", b"\r", b"\n", b" ", b"\t", b"abcdefgh", b"x", b"Name: v", b"0123456789abcdef", b":"];
        let mut rng = XorShift(0xfeed_f00d);
        for _ in 0..30_000 {
            let mut buf = Vec::new();
            for _ in 0..rng.below(40) {
                buf.extend_from_slice(pieces[rng.below(pieces.len())]);
            }
            check(&buf);
        }
    }

    #[test]
    fn plain_prefix_finds_the_first_cr_or_lf() {
        let at = |b: &[u8; 8]| plain_prefix(u64::from_le_bytes(*b));
        assert_eq!(at(b"abcdefgh"), 8);
        assert_eq!(at(b"\rbcdefgh"), 0);
        assert_eq!(at(b"abc\ne\rgh"), 3);
        assert_eq!(at(b"abcdefg\r"), 7);
        // bytes next to CR/LF in value (0x0c, 0x0e, 0x0b) and high bytes are not matches
        assert_eq!(at(&[0x0c, 0x0e, 0x0b, 0x0f, 0x8d, 0x8a, 0xff, b'\n']), 7);
        let mut rng = XorShift(0x1234_5678);
        for _ in 0..20_000 {
            let mut w = [0u8; 8];
            for b in &mut w {
                *b = [b'\r', b'\n', 0x0c, 0x0b, 0x0e, 0x00, 0xff, b'a'][rng.below(8)];
            }
            assert_eq!(at(&w), w.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(8), "{w:?}");
        }
    }

    #[test]
    fn text_views_accept_utf8_and_refuse_the_rest() {
        assert_eq!(as_str(b"GET"), Some("GET"));
        assert_eq!(as_str(b""), Some(""));
        assert_eq!(as_str("caf\u{e9}".as_bytes()), Some("caf\u{e9}"));
        assert_eq!(as_str(b"caf\xe9"), None);
        let h = req(b"GET / HTTP/1.1\r\nHost: a\r\nX-Latin: caf\xe9\r\nX-Utf8: caf\xc3\xa9\r\n\r\n");
        assert_eq!(h.header_str("x-latin"), None);
        assert_eq!(h.header_str("x-utf8"), Some("caf\u{e9}"));
    }

    #[test]
    fn hop_by_hop_names_in_any_case_and_only_those() {
        for n in ["connection", "Keep-Alive", "PROXY-CONNECTION", "te", "Trailer", "transfer-encoding", "Upgrade"] {
            assert!(is_hop_by_hop(n), "{n}");
        }
        assert!(is_hop_by_hop("Proxy-Authenticate") && is_hop_by_hop("proxy-authorization"));
        for n in ["tE2", "trailers", "upgrader", "connections", "keep_alive", "content-length", "host", ""] {
            assert!(!is_hop_by_hop(n), "{n}");
        }
    }

    #[test]
    fn numbers_and_addresses_are_written_as_display_would() {
        for n in [0u64, 7, 10, 99, 100, 65535, 1 << 40, u64::MAX] {
            let mut out = b"x".to_vec();
            write_u64(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
        let ips: [std::net::IpAddr; 5] = [
            "127.0.0.1".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            "255.10.0.99".parse().unwrap(),
            "::1".parse().unwrap(),
            "2001:db8::ff00:42:8329".parse().unwrap(),
        ];
        for ip in ips {
            let mut out = Vec::new();
            write_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().into_bytes());
        }
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |s: &[u8]| req(s).keep_alive;
        assert!(ka(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: te\r\nConnection: Close\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: foo , Keep-Alive\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
    }

    #[test]
    fn expect_and_upgrade() {
        assert!(req(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n").expect_continue);
        assert!(!req(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n").expect_continue);
        assert!(!req(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
        let up = req(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(up.upgrade);
        assert!(!req(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade);
        assert!(!req(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n").upgrade);
        assert!(!req(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").upgrade);
    }

    #[test]
    fn version_errors() {
        let e = req_err(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n");
        assert_eq!(e, HeadError::UnsupportedVersion);
        assert_eq!(e.status(), 505);
        assert_eq!(req_err(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"), HeadError::UnsupportedVersion);
        assert!(matches!(req_err(b"GET / HTTX/1.1\r\nHost: a\r\n\r\n"), HeadError::Malformed(_)));
        assert_eq!(resp_err(b"HTTP/2.0 200 OK\r\n\r\n"), HeadError::UnsupportedVersion);
        assert!(matches!(resp_err(b"ICY 200 OK\r\n\r\n"), HeadError::Malformed(_)));
    }

    #[test]
    fn dot_segments_are_refused_in_any_spelling() {
        for path in ["/a/../b", "/..", "/a/./b", "/a/.", "/%2e%2E/x", "/a/.%2e/b", "/a/%2E", "http://h/a/../b"] {
            let raw = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(req_err(raw.as_bytes()), HeadError::DotSegment, "{path}");
        }
        for path in ["/a/b.c", "/...", "/a..b/", "/.well-known/x", "/%2e%2e%2e", "/a?x=/../", "/v1.0/..x", "*"] {
            let raw = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert!(parse_req(raw.as_bytes()).is_ok(), "{path} should be accepted");
        }
    }

    #[test]
    fn invalid_header_bytes() {
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"), HeadError::InvalidHeaderValue);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n"), HeadError::InvalidHeaderValue);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), HeadError::InvalidHeaderValue);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n"), HeadError::InvalidHeaderValue);
        assert!(matches!(req_err(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), HeadError::Malformed(_)));
        assert!(matches!(req_err(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), HeadError::Malformed(_)));
    }

    #[test]
    fn header_accessors() {
        let h = req(b"GET / HTTP/1.1\r\nHost: a\r\nX-Bin: \xff\xfe\r\nX-Empty:\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n");
        assert_eq!(h.header("x-bin"), Some(&b"\xff\xfe"[..]));
        assert_eq!(h.header_str("x-bin"), None);
        assert_eq!(h.header("x-empty"), Some(&b""[..]));
        assert_eq!(h.header_str("X-DUP"), Some("1"));
        let all: Vec<(&str, &[u8])> = h.headers().collect();
        assert_eq!(all[3], ("X-Dup", &b"1"[..]));
        assert_eq!(all[4], ("x-dup", &b"2"[..]));
    }

    #[test]
    fn mismatched_raw_does_not_panic() {
        let p = parse_request(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", &Limits::default()).unwrap().unwrap();
        let h = p.into_head(Bytes::from_static(b"GET"));
        assert_eq!(h.method(), "GET");
        assert_eq!(h.target(), "");
        assert_eq!(h.path(), "");
        assert_eq!(h.header("host"), None);
        assert_eq!(h.host(), None);
        assert_eq!(h.headers().next(), Some(("", &b""[..])));
    }

    #[test]
    fn error_labels_and_statuses() {
        let all = [
            HeadError::HeadTooLarge,
            HeadError::TooManyHeaders,
            HeadError::Malformed("x"),
            HeadError::BareLf,
            HeadError::ObsFold,
            HeadError::ContentLengthWithTransferEncoding,
            HeadError::InvalidContentLength,
            HeadError::DuplicateContentLength,
            HeadError::UnsupportedTransferEncoding,
            HeadError::InvalidHeaderValue,
            HeadError::UnsupportedVersion,
            HeadError::MissingHost,
        ];
        let mut labels = std::collections::HashSet::new();
        for e in all {
            let r = e.reason();
            assert!(r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{r}");
            assert!(labels.insert(r), "duplicate label {r}");
            assert!(!e.to_string().is_empty());
            let expected = match e {
                HeadError::HeadTooLarge | HeadError::TooManyHeaders => 431,
                HeadError::UnsupportedVersion => 505,
                _ => 400,
            };
            assert_eq!(e.status(), expected);
        }
        assert_eq!(HeadError::HeadTooLarge.reason(), "head_too_large");
        assert!(HeadError::Malformed("bare CR in head").to_string().contains("bare CR in head"));
    }

    // ---- responses ------------------------------------------------------

    #[test]
    fn sse_response_head() {
        let buf = b"HTTP/1.1 200 OK\r\n\
Content-Type: text/event-stream\r\n\
Cache-Control: no-cache\r\n\
Transfer-Encoding: chunked\r\n\
\r\n\
d\r\ndata: hello\n\n\r\n";
        let p = parse_response(buf, &Limits::default(), false).unwrap().unwrap();
        let body = &buf[p.head_len..];
        assert!(body.starts_with(b"d\r\n"));
        let h = p.into_head(Bytes::copy_from_slice(&buf[..buf.len() - body.len()]));
        assert_eq!(h.status, 200);
        assert_eq!(h.reason(), "OK");
        assert_eq!(h.minor_version, 1);
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.keep_alive);
        assert_eq!(h.header("content-type"), Some(&b"text/event-stream"[..]));
        assert_eq!(h.headers().count(), 3);
        let mut d = ChunkedDecoder::new();
        match d.decode(body).unwrap() {
            Chunk::Data { start, len, .. } => {
                assert_eq!(&body[start..start + len], b"data: hello\n\n")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn response_framing_rules() {
        let fr = |s: &[u8]| resp(s).framing;
        assert_eq!(fr(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"), Framing::None);
        assert_eq!(fr(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"), Framing::None);
        assert_eq!(fr(b"HTTP/1.1 100 Continue\r\n\r\n"), Framing::None);
        assert_eq!(fr(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"), Framing::None);
        let h = parse_resp(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).unwrap().unwrap();
        assert_eq!(h.framing, Framing::None);
        assert!(h.keep_alive);
        assert_eq!(fr(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), Framing::Length(5));
        assert_eq!(fr(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"), Framing::Length(5));
        assert_eq!(fr(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), Framing::Chunked);

        let h = resp(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert_eq!(h.framing, Framing::CloseDelimited);
        assert!(!h.keep_alive);
        let h = resp(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(!h.keep_alive);
        let h = resp(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n");
        assert_eq!(h.framing, Framing::CloseDelimited);
        assert!(!h.keep_alive);

        assert_eq!(resp_err(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"), HeadError::InvalidContentLength);
        assert_eq!(
            resp_err(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n"),
            HeadError::DuplicateContentLength
        );
    }

    #[test]
    fn response_keep_alive_and_reason() {
        let h = resp(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.keep_alive);
        assert_eq!(h.minor_version, 0);
        assert!(resp(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n").keep_alive);
        assert!(!resp(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n").keep_alive);
        let h = resp(b"HTTP/1.1 404 Not Found Here\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.status, 404);
        assert_eq!(h.reason(), "Not Found Here");
        assert_eq!(resp(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").reason(), "");
        assert_eq!(resp(b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n").reason(), "");
        assert!(matches!(resp_err(b"HTTP/1.1 099 X\r\n\r\n"), HeadError::Malformed(_)));
        assert!(parse_resp(b"HTTP/1.1 200 OK\r\nContent-Le", false).unwrap().is_none());
    }

    // ---- hop-by-hop -----------------------------------------------------

    #[test]
    fn hop_by_hop_names() {
        for n in [
            "Connection",
            "keep-alive",
            "Proxy-Connection",
            "TE",
            "trailer",
            "Transfer-Encoding",
            "UPGRADE",
            "proxy-authenticate",
            "Proxy-Authorization",
        ] {
            assert!(is_hop_by_hop(n), "{n}");
        }
        for n in ["content-length", "host", "trailers", "tee", "x-connection", ""] {
            assert!(!is_hop_by_hop(n), "{n}");
        }
    }

    #[test]
    fn connection_token_iteration() {
        let t: Vec<&[u8]> = connection_tokens(b" close ,X-Foo,\t, keep-alive\t").collect();
        assert_eq!(t, [&b"close"[..], b"X-Foo", b"keep-alive"]);
        assert_eq!(connection_tokens(b"").count(), 0);
        assert_eq!(connection_tokens(b" , ,").count(), 0);
    }

    // ---- chunked --------------------------------------------------------

    /// Drive the decoder like a connection loop would, feeding `input` in the
    /// given piece sizes; returns payload and the bytes left after Done.
    fn drive(input: &[u8], pieces: &mut dyn FnMut() -> usize) -> Result<(Vec<u8>, Vec<u8>), ChunkError> {
        let mut dec = ChunkedDecoder::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut payload = Vec::new();
        loop {
            match dec.decode(&pending)? {
                Chunk::Data { start, len, consumed } => {
                    assert!(len > 0 && start + len <= consumed && consumed <= pending.len());
                    payload.extend_from_slice(&pending[start..start + len]);
                    pending.drain(..consumed);
                }
                Chunk::NeedMore { consumed } => {
                    assert!(consumed <= pending.len());
                    pending.drain(..consumed);
                    assert!(fed < input.len(), "decoder wants more than the input has");
                    let n = pieces().clamp(1, input.len() - fed);
                    pending.extend_from_slice(&input[fed..fed + n]);
                    fed += n;
                }
                Chunk::Done { consumed } => {
                    assert!(dec.is_done());
                    pending.drain(..consumed);
                    pending.extend_from_slice(&input[fed..]);
                    return Ok((payload, pending));
                }
            }
        }
    }

    fn decode_whole(input: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ChunkError> {
        drive(input, &mut || usize::MAX)
    }

    const BODY: &[u8] = b"5\r\nhello\r\n1A;name=val;x\r\nabcdefghijklmnopqrstuvwxyz\r\n\
1a \t;e\r\nABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n3\r\n\r\n\n\r\n0;last\r\nX-T: 1\r\nX-U: 2\r\n\r\nNEXT";

    fn body_payload() -> Vec<u8> {
        let mut p = b"hello".to_vec();
        p.extend_from_slice(b"abcdefghijklmnopqrstuvwxyz");
        p.extend_from_slice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ");
        p.extend_from_slice(b"\r\n\n");
        p
    }

    #[test]
    fn chunked_whole_body() {
        let (payload, rest) = decode_whole(BODY).unwrap();
        assert_eq!(payload, body_payload());
        assert_eq!(rest, b"NEXT");
    }

    #[test]
    fn chunked_byte_by_byte_and_random_splits() {
        let (payload, rest) = drive(BODY, &mut || 1).unwrap();
        assert_eq!(payload, body_payload());
        assert_eq!(rest, b"NEXT");
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..500 {
            let max = 1 + rng.below(20);
            let (payload, rest) = drive(BODY, &mut || 1 + rng.below(max)).unwrap();
            assert_eq!(payload, body_payload());
            assert_eq!(rest, b"NEXT");
        }
    }

    #[test]
    fn chunked_data_may_come_in_pieces() {
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.decode(b"a\r\n0123").unwrap(), Chunk::Data { start: 3, len: 4, consumed: 7 });
        assert_eq!(d.decode(b"").unwrap(), Chunk::NeedMore { consumed: 0 });
        assert_eq!(d.decode(b"456789\r").unwrap(), Chunk::Data { start: 0, len: 6, consumed: 6 });
        assert_eq!(d.decode(b"\r").unwrap(), Chunk::NeedMore { consumed: 1 });
        assert_eq!(d.decode(b"\n0\r\n\r\nGET").unwrap(), Chunk::Done { consumed: 6 });
        assert!(d.is_done());
        assert_eq!(d.decode(b"GET").unwrap(), Chunk::Done { consumed: 0 });
    }

    #[test]
    fn chunk_sizes() {
        let first = |s: &[u8]| ChunkedDecoder::new().decode(s);
        // A size line with no data yet yields NeedMore, never empty Data.
        assert_eq!(first(b"1A\r\n").unwrap(), Chunk::NeedMore { consumed: 4 });
        assert_eq!(decode_whole(b"1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n").unwrap().0.len(), 26);
        assert_eq!(decode_whole(b"1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n").unwrap().0.len(), 26);
        assert_eq!(decode_whole(b"5;foo=bar\r\nhello\r\n0\r\n\r\n").unwrap().0, b"hello");
        assert_eq!(decode_whole(b"5 ;foo\r\nhello\r\n0\r\n\r\n").unwrap().0, b"hello");
        assert_eq!(decode_whole(b"005\r\nhello\r\n0\r\n\r\n").unwrap().0, b"hello");
        // 16 hex digits is the maximum accepted.
        assert!(matches!(first(b"ffffffffffffffff\r\nx").unwrap(), Chunk::Data { len: 1, .. }));
        for bad in [
            &b"0x5\r\n"[..],
            b"-5\r\n",
            b"+5\r\n",
            b" 5\r\n",
            b"5 \r\n",
            b"5\t\r\n",
            b"\r\n",
            b";ext\r\n",
            b"g\r\n",
            b"5x\r\n",
            b"10000000000000000\r\n",
            b"00000000000000005\r\n",
            b"5;a\x00b\r\n",
        ] {
            assert_eq!(first(bad), Err(ChunkError::BadSize), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn chunk_line_too_long() {
        let mut line = b"5;".to_vec();
        line.resize(4096, b'a');
        line.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(decode_whole(&line).unwrap().0, b"hello");
        let mut line = b"5;".to_vec();
        line.resize(4097, b'a');
        assert_eq!(ChunkedDecoder::new().decode(&line), Err(ChunkError::LineTooLong));
    }

    #[test]
    fn chunk_missing_crlf() {
        let first = |s: &[u8]| ChunkedDecoder::new().decode(s);
        // Bare LF after the size line.
        assert_eq!(first(b"5\nhello"), Err(ChunkError::MissingCrlf));
        assert_eq!(first(b"5;x\nhello"), Err(ChunkError::MissingCrlf));
        assert_eq!(first(b"5\rhello"), Err(ChunkError::MissingCrlf));
        assert_eq!(decode_whole(b"5\r\nhelloXX0\r\n\r\n"), Err(ChunkError::MissingCrlf));
        assert_eq!(decode_whole(b"5\r\nhello\n0\r\n\r\n"), Err(ChunkError::MissingCrlf));
        assert_eq!(decode_whole(b"5\r\nhello\rX0\r\n\r\n"), Err(ChunkError::MissingCrlf));
        assert_eq!(decode_whole(b"0\r\nX: 1\n\r\n"), Err(ChunkError::MissingCrlf));
        assert_eq!(decode_whole(b"0\r\n\n"), Err(ChunkError::MissingCrlf));
        assert_eq!(decode_whole(b"0\r\n\rX"), Err(ChunkError::MissingCrlf));
        // Errors are sticky.
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.decode(b"5\nhello"), Err(ChunkError::MissingCrlf));
        assert_eq!(d.decode(b"5\r\nhello"), Err(ChunkError::MissingCrlf));
        assert!(!d.is_done());
    }

    #[test]
    fn chunk_trailers() {
        let input = b"0\r\nX-T: 1\r\n\r\n";
        assert_eq!(ChunkedDecoder::new().decode(input).unwrap(), Chunk::Done { consumed: input.len() });
        let (payload, rest) = decode_whole(b"0\r\nX-T: 1\r\nX-U: 2\r\n\r\nHTTP/1.1").unwrap();
        assert!(payload.is_empty());
        assert_eq!(rest, b"HTTP/1.1");
        let mut d = ChunkedDecoder::with_max_trailer_bytes(10);
        assert_eq!(d.decode(b"0\r\nX-T: 123\r\n\r\n").unwrap(), Chunk::Done { consumed: 15 });
        let mut d = ChunkedDecoder::with_max_trailer_bytes(10);
        assert_eq!(d.decode(b"0\r\nX-T: 1234\r\n\r\n"), Err(ChunkError::TrailersTooLarge));
        let mut big = b"0\r\n".to_vec();
        for _ in 0..2000 {
            big.extend_from_slice(b"X-Trailer: v\r\n");
        }
        big.extend_from_slice(b"\r\n");
        assert_eq!(ChunkedDecoder::new().decode(&big), Err(ChunkError::TrailersTooLarge));
    }

    // ---- serialization --------------------------------------------------

    #[test]
    fn chunk_serialization_round_trips() {
        let mut out = Vec::new();
        write_chunk_header(&mut out, 0);
        assert_eq!(out, b"0\r\n");
        out.clear();
        write_chunk_header(&mut out, 26);
        assert_eq!(out, b"1a\r\n");
        out.clear();
        write_chunk_header(&mut out, 0x1000);
        assert_eq!(out, b"1000\r\n");
        out.clear();
        write_chunk_header(&mut out, usize::MAX);
        assert_eq!(out, b"ffffffffffffffff\r\n");

        let parts: [&[u8]; 3] = [b"hello ", &[b'x'; 300], b"world"];
        let mut body = Vec::new();
        for p in parts {
            write_chunk_header(&mut body, p.len());
            body.extend_from_slice(p);
            body.extend_from_slice(CHUNK_END);
        }
        body.extend_from_slice(LAST_CHUNK);
        let (payload, rest) = decode_whole(&body).unwrap();
        assert_eq!(payload, parts.concat());
        assert!(rest.is_empty());
    }

    #[test]
    fn status_line_and_reasons() {
        let line = |s: u16| {
            let mut out = Vec::new();
            write_status_line(&mut out, s);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(line(200), "HTTP/1.1 200 OK\r\n");
        assert_eq!(line(404), "HTTP/1.1 404 Not Found\r\n");
        assert_eq!(line(431), "HTTP/1.1 431 Request Header Fields Too Large\r\n");
        assert_eq!(line(599), "HTTP/1.1 599 Unknown\r\n");
        assert_eq!(line(0), "HTTP/1.1 0 Unknown\r\n");
        assert_eq!(line(65535), "HTTP/1.1 65535 Unknown\r\n");
        for s in [
            100, 101, 200, 201, 202, 203, 204, 205, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 406,
            408, 409, 411, 413, 414, 415, 421, 429, 431, 500, 501, 502, 503, 504, 505,
        ] {
            assert_ne!(reason_phrase(s), "Unknown", "{s}");
        }
        assert_eq!(reason_phrase(418), "Unknown");
        assert_eq!(reason_phrase(502), "Bad Gateway");
        // What we write parses back.
        let mut out = Vec::new();
        write_status_line(&mut out, 503);
        write_header(&mut out, "Content-Length", b"0");
        out.extend_from_slice(b"\r\n");
        let h = resp(&out);
        assert_eq!((h.status, h.reason()), (503, "Service Unavailable"));
    }

    #[test]
    fn write_header_cannot_split_the_head() {
        let mut out = Vec::new();
        write_header(&mut out, "X-A", b"v1");
        assert_eq!(out, b"X-A: v1\r\n");
        out.clear();
        write_header(&mut out, "X-B", b"evil\r\nSet-Cookie: x\0");
        assert_eq!(out, b"X-B: evil  Set-Cookie: x \r\n");
        out.clear();
        write_header(&mut out, "X-\rC", b"\n");
        assert_eq!(out, b"X- C:  \r\n");
    }

    // ---- property-style fuzzing ----------------------------------------

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    const SEEDS: [&[u8]; 6] = [
        b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: ws\r\n\r\n",
        b"POST http://h.example:80/p HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nExpect: 100-continue\r\n\r\nhello",
        b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.0 404 Not Found\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc",
        b"1a;x=y\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: 1\r\n\r\n",
    ];

    const ALPHABET: &[u8] =
        b"\r\n\r\n :,;\t\0GETPOSTHTTP/1.01chunkedContent-LengthTransfer-EncodingHost0123456789aAfF-+x\xff";

    fn exercise(buf: &[u8], rng: &mut XorShift) {
        let limits = [Limits::default(), Limits { max_head_bytes: 1 + rng.below(80), max_headers: rng.below(4) }];
        for l in &limits {
            if let Ok(Some(p)) = parse_request(buf, l) {
                assert!(p.head_len <= buf.len() && p.head_len <= l.max_head_bytes);
                let raw = Bytes::copy_from_slice(&buf[..p.head_len]);
                let h = p.into_head(raw);
                assert_ne!(h.framing, Framing::CloseDelimited);
                let _ = (h.method(), h.target(), h.path(), h.query(), h.host());
                let _ = (h.header("host"), h.header_str("content-length"));
                assert_eq!(h.headers().count(), h.headers.len());
                // Spans must all be within raw.
                for hs in &h.headers {
                    assert!(hs.name.end as usize <= h.raw.len() && hs.value.end as usize <= h.raw.len());
                }
            }
            for was_head in [false, true] {
                if let Ok(Some(p)) = parse_response(buf, l, was_head) {
                    assert!(p.head_len <= buf.len() && p.head_len <= l.max_head_bytes);
                    let raw = Bytes::copy_from_slice(&buf[..p.head_len]);
                    let h = p.into_head(raw);
                    let _ = (h.reason(), h.header("content-length"), h.headers().count());
                    assert!(h.reason.end as usize <= h.raw.len());
                }
            }
        }
        let mut d = ChunkedDecoder::new();
        let mut rest = buf;
        for _ in 0..buf.len() + 2 {
            let cut = rng.below(rest.len() + 1);
            match d.decode(&rest[..cut]) {
                Ok(Chunk::Data { start, len, consumed }) => {
                    assert!(len > 0 && start + len <= consumed && consumed <= cut);
                    rest = &rest[consumed..];
                }
                Ok(Chunk::NeedMore { consumed }) => {
                    assert!(consumed <= cut);
                    rest = &rest[consumed..];
                    if rest.is_empty() {
                        break;
                    }
                }
                Ok(Chunk::Done { consumed }) => {
                    assert!(consumed <= cut);
                    break;
                }
                Err(_) => break,
            }
        }
    }

    fn mutate(seed: &[u8], rng: &mut XorShift) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            let pos = rng.below(v.len() + 1);
            let byte = ALPHABET[rng.below(ALPHABET.len())];
            match rng.below(5) {
                0 if pos < v.len() => v[pos] = byte,
                1 => v.insert(pos, byte),
                2 if pos < v.len() => {
                    v.remove(pos);
                }
                3 => v.truncate(pos),
                _ => {
                    let from = rng.below(v.len() + 1);
                    let to = (from + rng.below(8)).min(v.len());
                    let piece = v[from..to].to_vec();
                    let at = pos.min(v.len());
                    v.splice(at..at, piece);
                }
            }
        }
        v
    }

    #[test]
    fn fuzz_never_panics() {
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        for seed in SEEDS {
            exercise(seed, &mut rng);
        }
        for _ in 0..20_000 {
            let len = rng.below(120);
            let buf: Vec<u8> = (0..len)
                .map(|_| if rng.below(4) == 0 { rng.next() as u8 } else { ALPHABET[rng.below(ALPHABET.len())] })
                .collect();
            exercise(&buf, &mut rng);
        }
        for i in 0..30_000 {
            let m = mutate(SEEDS[i % SEEDS.len()], &mut rng);
            exercise(&m, &mut rng);
        }
    }
}
