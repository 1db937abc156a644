//! TLS through the real binary on both sides: HTTPS listeners (SNI, ALPN, client certificates, plain HTTP and slow handshakes refused and counted, certificates reloaded) and backend TLS (custom CA, untrusted and misnamed certificates, `insecure`, client certificates, pooling, an https MCP target), with certificates the test makes.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A CA the test trusts (or not).
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn new_ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    Ca { cert: p.self_signed(&key).unwrap(), key }
}

/// A certificate signed by a CA, as PEM files in `dir`, and its DER (to recognise it when served).
struct Leaf {
    cert: String,
    key: String,
    der: Vec<u8>,
}

fn leaf(dir: &Path, ca: &Ca, file: &str, names: &[&str], client: bool) -> Leaf {
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("client"));
    p.extended_key_usages =
        vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (cp, kp) = (dir.join(format!("{file}.crt")), dir.join(format!("{file}.key")));
    std::fs::write(&cp, cert.pem()).unwrap();
    std::fs::write(&kp, key.serialize_pem()).unwrap();
    Leaf { cert: path(&cp), key: path(&kp), der: cert.der().to_vec() }
}

fn ca_file(dir: &Path, ca: &Ca, file: &str) -> String {
    let p = dir.join(format!("{file}.pem"));
    std::fs::write(&p, ca.cert.pem()).unwrap();
    path(&p)
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(ca: &Ca, cert: Option<&Leaf>, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut c = match cert {
        Some(l) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&l.cert).unwrap().map(|c| c.unwrap()).collect(),
                PrivateKeyDer::from_pem_file(&l.key).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(c)
}

type TlsConn = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A keep-alive HTTPS client connection.
struct TlsClient {
    r: BufReader<TlsConn>,
}

impl TlsClient {
    /// Connect and finish the handshake (as far as the client can tell).
    fn connect(addr: SocketAddr, sni: &str, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<TlsClient> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(cfg, name).unwrap();
        let mut sock = s;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(TlsClient { r: BufReader::new(rustls::StreamOwned::new(conn, sock)) })
    }

    fn peer_cert(&self) -> Vec<u8> {
        self.r.get_ref().conn.peer_certificates().unwrap()[0].to_vec()
    }

    fn alpn(&self) -> Option<Vec<u8>> {
        self.r.get_ref().conn.alpn_protocol().map(|p| p.to_vec())
    }

    fn send(&mut self, raw: &[u8]) -> std::io::Result<Response> {
        self.r.get_mut().write_all(raw)?;
        self.r.get_mut().flush()?;
        read_response(&mut self.r)
    }

    fn get(&mut self, host: &str, path: &str) -> std::io::Result<Response> {
        self.send(format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes())
    }
}

fn config(frontend: &str, binds: &str) -> String {
    format!("config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nfrontendPolicies:\n{frontend}binds:\n{binds}")
}

/// An HTTPS upstream (std threads, rustls) answering `tls-upstream {path}`; counts connections.
fn https_upstream(leaf: &Leaf, client_ca: Option<&Ca>) -> (SocketAddr, Arc<AtomicUsize>) {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&leaf.cert).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(&leaf.key).unwrap();
    let b = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().unwrap();
    let b = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert.der().clone()).unwrap();
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap();
            b.with_client_cert_verifier(v)
        }
        None => b.with_no_client_auth(),
    };
    let cfg = Arc::new(b.with_single_cert(certs, key).unwrap());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let count = conns.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut r = BufReader::new(rustls::StreamOwned::new(conn, s));
                while let Some(head) = read_head(&mut r) {
                    let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let body = format!("tls-upstream {target}");
                    let resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                    if r.get_mut().write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, conns)
}

fn metric(gw: &Gateway, needle: &str) {
    gw.wait_metric(needle);
}

