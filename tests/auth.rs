//! Security policies through the real binary: JWTs signed by keys the test generates (RS256, ES256, EdDSA via
//! PyJWT), attack tokens, JWKS rotation over HTTP, MCP protected-resource metadata and per-identity tool
//! lists with the Python `mcp` client, API keys, Basic auth, and rate limits across both shards.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let p = root().join("target/peers/py/bin/python");
    assert!(p.exists(), "{} is missing: run tests/peers/install.sh", p.display());
    p
}

/// Test keys in a fresh directory; the public JWKs by kid.
struct Keys {
    dir: PathBuf,
    jwks: Value,
}

impl Keys {
    fn new() -> Keys {
        let dir = tempdir();
        let out = Command::new(python())
            .args([root().join("tests/peers/jwt_tool.py").to_str().unwrap(), "keys", dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Keys { dir, jwks: serde_json::from_slice(&out.stdout).unwrap() }
    }

    /// A JWKS document with these kids.
    fn set(&self, kids: &[&str]) -> String {
        json!({ "keys": kids.iter().map(|k| self.jwks[*k].clone()).collect::<Vec<_>>() }).to_string()
    }

    /// Sign each spec (`{"kid", "claims", "alg"?, "attack"?}`).
    fn sign(&self, specs: &[Value]) -> Vec<String> {
        let mut child = Command::new(python())
            .args([root().join("tests/peers/jwt_tool.py").to_str().unwrap(), "sign", self.dir.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(Value::from(specs.to_vec()).to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn claims(sub: &str) -> Value {
    json!({"iss": "https://idp.test", "aud": "ringgate-test", "sub": sub, "exp": "+600", "iat": "-5"})
}

fn req(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut r = format!("GET {path} HTTP/1.1\r\nhost: gw.test\r\n");
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str("\r\n");
    raw(addr, r.as_bytes())
}

fn bearer(addr: SocketAddr, token: &str) -> Response {
    req(addr, "/", &[("authorization", &format!("Bearer {token}"))])
}

fn error_type(r: &Response) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body_str()));
    v["error"]["type"].as_str().unwrap_or_default().to_string()
}

fn gateway(policies: &str) -> Gateway {
    Gateway::start(&format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - policies:\n{policies}        directResponse: {{ status: 200, body: ok }}\n"
    ))
}

#[test]
fn jwt_auth_accepts_real_signatures_and_refuses_attacks() {
    let keys = Keys::new();
    let jwks = keys.dir.join("jwks.json");
    std::fs::write(&jwks, keys.set(&["rsa-1", "ec-1", "ed-1"])).unwrap();
    let gw = gateway(&format!(
        "        jwtAuth:\n          mode: strict\n          issuer: https://idp.test\n          audiences: [ringgate-test]\n          jwks: {{ file: \"{}\" }}\n        authorization:\n          rules: ['jwt.sub != \"bob\"']\n",
        jwks.display()
    ));
    let addr = gw.addr();
    let c = claims("alice");
    let good = keys.sign(&[
        json!({"kid": "rsa-1", "claims": c}),
        json!({"kid": "ec-1", "claims": c}),
        json!({"kid": "ed-1", "claims": c}),
    ]);
    for t in &good {
        let r = bearer(addr, t);
        assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{t}");
    }

    let missing = req(addr, "/", &[]);
    assert_eq!(missing.status, 401);
    assert!(missing.header("www-authenticate").unwrap().starts_with("Bearer"), "{:?}", missing.headers);
    assert_eq!(error_type(&missing), "auth_missing");

    let with = |k: &str, v: Value| {
        let mut c = claims("alice");
        c[k] = v;
        c
    };
    let attacks = [
        (json!({"kid": "rsa-1", "claims": c, "attack": "none"}), "jwt_algorithm_not_allowed"),
        (json!({"kid": "rsa-1", "claims": c, "attack": "hs256-pubkey"}), "jwt_algorithm_not_allowed"),
        (json!({"kid": "rsa-1", "claims": c, "attack": "tamper"}), "jwt_bad_signature"),
        (json!({"kid": "rsa-2", "claims": c}), "jwt_unknown_kid"),
        (json!({"kid": "rsa-1", "claims": with("exp", json!("-600"))}), "jwt_expired"),
        (json!({"kid": "rsa-1", "claims": with("nbf", json!("+600"))}), "jwt_not_yet_valid"),
        (json!({"kid": "rsa-1", "claims": with("iss", json!("https://evil.test"))}), "jwt_wrong_issuer"),
        (json!({"kid": "rsa-1", "claims": with("aud", json!(["other", "x"]))}), "jwt_wrong_audience"),
        (json!({"kid": "ec-1", "alg": "ES256", "claims": with("big", json!("x".repeat(9000)))}), "jwt_too_large"),
    ];
    let specs: Vec<Value> = attacks.iter().map(|(s, _)| s.clone()).collect();
    let tokens = keys.sign(&specs);
    for ((spec, want), t) in attacks.iter().zip(&tokens) {
        let r = bearer(addr, t);
        assert_eq!(r.status, 401, "{spec}: {}", r.body_str());
        assert_eq!(error_type(&r), *want, "{spec}");
        let challenge = r.header("www-authenticate").unwrap();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(!r.body_str().contains(t.as_str()), "the token is never echoed");
    }
    let m = gw.wait_metric("reason=\"jwt_wrong_audience\"} 1");
    for (_, reason) in &attacks {
        assert!(m.contains(&format!("reason=\"{reason}\"}}")), "{reason} not counted");
    }

    // a valid identity the rules refuse: 403, not 401
    let bob = keys.sign(&[json!({"kid": "ed-1", "claims": claims("bob")})]);
    let r = bearer(addr, &bob[0]);
    assert_eq!((r.status, error_type(&r).as_str()), (403, "forbidden"));
    // cached tokens keep working after the attacks
    assert_eq!(bearer(addr, &good[0]).status, 200);
}

/// A JWKS endpoint whose document the test can swap.
struct JwksServer {
    addr: SocketAddr,
    doc: Arc<Mutex<String>>,
    hits: Arc<std::sync::atomic::AtomicUsize>,
}

fn jwks_server(doc: String) -> JwksServer {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let doc = Arc::new(Mutex::new(doc));
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (d, h) = (doc.clone(), hits.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = d.lock().unwrap().clone();
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    JwksServer { addr, doc, hits }
}

#[test]
fn jwks_url_served_late_and_rotated_is_picked_up() {
    let keys = Keys::new();
    // the issuer is broken when the gateway starts: it starts anyway and refuses tokens
    let idp = jwks_server("<html>maintenance</html>".into());
    let gw = gateway(&format!(
        "        jwtAuth:\n          mode: strict\n          issuer: https://idp.test\n          jwks: {{ url: \"http://{}/certs\", minRefreshInterval: 50ms }}\n",
        idp.addr
    ));
    let tokens =
        keys.sign(&[json!({"kid": "rsa-1", "claims": claims("a")}), json!({"kid": "rsa-2", "claims": claims("a")})]);
    let until_ok = |token: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = bearer(gw.addr(), token);
            if r.status == 200 {
                return;
            }
            assert_eq!(error_type(&r), "jwt_unknown_kid");
            assert!(Instant::now() < deadline, "the keys were never fetched");
            std::thread::yield_now();
        }
    };
    let r = bearer(gw.addr(), &tokens[0]);
    assert_eq!((r.status, error_type(&r).as_str()), (401, "jwt_unknown_kid"));
    *idp.doc.lock().unwrap() = keys.set(&["rsa-1"]);
    until_ok(&tokens[0]);
    let r = bearer(gw.addr(), &tokens[1]);
    assert_eq!((r.status, error_type(&r).as_str()), (401, "jwt_unknown_kid"));

    // the issuer rotates in rsa-2 and retires rsa-1
    *idp.doc.lock().unwrap() = keys.set(&["rsa-2"]);
    until_ok(&tokens[1]);
    // the retired key no longer verifies, even for a token that was cached before the rotation
    let r = bearer(gw.addr(), &tokens[0]);
    assert_eq!((r.status, error_type(&r).as_str()), (401, "jwt_unknown_kid"));
    assert!(idp.hits.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

#[test]
fn api_keys_and_basic_auth() {
    let gamma: String =
        ring::digest::digest(&ring::digest::SHA256, b"k-gamma").as_ref().iter().map(|b| format!("{b:02x}")).collect();
    // `$` starts a variable in the config file: an inline htpasswd doubles it
    let users = format!("alice:{}", bcrypt::hash("s3cret", 4).unwrap()).replace('$', "$$");
    let gw = Gateway::start(&format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{pathPrefix: /key}}}}]\n      policies:\n        apiKey:\n          keys:\n          - {{ key: k-alpha, metadata: {{ team: red }} }}\n          - {{ sha256: \"{gamma}\" }}\n        authorization:\n          rules: ['apiKey.team == \"red\"']\n        directResponse: {{ status: 200, body: key-ok }}\n    - matches: [{{path: {{pathPrefix: /basic}}}}]\n      policies:\n        basicAuth:\n          htpasswd: \"{users}\"\n          realm: ops\n        authorization:\n          rules: ['basicAuth.username == \"alice\"']\n        directResponse: {{ status: 200, body: basic-ok }}\n",
    ));
    let addr = gw.addr();
    let r = req(addr, "/key", &[("authorization", "Bearer k-alpha")]);
    assert_eq!((r.status, r.body_str().as_str()), (200, "key-ok"));
    let r = req(addr, "/key", &[("authorization", "Bearer k-gamma")]);
    assert_eq!((r.status, error_type(&r).as_str()), (403, "forbidden"), "a valid key whose metadata the rule refuses");
    let r = req(addr, "/key", &[("authorization", "Bearer k-beta")]);
    assert_eq!((r.status, error_type(&r).as_str()), (401, "api_key_invalid"));
    let r = req(addr, "/key", &[]);
    assert_eq!((r.status, error_type(&r).as_str()), (401, "auth_missing"));

    let basic =
        |cred: &str| format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cred));
    for _ in 0..3 {
        let r = req(addr, "/basic", &[("authorization", &basic("alice:s3cret"))]);
        assert_eq!((r.status, r.body_str().as_str()), (200, "basic-ok"));
    }
    let r = req(addr, "/basic", &[("authorization", &basic("alice:wrong"))]);
    assert_eq!((r.status, error_type(&r).as_str()), (401, "basic_auth_invalid"));
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"ops\", charset=\"UTF-8\""));
    let r = req(addr, "/basic", &[("authorization", "Basic !!!")]);
    assert_eq!(r.status, 401);
}

