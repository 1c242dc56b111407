//! The endpoints of one backend, and the choice among them for each request.
//!
//! **Choice: power of two choices over a peak EWMA of latency**, as linkerd2-proxy
//! balances (`linkerd/proxy/balance`, after Finagle). Two endpoints are drawn at random and
//! the cheaper one wins, cost being the latency estimate times (in-flight requests + 1).
//! Random pairs keep a single hot endpoint from attracting every request the way "least
//! loaded" does when many proxies share stale views, and need no sorted structure or
//! lock; the in-flight factor reacts within one request, the latency within one response.
//! The estimate is *peak*-sensitive: a slower response replaces it at once, a faster one
//! only pulls it down over the decay time, 10 s. It decays while an endpoint is idle, so
//! a once-slow endpoint is tried again; down to 1 ms, not to zero as in linkerd, so that a
//! long-idle endpoint does not draw every request until its first answer. An endpoint
//! never measured costs 30 ms, so a new one gets traffic (30 ms and 10 s are linkerd's).
//! The choice is made per request, so neither keep-alive nor HTTP/2 connections pin
//! traffic on one endpoint.
//!
//! **Ejection: Envoy's passive outlier detection.** `consecutive_failures` connect failures
//! or 5xx in a row eject an endpoint for `base_ejection` times the number of times it was
//! ejected (capped at 10×; a base interval of successes after returning forgives one), and
//! no more than `max_ejection_percent` of a set is ejected, at least one when the set has
//! two or more, never all. Ejected and actively-unhealthy endpoints are skipped; when no
//! other endpoint is left the choice falls back to them (Envoy's panic mode) rather than
//! failing the request. A refused connection also counts as a 1 s response for the
//! estimate: it is answered in microseconds and would otherwise make a dead endpoint look
//! like the fastest one.
//!
//! Per-endpoint state lives in a process-wide registry keyed by `scheme://authority`, so a
//! route rebuilt from the store (every few seconds under churn) keeps what it learnt.

use crate::route::Upstream;
use std::cell::Cell;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// The cost of an endpoint never measured (linkerd's `EWMA_DEFAULT_RTT`).
const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// How fast the estimate forgets (linkerd's `EWMA_DECAY`).
const DECAY: Duration = Duration::from_secs(10);
/// The least a measured estimate counts for: one decayed toward zero after a long idle
/// time (or a long ejection) would otherwise cost nothing however many requests are in
/// flight, and draw every request until its first response.
const MIN_RTT: Duration = Duration::from_millis(1);
/// What a refused connection counts as in the latency estimate.
const CONNECT_PENALTY: Duration = Duration::from_secs(1);
/// The longest ejection, in multiples of the base interval (Envoy caps at 300 s = 10 × 30 s).
const MAX_EJECTION_FACTOR: u32 = 10;
/// The bits of `rtt` before the first measurement (a NaN no measurement produces).
const UNMEASURED: u64 = u64::MAX;

/// The zero of the nanosecond timestamps kept in atomics; shared by every set so that
/// state moved between sets keeps its meaning.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Endpoint state by `scheme://authority`, consulted only when a set is built.
static REGISTRY: LazyLock<Mutex<HashMap<String, Weak<EndpointState>>>> =
    LazyLock::new(Mutex::default);

/// When endpoints are ejected for failing, as Envoy's outlier detection configures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutlierConfig {
    /// Connect failures or 5xx in a row that eject an endpoint; 0 turns ejection off.
    pub consecutive_failures: u32,
    /// The first ejection's length; each further one is longer by this much.
    pub base_ejection: Duration,
    /// The largest share of a set ejected at once, in percent (at least one endpoint of
    /// two or more, never all).
    pub max_ejection_percent: u8,
}

impl Default for OutlierConfig {
    /// Envoy's defaults: 5 failures, 30 s, 50 %.
    fn default() -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 50,
        }
    }
}

/// How one request to an endpoint ended, as far as balancing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A response below 500, `latency` after the request was sent.
    Success {
        /// Time to the response head.
        latency: Duration,
    },
    /// A 5xx response.
    Failure5xx {
        /// Time to the response head.
        latency: Duration,
    },
    /// The connection could not be made (refused, unreachable, connect timeout).
    ConnectFailure,
}

