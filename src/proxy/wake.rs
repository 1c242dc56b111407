//! Hold and wake: a route whose backend refuses connections (asleep) is woken through
//! its webhook, by one replica at a time (a lock in the store), while this process holds
//! every request for it on one shared per-route wait, probing the backend until it
//! accepts. A route whose Kubernetes Service has no ready endpoint is woken under the
//! same lock, through its webhook or, for a `scale` target, by a wake request left in
//! the store for the controller; its requests wait for the route to get endpoints (see
//! `Proxy::hold_asleep`). Routes that were served are put back to sleep (their `sleepWebhook`) once
//! idle, by one replica, from a last-served time each replica writes at most every few
//! seconds.

use super::body::{Body, full};
use super::pool::Pool;
use crate::route::{Route, Upstream, Wake, bare_host};
use crate::store::{Lock, RouteStore};
use crate::sync::lock;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// First pause between two probes of a waking backend; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// Longest pause between two probes: what a wake may add to the backend's start.
const MAX_PAUSE: Duration = Duration::from_millis(25);
/// Longest wait for one probe's connection (an address that drops packets).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for a webhook's answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the sleeper looks for idle routes.
const SLEEP_TICK: Duration = Duration::from_millis(100);
/// Longest interval between two last-served writes of one route (shorter for short
/// `idleAfter`s: a quarter of it).
const MAX_SERVED_EVERY: Duration = Duration::from_secs(5);

/// The page a browser gets while the backend starts (strategy `page`); `{{host}}` is
/// replaced by the host name. `CERYX_WAKE_PAGE` replaces it.
pub(crate) const DEFAULT_PAGE: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"2\"><title>Starting {{host}}…</title></head>\n\
<body><h1>Starting {{host}}…</h1>\n<p>The service is waking up; this page reloads by itself \
until it is ready.</p>\n<hr><p>ceryx</p></body></html>\n";

/// Where one wake of a route stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The backend is being woken; requests wait.
    Waking,
    /// The backend accepts connections.
    Awake,
    /// The backend did not accept within the route's timeout.
    Failed,
}

/// One wake of a route, shared by every request it holds.
struct Waking {
    state: watch::Receiver<State>,
    /// When the first request was held.
    started: Instant,
    /// Whether a held request was answered yet (the wake's duration is recorded once).
    answered: AtomicBool,
}

/// A wake that ended with the backend up: tell it when a held request is answered.
pub(crate) struct Woken(Arc<Waking>);

impl Woken {
    /// A held request got its answer: the first one records the wake's duration.
    pub(crate) fn answered(&self) {
        if !self.0.answered.swap(true, Ordering::Relaxed) {
            crate::telemetry::wake_duration(self.0.started.elapsed());
        }
    }
}

/// A route that served requests since this process woke it or saw it awake.
struct Served {
    /// `sleepWebhook`, called once the route is idle; `None` for a route the controller
    /// puts to sleep (only its last-served time is written).
    sleep_webhook: Option<String>,
    idle_after: Duration,
    host: String,
    /// The last request this process served.
    last: Instant,
    /// The last time this process wrote the last-served time to the store.
    written: Instant,
}

/// Wakes sleeping backends and puts idle ones to sleep; one per proxy.
pub(crate) struct Waker {
    store: Arc<dyn RouteStore>,
    client: Pool,
    /// This process's name as a lock holder.
    id: String,
    /// The page for strategy `page`, with `{{host}}` to fill in.
    page: String,
    /// Wakes under way, by route source.
    waking: Mutex<HashMap<String, Arc<Waking>>>,
    /// Routes with a sleep webhook that served, by route source.
    served: Mutex<HashMap<String, Served>>,
    /// Whether the sleeper task runs.
    sleeper: AtomicBool,
    /// Wake requests this process left for the controller and still waits on, by route
    /// source: when the first request was held.
    requested: Mutex<HashMap<String, Instant>>,
}

