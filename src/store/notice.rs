//! Change notices: what a store tells the proxies and controllers reading it, as a
//! channel each reader subscribes to (one notice per write, in order).

use crate::sync::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::broadcast;

/// Notices a subscriber may fall behind by before it is told to resync instead.
const CAPACITY: usize = 4096;

/// A change a store reports to the proxies reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The route for this source was written or deleted; `written_at` is when, by the
    /// writer's clock, for notices that crossed from another process.
    Route {
        /// The route's source.
        source: String,
        /// When the change was written, if the notice says.
        written_at: Option<SystemTime>,
    },
    /// Notices may have been missed (e.g. after a reconnect): anything may have changed.
    Resync,
    /// A proxy asks the Kubernetes controller to wake this source's scale target (no
    /// route changed).
    Wake {
        /// The route's source.
        source: String,
    },
}

impl Change {
    /// A change of `source` notified within this process.
    pub fn route(source: impl Into<String>) -> Change {
        Change::Route {
            source: source.into(),
            written_at: None,
        }
    }
}

/// The sending side, kept by a store: every notice gets the next sequence number, so a
/// subscriber can tell whether it has applied everything sent so far.
pub(crate) struct Notices {
    sender: Mutex<broadcast::Sender<(u64, Change)>>,
    sent: Arc<AtomicU64>,
}

impl Default for Notices {
    fn default() -> Notices {
        Notices {
            sender: Mutex::new(broadcast::channel(CAPACITY).0),
            sent: Arc::default(),
        }
    }
}

impl Notices {
    /// Sends `change` to every subscriber.
    pub(crate) fn send(&self, change: Change) {
        // Numbered and queued under one lock, so sequence numbers arrive in order.
        let sender = lock(&self.sender);
        let seq = self.sent.fetch_add(1, Ordering::AcqRel) + 1;
        let _ = sender.send((seq, change));
    }

    /// A subscription to every notice sent from now on.
    pub(crate) fn subscribe(&self) -> Subscription {
        let sender = lock(&self.sender);
        let now = self.sent.load(Ordering::Acquire);
        Subscription {
            receiver: sender.subscribe(),
            progress: Progress {
                sent: self.sent.clone(),
                applied: Arc::new(AtomicU64::new(now)),
            },
            received: now,
        }
    }
}

/// One reader's stream of notices.
pub struct Subscription {
    receiver: broadcast::Receiver<(u64, Change)>,
    progress: Progress,
    received: u64,
}

impl Subscription {
    /// The next notice, once the previous one was applied (asking for the next one says
    /// so). `Resync` when this reader fell too far behind; `None` once the store is gone.
    pub async fn next(&mut self) -> Option<Change> {
        self.progress
            .applied
            .store(self.received, Ordering::Release);
        match self.receiver.recv().await {
            Ok((seq, change)) => {
                self.received = seq;
                Some(change)
            }
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Change::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// A handle that tells whether this subscription has applied every notice sent.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }
}

/// How far a [`Subscription`]'s reader is: lets a cache read its own writes even before
/// the task that applies notices has run.
#[derive(Clone)]
pub struct Progress {
    sent: Arc<AtomicU64>,
    applied: Arc<AtomicU64>,
}

impl Progress {
    /// Whether notices were sent that the reader has not applied yet.
    pub fn behind(&self) -> bool {
        self.applied.load(Ordering::Acquire) < self.sent()
    }

    /// How many notices the store has sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_reader_is_behind_until_it_asks_for_the_notice_after_the_last() {
        let notices = Notices::default();
        let mut subscription = notices.subscribe();
        let progress = subscription.progress();
        assert!(!progress.behind());
        notices.send(Change::route("a.test"));
        assert!(progress.behind());
        assert_eq!(subscription.next().await, Some(Change::route("a.test")));
        // Received but maybe not applied yet.
        assert!(progress.behind());
        notices.send(Change::Resync);
        assert_eq!(subscription.next().await, Some(Change::Resync));
        // Asking for the next one (none yet) says the Resync was applied.
        assert_eq!(subscription.next().now_or_never(), None);
        assert!(!progress.behind());
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_is_told_to_resync() {
        let notices = Notices::default();
        let mut subscription = notices.subscribe();
        for i in 0..CAPACITY + 1 {
            notices.send(Change::route(format!("{i}.test")));
        }
        assert_eq!(subscription.next().await, Some(Change::Resync));
    }
}
