//! Metrics of every process, through the `metrics` facade: one recorder keeps them for
//! Prometheus (`GET /metrics`) and, with `CERYX_STATSD_ADDR`, sends the same figures to
//! StatsD; the per-route `ceryx_requests_total` is kept here instead (see [`ROUTES`]).
//! Every name is here (and in the README); no label value comes from client input, so
//! the series stay bounded: requests for unknown hosts count as `route="none"`.

use crate::sync::lock;
use cadence::{BufferedUdpMetricSink, MetricSink, QueuingMetricSink, SinkStats};
use http::{Method, StatusCode};
use metrics::{
    Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::formatting::sanitize_label_value;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use metrics_util::layers::FanoutBuilder;
use std::collections::HashSet;
use std::fmt::Write;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The `route` label of requests no route answered.
pub const NO_ROUTE: &str = "none";

/// Latency buckets (seconds): sub-millisecond proxying up to a minute-long upstream.
const LATENCY: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Propagation buckets (seconds): a notice takes about a millisecond.
const PROPAGATION: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];
/// A route's request counters are dropped this long after its last request
/// (short-lived services come and go).
const IDLE: Duration = Duration::from_secs(15 * 60);
/// How often gauges are sampled and StatsD's buffer is flushed.
const TICK: Duration = Duration::from_secs(1);

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();
static CONNECTIONS: AtomicI64 = AtomicI64::new(0);
static TUNNELS: AtomicI64 = AtomicI64::new(0);
static CACHE_ENTRIES: AtomicI64 = AtomicI64::new(0);
static HELD: AtomicI64 = AtomicI64::new(0);

/// Process-wide counters: atomics on the hot path, added to the registry by [`sync`]
/// (so they never look idle, and StatsD gets increments).
struct Total {
    name: &'static str,
    value: AtomicU64,
    synced: AtomicU64,
}

impl Total {
    const fn new(name: &'static str) -> Total {
        Total {
            name,
            value: AtomicU64::new(0),
            synced: AtomicU64::new(0),
        }
    }

    fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    fn sync(&self) {
        let now = self.value.load(Ordering::Relaxed);
        let before = self.synced.swap(now, Ordering::Relaxed);
        counter!(self.name).increment(now.saturating_sub(before));
    }
}

static CACHE_HITS: Total = Total::new("ceryx_route_cache_hits_total");
static CACHE_MISSES: Total = Total::new("ceryx_route_cache_misses_total");
static INVALIDATIONS: Total = Total::new("ceryx_route_invalidations_total");
static STORE_ERRORS: Total = Total::new("ceryx_store_errors_total");
static RECONNECTS: Total = Total::new("ceryx_store_reconnects_total");
static SWITCHES: Total = Total::new("ceryx_store_primary_switches_total");
static LOG_DROPPED: Total = Total::new("ceryx_access_log_dropped_total");
static BYTES_IN: Total = Total::new("ceryx_request_bytes_total");
static BYTES_OUT: Total = Total::new("ceryx_response_bytes_total");
static TOTALS: [&Total; 9] = [
    &CACHE_HITS,
    &CACHE_MISSES,
    &INVALIDATIONS,
    &STORE_ERRORS,
    &RECONNECTS,
    &SWITCHES,
    &LOG_DROPPED,
    &BYTES_IN,
    &BYTES_OUT,
];

/// Request latency histograms (no labels: their series stay few whatever the routes).
static DURATION: LazyLock<Histogram> =
    LazyLock::new(|| histogram!("ceryx_request_duration_seconds"));
static UPSTREAM: LazyLock<Histogram> =
    LazyLock::new(|| histogram!("ceryx_upstream_duration_seconds"));

/// Why metrics could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The StatsD address or socket failed.
    #[error("StatsD at {0}: {1}")]
    Statsd(String, std::io::Error),
    /// The Prometheus recorder refused its settings.
    #[error("metrics: {0}")]
    Prometheus(#[from] metrics_exporter_prometheus::BuildError),
    /// Another recorder is installed already.
    #[error("a metrics recorder is installed already")]
    Installed,
}

