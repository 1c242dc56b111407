//! The connection limit (`CERYX_MAX_CONNECTIONS`): one budget of client connections
//! for a proxy's listeners together (HTTP and HTTPS; not the REST API or the ops
//! listener), so that a flood of connections cannot take the file descriptors those,
//! Redis and the upstreams need.
//!
//! A listener takes a permit for each connection it accepts before it accepts the next:
//! over the limit, each listener holds one accepted connection until a permit frees up,
//! and the others wait in the kernel's listen backlog (`CERYX_LISTEN_BACKLOG`; once that
//! is full the kernel drops further SYNs), as nginx's do when its `worker_connections`
//! are used up. (A permit taken before accepting would sit idle with each listener.) The
//! permit travels inside the connection's IO (see `HeaderDeadline`), so an upgraded
//! connection (a WebSocket tunnel) keeps it until the tunnel ends.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// File descriptors the default leaves to everything but client connections: listeners,
/// Redis, the REST API's and the ops listener's clients, certificate files, logs.
const RESERVED_FDS: u64 = 256;
/// The default when the open-file limit cannot be read.
const FALLBACK: usize = 1024;
/// At most one "limit reached" warning this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The connection budget of one proxy's listeners.
pub(crate) struct Limit {
    permits: Arc<Semaphore>,
    max: usize,
    warned: Mutex<Option<Instant>>,
}

impl Limit {
    /// The limit `setting` asks for (`None`: derived from the open-file limit), or
    /// `None` for no limit (`Some(0)`).
    pub(crate) fn new(setting: Option<usize>) -> Option<Arc<Limit>> {
        let max = setting.unwrap_or_else(default_max);
        crate::telemetry::connection_limit(max);
        if max == 0 {
            tracing::info!("no connection limit (CERYX_MAX_CONNECTIONS=0)");
            return None;
        }
        tracing::info!(max, "connection limit");
        Some(Arc::new(Limit {
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            max,
            warned: Mutex::new(None),
        }))
    }
}

/// The default limit: half of what the open-file limit leaves past [`RESERVED_FDS`],
/// since each proxied connection may hold an upstream connection too.
fn default_max() -> usize {
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, _)) => from_open_files(soft),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            FALLBACK
        }
    }
}

fn from_open_files(soft: u64) -> usize {
    let max = soft.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(max)
        .unwrap_or(usize::MAX)
        .clamp(1, Semaphore::MAX_PERMITS)
}

impl Limit {
    /// A permit for one more connection, waiting while all are taken.
    pub(crate) async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        self.warn();
        self.permits.clone().acquire_owned().await.ok()
    }

    fn warn(&self) {
        let Ok(mut warned) = self.warned.lock() else {
            return;
        };
        let now = Instant::now();
        if warned.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
            return;
        }
        *warned = Some(now);
        tracing::warn!(
            max = self.max,
            "connection limit reached (CERYX_MAX_CONNECTIONS): new connections wait in the listen backlog"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_leaves_descriptors_for_the_rest_of_the_process() {
        assert_eq!(from_open_files(1024), 384);
        assert_eq!(from_open_files(1 << 20), ((1 << 20) - 256) / 2);
        assert_eq!(from_open_files(100), 1, "never no connection at all");
        assert_eq!(from_open_files(u64::MAX), Semaphore::MAX_PERMITS);
    }
}
