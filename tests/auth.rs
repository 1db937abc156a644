//! Security policies through the real binary: JWTs signed by keys the test generates (RS256, ES256, EdDSA via
//! PyJWT), attack tokens, JWKS rotation over HTTP, MCP protected-resource metadata and per-identity tool
//! lists with the Python `mcp` client, API keys, Basic auth, and rate limits across both shards.

mod common;

use std::io::Write;
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
    let doc = Arc::new(Mutex::new(doc));
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (d, h) = (doc.clone(), hits.clone());
    let addr = serve_requests(move |_, _| {
        h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let body = d.lock().unwrap().clone();
        let resp = format!(
            "HTTP/1.0 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        Some(resp.into_bytes())
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
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{pathPrefix: /key}}}}]\n      policies:\n        cors: {{ allowOrigins: [\"https://app.test\"], exposeHeaders: [www-authenticate] }}\n        apiKey:\n          keys:\n          - {{ key: k-alpha, metadata: {{ team: red }} }}\n          - {{ sha256: \"{gamma}\" }}\n        authorization:\n          rules: ['apiKey.team == \"red\"']\n        directResponse: {{ status: 200, body: key-ok }}\n    - matches: [{{path: {{pathPrefix: /basic}}}}]\n      policies:\n        basicAuth:\n          htpasswd: \"{users}\"\n          realm: ops\n        authorization:\n          rules: ['basicAuth.username == \"alice\"']\n        directResponse: {{ status: 200, body: basic-ok }}\n",
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
    // a browser client reads the refusal only when it carries the route's CORS headers
    let r = req(addr, "/key", &[("origin", "https://app.test")]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.test"));
    assert_eq!(r.header("access-control-expose-headers"), Some("www-authenticate"));
    assert_eq!(req(addr, "/key", &[("origin", "https://evil.test")]).header("access-control-allow-origin"), None);

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

/// A tiny HTTP authorization service. Its answer depends on the `authorization` header of the
/// check; it records every check (head and body) it receives.
struct Authz {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

fn authz_server() -> Authz {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = serve_requests(move |head, body| {
        log.lock().unwrap().push(format!("{head}{}", String::from_utf8_lossy(body)));
        let big = "b".repeat(100 * 1024);
        let (status, headers, body) = match head_header(head, "authorization").as_deref() {
            Some("Bearer allow") => ("200 OK", "x-user-id: alice\r\nx-not-copied: 1\r\n", ""),
            Some("Bearer anon") => ("204 No Content", "", ""),
            Some("Bearer crlf") => ("200 OK", "x-user-id: alice\r\nx-injected: crlf\r\n", ""),
            Some("Bearer fold") => ("200 OK", "x-user-id: alice\r\n x-injected: fold\r\n", ""),
            Some("Bearer lf") => ("200 OK", "x-user-id: alice\nx-injected: lf\r\n", ""),
            Some("Bearer slow") => {
                std::thread::sleep(Duration::from_millis(1500));
                ("200 OK", "", "")
            }
            Some("Bearer deny") => (
                "401 Unauthorized",
                "www-authenticate: Basic realm=\"authz\"\r\nconnection: x-hop\r\nx-hop: secret\r\n",
                "go away",
            ),
            Some("Bearer big") => ("403 Forbidden", "", big.as_str()),
            Some("Bearer chunked") => {
                let chunked =
                    "HTTP/1.1 418 I'm a teapot\r\ntransfer-encoding: chunked\r\n\r\n3\r\ntea\r\n3\r\npot\r\n0\r\n\r\n";
                return Some(chunked.as_bytes().to_vec());
            }
            _ => ("403 Forbidden", "content-type: text/plain\r\n", "no token"),
        };
        Some(format!("HTTP/1.1 {status}\r\n{headers}content-length: {}\r\n\r\n{body}", body.len()).into_bytes())
    });
    Authz { addr, seen }
}

/// An address nothing listens on.
fn dead_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn upstream_headers(r: &Response) -> Vec<String> {
    r.body_str().lines().skip(1).take_while(|l| !l.is_empty()).map(str::to_string).collect()
}

#[test]
fn ext_authz_allows_denies_and_fails_as_configured() {
    let authz = authz_server();
    let up = upstream("up");
    let dead = dead_addr();
    let route = |prefix: &str, extauthz: &str| {
        format!(
            "    - matches: [{{path: {{pathPrefix: {prefix}}}}}]\n      policies:\n        extAuthz:\n{extauthz}      backends:\n      - host: {}\n",
            up.addr
        )
    };
    let http = "          protocol:\n            http:\n              pathPrefix: /check\n              includeResponseHeaders: [x-user-id]\n";
    let keyed = format!(
        "    - matches: [{{path: {{pathPrefix: /keyed}}}}]\n      policies:\n        apiKey: {{keys: [{{key: k-alpha}}], header: x-key}}\n        extAuthz:\n          host: {}\n          protocol: {{http: {{}}}}\n      backends:\n      - host: {}\n",
        authz.addr, up.addr
    );
    let body = format!(
        "          host: {}\n{http}          includeRequestHeaders: [authorization, x-team]\n          includeRequestBody: {{maxRequestBytes: 16}}\n",
        authz.addr
    );
    let routes = [
        route("/x", &format!("          host: {}\n{http}          timeout: 300ms\n", authz.addr)),
        route("/open", &format!("          host: {dead}\n{http}          failureMode: failOpen\n")),
        route("/closed", &format!("          host: {dead}\n{http}")),
        route("/busy", &format!("          host: {dead}\n{http}          failureMode: {{denyWithStatus: 503}}\n")),
        route("/body", &body),
        keyed,
    ]
    .concat();
    let gw = Gateway::start(&format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n{routes}"
    ));
    let addr = gw.addr();
    let seen = |needle: &str| authz.seen.lock().unwrap().iter().filter(|c| c.contains(needle)).count();

    // allowed: the service saw the method, prefixed path and forwarded facts, not other headers;
    // upstream gets the service's x-user-id instead of the client's forged one
    let r = req(addr, "/x/doc?v=1", &[("authorization", "Bearer allow"), ("x-user-id", "mallory"), ("cookie", "c=1")]);
    assert_eq!(r.status, 200, "{}", r.body_str());
    let sent = upstream_headers(&r);
    assert!(sent.contains(&"x-user-id: alice".to_string()), "{sent:?}");
    assert!(!sent.iter().any(|h| h.contains("mallory") || h.starts_with("x-not-copied")), "{sent:?}");
    assert!(sent.contains(&"authorization: bearer allow".to_string()), "plain routes forward Authorization: {sent:?}");
    {
        let checks = authz.seen.lock().unwrap();
        let check = checks.last().unwrap();
        assert!(check.starts_with("GET /check/x/doc?v=1 HTTP/1.1\r\n"), "{check}");
        assert!(check.contains("\r\nx-forwarded-uri: /x/doc?v=1\r\n") && check.contains("x-forwarded-for: 127.0.0.1"));
        assert!(!check.contains("cookie") && !check.contains("mallory"), "only the included headers: {check}");
    }
    // an allowing answer without the header still keeps the client's forged one away
    let r = req(addr, "/x", &[("authorization", "Bearer anon"), ("x-user-id", "mallory")]);
    assert_eq!(r.status, 200);
    assert!(!r.body_str().contains("mallory"), "{}", r.body_str());

    // denied: the service's status, end-to-end headers and body reach the client
    let r = req(addr, "/x", &[("authorization", "Bearer deny")]);
    assert_eq!((r.status, r.body_str().as_str()), (401, "go away"));
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"authz\""));
    assert_eq!(r.header("x-hop"), None, "hop-by-hop headers of the answer stay behind");
    let r = req(addr, "/x", &[]);
    assert_eq!((r.status, r.body_str().as_str()), (403, "no token"));
    let r = req(addr, "/x", &[("authorization", "Bearer chunked")]);
    assert_eq!((r.status, r.body_str().as_str()), (418, "teapot"));
    let r = req(addr, "/x", &[("authorization", "Bearer big")]);
    assert_eq!((r.status, r.body.len()), (403, 64 * 1024), "a denial's body is bounded");
    let hits = up.hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(hits, 2, "denied requests never reach the upstream");

    // the service is down or slow: the failure mode decides
    let r = req(addr, "/open", &[]);
    assert_eq!(r.status, 200, "failOpen serves: {}", r.body_str());
    let r = req(addr, "/closed", &[]);
    assert_eq!((r.status, error_type(&r).as_str()), (403, "ext_authz_unavailable"));
    let r = req(addr, "/busy", &[]);
    assert_eq!((r.status, error_type(&r).as_str()), (503, "ext_authz_unavailable"));
    let r = req(addr, "/x", &[("authorization", "Bearer slow")]);
    assert_eq!((r.status, error_type(&r).as_str()), (403, "ext_authz_unavailable"), "300ms timeout");

    // the body goes to the service when asked, and still reaches the upstream whole
    let post = |body: &str, chunked: bool| {
        let framing = if chunked {
            format!("transfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len())
        } else {
            format!("content-length: {}\r\n\r\n{body}", body.len())
        };
        raw(
            addr,
            format!("POST /body HTTP/1.1\r\nhost: gw.test\r\nauthorization: Bearer allow\r\nx-team: red\r\n{framing}")
                .as_bytes(),
        )
    };
    for chunked in [false, true] {
        let r = post("hello authz", chunked);
        assert_eq!(r.status, 200, "{}", r.body_str());
        assert!(r.body_str().ends_with("\nhello authz"), "{}", r.body_str());
        let checks = authz.seen.lock().unwrap();
        let check = checks.last().unwrap();
        assert!(
            check.starts_with("POST /check/body HTTP/1.1\r\n") && check.ends_with("\r\n\r\nhello authz"),
            "{check}"
        );
        assert!(check.contains("\r\nx-team: red\r\n") && check.contains("\r\ncontent-length: 11\r\n"), "{check}");
    }
    let r = post("seventeen bytes!!", false);
    assert_eq!((r.status, error_type(&r).as_str()), (413, "body_too_large"));

    // authentication comes first: no key, no check
    let before = seen("GET /keyed");
    let r = req(addr, "/keyed", &[("authorization", "Bearer allow")]);
    assert_eq!((r.status, error_type(&r).as_str()), (401, "auth_missing"));
    assert_eq!(seen("GET /keyed"), before);
    let r = req(addr, "/keyed", &[("authorization", "Bearer allow"), ("x-key", "k-alpha")]);
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(!r.body_str().contains("k-alpha"), "the validated API key is not forwarded: {}", r.body_str());

    let m = gw.wait_metric("reason=\"ext_authz_unavailable\"} 4");
    assert!(m.contains("reason=\"ext_authz_denied\"} 4"), "{m}");
}

#[test]
fn ext_authz_answers_cannot_inject_headers_upstream() {
    let authz = authz_server();
    let up = upstream("up");
    let gw = Gateway::start(&format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - policies:\n        extAuthz:\n          host: {}\n          protocol: {{http: {{includeResponseHeaders: [x-user-id]}}}}\n      backends:\n      - host: {}\n",
        authz.addr, up.addr
    ));
    // the service tries to smuggle `x-injected` into the upstream request through the value of
    // `x-user-id`: after a CRLF the value has ended, and the next header is not copied
    let r = req(gw.addr(), "/", &[("authorization", "Bearer crlf")]);
    let sent = upstream_headers(&r);
    assert_eq!(r.status, 200);
    assert!(sent.contains(&"x-user-id: alice".to_string()), "{sent:?}");
    assert!(!sent.iter().any(|h| h.contains("x-injected")), "{sent:?}");
    // an obs-fold or a bare LF makes the answer invalid: no decision, so failureMode (deny)
    for how in ["fold", "lf"] {
        let r = req(gw.addr(), "/", &[("authorization", &format!("Bearer {how}"))]);
        assert_eq!((r.status, error_type(&r).as_str()), (403, "ext_authz_unavailable"), "{how}");
    }
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn backend_auth_key_and_passthrough() {
    let keys = Keys::new();
    let jwks = keys.dir.join("jwks.json");
    std::fs::write(&jwks, keys.set(&["rsa-1"])).unwrap();
    let up = upstream("up");
    let jwt = format!(
        "        jwtAuth: {{ mode: strict, issuer: https://idp.test, jwks: {{ file: \"{}\" }} }}\n",
        jwks.display()
    );
    let route = |prefix: &str, policies: &str| {
        format!(
            "    - matches: [{{path: {{pathPrefix: {prefix}}}}}]\n      policies:\n{policies}      backends:\n      - host: {}\n",
            up.addr
        )
    };
    let gw = Gateway::start(&format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n{}{}{}{}",
        route("/key", "        backendAuth: {key: {value: s3cret, location: {header: {name: x-api-key}}}}\n"),
        route("/bearer", "        backendAuth: {key: s3cret}\n"),
        route("/jwt", &jwt),
        route("/pass", &format!("{jwt}        backendAuth: {{passthrough: {{}}}}\n")),
    ));
    let addr = gw.addr();
    let token = &keys.sign(&[json!({"kid": "rsa-1", "claims": claims("alice")})])[0];
    let bearer = format!("Bearer {token}");

    let r = req(addr, "/key", &[("x-api-key", "client-key"), ("authorization", "Bearer client")]);
    let sent = upstream_headers(&r);
    assert!(
        sent.contains(&"x-api-key: s3cret".to_string()) && !sent.iter().any(|h| h.contains("client-key")),
        "{sent:?}"
    );
    assert!(sent.contains(&"authorization: bearer client".to_string()), "other headers untouched: {sent:?}");
    let r = req(addr, "/bearer", &[("authorization", "Bearer client")]);
    let sent = upstream_headers(&r);
    assert_eq!(
        sent.iter().filter(|h| h.starts_with("authorization:")).collect::<Vec<_>>(),
        ["authorization: bearer s3cret"]
    );

    let r = req(addr, "/jwt", &[("authorization", &bearer)]);
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(!upstream_headers(&r).iter().any(|h| h.starts_with("authorization:")), "a validated token is consumed");
    let r = req(addr, "/pass", &[("authorization", &bearer)]);
    let want = format!("authorization: {}", bearer.to_ascii_lowercase());
    assert!(upstream_headers(&r).contains(&want), "passthrough forwards it: {:?}", upstream_headers(&r));

    let dump = get(gw.admin, "/config_dump").body_str();
    assert!(!dump.contains("s3cret") && dump.contains("<redacted>"), "{dump}");
}

/// A minimal Streamable HTTP MCP server with one tool; records the `authorization` header of
/// every request it gets.
fn mcp_target() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = serve_requests(move |head, body| {
        log.lock().unwrap().push(head_header(head, "authorization").unwrap_or_else(|| "-".into()));
        let msg: Value = serde_json::from_slice(body).unwrap_or_default();
        let result = match msg["method"].as_str() {
            Some("initialize") => {
                json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "fake", "version": "1"}})
            }
            Some("tools/list") => json!({"tools": [{"name": "t", "inputSchema": {"type": "object"}}]}),
            _ => Value::Null,
        };
        let resp = if msg.get("id").is_some() {
            let out = json!({"jsonrpc": "2.0", "id": msg["id"], "result": result}).to_string();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: s1\r\ncontent-length: {}\r\n\r\n{out}",
                out.len()
            )
        } else {
            "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_string()
        };
        Some(resp.into_bytes())
    });
    (addr, seen)
}