/// Installs the process's recorder (Prometheus, plus StatsD at `statsd` if given) and
/// its upkeep task. Call once, from inside the Tokio runtime.
pub fn install(statsd: Option<&str>) -> Result<(), TelemetryError> {
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("ceryx_route_propagation_seconds".into()),
            PROPAGATION,
        )?
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY)?
        .idle_timeout(MetricKindMask::COUNTER, Some(IDLE))
        .build_recorder();
    let handle = prometheus.handle();
    let mut fanout = FanoutBuilder::default().add_recorder(prometheus);
    let mut sink = None;
    if let Some(addr) = statsd {
        let shared = statsd_sink(addr).map_err(|e| TelemetryError::Statsd(addr.into(), e))?;
        // Two recorders on one sink: the registry's, and the route series' own.
        let recorder = || {
            metrics_exporter_statsd::StatsdBuilder::from("", 0)
                .with_sink(shared.clone())
                .build(None)
                .map_err(|e| TelemetryError::Statsd(addr.into(), std::io::Error::other(e)))
        };
        fanout = fanout.add_recorder(recorder()?);
        let _ = STATSD.set(recorder()?);
        sink = Some(shared);
    }
    metrics::set_global_recorder(fanout.build()).map_err(|_| TelemetryError::Installed)?;
    let _ = PROMETHEUS.set(handle.clone());
    describe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            sync();
            handle.run_upkeep();
            if let Some(sink) = &sink {
                let _ = sink.flush();
            }
        }
    });
    Ok(())
}

/// The Prometheus text exposition of every metric (empty before [`install`]).
pub fn render() -> String {
    let Some(handle) = PROMETHEUS.get() else {
        return String::new();
    };
    sync();
    let mut text = handle.render();
    render_requests(&mut text);
    text
}

/// A UDP sink that buffers lines into datagrams, off the request path, and that the
/// upkeep task can flush (the exporter alone would hold lines until a buffer fills).
fn statsd_sink(addr: &str) -> std::io::Result<SharedSink> {
    let socket = UdpSocket::bind(if addr.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    })?;
    socket.set_nonblocking(true)?;
    let udp = BufferedUdpMetricSink::from(addr, socket).map_err(std::io::Error::other)?;
    Ok(SharedSink(Arc::new(QueuingMetricSink::with_capacity(
        udp, 10_000,
    ))))
}

#[derive(Clone)]
struct SharedSink(Arc<QueuingMetricSink>);

impl MetricSink for SharedSink {
    fn emit(&self, metric: &str) -> std::io::Result<usize> {
        self.0.emit(metric)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
    fn stats(&self) -> SinkStats {
        self.0.stats()
    }
}

impl std::panic::RefUnwindSafe for SharedSink {}

/// Brings the registry up to date with the atomics: gauges are sampled (StatsD cannot
/// add to a gauge), process-wide counters get what they gained.
fn sync() {
    TOTALS.iter().for_each(|total| total.sync());
    gauge!("ceryx_open_connections").set(CONNECTIONS.load(Ordering::Relaxed) as f64);
    gauge!("ceryx_open_tunnels").set(TUNNELS.load(Ordering::Relaxed) as f64);
    gauge!("ceryx_route_cache_entries").set(CACHE_ENTRIES.load(Ordering::Relaxed) as f64);
    gauge!("ceryx_requests_held").set(HELD.load(Ordering::Relaxed) as f64);
}

fn describe() {
    describe_counter!(REQUESTS, REQUESTS_HELP);
    describe_histogram!(
        "ceryx_request_duration_seconds",
        "Time from request to the last byte of the response, by route"
    );
    describe_histogram!(
        "ceryx_upstream_duration_seconds",
        "Time from forwarding to the upstream's response head, by route"
    );
    describe_counter!(
        "ceryx_request_bytes_total",
        "Request body bytes received from clients, by route"
    );
    describe_counter!(
        "ceryx_response_bytes_total",
        "Response body bytes sent to clients, by route"
    );
    describe_gauge!("ceryx_open_connections", "Client connections open");
    describe_gauge!(
        "ceryx_open_tunnels",
        "Upgraded connections (WebSocket and the like) open"
    );
    describe_counter!(
        "ceryx_route_cache_hits_total",
        "Route lookups answered from the cache"
    );
    describe_counter!(
        "ceryx_route_cache_misses_total",
        "Route lookups that asked the store"
    );
    describe_gauge!(
        "ceryx_route_cache_entries",
        "Source keys in the route cache"
    );
    describe_counter!(
        "ceryx_route_invalidations_total",
        "Change notices received (route changes and resyncs)"
    );
    describe_histogram!(
        "ceryx_route_propagation_seconds",
        "Time from a route's write to its notice reaching this process"
    );
    describe_counter!(
        "ceryx_store_errors_total",
        "Route store calls that failed or timed out"
    );
    describe_counter!(
        "ceryx_store_reconnects_total",
        "Times the connection to Redis was lost"
    );
    describe_counter!(
        "ceryx_store_primary_switches_total",
        "Times this process moved to a new Redis primary named by the sentinels (a failover)"
    );
    describe_counter!(
        "ceryx_access_log_dropped_total",
        "Access log lines dropped because stdout could not keep up"
    );
    describe_counter!(
        "ceryx_wakes_total",
        "Wakes of sleeping backends this process waited for, by outcome (woken, timeout)"
    );
    describe_histogram!(
        "ceryx_wake_duration_seconds",
        "Time from a wake's first held request to the first held request answered"
    );
    describe_gauge!(
        "ceryx_requests_held",
        "Requests held now for a backend being woken"
    );
    describe_counter!(
        "ceryx_sleeps_total",
        "Sleep webhooks this process called for idle routes"
    );
    describe_counter!(
        "ceryx_controller_reconciles_total",
        "CeryxRoute reconciliations, by result"
    );
    describe_histogram!(
        "ceryx_controller_reconcile_duration_seconds",
        "Time one reconciliation took"
    );
    sync();
}

/// One answered request.
pub struct Request<'a> {
    /// The matched route's source, or [`NO_ROUTE`].
    pub route: &'a str,
    /// The request method.
    pub method: &'a Method,
    /// The status sent.
    pub status: StatusCode,
    /// Request to last response byte.
    pub duration: Duration,
    /// Forwarding to the upstream's response head, when forwarded.
    pub upstream: Option<Duration>,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
}

