//! The proxy's in-memory route table: a hot host costs no store round trip.
//!
//! Entries are kept per source key (exact host, `*.suffix`, `$wildcard`), positive and
//! negative alike, and expire after the cache TTL so routes written into Redis by other
//! tools (no notice) still show up. Change notices expire an entry at once. An expired
//! entry is kept as the last known good answer for when the store is unreachable. A
//! key missing from the table is fetched once however many lookups want it at a time.
//! The table knows which wildcard routes exist (re-read every TTL), so an unknown host
//! costs the store the same however many labels it has.

use super::routing::RuleTable;
use crate::certificate::Slot;
use crate::route::{self, Route, Upstream, WILDCARD};
use crate::store::{CertificatePem, Change, Progress, RouteStore, StoreError, Subscription};
use crate::sync::{lock, read, write};
use crate::telemetry::{self, RouteMetrics};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// After a failed store call, how long lookups use what they have instead of retrying.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Negative entries (names with no route) kept before they are swept. They have a
/// bound of their own: a flood of random host names bounds memory without pushing out
/// a route that was served, the last known good answer in an outage.
const MAX_NEGATIVE: usize = 100_000;

/// A route ready to serve: the stored route plus its target parsed once.
#[derive(Debug)]
pub struct Resolved {
    /// The route as stored.
    pub route: Route,
    /// The parsed target, or `None` when the stored target cannot be forwarded to.
    pub upstream: Option<Upstream>,
    /// The route's rules, compiled; `None` for a route without rules (boxed: most
    /// routes have none, and every cached route carries the field).
    pub(crate) rules: Option<Box<RuleTable>>,
    metrics: RouteMetrics,
    certificate: Slot,
}

impl Resolved {
    /// The route's request metrics, registered on first use.
    pub fn metrics(&self) -> &RouteMetrics {
        &self.metrics
    }

    /// The route's TLS certificate, loaded by the first handshake that needs it.
    pub(crate) fn certificate(&self) -> &Slot {
        &self.certificate
    }
}

struct Entry {
    route: Option<Arc<Resolved>>,
    fresh_until: Instant,
}

/// The entries, and what the store has that tells which keys a host may have.
#[derive(Default)]
struct Table {
    /// By cache key; `Box<str>`, not `String`: a word less in each of 100,000s of slots.
    entries: HashMap<Box<str>, Entry>,
    /// How many of `entries` are negative.
    negative: usize,
    /// The cache keys (`.suffix`) of the store's wildcard routes, once read: a host is
    /// looked up under these alone, not under each of its suffixes.
    wildcards: Option<HashSet<String>>,
}

impl Table {
    fn insert(&mut self, key: &str, entry: Entry) {
        let negative = entry.route.is_none();
        if let Some(old) = self.entries.insert(key.into(), entry)
            && old.route.is_none()
        {
            self.negative -= 1;
        }
        self.negative += negative as usize;
    }

    /// Drops the negative entries once there are too many; routes stay.
    fn sweep_negative(&mut self) {
        if self.negative >= MAX_NEGATIVE {
            self.entries.retain(|_, e| e.route.is_some());
            self.negative = 0;
        }
    }

    /// The keys that may answer for `host`, most specific first: the host, the
    /// wildcards that exist among its suffixes (`every_suffix`, or until the wildcards
    /// are known: all of them), then the catch-all. A `*.suffix` source is kept under
    /// `.suffix`, a slice of the host itself, so a cache hit allocates nothing.
    fn candidates<'h>(&self, host: &'h str, every_suffix: bool) -> impl Iterator<Item = &'h str> {
        let wildcards = self.wildcards.as_ref().filter(|_| !every_suffix);
        std::iter::once(host)
            .chain(
                host.match_indices('.')
                    .map(|(i, _)| &host[i..])
                    .filter(move |suffix| wildcards.is_none_or(|w| w.contains(*suffix))),
            )
            .chain(std::iter::once(WILDCARD))
    }
}

/// Whether a fetch loads the certificates of the routes it finds: a TLS handshake's does
/// (in the same store round trip), a request's does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Certificates {
    Load,
    Leave,
}

