//! The admin server on its own thread, off the data shards: health, readiness, listeners, config dump, Prometheus metrics.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Snapshot;
use crate::observe::metrics::Registry;

/// What the admin server reports; written by the control thread.
pub struct AdminState {
    /// Set once every shard has bound its listeners.
    pub ready: AtomicBool,
    /// Metrics.
    pub registry: Arc<Registry>,
    /// The snapshot being served.
    pub current: Mutex<Arc<Snapshot>>,
    /// Configured bind address → bound address.
    pub listeners: Mutex<Vec<(SocketAddr, SocketAddr)>>,
    /// Configuration source (file path or `embedded default`).
    pub source: String,
}

/// Bind the admin address and serve it on a new thread. Returns the bound address.
pub fn start(addr: &str, state: Arc<AdminState>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr.replace("localhost", "127.0.0.1"))?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("ringgate-admin".into()).spawn(move || {
        for conn in listener.incoming().flatten() {
            let state = state.clone();
            // admin traffic is rare; a thread per connection keeps a slow client from blocking probes
            let _ = std::thread::Builder::new().name("ringgate-admin-conn".into()).spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = serve(conn, &state);
            });
        }
    })?;
    Ok(bound)
}

fn serve(conn: TcpStream, state: &AdminState) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // drain headers (bounded)
    let mut total = 0;
    loop {
        let mut h = String::new();
        let n = reader.read_line(&mut h)?;
        total += n;
        if n == 0 || h == "\r\n" || h == "\n" || total > 64 * 1024 {
            break;
        }
    }
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/healthz") => (200, "text/plain", "ok\n".to_string()),
        ("GET", "/ready" | "/healthz/ready") => {
            if state.ready.load(Ordering::Acquire) {
                (200, "text/plain", "ready\n".to_string())
            } else {
                (503, "text/plain", "not ready\n".to_string())
            }
        }
        ("GET", "/metrics" | "/stats/prometheus") => (200, "text/plain; version=0.0.4", state.registry.render()),
        ("GET", "/listeners") => (200, "application/json", listeners_json(state).to_string()),
        ("GET", "/config_dump") => {
            let snap = state.current.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let mut cfg = serde_json::to_value(&snap.config).unwrap_or_default();
            redact(&mut cfg);
            let v = serde_json::json!({
                "source": state.source,
                "config": cfg,
                "listeners": listeners_json(state),
            });
            (200, "application/json", serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        ("GET", _) => (404, "text/plain", "not found\n".to_string()),
        _ => (405, "text/plain", "method not allowed\n".to_string()),
    };
    let mut w = conn;
    write!(
        w,
        "HTTP/1.1 {status} {}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        crate::http::codec::reason_phrase(status),
        body.len()
    )?;
    w.flush()
}

fn listeners_json(state: &AdminState) -> serde_json::Value {
    let ls = state.listeners.lock().unwrap_or_else(|p| p.into_inner());
    serde_json::Value::Array(
        ls.iter()
            .map(|(cfg, bound)| serde_json::json!({ "bind": cfg.to_string(), "address": bound.to_string() }))
            .collect(),
    )
}

/// Replace values of secret-looking keys so the dump can be shared.
pub fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                let k = k.to_ascii_lowercase();
                let secret =
                    ["key", "secret", "token", "password", "authorization", "htpasswd"].iter().any(|s| k.contains(s));
                if secret && !val.is_object() && !val.is_array() && !val.is_null() {
                    *val = serde_json::Value::String("<redacted>".into());
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_secret_looking_fields() {
        let mut v = serde_json::json!({"a": {"apiKey": "s3cr3t", "name": "x"}, "l": [{"token": 1}]});
        super::redact(&mut v);
        assert_eq!(v["a"]["apiKey"], "<redacted>");
        assert_eq!(v["a"]["name"], "x");
        assert_eq!(v["l"][0]["token"], "<redacted>");
    }
}