#[test]
fn sni_chooses_the_listener_certificate_alpn_is_http11_and_hosts_stay_in_their_listener() {
    let dir = tempdir();
    let ca = new_ca("test ca");
    let a = leaf(&dir, &ca, "a", &["a.test"], false);
    let b = leaf(&dir, &ca, "b", &["*.b.test"], false);
    let gw = Gateway::start(&config(
        "  tls: {}\n",
        &format!(
            r#"- port: 0
  address: 127.0.0.1
  listeners:
  - name: a
    hostname: a.test
    protocol: HTTPS
    tls: {{cert: "{}", key: "{}"}}
    routes:
    - policies: {{directResponse: {{body: "listener a"}}}}
  - name: b
    hostname: "*.b.test"
    protocol: HTTPS
    tls: {{cert: "{}", key: "{}"}}
    routes:
    - policies: {{directResponse: {{body: "listener b"}}}}
"#,
            a.cert, a.key, b.cert, b.key
        ),
    ));
    let addr = gw.addr();

    let mut c = TlsClient::connect(addr, "a.test", client_config(&ca, None, &["h2", "http/1.1"])).unwrap();
    assert_eq!(c.peer_cert(), a.der, "SNI a.test gets a's certificate");
    assert_eq!(c.alpn().as_deref(), Some(&b"http/1.1"[..]), "h2 is not served: ALPN settles on http/1.1");
    for _ in 0..3 {
        let r = c.get("a.test", "/").unwrap();
        assert_eq!((r.status, r.body_str().as_str()), (200, "listener a"));
    }
    let r = c.get("x.b.test", "/").unwrap();
    assert_eq!(r.status, 421, "a host of another listener on this connection: {}", r.body_str());
    assert!(r.body_str().contains("misdirected_request"));

    let mut c = TlsClient::connect(addr, "x.b.test", client_config(&ca, None, &[])).unwrap();
    assert_eq!(c.peer_cert(), b.der, "SNI x.b.test gets b's certificate");
    assert_eq!(c.get("x.b.test", "/").unwrap().body_str(), "listener b");

    // no listener for the name, and none without a hostname: refused, counted, shard still serving
    assert!(TlsClient::connect(addr, "c.test", client_config(&ca, None, &[])).is_err());
    metric(&gw, "ringgate_tls_handshake_errors_total{reason=\"unknown_server_name\"} 1");
    // a client that offers ALPN without http/1.1
    assert!(TlsClient::connect(addr, "a.test", client_config(&ca, None, &["h2"])).is_err());
    metric(&gw, "ringgate_tls_handshake_errors_total{reason=\"no_application_protocol\"} 1");
    let mut c = TlsClient::connect(addr, "a.test", client_config(&ca, None, &[])).unwrap();
    assert_eq!(c.get("a.test", "/").unwrap().status, 200);
    let r = c.send(b"GET / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n").unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    let mut rest = Vec::new();
    // rustls reports a close without close_notify as UnexpectedEof
    assert_eq!(c.r.read_to_end(&mut rest).map_err(|e| e.kind()), Ok(0), "the gateway ends TLS cleanly");
    let m = gw.wait_metric("ringgate_tls_handshakes_total 3");
    assert!(m.contains("ringgate_request_errors_total{reason=\"misdirected_request\"} 1"), "{m}");
}

#[test]
fn client_certificates_are_required_or_optional_as_configured() {
    let dir = tempdir();
    let ca = new_ca("server ca");
    let clients = new_ca("client ca");
    let stranger = new_ca("stranger ca");
    let srv = leaf(&dir, &ca, "srv", &["required.test", "optional.test"], false);
    let good = leaf(&dir, &clients, "good", &["alice"], true);
    let bad = leaf(&dir, &stranger, "bad", &["mallory"], true);
    let roots = ca_file(&dir, &clients, "clients");
    // one port, the client-certificate demand chosen per listener by SNI
    let listener = |mode: &str| {
        format!(
            r#"  - hostname: {mode}.test
    protocol: HTTPS
    tls: {{cert: "{}", key: "{}", root: "{roots}", clientAuth: {mode}}}
    routes:
    - policies: {{directResponse: {{body: "{mode}"}}}}
"#,
            srv.cert, srv.key
        )
    };
    let gw = Gateway::start(&config(
        "  tls: {}\n",
        &format!("- port: 0\n  address: 127.0.0.1\n  listeners:\n{}{}", listener("required"), listener("optional")),
    ));
    let (required, optional) = ("required.test", "optional.test");
    let ask = |name: &str, cert: Option<&Leaf>| -> std::io::Result<Response> {
        let mut c = TlsClient::connect(gw.addr(), name, client_config(&ca, cert, &[]))?;
        c.get(name, "/")
    };
    // TLS 1.3 clients learn of the refusal on their first read
    assert!(ask(required, None).is_err(), "no certificate: refused");
    metric(&gw, "ringgate_tls_handshake_errors_total{reason=\"no_client_certificate\"} 1");
    assert!(ask(required, Some(&bad)).is_err(), "a certificate from an unknown CA: refused");
    metric(&gw, "ringgate_tls_handshake_errors_total{reason=\"bad_client_certificate\"} 1");
    assert_eq!(ask(required, Some(&good)).unwrap().body_str(), "required");
    assert_eq!(ask(optional, None).unwrap().body_str(), "optional", "optional: no certificate is fine");
    assert!(ask(optional, Some(&bad)).is_err(), "optional: a presented certificate must still verify");
    assert_eq!(ask(optional, Some(&good)).unwrap().body_str(), "optional");
    metric(&gw, "ringgate_tls_handshake_errors_total{reason=\"bad_client_certificate\"} 2");
}

