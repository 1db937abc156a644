//! TLS on both sides: certificates read at load (so a reload picks up new files), listener configs chosen by SNI, backend client configs, the handshakes and their failure labels.

pub mod stream;

use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

pub use stream::{HandshakeError, Stream, TlsStream};

use crate::config::live::Live;
use crate::config::tls::{BackendTls, ClientAuth, FrontendTls, ListenerTls, TlsVersion};

/// Labels of `ringgate_tls_handshake_errors_total{reason}`.
pub const HANDSHAKE_ERROR_REASONS: [&str; 12] = [
    "timeout",
    "not_tls",
    "unknown_server_name",
    "no_client_certificate",
    "bad_client_certificate",
    "no_application_protocol",
    "incompatible",
    "peer_alert",
    "malformed",
    "peer_closed",
    "io",
    "other",
];

/// The crypto provider: `ring` (already used for JWT), the same for every config.
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

fn read(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {path}: {e}"))
}

/// Every certificate of a PEM file, in file order.
pub fn certs_from_pem(pem: &[u8], path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path}: no CERTIFICATE in the file"));
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8], path: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("{path}: no usable private key ({e})"))
}

fn roots_from_pem(pem: &[u8], path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs_from_pem(pem, path)?);
    if added == 0 {
        return Err(format!("{path}: no usable CA certificate"));
    }
    Ok(roots)
}

/// The operating system's trust store (rustls-native-certs), read once per process: it follows
/// the distribution's CA updates and the CAs an organisation adds there, which compiled-in roots
/// would not. agentgateway reads the same store. A machine without one (a bare container) gets
/// an empty store and a warning: every backend certificate is then refused as untrusted, and
/// configs that set `root` keep working.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map(|e| e.to_string()).unwrap_or_else(|| "none found".into());
                eprintln!(
                    "ringgate: no system CA certificates ({why}); backends without backendTLS.root will not verify"
                );
            }
            Arc::new(roots)
        })
        .clone()
}

fn versions(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let (min, max) = (min.unwrap_or(TlsVersion::V1_2), max.unwrap_or(TlsVersion::V1_3));
    if min > max {
        return Err("minTLSVersion is above maxTLSVersion".into());
    }
    let mut v = Vec::new();
    if max == TlsVersion::V1_3 {
        v.push(&rustls::version::TLS13);
    }
    if min == TlsVersion::V1_2 {
        v.push(&rustls::version::TLS12);
    }
    Ok(v)
}

/// ALPN ids from their names; only `http/1.1` is spoken, on either side.
pub fn alpn(list: &[String]) -> Result<Vec<Vec<u8>>, String> {
    list.iter()
        .map(|p| match p.as_str() {
            "http/1.1" => Ok(p.as_bytes().to_vec()),
            _ => Err(format!("`{p}`: only `http/1.1` is possible (this build speaks HTTP/1.1 only)")),
        })
        .collect()
}

/// A listener's server config, reading its files now. Errors name the field (`cert`, `key`, `root`, …).
pub fn server_config(t: &ListenerTls, front: &FrontendTls) -> Result<Arc<ServerConfig>, (&'static str, String)> {
    let certs =
        certs_from_pem(&read(&t.cert, "certificate").map_err(|e| ("cert", e))?, &t.cert).map_err(|e| ("cert", e))?;
    let key = key_from_pem(&read(&t.key, "key").map_err(|e| ("key", e))?, &t.key).map_err(|e| ("key", e))?;
    let vers = versions(t.min_tls_version, t.max_tls_version).map_err(|e| ("minTLSVersion", e))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&vers)
        .map_err(|e| ("minTLSVersion", e.to_string()))?;
    let builder = match &t.root {
        None if t.client_auth.is_some() => {
            return Err(("clientAuth", "needs `root` (the CAs of client certificates)".into()))
        }
        None => builder.with_no_client_auth(),
        Some(root) => {
            let roots =
                roots_from_pem(&read(root, "CA file").map_err(|e| ("root", e))?, root).map_err(|e| ("root", e))?;
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let v = match t.client_auth.unwrap_or(ClientAuth::Required) {
                ClientAuth::Required => v,
                ClientAuth::Optional => v.allow_unauthenticated(),
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| ("root", e.to_string()))?)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| ("key", format!("{} and {} do not make a usable pair: {e}", t.cert, t.key)))?;
    // checked with the rest of `frontendPolicies`
    cfg.alpn_protocols = alpn(&front.alpn).unwrap_or_default();
    Ok(Arc::new(cfg))
}

