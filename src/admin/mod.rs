//! The admin server on its own thread, off the data shards: health, readiness, listeners, config dump, Prometheus metrics, MCP tool pins and findings.

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
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
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
                "mcpTools": crate::mcp::toolguard::global().view(),
            });
            (200, "application/json", serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        ("GET", "/mcp/tools") => {
            let v = crate::mcp::toolguard::global().view();
            (200, "application/json", serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        ("POST", "/mcp/tools/accept") => accept_tools(query),
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

/// `POST /mcp/tools/accept?route=R&target=T[&tool=N]`: make the current definition of a changed
/// tool (or of every changed tool of the target) its pin, which lifts a block.
fn accept_tools(query: &str) -> (u16, &'static str, String) {
    use crate::mcp::toolguard::AcceptError;
    let param = |name: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| percent_decode(v))
        })
    };
    let (Some(route), Some(target)) = (param("route"), param("target")) else {
        return (400, "text/plain", "route and target are required (tool is optional)\n".into());
    };
    let tool = param("tool");
    match crate::mcp::toolguard::global().accept(&route, &target, tool.as_deref()) {
        Ok(accepted) => {
            for t in &accepted {
                eprintln!("mcp target {target} (route {route}): tool `{t}` accepted by an operator");
            }
            (200, "application/json", serde_json::json!({ "accepted": accepted }).to_string())
        }
        Err(AcceptError::NotFound) => (404, "text/plain", "no such route, target or tool has been listed\n".into()),
        Err(AcceptError::ConfigPinned(tools)) => (
            409,
            "application/json",
            serde_json::json!({
                "error": "pinned by toolPins in the configuration; change the pins and reload",
                "tools": tools,
            })
            .to_string(),
        ),
    }
}

/// `%XX` and `+` of a query value; a `%` without two hex digits stays as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%').then(|| s.get(i + 1..i + 3)).flatten().and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (c, None) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn query_values_are_percent_decoded() {
        assert_eq!(super::percent_decode("0%2Flistener0%2froute0"), "0/listener0/route0");
        assert_eq!(super::percent_decode("a+b%zz%4"), "a b%zz%4");
    }

    #[test]
    fn redacts_secret_looking_fields() {
        let mut v = serde_json::json!({"a": {"apiKey": "s3cr3t", "name": "x"}, "l": [{"token": 1}]});
        super::redact(&mut v);
        assert_eq!(v["a"]["apiKey"], "<redacted>");
        assert_eq!(v["a"]["name"], "x");
        assert_eq!(v["l"][0]["token"], "<redacted>");
    }
}
