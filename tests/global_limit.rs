//! `globalRateLimit` through the real binary: two gateway replicas (two shards each) share buckets in a real
//! redis-server, then Redis stalls, dies and comes back, and the failure modes decide.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// One fill per 100 years (ticks count from the Unix epoch on Redis's clock, the next in 2069): no refill mid-test.
const NEVER: &str = "876000h";

/// Three routes with a `globalRateLimit` each: `/shared` (6 tokens, failOpen), `/user` (2 per `x-user`), and
/// `/closed` (failClosed).
fn config(redis_port: u16) -> String {
    let route = |path: &str, policy: &str, limit: &str| {
        format!(
            r#"    - matches: [{{path: {{pathPrefix: {path}}}}}]
      policies:
        globalRateLimit:
          redis: 127.0.0.1:{redis_port}
{policy}          limits:
          - {{ {limit}, tokensPerFill: 1, fillInterval: {NEVER} }}
        directResponse: {{ status: 200, body: ok }}
"#
        )
    };
    let routes = [
        route("/shared", "", "maxTokens: 6"),
        route("/user", "", r#"maxTokens: 2, key: 'request.headers["x-user"]'"#),
        route("/closed", "          failureMode: failClosed\n          timeout: 100ms\n", "maxTokens: 1000"),
    ];
    format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n{}",
        routes.concat()
    )
}

/// One request on a fresh connection, so the kernel spreads them over both shards of a replica.
fn req(addr: SocketAddr, path: &str, user: Option<&str>) -> Response {
    let user = user.map(|u| format!("x-user: {u}\r\n")).unwrap_or_default();
    raw(addr, format!("GET {path} HTTP/1.1\r\nhost: gw.test\r\n{user}\r\n").as_bytes())
}

fn error_type(r: &Response) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body_str()));
    v["error"]["type"].as_str().unwrap_or_default().to_string()
}

#[test]
fn replicas_share_buckets_and_failure_modes_decide_when_redis_is_gone() {
    let redis = RedisServer::start();
    let replicas = [Gateway::start(&config(redis.port)), Gateway::start(&config(redis.port))];
    let addrs = [replicas[0].addr(), replicas[1].addr()];

    // Alternating replicas: one bucket of 6 for both, exactly.
    let shared: Vec<(usize, Response)> = (0..20).map(|i| (i % 2, req(addrs[i % 2], "/shared", None))).collect();
    let ok: Vec<usize> = shared.iter().filter(|(_, r)| r.status == 200).map(|(i, _)| *i).collect();
    assert_eq!(ok.len(), 6, "{:?}", shared.iter().map(|(_, r)| r.status).collect::<Vec<_>>());
    assert!(ok.contains(&0) && ok.contains(&1), "both replicas granted tokens: {ok:?}");
    for (_, r) in shared.iter().filter(|(_, r)| r.status != 200) {
        assert_eq!(r.status, 429);
        assert_eq!(error_type(r), "rate_limited");
        assert_eq!((r.header("x-ratelimit-limit"), r.header("x-ratelimit-remaining")), (Some("6"), Some("0")));
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!(retry > 365 * 24 * 3600, "the next fill is decades away: {retry}");
    }
    for gw in &replicas {
        gw.wait_metric("reason=\"rate_limited\"} 7");
    }

    // Keyed: a bucket of 2 per x-user, shared by the replicas.
    for user in ["ann", "ben"] {
        let codes: Vec<u16> = (0..4).map(|i| req(addrs[i % 2], "/user", Some(user)).status).collect();
        assert_eq!(codes, [200, 200, 429, 429], "{user} has a bucket of 2 of their own");
    }
    assert_eq!(req(addrs[0], "/user", None).status, 200, "callers without the header share one more bucket");
    // Redis forgets the script (as after a restart or failover): the calls fall back to EVAL and still count.
    assert_eq!(redis.command("SCRIPT FLUSH"), "+OK");
    let codes: Vec<u16> = (0..6).map(|i| req(addrs[i % 2], "/user", Some("cy")).status).collect();
    assert_eq!(codes, [200, 200, 429, 429, 429, 429]);
    assert_eq!(req(addrs[1], "/closed", None).status, 200, "failClosed serves while Redis answers");

    // Redis stalls: calls time out; failOpen serves, failClosed answers 503, neither waits much longer.
    assert_eq!(redis.command("CLIENT PAUSE 3000 ALL"), "+OK");
    let started = Instant::now();
    let open = req(addrs[0], "/shared", None);
    let closed = req(addrs[1], "/closed", None);
    assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
    assert_eq!(open.status, 200, "failOpen lets the request through: {}", open.body_str());
    assert_eq!((closed.status, error_type(&closed)), (503, "rate_limit_unavailable".into()), "{}", closed.body_str());
    assert!(closed.body_str().contains("fails closed"), "{}", closed.body_str());
    assert!(!closed.body_str().contains(&redis.port.to_string()), "the body does not name the Redis address");

    // Redis dies: the same, on both replicas and shards, and counted.
    let port = redis.port;
    drop(redis);
    for (i, gw) in replicas.iter().enumerate() {
        for _ in 0..4 {
            assert_eq!(req(addrs[i], "/shared", None).status, 200);
            let r = req(addrs[i], "/closed", None);
            assert_eq!((r.status, error_type(&r)), (503, "rate_limit_unavailable".into()), "{}", r.body_str());
        }
        // one stalled request each, then eight
        gw.wait_metric("reason=\"rate_limit_unavailable\"} 9");
        gw.wait_line("global rate limits use their failure mode");
    }

    // Redis is back (empty): after its backoff each replica counts again, against fresh buckets.
    let redis = RedisServer::start_on(port).unwrap_or_else(|log| panic!("cannot restart redis on {port}: {log}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, gw) in replicas.iter().enumerate() {
        loop {
            let r = req(addrs[i], "/shared", None);
            if r.status == 429 {
                break;
            }
            assert_eq!(r.status, 200);
            assert!(Instant::now() < deadline, "replica {i} is never limited again");
        }
        gw.wait_line("answers again");
    }
    assert_eq!(redis.command("EXISTS ringgate:rl:0/listener0/route0:0:6:1:3153600000000000"), ":1");
}
