//! Server-Sent Events framing: an incremental parser for upstream streams and writers for downstream ones.

use std::ops::Range;

/// One dispatched event. `data` lines are joined with '\n'.
///
/// An event with an `id:` but empty data (the MCP 2025-11-25 "priming" event) IS returned (data ""), because the id
/// matters for resumption; so is one that only carries `retry:`. An event with no data, no id and no retry is not.
/// `id` is the id field of this event alone (`Some("")` means the server reset it); the caller keeps the last one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `id:` field, if this event had one.
    pub id: Option<String>,
    /// The `event:` type; `None` when absent or empty, i.e. the default "message".
    pub event: Option<String>,
    /// All `data:` lines joined with '\n'.
    pub data: String,
    /// The `retry:` reconnection delay in milliseconds.
    pub retry: Option<u64>,
}

/// Why the parser gave up on a stream; after either, the stream should be abandoned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// The pending event grew past this many bytes (line contents, terminators not counted).
    #[error("SSE event larger than {0} bytes")]
    TooLarge(usize),
    /// A line was not valid UTF-8.
    #[error("SSE stream is not valid UTF-8")]
    NotUtf8,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Incremental parser: push bytes as they arrive from the network, pull complete events.
pub struct Parser {
    buf: Vec<u8>,
    /// Start of the first unconsumed line in `buf`.
    pos: usize,
    /// How far past `pos` has been searched for a terminator, so that many tiny pushes do not rescan a long line.
    scanned: usize,
    /// The last line ended with a '\r' at the end of the buffer: a '\n' arriving next is part of that terminator.
    skip_lf: bool,
    bom_checked: bool,
    max: usize,
    pending: Pending,
}

/// Fields of the event being assembled.
#[derive(Default)]
struct Pending {
    /// `data` keeps a '\n' after every line, so it is non-empty once any `data` field was seen, even an empty one.
    event: Event,
    bytes: usize,
}

impl Parser {
    /// A parser that fails with [`SseError::TooLarge`] once one event exceeds `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Parser {
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            skip_lf: false,
            bom_checked: false,
            max: max_event_bytes,
            pending: Pending::default(),
        }
    }

    /// Append bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        // Compact only once the consumed prefix is at least as big as what is left, so each byte moves O(1) times.
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Give back the buffer's allocation once every byte pushed was consumed, so a stream that
    /// waits between events holds none; whether it did (`false`: part of an event is buffered).
    pub fn release_if_consumed(&mut self) -> bool {
        if self.pos < self.buf.len() {
            return false;
        }
        self.buf = Vec::new();
        self.pos = 0;
        self.scanned = 0;
        true
    }

    /// Next complete event, Ok(None) if more bytes are needed, Err if the pending event exceeds max_event_bytes or is
    /// not UTF-8.
    pub fn next_event(&mut self) -> Result<Option<Event>, SseError> {
        if !self.bom_checked {
            let rest = &self.buf[self.pos..];
            if rest.len() < BOM.len() && BOM.starts_with(rest) {
                return Ok(None);
            }
            if rest.starts_with(BOM) {
                self.pos += BOM.len();
            }
            self.bom_checked = true;
        }
        while let Some(line) = self.next_line()? {
            if line.is_empty() {
                if let Some(event) = self.pending.take() {
                    return Ok(Some(event));
                }
                continue;
            }
            let line = std::str::from_utf8(&self.buf[line]).map_err(|_| SseError::NotUtf8)?;
            self.pending.field(line);
        }
        Ok(None)
    }

    /// The next complete line (without its terminator) as a range of `buf`.
    fn next_line(&mut self) -> Result<Option<Range<usize>>, SseError> {
        if self.skip_lf && self.pos < self.buf.len() {
            self.skip_lf = false;
            if self.buf[self.pos] == b'\n' {
                self.pos += 1;
            }
        }
        let from = self.pos + self.scanned;
        let Some(offset) = memchr::memchr2(b'\n', b'\r', &self.buf[from..]) else {
            self.scanned = self.buf.len() - self.pos;
            return self.check_size(self.scanned).map(|()| None);
        };
        let (start, end) = (self.pos, from + offset);
        self.pos = end + 1;
        if self.buf[end] == b'\r' {
            match self.buf.get(self.pos) {
                Some(b'\n') => self.pos += 1,
                Some(_) => {}
                None => self.skip_lf = true,
            }
        }
        self.scanned = 0;
        self.pending.bytes += end - start;
        self.check_size(0).map(|()| Some(start..end))
    }

    fn check_size(&self, partial: usize) -> Result<(), SseError> {
        if self.pending.bytes + partial > self.max {
            return Err(SseError::TooLarge(self.max));
        }
        Ok(())
    }
}