/// The outcome of one store fetch, for the lookups waiting on it: `None` while it runs,
/// then whether the store answered.
type Outcome = watch::Receiver<Option<bool>>;

/// Route lookups through an in-memory table kept current by change notices.
pub struct RouteCache {
    store: Arc<dyn RouteStore>,
    ttl: Duration,
    table: RwLock<Table>,
    /// Asks for the wildcards to be read again before their TTL (after a resync).
    reindex: Arc<Notify>,
    /// Keys being fetched, with the outcome their fetch will announce.
    fetching: Mutex<HashMap<String, InFlight>>,
    /// Bumped by every notice applied; a fetch that raced a notice (sent or applied)
    /// stores its answer as stale.
    epoch: AtomicU64,
    /// Whether notices were sent that this cache has not applied yet.
    notices: Progress,
    /// Milliseconds since `start` before which the store is not asked again.
    retry_at: AtomicU64,
    start: Instant,
    /// Bumped after every route notice is applied: what requests held for a route's
    /// endpoints wait on.
    changed: watch::Sender<u64>,
}

impl RouteCache {
    /// A cache over `store` whose entries are trusted for `ttl` unless `notices` (the
    /// store's, see [`RouteStore::subscribe`]) say otherwise; applies them on a task of
    /// its own for as long as it lives.
    pub fn new(store: Arc<dyn RouteStore>, notices: Subscription, ttl: Duration) -> Arc<Self> {
        let cache = Arc::new(RouteCache {
            store,
            ttl,
            table: RwLock::default(),
            reindex: Arc::default(),
            fetching: Mutex::default(),
            epoch: AtomicU64::new(0),
            notices: notices.progress(),
            retry_at: AtomicU64::new(0),
            start: Instant::now(),
            changed: watch::channel(0).0,
        });
        tokio::spawn(follow(Arc::downgrade(&cache), notices));
        tokio::spawn(index_wildcards(
            Arc::downgrade(&cache),
            cache.reindex.clone(),
        ));
        cache
    }