impl Outcome {
    /// The outcome of a response with `status`, `latency` after the request was sent.
    pub(crate) fn response(status: http::StatusCode, latency: Duration) -> Outcome {
        if status.is_server_error() {
            Outcome::Failure5xx { latency }
        } else {
            Outcome::Success { latency }
        }
    }
}

/// The endpoints of one backend; cheap to share, immutable but for per-endpoint atomics.
#[derive(Debug)]
pub(crate) struct EndpointSet {
    endpoints: Box<[Endpoint]>,
    outlier: OutlierConfig,
}

/// One endpoint: where to send, and what the process knows of it.
#[derive(Debug)]
struct Endpoint {
    upstream: Upstream,
    state: Arc<EndpointState>,
}

/// What is learnt about one endpoint, shared by every set naming it. Times are
/// nanoseconds since [`EPOCH`]; relaxed atomics, since each field is a hint on its own and
/// a lost update among concurrent ones only blurs an estimate.
#[derive(Debug)]
pub(crate) struct EndpointState {
    in_flight: AtomicU32,
    /// Latency estimate in nanoseconds, as `f64` bits, or [`UNMEASURED`].
    rtt: AtomicU64,
    measured_at: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Ejections not yet forgiven: the multiplier of the next one.
    ejections: AtomicU32,
    /// Ejected while now is before this; after the ejection, when it last changed.
    ejected_until: AtomicU64,
    /// Set by an active health check; a mark that is not renewed expires, so a check
    /// that stops (its route changed) leaves no endpoint out for good.
    unhealthy_until: AtomicU64,
}

/// A chosen endpoint, counted in flight until finished or dropped.
#[derive(Debug)]
pub(crate) struct Picked {
    set: Arc<EndpointSet>,
    index: usize,
}