/// Counts an answered request no route took.
pub fn request(r: &Request<'_>) {
    if PROMETHEUS.get().is_some() {
        series_of(r.route).count(r.method, r.status);
    }
    measure(r);
}

/// What every answered request adds besides its route's counter.
fn measure(r: &Request<'_>) {
    DURATION.record(r.duration);
    if let Some(upstream) = r.upstream {
        UPSTREAM.record(upstream);
    }
    BYTES_IN.add(r.bytes_in);
    BYTES_OUT.add(r.bytes_out);
}

/// A route's `ceryx_requests_total` series, found on its first request: a request then
/// costs one uncontended lock. Kept by the route cache entry.
#[derive(Debug, Default)]
pub struct RouteMetrics(OnceLock<Arc<RouteSeries>>);

impl RouteMetrics {
    /// Not bound to a route yet: the first request finds its series.
    pub fn new() -> RouteMetrics {
        RouteMetrics(OnceLock::new())
    }

    /// Counts an answered request of this route.
    pub fn record(&self, r: &Request<'_>) {
        if PROMETHEUS.get().is_some() {
            self.0
                .get_or_init(|| series_of(r.route))
                .count(r.method, r.status);
        }
        measure(r);
    }
}

/// `ceryx_requests_total` is kept here rather than in the metrics registry, which
/// spends some 600 bytes on each series (a key with three labels, two maps, five
/// allocations) where this spends about 150 per route: one series set per route
/// name, shared by every cache entry of the route, rendered by [`render`] as the
/// exporter would, idle series dropped as the exporter drops them.
static ROUTES: LazyLock<Mutex<HashSet<ByRoute>>> = LazyLock::new(Mutex::default);

/// Where the route series send StatsD lines, when StatsD is on.
static STATSD: OnceLock<metrics_exporter_statsd::StatsdRecorder> = OnceLock::new();

/// What the series' idle times are counted from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

const REQUESTS: &str = "ceryx_requests_total";
const REQUESTS_HELP: &str = "Requests answered, by route, method and status class";

/// The series of one route name (or of [`NO_ROUTE`]).
#[derive(Debug)]
struct RouteSeries {
    route: Box<str>,
    /// One per (method, status class) seen: few, so a list.
    counts: Mutex<Vec<Count>>,
}

/// One series: `ceryx_requests_total{route, method, status}`.
#[derive(Debug)]
struct Count {
    method: u8,
    status: u8,
    /// Seconds since [`EPOCH`] of the scrape that last saw `value` change.
    since: u32,
    value: u64,
    /// `value` at the last scrape.
    scraped: u64,
    /// The StatsD counter (a no-op without StatsD), sent each increment as before.
    statsd: Counter,
}