    /// Expires what a change makes stale.
    pub(crate) fn apply(&self, change: &Change) {
        if let Change::Wake { .. } = change {
            return; // a request to the controller; no route changed
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let now = Instant::now();
        let mut table = self.write();
        match change {
            Change::Route { source, written_at } => {
                let key = cache_key(source);
                if let Some(entry) = table.entries.get_mut(key) {
                    entry.fresh_until = now;
                }
                // A wildcard written now is known at once; one deleted is forgotten
                // at the next reading, and costs a key fetched until then.
                if let Some(wildcards) = &mut table.wildcards
                    && key.starts_with('.')
                {
                    wildcards.insert(key.to_owned());
                }
                let delay = written_at.map(|at| at.elapsed().unwrap_or_default());
                telemetry::invalidation(delay);
            }
            Change::Resync => {
                table.entries.values_mut().for_each(|e| e.fresh_until = now);
                self.reindex.notify_one();
                telemetry::invalidation(None);
            }
            Change::Wake { .. } => {}
        }
        drop(table);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        self.retry_at.store(0, Ordering::Relaxed);
    }

    /// Tells of every route notice applied from now on (to resolve again after).
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The route for a normalised host: exact name, then the longest `*.suffix`, then
    /// `$wildcard`. Fails only when the store is unreachable and nothing is known.
    pub async fn resolve(&self, host: &str) -> Result<Option<Arc<Resolved>>, StoreError> {
        // Notices not applied yet may be of a wildcard this lookup must see.
        let behind = self.notices.behind();
        let stale = match self.stale_keys(host, true, behind) {
            Ok(hit) => {
                telemetry::cache_lookup(true);
                return Ok(hit);
            }
            Err(stale) => stale,
        };
        telemetry::cache_lookup(false);
        let fetched = self.fetch(&stale, Certificates::Leave).await;
        // After a failed fetch, stale entries are the last known good answer; only a
        // host with nothing known at all gets the outage as its answer.
        let table = self.read();
        let mut unknown = false;
        for key in table.candidates(host, behind) {
            match table.entries.get(key) {
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

    /// Every route that may answer for `host` but the catch-all, most specific first,
    /// each made fresh (or, with the store unreachable, as last known): what a TLS
    /// handshake chooses its certificate from. Routes fetched here come with their
    /// certificates loaded, so a host not seen before costs one store round trip.
    pub(crate) async fn routes_for<'a>(
        &'a self,
        host: &'a str,
    ) -> impl Iterator<Item = Arc<Resolved>> + 'a {
        let behind = self.notices.behind();
        if let Err(stale) = self.stale_keys(host, false, behind) {
            // A failure leaves what is known to answer.
            let _ = self.fetch(&stale, Certificates::Load).await;
        }
        let table = self.read();
        let routes: Vec<_> = table
            .candidates(host, behind)
            .filter(|key| *key != WILDCARD)
            .filter_map(|key| table.entries.get(key)?.route.clone())
            .collect();
        routes.into_iter()
    }

    /// The stored certificates of `sources`, unless the store is known to be down.
    pub(crate) async fn certificates(
        &self,
        sources: &[&str],
    ) -> Result<Vec<Option<CertificatePem>>, StoreError> {
        if !self.may_ask_store() {
            return Err(StoreError::Unavailable);
        }
        let fetched = self.store.certificates(sources).await;
        self.record(fetched.as_ref().map(|_| ()));
        fetched
    }

    /// `Ok` with the answer when every key `host` needs is fresh (with `first`, up to the
    /// first route), else the keys to fetch. Nothing is fresh while notices are waiting
    /// to be applied (`behind`): a writer reads its own write.
    fn stale_keys<'h>(
        &self,
        host: &'h str,
        first: bool,
        behind: bool,
    ) -> Result<Option<Arc<Resolved>>, Vec<&'h str>> {
        let now = Instant::now();
        let table = self.read();
        let mut stale = Vec::new();
        for key in table.candidates(host, behind) {
            match table.entries.get(key) {
                Some(e) if !behind && e.fresh_until > now => {
                    if let Some(route) = &e.route
                        && first
                    {
                        if stale.is_empty() {
                            return Ok(Some(route.clone()));
                        }
                        break;
                    }
                }
                _ => stale.push(key),
            }
        }
        if stale.is_empty() {
            return Ok(None);
        }
        Err(stale)
    }

    /// Fetches `keys`, but those another lookup is fetching already: their answer is
    /// waited for instead (with or without the certificates, as that lookup fetched).
    /// `Err` if the store did not answer for any of them.
    async fn fetch(&self, keys: &[&str], certificates: Certificates) -> Result<(), StoreError> {
        let mut result = Ok(());
        let mut keys = keys.to_vec();
        // A key is fetched again only when the lookup fetching it went away before the
        // store answered (its client left); a few rounds of that and it is an outage.
        for _ in 0..3 {
            let abandoned = self.fetch_once(&keys, certificates, &mut result).await;
            if abandoned.is_empty() {
                return result;
            }
            keys = abandoned;
        }
        Err(StoreError::Unavailable)
    }