#[test]
fn plain_http_and_silent_clients_on_a_tls_port_are_refused_without_disturbing_others() {
    let dir = tempdir();
    let ca = new_ca("test ca");
    let srv = leaf(&dir, &ca, "srv", &["localhost"], false);
    let gw = Gateway::start(&config("  tls:\n    handshakeTimeout: 300ms\n",
        &format!(
            "- port: 0\n  address: 127.0.0.1\n  listeners:\n  - protocol: HTTPS\n    tls: {{cert: \"{}\", key: \"{}\"}}\n    routes:\n    - policies: {{directResponse: {{body: ok}}}}\n",
            srv.cert, srv.key
        ),
    ));
    let addr = gw.addr();
    let mut busy = TlsClient::connect(addr, "localhost", client_config(&ca, None, &[])).unwrap();
    assert_eq!(busy.get("localhost", "/").unwrap().body_str(), "ok");

    let r = raw(addr, b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n");
    assert_eq!(r.status, 400);
    assert!(r.body_str().contains("not_tls"), "{}", r.body_str());
    metric(&gw, "ringgate_tls_handshake_errors_total{reason=\"not_tls\"} 1");

    // a client that connects and says nothing is closed after handshakeTimeout
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 1];
    assert!(matches!(silent.read(&mut b), Ok(0) | Err(_)));
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
    metric(&gw, "ringgate_tls_handshake_errors_total{reason=\"timeout\"} 1");

    assert_eq!(busy.get("localhost", "/").unwrap().body_str(), "ok", "the established connection kept working");
}

#[test]
fn backend_tls_verifies_with_a_custom_ca_refuses_untrusted_or_misnamed_certificates_and_pools() {
    let dir = tempdir();
    let ca = new_ca("upstream ca");
    let other = new_ca("other ca");
    let clients = new_ca("client ca");
    let srv = leaf(&dir, &ca, "up", &["localhost", "127.0.0.1"], false);
    let me = leaf(&dir, &clients, "gw", &["gateway"], true);
    let (up, conns) = https_upstream(&srv, None);
    let (mtls_up, _) = https_upstream(&srv, Some(&clients));
    let (root, other_root) = (ca_file(&dir, &ca, "ca"), ca_file(&dir, &other, "other"));
    let route = |name: &str, host: &str, tls: &str| {
        format!(
            "    - name: {name}\n      matches: [{{path: {{pathPrefix: /{name}}}}}]\n      backends:\n      - host: {host}\n        policies: {{backendTLS: {tls}}}\n"
        )
    };
    let mut routes = String::new();
    routes += &route("trusted", &up.to_string(), &format!("{{root: \"{root}\"}}"));
    routes += &route("named", &up.to_string(), &format!("{{root: \"{root}\", hostname: localhost}}"));
    routes += &route("untrusted", &up.to_string(), &format!("{{root: \"{other_root}\"}}"));
    routes += &route("misnamed", &up.to_string(), &format!("{{root: \"{root}\", hostname: elsewhere.test}}"));
    routes += &route(
        "anyname",
        &up.to_string(),
        &format!("{{root: \"{root}\", hostname: elsewhere.test, insecureHost: true}}"),
    );
    routes += &route("insecure", &up.to_string(), "{insecure: true}");
    routes += &route(
        "withcert",
        &mtls_up.to_string(),
        &format!("{{root: \"{root}\", cert: \"{}\", key: \"{}\"}}", me.cert, me.key),
    );
    routes += &route("nocert", &mtls_up.to_string(), &format!("{{root: \"{root}\"}}"));
    routes += &format!("    - name: system\n      matches: [{{path: {{pathPrefix: /system}}}}]\n      backends:\n      - host: https://{up}\n");
    let gw = Gateway::start(&config(
        "  tls: {}\n",
        &format!("- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n{routes}"),
    ));
    let mut c = Client::connect(gw.addr());
    for _ in 0..3 {
        let r = c.get("/trusted/x");
        assert_eq!((r.status, r.body_str().as_str()), (200, "tls-upstream /trusted/x"));
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1, "one pooled TLS connection served the three requests");
    for ok in ["named", "anyname", "insecure", "withcert"] {
        let r = c.get(&format!("/{ok}"));
        assert_eq!((r.status, r.body_str()), (200, format!("tls-upstream /{ok}")), "{ok}");
    }
    for (bad, why) in [
        ("untrusted", "UnknownIssuer"),
        ("misnamed", "not valid for name"),
        ("system", "UnknownIssuer"),
        ("nocert", "TLS handshake with upstream failed"),
    ] {
        let r = Client::connect(gw.addr()).get(&format!("/{bad}"));
        assert_eq!(r.status, 502, "{bad}: {}", r.body_str());
        assert!(r.body_str().contains("upstream_tls") && r.body_str().contains(why), "{bad}: {}", r.body_str());
    }
    gw.wait_metric("ringgate_request_errors_total{reason=\"upstream_tls\"} 4");
}

