//! The change-notice subscription: one `<prefix>:events` channel on the store's own
//! connection, kept subscribed across reconnects (and onto each new primary after a
//! failover), its messages turned into notices.

use super::primary::Primary;
use crate::store::notice::{Change, Notices};
use redis::{PushKind, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the store checks Redis (and so reconnects and resubscribes) while idle.
const PING_INTERVAL: Duration = Duration::from_secs(1);

/// A change notice's payload: the source, then when it was written (microseconds since
/// the Unix epoch, by the writer's clock) for the propagation-delay metric.
pub(super) fn notice(source: &str) -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("{source} {micros}")
}

/// A wake request's payload: `!` cannot begin a source, so older readers take it for a
/// change of a route that does not exist.
pub(super) fn wake_notice(source: &str) -> String {
    format!("{WAKE_PREFIX}{source}")
}

const WAKE_PREFIX: &str = "!wake ";

/// Reads a payload of [`notice`] or [`wake_notice`]; a bare source (older writers) has
/// no time.
fn parse_notice(payload: &str) -> Change {
    if let Some(source) = payload.strip_prefix(WAKE_PREFIX) {
        return Change::Wake {
            source: source.to_owned(),
        };
    }
    let timed = payload.rsplit_once(' ').and_then(|(source, micros)| {
        let micros: u64 = micros.parse().ok()?;
        Some((source, UNIX_EPOCH + Duration::from_micros(micros)))
    });
    match timed {
        Some((source, at)) => Change::Route {
            source: source.to_owned(),
            written_at: Some(at),
        },
        None => Change::route(payload),
    }
}

/// Turns Redis push messages into [`Change`]s, on the connection's reader task so a
/// notice takes effect the moment it arrives. A (re)subscription or a lost connection
/// means notices may have been missed, so subscribers are told to resync. Only the
/// connection of the current primary (`generation` equal to `live`) is listened to.
pub(super) fn notice_handler(
    channel: String,
    notices: Arc<Notices>,
    subscribed: Arc<AtomicBool>,
    live: Arc<AtomicU64>,
    generation: u64,
) -> impl Fn(redis::PushInfo) -> Result<(), std::convert::Infallible> + Send + Sync + 'static {
    move |push| {
        if live.load(Ordering::Acquire) != generation {
            return Ok(());
        }
        let change = match push.kind {
            PushKind::Message => match push.data.as_slice() {
                [Value::BulkString(ch), Value::BulkString(notice)] if ch == channel.as_bytes() => {
                    parse_notice(&String::from_utf8_lossy(notice))
                }
                _ => return Ok(()),
            },
            PushKind::Subscribe => {
                subscribed.store(true, Ordering::Release);
                tracing::info!(%channel, "subscribed to route change notices");
                Change::Resync
            }
            PushKind::Disconnection => {
                subscribed.store(false, Ordering::Release);
                crate::telemetry::store_reconnect();
                tracing::warn!("lost the connection to redis; serving last known routes");
                Change::Resync
            }
            _ => return Ok(()),
        };
        notices.send(change);
        Ok(())
    }
}

/// Subscribes to the notice channel on the current primary's connection, retrying until
/// Redis is reachable and at once when the primary changes, then checks that connection
/// every second, so that a dropped one is re-established (and resubscribed) even without
/// traffic, and a demoted primary is noticed.
pub(super) async fn keep_subscribed(primary: Arc<Primary>, channel: String) {
    let mut subscribed = None;
    loop {
        if let Ok(link) = primary.link() {
            if subscribed != Some(link.generation) {
                let mut conn = link.reads.clone();
                match conn.subscribe(&channel).await {
                    Ok(()) => subscribed = Some(link.generation),
                    Err(e) => {
                        tracing::debug!(error = %e, "redis not reachable yet");
                        primary.failed();
                    }
                }
            } else {
                primary.check(&link).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PING_INTERVAL) => {}
            _ = primary.installed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_requests_and_route_changes_are_told_apart() {
        assert_eq!(
            parse_notice(&wake_notice("a.test")),
            Change::Wake {
                source: "a.test".into()
            }
        );
        assert!(matches!(
            parse_notice(&notice("a.test")),
            Change::Route { source, written_at: Some(_) } if source == "a.test"
        ));
        assert_eq!(parse_notice("a.test"), Change::route("a.test"));
    }
}