    /// One round of [`fetch`](Self::fetch): the keys whose fetch was abandoned.
    async fn fetch_once<'k>(
        &self,
        keys: &[&'k str],
        certificates: Certificates,
        result: &mut Result<(), StoreError>,
    ) -> Vec<&'k str> {
        let sent = self.notices.sent();
        let mut mine = Vec::with_capacity(keys.len());
        let mut theirs = Vec::new();
        let mut outcome = None;
        {
            let mut fetching = lock(&self.fetching);
            for key in keys {
                match fetching.get(*key) {
                    // A fetch that began before a notice was sent may predate a write
                    // this lookup must see: such a fetch is not joined.
                    Some(other) if other.sent == sent => theirs.push((*key, other.outcome.clone())),
                    _ => {
                        let (_, waiters) = outcome.get_or_insert_with(|| watch::channel(None));
                        let outcome = waiters.clone();
                        fetching.insert((*key).to_owned(), InFlight { sent, outcome });
                        mine.push(*key);
                    }
                }
            }
        }
        if let Some((outcome, waiters)) = outcome {
            // Takes the keys out however this ends (a client that went away drops it);
            // the waiters then see the outcome, or a fetch that never finished.
            let _done = Fetching {
                cache: self,
                keys: &mine,
                outcome: &waiters,
            };
            let fetched = if self.may_ask_store() {
                let fetched = self.refresh(&mine, certificates).await;
                self.record(fetched.as_ref().map(|_| ()));
                fetched
            } else {
                // Turned away by the gate: this lookup never reached the store, so it
                // says nothing about the store and leaves the gate as it is.
                Err(StoreError::Unavailable)
            };
            outcome.send_replace(Some(fetched.is_ok()));
            if let Err(e) = fetched {
                *result = Err(e);
            }
        }
        let mut abandoned = Vec::new();
        for (key, mut other) in theirs {
            match other.wait_for(Option::is_some).await.as_deref() {
                Ok(Some(true)) => {}
                Ok(_) => *result = Err(StoreError::Unavailable),
                Err(_) => abandoned.push(key),
            }
        }
        abandoned
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
    fn record(&self, fetched: Result<(), &StoreError>) {
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

    async fn refresh(&self, keys: &[&str], certificates: Certificates) -> Result<(), StoreError> {
        let (epoch, sent) = (self.epoch.load(Ordering::SeqCst), self.notices.sent());
        let sources: Vec<String> = keys.iter().map(|k| source_of(k)).collect();
        let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
        let routes = match certificates {
            Certificates::Load => self.store.fetch_with_certificates(&sources).await?,
            Certificates::Leave => (self.store.fetch(&sources).await?.into_iter())
                .map(|route| route.map(|route| (route, None)))
                .collect(),
        };
        let now = Instant::now();
        let raced = self.epoch.load(Ordering::SeqCst) != epoch || self.notices.sent() != sent;
        let fresh_until = if !raced { now + self.ttl } else { now };
        // Rules are compiled (regular expressions and all) and certificates parsed before
        // the table is locked. The catch-all's certificate is never served.
        let routes: Vec<_> = routes
            .into_iter()
            .map(|route| {
                route.map(|(route, stored)| {
                    let rules = (!route.rules.is_empty())
                        .then(|| Box::new(RuleTable::new(&route.source, &route.rules)));
                    let certificate = (certificates == Certificates::Load
                        && route.source != WILDCARD)
                        .then(|| Slot::prepare(&route.settings, stored.as_ref()));
                    (route, rules, certificate)
                })
            })
            .collect();
        let mut table = self.write();
        table.sweep_negative();
        for (key, route) in keys.iter().zip(routes) {
            // A raced answer may be older than a fresh one a later fetch wrote.
            if raced && table.entries.get(*key).is_some_and(|e| e.fresh_until > now) {
                continue;
            }
            let previous = table.entries.get(*key).and_then(|e| e.route.as_ref());
            let route = route.map(|(route, rules, prepared)| {
                let certificate = Slot::after(previous.map(|p| p.certificate()));
                if let Some(prepared) = prepared {
                    certificate.put(&route.source, prepared);
                }
                Arc::new(Resolved {
                    upstream: Upstream::parse(&route.target)
                        .ok()
                        .filter(|_| !route::is_unrouted(&route.target)),
                    rules,
                    route,
                    metrics: RouteMetrics::new(),
                    certificate,
                })
            });
            table.insert(key, Entry { route, fresh_until });
        }
        telemetry::cache_entries(table.entries.len());
        Ok(())
    }

    /// Takes the store's wildcard sources as read; a notice applied while they were
    /// read may be of a wildcard the reading missed, so then they only add.
    fn set_wildcards(&self, sources: Vec<String>, epoch: u64) {
        let keys = sources.iter().map(|s| cache_key(s).to_owned());
        let mut table = self.write();
        match &mut table.wildcards {
            Some(known) if self.epoch.load(Ordering::SeqCst) != epoch => known.extend(keys),
            wildcards => *wildcards = Some(keys.collect()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        read(&self.table)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        write(&self.table)
    }
}

/// A store fetch under way, for lookups that want the same key meanwhile.
struct InFlight {
    /// How many notices had been sent when it began.
    sent: u64,
    outcome: Outcome,
}

/// The keys of one fetch, taken out of [`RouteCache::fetching`] when it ends (unless a
/// later fetch took them over).
struct Fetching<'a> {
    cache: &'a RouteCache,
    keys: &'a [&'a str],
    outcome: &'a Outcome,
}

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        let mut fetching = lock(&self.cache.fetching);
        for key in self.keys {
            if fetching
                .get(*key)
                .is_some_and(|f| f.outcome.same_channel(self.outcome))
            {
                fetching.remove(*key);
            }
        }
    }
}

