//! The proxy's in-memory route table: a hot host costs no store round trip.
//!
//! Entries are kept per source key (exact host, `*.suffix`, `$wildcard`), positive and
//! negative alike, and expire after the cache TTL so routes written into Redis by other
//! tools (no notice) still show up. Change notices expire an entry at once. An expired
//! entry is kept as the last known good answer for when the store is unreachable.

use crate::route::{Route, Upstream, WILDCARD};
use crate::store::{Change, RouteStore, StoreError};
use crate::telemetry::{self, RouteMetrics};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// After a failed store call, how long lookups use what they have instead of retrying.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Entries kept before stale and negative ones are swept (bounds memory under floods of
/// random host names).
const MAX_ENTRIES: usize = 100_000;

/// A route ready to serve: the stored route plus its target parsed once.
#[derive(Debug)]
pub struct Resolved {
    /// The route as stored.
    pub route: Route,
    /// The parsed target, or `None` when the stored target cannot be forwarded to.
    pub upstream: Option<Upstream>,
    metrics: OnceLock<RouteMetrics>,
}

impl Resolved {
    /// The route's request metrics, registered on first use.
    pub fn metrics(&self) -> &RouteMetrics {
        self.metrics.get_or_init(RouteMetrics::new)
    }
}

struct Entry {
    route: Option<Arc<Resolved>>,
    fresh_until: Instant,
}

/// Route lookups through an in-memory table kept current by change notices.
pub struct RouteCache {
    store: Arc<dyn RouteStore>,
    ttl: Duration,
    entries: RwLock<HashMap<String, Entry>>,
    /// Bumped by every notice; a fetch that raced a notice stores its answer as stale.
    epoch: AtomicU64,
    /// Milliseconds since `start` before which the store is not asked again.
    retry_at: AtomicU64,
    start: Instant,
}

impl RouteCache {
    /// A cache over `store` whose entries are trusted for `ttl` without a notice.
    pub fn new(store: Arc<dyn RouteStore>, ttl: Duration) -> Arc<RouteCache> {
        Arc::new(RouteCache {
            store,
            ttl,
            entries: RwLock::default(),
            epoch: AtomicU64::new(0),
            retry_at: AtomicU64::new(0),
            start: Instant::now(),
        })
    }

    /// Applies the store's change notices to this cache for as long as it lives.
    pub fn watch_store(self: &Arc<Self>) {
        let cache = Arc::downgrade(self);
        self.store.watch(Arc::new(move |change| {
            if let Some(cache) = cache.upgrade() {
                cache.apply(change);
            }
        }));
    }

