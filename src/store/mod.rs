//! Where routes live. The proxy reads through a [`RouteStore`]; writers (REST API,
//! controller) write through it, so every write also raises a change notice.

mod memory;
mod redis;

pub use self::memory::MemoryStore;
pub use self::redis::{RedisConfig, RedisStore};

use crate::route::Route;
use async_trait::async_trait;
use std::sync::{Arc, RwLock};

/// A change a store reports to the proxies reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The route for this source was written or deleted.
    Route(String),
    /// Notices may have been missed (e.g. after a reconnect): anything may have changed.
    Resync,
}

/// Why a store call failed. A failure is never reported as "no route".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Redis did not answer within `CERYX_REDIS_TIMEOUT`.
    #[error("redis did not answer in time")]
    Timeout,
    /// A recent call failed; the store is not asked again for a moment.
    #[error("route store unavailable")]
    Unavailable,
}

/// A route store: the route table shared by every proxy and writer.
#[async_trait]
pub trait RouteStore: Send + Sync + 'static {
    /// Fetches several sources in one round trip; the answer is in the same order.
    async fn fetch(&self, sources: &[&str]) -> Result<Vec<Option<Route>>, StoreError>;

    /// Every route in the store.
    async fn list(&self) -> Result<Vec<Route>, StoreError>;

    /// Writes a route (target and settings together, atomically) and announces it.
    async fn put(&self, route: &Route) -> Result<(), StoreError>;

    /// Deletes a route and announces it; `true` if it existed.
    async fn delete(&self, source: &str) -> Result<bool, StoreError>;

    /// Checks the store answers (for readiness probes).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Calls `watcher` with every change notice, from this process's writers (before
    /// `put` or `delete` returns) and from other processes (as soon as Redis delivers it).
    fn watch(&self, watcher: Watcher);

    /// One route, if it exists.
    async fn get(&self, source: &str) -> Result<Option<Route>, StoreError> {
        Ok(self.fetch(&[source]).await?.pop().flatten())
    }
}

/// A change-notice callback; it runs on the notifying task, so it must not block.
pub type Watcher = Arc<dyn Fn(&Change) + Send + Sync>;

/// The watchers of one store.
#[derive(Clone, Default)]
pub struct Watchers(Arc<RwLock<Vec<Watcher>>>);

impl Watchers {
    /// Adds a watcher.
    pub fn add(&self, watcher: Watcher) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(watcher);
    }

    /// Tells every watcher about `change`.
    pub fn notify(&self, change: &Change) {
        for watcher in self.0.read().unwrap_or_else(|e| e.into_inner()).iter() {
            watcher(change);
        }
    }
}