/// Applies `notices` to the cache until either is gone.
async fn follow(cache: std::sync::Weak<RouteCache>, mut notices: Subscription) {
    while let Some(change) = notices.next().await {
        let Some(cache) = cache.upgrade() else { return };
        cache.apply(&change);
    }
}

/// Reads the store's wildcard sources every TTL (sooner after a resync) for as long as
/// the cache lives; a failed reading keeps what was known.
async fn index_wildcards(cache: std::sync::Weak<RouteCache>, reindex: Arc<Notify>) {
    loop {
        let Some(cache) = cache.upgrade() else { return };
        let epoch = cache.epoch.load(Ordering::SeqCst);
        match cache.store.wildcards().await {
            Ok(sources) => cache.set_wildcards(sources, epoch),
            Err(e) => tracing::debug!(error = %e, "could not read the wildcard routes"),
        }
        // A zero TTL (no caching) must not make this a busy loop.
        let every = cache.ttl.max(Duration::from_millis(100));
        drop(cache);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = reindex.notified() => {}
        }
    }
}

/// The cache key of a stored source (`*.a.com` → `.a.com`).
fn cache_key(source: &str) -> &str {
    source
        .strip_prefix('*')
        .filter(|s| s.starts_with('.'))
        .unwrap_or(source)
}