impl Waker {
    /// A waker calling webhooks with `client`, locking through `store`.
    pub(crate) fn new(
        store: Arc<dyn RouteStore>,
        client: Pool,
        page: Option<String>,
    ) -> Arc<Waker> {
        let id = format!(
            "{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        Arc::new(Waker {
            store,
            client,
            id,
            page: page.unwrap_or_else(|| DEFAULT_PAGE.to_owned()),
            waking: Mutex::default(),
            served: Mutex::default(),
            sleeper: AtomicBool::new(false),
            requested: Mutex::default(),
        })
    }

    /// Holds the caller until the route's backend (`upstream`) accepts connections,
    /// waking it if no wake is under way, or until `deadline`. `None` if it did not
    /// start in time.
    pub(crate) async fn hold(
        self: &Arc<Self>,
        host: &str,
        route: &Route,
        wake: &Wake,
        upstream: &Upstream,
        deadline: Instant,
    ) -> Option<Woken> {
        let _held = crate::telemetry::held();
        let waking = self.start(host, route, wake, upstream);
        let mut state = waking.state.clone();
        let woke = tokio::time::timeout_at(
            deadline.into(),
            state.wait_for(|state| *state != State::Waking),
        )
        .await;
        match woke {
            Ok(Ok(state)) if *state == State::Awake => Some(Woken(waking.clone())),
            _ => None,
        }
    }

    /// Starts waking the route unless a wake is under way here; either way, that wake.
    fn start(
        self: &Arc<Self>,
        host: &str,
        route: &Route,
        wake: &Wake,
        upstream: &Upstream,
    ) -> Arc<Waking> {
        let mut waking = lock(&self.waking);
        if let Some(under_way) = waking.get(&route.source) {
            return under_way.clone();
        }
        let (tx, rx) = watch::channel(State::Waking);
        let under_way = Arc::new(Waking {
            state: rx,
            started: Instant::now(),
            answered: AtomicBool::new(false),
        });
        waking.insert(route.source.clone(), under_way.clone());
        let job = Job {
            host: host.to_owned(),
            source: route.source.clone(),
            wake: wake.clone(),
            upstream: upstream.clone(),
        };
        tokio::spawn(self.clone().wake(job, tx));
        under_way
    }

    /// Starts waking the route, for a request that is answered at once (strategy
    /// `page`).
    pub(crate) fn start_only(
        self: &Arc<Self>,
        host: &str,
        route: &Route,
        wake: &Wake,
        upstream: &Upstream,
    ) {
        self.start(host, route, wake, upstream);
    }

    /// One wake: calls the webhook if this process gets the lock (or the store cannot
    /// say), then probes the backend until it accepts or the timeout passes.
    async fn wake(self: Arc<Self>, job: Job, tx: watch::Sender<State>) {
        let timeout = job.wake.timeout();
        let deadline = Instant::now() + timeout;
        let mut locked = false;
        // A wake that ended a moment ago may have left this one nothing to do.
        // A backend the controller wakes has endpoints by now: it only has to listen.
        let awake = probe(&job.upstream).await
            || job.wake.webhook.is_none() && until_accepts(&job.upstream, deadline).await
            || job.wake.webhook.is_some()
                && {
                    match self
                        .store
                        .try_lock(Lock::Waking, &job.source, &self.id, timeout)
                        .await
                    {
                        Ok(false) => {
                            tracing::debug!(source = %job.source, "another replica wakes it")
                        }
                        taken => {
                            if let Err(error) = taken {
                                tracing::warn!(source = %job.source, %error, "wake lock unavailable: calling the webhook anyway");
                            }
                            locked = true;
                            let body = serde_json::json!({"host": job.host, "route": job.source});
                            let client = self.client.clone();
                            let url = job.wake.webhook.clone().unwrap_or_default();
                            tokio::spawn(async move {
                                match call(&client, &url, body.to_string()).await {
                                    Ok(status) => {
                                        tracing::info!(%url, %status, "wake webhook called")
                                    }
                                    Err(error) => {
                                        tracing::warn!(%url, %error, "wake webhook failed")
                                    }
                                }
                            });
                        }
                    }
                    until_accepts(&job.upstream, deadline).await
                };
        // Forgotten before the waiters hear: a refusal after this starts a new wake.
        lock(&self.waking).remove(&job.source);
        tx.send_replace(if awake { State::Awake } else { State::Failed });
        crate::telemetry::wake(if awake { "woken" } else { "timeout" });
        if awake {
            tracing::info!(source = %job.source, "backend awake");
        } else {
            tracing::warn!(source = %job.source, ?timeout, "backend did not start in time");
        }
        if locked && awake {
            let _ = self.store.unlock(Lock::Waking, &job.source, &self.id).await;
        }
    }

    /// Wakes a route whose Service has no ready endpoint, unless this process already
    /// waits on it: the replica that gets the wake lock calls the webhook, or, for a
    /// `scale` target, leaves a wake request for the Kubernetes controller.
    pub(crate) fn request(self: &Arc<Self>, host: &str, source: &str, wake: &Wake) {
        {
            let mut requested = lock(&self.requested);
            // One older than the timeout lost its waiters (they left): asked again.
            if requested
                .get(source)
                .is_some_and(|at| at.elapsed() < wake.timeout())
            {
                return;
            }
            requested.insert(source.to_owned(), Instant::now());
        }
        let waker = self.clone();
        let (host, source, wake) = (host.to_owned(), source.to_owned(), wake.clone());
        tokio::spawn(async move {
            let (store, timeout) = (&waker.store, wake.timeout());
            match store
                .try_lock(Lock::Waking, &source, &waker.id, timeout)
                .await
            {
                Ok(false) => tracing::debug!(%source, "another replica wakes it"),
                taken => {
                    if let Err(error) = taken {
                        tracing::warn!(%source, %error, "wake lock unavailable: waking anyway");
                    }
                    if let Some(url) = &wake.webhook {
                        let body = serde_json::json!({"host": host, "route": source});
                        match call(&waker.client, url, body.to_string()).await {
                            Ok(status) => tracing::info!(%url, %status, "wake webhook called"),
                            Err(error) => tracing::warn!(%url, %error, "wake webhook failed"),
                        }
                    } else {
                        match store.request_wake(&source, timeout).await {
                            Ok(()) => tracing::info!(%source, "wake requested from the controller"),
                            Err(error) => tracing::warn!(%source, %error, "wake request failed"),
                        }
                    }
                }
            }
        });
    }

    /// A route woken for want of endpoints has one: the wake is over (recorded once).
    pub(crate) fn got_endpoints(&self, source: &str) {
        let Some(started) = lock(&self.requested).remove(source) else {
            return;
        };
        crate::telemetry::wake("woken");
        crate::telemetry::wake_duration(started.elapsed());
        tracing::info!(%source, "backend has endpoints");
        let (store, source, id) = (self.store.clone(), source.to_owned(), self.id.clone());
        tokio::spawn(async move {
            let _ = store.unlock(Lock::Waking, &source, &id).await;
        });
    }

    /// A route woken for want of endpoints got none in time: the next request
    /// asks again.
    pub(crate) fn no_endpoints(&self, source: &str, timeout: Duration) {
        if lock(&self.requested).remove(source).is_some() {
            crate::telemetry::wake("timeout");
            tracing::warn!(%source, ?timeout, "backend got no endpoint in time");
        }
    }

    /// The page for strategy `page`: 503, refreshing itself every 2 seconds.
    pub(crate) fn page(&self, host: &str) -> Response<Body> {
        let body = self.page.replace("{{host}}", &escape_html(host));
        let mut response = Response::new(full(body));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let headers = response.headers_mut();
        let two = HeaderValue::from_static("2");
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert("refresh", two.clone());
        headers.insert(header::RETRY_AFTER, two);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// A request of a route with a wake setting was served. With a sleep webhook or a
    /// `scale` target (which the controller puts to sleep), the route's last-served time
    /// is written to the store at most every few seconds; with a sleep webhook, the route
    /// is also watched for idleness here.
    pub(crate) fn served(self: &Arc<Self>, host: &str, route: &Route, wake: &Wake) {
        let Some(idle_after) = wake.idle_after() else {
            return;
        };
        let sleep_webhook = &wake.sleep_webhook;
        let now = Instant::now();
        let every = served_every(idle_after);
        let write = {
            let mut served = lock(&self.served);
            match served.get_mut(&route.source) {
                Some(entry) => {
                    entry.last = now;
                    let due = now.duration_since(entry.written) >= every;
                    if due {
                        entry.written = now;
                        // The route may have changed since (cheap enough this seldom).
                        if entry.sleep_webhook != *sleep_webhook {
                            entry.sleep_webhook.clone_from(sleep_webhook);
                        }
                        entry.idle_after = idle_after;
                    }
                    due
                }
                None => {
                    served.insert(
                        route.source.clone(),
                        Served {
                            sleep_webhook: sleep_webhook.clone(),
                            idle_after,
                            host: host.to_owned(),
                            last: now,
                            written: now,
                        },
                    );
                    true
                }
            }
        };
        if sleep_webhook.is_some() && !self.sleeper.swap(true, Ordering::Relaxed) {
            tokio::spawn(sleeper(Arc::downgrade(self)));
        }
        if write {
            let (store, source) = (self.store.clone(), route.source.clone());
            tokio::spawn(async move {
                if let Err(error) = store.set_served(&source, unix_ms()).await {
                    tracing::debug!(%source, %error, "last-served time not written");
                }
            });
        }
    }

    /// Puts to sleep the watched routes that are idle everywhere: the replica that gets
    /// the sleep lock calls the webhook; the others forget the route.
    async fn sleep_idle(&self) {
        let now = Instant::now();
        let idle: Vec<(String, String, String, Duration)> = lock(&self.served)
            .iter()
            .filter(|(_, s)| now.duration_since(s.last) >= s.idle_after)
            .filter_map(|(source, s)| {
                let (host, url) = (s.host.clone(), s.sleep_webhook.clone()?);
                Some((source.clone(), host, url, s.idle_after))
            })
            .collect();
        for (source, host, url, idle_after) in idle {
            // Another replica may have served it since.
            let served = match self.store.served(&source).await {
                Ok(served) => served,
                Err(_) => continue,
            };
            let idle_for = Duration::from_millis(unix_ms().saturating_sub(served.unwrap_or(0)));
            // The time stored may be one write interval older than the last request
            // another replica served: never asleep sooner than `idleAfter` after it.
            if served.is_some() && idle_for < idle_after + served_every(idle_after) {
                // Served elsewhere: looked at again when it may be idle, not every tick.
                if let Some(entry) = lock(&self.served).get_mut(&source) {
                    entry.last = entry.last.max(now.checked_sub(idle_for).unwrap_or(now));
                }
                continue;
            }
            // Forgotten first: a request from now on watches it anew.
            lock(&self.served).remove(&source);
            match self
                .store
                .try_lock(Lock::Sleeping, &source, &self.id, idle_after)
                .await
            {
                Ok(true) => {
                    let body = serde_json::json!({"host": host, "route": source});
                    match call(&self.client, &url, body.to_string()).await {
                        Ok(status) => tracing::info!(%source, %status, "sleep webhook called"),
                        Err(error) => tracing::warn!(%source, %error, "sleep webhook failed"),
                    }
                    crate::telemetry::slept();
                    let _ = self.store.clear_served(&source).await;
                }
                Ok(false) => {}
                Err(error) => tracing::debug!(%source, %error, "sleep lock unavailable"),
            }
        }
    }
}

