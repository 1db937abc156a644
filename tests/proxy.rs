//! Integration tests of the HTTP data plane through the real binary with `workers: 2`.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

fn config(binds: &str) -> String {
    format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\n  drainTimeout: 5s\nfrontendPolicies:\n  http:\n    headerReadTimeout: 500ms\n    maxHeaderBytes: 4096\n    maxBodyBytes: 1000\nbinds:\n{binds}"
    )
}

fn one_route(upstream: &Upstream, policies: &str) -> String {
    config(&format!(
        "- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - name: main\n      policies: {policies}\n      backends:\n      - host: {}\n",
        upstream.addr
    ))
}

#[test]
fn proxies_keepalive_requests_across_shards() {
    let up = upstream("a");
    let gw = Gateway::start(&one_route(&up, "{}"));
    for _ in 0..4 {
        let mut c = Client::connect(gw.addr());
        for i in 0..5 {
            let r = c.get(&format!("/x/{i}?q=1"));
            assert_eq!(r.status, 200);
            let body = r.body_str();
            assert!(body.starts_with(&format!("a GET /x/{i}?q=1")), "{body}");
            assert!(body.contains("x-forwarded-for: 127.0.0.1"), "{body}");
            assert_eq!(r.header("x-upstream"), Some("a"));
            assert!(r.header("x-hop").is_none(), "Connection-named header must not be forwarded");
            assert!(r.header("keep-alive").is_none());
        }
        let r = c.send(b"POST /p HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nhello").unwrap();
        assert!(r.body_str().ends_with("hello"));
        let r = c.send(b"POST /c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap();
        assert!(r.body_str().ends_with("abcde"), "{}", r.body_str());
    }
    let m = gw.wait_metric("ringgate_requests_total{route=\"0/listener0/main\",status=\"200\"} 28");
    let drivers = m.lines().filter(|l| l.starts_with("ringgate_runtime_driver_info")).count();
    assert_eq!(drivers, 2);
    gw.wait_line("http.path=\"/x/4?q=1\"");
}

#[test]
fn routes_by_host_path_method_header_query_and_weight() {
    let (a, b, c) = (upstream("a"), upstream("b"), upstream("c"));
    let gw = Gateway::start(&config(&format!(
        r#"- port: 0
  address: 127.0.0.1
  listeners:
  - hostname: "*.example.com"
    routes:
    - backends: [{{host: "{c}"}}]
  - routes:
    - name: catchall
      matches: [{{path: {{pathPrefix: /}}}}]
      backends: [{{host: "{a}"}}]
    - name: api
      matches:
      - path: {{pathPrefix: /api}}
        method: POST
      - path: {{exact: /exact}}
      - path: {{regex: "/re/[0-9]+"}}
      - headers: [{{name: x-canary, value: {{exact: "yes"}}}}]
        path: {{pathPrefix: /hdr}}
      - query: [{{name: v, value: {{regex: "2|3"}}}}]
        path: {{pathPrefix: /q}}
      backends: [{{host: "{b}"}}]
    - name: split
      matches: [{{path: {{pathPrefix: /split}}}}]
      backends: [{{host: "{a}", weight: 1}}, {{host: "{b}", weight: 1}}]
"#,
        a = a.addr,
        b = b.addr,
        c = c.addr
    )));
    let who = |req: &str| raw(gw.addr(), req.as_bytes()).header("x-upstream").unwrap_or("none").to_string();
    assert_eq!(who("POST /api/x HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n"), "b");
    assert_eq!(who("GET /api/x HTTP/1.1\r\nhost: t\r\n\r\n"), "a", "method must match");
    assert_eq!(who("POST /apix HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n"), "a", "prefix is segment-aware");
    assert_eq!(who("GET /exact HTTP/1.1\r\nhost: t\r\n\r\n"), "b");
    assert_eq!(who("GET /exact/no HTTP/1.1\r\nhost: t\r\n\r\n"), "a");
    assert_eq!(who("GET /re/42 HTTP/1.1\r\nhost: t\r\n\r\n"), "b");
    assert_eq!(who("GET /re/4x HTTP/1.1\r\nhost: t\r\n\r\n"), "a");
    assert_eq!(who("GET /hdr HTTP/1.1\r\nhost: t\r\nX-Canary: yes\r\n\r\n"), "b");
    assert_eq!(who("GET /hdr HTTP/1.1\r\nhost: t\r\n\r\n"), "a");
    assert_eq!(who("GET /q?a=1&v=3 HTTP/1.1\r\nhost: t\r\n\r\n"), "b");
    assert_eq!(who("GET /q?v=4 HTTP/1.1\r\nhost: t\r\n\r\n"), "a");
    assert_eq!(who("GET / HTTP/1.1\r\nhost: api.example.com:80\r\n\r\n"), "c");
    assert_eq!(who("GET / HTTP/1.1\r\nhost: example.com\r\n\r\n"), "a");
    let mut c = Client::connect(gw.addr());
    let mut seen = std::collections::HashMap::new();
    for _ in 0..200 {
        *seen.entry(c.get("/split").header("x-upstream").unwrap().to_string()).or_insert(0) += 1;
    }
    assert!(seen["a"] > 50 && seen["b"] > 50, "weights 1:1 gave {seen:?}");
}

#[test]
fn no_route_is_404_json() {
    let up = upstream("a");
    let gw = Gateway::start(&config(&format!(
        "- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{exact: /only}}}}]\n      backends: [{{host: \"{}\"}}]\n",
        up.addr
    )));
    let r = get(gw.addr(), "/other");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.body_str().contains("\"type\":\"no_route\""));
    gw.wait_metric("ringgate_request_errors_total{reason=\"no_route\"} 1");
}