/// The stored source of a cache key (`.a.com` → `*.a.com`).
fn source_of(key: &str) -> String {
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
    use crate::store::{Lock, MemoryStore, Writer};

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

    /// Every cached route carries one (#17): with its `Arc` counts it fits mimalloc's
    /// 256-byte size class; the next one up is 320 bytes.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_cached_route_stays_small() {
        assert!(
            size_of::<Resolved>() + 16 <= 256,
            "{}",
            size_of::<Resolved>()
        );
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
        let cache = RouteCache::new(store.clone(), store.subscribe(), Duration::from_secs(60));
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
        // Notices from a store nobody writes: only the ones applied by hand arrive.
        let silent = MemoryStore::default().subscribe();
        let cache = RouteCache::new(store.clone(), silent, Duration::from_secs(3600));
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

    /// A store that counts fetches (and the sources asked for), holds each until it is
    /// let go, and fails them while it is down.
    struct Held {
        inner: MemoryStore,
        fetches: AtomicU64,
        sources: AtomicU64,
        /// Calls for stored certificates.
        certificates: AtomicU64,
        open: watch::Sender<bool>,
        down: std::sync::atomic::AtomicBool,
    }

    impl Held {
        fn new(open: bool) -> Arc<Held> {
            Arc::new(Held {
                inner: MemoryStore::default(),
                fetches: AtomicU64::new(0),
                sources: AtomicU64::new(0),
                certificates: AtomicU64::new(0),
                open: watch::channel(open).0,
                down: Default::default(),
            })
        }
    }

    #[async_trait::async_trait]
    impl RouteStore for Held {
        async fn fetch(&self, sources: &[&str]) -> Result<Vec<Option<Route>>, StoreError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            self.sources
                .fetch_add(sources.len() as u64, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable);
            }
            // Read, then held: the answer is the one of the moment the fetch began.
            let routes = self.inner.fetch(sources).await;
            let _ = self.open.subscribe().wait_for(|open| *open).await;
            routes
        }
        async fn list(&self) -> Result<Vec<Route>, StoreError> {
            self.inner.list().await
        }
        async fn write(&self, route: &Route, by: Writer<'_>) -> Result<(), StoreError> {
            self.inner.write(route, by).await
        }
        async fn remove(&self, source: &str, by: Writer<'_>) -> Result<bool, StoreError> {
            self.inner.remove(source, by).await
        }
        async fn owners(&self) -> Result<Vec<(String, String)>, StoreError> {
            self.inner.owners().await
        }
        async fn certificates(
            &self,
            sources: &[&str],
        ) -> Result<Vec<Option<CertificatePem>>, StoreError> {
            self.certificates.fetch_add(1, Ordering::SeqCst);
            self.inner.certificates(sources).await
        }
        async fn set_certificate(
            &self,
            source: &str,
            pem: Option<&CertificatePem>,
            owner: &str,
        ) -> Result<(), StoreError> {
            self.inner.set_certificate(source, pem, owner).await
        }
        async fn try_lock(
            &self,
            lock: Lock,
            source: &str,
            holder: &str,
            ttl: Duration,
        ) -> Result<bool, StoreError> {
            self.inner.try_lock(lock, source, holder, ttl).await
        }
        async fn unlock(&self, lock: Lock, source: &str, holder: &str) -> Result<(), StoreError> {
            self.inner.unlock(lock, source, holder).await
        }
        async fn set_served(&self, source: &str, at: u64) -> Result<(), StoreError> {
            self.inner.set_served(source, at).await
        }
        async fn served(&self, source: &str) -> Result<Option<u64>, StoreError> {
            self.inner.served(source).await
        }
        async fn clear_served(&self, source: &str) -> Result<(), StoreError> {
            self.inner.clear_served(source).await
        }
        async fn request_wake(&self, source: &str, ttl: Duration) -> Result<(), StoreError> {
            self.inner.request_wake(source, ttl).await
        }
        async fn wake_requested(&self, source: &str) -> Result<bool, StoreError> {
            self.inner.wake_requested(source).await
        }
        async fn clear_wake_request(&self, source: &str) -> Result<(), StoreError> {
            self.inner.clear_wake_request(source).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn subscribe(&self) -> Subscription {
            self.inner.subscribe()
        }
    }

    /// A cache over a [`Held`] store with one route, `busy.test`.
    async fn held_busy_host() -> (Arc<Held>, Arc<RouteCache>) {
        let store = Held::new(false);
        store.put(&route("busy.test", "one")).await.unwrap();
        let cache = RouteCache::new(store.clone(), store.subscribe(), Duration::from_secs(60));
        (store, cache)
    }

    #[tokio::test]
    async fn concurrent_misses_on_one_host_make_one_store_call() {
        let (store, cache) = held_busy_host().await;
        let lookups =
            futures_util::future::join_all((0..50).map(|_| target_of(&cache, "busy.test")));
        let release = async {
            // Every lookup has been polled (the first one is in the store) before this runs.
            while store.fetches.load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
            store.open.send_replace(true);
        };
        let (targets, ()) = tokio::join!(lookups, release);
        assert!(targets.iter().all(|t| t.as_deref() == Some("http://one")));
        assert_eq!(store.fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn lookups_waiting_on_a_fetch_whose_client_left_fetch_again() {
        use futures_util::FutureExt;
        let (store, cache) = held_busy_host().await;
        let mut first = Box::pin(target_of(&cache, "busy.test"));
        assert!((&mut first).now_or_never().is_none(), "in the store");
        let mut others = Box::pin(futures_util::future::join_all(
            (0..10).map(|_| target_of(&cache, "busy.test")),
        ));
        assert!(
            (&mut others).now_or_never().is_none(),
            "waiting on the first"
        );
        // The first lookup's client goes away mid-fetch: one of the others fetches again.
        drop(first);
        assert!((&mut others).now_or_never().is_none(), "fetching again");
        store.open.send_replace(true);
        let targets = others.await;
        assert!(targets.iter().all(|t| t.as_deref() == Some("http://one")));
        assert_eq!(store.fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_lookup_after_a_write_does_not_wait_on_a_fetch_begun_before_it() {
        use futures_util::FutureExt;
        let (store, cache) = held_busy_host().await;
        let mut before = Box::pin(target_of(&cache, "busy.test"));
        assert!((&mut before).now_or_never().is_none(), "in the store");
        store.put(&route("busy.test", "two")).await.unwrap();
        let mut after = Box::pin(target_of(&cache, "busy.test"));
        assert!((&mut after).now_or_never().is_none(), "in the store too");
        store.open.send_replace(true);
        let (_, after) = tokio::join!(before, after);
        assert_eq!(after.as_deref(), Some("http://two"));
        assert_eq!(store.fetches.load(Ordering::SeqCst), 2);
        assert_eq!(
            target_of(&cache, "busy.test").await.as_deref(),
            Some("http://two"),
            "the older answer did not overwrite the newer"
        );
    }

    #[tokio::test]
    async fn an_unknown_host_is_looked_up_under_the_wildcards_that_exist_only() {
        let store = Held::new(true);
        store.put(&route("*.example.com", "wild")).await.unwrap();
        let cache = RouteCache::new(store.clone(), store.subscribe(), Duration::from_secs(60));
        while cache.read().wildcards.is_none() {
            tokio::task::yield_now().await;
        }
        let labels: Vec<String> = (0..60).map(|i| format!("l{i}")).collect();
        let host = format!("{}.example.com", labels.join("."));
        assert_eq!(
            target_of(&cache, &host).await.as_deref(),
            Some("http://wild")
        );
        // The host, `*.example.com` and `$wildcard`: not one key per label.
        assert_eq!(store.sources.load(Ordering::SeqCst), 3);

        // A wildcard written now is looked up at once, before the next reading.
        store
            .put(&route("*.l59.example.com", "deeper"))
            .await
            .unwrap();
        assert_eq!(
            target_of(&cache, &host).await.as_deref(),
            Some("http://deeper")
        );
    }

    #[tokio::test]
    async fn a_flood_of_unknown_hosts_keeps_the_last_known_routes() {
        let store = Held::new(true);
        store.put(&route("known.test", "one")).await.unwrap();
        let silent = MemoryStore::default().subscribe();
        let cache = RouteCache::new(store.clone(), silent, Duration::from_secs(60));
        assert_eq!(
            target_of(&cache, "known.test").await.as_deref(),
            Some("http://one")
        );
        // Stale now, so only the last known answer once the store is gone.
        cache.apply(&Change::route("known.test"));
        for i in 0..MAX_NEGATIVE + 1_000 {
            assert_eq!(target_of(&cache, &format!("h{i}.flood")).await, None);
        }
        assert!(
            cache.read().negative <= MAX_NEGATIVE,
            "negative entries bounded"
        );
        store.down.store(true, Ordering::SeqCst);
        let known = cache.resolve("known.test").await.unwrap();
        assert_eq!(
            known.map(|r| r.route.target.clone()).as_deref(),
            Some("http://one")
        );
    }

    #[tokio::test]
    async fn a_handshake_loads_the_certificates_of_the_routes_it_fetches_and_a_request_does_not() {
        use crate::certificate::Served;
        let store = Held::new(true);
        let by = Writer::Resource {
            owner: "shop/web",
            take_unowned: false,
        };
        for host in ["web.test", "tls.test"] {
            store.write(&route(host, "one"), by).await.unwrap();
            let made = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
            let pem = CertificatePem {
                certificate: made.cert.pem(),
                key: made.signing_key.serialize_pem(),
            };
            store
                .set_certificate(host, Some(&pem), "shop/web")
                .await
                .unwrap();
        }
        let cache = RouteCache::new(store.clone(), store.subscribe(), Duration::from_secs(60));
        let served = |r: &Resolved| r.certificate().served(&r.route.source);

        let web = cache.resolve("web.test").await.unwrap().unwrap();
        assert!(matches!(served(&web), Served::Unloaded));
        assert_eq!(store.certificates.load(Ordering::SeqCst), 0);

        let tls: Vec<_> = cache.routes_for("tls.test").await.collect();
        assert_eq!(tls.len(), 1);
        assert!(matches!(served(&tls[0]), Served::Config(_)));
        assert_eq!(store.certificates.load(Ordering::SeqCst), 1);
        // And a request for it finds the route cached, certificate and all.
        let again = cache.resolve("tls.test").await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&again, &tls[0]));
    }
}
