//! The access log: one line per request (text or JSON), buffered per shard and written to stdout without a lock.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::auth::cel::{Ctx, Program};
use crate::config::model::LogFormat;

/// The built-in fields of a line, in order; `config.logging.fields.remove` names these.
pub const FIELDS: [&str; 14] = [
    "shard",
    "src.addr",
    "http.method",
    "http.path",
    "http.host",
    "http.status",
    "route",
    "endpoint",
    "duration_ms",
    "bytes_sent",
    "retry.attempt",
    "reason",
    "error",
    "ts",
];

/// Compiled `config.logging.filter` and `config.logging.fields`.
#[derive(Debug, Default)]
pub struct LogPlan {
    /// Only requests for which it is true are logged (an error counts as true, so a broken filter
    /// does not hide requests).
    pub filter: Option<Program>,
    /// Added fields and their expressions.
    pub add: Vec<(String, Program)>,
    /// Built-in fields left out.
    pub remove: Vec<String>,
}

impl LogPlan {
    /// Whether any expression must be evaluated per request.
    pub fn needs_eval(&self) -> bool {
        self.filter.is_some() || !self.add.is_empty()
    }

    /// `None` when the filter drops the request; otherwise the added fields whose expressions succeeded.
    pub fn eval(&self, cx: &Ctx<'_>) -> Option<Vec<(&str, String)>> {
        if self.filter.as_ref().is_some_and(|f| f.eval(cx) == Ok(false)) {
            return None;
        }
        Some(self.add.iter().filter_map(|(n, p)| Some((n.as_str(), p.eval_string(cx)?))).collect())
    }
}

/// What is known about a request when its line is written.
#[derive(Default)]
pub struct Entry<'a> {
    /// Client address.
    pub peer: Option<SocketAddr>,
    /// Method.
    pub method: &'a str,
    /// Request target.
    pub path: &'a str,
    /// Host header.
    pub host: &'a str,
    /// Status sent (0 if none).
    pub status: u16,
    /// Route label.
    pub route: &'a str,
    /// Upstream address used.
    pub upstream: Option<SocketAddr>,
    /// Error reason, if the gateway failed the request.
    pub reason: Option<&'static str>,
    /// Error detail.
    pub error: Option<String>,
    /// Response body bytes sent.
    pub bytes_sent: u64,
    /// Whole duration.
    pub duration: Duration,
    /// Attempts made upstream.
    pub attempts: u8,
    /// Fields added by `config.logging.fields.add`.
    pub fields: &'a [(&'a str, String)],
    /// Built-in fields left out.
    pub removed: &'a [String],
}

/// Per-shard buffer; flushed when large and by a task that wakes only when lines wait.
pub struct AccessLog {
    buf: RefCell<Vec<u8>>,
    /// The flusher task, parked while the buffer is empty (an idle shard does not wake for it).
    flusher: std::cell::Cell<Option<std::task::Waker>>,
    /// Line format.
    pub format: std::cell::Cell<LogFormat>,
    /// Whether lines are written at all.
    pub enabled: std::cell::Cell<bool>,
}

const FLUSH_AT: usize = 32 * 1024;

impl AccessLog {
    /// An empty log buffer.
    pub fn new(format: LogFormat, enabled: bool) -> Self {
        AccessLog {
            buf: RefCell::new(Vec::with_capacity(FLUSH_AT * 2)),
            flusher: std::cell::Cell::new(None),
            format: format.into(),
            enabled: enabled.into(),
        }
    }

    /// Append one line.
    pub fn write(&self, shard: usize, e: &Entry<'_>) {
        if !self.enabled.get() {
            return;
        }
        let mut line = String::with_capacity(256);
        let ts = rfc3339(SystemTime::now());
        let dur_ms = e.duration.as_secs_f64() * 1000.0;
        let keep = |k: &str| !e.removed.iter().any(|r| r == k);
        match self.format.get() {
            LogFormat::Json => {
                let mut v = serde_json::json!({
                    "ts": ts, "shard": shard,
                    "src.addr": e.peer.map(|p| p.to_string()),
                    "http.method": e.method, "http.path": e.path, "http.host": e.host,
                    "http.status": e.status, "route": e.route,
                    "endpoint": e.upstream.map(|u| u.to_string()),
                    "reason": e.reason, "error": e.error,
                    "bytes_sent": e.bytes_sent, "duration_ms": (dur_ms * 1000.0).round() / 1000.0,
                    "retry.attempt": e.attempts,
                });
                if let Some(m) = v.as_object_mut() {
                    m.retain(|k, _| keep(k));
                    for (k, val) in e.fields {
                        m.insert((*k).to_string(), val.as_str().into());
                    }
                }
                line.push_str(&v.to_string());
            }
            LogFormat::Text => {
                if keep("ts") {
                    let _ = write!(line, "{ts} ");
                }
                line.push_str("info request");
                // `duration` keeps its text-format name; `fields.remove` calls it `duration_ms` in both formats
                let mut kv = |k: &str, v: &dyn std::fmt::Display| {
                    if keep(if k == "duration" { "duration_ms" } else { k }) {
                        let _ = write!(line, " {k}={v}");
                    }
                };
                kv("shard", &shard);
                kv("src.addr", &e.peer.map(|p| p.to_string()).unwrap_or_default());
                kv("http.method", &e.method);
                kv("http.path", &format_args!("{:?}", e.path));
                kv("http.host", &format_args!("{:?}", e.host));
                kv("http.status", &e.status);
                kv("route", &if e.route.is_empty() { "-" } else { e.route });
                kv("endpoint", &e.upstream.map(|u| u.to_string()).unwrap_or_else(|| "-".into()));
                kv("duration", &format_args!("{dur_ms:.3}ms"));
                kv("bytes_sent", &e.bytes_sent);
                if e.attempts > 1 {
                    kv("retry.attempt", &e.attempts);
                }
                if let Some(r) = e.reason {
                    kv("reason", &r);
                }
                if let Some(err) = &e.error {
                    kv("error", &format_args!("{err:?}"));
                }
                for (k, v) in e.fields {
                    kv(k, &format_args!("{v:?}"));
                }
            }
        }
        line.push('\n');
        let (was_empty, full) = {
            let mut b = self.buf.borrow_mut();
            let was_empty = b.is_empty();
            b.extend_from_slice(line.as_bytes());
            (was_empty, b.len() >= FLUSH_AT)
        };
        if full {
            self.flush();
        } else if was_empty {
            if let Some(w) = self.flusher.take() {
                w.wake();
            }
        }
    }

    /// Resolves once lines wait in the buffer.
    pub async fn pending(&self) {
        std::future::poll_fn(|cx| {
            if self.buf.borrow().is_empty() {
                self.flusher.set(Some(cx.waker().clone()));
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
    }

    /// Write buffered lines to stdout.
    pub fn flush(&self) {
        let mut b = self.buf.borrow_mut();
        write_stdout(&b);
        b.clear();
    }
}

/// Write all of `data` to fd 1 with plain `write(2)`: no process-wide stdout lock shared by shards.
pub fn write_stdout(mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writing an owned, initialised slice to fd 1.
        let n = unsafe { libc::write(1, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        data = &data[n as usize..];
    }
}

/// `2026-11-23T07:05:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil-from-days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_417_500_250)), "2026-11-23T07:05:00.250Z");
    }
}