#[test]
fn a_reload_serves_new_certificates_to_new_connections_and_keeps_live_ones() {
    let dir = tempdir();
    let ca = new_ca("test ca");
    let first = leaf(&dir, &ca, "srv", &["localhost"], false);
    let gw = Gateway::start(&config("  tls: {}\n",
        &format!(
            "- port: 0\n  address: 127.0.0.1\n  listeners:\n  - protocol: HTTPS\n    tls: {{cert: \"{}\", key: \"{}\"}}\n    routes:\n    - policies: {{directResponse: {{body: ok}}}}\n",
            first.cert, first.key
        ),
    ));
    let mut live = TlsClient::connect(gw.addr(), "localhost", client_config(&ca, None, &[])).unwrap();
    assert_eq!(live.peer_cert(), first.der);
    // same file names, new certificate and key
    let second = leaf(&dir, &ca, "srv", &["localhost"], false);
    assert_ne!(first.der, second.der);
    gw.signal(libc::SIGHUP);
    gw.wait_line("reload applied");
    let mut fresh = TlsClient::connect(gw.addr(), "localhost", client_config(&ca, None, &[])).unwrap();
    assert_eq!(fresh.peer_cert(), second.der, "a new connection gets the new certificate");
    assert_eq!(fresh.get("localhost", "/").unwrap().body_str(), "ok");
    assert_eq!(live.get("localhost", "/").unwrap().body_str(), "ok", "the connection opened before stays up");
    // a reload whose key no longer matches is refused and the old certificate keeps serving
    std::fs::write(&second.key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    gw.signal(libc::SIGHUP);
    gw.wait_line("reload rejected");
    let c = TlsClient::connect(gw.addr(), "localhost", client_config(&ca, None, &[])).unwrap();
    assert_eq!(c.peer_cert(), second.der);
}

fn mcp_post(addr: SocketAddr, body: &str, session: Option<&str>) -> Response {
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(s) = session {
        req.push_str(&format!("mcp-session-id: {s}\r\nmcp-protocol-version: 2025-06-18\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw(addr, req.as_bytes())
}

#[test]
fn an_https_mcp_target_is_reached_through_backend_tls() {
    let dir = tempdir();
    let ca = new_ca("mcp ca");
    let srv = leaf(&dir, &ca, "mcp", &["localhost", "127.0.0.1"], false);
    // one gateway serves the demo MCP server over HTTPS, a second federates it as an https target
    let inner = Gateway::start(&config("  tls: {}\n",
        &format!(
            "- port: 0\n  address: 127.0.0.1\n  listeners:\n  - protocol: HTTPS\n    tls: {{cert: \"{}\", key: \"{}\"}}\n    routes:\n    - backends:\n      - mcp:\n          targets:\n          - name: demo\n            demo: {{}}\n",
            srv.cert, srv.key
        ),
    ));
    let root = ca_file(&dir, &ca, "ca");
    let outer = Gateway::start(&config("  tls: {}\n",
        &format!(
            "- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - backends:\n      - mcp:\n          targets:\n          - name: remote\n            mcp: {{host: \"https://localhost:{}/mcp\"}}\n            policies: {{backendTLS: {{root: \"{root}\"}}}}\n",
            inner.addr().port()
        ),
    ));
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let r = mcp_post(outer.addr(), init, None);
    assert_eq!(r.status, 200, "{}", r.body_str());
    let session = r.header("mcp-session-id").expect("session").to_string();
    let r = mcp_post(outer.addr(), r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#, Some(&session));
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(r.body_str().contains("\"echo\""), "{}", r.body_str());
    let call =
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"message":"over tls"}}}"#;
    let r = mcp_post(outer.addr(), call, Some(&session));
    assert!(r.body_str().contains("over tls"), "{}", r.body_str());
    inner.wait_metric("ringgate_tls_handshakes_total ");
}

#[test]
fn large_bodies_cross_tls_on_both_sides() {
    let dir = tempdir();
    let ca = new_ca("test ca");
    let srv = leaf(&dir, &ca, "srv", &["localhost", "127.0.0.1"], false);
    // client →TLS→ gateway → plain echo upstream, and client → gateway →TLS→ gateway (HTTPS) → echo
    let echo = upstream("echo");
    let inner = Gateway::start(&config(
        "  http:\n    maxBodyBytes: 8000000\n  tls: {}\n",
        &format!(
            "- port: 0\n  address: 127.0.0.1\n  listeners:\n  - protocol: HTTPS\n    tls: {{cert: \"{}\", key: \"{}\"}}\n    routes:\n    - backends: [{{host: \"{}\"}}]\n",
            srv.cert, srv.key, echo.addr
        ),
    ));
    let root = ca_file(&dir, &ca, "ca");
    let outer = Gateway::start(&config(
        "  http:\n    maxBodyBytes: 8000000\n",
        &format!(
            "- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - backends:\n      - host: \"https://{}\"\n        policies: {{backendTLS: {{root: \"{root}\"}}}}\n",
            inner.addr()
        ),
    ));
    let body: Vec<u8> = (0..3_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut req =
        format!("POST /big HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
    req.extend_from_slice(&body);
    let mut c = TlsClient::connect(inner.addr(), "localhost", client_config(&ca, None, &[])).unwrap();
    for _ in 0..2 {
        let r = c.send(&req).unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body.ends_with(&body), "the whole body came back over the same TLS connection");
    }
    // chunked upload through the gateway's TLS client
    let mut chunked = b"POST /chunked HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(700_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut plain = Client::connect(outer.addr());
    for _ in 0..2 {
        let r = plain.send(&chunked).unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body[..r.body.len().min(300)]));
        assert!(r.body.ends_with(&body));
    }
}

/// The real Python `mcp` client (target/peers, installed by tests/peers/install.sh).
fn py_client(url: &str, cafile: &str, args: &[&str]) -> (serde_json::Value, i32) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/peers/py/bin/python");
    assert!(python.exists(), "{} is missing: run tests/peers/install.sh", python.display());
    let out = std::process::Command::new(python)
        .arg(root.join("tests/peers/mcp_client.py"))
        .args(["--url", url, "--cafile", cafile, "--timeout", "30"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("no JSON ({e}): {text}\nstderr: {}", String::from_utf8_lossy(&out.stderr)));
    (v, out.status.code().unwrap_or(-1))
}

#[test]
fn the_python_mcp_client_speaks_to_an_https_listener() {
    let dir = tempdir();
    let ca = new_ca("mcp ca");
    let srv = leaf(&dir, &ca, "mcp", &["localhost"], false);
    let gw = Gateway::start(&config(
        "  tls: {}\n",
        &format!(
            "- port: 0\n  address: 127.0.0.1\n  listeners:\n  - protocol: HTTPS\n    tls: {{cert: \"{}\", key: \"{}\"}}\n    routes:\n    - backends:\n      - mcp:\n          targets:\n          - name: demo\n            demo: {{}}\n",
            srv.cert, srv.key
        ),
    ));
    let url = format!("https://localhost:{}/mcp", gw.addr().port());
    let (list, code) = py_client(&url, &ca_file(&dir, &ca, "ca"), &["list"]);
    assert_eq!(code, 0, "{list}");
    assert!(list["tools"].as_array().unwrap().contains(&serde_json::json!("echo")), "{list}");
    let (call, code) = py_client(&url, &ca_file(&dir, &ca, "ca"), &["call", "echo", r#"{"message":"via https"}"#]);
    assert_eq!(code, 0, "{call}");
    assert!(call.to_string().contains("via https"), "{call}");
    // a CA the client does not trust: the client refuses the gateway
    let (refused, code) = py_client(&url, &ca_file(&dir, &new_ca("other"), "other"), &["list"]);
    assert_eq!(code, 3, "{refused}");
    // (OpenSSL hangs up without an alert the gateway can read: counted as peer_closed)
    gw.wait_metric("ringgate_tls_handshake_errors_total{reason=");
}
