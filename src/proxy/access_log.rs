//! The JSON access log: one line per request on stdout. Requests append their line to a
//! shared buffer (no syscall, no wake-up per request); a writer thread hands the buffer
//! to stdout every few milliseconds, so a slow stdout never holds a request up (beyond a
//! bounded backlog, lines are dropped and counted instead).

use crate::sync::lock;
use crate::telemetry;
use serde::Serialize;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Bytes waiting for stdout before new lines are dropped.
const BACKLOG: usize = 16 << 20;
/// How often the writer hands what accumulated to stdout.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// One request, as logged.
#[derive(Serialize)]
pub struct Line<'a> {
    /// When the response ended (RFC 3339, UTC).
    pub time: jiff::Timestamp,
    /// `X-Request-Id`, as received or generated.
    pub request_id: &'a str,
    /// The peer's address.
    pub client: IpAddr,
    /// The Host the client asked for.
    pub host: &'a str,
    /// Request method.
    pub method: &'a str,
    /// Path and query, as received.
    pub path: &'a str,
    /// HTTP version.
    pub protocol: &'a str,
    /// Status sent.
    pub status: u16,
    /// The source of the route that answered.
    pub route: Option<&'a str>,
    /// The route's target.
    pub upstream: Option<&'a str>,
    /// Milliseconds to the upstream's response head.
    pub upstream_latency_ms: Option<f64>,
    /// Milliseconds from request to the response's last byte.
    pub latency_ms: f64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// The client's User-Agent.
    pub user_agent: Option<&'a str>,
}

/// Where access log lines go; cheap to clone, a no-op when off.
#[derive(Clone)]
pub struct AccessLog(Option<Arc<Mutex<Vec<u8>>>>);

impl AccessLog {
    /// A log to stdout when `enabled`.
    pub fn new(enabled: bool) -> AccessLog {
        if !enabled {
            return AccessLog(None);
        }
        let buffer = Arc::new(Mutex::new(Vec::with_capacity(64 * 1024)));
        let weak = Arc::downgrade(&buffer);
        let started = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_out(weak));
        match started {
            Ok(_) => AccessLog(Some(buffer)),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the access log writer; access log off");
                AccessLog(None)
            }
        }
    }

    /// Whether lines are written.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Appends one line.
    pub fn write(&self, line: &Line<'_>) {
        let Some(buffer) = &self.0 else { return };
        let mut buffer = lock(buffer);
        if buffer.len() >= BACKLOG {
            return telemetry::access_log_dropped();
        }
        if serde_json::to_writer(&mut *buffer, line).is_ok() {
            buffer.push(b'\n');
        }
    }

    /// Writes out what is buffered now (at shutdown).
    pub fn flush(&self) {
        if let Some(buffer) = &self.0 {
            drain(buffer);
        }
    }
}

/// Hands the buffer to stdout every [`FLUSH_EVERY`] until the log is dropped.
fn write_out(buffer: Weak<Mutex<Vec<u8>>>) {
    while let Some(buffer) = buffer.upgrade() {
        drain(&buffer);
        drop(buffer);
        std::thread::sleep(FLUSH_EVERY);
    }
}

fn drain(buffer: &Mutex<Vec<u8>>) {
    let lines = std::mem::take(&mut *lock(buffer));
    if !lines.is_empty() {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&lines).and_then(|()| out.flush());
    }
}
