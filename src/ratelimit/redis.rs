//! Global rate limits in Redis: a RESP2 codec and the bucket script, without I/O, ready to drive from any socket.

// The script is the local bucket (see ratelimit.rs) kept in a Redis hash {t: last tick, d: deficit}, with
// ticks counted from the Unix epoch on the Redis server's clock (`TIME`), so every gateway replica sees the
// same fills whatever its own clock says. Redis runs a script atomically, so the count is exact across
// replicas. A bucket back to full is deleted and every write sets a PEXPIRE for when it would be full again,
// so idle keys cost no memory. Lua numbers are doubles: exact for the values here (< 2^53), since ticks are
// at least 1ms and `d <= maxTokens`.

use std::time::Duration;

use super::Verdict;

/// Largest bulk string accepted in a reply (Redis's own `proto-max-bulk-len` default).
const MAX_BULK: usize = 512 * 1024 * 1024;
/// Deepest nesting of arrays accepted in a reply; ours are one level deep.
const MAX_DEPTH: usize = 8;

/// A malformed reply: the connection is out of sync and must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// The bytes are not RESP2.
    #[error("redis protocol error: {0}")]
    Protocol(&'static str),
    /// The reply is well formed but not what the script returns.
    #[error("unexpected redis reply: {0}")]
    Unexpected(String),
}

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(Vec<u8>),
    /// `-ERR ...`: the server refused the command (the connection stays usable).
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nabc` or `$-1` (nil).
    Bulk(Option<Vec<u8>>),
    /// `*2 ...` or `*-1` (nil).
    Array(Option<Vec<Reply>>),
}

/// Appends `args` as one RESP2 command (an array of bulk strings).
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let mut n = num::Buf::default();
    out.push(b'*');
    out.extend_from_slice(n.u64(args.len() as u64));
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(n.u64(a.len() as u64));
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Decodes one reply from the start of `buf`: `Ok(None)` while incomplete, else the reply and bytes used.
pub fn decode(buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    let mut pos = 0;
    Ok(parse(buf, &mut pos, 0)?.map(|r| (r, pos)))
}

/// Finds the line at `*pos`, moving past its `\r\n`; `None` if the line is not complete yet.
fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, RespError> {
    let rest = &buf[*pos..];
    let Some(nl) = rest.iter().position(|&b| b == b'\n') else { return Ok(None) };
    if nl == 0 || rest[nl - 1] != b'\r' {
        return Err(RespError::Protocol("line not ended by CRLF"));
    }
    *pos += nl + 1;
    Ok(Some(&rest[..nl - 1]))
}

fn int(s: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(s).ok().and_then(|s| s.parse().ok()).ok_or(RespError::Protocol("bad integer"))
}

fn parse(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Reply>, RespError> {
    let Some(&kind) = buf.get(*pos) else { return Ok(None) };
    let start = *pos;
    *pos += 1;
    let Some(head) = line(buf, pos)? else {
        *pos = start;
        return Ok(None);
    };
    let reply = match kind {
        b'+' => Reply::Simple(head.to_vec()),
        b'-' => Reply::Error(String::from_utf8_lossy(head).into_owned()),
        b':' => Reply::Integer(int(head)?),
        b'$' => match int(head)? {
            -1 => Reply::Bulk(None),
            n if n < 0 || n as u64 > MAX_BULK as u64 => return Err(RespError::Protocol("bad bulk length")),
            n => {
                let n = n as usize;
                if buf.len() - *pos < n + 2 {
                    *pos = start;
                    return Ok(None);
                }
                if &buf[*pos + n..*pos + n + 2] != b"\r\n" {
                    return Err(RespError::Protocol("bulk string not ended by CRLF"));
                }
                let data = buf[*pos..*pos + n].to_vec();
                *pos += n + 2;
                Reply::Bulk(Some(data))
            }
        },
        b'*' => match int(head)? {
            -1 => Reply::Array(None),
            n if n < 0 => return Err(RespError::Protocol("bad array length")),
            _ if depth >= MAX_DEPTH => return Err(RespError::Protocol("arrays nested too deep")),
            n => {
                // Each element takes at least 3 bytes, which caps what a forged length can make us reserve.
                let mut items = Vec::with_capacity((n as usize).min((buf.len() - *pos) / 3));
                for _ in 0..n {
                    match parse(buf, pos, depth + 1)? {
                        Some(r) => items.push(r),
                        None => {
                            *pos = start;
                            return Ok(None);
                        }
                    }
                }
                Reply::Array(Some(items))
            }
        },
        _ => return Err(RespError::Protocol("unknown reply type")),
    };
    Ok(Some(reply))
}

/// Buffers bytes read from a Redis connection and yields complete replies, in order.
#[derive(Debug, Default)]
pub struct ReplyReader {
    buf: Vec<u8>,
    start: usize,
}

impl ReplyReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes as read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete reply, `Ok(None)` until enough bytes are fed. An error leaves the stream unusable.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, RespError> {
        // Replies here are a few dozen bytes: re-parsing a partial one from its start costs nothing.
        match decode(&self.buf[self.start..])? {
            None => Ok(None),
            Some((reply, used)) => {
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(Some(reply))
            }
        }
    }

    /// Bytes fed but not yet returned as replies.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// The bucket script. KEYS[1]: the bucket. ARGV: maxTokens, tokensPerFill, fillInterval in microseconds,
/// cost (may be negative with `amend`), mode (`take` or `amend`). Returns {allowed 0|1, remaining,
/// reset-after us, retry-after us or -1}.
pub const BUCKET_SCRIPT: &str = r#"
local cap = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local iv = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local amend = ARGV[5] == 'amend'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tick = math.floor(now / iv)
local st = redis.call('HMGET', KEYS[1], 't', 'd')
local d = 0
if st[1] and st[2] then
  d = tonumber(st[2])
  local elapsed = tick - tonumber(st[1])
  if elapsed > 0 then
    if elapsed >= math.ceil(d / per) then d = 0 else d = d - elapsed * per end
  end
end
local before = d
local allowed = 1
if amend then
  if cost >= 0 then d = math.min(d + cost, math.max(cap, d)) else d = math.max(d + cost, 0) end
elseif cost == 0 then
  if cap - d < 1 then allowed = 0 end
elseif d + cost <= cap then
  d = d + cost
else
  allowed = 0
end
local retry = -1
if allowed == 0 then
  local target = cap - math.min(math.max(cost, 1), cap)
  retry = math.max((tick + math.ceil((d - target) / per)) * iv - now, 0)
end
if d ~= before then
  if d > 0 then
    redis.call('HSET', KEYS[1], 't', string.format('%.0f', tick), 'd', string.format('%.0f', d))
    local full_at = (tick + math.ceil(d / per)) * iv
    redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil((full_at - now) / 1000) + 1))
  else
    redis.call('DEL', KEYS[1])
  end
end
local reset = 0
if d > 0 then reset = (tick + 1) * iv - now end
return {allowed, math.max(cap - d, 0), reset, retry}
"#;

/// What the script does with the cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Take `cost` tokens if all are there (0: only ask that one is left).
    Take,
    /// Charge (or refund, when negative) after the fact; never denied.
    Amend,
}

/// A global bucket's shape, in the script's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalLimit {
    /// Capacity (`maxTokens`).
    pub max_tokens: u64,
    /// Tokens per fill (`tokensPerFill`).
    pub tokens_per_fill: u64,
    /// Fill interval in microseconds (at least 1000: whole milliseconds keep Lua's doubles exact).
    pub fill_interval_us: u64,
}

impl GlobalLimit {
    /// The shape of a `localRateLimit`-style entry; `None` unless `1 <= tokensPerFill <= maxTokens < 2^53`
    /// (Lua's exact integers) and the interval is between 1ms and 100 years.
    pub fn new(max_tokens: u64, tokens_per_fill: u64, fill_interval: Duration) -> Option<Self> {
        let us = u64::try_from(fill_interval.as_micros()).ok()?;
        let shape_ok = (1..=max_tokens).contains(&tokens_per_fill) && max_tokens < 1 << 53;
        (shape_ok && (1000..=3_153_600_000_000_000).contains(&us)).then_some(GlobalLimit {
            max_tokens,
            tokens_per_fill,
            fill_interval_us: us,
        })
    }
}

/// The script's SHA1 in lower-case hex, as `SCRIPT LOAD` answers it: known before any reply, so `EVALSHA`
/// can be pipelined right behind the `SCRIPT LOAD` of a new connection.
pub fn script_sha1() -> &'static [u8] {
    static SHA: std::sync::OnceLock<[u8; 40]> = std::sync::OnceLock::new();
    SHA.get_or_init(|| {
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, BUCKET_SCRIPT.as_bytes());
        let mut hex = [0u8; 40];
        for (i, b) in digest.as_ref().iter().enumerate() {
            hex[2 * i] = b"0123456789abcdef"[usize::from(b >> 4)];
            hex[2 * i + 1] = b"0123456789abcdef"[usize::from(b & 15)];
        }
        hex
    })
}

/// Appends `SCRIPT LOAD <script>`; the bulk reply is the SHA1 to pass to [`encode_evalsha`].
pub fn encode_script_load(out: &mut Vec<u8>) {
    encode_command(out, &[b"SCRIPT", b"LOAD", BUCKET_SCRIPT.as_bytes()]);
}

/// Appends `EVALSHA sha 1 key max per interval cost mode`.
pub fn encode_evalsha(out: &mut Vec<u8>, sha: &[u8], key: &[u8], limit: &GlobalLimit, cost: i64, mode: Mode) {
    encode_run(out, b"EVALSHA", sha, key, limit, cost, mode);
}

/// Appends the same as `EVAL` with the script text: the fallback after a `NOSCRIPT` reply.
pub fn encode_eval(out: &mut Vec<u8>, key: &[u8], limit: &GlobalLimit, cost: i64, mode: Mode) {
    encode_run(out, b"EVAL", BUCKET_SCRIPT.as_bytes(), key, limit, cost, mode);
}

fn encode_run(out: &mut Vec<u8>, verb: &[u8], script: &[u8], key: &[u8], l: &GlobalLimit, cost: i64, mode: Mode) {
    let (mut a, mut b, mut c, mut d) =
        (num::Buf::default(), num::Buf::default(), num::Buf::default(), num::Buf::default());
    let mode: &[u8] = match mode {
        Mode::Take => b"take",
        Mode::Amend => b"amend",
    };
    encode_command(
        out,
        &[
            verb,
            script,
            b"1",
            key,
            a.u64(l.max_tokens),
            b.u64(l.tokens_per_fill),
            c.u64(l.fill_interval_us),
            d.i64(cost),
            mode,
        ],
    );
}

/// Whether the reply says the script is not cached (after a restart or `SCRIPT FLUSH`): load it or use EVAL.
pub fn is_noscript(reply: &Reply) -> bool {
    matches!(reply, Reply::Error(e) if e.starts_with("NOSCRIPT"))
}

/// Reads the script's reply as a verdict; `Unexpected` for anything else (an error reply included).
pub fn parse_verdict(reply: &Reply, limit: &GlobalLimit) -> Result<Verdict, RespError> {
    let bad = || RespError::Unexpected(format!("{reply:?}"));
    let Reply::Array(Some(items)) = reply else { return Err(bad()) };
    let [Reply::Integer(allowed), Reply::Integer(remaining), Reply::Integer(reset), Reply::Integer(retry)] =
        items.as_slice()
    else {
        return Err(bad());
    };
    let us = |v: i64| Duration::from_micros(v.max(0).unsigned_abs());
    Ok(Verdict {
        allowed: *allowed == 1,
        limit: limit.max_tokens,
        remaining: remaining.max(&0).unsigned_abs(),
        reset_after: us(*reset),
        retry_after: (*retry >= 0).then(|| us(*retry)),
    })
}

/// Decimal formatting into a stack buffer, so building a command allocates nothing but the output.
mod num {
    /// Room for any `i64`/`u64` in decimal.
    #[derive(Default)]
    pub struct Buf([u8; 20]);

    impl Buf {
        pub fn u64(&mut self, mut n: u64) -> &[u8] {
            let mut i = self.0.len();
            loop {
                i -= 1;
                self.0[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    return &self.0[i..];
                }
            }
        }

        pub fn i64(&mut self, n: i64) -> &[u8] {
            if n >= 0 {
                return self.u64(n.unsigned_abs());
            }
            let len = self.u64(n.unsigned_abs()).len();
            // i64::MIN has 19 digits, so there is room for the sign.
            let i = self.0.len() - len - 1;
            self.0[i] = b'-';
            &self.0[i..]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"GET", b"k\r\n", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\n$0\r\n\r\n");
        out.clear();
        let l = GlobalLimit::new(10, 2, Duration::from_millis(1500)).unwrap();
        encode_evalsha(&mut out, b"abc", b"rl:k", &l, -7, Mode::Amend);
        assert_eq!(
            out,
            b"*9\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n1\r\n$4\r\nrl:k\r\n$2\r\n10\r\n$1\r\n2\r\n$7\r\n1500000\r\n$2\r\n-7\r\n$5\r\namend\r\n"
        );
        let mut b = num::Buf::default();
        assert_eq!(b.i64(i64::MIN), b"-9223372036854775808");
        assert_eq!(b.u64(u64::MAX), b"18446744073709551615");
        assert_eq!(b.u64(0), b"0");
        assert!(GlobalLimit::new(1, 1, Duration::from_micros(999)).is_none());
        assert!(GlobalLimit::new(5, 0, Duration::from_secs(1)).is_none());
        assert!(GlobalLimit::new(5, 6, Duration::from_secs(1)).is_none());
        assert!(GlobalLimit::new(1 << 53, 1, Duration::from_secs(1)).is_none());
    }

    #[test]
    fn decodes_every_type() {
        let cases: [(&[u8], Reply); 7] = [
            (b"+OK\r\n", Reply::Simple(b"OK".to_vec())),
            (b"-NOSCRIPT No matching script\r\n", Reply::Error("NOSCRIPT No matching script".into())),
            (b":-42\r\n", Reply::Integer(-42)),
            (b"$-1\r\n", Reply::Bulk(None)),
            (b"$5\r\na\r\nbc\r\n", Reply::Bulk(Some(b"a\r\nbc".to_vec()))),
            (b"*-1\r\n", Reply::Array(None)),
            (
                b"*3\r\n:1\r\n*1\r\n$0\r\n\r\n-ERR x\r\n",
                Reply::Array(Some(vec![
                    Reply::Integer(1),
                    Reply::Array(Some(vec![Reply::Bulk(Some(vec![]))])),
                    Reply::Error("ERR x".into()),
                ])),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(bytes).unwrap(), Some((want.clone(), bytes.len())));
            // Every strict prefix is incomplete, never an error or a wrong reply.
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut]).unwrap(), None, "{:?}", String::from_utf8_lossy(&bytes[..cut]));
            }
        }
        assert!(is_noscript(&decode(b"-NOSCRIPT No matching script\r\n").unwrap().unwrap().0));
    }

    #[test]
    fn rejects_malformed_replies() {
        for bad in
            [&b"?x\r\n"[..], b":12a\r\n", b"+OK\n", b"$2\r\nabc\r\n", b"$-2\r\n", b"*-3\r\n", b"$999999999999\r\n"]
        {
            assert!(matches!(decode(bad), Err(RespError::Protocol(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = b"*1\r\n".repeat(9);
        assert_eq!(decode(&deep), Err(RespError::Protocol("arrays nested too deep")));
        // A forged huge array length reserves only what the bytes at hand could hold.
        assert_eq!(decode(b"*4000000000\r\n:1\r\n").unwrap(), None);
    }

    #[test]
    fn reader_yields_replies_across_partial_feeds() {
        let stream = b"*4\r\n:1\r\n:9\r\n:250000\r\n:-1\r\n-ERR busy\r\n+OK\r\n";
        let mut r = ReplyReader::new();
        let mut got = Vec::new();
        for chunk in stream.chunks(3) {
            r.feed(chunk);
            while let Some(reply) = r.next_reply().unwrap() {
                got.push(reply);
            }
        }
        assert_eq!(r.pending(), 0);
        assert_eq!(got.len(), 3);
        let l = GlobalLimit::new(10, 1, Duration::from_secs(1)).unwrap();
        let v = parse_verdict(&got[0], &l).unwrap();
        assert_eq!(
            v,
            Verdict {
                allowed: true,
                limit: 10,
                remaining: 9,
                reset_after: Duration::from_millis(250),
                retry_after: None
            }
        );
        assert_eq!(got[1], Reply::Error("ERR busy".into()));
        assert!(matches!(parse_verdict(&got[1], &l), Err(RespError::Unexpected(_))));
        assert!(matches!(parse_verdict(&got[2], &l), Err(RespError::Unexpected(_))));
        let denied = decode(b"*4\r\n:0\r\n:0\r\n:5\r\n:1500000\r\n").unwrap().unwrap().0;
        let v = parse_verdict(&denied, &l).unwrap();
        assert_eq!((v.allowed, v.retry_after), (false, Some(Duration::from_millis(1500))));
    }
}
