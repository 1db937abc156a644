//! Micro-benchmarks of ringgate's hot parsers: JSON-RPC envelope peek (five ways), SSE framing,
//! HTTP head parsing and route matching. `run.sh` runs it natively (ns/op) and under callgrind
//! (instructions/op, marked by client requests) and writes bench/results/micro.md.

use std::borrow::Cow;
use std::hint::black_box;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

mod scan;

// ---------------------------------------------------------------- callgrind client requests

/// Valgrind's client-request sequence (a no-op natively): callgrind zeroes or dumps its counts.
#[inline(always)]
fn client_request(request: u64, arg: u64) {
    let args: [u64; 6] = [request, arg, 0, 0, 0, 0];
    let mut result: u64 = 0;
    // SAFETY: the special rotate sequence and xchg are register-only no-ops outside valgrind.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3", "rol rdi, 13", "rol rdi, 61", "rol rdi, 51", "xchg rbx, rbx",
            inout("rdx") result, in("rax") args.as_ptr(), out("rdi") _,
        );
    }
    black_box(result);
}
const CG_BASE: u64 = ((b'C' as u64) << 24) | ((b'T' as u64) << 16);
fn cg_zero() {
    client_request(CG_BASE + 1, 0);
}
fn cg_dump(name: &str) {
    let c = std::ffi::CString::new(name).unwrap_or_default();
    client_request(CG_BASE + 3, c.as_ptr() as u64);
}

// ---------------------------------------------------------------- harness

/// CPU time of this thread in nanoseconds.
fn cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct Bench {
    /// Under callgrind: fewer iterations, each case between a zero and a named dump.
    callgrind: bool,
    filter: Option<String>,
}

impl Bench {
    fn run<R>(&self, name: &str, bytes: usize, mut f: impl FnMut() -> R) {
        if self.filter.as_deref().is_some_and(|p| !name.contains(p)) {
            return;
        }
        if self.callgrind {
            const N: u64 = 300;
            for _ in 0..20 {
                black_box(f());
            }
            cg_zero();
            for _ in 0..N {
                black_box(f());
            }
            cg_dump(&format!("{name}|{N}"));
            return;
        }
        // calibrate to ~20 ms per round, then best and median of 9 rounds, in this thread's CPU
        // time (a shared machine preempts us; that time is not ours)
        let mut iters = 1u64;
        loop {
            let t = cpu_ns();
            for _ in 0..iters {
                black_box(f());
            }
            if cpu_ns() - t >= 20_000_000 {
                break;
            }
            iters *= 2;
        }
        let mut ns: Vec<f64> = (0..9)
            .map(|_| {
                let t = cpu_ns();
                for _ in 0..iters {
                    black_box(f());
                }
                (cpu_ns() - t) as f64 / iters as f64
            })
            .collect();
        ns.sort_by(f64::total_cmp);
        println!("{name}\t{bytes}\t{:.1}\t{:.1}", ns[0], ns[4]);
    }
}

// ---------------------------------------------------------------- JSON-RPC peek

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"progressToken":"p-1"}"#;

/// A modern tools/call as clients send it (method first).
fn small_call() -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{{"name":"search_docs","arguments":{{"query":"thread per core","limit":5}},{META}}}}}"#).into_bytes()
}

