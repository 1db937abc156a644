//! Command lines of rg-fixture and rg-load (`--name value` pairs), parsed into their configs.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::fixture::FixtureConfig;
use crate::load::{LoadConfig, Mode};
use crate::mcp::Target;

/// Help text of rg-fixture.
pub const FIXTURE_USAGE: &str = "usage: rg-fixture [--listen ADDR (127.0.0.1:0)] [--tools N (8)] [--body-bytes N (5)]
                  [--notify-ms N (1000)] [--llm-chunks N (8)] [--llm-chunk-ms N (0)] [--delay-us N (0)]
                  [--list-ttl-ms N (0): the ttlMs cache hint of a 2026-07-28 tools/list]
       rg-fixture stdio [--tools N (8)]   (the MCP server on stdin/stdout, legacy era)
Serves /mcp... (MCP, legacy sessions and 2026-07-28; a path segment delay-<us> delays tools/* answers),
/v1/chat/completions (OpenAI stub, JSON or stream: true SSE) and anything else as plain HTTP
(GET: N bytes, POST: echo). Prints `listening ADDR` once ready.";

/// Help text of rg-load.
pub const LOAD_USAGE: &str =
    "usage: rg-load --url http://HOST:PORT/PATH --mode MODE [--conns C (16)] [--rate R/s (0 = closed loop)]
               [--duration S (10)] [--warmup S (1)] [--requests N (0 = no limit)] [--timeout-ms N (5000)]
               [--method GET] [--body-bytes N] [--expect-bytes N] [--tool echo] [--message hi]
               [--expect-tools N (0 = any)] [--ready-file PATH] [--out FILE] [--header 'NAME: VALUE']...
MODE: http | mcp-call-legacy | mcp-call-modern | mcp-list-legacy | mcp-list-modern
      | mcp-session (initialize, initialized, DELETE) | mcp-session-keep (no DELETE)
      | mcp-streams (C legacy sessions with a GET stream each; event latency)
--header (repeatable) is sent on every request, e.g. a gateway's API key.
Prints a JSON report (throughput, latency percentiles in µs, errors by kind).";

/// `--name value` pairs in order; a bare `--help` asks for usage.
fn pairs(args: &[String]) -> Result<Vec<(&str, &str)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--help" || a == "-h" {
            return Err(String::new());
        }
        let name = a.strip_prefix("--").ok_or_else(|| format!("unexpected argument {a:?}"))?;
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        out.push((name, value.as_str()));
    }
    Ok(out)
}

fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("--{name}: not a number: {v:?}"))
}

fn secs(name: &str, v: &str) -> Result<Duration, String> {
    let s: f64 = num(name, v)?;
    if !(0.0..1e7).contains(&s) {
        return Err(format!("--{name}: out of range: {v}"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// rg-fixture's listen address and config.
pub fn fixture(args: &[String]) -> Result<(SocketAddr, FixtureConfig), String> {
    let mut addr: SocketAddr = "127.0.0.1:0".parse().map_err(|_| "bad default address")?;
    let mut cfg = FixtureConfig::default();
    for (n, v) in pairs(args)? {
        match n {
            "listen" => addr = v.parse().map_err(|_| format!("--listen: not an address: {v:?}"))?,
            "tools" => cfg.tools = num(n, v)?,
            "body-bytes" => cfg.body_bytes = num(n, v)?,
            "notify-ms" => cfg.notify = Duration::from_millis(num::<u64>(n, v)?.max(1)),
            "llm-chunks" => cfg.llm_chunks = num(n, v)?,
            "llm-chunk-ms" => cfg.llm_chunk_gap = Duration::from_millis(num(n, v)?),
            "delay-us" => cfg.delay = Duration::from_micros(num(n, v)?),
            "list-ttl-ms" => cfg.list_ttl_ms = num(n, v)?,
            _ => return Err(format!("unknown option --{n}")),
        }
    }
    Ok((addr, cfg))
}

/// Split `http://host:port/path` into a socket address and the Host/path to send.
pub fn url(u: &str) -> Result<(SocketAddr, Target), String> {
    let rest = u.strip_prefix("http://").ok_or_else(|| format!("only http:// URLs: {u:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("cannot resolve {authority:?}"))?;
    Ok((addr, Target { host: authority.to_string(), path: path.to_string(), headers: Vec::new() }))
}

/// `NAME: VALUE` of `--header`: a token name, a value without line breaks.
fn header(v: &str) -> Result<(String, String), String> {
    let bad = || format!("--header: not `NAME: VALUE`: {v:?}");
    let (n, val) = v.split_once(':').ok_or_else(bad)?;
    let (n, val) = (n.trim(), val.trim());
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if n.is_empty() || !n.chars().all(token) || val.chars().any(|c| c == '\r' || c == '\n') {
        return Err(bad());
    }
    Ok((n.to_string(), val.to_string()))
}

/// rg-load's config and where the report goes (`None` = stdout).
pub fn load(args: &[String]) -> Result<(LoadConfig, Option<String>), String> {
    let p = pairs(args)?;
    let get = |k: &str| p.iter().rev().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let mode_name = get("mode").ok_or("--mode is required")?;
    let mode = Mode::parse(mode_name).ok_or_else(|| format!("unknown mode {mode_name:?}"))?;
    let (addr, target) = url(get("url").ok_or("--url is required")?)?;
    let mut cfg = LoadConfig::new(addr, mode);
    cfg.target = target;
    let mut out = None;
    for (n, v) in p {
        match n {
            "mode" | "url" => {}
            "conns" => cfg.conns = num::<usize>(n, v)?.max(1),
            "rate" => cfg.rate = num(n, v)?,
            "duration" => cfg.duration = secs(n, v)?,
            "warmup" => cfg.warmup = secs(n, v)?,
            "requests" => cfg.requests = num(n, v)?,
            "timeout-ms" => cfg.timeout = Duration::from_millis(num(n, v)?),
            "method" => cfg.method = v.to_ascii_uppercase(),
            "body-bytes" => cfg.body_bytes = num(n, v)?,
            "expect-bytes" => cfg.expect_bytes = Some(num(n, v)?),
            "tool" => cfg.tool = v.to_string(),
            "message" => cfg.message = v.to_string(),
            "expect-tools" => cfg.expect_tools = num(n, v)?,
            "ready-file" => cfg.ready_file = Some(v.into()),
            "header" => cfg.target.headers.push(header(v)?),
            "out" => out = Some(v.to_string()),
            _ => return Err(format!("unknown option --{n}")),
        }
    }
    if cfg.rate < 0.0 || !cfg.rate.is_finite() {
        return Err("--rate must be ≥ 0".into());
    }
    Ok((cfg, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::Era;

    fn strings(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn load_command_line() {
        let (cfg, out) = load(&strings(
            "--url http://127.0.0.1:8080/mcp/x --mode mcp-call-modern --conns 4 --rate 3000 --duration 2.5 --out r.json",
        ))
        .unwrap();
        assert_eq!(cfg.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((cfg.target.host.as_str(), cfg.target.path.as_str()), ("127.0.0.1:8080", "/mcp/x"));
        assert_eq!((cfg.mode, cfg.conns, cfg.rate), (Mode::Call(Era::Modern), 4, 3000.0));
        assert_eq!(cfg.duration, Duration::from_millis(2500));
        assert_eq!(out.as_deref(), Some("r.json"));
        let (cfg, _) = load(&strings("--mode http --url http://127.0.0.1:9")).unwrap();
        assert_eq!((cfg.target.path.as_str(), cfg.rate), ("/", 0.0));
        assert!(load(&strings("--url http://127.0.0.1:9/")).unwrap_err().contains("--mode"));
        assert!(load(&strings("--mode http --url https://x/")).is_err());
        assert!(load(&strings("--mode http --url http://127.0.0.1:9 --rate -1")).is_err());
        assert!(load(&strings("--mode http --url http://127.0.0.1:9 --conns")).unwrap_err().contains("needs a value"));
        assert!(load(&strings("--mode http --url http://127.0.0.1:9 --bogus 1")).unwrap_err().contains("bogus"));
    }

    #[test]
    fn extra_headers_go_on_every_request() {
        let args: Vec<String> = [
            "--mode",
            "mcp-call-legacy",
            "--url",
            "http://127.0.0.1:9/mcp",
            "--header",
            "x-api-key: Bearer sk-1",
            "--header",
            "X-Trace:a:b",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let (cfg, _) = load(&args).unwrap();
        let want = [("x-api-key", "Bearer sk-1"), ("X-Trace", "a:b")].map(|(n, v)| (n.to_string(), v.to_string()));
        assert_eq!(cfg.target.headers, want);
        let req = String::from_utf8(crate::mcp::initialize(&cfg.target, 0)).unwrap();
        assert!(req.contains("\r\nx-api-key: Bearer sk-1\r\nX-Trace: a:b\r\ncontent-length: "), "{req}");
        for bad in ["novalue", ": v", "a b: v"] {
            let mut a = args.clone();
            a[5] = bad.into();
            assert!(load(&a).unwrap_err().contains("--header"), "{bad}");
        }
    }

    #[test]
    fn fixture_command_line() {
        let (addr, cfg) =
            fixture(&strings("--listen 127.0.0.1:7000 --tools 24 --notify-ms 250 --delay-us 40 --list-ttl-ms 9"))
                .unwrap();
        assert_eq!(cfg.list_ttl_ms, 9);
        assert_eq!(addr.port(), 7000);
        assert_eq!((cfg.tools, cfg.notify, cfg.delay), (24, Duration::from_millis(250), Duration::from_micros(40)));
        assert_eq!(fixture(&strings("--help")).unwrap_err(), "");
        assert!(fixture(&strings("--tools many")).is_err());
    }
}