#[test]
fn backend_auth_key_reaches_mcp_targets() {
    let (target, seen) = mcp_target();
    let gw = Gateway::start(&format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nmcp:\n  port: 0\n  address: 127.0.0.1\n  targets:\n  - name: fake\n    mcp: {{ host: \"http://{target}/mcp\" }}\n  policies:\n    backendAuth: {{ key: k-target }}\n"
    ));
    let post = |body: &str, session: Option<&str>| {
        let s =
            session.map(|s| format!("mcp-session-id: {s}\r\nmcp-protocol-version: 2025-06-18\r\n")).unwrap_or_default();
        raw(
            gw.addr(),
            format!(
                "POST /mcp HTTP/1.1\r\nhost: gw.test\r\nauthorization: Bearer client\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n{s}content-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    };
    let r = post(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    let session = r.header("mcp-session-id").map(str::to_string);
    let r = post(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#, session.as_deref());
    assert!(r.body_str().contains("\"t\""), "{}", r.body_str());
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 2, "initialize and tools/list at least: {seen:?}");
    assert!(seen.iter().all(|a| a == "Bearer k-target"), "every request to the target carries the key: {seen:?}");
}

#[test]
fn transformations_and_access_log_fields_carry_claims() {
    let keys = Keys::new();
    let jwks = keys.dir.join("jwks.json");
    std::fs::write(&jwks, keys.set(&["rsa-1"])).unwrap();
    let up = upstream("up");
    // one shard, so the access log lines come out in request order
    let gw = Gateway::start(&format!(
        r#"config:
  workers: 1
  adminAddr: 127.0.0.1:0
  logging:
    format: json
    filter: 'request.path != "/quiet"'
    fields:
      add: {{ user: 'jwt.sub', status_class: 'string(response.code / 100) + "xx"' }}
      remove: [src.addr]
binds:
- port: 0
  address: 127.0.0.1
  listeners:
  - routes:
    - matches: [{{path: {{pathPrefix: /public}}}}]
      policies:
        urlRewrite: {{ path: {{ prefix: /static/public }} }}
      backends:
      - host: {up}
    - policies:
        jwtAuth: {{ mode: optional, issuer: https://idp.test, jwks: {{ file: "{jwks}" }} }}
        transformations:
          request:
            set: {{ x-user: 'jwt.sub', x-peer: 'source.address' }}
            add: {{ x-tier: '"gold"' }}
            remove: [x-remove-me]
          response:
            set: {{ x-served-for: 'jwt.sub' }}
      backends:
      - host: {up}
"#,
        up = up.addr,
        jwks = jwks.display()
    ));
    let addr = gw.addr();
    let tokens = keys.sign(&[
        json!({"kid": "rsa-1", "claims": claims("alice")}),
        json!({"kid": "rsa-1", "claims": claims("mallory\r\nx-admin: 1")}),
    ]);

    let auth = format!("Bearer {}", tokens[0]);
    let r = req(addr, "/a", &[("authorization", &auth), ("x-user", "forged"), ("x-remove-me", "1"), ("x-tier", "own")]);
    assert_eq!(r.status, 200, "{}", r.body_str());
    let sent = upstream_headers(&r);
    for want in ["x-user: alice", "x-peer: 127.0.0.1", "x-tier: own", "x-tier: gold"] {
        assert!(sent.contains(&want.to_string()), "{want} missing from {sent:?}");
    }
    assert!(!sent.iter().any(|h| h.contains("forged") || h.starts_with("x-remove-me")), "{sent:?}");
    assert_eq!(r.header("x-served-for"), Some("alice"));

    // without a token (optional mode) the claim expressions fail: their headers are left out
    let r = req(addr, "/a", &[("x-user", "forged")]);
    let sent = upstream_headers(&r);
    assert!(sent.contains(&"x-tier: gold".to_string()) && !sent.iter().any(|h| h.starts_with("x-user")), "{sent:?}");
    assert_eq!(r.header("x-served-for"), None);

    // a claim with CRLF would smuggle a header: refused before the upstream sees anything
    let hits = up.hits.load(std::sync::atomic::Ordering::SeqCst);
    let r = req(addr, "/a", &[("authorization", &format!("Bearer {}", tokens[1]))]);
    assert_eq!((r.status, error_type(&r).as_str()), (400, "transform_invalid_value"), "{}", r.body_str());
    assert!(r.body_str().contains("x-user"), "{}", r.body_str());
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), hits);

    // dot-segments would escape the rewritten prefix (/static/public/../x is /static/x upstream)
    for path in ["/public/../admin", "/public/%2e%2e/admin", "/public/./x"] {
        let r = req(addr, path, &[]);
        assert_eq!((r.status, error_type(&r).as_str()), (400, "dot_segment"), "{path}");
    }
    let r = req(addr, "/public/x", &[]);
    assert!(r.body_str().starts_with("up GET /static/public/x\n"), "{}", r.body_str());
    gw.wait_metric("reason=\"transform_invalid_value\"} 1");
    gw.wait_metric("reason=\"dot_segment\"} 3");

    // access log: claims as fields, a built-in field removed, filtered requests absent
    req(addr, "/quiet", &[("authorization", &auth)]);
    req(addr, "/last", &[("authorization", &auth)]);
    gw.wait_line("\"http.path\":\"/last\"");
    let line = gw.wait_line("\"http.path\":\"/a\"");
    let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!((v["user"].as_str(), v["status_class"].as_str()), (Some("alice"), Some("2xx")), "{line}");
    assert!(v.get("src.addr").is_none() && v.get("http.status").is_some(), "{line}");
    assert_eq!(gw.count_lines("\"http.path\":\"/quiet\""), 0);
    assert_eq!(gw.count_lines("\"reason\":\"transform_invalid_value\""), 1);
}

/// `tests/peers/aws_verify.py`: an endpoint that checks SigV4 signatures with botocore.
struct AwsEndpoint {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Drop for AwsEndpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn aws_endpoint(access: &str, secret: &str, token: &str) -> AwsEndpoint {
    let mut child = Command::new(python())
        .args([root().join("tests/peers/aws_verify.py").to_str().unwrap(), access, secret, token])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], line.trim().parse().unwrap()));
    AwsEndpoint { child, addr }
}

#[test]
fn backend_auth_aws_signatures_verify_with_botocore() {
    let aws = aws_endpoint("AKIDTEST", "s3cret/KEY", "session-tok");
    let route = |prefix: &str, auth: &str| {
        format!(
            "    - matches: [{{path: {{pathPrefix: {prefix}}}}}]\n      policies:\n{auth}      backends:\n      - host: {}\n",
            aws.addr
        )
    };
    let signer = |secret: &str| {
        format!("        backendAuth:\n          aws: {{ accessKeyId: AKIDTEST, secretAccessKey: \"{secret}\", sessionToken: session-tok, region: eu-west-3, serviceName: execute-api }}\n")
    };
    let gw = Gateway::start(&format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n{}{}{}",
        route("/signed", &signer("s3cret/KEY")),
        route("/wrong", &signer("not-the-secret")),
        route("/plain", "        timeout: { requestTimeout: 10s }\n"),
    ));
    let addr = gw.addr();
    let check = |raw_req: &str| -> (u16, Value) {
        let r = raw(addr, raw_req.as_bytes());
        (r.status, serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body_str())))
    };

    let (status, v) =
        check("GET /signed/a%20b/c?z=1&a=2&a=1 HTTP/1.1\r\nhost: gw.test\r\nauthorization: Bearer client\r\n\r\n");
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["service"].as_str(), v["region"].as_str()), (Some("execute-api"), Some("eu-west-3")));
    assert_eq!(v["signed"], json!(["host", "x-amz-date", "x-amz-security-token"]));

    let (status, v) = check("POST /signed/items HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 11\r\n\r\n{\"n\": 1234}");
    assert_eq!((status, v["body"].as_str()), (200, Some("{\"n\": 1234}")), "{v}");
    // a chunked body is read whole, hashed and sent with a Content-Length
    let (status, v) = check(
        "PUT /signed/chunked HTTP/1.1\r\nhost: gw.test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!((status, v["body"].as_str()), (200, Some("hello world")), "{v}");

    // the verifier refuses what is not signed with the right key
    let (status, v) = check("GET /wrong/x HTTP/1.1\r\nhost: gw.test\r\n\r\n");
    assert_eq!((status, v["ok"].as_bool()), (403, Some(false)), "{v}");
    let (status, _) = check("GET /plain/x HTTP/1.1\r\nhost: gw.test\r\nauthorization: AWS4-HMAC-SHA256 forged\r\n\r\n");
    assert_eq!(status, 403);

    let dump = get(gw.admin, "/config_dump").body_str();
    assert!(!dump.contains("s3cret/KEY") && !dump.contains("session-tok"), "{dump}");
}