#[test]
fn traffic_policies() {
    let up = upstream("a");
    let gw = Gateway::start(&config(&format!(
        r#"- port: 0
  address: 127.0.0.1
  listeners:
  - routes:
    - name: headers
      matches: [{{path: {{pathPrefix: /h}}}}]
      policies:
        requestHeaderModifier: {{add: {{x-added: one}}, set: [{{name: user-agent, value: rg}}], remove: [x-drop]}}
        responseHeaderModifier: {{set: {{x-upstream: replaced}}, add: {{x-resp: two}}}}
      backends: [{{host: "{up}"}}]
    - name: redirect
      matches: [{{path: {{pathPrefix: /old}}}}]
      policies:
        requestRedirect: {{path: {{prefix: /new}}, status: 301}}
    - name: rewrite
      matches: [{{path: {{pathPrefix: /api}}}}]
      policies:
        urlRewrite: {{path: {{prefix: /v2}}, authority: {{full: rewritten.example}}}}
      backends: [{{host: "{up}"}}]
    - name: direct
      matches: [{{path: {{exact: /direct}}}}]
      policies:
        directResponse: {{body: "hi there", status: 418}}
    - name: cors
      matches: [{{path: {{pathPrefix: /cors}}}}]
      policies:
        cors: {{allowOrigins: ["https://*.good.example"], allowMethods: [GET, POST], allowHeaders: [x-a], exposeHeaders: [x-upstream], maxAge: 60s}}
      backends: [{{host: "{up}"}}]
    - name: retry
      matches: [{{path: {{exact: /flaky}}}}]
      policies:
        retry: {{attempts: 3, codes: [503]}}
      backends: [{{host: "{up}"}}]
    - name: timeout
      matches: [{{path: {{pathPrefix: /slow}}}}]
      policies:
        timeout: {{requestTimeout: 200ms}}
      backends: [{{host: "{up}"}}]
"#,
        up = up.addr
    )));
    let r = raw(gw.addr(), b"GET /h HTTP/1.1\r\nhost: t\r\nuser-agent: curl\r\nx-drop: 1\r\n\r\n");
    let body = r.body_str();
    assert!(
        body.contains("x-added: one")
            && body.contains("user-agent: rg")
            && !body.contains("x-drop")
            && !body.contains("curl"),
        "{body}"
    );
    assert_eq!(r.header("x-upstream"), Some("replaced"));
    assert_eq!(r.header("x-resp"), Some("two"));

    let r = get(gw.addr(), "/old/page?x=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("http://test/new/page?x=1"));

    let r = get(gw.addr(), "/api/items?y=2");
    assert!(r.body_str().starts_with("a GET /v2/items?y=2"), "{}", r.body_str());
    assert!(r.body_str().contains("host: rewritten.example"));

    let r = get(gw.addr(), "/direct");
    assert_eq!((r.status, r.body_str().as_str()), (418, "hi there"));

    let r = raw(gw.addr(), b"OPTIONS /cors HTTP/1.1\r\nhost: t\r\norigin: https://a.good.example\r\naccess-control-request-method: POST\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://a.good.example"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(r.header("access-control-max-age"), Some("60"));
    let r = raw(gw.addr(), b"OPTIONS /cors HTTP/1.1\r\nhost: t\r\norigin: https://evil.example\r\naccess-control-request-method: POST\r\n\r\n");
    assert!(r.header("access-control-allow-origin").is_none());
    let r = raw(gw.addr(), b"GET /cors HTTP/1.1\r\nhost: t\r\norigin: https://a.good.example\r\n\r\n");
    assert_eq!(r.header("access-control-expose-headers"), Some("x-upstream"));

    let before = up.hits.load(std::sync::atomic::Ordering::SeqCst);
    let mut ok = 0;
    for _ in 0..4 {
        if get(gw.addr(), "/flaky").status == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 4, "every 503 must be retried");
    assert!(up.hits.load(std::sync::atomic::Ordering::SeqCst) - before >= 5);
    assert!(!gw.metrics().contains("ringgate_upstream_retries_total 0"));

    let r = get(gw.addr(), "/slow/1000");
    assert_eq!(r.status, 504);
    assert!(r.body_str().contains("request_timeout"));
}

#[test]
fn bad_input_is_refused_with_the_right_status_and_closed() {
    let up = upstream("a");
    let gw = Gateway::start(&one_route(&up, "{}"));
    let cases: &[(&[u8], u16, &str)] = &[
        (
            b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "cl_with_te",
        ),
        (
            b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
            400,
            "duplicate_content_length",
        ),
        (b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: +3\r\n\r\nabc", 400, "invalid_content_length"),
        (b"GET / HTTP/1.1\nhost: t\r\n\r\n", 400, "bare_lf"),
        (b"GET / HTTP/1.1\r\nhost: t\r\nx-a: 1\r\n  folded\r\n\r\n", 400, "obs_fold"),
        (
            b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            400,
            "unsupported_transfer_encoding",
        ),
        (b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 5000\r\n\r\n", 413, "body_too_large"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "missing_host"),
        (b"GET / HTTP/3.0\r\nhost: t\r\n\r\n", 505, "unsupported_version"),
    ];
    for (req, status, reason) in cases {
        let mut c = Client::connect(gw.addr());
        let r = c.send(req).unwrap();
        assert_eq!(r.status, *status, "{}", String::from_utf8_lossy(req));
        assert!(r.body_str().contains(reason), "{} → {}", String::from_utf8_lossy(req), r.body_str());
        assert!(c.is_closed(), "connection must close after {reason}");
    }
    // oversized head
    let big = format!("GET / HTTP/1.1\r\nhost: t\r\nx-big: {}\r\n\r\n", "a".repeat(5000));
    let r = raw(gw.addr(), big.as_bytes());
    assert_eq!(r.status, 431);
    // chunked body larger than the limit
    let mut body = String::new();
    for _ in 0..20 {
        body.push_str(&format!("64\r\n{}\r\n", "x".repeat(100)));
    }
    let r = raw(
        gw.addr(),
        format!("POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n{body}0\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 413);
    // bad chunk size
    let r = raw(gw.addr(), b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n");
    assert_eq!(r.status, 400);
    // slow head → 408
    let mut c = Client::connect(gw.addr());
    c.w.write_all(b"GET / HTTP/1.1\r\nhost").unwrap();
    let r = common::read_response(&mut c.r).unwrap();
    assert_eq!(r.status, 408);
    // the gateway still serves others
    assert_eq!(get(gw.addr(), "/fine").status, 200);
    for reason in ["bare_lf", "obs_fold", "body_too_large", "header_timeout", "head_too_large"] {
        gw.wait_metric(&format!("reason=\"{reason}\""));
    }
}

#[test]
fn sse_events_are_forwarded_while_the_stream_is_open() {
    let up = upstream("a");
    let gw = Gateway::start(&one_route(&up, "{}"));
    let mut c = Client::connect(gw.addr());
    c.w.write_all(b"GET /sse HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\n\r\n").unwrap();
    use std::io::BufRead;
    let mut seen = String::new();
    // the upstream holds the second event until we release it: reading the first proves streaming
    while !seen.contains("data: first") {
        let mut l = String::new();
        assert!(c.r.read_line(&mut l).unwrap() > 0, "stream ended early: {seen}");
        seen.push_str(&l);
    }
    assert!(seen.to_ascii_lowercase().contains("content-type: text/event-stream"));
    up.release.send(()).unwrap();
    while !seen.contains("data: second") {
        let mut l = String::new();
        assert!(c.r.read_line(&mut l).unwrap() > 0);
        seen.push_str(&l);
    }
    // and the connection is still usable afterwards
    let mut l = String::new();
    while l != "0\r\n" {
        l.clear();
        c.r.read_line(&mut l).unwrap();
    }
    let mut end = String::new();
    c.r.read_line(&mut end).unwrap();
    assert_eq!(c.get("/after").status, 200);
}

#[test]
fn connection_limit_per_shard() {
    let up = upstream("a");
    let yaml = one_route(&up, "{}").replace("maxBodyBytes: 1000", "maxBodyBytes: 1000\n    maxConnectionsPerShard: 1");
    let gw = Gateway::start(&yaml);
    let mut held: Vec<Client> = (0..6).map(|_| Client::connect(gw.addr())).collect();
    let mut refused = 0;
    for c in held.iter_mut() {
        if c.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").is_err() {
            refused += 1;
        }
    }
    assert!(refused >= 4, "2 shards × 1 connection: at least 4 of 6 refused, got {refused}");
    let m = gw.metrics();
    let rejected: u64 = m
        .lines()
        .filter(|l| l.starts_with("ringgate_connections_rejected_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(rejected >= 4, "{m}");
}

#[test]
fn upstream_down_is_502_and_counted() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let gw = Gateway::start(&config(&format!(
        "- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - backends: [{{host: \"{addr}\"}}]\n"
    )));
    let r = get(gw.addr(), "/");
    assert_eq!(r.status, 502);
    assert!(r.body_str().contains("upstream_connect"));
    gw.wait_line("reason=upstream_connect");
}

#[test]
fn idle_keepalive_connections_are_closed() {
    let up = upstream("a");
    let gw = Gateway::start(
        &one_route(&up, "{}").replace("headerReadTimeout: 500ms", "headerReadTimeout: 500ms\n    idleTimeout: 300ms"),
    );
    let mut c = Client::connect(gw.addr());
    assert_eq!(c.get("/").status, 200);
    // no further request: the gateway must close the connection on its own (the read blocks until it does)
    let start = std::time::Instant::now();
    assert!(c.is_closed());
    assert!(start.elapsed() < Duration::from_secs(5));
    let m = gw.wait_metric("ringgate_request_errors_total{reason=\"idle_timeout\"} 1");
    // counted on the shard that served the connection, and on no other
    let idle: Vec<&str> =
        m.lines().filter(|l| l.starts_with("ringgate_connections_idle_closed_total{shard=")).collect();
    assert_eq!(idle.len(), 2, "{m}");
    assert_eq!(idle.iter().filter(|l| l.ends_with(" 1")).count(), 1, "{m}");
    assert_eq!(idle.iter().filter(|l| l.ends_with(" 0")).count(), 1, "{m}");
}

#[test]
fn stale_pooled_upstream_connections_are_retried_unseen_by_clients() {
    use std::sync::atomic::Ordering::SeqCst;
    let (up, closed) = closing_upstream();
    let gw = Gateway::start(&config(&format!(
        "- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - name: main\n      backends:\n      - host: {up}\n"
    )));
    let mut c = Client::connect(gw.addr());
    let requests: [&[u8]; 5] = [
        b"GET /a HTTP/1.1\r\nhost: t\r\n\r\n",
        b"GET /b HTTP/1.1\r\nhost: t\r\n\r\n",
        b"GET /c HTTP/1.1\r\nhost: t\r\n\r\n",
        // a body that came whole with its head can be resent too
        b"POST /d HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nhello",
        // a streamed body cannot: the pooled connection is probed before it is used
        b"POST /e HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ];
    let want = ["ok GET /a ", "ok GET /b ", "ok GET /c ", "ok POST /d hello", "ok POST /e abc"];
    for (i, (req, want)) in requests.iter().zip(want).enumerate() {
        // the upstream closed the connection the last answer came on before the next request
        wait_until("the upstream closed its connection", || closed.load(SeqCst) == i);
        let r = c.send(req).unwrap();
        assert_eq!((r.status, r.body_str().as_str()), (200, want));
    }
    let m = gw.wait_metric("ringgate_upstream_stale_connections_total{found_by=\"peek\"} 1");
    assert!(m.contains("ringgate_upstream_stale_connections_total{found_by=\"retry\"} 3"), "{m}");
    assert!(!m.contains("ringgate_request_errors_total{"), "{m}");
}

#[test]
fn gateways_form_routes_by_gateway_and_listener() {
    let (a, b) = (upstream("a"), upstream("b"));
    let gw = Gateway::start(&format!(
        r#"config:
  workers: 2
  adminAddr: 127.0.0.1:0
gateways:
  web:
    port: 0
    bindAddress: 127.0.0.1
    listeners:
    - name: api
      hostname: api.example.test
    - name: www
      hostname: www.example.test
routes:
- name: api-only
  gateways: [web/api]
  matches: [{{path: {{pathPrefix: /api}}}}]
  backends: [{{host: "{a}"}}]
- name: site
  gateways: [web/www]
  backends: [{{host: "{b}"}}]
"#,
        a = a.addr,
        b = b.addr
    ));
    // the bound port, as the admin server reports it for the gateway's configured port 0
    let listeners: serde_json::Value = serde_json::from_str(&get(gw.admin, "/listeners").body_str()).unwrap();
    assert_eq!(listeners.as_array().map(Vec::len), Some(1), "{listeners}");
    assert_eq!(listeners[0]["bind"], "127.0.0.1:0", "{listeners}");
    let addr: std::net::SocketAddr = listeners[0]["address"].as_str().unwrap().parse().unwrap();
    assert_ne!(addr.port(), 0);
    let send = |host: &str, path: &str| raw(addr, format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes());

    let r = send("api.example.test", "/api/x");
    assert_eq!((r.status, r.header("x-upstream")), (200, Some("a")), "{}", r.body_str());
    // `site` matches every path, but it is attached to the listener `www`: not for api's host
    let r = send("api.example.test", "/index.html");
    assert_eq!((r.status, r.header("x-upstream")), (404, None), "{}", r.body_str());
    let r = send("www.example.test", "/api/x");
    assert_eq!((r.status, r.header("x-upstream")), (200, Some("b")), "{}", r.body_str());
    gw.wait_metric("ringgate_requests_total{route=\"0/api/api-only\",status=\"200\"} 1");
    gw.wait_metric("ringgate_requests_total{route=\"0/www/site\",status=\"200\"} 1");
}

/// Each of two `port: 0` entries on one address answers with its own routes, named apart, in both
/// config forms and after a reload (which keeps each on the port it got, and its route names).
#[test]
fn two_port_0_binds_on_one_address_each_serve_their_own_routes() {
    let binds = |one: &str, two: &str| {
        config(&format!(
            "- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - policies: {{directResponse: {{body: {one}}}}}\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - policies: {{directResponse: {{body: {two}}}}}\n"
        ))
    };
    let gateways = "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\ngateways:\n  one: {port: 0, bindAddress: 127.0.0.1}\n  two: {port: 0, bindAddress: 127.0.0.1}\nroutes:\n- {gateways: [one], policies: {directResponse: {body: from-one}}}\n- {gateways: [two], policies: {directResponse: {body: from-two}}}\n";
    for (yaml, want) in
        [(binds("first", "second"), ["first", "second"]), (gateways.to_string(), ["from-one", "from-two"])]
    {
        let gw = Gateway::start(&yaml);
        assert_eq!(gw.binds.len(), 2, "{:?}", gw.lines.lock().unwrap());
        assert_ne!(gw.binds[0], gw.binds[1]);
        for (addr, body) in gw.binds.iter().zip(want) {
            assert_eq!(get(*addr, "/").body_str(), body, "{addr}");
        }
        let listeners: serde_json::Value = serde_json::from_str(&get(gw.admin, "/listeners").body_str()).unwrap();
        let shown: Vec<_> =
            listeners.as_array().unwrap().iter().map(|l| l["address"].as_str().unwrap().to_string()).collect();
        assert_eq!(shown, gw.binds.iter().map(|a| a.to_string()).collect::<Vec<_>>(), "{listeners}");
        each_counted_under_its_own_route(&gw, 1);
    }
    // a reload keeps each entry on the port it got, the two apart, and their route names
    let gw = Gateway::start(&binds("first", "second"));
    for addr in &gw.binds {
        assert_eq!(get(*addr, "/").status, 200);
    }
    std::fs::write(&gw.config, binds("third", "fourth")).unwrap();
    gw.signal(libc::SIGHUP);
    gw.wait_line("reload applied");
    for (addr, body) in gw.binds.iter().zip(["third", "fourth"]) {
        assert_eq!(get(*addr, "/").body_str(), body, "{addr}");
    }
    each_counted_under_its_own_route(&gw, 2);
}

/// The first `port: 0` bind's route is `0/…`, the second's `0-1/…`: each has served `n` requests.
fn each_counted_under_its_own_route(gw: &Gateway, n: usize) {
    for route in ["0/listener0/route0", "0-1/listener0/route0"] {
        gw.wait_metric(&format!("ringgate_requests_total{{route=\"{route}\",status=\"200\"}} {n}\n"));
    }
}
