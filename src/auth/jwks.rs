//! JWKS sources: read from a file or inline at load, or fetched from a URL and refreshed in the background.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::tls::BackendTls;
use crate::tls::UpstreamTls;

use super::jwt::KeySet;
use crate::config::live::Live;

/// Largest JWKS document accepted from a URL.
const MAX_JWKS_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The current keys of one source. Readers on the shards never lock: the generation is one
/// atomic load (it keys the verified-token caches), the key set an `ArcSwap` load.
pub struct KeyCell {
    keys: ArcSwap<KeySet>,
    generation: AtomicU64,
    /// Wakes the refresher early (a token named a `kid` we do not have); `None` for static sources.
    wake: Option<flume::Sender<()>>,
    /// `file:…`, `url:…` or `inline`, for logs and reuse across reloads.
    origin: String,
}

impl KeyCell {
    /// The keys now.
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// Bumped on every change of the keys.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Ask for a fetch now (rate-limited by the refresher); a no-op for static sources.
    pub fn refresh_soon(&self) {
        if let Some(w) = &self.wake {
            let _ = w.try_send(());
        }
    }

    fn store(&self, keys: KeySet) {
        self.keys.store(Arc::new(keys));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Where the keys come from.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// Keys parsed once from a document (file or inline).
pub fn fixed(origin: String, doc: &[u8]) -> Result<Arc<KeyCell>, String> {
    let keys = KeySet::from_jwks(doc)?;
    Ok(Arc::new(KeyCell { keys: ArcSwap::from_pointee(keys), generation: AtomicU64::new(1), wake: None, origin }))
}

/// Keys behind an `http://` or `https://` URL, fetched now and then refreshed every `every` and on demand, at
/// most once per `min_gap`. An issuer that is down at load does not stop the gateway: the source
/// starts empty (tokens are refused as signed by an unknown key) and is fetched again every
/// `min_gap` until it answers. A cell already serving the same URL and intervals (from the config
/// before a reload) is reused, so a reload neither refetches nor forgets rotated keys.
pub fn remote(url: &str, every: Duration, min_gap: Duration, tls: Option<&BackendTls>) -> Result<Arc<KeyCell>, String> {
    static LIVE: Live<KeyCell> = Live::new();
    let target = HttpGet::parse(url, tls)?;
    let tls_id = target.tls.as_ref().map_or(0, |t| t.id);
    let origin = format!("url:{url} every:{every:?} min:{min_gap:?} tls:{tls_id:016x}");
    LIVE.get_or_make(origin.clone(), || {
        let (keys, last) = match target.fetch().and_then(|doc| KeySet::from_jwks(&doc).map(|k| (k, doc))) {
            Ok((keys, doc)) => (keys, Some(doc)),
            Err(e) => {
                eprintln!("ringgate: JWKS {url} unavailable ({e}); tokens are refused until it answers");
                (KeySet::empty(), None)
            }
        };
        let (tx, rx) = flume::bounded(1);
        let cell = Arc::new(KeyCell {
            keys: ArcSwap::from_pointee(keys),
            generation: AtomicU64::new(1),
            wake: Some(tx),
            origin,
        });
        let weak = Arc::downgrade(&cell);
        std::thread::Builder::new()
            .name("ringgate-jwks".into())
            .spawn(move || refresher(weak, rx, target, last, every, min_gap))
            .map_err(|e| format!("cannot start the JWKS refresher: {e}"))?;
        Ok(cell)
    })
}

/// Runs until the cell is dropped (its sender with it, which ends `recv_timeout`).
fn refresher(
    cell: Weak<KeyCell>,
    wake: flume::Receiver<()>,
    target: HttpGet,
    mut last: Option<Vec<u8>>,
    every: Duration,
    min_gap: Duration,
) {
    let mut fetched = Instant::now();
    loop {
        // until a first good document, keep trying at the fastest allowed pace
        let wait = if last.is_some() { every } else { min_gap };
        match wake.recv_timeout(wait) {
            Ok(()) | Err(flume::RecvTimeoutError::Timeout) => {}
            Err(flume::RecvTimeoutError::Disconnected) => return,
        }
        let since = fetched.elapsed();
        if since < min_gap {
            std::thread::sleep(min_gap - since);
        }
        let Some(c) = cell.upgrade() else { return };
        fetched = Instant::now();
        match target.fetch().and_then(|doc| KeySet::from_jwks(&doc).map(|k| (doc, k))) {
            Ok((doc, keys)) if last.as_ref() != Some(&doc) => {
                eprintln!("ringgate: JWKS {} changed; new keys in use", target.url);
                c.store(keys);
                last = Some(doc);
            }
            Ok(_) => {}
            // keep serving the keys we have: an outage of the issuer must not lock everyone out
            Err(e) => eprintln!("ringgate: JWKS refresh from {} failed: {e}", target.url),
        }
    }
}

/// An HTTP/1.0 GET over plain TCP or TLS, blocking; only used off the shards.
#[derive(Debug)]
struct HttpGet {
    url: String,
    authority: String,
    path: String,
    tls: Option<Arc<UpstreamTls>>,
}

impl HttpGet {
    fn parse(url: &str, tls: Option<&BackendTls>) -> Result<HttpGet, String> {
        let https = crate::http::url::is_https(url);
        if !https && !url.starts_with("http://") {
            return Err(format!("{url}: a JWKS URL must start with http:// or https://"));
        }
        let (authority, path) = crate::http::url::split(url, "/");
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let tls = match (https, tls) {
            (false, Some(_)) => return Err(format!("{url}: backendTLS needs an https:// URL")),
            (false, None) => None,
            (true, t) => {
                let default = BackendTls::default();
                let host = crate::http::url::host_only(authority);
                Some(
                    crate::tls::upstream(t.unwrap_or(&default), host)
                        .map_err(|(f, e)| format!("backendTLS.{f}: {e}"))?,
                )
            }
        };
        Ok(HttpGet { url: url.to_string(), authority: authority.to_string(), path: path.to_string(), tls })
    }

    fn fetch(&self) -> Result<Vec<u8>, String> {
        let err = |e: std::io::Error| format!("{}: {e}", self.url);
        let addr = crate::http::url::with_port(&self.authority, self.tls.is_some())
            .to_socket_addrs()
            .map_err(err)?
            .next()
            .ok_or_else(|| format!("{}: the host resolves to no address", self.url))?;
        let s = TcpStream::connect_timeout(&addr, FETCH_TIMEOUT).map_err(err)?;
        s.set_read_timeout(Some(FETCH_TIMEOUT)).map_err(err)?;
        s.set_write_timeout(Some(FETCH_TIMEOUT)).map_err(err)?;
        // HTTP/1.0: the answer ends at close and is never chunked
        let req = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: ringgate\r\n\r\n",
            self.path, self.authority
        );
        let mut buf = Vec::new();
        let limit = MAX_JWKS_BYTES as u64 + 1;
        match &self.tls {
            None => {
                let mut s = s;
                s.write_all(req.as_bytes()).map_err(err)?;
                s.take(limit).read_to_end(&mut buf).map_err(err)?;
            }
            Some(t) => {
                let conn = rustls::ClientConnection::new(t.config.clone(), t.server_name.clone())
                    .map_err(|e| format!("{}: {e}", self.url))?;
                let mut s = rustls::StreamOwned::new(conn, s);
                s.write_all(req.as_bytes()).map_err(err)?;
                match s.take(limit).read_to_end(&mut buf) {
                    Ok(_) => {}
                    // servers often close without close_notify; the answer is complete at close
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                    Err(e) => return Err(err(e)),
                }
            }
        }
        if buf.len() > MAX_JWKS_BYTES {
            return Err(format!("{}: the JWKS is larger than {MAX_JWKS_BYTES} bytes", self.url));
        }
        let head_end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("{}: no complete HTTP response", self.url))?;
        let status_line = buf[..head_end].split(|&b| b == b'\n').next().unwrap_or_default();
        let status = std::str::from_utf8(status_line).unwrap_or("").split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            return Err(format!("{}: status {status}", self.url));
        }
        Ok(buf.split_off(head_end + 4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(HttpGet::parse("ftp://idp/keys", None).is_err());
        let g = HttpGet::parse("http://idp:8080/realms/x/certs", None).unwrap();
        assert_eq!((g.authority.as_str(), g.path.as_str()), ("idp:8080", "/realms/x/certs"));
        assert!(g.tls.is_none());
        assert_eq!(HttpGet::parse("http://idp", None).unwrap().path, "/");
        let insecure = BackendTls { insecure: true, ..Default::default() };
        let g = HttpGet::parse("https://idp/keys", Some(&insecure)).unwrap();
        assert_eq!(format!("{:?}", g.tls.unwrap().server_name), "DnsName(\"idp\")");
        assert!(HttpGet::parse("http://idp/keys", Some(&insecure)).unwrap_err().contains("https"));
    }

    /// A one-shot HTTPS server (rustls, std) answering every connection with `body`, and the
    /// PEM of the CA that signed its certificate for 127.0.0.1.
    fn https_server(body: &'static str) -> (String, String) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf =
            CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let cfg = Arc::new(cfg);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/keys", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(cfg.clone()).unwrap(), s);
                let mut head = [0u8; 1024];
                let _ = tls.read(&mut head);
                let resp = format!("HTTP/1.0 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                let _ = tls.write_all(resp.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        (url, ca.pem())
    }

    #[test]
    fn https_urls_are_fetched_with_the_configured_roots() {
        let (url, ca) = https_server(r#"{"keys":[]}"#);
        let dir = std::env::temp_dir().join(format!("ringgate-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = dir.join("ca.pem");
        std::fs::write(&root, ca).unwrap();
        let tls = BackendTls { root: Some(root.to_string_lossy().into_owned()), ..Default::default() };
        let doc = HttpGet::parse(&url, Some(&tls)).unwrap().fetch().unwrap();
        assert_eq!(doc, br#"{"keys":[]}"#);
        // the system store does not know the test's CA
        let e = HttpGet::parse(&url, None).unwrap().fetch().unwrap_err();
        assert!(e.contains("UnknownIssuer") || e.contains("invalid peer certificate"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