impl RouteSeries {
    fn count(&self, method: &Method, status: StatusCode) {
        let (method, status) = (method_index(method), status_index(status));
        let mut counts = lock(&self.counts);
        if let Some(count) = counts
            .iter_mut()
            .find(|c| c.method == method && c.status == status)
        {
            count.value += 1;
            count.statsd.increment(1);
            return;
        }
        let statsd = STATSD.get().map_or_else(Counter::noop, |recorder| {
            let key = metrics::Key::from_parts(
                REQUESTS,
                vec![
                    metrics::Label::new("route", self.route.to_string()),
                    metrics::Label::new("method", METHODS[method as usize]),
                    metrics::Label::new("status", STATUSES[status as usize]),
                ],
            );
            let metadata =
                metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
            metrics::Recorder::register_counter(recorder, &key, &metadata)
        });
        statsd.increment(1);
        // Most routes see one kind of request: no room for more until it comes.
        counts.reserve_exact(1);
        counts.push(Count {
            method,
            status,
            since: 0,
            value: 1,
            scraped: 0,
            statsd,
        });
    }
}

/// The series of `route`, made on its first request.
fn series_of(route: &str) -> Arc<RouteSeries> {
    let mut routes = lock(&ROUTES);
    if let Some(ByRoute(series)) = routes.get(route) {
        return series.clone();
    }
    let series = Arc::new(RouteSeries {
        route: route.into(),
        counts: Mutex::default(),
    });
    routes.insert(ByRoute(series.clone()));
    series
}

/// A route's series in [`ROUTES`], found by route name.
#[derive(Debug)]
struct ByRoute(Arc<RouteSeries>);

impl std::hash::Hash for ByRoute {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.route.hash(state)
    }
}

impl PartialEq for ByRoute {
    fn eq(&self, other: &Self) -> bool {
        self.0.route == other.0.route
    }
}

impl Eq for ByRoute {}

impl std::borrow::Borrow<str> for ByRoute {
    fn borrow(&self) -> &str {
        &self.0.route
    }
}

/// Appends `ceryx_requests_total` to a Prometheus exposition, in the exporter's format.
/// Like the exporter, drops a series a scrape finds unchanged for [`IDLE`] since the
/// scrape that last saw it change; a route whose series are all gone is forgotten once
/// no cache entry holds it. The table is locked only to list and to sweep the routes,
/// not while the lines are written.
fn render_requests(out: &mut String) {
    render_requests_at(out, EPOCH.elapsed().as_secs() as u32);
}