#[test]
fn rate_limits_are_exact_across_shards_and_keyed() {
    let gw = Gateway::start(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{path: {pathPrefix: /global}}]\n      policies:\n        localRateLimit:\n        - { maxTokens: 5, tokensPerFill: 1, fillInterval: 1h }\n        directResponse: { status: 200, body: g }\n    - matches: [{path: {pathPrefix: /user}}]\n      policies:\n        localRateLimit:\n        - { maxTokens: 2, tokensPerFill: 1, fillInterval: 1h, key: 'request.headers[\"x-user\"]' }\n        directResponse: { status: 200, body: u }\n",
    );
    let addr = gw.addr();
    // a fresh connection per request, so SO_REUSEPORT spreads them over both shards
    let statuses: Vec<Response> = (0..12).map(|_| req(addr, "/global", &[])).collect();
    let ok = statuses.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 5, "one bucket of 5 for the whole gateway");
    let limited = statuses.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(error_type(limited), "rate_limited");
    assert_eq!(limited.header("x-ratelimit-limit"), Some("5"));
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    gw.wait_metric("reason=\"rate_limited\"} 7");

    for user in ["ann", "ben"] {
        let codes: Vec<u16> = (0..4).map(|_| req(addr, "/user", &[("x-user", user)]).status).collect();
        assert_eq!(codes, [200, 200, 429, 429], "{user} has a bucket of 2 of their own");
    }
}