/// TLS towards one backend: the client config, the name sent as SNI and checked, and the id
/// that keeps its pooled connections apart from others to the same address.
pub struct UpstreamTls {
    /// The client config (shared across reloads while the settings and files are unchanged,
    /// so its session-resumption cache survives them).
    pub config: Arc<ClientConfig>,
    /// SNI and the name the certificate must carry.
    pub server_name: ServerName<'static>,
    /// Pool key part: equal for equal settings, files and name.
    pub id: u64,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UpstreamTls({})", self.server_name.to_str())
    }
}

/// TLS settings for a backend whose host (no port) is `host`. Files are read now.
pub fn upstream(t: &BackendTls, host: &str) -> Result<Arc<UpstreamTls>, (&'static str, String)> {
    let name = t.hostname.as_deref().unwrap_or(host).trim_start_matches('[').trim_end_matches(']');
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|_| ("hostname", format!("`{name}` is not a DNS name or IP")))?;
    let files = [t.cert.as_deref(), t.key.as_deref(), t.root.as_deref()];
    let mut contents = Vec::with_capacity(3);
    for (f, what) in files.iter().zip(["cert", "key", "root"]) {
        contents.push(match f {
            Some(p) => Some(read(p, what).map_err(|e| (what, e))?),
            None => None,
        });
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (t, name, &contents).hash(&mut h);
    let id = h.finish();
    static LIVE: Live<ClientConfig> = Live::new();
    let config = LIVE.get_or_make(format!("{id:016x}"), || client_config(t, &contents))?;
    Ok(Arc::new(UpstreamTls { config, server_name, id }))
}

fn client_config(t: &BackendTls, files: &[Option<Vec<u8>>]) -> Result<Arc<ClientConfig>, (&'static str, String)> {
    let p = provider();
    let builder = ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ("alpn", e.to_string()))?;
    let roots = match (&t.root, &files[2]) {
        (Some(path), Some(pem)) => Arc::new(roots_from_pem(pem, path).map_err(|e| ("root", e))?),
        _ if t.insecure => Arc::new(RootCertStore::empty()),
        _ => system_roots(),
    };
    let builder = if t.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCert(p.clone())))
    } else if t.insecure_host {
        let v = WebPkiServerVerifier::builder_with_provider(roots, p.clone())
            .build()
            .map_err(|e| ("root", e.to_string()))?;
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyName(v)))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut cfg = match (&t.cert, &t.key, &files[0], &files[1]) {
        (Some(cp), Some(kp), Some(c), Some(k)) => {
            let certs = certs_from_pem(c, cp).map_err(|e| ("cert", e))?;
            let key = key_from_pem(k, kp).map_err(|e| ("key", e))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| ("key", format!("{cp} and {kp}: {e}")))?
        }
        (None, None, _, _) => builder.with_no_client_auth(),
        _ => return Err(("cert", "a client certificate needs both `cert` and `key`".into())),
    };
    let default_alpn = ["http/1.1".to_string()];
    cfg.alpn_protocols = alpn(t.alpn.as_deref().unwrap_or(&default_alpn)).map_err(|e| ("alpn", e))?;
    Ok(Arc::new(cfg))
}

/// `insecure: true`: any certificate; handshake signatures are still checked, so the peer must
/// at least hold the key of the certificate it sent.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `insecureHost: true`: the chain must verify, the name in it is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        e: &CertificateDer<'_>,
        i: &[CertificateDer<'_>],
        n: &ServerName<'_>,
        o: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(e, i, n, o, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The label of a failed server-side handshake.
pub fn classify(e: &HandshakeError) -> &'static str {
    use rustls::Error as E;
    match e {
        HandshakeError::Io(_) => "io",
        HandshakeError::Eof => "peer_closed",
        HandshakeError::Tls(e) => match e {
            E::NoCertificatesPresented => "no_client_certificate",
            E::InvalidCertificate(_) => "bad_client_certificate",
            E::NoApplicationProtocol => "no_application_protocol",
            E::PeerIncompatible(_) => "incompatible",
            E::AlertReceived(_) => "peer_alert",
            E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
                "malformed"
            }
            _ => "other",
        },
    }
}