/// [`render_requests`] at `now`, in seconds since [`EPOCH`].
fn render_requests_at(out: &mut String, now: u32) {
    let idle = IDLE.as_secs() as u32;
    let routes: Vec<Arc<RouteSeries>> = lock(&ROUTES).iter().map(|r| r.0.clone()).collect();
    let mut lines = String::new();
    let mut emptied = false;
    for series in &routes {
        let mut counts = lock(&series.counts);
        let before = counts.len();
        counts.retain_mut(|count| {
            if count.value != count.scraped {
                count.scraped = count.value;
                count.since = now;
            } else if now.saturating_sub(count.since) > idle {
                return false;
            }
            let route = sanitize_label_value(&series.route);
            let (method, status) = (
                METHODS[count.method as usize],
                STATUSES[count.status as usize],
            );
            let _ = writeln!(
                lines,
                "{REQUESTS}{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {}",
                count.value
            );
            true
        });
        if counts.len() < before {
            counts.shrink_to_fit();
        }
        emptied |= counts.is_empty();
    }
    if emptied {
        // Held by the table and `routes` alone: no cache entry can count into it.
        lock(&ROUTES).retain(|ByRoute(series)| {
            Arc::strong_count(series) > 2 || !lock(&series.counts).is_empty()
        });
    }
    drop(routes);
    if !lines.is_empty() {
        let _ = writeln!(out, "# HELP {REQUESTS} {REQUESTS_HELP}");
        let _ = writeln!(out, "# TYPE {REQUESTS} counter");
        out.push_str(&lines);
        out.push('\n');
    }
}

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];
const STATUSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn method_index(method: &Method) -> u8 {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

fn status_index(status: StatusCode) -> u8 {
    match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// Holds a gauge up by one while alive.
pub struct Open(&'static AtomicI64);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn open(gauge: &'static AtomicI64) -> Open {
    gauge.fetch_add(1, Ordering::Relaxed);
    Open(gauge)
}

/// A client connection, counted while the guard lives.
pub fn connection() -> Open {
    open(&CONNECTIONS)
}

/// A tunnel (upgraded connection), counted while the guard lives.
pub fn tunnel() -> Open {
    open(&TUNNELS)
}

/// The connection limit of the proxy's listeners (0: none), for dashboards to set
/// `ceryx_open_connections` against.
pub fn connection_limit(max: usize) {
    gauge!("ceryx_connection_limit").set(max as f64);
}

/// A route lookup answered from the cache (`hit`) or by asking the store.
pub fn cache_lookup(hit: bool) {
    if hit { &CACHE_HITS } else { &CACHE_MISSES }.add(1);
}

/// The cache now holds `n` entries.
pub fn cache_entries(n: usize) {
    CACHE_ENTRIES.store(n as i64, Ordering::Relaxed);
}

/// A change notice reached the cache; `delay` since its write, when the notice says.
pub fn invalidation(delay: Option<Duration>) {
    INVALIDATIONS.add(1);
    if let Some(delay) = delay {
        histogram!("ceryx_route_propagation_seconds").record(delay);
    }
}

/// A store call failed.
pub fn store_error() {
    STORE_ERRORS.add(1);
}

/// The store's connection was lost (it reconnects by itself).
pub fn store_reconnect() {
    RECONNECTS.add(1);
}

/// The store moved to a new primary the sentinels named.
pub fn store_primary_switch() {
    SWITCHES.add(1);
}

/// An access log line was dropped.
pub fn access_log_dropped() {
    LOG_DROPPED.add(1);
}

/// A request held for a waking backend, counted while the guard lives.
pub fn held() -> Open {
    open(&HELD)
}

/// A wake this process waited for ended: `woken` or `timeout`.
pub fn wake(outcome: &'static str) {
    counter!("ceryx_wakes_total", "outcome" => outcome).increment(1);
}

/// The first request a wake held was answered, `elapsed` after it was held.
pub fn wake_duration(elapsed: Duration) {
    histogram!("ceryx_wake_duration_seconds").record(elapsed);
}

/// This process called an idle route's sleep webhook.
pub fn slept() {
    counter!("ceryx_sleeps_total").increment(1);
}

/// One reconciliation of a CeryxRoute.
pub fn reconcile(ok: bool, duration: Duration) {
    let result = if ok { "ok" } else { "error" };
    counter!("ceryx_controller_reconciles_total", "result" => result).increment(1);
    histogram!("ceryx_controller_reconcile_duration_seconds").record(duration);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(now: u32) -> String {
        let mut text = String::new();
        render_requests_at(&mut text, now);
        text
    }

    #[test]
    fn route_series_read_as_the_exporter_wrote_them_and_go_once_idle() {
        let series = series_of("render.test");
        series.count(&Method::GET, StatusCode::OK);
        series.count(&Method::GET, StatusCode::NO_CONTENT);
        series.count(&Method::POST, StatusCode::BAD_GATEWAY);
        let text = scrape(0);
        assert!(text.contains(concat!(
            "# HELP ceryx_requests_total Requests answered, by route, method and status class\n",
            "# TYPE ceryx_requests_total counter\n"
        )));
        let get = "ceryx_requests_total{route=\"render.test\",method=\"GET\",status=\"2xx\"} 2\n";
        let post = "ceryx_requests_total{route=\"render.test\",method=\"POST\",status=\"5xx\"} 1\n";
        assert!(text.contains(get) && text.contains(post), "{text}");

        // Unchanged, but not for the whole idle timeout yet: kept.
        let idle = IDLE.as_secs() as u32;
        let text = scrape(idle - 10);
        assert!(text.contains(get) && text.contains(post), "{text}");
        // Unchanged for longer than the idle timeout since the scrape that saw it
        // change: gone. A series that changed is kept however long ago that was.
        series.count(&Method::GET, StatusCode::OK);
        let text = scrape(idle + 10);
        assert!(text.contains(&get.replace("} 2", "} 3")), "{text}");
        assert!(!text.contains(post), "{text}");
        // And the route goes with its last series, once no cache entry holds it.
        drop(series);
        assert!(!scrape(2 * idle + 20).contains("render.test"));
        assert!(!lock(&ROUTES).contains("render.test"));
    }

    #[test]
    fn a_route_series_is_shared_by_name() {
        let a = series_of("shared.test");
        let b = series_of("shared.test");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &series_of("other.test")));
    }
}