fn py_client(url: &str, token: Option<&str>, args: &[&str]) -> (Value, i32) {
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/peers/mcp_client.py")).args(["--url", url, "--timeout", "30"]);
    if let Some(t) = token {
        cmd.args(["--header", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("no JSON ({e}): {text}\nstderr: {}", String::from_utf8_lossy(&out.stderr)));
    (v, out.status.code().unwrap_or(-1))
}

#[test]
fn mcp_authentication_and_per_identity_tools() {
    let keys = Keys::new();
    let jwks = keys.dir.join("jwks.json");
    std::fs::write(&jwks, keys.set(&["rsa-1", "ed-1"])).unwrap();
    let gw = Gateway::start(&format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nmcp:\n  port: 0\n  address: 127.0.0.1\n  targets:\n  - name: demo\n    demo: {{}}\n  - name: more\n    demo: {{}}\n  policies:\n    mcpAuthentication:\n      issuer: https://idp.test\n      audiences: [ringgate-test]\n      jwks: {{ file: \"{}\" }}\n      requiredScopes: [mcp]\n      resourceMetadata:\n        scopesSupported: [mcp]\n    mcpAuthorization:\n      rules:\n      - 'jwt.sub == \"alice\"'\n      - 'mcp.tool.name == \"echo\" && mcp.tool.target == \"demo\"'\n      - {{ deny: 'mcp.tool.name == \"now\"' }}\n",
        jwks.display()
    ));
    let addr = gw.addr();
    let url = format!("http://{addr}/mcp");

    // RFC 9728: path-inserted and root metadata; 401 points at it
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        let r = req(addr, path, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.body_str());
        let doc: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(doc["resource"], "http://gw.test/mcp");
        assert_eq!(doc["authorization_servers"], json!(["https://idp.test"]));
        assert_eq!(doc["scopes_supported"], json!(["mcp"]));
    }
    let (_, code) = py_client(&url, None, &["list"]);
    assert_ne!(code, 0, "no token, no tools");
    let r = raw(addr, b"POST /mcp HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 2\r\n\r\n{}");
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("resource_metadata=\"http://gw.test/.well-known/oauth-protected-resource/mcp\""),
        "{challenge}"
    );

    let scoped = |sub: &str| {
        let mut c = claims(sub);
        c["scope"] = json!("openid mcp");
        c
    };
    let t = keys.sign(&[
        json!({"kid": "rsa-1", "claims": scoped("alice")}),
        json!({"kid": "ed-1", "claims": scoped("bob")}),
        json!({"kid": "rsa-1", "claims": claims("carol")}),
    ]);
    let (alice, bob, unscoped) = (&t[0], &t[1], &t[2]);
    let r = req(addr, "/mcp", &[("authorization", &format!("Bearer {unscoped}"))]);
    assert_eq!(r.status, 403);
    assert!(r.header("www-authenticate").unwrap().contains("insufficient_scope"));

    let tools = |v: &Value| -> Vec<String> {
        v["tools"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
    };
    let all = py_client(&url, Some(alice), &["list"]).0;
    assert_eq!(tools(&all), ["demo_echo", "demo_add", "more_echo", "more_add"], "alice sees all but the denied `now`");
    let few = py_client(&url, Some(bob), &["list"]).0;
    assert_eq!(tools(&few), ["demo_echo"], "bob sees only demo's echo");

    let (ok, code) = py_client(&url, Some(bob), &["call", "demo_echo", r#"{"text": "hi"}"#]);
    assert_eq!(code, 0, "{ok}");
    let (denied, code) = py_client(&url, Some(bob), &["call", "demo_add", r#"{"a": 1, "b": 2}"#]);
    assert_eq!(code, 1, "{denied}");
    assert!(denied.to_string().contains("Unknown tool: demo_add"), "a denied tool looks absent: {denied}");
    let (denied, _) = py_client(&url, Some(alice), &["call", "demo_now", "{}"]);
    assert!(denied.to_string().contains("Unknown tool: demo_now"), "{denied}");
    gw.wait_metric("reason=\"mcp_denied\"} 2");
}