/// A refused client handshake: its label and what happened.
pub struct Refused {
    /// Label (one of [`HANDSHAKE_ERROR_REASONS`]).
    pub reason: &'static str,
    /// What happened.
    pub detail: String,
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Serve the server side of a handshake on `io`. `pick` chooses the config (and a caller's
/// marker, such as the listener) from the SNI name the client sent. A client that speaks plain
/// HTTP is answered with a plain 400 before the connection closes.
pub async fn accept<M>(
    mut io: TcpStream,
    pick: impl FnOnce(Option<&str>) -> Option<(Arc<ServerConfig>, M)>,
) -> Result<(TlsStream, M), Refused> {
    let fail = |reason, detail: String| Refused { reason, detail };
    let mut acceptor = rustls::server::Acceptor::default();
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024 + 256);
    let mut off = 0;
    let mut first = true;
    let accepted = loop {
        if off == buf.len() {
            buf.clear();
            off = 0;
            let (r, b) = monoio::io::AsyncReadRent::read(&mut io, buf).await;
            buf = b;
            match r {
                Ok(0) => return Err(fail("peer_closed", "closed before a ClientHello".into())),
                Ok(_) => {}
                Err(e) => return Err(fail("io", e.to_string())),
            }
            if std::mem::take(&mut first) && buf.first().is_some_and(|b| *b != TLS_HANDSHAKE) {
                let body = br#"{"error":{"type":"not_tls","message":"this port speaks HTTPS; plain HTTP was sent"}}"#;
                let mut out = Vec::with_capacity(200);
                crate::http::codec::write_status_line(&mut out, 400);
                crate::http::codec::write_header(&mut out, "content-type", b"application/json");
                crate::http::codec::write_header(&mut out, "content-length", body.len().to_string().as_bytes());
                crate::http::codec::write_header(&mut out, "connection", b"close");
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(body);
                let _ = io.write_all(out).await;
                return Err(fail("not_tls", "plain HTTP sent to an HTTPS port".into()));
            }
        }
        match acceptor.read_tls(&mut &buf[off..]) {
            Ok(n) => off += n,
            Err(e) => return Err(fail("malformed", e.to_string())),
        }
        match acceptor.accept() {
            Ok(None) => continue,
            Ok(Some(a)) => break a,
            Err((e, mut alert)) => {
                let mut out = Vec::new();
                let _ = alert.write_all(&mut out);
                let _ = io.write_all(out).await;
                return Err(fail(classify(&HandshakeError::Tls(e.clone())), e.to_string()));
            }
        }
    };
    let sni = accepted.client_hello().server_name().map(str::to_owned);
    let Some((config, marker)) = pick(sni.as_deref()) else {
        return Err(fail(
            "unknown_server_name",
            format!("no listener serves {:?}", sni.as_deref().unwrap_or("(no SNI)")),
        ));
    };
    let conn = match accepted.into_connection(config) {
        Ok(c) => c,
        Err((e, mut alert)) => {
            let mut out = Vec::new();
            let _ = alert.write_all(&mut out);
            let _ = io.write_all(out).await;
            return Err(fail(classify(&HandshakeError::Tls(e.clone())), e.to_string()));
        }
    };
    let mut tls = TlsStream::new(io, rustls::Connection::Server(conn), buf, off);
    match tls.handshake().await {
        Ok(()) => Ok((tls, marker)),
        Err(e) => Err(fail(classify(&e), e.to_string())),
    }
}

/// Open TLS towards a backend over the connected `io`.
pub async fn connect(io: TcpStream, tls: &UpstreamTls) -> Result<Stream, HandshakeError> {
    let conn =
        rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone()).map_err(HandshakeError::Tls)?;
    let mut s = TlsStream::new(io, rustls::Connection::Client(conn), Vec::new(), 0);
    s.handshake().await?;
    Ok(Stream::Tls(Box::new(s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile::{compile, HostPattern};

    fn compile_err(yaml: &str) -> String {
        let cfg = crate::config::load::parse_str(yaml, "t.yaml").unwrap();
        match compile(cfg, "t.yaml", &crate::observe::metrics::Registry::new(1)) {
            Ok(_) => panic!("compiled: {yaml}"),
            Err(e) => e.to_string(),
        }
    }

    /// A certificate for `names` signed by a fresh CA, as files; returns (cert, key, ca) paths.
    fn files(dir: &std::path::Path, names: &[&str]) -> (String, String, String) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let leaf = rcgen::CertificateParams::new(names).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let p = |n: &str, text: String| {
            let f = dir.join(n);
            std::fs::write(&f, text).unwrap();
            f.to_string_lossy().into_owned()
        };
        (p("c.pem", leaf.pem()), p("k.pem", key.serialize_pem()), p("ca.pem", ca.pem()))
    }

    #[test]
    fn versions_and_alpn_are_checked() {
        assert_eq!(versions(None, None).unwrap().len(), 2);
        assert_eq!(versions(Some(TlsVersion::V1_3), None).unwrap(), vec![&rustls::version::TLS13]);
        assert_eq!(versions(None, Some(TlsVersion::V1_2)).unwrap(), vec![&rustls::version::TLS12]);
        assert!(versions(Some(TlsVersion::V1_3), Some(TlsVersion::V1_2)).is_err());
        assert_eq!(alpn(&["http/1.1".into()]).unwrap(), vec![b"http/1.1".to_vec()]);
        assert!(alpn(&["h2".into()]).unwrap_err().contains("HTTP/1.1 only"));
    }

    #[test]
    fn failures_get_their_labels() {
        use rustls::Error as E;
        let tls = |e| classify(&HandshakeError::Tls(e));
        assert_eq!(tls(E::NoCertificatesPresented), "no_client_certificate");
        assert_eq!(tls(E::InvalidCertificate(CertificateError::UnknownIssuer)), "bad_client_certificate");
        assert_eq!(tls(E::NoApplicationProtocol), "no_application_protocol");
        assert_eq!(tls(E::General("x".into())), "other");
        assert_eq!(classify(&HandshakeError::Eof), "peer_closed");
        for label in ["timeout", "not_tls", "unknown_server_name", "malformed", "io", "incompatible", "peer_alert"] {
            assert!(HANDSHAKE_ERROR_REASONS.contains(&label), "{label}");
        }
    }

    #[test]
    fn listener_config_errors_name_their_field() {
        let dir = std::env::temp_dir().join(format!("ringgate-tls-unit-{}", std::process::id()));
        let (cert, key, ca) = files(&dir, &["a.test"]);
        let (_, other_key, _) = files(&dir.join("other"), &["b.test"]);
        let front = FrontendTls::default();
        let t = |cert: &str, key: &str| ListenerTls {
            cert: cert.into(),
            key: key.into(),
            root: None,
            client_auth: None,
            min_tls_version: None,
            max_tls_version: None,
        };
        let cfg = server_config(&t(&cert, &key), &front).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(server_config(&t("/nonexistent.pem", &key), &front).unwrap_err().0, "cert");
        assert_eq!(server_config(&t(&key, &key), &front).unwrap_err().0, "cert", "a key is not a certificate");
        assert_eq!(server_config(&t(&cert, &cert), &front).unwrap_err().0, "key");
        assert_eq!(server_config(&t(&cert, &other_key), &front).unwrap_err().0, "key", "mismatched pair");
        let no_root = ListenerTls { client_auth: Some(ClientAuth::Optional), ..t(&cert, &key) };
        assert_eq!(server_config(&no_root, &front).unwrap_err().0, "clientAuth");
        let mtls = ListenerTls { root: Some(ca.clone()), ..t(&cert, &key) };
        assert!(server_config(&mtls, &front).is_ok());

        let bind = |listeners: &str| format!("binds:\n- port: 0\n  listeners:\n{listeners}");
        let https = format!("  - protocol: HTTPS\n    tls: {{cert: {cert}, key: {key}}}\n    routes: [{{policies: {{directResponse: {{}}}}}}]\n");
        let http = "  - routes: [{policies: {directResponse: {}}}]\n";
        assert!(compile_err(&bind(&format!("{https}{http}"))).contains("listeners[1].protocol"));
        let e = compile_err(&bind("  - protocol: HTTPS\n    routes: [{policies: {directResponse: {}}}]\n"));
        assert!(e.contains("listeners[0].tls") && e.contains("needs"), "{e}");
        let e = compile_err(&bind(&format!("  - tls: {{cert: {cert}, key: {key}}}\n    routes: []\n")));
        assert!(e.contains("protocol: HTTPS"), "{e}");
        let e = compile_err(&bind(&format!(
            "  - protocol: HTTPS\n    tls: {{cert: {cert}, key: /nope}}\n    routes: []\n"
        )));
        assert!(e.contains("listeners[0].tls.key") && e.contains("/nope"), "{e}");
        let e = compile_err(&format!("frontendPolicies:\n  tls:\n    alpn: [h2]\n{}", bind(&https)));
        assert!(e.contains("frontendPolicies.tls.alpn"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sni_picks_the_most_specific_listener_then_the_catch_all() {
        let dir = std::env::temp_dir().join(format!("ringgate-tls-sni-{}", std::process::id()));
        let (cert, key, _) = files(&dir, &["a.test"]);
        let l = |host: &str| {
            format!("  - hostname: \"{host}\"\n    protocol: HTTPS\n    tls: {{cert: {cert}, key: {key}}}\n    routes: [{{policies: {{directResponse: {{}}}}}}]\n")
        };
        let yaml = format!("binds:\n- port: 0\n  listeners:\n{}{}", l("*.test"), l("a.test"));
        let cfg = crate::config::load::parse_str(&yaml, "t.yaml").unwrap();
        let snap = compile(cfg, "t.yaml", &crate::observe::metrics::Registry::new(1)).unwrap();
        let b = &snap.binds[0];
        assert!(b.tls);
        let host = |sni| b.tls_for(sni).map(|(_, h)| h);
        assert_eq!(host(Some("a.test")), Some(Some(HostPattern::Exact("a.test".into()))));
        assert_eq!(host(Some("b.test")), Some(Some(HostPattern::Suffix(".test".into()))));
        assert_eq!(host(Some("example.com")), None);
        assert_eq!(host(None), None, "no SNI and no listener without a hostname");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn backend_tls_ids_follow_settings_and_files() {
        let dir = std::env::temp_dir().join(format!("ringgate-tls-up-{}", std::process::id()));
        let (_, _, ca) = files(&dir, &["a.test"]);
        let t = BackendTls { root: Some(ca.clone()), ..Default::default() };
        let a = upstream(&t, "api.test").unwrap();
        let again = upstream(&t, "api.test").unwrap();
        assert_eq!(a.id, again.id);
        assert!(Arc::ptr_eq(&a.config, &again.config), "same settings and files: one config, kept across reloads");
        assert_ne!(upstream(&t, "other.test").unwrap().id, a.id, "another name is another pool");
        let named = upstream(&BackendTls { hostname: Some("override.test".into()), ..t.clone() }, "api.test").unwrap();
        assert_eq!(format!("{:?}", named.server_name), format!("{:?}", ServerName::try_from("override.test").unwrap()));
        let ip = upstream(&t, "[::1]").unwrap();
        assert!(matches!(ip.server_name, ServerName::IpAddress(_)));
        files(&dir, &["a.test"]);
        assert_ne!(upstream(&t, "api.test").unwrap().id, a.id, "a rewritten CA file is another config");
        assert_eq!(upstream(&BackendTls { alpn: Some(vec!["h2".into()]), ..t.clone() }, "x").unwrap_err().0, "alpn");
        let half = BackendTls { cert: Some(ca.clone()), ..t.clone() };
        assert_eq!(upstream(&half, "x").unwrap_err().0, "cert");
        let _ = std::fs::remove_dir_all(dir);
    }
}