/// What one wake needs, owned by its task.
struct Job {
    host: String,
    source: String,
    wake: Wake,
    upstream: Upstream,
}

/// Looks for idle routes while the waker lives.
async fn sleeper(waker: Weak<Waker>) {
    let mut tick = tokio::time::interval(SLEEP_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(waker) = waker.upgrade() else { return };
        waker.sleep_idle().await;
    }
}

/// Probes `upstream` with a short, capped backoff until it accepts or `deadline`.
async fn until_accepts(upstream: &Upstream, deadline: Instant) -> bool {
    let mut pause = FIRST_PAUSE;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        if probe(upstream).await {
            return true;
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Whether the backend accepts a TCP connection.
async fn probe(upstream: &Upstream) -> bool {
    let host = bare_host(upstream.authority.host());
    let connect = TcpStream::connect((host, upstream.port()));
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, connect).await,
        Ok(Ok(_))
    )
}

/// POSTs `json` to a webhook; its status, or why there is none.
async fn call(client: &Pool, url: &str, json: String) -> Result<StatusCode, String> {
    let request = Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(json))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(WEBHOOK_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    match status.is_success() {
        true => Ok(status),
        false => Err(format!("answered {status}")),
    }
}

/// How often a replica writes a route's last-served time: a quarter of its idle time,
/// at most [`MAX_SERVED_EVERY`].
fn served_every(idle_after: Duration) -> Duration {
    (idle_after / 4).min(MAX_SERVED_EVERY)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