    /// Expires what a change makes stale.
    pub fn apply(&self, change: &Change) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let now = Instant::now();
        let mut entries = self.write();
        match change {
            Change::Route { source, written_at } => {
                if let Some(entry) = entries.get_mut(cache_key(source)) {
                    entry.fresh_until = now;
                }
                let delay = written_at.map(|at| at.elapsed().unwrap_or_default());
                telemetry::invalidation(delay);
            }
            Change::Resync => {
                entries.values_mut().for_each(|e| e.fresh_until = now);
                telemetry::invalidation(None);
            }
        }
        self.retry_at.store(0, Ordering::Relaxed);
    }

    /// The route for a normalised host: exact name, then the longest `*.suffix`, then
    /// `$wildcard`. Fails only when the store is unreachable and nothing is known.
    pub async fn resolve(&self, host: &str) -> Result<Option<Arc<Resolved>>, StoreError> {
        let now = Instant::now();
        let to_fetch: Vec<&str> = {
            let entries = self.read();
            let mut stale = Vec::new();
            for key in candidates(host) {
                match entries.get(key) {
                    Some(e) if e.fresh_until > now => {
                        if let Some(route) = &e.route {
                            if stale.is_empty() {
                                telemetry::cache_lookup(true);
                                return Ok(Some(route.clone()));
                            }
                            break;
                        }
                    }
                    _ => stale.push(key),
                }
            }
            if stale.is_empty() {
                telemetry::cache_lookup(true);
                return Ok(None);
            }
            stale
        };
        telemetry::cache_lookup(false);
        let fetched = if self.may_ask_store() {
            let fetched = self.refresh(&to_fetch).await;
            self.record(&fetched);
            fetched
        } else {
            // Turned away by the gate: this lookup never reached the store, so it says
            // nothing about the store and leaves the gate as it is.
            Err(StoreError::Unavailable)
        };
        // After a failed fetch, stale entries are the last known good answer; only a
        // host with nothing known at all gets the outage as its answer.
        let entries = self.read();
        let mut unknown = false;
        for key in candidates(host) {
            match entries.get(key) {
                Some(Entry {
                    route: Some(route), ..
                }) => return Ok(Some(route.clone())),
                Some(_) => {}
                None => unknown = true,
            }
        }
        match fetched {
            Err(e) if unknown => Err(e),
            _ => Ok(None),
        }
    }

    /// Whether this lookup may call the store. The gate is open unless a store call
    /// failed; then one lookup per [`RETRY_AFTER`] is let through as a probe and the
    /// others use what the cache has. Like nginx's `max_fails`/`fail_timeout` on an
    /// upstream server: only a failed call closes the gate, and a lookup turned away
    /// never extends it, so it reopens however many lookups keep coming.
    fn may_ask_store(&self) -> bool {
        let retry_at = self.retry_at.load(Ordering::Relaxed);
        if retry_at == 0 {
            return true;
        }
        let now = self.now_ms();
        // Claim the probe: the lookups racing this one wait for the next window. Should
        // the probe never finish (its client went away), the gate opens again then.
        now >= retry_at
            && self
                .retry_at
                .compare_exchange(
                    retry_at,
                    now + RETRY_AFTER.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Opens the gate after a store call that answered, closes it after one that failed.
    fn record(&self, fetched: &Result<(), StoreError>) {
        match fetched {
            Ok(()) => {
                if self.retry_at.load(Ordering::Relaxed) != 0
                    && self.retry_at.swap(0, Ordering::Relaxed) != 0
                {
                    tracing::info!("route store reachable again");
                }
            }
            Err(e) => {
                let retry_at = self.now_ms() + RETRY_AFTER.as_millis() as u64;
                if self.retry_at.swap(retry_at, Ordering::Relaxed) == 0 {
                    tracing::warn!(error = %e, "route store unreachable; serving last known routes");
                }
            }
        }
    }

    async fn refresh(&self, keys: &[&str]) -> Result<(), StoreError> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let sources: Vec<String> = keys.iter().map(|k| source_of(k)).collect();
        let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
        let routes = self.store.fetch(&sources).await?;
        let now = Instant::now();
        let fresh_until = if self.epoch.load(Ordering::SeqCst) == epoch {
            now + self.ttl
        } else {
            now
        };
        let mut entries = self.write();
        if entries.len() + keys.len() > MAX_ENTRIES {
            entries.retain(|_, e| e.route.is_some() && e.fresh_until > now);
            if entries.len() + keys.len() > MAX_ENTRIES {
                entries.clear();
            }
        }
        for (key, route) in keys.iter().zip(routes) {
            let route = route.map(|route| {
                let upstream = Upstream::parse(&route.target).ok();
                Arc::new(Resolved {
                    route,
                    upstream,
                    metrics: OnceLock::new(),
                })
            });
            entries.insert((*key).to_owned(), Entry { route, fresh_until });
        }
        telemetry::cache_entries(entries.len());
        Ok(())
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The keys that may answer for a host, most specific first. A `*.suffix` source is
/// kept under `.suffix`, a slice of the host itself, so a cache hit allocates nothing.
pub(super) fn candidates(host: &str) -> impl Iterator<Item = &str> {
    std::iter::once(host)
        .chain(host.match_indices('.').map(|(i, _)| &host[i..]))
        .chain(std::iter::once(WILDCARD))
}

/// The cache key of a stored source (`*.a.com` → `.a.com`).
fn cache_key(source: &str) -> &str {
    source
        .strip_prefix('*')
        .filter(|s| s.starts_with('.'))
        .unwrap_or(source)
}

/// The stored source of a cache key (`.a.com` → `*.a.com`).
pub(super) fn source_of(key: &str) -> String {
    if key.starts_with('.') {
        format!("*{key}")
    } else {
        key.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Settings;
    use crate::store::MemoryStore;

    fn route(source: &str, target: &str) -> Route {
        Route::new(source, target, Settings::default()).unwrap()
    }

    async fn target_of(cache: &RouteCache, host: &str) -> Option<String> {
        cache
            .resolve(host)
            .await
            .unwrap()
            .map(|r| r.route.target.clone())
    }

    #[tokio::test]
    async fn exact_then_longest_wildcard_then_catch_all() {
        let store = Arc::new(MemoryStore::default());
        for (s, t) in [
            ("a.example.com", "exact"),
            ("*.example.com", "short"),
            ("*.b.example.com", "long"),
            ("$wildcard", "any"),
        ] {
            store.put(&route(s, t)).await.unwrap();
        }
        let cache = RouteCache::new(store, Duration::from_secs(60));
        assert_eq!(
            target_of(&cache, "a.example.com").await.as_deref(),
            Some("http://exact")
        );
        assert_eq!(
            target_of(&cache, "x.b.example.com").await.as_deref(),
            Some("http://long")
        );
        assert_eq!(
            target_of(&cache, "b.example.com").await.as_deref(),
            Some("http://short")
        );
        assert_eq!(
            target_of(&cache, "example.com").await.as_deref(),
            Some("http://any")
        );
    }

    #[tokio::test]
    async fn notices_expire_entries_at_once() {
        let store = Arc::new(MemoryStore::default());
        let cache = RouteCache::new(store.clone(), Duration::from_secs(3600));
        assert_eq!(target_of(&cache, "n.test").await, None);
        store.put(&route("n.test", "one")).await.unwrap();
        // Without the notice, the negative answer would be trusted for an hour.
        cache.apply(&Change::route("n.test"));
        assert_eq!(
            target_of(&cache, "n.test").await.as_deref(),
            Some("http://one")
        );
        store.put(&route("*.test", "wild")).await.unwrap();
        store.delete("n.test").await.unwrap();
        cache.apply(&Change::route("n.test"));
        cache.apply(&Change::route("*.test"));
        assert_eq!(
            target_of(&cache, "n.test").await.as_deref(),
            Some("http://wild")
        );
    }
}
