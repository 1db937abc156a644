//! The benchmark tools against the real binary: rg-fixture behind ringgate, rg-load through it in every mode, zero errors.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Gateway;
use ringgate_loadtest::fixture::{self, FixtureConfig};
use ringgate_loadtest::load::{self, LoadConfig, Mode};
use ringgate_loadtest::mcp::Era;
use serde_json::Value;

/// Start a fixture on its own thread and monoio runtime; it lives until the test process ends.
fn start_fixture(cfg: FixtureConfig) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        load::block_on(|| async move {
            let l = fixture::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            fixture::serve(l, cfg).await;
        })
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

fn run(addr: SocketAddr, path: &str, mode: Mode, tweak: impl FnOnce(&mut LoadConfig)) -> Value {
    let mut cfg = LoadConfig::new(addr, mode);
    cfg.target.path = path.into();
    cfg.conns = 4;
    cfg.warmup = Duration::from_millis(100);
    cfg.duration = Duration::from_millis(500);
    tweak(&mut cfg);
    let report = load::block_on(|| load::run(cfg));
    assert_eq!(report["error_total"], 0, "{mode:?} on {path}: {report:#}");
    assert!(report["ok"].as_u64().unwrap() > 0, "{mode:?} on {path}: nothing succeeded: {report:#}");
    report
}

#[test]
fn rg_load_through_ringgate_without_errors() {
    let fx = start_fixture(FixtureConfig { tools: 3, notify: Duration::from_millis(20), ..FixtureConfig::default() });
    let gw = Gateway::start(&format!(
        "config:\n  workers: 1\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - name: mcp\n      matches: [{{path: {{pathPrefix: /mcp}}}}]\n      backends:\n      - mcp:\n          targets:\n          - name: a\n            mcp: {{ host: \"http://{fx}/mcp/a\" }}\n          - name: b\n            mcp: {{ host: \"http://{fx}/mcp/b\" }}\n    - name: plain\n      backends: [{{host: \"{fx}\"}}]\n"
    ));
    let gw_addr = gw.addr();

    // the fixture itself, directly, in both eras
    run(fx, "/mcp", Mode::Call(Era::Legacy), |_| {});
    run(fx, "/mcp", Mode::Call(Era::Modern), |c| c.rate = 2000.0);

    // through the gateway: two targets, so tools come back prefixed
    let r = run(gw_addr, "/mcp", Mode::Call(Era::Legacy), |c| c.tool = "a_echo".into());
    assert!(r["latency_us"]["p50"].as_f64().unwrap() > 0.0);
    let r = run(gw_addr, "/mcp", Mode::Call(Era::Modern), |c| {
        c.tool = "b_echo".into();
        c.rate = 1000.0;
    });
    assert_eq!(r["loop"].as_str().map(|s| s.starts_with("open")), Some(true));
    assert!(r["sent"].as_u64().unwrap() > 0);
    run(gw_addr, "/mcp", Mode::List(Era::Modern), |c| c.expect_tools = 6);
    run(gw_addr, "/mcp", Mode::List(Era::Legacy), |c| c.expect_tools = 6);
    run(gw_addr, "/mcp", Mode::Session { delete: true }, |_| {});
    let r = run(gw_addr, "/mcp", Mode::Session { delete: false }, |c| {
        c.requests = 20;
        c.warmup = Duration::ZERO;
        c.duration = Duration::from_secs(30);
    });
    assert_eq!(r["ok"], 20, "{r:#}");
    let r = run(gw_addr, "/mcp", Mode::Streams, |c| c.duration = Duration::from_millis(600));
    assert_eq!(r["streams_opened"], 4, "{r:#}");
    assert!(r["events"].as_u64().unwrap() >= 4, "{r:#}");

    // plain HTTP through the gateway
    run(gw_addr, "/bytes", Mode::Http, |c| c.expect_bytes = Some(5));
    run(gw_addr, "/echo", Mode::Http, |c| {
        c.method = "POST".into();
        c.body_bytes = 16 * 1024;
        c.expect_bytes = Some(16 * 1024);
    });

    // and a wrong expectation is caught, counted by kind
    let mut cfg = LoadConfig::new(gw_addr, Mode::Call(Era::Modern));
    cfg.tool = "a_echo".into();
    cfg.message = "hi".into();
    cfg.conns = 1;
    cfg.requests = 3;
    cfg.warmup = Duration::ZERO;
    cfg.target.path = "/mcp".into();
    cfg.tool = "nope_echo".into();
    let report = load::block_on(|| load::run(cfg));
    assert_eq!(report["errors"]["jsonrpc_error"], 3, "{report:#}");
}