/// A tools/call with 4 KiB of arguments and the method last.
fn big_call() -> Vec<u8> {
    let text = "lorem ipsum \\\"dolor\\\" sit amet, ".repeat(128);
    format!(r#"{{"params":{{"arguments":{{"text":"{text}","n":[1,2,3,{{"deep":[true,false,null]}}]}},{META},"name":"search_docs"}},"jsonrpc":"2.0","id":"c-17","method":"tools/call"}}"#).into_bytes()
}

/// A 16 KiB tools/list result (a response: no method, no params; id last).
fn big_response() -> Vec<u8> {
    let tool = r#"{"name":"tool_N","title":"Tool N","description":"Does the N-th thing, carefully and with \"quotes\"","inputSchema":{"type":"object","properties":{"a":{"type":"string","description":"first"},"b":{"type":"number"}},"required":["a"]}}"#;
    let tools: Vec<String> = (0..64).map(|i| tool.replace('N', &i.to_string())).collect();
    format!(r#"{{"jsonrpc":"2.0","result":{{"tools":[{}]}},"id":17}}"#, tools.join(",")).into_bytes()
}

/// Each approach returns what it found as (method length, id present, params.name length), which
/// must agree with serde_json's Value.
fn peek_value(b: &[u8]) -> Option<(usize, usize, usize)> {
    let v: Value = serde_json::from_slice(b).ok()?;
    let m = v.get("method").and_then(Value::as_str).map_or(0, str::len);
    let id = v.get("id").map_or(0, |_| 1);
    let n = v.get("params").and_then(|p| p.get("name")).and_then(Value::as_str).map_or(0, str::len);
    Some((m, id, n))
}

#[derive(Deserialize)]
struct Env<'a> {
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    params: Option<Params<'a>>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct EnvRaw<'a> {
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

fn peek_borrowed(b: &[u8]) -> Option<(usize, usize, usize)> {
    let e: Env = serde_json::from_slice(b).ok()?;
    let n = e.params.and_then(|p| p.name).map_or(0, |n| n.len());
    Some((e.method.map_or(0, |m| m.len()), e.id.map_or(0, |_| 1), n))
}

/// params kept raw (RawValue); its name parsed only for tools/call.
fn peek_raw(b: &[u8]) -> Option<(usize, usize, usize)> {
    let e: EnvRaw = serde_json::from_slice(b).ok()?;
    let n = match (&e.method, e.params) {
        (Some(m), Some(p)) if m == "tools/call" => {
            serde_json::from_str::<Params>(p.get()).ok()?.name.map_or(0, |n| n.len())
        }
        _ => 0,
    };
    Some((e.method.map_or(0, |m| m.len()), e.id.map_or(0, |_| 1), n))
}

fn sonic_tree() -> sonic_rs::PointerTree {
    let mut t = sonic_rs::PointerTree::new();
    t.add_path(["method"].iter());
    t.add_path(["id"].iter());
    t.add_path(["params", "name"].iter());
    t
}

fn peek_sonic(b: &[u8], tree: &sonic_rs::PointerTree) -> Option<(usize, usize, usize)> {
    use sonic_rs::JsonValueTrait;
    let v = sonic_rs::get_many(b, tree).ok()?;
    let s = |i: usize| v[i].as_ref().and_then(|x| x.as_str().map(str::len)).unwrap_or(0);
    Some((s(0), v[1].as_ref().map_or(0, |_| 1), s(2)))
}

fn peek_sonic_struct(b: &[u8]) -> Option<(usize, usize, usize)> {
    #[derive(Deserialize)]
    struct E<'a> {
        #[serde(borrow)]
        method: Option<Cow<'a, str>>,
        id: Option<sonic_rs::OwnedLazyValue>,
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    let e: E = sonic_rs::from_slice(b).ok()?;
    let n = e.params.and_then(|p| p.name).map_or(0, |n| n.len());
    Some((e.method.map_or(0, |m| m.len()), e.id.map_or(0, |_| 1), n))
}

/// simd-json mutates its input: the copy is part of the cost for a forwarder that keeps the bytes.
fn peek_simd(b: &[u8], scratch: &mut Vec<u8>) -> Option<(usize, usize, usize)> {
    #[derive(Deserialize)]
    struct E<'a> {
        #[serde(borrow)]
        method: Option<Cow<'a, str>>,
        id: Option<simd_json::OwnedValue>,
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    scratch.clear();
    scratch.extend_from_slice(b);
    let e: E = simd_json::serde::from_slice(scratch).ok()?;
    let n = e.params.and_then(|p| p.name).map_or(0, |n| n.len());
    Some((e.method.map_or(0, |m| m.len()), e.id.map_or(0, |_| 1), n))
}

fn peek_scan(b: &[u8]) -> Option<(usize, usize, usize)> {
    let p = scan::peek(b)?;
    Some((p.method.map_or(0, <[u8]>::len), p.id.map_or(0, |_| 1), p.name.map_or(0, <[u8]>::len)))
}

fn json_cases(b: &Bench) {
    let tree = sonic_tree();
    let mut scratch = Vec::new();
    for (label, body) in
        [("call-250B", small_call()), ("call-4K-method-last", big_call()), ("resp-16K", big_response())]
    {
        let want = peek_value(&body);
        assert!(want.is_some(), "{label}: not JSON");
        let all: [(&str, Option<(usize, usize, usize)>); 7] = [
            ("serde_json Value", peek_value(&body)),
            ("serde_json borrowed struct (IgnoredAny)", peek_borrowed(&body)),
            ("serde_json borrowed, params RawValue", peek_raw(&body)),
            ("sonic-rs get_many", peek_sonic(&body, &tree)),
            ("sonic-rs borrowed struct", peek_sonic_struct(&body)),
            ("simd-json borrowed struct (+copy)", peek_simd(&body, &mut scratch)),
            ("hand scanner", peek_scan(&body)),
        ];
        for (name, got) in all {
            assert_eq!(got, want, "{label}: {name} disagrees");
        }
        let n = body.len();
        b.run(&format!("peek {label}: serde_json Value"), n, || peek_value(&body));
        b.run(&format!("peek {label}: serde_json borrowed struct (IgnoredAny)"), n, || peek_borrowed(&body));
        b.run(&format!("peek {label}: serde_json borrowed, params RawValue"), n, || peek_raw(&body));
        b.run(&format!("peek {label}: sonic-rs get_many"), n, || peek_sonic(&body, &tree));
        b.run(&format!("peek {label}: sonic-rs borrowed struct"), n, || peek_sonic_struct(&body));
        b.run(&format!("peek {label}: simd-json borrowed struct (+copy)"), n, || peek_simd(&body, &mut scratch));
        b.run(&format!("peek {label}: hand scanner"), n, || peek_scan(&body));
        b.run(&format!("peek {label}: ringgate jsonrpc::parse"), n, || ringgate::mcp::jsonrpc::parse(&body).is_ok());
        // what the gateway runs on a client's message (params of calls kept raw) and on a target's
        // answer to a call (its result kept raw)
        b.run(&format!("peek {label}: ringgate jsonrpc::parse_call"), n, || {
            ringgate::mcp::jsonrpc::parse_call(&body).is_ok()
        });
        b.run(&format!("peek {label}: ringgate jsonrpc::parse_answer"), n, || {
            ringgate::mcp::jsonrpc::parse_answer(&body).is_ok()
        });
    }
}

// ---------------------------------------------------------------- SSE framing

fn sse_cases(b: &Bench) {
    use ringgate::mcp::sse::{write_event, Parser};
    let data = small_call();
    let mut stream = Vec::new();
    for _ in 0..64 {
        write_event(&mut stream, None, Some("message"), &data);
    }
    let events = |chunk: usize| {
        let mut p = Parser::new(1 << 20);
        let mut n = 0;
        for c in stream.chunks(chunk) {
            p.push(c);
            while let Ok(Some(e)) = p.next_event() {
                n += e.data.len();
            }
        }
        n
    };
    assert_eq!(events(stream.len()), 64 * data.len());
    assert_eq!(events(1460), 64 * data.len());
    let n = stream.len();
    b.run("sse framing (64 events): parse, one push", n, || events(stream.len()));
    b.run("sse framing (64 events): parse, 1460-byte pushes", n, || events(1460));
    // one 16 KB event (a tools/list answer on one data line): the line-end search dominates
    let big = big_response();
    let mut one = Vec::new();
    write_event(&mut one, None, Some("message"), &big);
    let parse_one = |chunk: usize| {
        let mut p = Parser::new(1 << 20);
        let mut n = 0;
        for c in one.chunks(chunk) {
            p.push(c);
            while let Ok(Some(e)) = p.next_event() {
                n += e.data.len();
            }
        }
        n
    };
    assert_eq!(parse_one(one.len()), big.len());
    assert_eq!(parse_one(1460), big.len());
    b.run("sse framing (one 16 KB event): parse, one push", one.len(), || parse_one(one.len()));
    b.run("sse framing (one 16 KB event): parse, 1460-byte pushes", one.len(), || parse_one(1460));
    let mut out = Vec::with_capacity(n);
    b.run("sse framing (64 events): write", n, || {
        out.clear();
        for _ in 0..64 {
            write_event(&mut out, None, Some("message"), &data);
        }
        out.len()
    });
}

// ---------------------------------------------------------------- HTTP head + routes

fn route_config() -> String {
    let mut y = String::from("binds:\n- port: 18080\n  listeners:\n  - routes:\n");
    for i in 0..16 {
        y += &format!(
            "    - name: svc{i}\n      matches:\n      - path: {{ pathPrefix: /svc{i}/ }}\n        method: GET\n      - path: {{ exact: /svc{i} }}\n        headers:\n        - name: x-tenant\n          value: {{ exact: t{i} }}\n      backends:\n      - host: 127.0.0.1:{}\n",
            9000 + i
        );
    }
    y += "    - name: mcp\n      matches:\n      - path: { pathPrefix: /mcp }\n      backends:\n      - mcp:\n          targets:\n          - name: demo\n            demo: {}\n";
    y += "    - name: fallback\n      backends:\n      - host: 127.0.0.1:9999\n";
    y
}

fn head_cases(b: &Bench) {
    use ringgate::http::codec::{parse_request, Limits};
    let limits = Limits::default();
    let heads: [(&str, &[u8]); 3] = [
        ("GET /svc15/items/42", b"GET /svc15/items/42 HTTP/1.1\r\nhost: api.example.com\r\nuser-agent: bench/1\r\naccept: */*\r\n\r\n"),
        ("POST /mcp (MCP headers)", b"POST /mcp HTTP/1.1\r\nhost: gw.example.com\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\nmcp-method: tools/call\r\nmcp-name: echo\r\ncontent-length: 120\r\n\r\n"),
        ("GET /nowhere (fallback)", b"GET /nowhere HTTP/1.1\r\nhost: api.example.com\r\n\r\n"),
    ];
    let yaml = route_config();
    let cfg = ringgate::config::load::parse_str(&yaml, "micro.yaml").expect("config parses");
    let registry = ringgate::observe::metrics::Registry::new(1);
    let snap = ringgate::config::compile::compile(cfg, "micro.yaml", &registry).expect("config compiles");
    for (label, raw) in heads {
        let parse = || parse_request(raw, &limits).ok().flatten().map(|p| p.head_len);
        assert_eq!(parse(), Some(raw.len()));
        b.run(&format!("http head parse: {label}"), raw.len(), parse);
        let p = parse_request(raw, &limits).ok().flatten().expect("parses");
        let head = p.into_head(bytes::Bytes::copy_from_slice(raw));
        let chosen = ringgate::proxy::route::select(&snap, 0, &head).map(|s| s.route.name.clone());
        assert!(chosen.is_some(), "{label}: no route");
        b.run(&format!("route select, 18 routes: {label}"), raw.len(), || {
            ringgate::proxy::route::select(&snap, 0, &head).map(|s| s.prefix.is_some())
        });
    }
}

fn main() {
    let callgrind = std::env::var_os("MICRO_CALLGRIND").is_some();
    let b = Bench { callgrind, filter: std::env::args().nth(1) };
    if !callgrind {
        println!("case\tbytes\tbest ns\tmedian ns");
    }
    json_cases(&b);
    sse_cases(&b);
    head_cases(&b);
}
