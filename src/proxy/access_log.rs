//! The JSON access log: one line per request on stdout, written by its own thread so a
//! slow stdout never holds a request up (lines beyond a bounded backlog are dropped and
//! counted instead).

use crate::telemetry;
use serde::Serialize;
use std::io::Write;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// Lines waiting for stdout before new ones are dropped.
const BACKLOG: usize = 64 * 1024;

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
pub struct AccessLog(Option<SyncSender<String>>);

impl AccessLog {
    /// A log to stdout when `enabled`.
    pub fn new(enabled: bool) -> AccessLog {
        if !enabled {
            return AccessLog(None);
        }
        let (tx, rx) = sync_channel(BACKLOG);
        let started = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx));
        match started {
            Ok(_) => AccessLog(Some(tx)),
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

    /// Queues one line.
    pub fn write(&self, line: &Line<'_>) {
        let Some(tx) = &self.0 else { return };
        let Ok(mut text) = serde_json::to_string(line) else {
            return;
        };
        text.push('\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(text) {
            telemetry::access_log_dropped();
        }
    }
}

/// Writes lines as they come, flushing whenever the backlog is empty.
fn write_lines(rx: Receiver<String>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(line.as_bytes());
        while let Ok(line) = rx.try_recv() {
            let _ = out.write_all(line.as_bytes());
        }
        let _ = out.flush();
    }
}