impl Pending {
    fn field(&mut self, line: &str) {
        if line.starts_with(':') {
            return;
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match name {
            "event" => self.event.event = (!value.is_empty()).then(|| value.to_owned()),
            "data" => {
                self.event.data.push_str(value);
                self.event.data.push('\n');
            }
            "id" if !value.contains('\0') => self.event.id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Too many digits for u64 is not a delay anyone meant; ignore it like any other invalid retry.
                if let Ok(ms) = value.parse() {
                    self.event.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    /// The finished event at a blank line, if it carries anything; resets for the next one either way.
    fn take(&mut self) -> Option<Event> {
        let mut event = std::mem::take(self).event;
        if event.data.is_empty() && event.id.is_none() && event.retry.is_none() {
            return None;
        }
        event.data.pop();
        Some(event)
    }
}

/// Write one event. `data` is split on "\r\n", "\n" and bare "\r" (a bare '\r' would otherwise end the line early at
/// the receiver) into `data:` lines; empty data still writes one `data:` line. Line breaks in `id` and `event` are
/// dropped since they would break framing.
pub fn write_event(out: &mut Vec<u8>, id: Option<&str>, event: Option<&str>, data: &[u8]) {
    if let Some(id) = id {
        write_field(out, b"id: ", id.as_bytes());
    }
    if let Some(event) = event {
        write_field(out, b"event: ", event.as_bytes());
    }
    write_lines(out, b"data: ", data);
    out.push(b'\n');
}

/// Write a standalone `retry:` block telling the client how long to wait before reconnecting.
pub fn write_retry(out: &mut Vec<u8>, retry_ms: u64) {
    out.extend_from_slice(format!("retry: {retry_ms}\n\n").as_bytes());
}

/// Write a comment block, e.g. a keep-alive that clients ignore.
pub fn write_comment(out: &mut Vec<u8>, text: &str) {
    write_lines(out, b": ", text.as_bytes());
    out.push(b'\n');
}

fn write_field(out: &mut Vec<u8>, prefix: &[u8], value: &[u8]) {
    out.extend_from_slice(prefix);
    let mut rest = value;
    while let Some(i) = memchr::memchr2(b'\r', b'\n', rest) {
        out.extend_from_slice(&rest[..i]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'\n');
}

fn write_lines(out: &mut Vec<u8>, prefix: &[u8], text: &[u8]) {
    let mut rest = text;
    loop {
        let end = memchr::memchr2(b'\n', b'\r', rest).unwrap_or(rest.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(&rest[..end]);
        out.push(b'\n');
        if end == rest.len() {
            return;
        }
        let skip = if rest[end..].starts_with(b"\r\n") { 2 } else { 1 };
        rest = &rest[end + skip..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumed_buffer_is_released_and_a_partial_event_kept() {
        let mut p = Parser::new(1 << 20);
        p.push(b"data: one\n\ndata: tw");
        assert_eq!(p.next_event().unwrap().unwrap().data, "one");
        assert!(!p.release_if_consumed(), "half an event is buffered");
        assert_eq!(p.next_event().unwrap(), None);
        assert!(!p.release_if_consumed());
        p.push(b"o\r");
        assert_eq!(p.next_event().unwrap(), None);
        // the event's terminator is split: the '\r' was consumed, its '\n' is still to come
        assert!(p.release_if_consumed());
        assert_eq!(p.buf.capacity(), 0);
        p.push(b"\n\r\n");
        assert_eq!(p.next_event().unwrap().unwrap().data, "two");
        assert!(p.release_if_consumed());
        assert_eq!(p.buf.capacity(), 0);
    }

    fn ev(id: Option<&str>, event: Option<&str>, data: &str, retry: Option<u64>) -> Event {
        Event { id: id.map(Into::into), event: event.map(Into::into), data: data.into(), retry }
    }

    /// Feed `chunks` one by one, draining events after each.
    fn parse_chunks(chunks: &[&[u8]], max: usize) -> Result<Vec<Event>, SseError> {
        let mut parser = Parser::new(max);
        let mut events = Vec::new();
        for chunk in chunks {
            parser.push(chunk);
            while let Some(event) = parser.next_event()? {
                events.push(event);
            }
        }
        Ok(events)
    }

    fn parse(stream: &[u8]) -> Vec<Event> {
        parse_chunks(&[stream], 1 << 20).unwrap()
    }

    const STREAM: &[u8] = "\u{feff}: hello comment\r\n\
        id: 1\r\ndata:\r\n\r\n\
        event: message\nid: 2\ndata: {\"a\":\ndata:  1}\n\n\
        retry: 3000\rdata:caf\u{e9} \u{1f980}\rfoo: bar\rnocolon\r\r\
        event:\ndata: x\n\r\n\
        id: 3\nretry: 12x\nevent: end\ndata\n\r"
        .as_bytes();

    fn expected() -> Vec<Event> {
        vec![
            ev(Some("1"), None, "", None),
            ev(Some("2"), Some("message"), "{\"a\":\n 1}", None),
            ev(None, None, "caf\u{e9} \u{1f980}", Some(3000)),
            ev(None, None, "x", None),
            ev(Some("3"), Some("end"), "", None),
        ]
    }

    #[test]
    fn parses_mixed_line_endings_bom_comments_and_fields() {
        assert_eq!(parse(STREAM), expected());
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        for i in 0..=STREAM.len() {
            assert_eq!(parse_chunks(&[&STREAM[..i], &STREAM[i..]], 1 << 20).unwrap(), expected(), "split at {i}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(parse_chunks(&bytes, 1 << 20).unwrap(), expected());
        for i in 0..STREAM.len() {
            for j in i..=STREAM.len() {
                let chunks = [&STREAM[..i], &STREAM[i..j], &STREAM[j..]];
                assert_eq!(parse_chunks(&chunks, 1 << 20).unwrap(), expected(), "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn crlf_split_across_pushes_is_one_terminator() {
        // Were the '\n' taken as a second terminator, "data: a" would be dispatched alone.
        let events = parse_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"], 100).unwrap();
        assert_eq!(events, vec![ev(None, None, "a\nb", None)]);
    }

    #[test]
    fn bare_cr_blank_line_dispatches_without_waiting() {
        let mut parser = Parser::new(100);
        parser.push(b"data: a\r\r");
        assert_eq!(parser.next_event().unwrap(), Some(ev(None, None, "a", None)));
        assert_eq!(parser.next_event().unwrap(), None);
    }

    #[test]
    fn incomplete_event_waits_for_more_bytes() {
        let mut parser = Parser::new(100);
        parser.push(b"id: 7\ndata: partial");
        assert_eq!(parser.next_event().unwrap(), None);
        parser.push(b"\n");
        assert_eq!(parser.next_event().unwrap(), None);
        parser.push(b"\n");
        assert_eq!(parser.next_event().unwrap(), Some(ev(Some("7"), None, "partial", None)));
    }

    #[test]
    fn blocks_without_data_id_or_retry_are_not_dispatched() {
        assert_eq!(parse(b"event: x\n\n: keep-alive\n\n\n\nfoo: 1\n\ndata: y\n\n"), vec![ev(None, None, "y", None)]);
    }

    #[test]
    fn field_value_rules() {
        assert_eq!(parse(b"data:  two spaces\n\n")[0].data, " two spaces");
        assert_eq!(parse(b"data\ndata\n\n")[0].data, "\n");
        assert_eq!(parse(b"data: a:b\n\n")[0].data, "a:b");
        assert_eq!(parse(b" data: x\nData: y\n\n"), vec![]);
        // An id containing NUL is ignored, so the event carries no id and no data: nothing is dispatched.
        assert_eq!(parse(b"id: a\0b\n\n"), vec![]);
        assert_eq!(parse(b"id: a\0b\ndata: x\n\n"), vec![ev(None, None, "x", None)]);
        assert_eq!(parse(b"id\ndata: x\n\n")[0].id.as_deref(), Some(""));
        for bad in ["retry: -1", "retry: 1.5", "retry: ", "retry: 99999999999999999999999"] {
            assert_eq!(parse(format!("{bad}\ndata: x\n\n").as_bytes())[0].retry, None, "{bad}");
        }
        assert_eq!(parse(b"retry: 250\n\n"), vec![ev(None, None, "", Some(250))]);
        assert_eq!(
            parse_chunks(&[b"\xEF", b"\xBB", b"\xBFdata: x\n\n"], 100).unwrap(),
            vec![ev(None, None, "x", None)]
        );
        // Only a BOM at the very start is skipped.
        assert_eq!(parse(b"data: x\n\n\xEF\xBB\xBFdata: y\n\n").len(), 1);
    }

    #[test]
    fn too_large_event_fails_even_before_its_line_ends() {
        let mut parser = Parser::new(10);
        parser.push(b"data: 1234");
        assert_eq!(parser.next_event(), Ok(None));
        parser.push(b"5");
        assert_eq!(parser.next_event(), Err(SseError::TooLarge(10)));

        // The limit is per event, summed over its lines; it resets after dispatch.
        assert_eq!(parse_chunks(&[b"data: 1\n\ndata: 2\n\n"], 8).unwrap().len(), 2);
        assert_eq!(parse_chunks(&[b"data: 1\ndata: 2\n\n"], 13), Err(SseError::TooLarge(13)));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        assert_eq!(parse_chunks(&[b"data: \xff\n\n"], 100), Err(SseError::NotUtf8));
    }

    #[test]
    fn long_line_in_tiny_pushes_is_scanned_once() {
        let mut parser = Parser::new(1 << 20);
        parser.push(b"data: ");
        for _ in 0..100_000 {
            parser.push(b"x");
            assert_eq!(parser.next_event(), Ok(None));
        }
        assert_eq!(parser.scanned, 100_006);
        parser.push(b"\n\n");
        assert_eq!(parser.next_event().unwrap().map(|e| e.data.len()), Some(100_000));
    }

    #[test]
    fn writers_produce_exact_bytes() {
        let mut out = Vec::new();
        write_event(&mut out, Some("4"), Some("message"), b"{\"x\":1}");
        assert_eq!(out, b"id: 4\nevent: message\ndata: {\"x\":1}\n\n");

        out.clear();
        write_event(&mut out, Some("p"), None, b"");
        assert_eq!(out, b"id: p\ndata: \n\n");

        out.clear();
        write_event(&mut out, Some("a\r\nb"), None, b"1\r\n2\n3\r4\n");
        assert_eq!(out, b"id: ab\ndata: 1\ndata: 2\ndata: 3\ndata: 4\ndata: \n\n");

        out.clear();
        write_retry(&mut out, 1500);
        write_comment(&mut out, "ping");
        assert_eq!(out, b"retry: 1500\n\n: ping\n\n");
    }

    #[test]
    fn written_events_parse_back() {
        let mut out = Vec::new();
        write_comment(&mut out, "two\nlines");
        write_event(&mut out, Some("9"), None, b"");
        write_event(&mut out, None, Some("note"), b"line 1\r\n\r\nline 3");
        write_retry(&mut out, 42);
        assert_eq!(
            parse(&out),
            vec![
                ev(Some("9"), None, "", None),
                ev(None, Some("note"), "line 1\n\nline 3", None),
                ev(None, None, "", Some(42))
            ]
        );
    }
}