/// Nanoseconds since [`EPOCH`] (0 before it, saturated far after).
fn nanos(at: Instant) -> u64 {
    duration_nanos(at.saturating_duration_since(*EPOCH))
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl EndpointSet {
    /// A set over `endpoints` (indices follow their order), sharing the state of any
    /// endpoint another live set already has.
    pub(crate) fn new(endpoints: Vec<Upstream>, outlier: OutlierConfig) -> Arc<EndpointSet> {
        LazyLock::force(&EPOCH);
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        let mut swept = false;
        let endpoints = endpoints
            .into_iter()
            .map(|upstream| {
                let mut key = format!("{}://{}", upstream.scheme, upstream.authority);
                key.make_ascii_lowercase();
                let state = match registry.get(&key).and_then(Weak::upgrade) {
                    Some(state) => state,
                    None => {
                        if !swept {
                            registry.retain(|_, state| state.strong_count() > 0);
                            swept = true;
                        }
                        let state = Arc::new(EndpointState::new());
                        registry.insert(key, Arc::downgrade(&state));
                        state
                    }
                };
                Endpoint { upstream, state }
            })
            .collect();
        Arc::new(EndpointSet { endpoints, outlier })
    }

    /// How many endpoints the set has.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether the set has no endpoint (then [`EndpointSet::pick`] gives none).
    pub(crate) fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Whether the endpoint at `index` is in the choice now (neither ejected nor
    /// unhealthy).
    #[cfg(test)]
    pub(crate) fn is_available(&self, index: usize) -> bool {
        self.is_available_at(index, Instant::now())
    }

    /// [`EndpointSet::is_available`] at a given time.
    #[cfg(test)]
    pub(crate) fn is_available_at(&self, index: usize, now: Instant) -> bool {
        self.endpoints
            .get(index)
            .is_some_and(|e| e.state.is_available(nanos(now)))
    }

    /// The endpoints with their shared state, for the health checker.
    pub(super) fn states(&self) -> impl Iterator<Item = (&Upstream, &Arc<EndpointState>)> {
        self.endpoints.iter().map(|e| (&e.upstream, &e.state))
    }

    /// Chooses an endpoint for one request, not one in `exclude` (those this request
    /// already tried). `None` only when the set is empty or every endpoint is excluded:
    /// ejected or unhealthy endpoints are chosen when nothing else is left.
    pub(crate) fn pick(self: &Arc<Self>, exclude: &[usize]) -> Option<Picked> {
        self.pick_at(Instant::now(), exclude)
    }

    /// [`EndpointSet::pick`] at a given time (the caller's clock reading, or a test's).
    pub(crate) fn pick_at(self: &Arc<Self>, now: Instant, exclude: &[usize]) -> Option<Picked> {
        let now = nanos(now);
        let index = self
            .choose(now, exclude, true)
            .or_else(|| self.choose(now, exclude, false))?;
        self.endpoints[index].state.in_flight.fetch_add(1, Relaxed);
        Some(Picked {
            set: self.clone(),
            index,
        })
    }

    /// Power of two choices among the endpoints not excluded (and, if `strict`,
    /// available). A random pair first; only when it holds an ineligible endpoint are the
    /// eligible ones counted, to draw the pair among them without allocating.
    fn choose(&self, now: u64, exclude: &[usize], strict: bool) -> Option<usize> {
        let eligible = |i: usize| {
            !exclude.contains(&i) && (!strict || self.endpoints[i].state.is_available(now))
        };
        let n = self.endpoints.len();
        if n <= 1 {
            return (n == 1 && eligible(0)).then_some(0);
        }
        let (a, b) = random_pair(n);
        if eligible(a) && eligible(b) {
            return Some(self.cheaper(a, b, now));
        }
        let count = (0..n).filter(|&i| eligible(i)).count();
        if count <= 1 {
            return (0..n).find(|&i| eligible(i));
        }
        let (ra, rb) = random_pair(count);
        let (mut a, mut b) = (None, None);
        for (rank, i) in (0..n).filter(|&i| eligible(i)).enumerate() {
            if rank == ra {
                a = Some(i);
            }
            if rank == rb {
                b = Some(i);
            }
        }
        match (a, b) {
            (Some(a), Some(b)) => Some(self.cheaper(a, b, now)),
            // Another request ejected one between the two passes.
            (one, other) => one.or(other),
        }
    }

    fn cheaper(&self, a: usize, b: usize, now: u64) -> usize {
        if self.endpoints[b].state.cost(now) < self.endpoints[a].state.cost(now) {
            b
        } else {
            a
        }
    }

    /// The most endpoints of this set ejected at once.
    fn max_ejected(&self) -> usize {
        let n = self.endpoints.len();
        if n <= 1 {
            return 0;
        }
        let percent = usize::from(self.outlier.max_ejection_percent.min(100));
        (n * percent / 100).clamp(1, n - 1)
    }

    /// Counts a failure of endpoint `index`, ejecting it when it has failed enough times
    /// in a row and the set can spare it.
    fn failed(&self, index: usize, now: u64) {
        let threshold = self.outlier.consecutive_failures;
        let Some(endpoint) = self.endpoints.get(index) else {
            return;
        };
        let state = &endpoint.state;
        // Requests sent before an ejection that fail after it say nothing new.
        if threshold == 0 || now < state.ejected_until.load(Relaxed) {
            return;
        }
        let failures = state.consecutive_failures.fetch_add(1, Relaxed) + 1;
        if failures < threshold {
            return;
        }
        let ejected = self
            .endpoints
            .iter()
            .filter(|e| now < e.state.ejected_until.load(Relaxed))
            .count();
        if ejected >= self.max_ejected() {
            return;
        }
        let times = state
            .ejections
            .fetch_update(Relaxed, Relaxed, |n| {
                Some(n.saturating_add(1).min(MAX_EJECTION_FACTOR))
            })
            .map_or(MAX_EJECTION_FACTOR, |n| {
                n.saturating_add(1).min(MAX_EJECTION_FACTOR)
            });
        let interval = self.outlier.base_ejection.saturating_mul(times);
        state
            .ejected_until
            .store(now.saturating_add(duration_nanos(interval)), Relaxed);
        state.consecutive_failures.store(0, Relaxed);
        tracing::warn!(
            endpoint = %endpoint.upstream.authority,
            failures,
            ?interval,
            "endpoint ejected after consecutive failures"
        );
    }
}

impl EndpointState {
    fn new() -> EndpointState {
        EndpointState {
            in_flight: AtomicU32::new(0),
            rtt: AtomicU64::new(UNMEASURED),
            measured_at: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            unhealthy_until: AtomicU64::new(0),
        }
    }

    fn is_available(&self, now: u64) -> bool {
        now >= self.ejected_until.load(Relaxed) && now >= self.unhealthy_until.load(Relaxed)
    }

    /// Whether no unexpired health-check mark is on the endpoint at `now`.
    pub(super) fn is_healthy(&self, now: Instant) -> bool {
        nanos(now) >= self.unhealthy_until.load(Relaxed)
    }

    /// Takes the endpoint out of the choice until `until` (renewed by each failed check).
    pub(super) fn mark_unhealthy(&self, until: Instant) {
        self.unhealthy_until.store(nanos(until), Relaxed);
    }

    /// Puts the endpoint back in the choice.
    pub(super) fn mark_healthy(&self) {
        self.unhealthy_until.store(0, Relaxed);
    }

    /// The estimate decayed to `now` times the requests it would queue behind.
    fn cost(&self, now: u64) -> f64 {
        let bits = self.rtt.load(Relaxed);
        let in_flight = self.in_flight.load(Relaxed);
        let rtt = if bits == UNMEASURED {
            // A new endpoint (a pod just ready) is tried at once, one request at a time
            // until it answers: under light load it would otherwise never be measured
            // against peers that have been, and under heavy load it is not flooded.
            if in_flight == 0 {
                return 0.0;
            }
            DEFAULT_RTT.as_nanos() as f64
        } else {
            let idle = now.saturating_sub(self.measured_at.load(Relaxed));
            (f64::from_bits(bits) * decay(idle)).max(MIN_RTT.as_nanos() as f64)
        };
        rtt * (f64::from(in_flight) + 1.0)
    }

    /// Peak EWMA: a sample above the estimate replaces it, one below is blended in by
    /// the time since the last sample.
    fn observe(&self, latency: Duration, now: u64) {
        let sample = latency.as_nanos() as f64;
        let elapsed = now.saturating_sub(self.measured_at.swap(now, Relaxed));
        let w = decay(elapsed);
        // fetch_update, so that a concurrent peak is not overwritten by a stale blend.
        let _ = self.rtt.fetch_update(Relaxed, Relaxed, |bits| {
            let estimate = f64::from_bits(bits);
            Some(if bits == UNMEASURED || sample > estimate {
                sample.to_bits()
            } else {
                (estimate * w + sample * (1.0 - w)).to_bits()
            })
        });
    }

    /// A success: the failure streak ends, and an endpoint back in for a whole base
    /// interval since its last ejection (or last forgiveness) has one ejection forgiven.
    fn succeeded(&self, now: u64, outlier: &OutlierConfig) {
        self.consecutive_failures.store(0, Relaxed);
        let ejections = self.ejections.load(Relaxed);
        if ejections == 0 {
            return;
        }
        let since = self.ejected_until.load(Relaxed);
        let base = duration_nanos(outlier.base_ejection);
        if now >= since.saturating_add(base)
            && self
                .ejected_until
                .compare_exchange(since, now, Relaxed, Relaxed)
                .is_ok()
        {
            let _ = self
                .ejections
                .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
        }
    }
}

/// The weight the old estimate keeps after `elapsed` nanoseconds.
fn decay(elapsed: u64) -> f64 {
    (-(elapsed as f64) / DECAY.as_nanos() as f64).exp()
}

impl Picked {
    /// The endpoint's index in its set (what [`EndpointSet::pick`]'s `exclude` takes).
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Where to send the request.
    pub(crate) fn upstream(&self) -> &Upstream {
        &self.set.endpoints[self.index].upstream
    }

    /// Records how the request ended; it stops counting as in flight.
    pub(crate) fn finish(self, outcome: Outcome) {
        self.finish_at(outcome, Instant::now());
    }

    /// [`Picked::finish`] at a given time.
    pub(crate) fn finish_at(self, outcome: Outcome, now: Instant) {
        let now = nanos(now);
        let state = &self.set.endpoints[self.index].state;
        match outcome {
            Outcome::Success { latency } => {
                state.observe(latency, now);
                state.succeeded(now, &self.set.outlier);
            }
            Outcome::Failure5xx { latency } => {
                state.observe(latency, now);
                self.set.failed(self.index, now);
            }
            Outcome::ConnectFailure => {
                state.observe(CONNECT_PENALTY, now);
                self.set.failed(self.index, now);
            }
        }
    }
}

impl Drop for Picked {
    /// A request abandoned without an outcome (client gone) only leaves the count.
    fn drop(&mut self) {
        self.set.endpoints[self.index]
            .state
            .in_flight
            .fetch_sub(1, Relaxed);
    }
}

thread_local! {
    /// xorshift64* state, seeded per thread from std's random hasher keys.
    static RNG: Cell<u64> = Cell::new(
        std::collections::hash_map::RandomState::new().hash_one(std::thread::current().id()) | 1,
    );
}

/// A random number below `n` (`n` > 0), by multiply-shift (bias below 2^-32 for any set
/// size a backend has).
fn random_below(n: usize) -> usize {
    let x = RNG.with(|rng| {
        let mut x = rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    });
    ((u128::from(x) * n as u128) >> 64) as usize
}

/// Two distinct random numbers below `n` (`n` ≥ 2).
fn random_pair(n: usize) -> (usize, usize) {
    let a = random_below(n);
    let b = random_below(n - 1);
    (a, if b >= a { b + 1 } else { b })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Endpoints with names unique to the test: the registry is process-wide and tests
    /// run in parallel.
    fn set(test: &str, n: usize, outlier: OutlierConfig) -> Arc<EndpointSet> {
        let endpoints = (0..n)
            .map(|i| Upstream::parse(&format!("http://{test}-{i}:80")).unwrap())
            .collect();
        EndpointSet::new(endpoints, outlier)
    }

    fn fast_ejection() -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 5,
            base_ejection: Duration::from_millis(100),
            max_ejection_percent: 50,
        }
    }

    /// How many of `picks` picks (each finished at once as a success of `latency`) went
    /// to each endpoint.
    fn spread(set: &Arc<EndpointSet>, now: Instant, picks: usize) -> Vec<usize> {
        let mut counts = vec![0; set.len()];
        for _ in 0..picks {
            let picked = set.pick_at(now, &[]).unwrap();
            counts[picked.index()] += 1;
        }
        counts
    }

    fn fail(set: &Arc<EndpointSet>, index: usize, times: usize, now: Instant) {
        for _ in 0..times {
            let picked = pick_index(set, index, now);
            picked.finish_at(Outcome::ConnectFailure, now);
        }
    }

    /// Picks until `index` comes up (its failures are recorded through a real pick).
    fn pick_index(set: &Arc<EndpointSet>, index: usize, now: Instant) -> Picked {
        let others: Vec<usize> = (0..set.len()).filter(|&i| i != index).collect();
        let picked = set.pick_at(now, &others).unwrap();
        assert_eq!(picked.index(), index);
        picked
    }

    fn succeed(set: &Arc<EndpointSet>, index: usize, latency: Duration, now: Instant) {
        pick_index(set, index, now).finish_at(Outcome::Success { latency }, now);
    }

    #[test]
    fn a_ten_times_slower_endpoint_gets_little_traffic() {
        let set = set("slow", 3, OutlierConfig::default());
        let now = Instant::now();
        succeed(&set, 0, Duration::from_millis(10), now);
        succeed(&set, 1, Duration::from_millis(10), now);
        succeed(&set, 2, Duration::from_millis(100), now);
        let mut counts = [0; 3];
        let mut held = Vec::new();
        for i in 0..3000 {
            let picked = set.pick_at(now, &[]).unwrap();
            counts[picked.index()] += 1;
            // Some requests overlap, so that in-flight counts play their part too.
            held.push(picked);
            if i % 4 == 3 {
                held.clear();
            }
        }
        assert!(counts[2] < 300, "slow endpoint got {counts:?}");
        assert!(counts[0] > 1000 && counts[1] > 1000, "{counts:?}");
    }

    #[test]
    fn requests_in_flight_spread_load_over_equal_endpoints() {
        let set = set("inflight", 3, OutlierConfig::default());
        let now = Instant::now();
        let held: Vec<Picked> = (0..300).map(|_| set.pick_at(now, &[]).unwrap()).collect();
        let mut counts = [0; 3];
        for picked in &held {
            counts[picked.index()] += 1;
        }
        assert!(
            counts.iter().all(|&c| (80..=120).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn a_busy_fast_endpoint_yields_to_an_idle_slower_one() {
        let set = set("busy", 2, OutlierConfig::default());
        let now = Instant::now();
        succeed(&set, 0, Duration::from_millis(10), now);
        succeed(&set, 1, Duration::from_millis(30), now);
        // Four requests on the fast one cost 10 ms × 5 > 30 ms × 1.
        let _held: Vec<Picked> = (0..4).map(|_| pick_index(&set, 0, now)).collect();
        assert_eq!(set.pick_at(now, &[]).unwrap().index(), 1);
    }

    #[test]
    fn a_new_endpoint_is_tried() {
        let set = set("new", 2, OutlierConfig::default());
        let now = Instant::now();
        succeed(&set, 0, Duration::from_millis(200), now);
        assert_eq!(spread(&set, now, 100)[1], 100);
    }

    #[test]
    fn a_slow_endpoint_is_tried_again_after_idling() {
        let set = set("idle", 2, OutlierConfig::default());
        let now = Instant::now();
        succeed(&set, 0, Duration::from_millis(10), now);
        succeed(&set, 1, Duration::from_millis(100), now);
        assert_eq!(spread(&set, now, 100)[1], 0);
        // A minute later the estimate has decayed below the fast one's latest.
        let later = now + Duration::from_secs(60);
        succeed(&set, 0, Duration::from_millis(10), later);
        assert!(spread(&set, later, 100)[1] > 0);
    }

    #[test]
    fn one_endpoint_is_always_picked_and_exclusion_can_leave_none() {
        let set = set("single", 1, fast_ejection());
        let now = Instant::now();
        assert_eq!(set.pick_at(now, &[]).unwrap().index(), 0);
        assert!(set.pick_at(now, &[0]).is_none());
        // Its failures never take it out: there is nothing to send to instead.
        fail(&set, 0, 20, now);
        assert!(set.is_available(0));
        let empty = EndpointSet::new(Vec::new(), fast_ejection());
        assert!(empty.pick_at(now, &[]).is_none());
    }

    #[test]
    fn exclude_steers_a_retry_to_another_endpoint() {
        let set = set("exclude", 3, OutlierConfig::default());
        let now = Instant::now();
        for _ in 0..100 {
            let first = set.pick_at(now, &[]).unwrap();
            let second = set.pick_at(now, &[first.index()]).unwrap();
            assert_ne!(first.index(), second.index());
        }
    }

    #[test]
    fn consecutive_failures_eject_for_a_growing_interval() {
        let set = set("eject", 3, fast_ejection());
        let t0 = Instant::now();
        // The others are slower than a refused connection's penalty, so endpoint 0 would
        // be the one picked but for its ejection.
        succeed(&set, 1, Duration::from_secs(2), t0);
        succeed(&set, 2, Duration::from_secs(2), t0);
        fail(&set, 0, 4, t0);
        assert!(spread(&set, t0, 300)[0] > 0, "four failures are not enough");
        fail(&set, 0, 1, t0);
        assert_eq!(spread(&set, t0, 300)[0], 0);
        assert_eq!(spread(&set, t0 + Duration::from_millis(99), 300)[0], 0);

        // Back after 100 ms...
        let t1 = t0 + Duration::from_secs(1);
        assert!(spread(&set, t1, 300)[0] > 0);
        // ...and out for twice as long the second time.
        fail(&set, 0, 5, t1);
        assert_eq!(spread(&set, t1 + Duration::from_millis(199), 300)[0], 0);
        assert!(spread(&set, t1 + Duration::from_millis(200), 300)[0] > 0);
    }

    #[test]
    fn ejections_are_forgiven_after_a_base_interval_of_success() {
        let set = set("forgive", 3, fast_ejection());
        let t0 = Instant::now();
        fail(&set, 0, 5, t0);
        let t1 = t0 + Duration::from_millis(100);
        assert!(set.is_available_at(0, t1));
        // Serving well for another base interval forgives the ejection: the next is
        // 100 ms again, not 200 ms.
        let t2 = t1 + Duration::from_millis(100);
        succeed(&set, 0, Duration::from_millis(1), t2);
        fail(&set, 0, 5, t2);
        assert!(!set.is_available_at(0, t2 + Duration::from_millis(99)));
        assert!(set.is_available_at(0, t2 + Duration::from_millis(100)));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let set = set("reset", 3, fast_ejection());
        let now = Instant::now();
        for _ in 0..3 {
            fail(&set, 0, 4, now);
            succeed(&set, 0, Duration::from_millis(1), now);
        }
        assert!(set.is_available_at(0, now));
    }

    #[test]
    fn responses_5xx_eject_too() {
        let set = set("5xx", 2, fast_ejection());
        let now = Instant::now();
        for _ in 0..5 {
            let latency = Duration::from_millis(1);
            pick_index(&set, 1, now).finish_at(Outcome::Failure5xx { latency }, now);
        }
        // The fastest endpoint, yet not picked.
        assert_eq!(spread(&set, now, 100)[1], 0);
    }

    #[test]
    fn at_most_half_the_set_is_ejected_and_never_all() {
        let four = set("half", 4, fast_ejection());
        let now = Instant::now();
        for i in 0..4 {
            fail(&four, i, 5, now);
        }
        let out = (0..4).filter(|&i| !four.is_available_at(i, now)).count();
        assert_eq!(out, 2);

        let pair = set("pair", 2, fast_ejection());
        fail(&pair, 0, 5, now);
        fail(&pair, 1, 5, now);
        assert_eq!(
            spread(&pair, now, 100)[1],
            100,
            "the last endpoint stays in"
        );
    }

    #[test]
    fn with_every_endpoint_out_one_is_still_picked() {
        let set = set("allout", 3, fast_ejection());
        let now = Instant::now();
        let until = now + Duration::from_secs(60);
        for (_, state) in set.states() {
            state.mark_unhealthy(until);
        }
        assert!(set.pick_at(now, &[]).is_some());
        // And one healthy endpoint takes everything.
        set.endpoints[2].state.mark_healthy();
        assert_eq!(spread(&set, now, 100)[2], 100);
    }

    #[test]
    fn a_rebuilt_set_keeps_what_was_learnt() {
        let old = set("rebuilt", 3, fast_ejection());
        let now = Instant::now();
        fail(&old, 1, 5, now);
        succeed(&old, 2, Duration::from_millis(500), now);
        let new = set("rebuilt", 3, fast_ejection());
        drop(old);
        assert!(!new.is_available_at(1, now));
        let counts = spread(&new, now, 300);
        assert_eq!(counts, vec![300, 0, 0]);
    }

    #[test]
    fn dead_registry_entries_are_swept() {
        drop(set("swept", 2, OutlierConfig::default()));
        let _other = set("sweeper", 1, OutlierConfig::default());
        let registry = REGISTRY.lock().unwrap();
        assert!(!registry.contains_key("http://swept-0:80"));
    }

    #[test]
    fn a_long_idle_endpoint_does_not_draw_every_request() {
        let set = set("burst", 2, OutlierConfig::default());
        let now = Instant::now();
        succeed(&set, 0, Duration::from_millis(100), now);
        succeed(&set, 1, Duration::from_millis(5), now);
        // An hour later endpoint 0's estimate has decayed to nothing, yet requests
        // waiting on it still make it the dearer one.
        let later = now + Duration::from_secs(3600);
        succeed(&set, 1, Duration::from_millis(5), later);
        let held: Vec<Picked> = (0..60).map(|_| set.pick_at(later, &[]).unwrap()).collect();
        let on_idle = held.iter().filter(|p| p.index() == 0).count();
        assert!((5..=55).contains(&on_idle), "{on_idle} of 60");
    }

    #[test]
    fn in_flight_counts_survive_concurrent_use() {
        let set = set("threads", 4, fast_ejection());
        std::thread::scope(|scope| {
            for t in 0..4 {
                let set = &set;
                scope.spawn(move || {
                    for i in 0..2000u64 {
                        let picked = set.pick(&[]).unwrap();
                        let latency = Duration::from_micros(100 * (t + 1) + i % 7);
                        let outcome = if i % 50 == 0 {
                            Outcome::ConnectFailure
                        } else {
                            Outcome::response(http::StatusCode::OK, latency)
                        };
                        picked.finish(outcome);
                    }
                });
            }
        });
        for (_, state) in set.states() {
            assert_eq!(state.in_flight.load(Relaxed), 0);
        }
    }

    #[test]
    fn server_errors_are_failures() {
        let latency = Duration::from_millis(3);
        assert_eq!(
            Outcome::response(http::StatusCode::BAD_GATEWAY, latency),
            Outcome::Failure5xx { latency }
        );
        assert_eq!(
            Outcome::response(http::StatusCode::NOT_FOUND, latency),
            Outcome::Success { latency }
        );
    }

    #[test]
    fn a_dropped_pick_leaves_the_in_flight_count() {
        let set = set("dropped", 2, OutlierConfig::default());
        let picked = set.pick(&[]).unwrap();
        let index = picked.index();
        assert_eq!(set.endpoints[index].state.in_flight.load(Relaxed), 1);
        drop(picked);
        assert_eq!(set.endpoints[index].state.in_flight.load(Relaxed), 0);
    }
}