#[test]
fn mcp_refuses_pages_from_other_origins() {
    let gw = Gateway::start(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{path: {pathPrefix: /open}}]\n      policies:\n        cors: { allowOrigins: [\"https://app.test\"] }\n      backends:\n      - mcp: { targets: [{ name: demo, demo: {} }] }\n    - matches: [{path: {pathPrefix: /unchecked}}]\n      backends:\n      - mcp: { targets: [{ name: demo, demo: {} }], dnsRebindingProtection: false }\n    - backends:\n      - mcp: { targets: [{ name: demo, demo: {} }] }\n",
    );
    let init = |path: &str, host: &str, origin: Option<&str>| {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        let origin = origin.map(|o| format!("origin: {o}\r\n")).unwrap_or_default();
        let r = raw(
            gw.addr(),
            format!(
                "POST {path} HTTP/1.1\r\nhost: {host}\r\n{origin}content-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        (r.status, if r.status == 200 { String::new() } else { error_type(&r) })
    };
    assert_eq!(init("/mcp", "evil.test:3000", None).0, 200, "clients that are not browsers send no Origin");
    assert_eq!(init("/mcp", "localhost:3000", Some("http://localhost:6274")).0, 200, "a local page, a local gateway");
    // DNS rebinding: the attacker's name now points at the gateway, so Origin and Host agree
    assert_eq!(init("/mcp", "evil.test:3000", Some("http://evil.test:3000")), (403, "origin_refused".into()));
    assert_eq!(init("/mcp", "127.0.0.1:3000", Some("http://evil.test")), (403, "origin_refused".into()));
    assert_eq!(init("/open/mcp", "mcp.test", Some("https://app.test")).0, 200, "allowed by the route's CORS");
    assert_eq!(init("/open/mcp", "mcp.test", Some("https://evil.test")).1, "origin_refused");
    assert_eq!(init("/unchecked/mcp", "evil.test", Some("http://evil.test")).0, 200, "dnsRebindingProtection: false");
    gw.wait_metric("reason=\"origin_refused\"} 3");
}
