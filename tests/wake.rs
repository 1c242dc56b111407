//! Hold and wake (issue 15), through what a user runs: the `ceryx` binary on a real
//! Redis, a wake webhook served by the test that starts the real upstream only when it
//! is called (after 2 s, as a container would), and clients that must never see an error.

mod common;

use bytes::Bytes;
use ceryx::store::RouteStore;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use redis::AsyncCommands;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// How long the test's "container" takes to start once the webhook is called.
const START_DELAY: Duration = Duration::from_secs(2);

/// A backend that is asleep until woken: its address is reserved, and nothing listens
/// there until [`Backend::wake_after`] starts an echo upstream on it.
#[derive(Clone)]
struct Backend {
    addr: SocketAddr,
    /// The upstream once started, and when it began to accept connections.
    up: Arc<Mutex<Option<(Upstream, Instant)>>>,
}

impl Backend {
    fn asleep() -> Backend {
        Backend {
            addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            up: Arc::default(),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts the upstream `delay` from now (unless it runs already).
    fn wake_after(&self, delay: Duration) {
        let backend = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if backend.up.lock().unwrap().is_some() {
                return;
            }
            let upstream = Upstream::start_at("woken", backend.addr).await;
            *backend.up.lock().unwrap() = Some((upstream, Instant::now()));
        });
    }

    /// Puts the backend back to sleep: it stops, its connections closed.
    fn stop(&self) {
        if let Some((upstream, _)) = self.up.lock().unwrap().take() {
            upstream.kill();
        }
    }

    /// When the upstream began to accept connections.
    fn up_since(&self) -> Instant {
        self.up.lock().unwrap().as_ref().expect("backend started").1
    }
}

/// The wake and sleep webhooks: every call is recorded; a call to `/wake` starts the
/// backend after [`START_DELAY`] (if there is one).
struct Webhook {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Webhook {
    async fn start(backend: Option<Backend>) -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let recorded = calls.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (calls, backend) = (recorded.clone(), backend.clone());
                let service = service_fn(move |req: Request<Incoming>| {
                    let (calls, backend) = (calls.clone(), backend.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        calls.lock().unwrap().push((path.clone(), body));
                        if let (Some(backend), "/wake") = (&backend, path.as_str()) {
                            backend.wake_after(START_DELAY);
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Webhook { addr, calls }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn calls(&self, path: &str) -> Vec<Value> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, body)| body.clone())
            .collect()
    }
}

/// `ceryx run` on a fresh Redis.
async fn ceryx(redis: &RedisServer) -> Process {
    Process::start("run", &[("CERYX_REDIS_URL", redis.url())]).await
}

async fn put(ceryx: &Process, route: &Value) -> Reply {
    let source = route["source"].as_str().unwrap();
    TestClient::default()
        .send(
            ceryx.api,
            Request::put(format!("/api/routes/{source}")),
            route.to_string(),
        )
        .await
}

/// Request `i` of a burst: every third a POST with a body of its own.
fn request(host: &str, i: usize) -> (http::request::Builder, String) {
    match i % 3 {
        0 => {
            let body = format!("body of request {i}: {}", "x".repeat(i * 300));
            let req = Request::post(format!("/post/{i}"))
                .header("host", host)
                .header("content-type", "text/plain");
            (req, body)
        }
        _ => (
            Request::get(format!("/get/{i}")).header("host", host),
            String::new(),
        ),
    }
}

/// Sends `n` requests for `host` at once to `proxies` in turn; checks each is answered
/// 200 by the woken upstream with its body intact, and returns when each arrived.
async fn burst(proxies: &[SocketAddr], host: &str, n: usize) -> Vec<Instant> {
    let client = Arc::new(TestClient::default());
    let mut tasks = Vec::new();
    for i in 0..n {
        let (client, to, host) = (client.clone(), proxies[i % proxies.len()], host.to_owned());
        tasks.push(tokio::spawn(async move {
            let (req, body) = request(&host, i);
            let reply = client.send(to, req, body.clone()).await;
            (i, body, reply, Instant::now())
        }));
    }
    let mut arrivals = Vec::new();
    for task in tasks {
        let (i, body, reply, at) = task.await.unwrap();
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "request {i}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let echo = reply.json();
        assert_eq!(echo["name"], "woken", "request {i}");
        assert_eq!(echo["body"], body, "request {i}: body not intact");
        assert_eq!(echo["body_len"], body.len(), "request {i}");
        arrivals.push(at);
    }
    arrivals
}

/// The time from the backend accepting to each answer, in milliseconds, sorted.
fn added_ms(backend: &Backend, arrivals: &[Instant]) -> Vec<f64> {
    let up = backend.up_since();
    let mut added: Vec<f64> = arrivals
        .iter()
        .map(|at| at.saturating_duration_since(up).as_secs_f64() * 1000.0)
        .collect();
    added.sort_by(f64::total_cmp);
    added
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

// Clients and upstream on threads of their own: the figures printed are the proxy's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_requests_for_a_sleeping_host_make_one_wake_and_are_all_served() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let backend = Backend::asleep();
    let webhook = Webhook::start(Some(backend.clone())).await;
    let route = json!({"source": "app.test", "target": backend.url(),
        "wake": {"webhook": webhook.url("/wake"), "timeout": "30s"}});
    assert_eq!(put(&ceryx, &route).await.status, StatusCode::OK);

    let started = Instant::now();
    let arrivals = burst(&[ceryx.addr], "app.test", 50).await;
    assert!(started.elapsed() >= START_DELAY);
    let calls = webhook.calls("/wake");
    assert_eq!(calls, [json!({"host": "app.test", "route": "app.test"})]);
    let added = added_ms(&backend, &arrivals);
    println!(
        "50 held requests answered {:.1} ms (p50) / {:.1} ms (max) after the backend accepted",
        percentile(&added, 0.5),
        percentile(&added, 1.0)
    );

    // Awake: served at once, no more wakes.
    let reply = TestClient::default()
        .get(ceryx.addr, "app.test", "/again")
        .await;
    assert_eq!(reply.upstream().as_deref(), Some("woken"));
    assert_eq!(webhook.calls("/wake").len(), 1);
    let metrics = scrape(&ceryx).await;
    assert!(
        metrics.contains("ceryx_wakes_total{outcome=\"woken\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("ceryx_wake_duration_seconds_count 1\n"));
    assert!(metrics.contains("ceryx_requests_held 0\n"));

    // Asleep again: the next requests wake it again (the lock was let go). GETs: a POST
    // whose pooled connection broke as the backend stopped may have reached it whole,
    // and is answered 502 rather than sent twice.
    backend.stop();
    let client = TestClient::default();
    let paths: Vec<String> = (0..6).map(|i| format!("/get/{i}")).collect();
    let replies =
        futures_util::future::join_all(paths.iter().map(|p| client.get(ceryx.addr, "app.test", p)))
            .await;
    for reply in &replies {
        assert_eq!(
            reply.upstream().as_deref(),
            Some("woken"),
            "{:?}",
            reply.body
        );
    }
    assert_eq!(webhook.calls("/wake").len(), 2);
}

async fn scrape(ceryx: &Process) -> String {
    let reply = TestClient::default()
        .send(ceryx.api, Request::get("/metrics"), "")
        .await;
    String::from_utf8(reply.body.to_vec()).unwrap()
}

// Clients and upstream on threads of their own: the figures printed are the proxy's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxy_processes_sharing_redis_make_one_wake() {
    let redis = RedisServer::start().await;
    let env = [
        ("CERYX_REDIS_URL", redis.url()),
        ("CERYX_REDIS_TIMEOUT", "1000".into()),
    ];
    let replicas = [
        Process::start("proxy", &env).await,
        Process::start("proxy", &env).await,
    ];
    let backend = Backend::asleep();
    let webhook = Webhook::start(Some(backend.clone())).await;
    let mut route = route("shared.test", &backend.url());
    route.wake = Some(
        serde_json::from_value(json!({"webhook": webhook.url("/wake"), "timeout": "30s"})).unwrap(),
    );
    redis.store().put(&route).await.unwrap();

    let addrs = [replicas[0].addr, replicas[1].addr];
    let arrivals = burst(&addrs, "shared.test", 50).await;
    assert_eq!(webhook.calls("/wake").len(), 1, "one wake across replicas");
    let added = added_ms(&backend, &arrivals);
    println!(
        "two replicas: answered {:.1} ms (p50) / {:.1} ms (max) after the backend accepted",
        percentile(&added, 0.5),
        percentile(&added, 1.0)
    );
}

#[tokio::test]
async fn a_backend_that_never_starts_gets_504_after_the_timeout() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let backend = Backend::asleep();
    let webhook = Webhook::start(None).await;
    let route = json!({"source": "never.test", "target": backend.url(),
        "wake": {"webhook": webhook.url("/wake"), "timeout": "2s"}});
    assert_eq!(put(&ceryx, &route).await.status, StatusCode::OK);

    let started = Instant::now();
    let (req, body) = request("never.test", 0);
    let reply = TestClient::default().send(ceryx.addr, req, body).await;
    let waited = started.elapsed();
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    let page = String::from_utf8_lossy(&reply.body);
    assert!(page.contains("never.test did not start"), "{page}");
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    assert_eq!(webhook.calls("/wake").len(), 1);
}

#[tokio::test]
async fn strategy_page_answers_browsers_at_once_and_holds_curl() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let backend = Backend::asleep();
    let webhook = Webhook::start(Some(backend.clone())).await;
    let route = json!({"source": "page.test", "target": backend.url(),
        "wake": {"webhook": webhook.url("/wake"), "timeout": "30s", "strategy": "page"}});
    assert_eq!(put(&ceryx, &route).await.status, StatusCode::OK);
    let client = TestClient::default();
    let browser = || {
        Request::get("/")
            .header("host", "page.test")
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
    };

    let started = Instant::now();
    let page = client.send(ceryx.addr, browser(), "").await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(page.headers["refresh"], "2");
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("Starting page.test"), "{html}");

    // curl is held (the wake the browser started is joined) and served.
    let curl = Request::get("/api")
        .header("host", "page.test")
        .header("accept", "*/*");
    let reply = client.send(ceryx.addr, curl, "").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.upstream().as_deref(), Some("woken"));
    assert_eq!(webhook.calls("/wake").len(), 1);

    // The page's refresh now gets the service.
    let reply = client.send(ceryx.addr, browser(), "").await;
    assert_eq!(reply.upstream().as_deref(), Some("woken"));
}

#[tokio::test]
async fn an_idle_route_gets_its_sleep_webhook_once() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let backend = Backend::asleep();
    backend.wake_after(Duration::ZERO);
    let webhook = Webhook::start(None).await;
    let route = json!({"source": "idle.test", "target": backend.url(),
        "wake": {"webhook": webhook.url("/wake"), "sleepWebhook": webhook.url("/sleep"), "idleAfter": "1s"}});
    assert_eq!(put(&ceryx, &route).await.status, StatusCode::OK);
    let client = TestClient::default();
    eventually(Duration::from_secs(5), "the backend to serve", || async {
        client.served_by(ceryx.addr, "idle.test").await.as_deref() == Some("woken")
    })
    .await;
    let last = Instant::now();
    let store = redis.raw().await;
    eventually(Duration::from_secs(2), "the last-served time", || {
        let mut store = store.clone();
        async move {
            store
                .exists::<_, bool>("ceryx:served:idle.test")
                .await
                .unwrap()
        }
    })
    .await;

    eventually(Duration::from_secs(5), "the sleep webhook", || async {
        !webhook.calls("/sleep").is_empty()
    })
    .await;
    assert!(last.elapsed() >= Duration::from_secs(1));
    assert_eq!(
        webhook.calls("/sleep"),
        [json!({"host": "idle.test", "route": "idle.test"})]
    );
    eventually(
        Duration::from_secs(2),
        "the last-served time cleared",
        || {
            let mut store = store.clone();
            async move {
                !store
                    .exists::<_, bool>("ceryx:served:idle.test")
                    .await
                    .unwrap()
            }
        },
    )
    .await;
    assert!(webhook.calls("/wake").is_empty());
}

#[tokio::test]
async fn the_api_validates_stores_and_shows_the_wake_setting() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let client = TestClient::default();
    let bad = json!({"source": "w.test", "target": "http://127.0.0.1:1",
        "wake": {"webhook": "http://127.0.0.1:2/wake", "timeout": "forever"}});
    let reply = put(&ceryx, &bad).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.json()["errors"]["wake"]
            .as_str()
            .unwrap()
            .starts_with("wake.timeout: "),
        "{:?}",
        reply.json()
    );
    let denied = json!({"source": "w.test", "target": "http://127.0.0.1:1",
        "wake": {"webhook": "http://169.254.169.254/wake"}});
    let reply = put(&ceryx, &denied).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.json()["errors"]["wake"]
            .as_str()
            .unwrap()
            .starts_with("wake.webhook: "),
        "{:?}",
        reply.json()
    );

    let good = json!({"source": "w.test", "target": "http://127.0.0.1:1",
        "wake": {"webhook": "127.0.0.1:2/wake", "strategy": "page"}});
    let reply = put(&ceryx, &good).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json()["wake"],
        json!({"webhook": "http://127.0.0.1:2/wake", "strategy": "page"})
    );
    let mut conn = redis.raw().await;
    let stored: String = conn.get("ceryx:wake:w.test").await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&stored).unwrap()["webhook"],
        "http://127.0.0.1:2/wake"
    );
    let settings: std::collections::HashMap<String, String> =
        conn.hgetall("ceryx:settings:w.test").await.unwrap();
    assert!(!settings.contains_key("wake"), "{settings:?}");

    // Unset: left out of the answer, and the key goes.
    let plain = json!({"source": "w.test", "target": "http://127.0.0.1:1"});
    let reply = put(&ceryx, &plain).await;
    assert!(reply.json().get("wake").is_none(), "{:?}", reply.json());
    assert!(!conn.exists::<_, bool>("ceryx:wake:w.test").await.unwrap());
    assert_eq!(put(&ceryx, &good).await.status, StatusCode::OK);
    let delete = Request::delete("/api/routes/w.test");
    assert_eq!(
        client.send(ceryx.api, delete, "").await.status,
        StatusCode::NO_CONTENT
    );
    assert!(!conn.exists::<_, bool>("ceryx:wake:w.test").await.unwrap());
}

/// The wake latency Ceryx adds: time from the backend accepting to the held requests
/// being answered, over several wakes (the test's clients and upstream on threads of
/// their own, so that they add little to the figure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_latency_added_by_ceryx() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let mut added = Vec::new();
    for run in 0..8 {
        let backend = Backend::asleep();
        let host = format!("run{run}.test");
        let client = Arc::new(TestClient::default());
        let route = json!({"source": host, "target": backend.url(),
            "wake": {"webhook": "http://127.0.0.1:9/unused", "timeout": "30s"}});
        assert_eq!(put(&ceryx, &route).await.status, StatusCode::OK);
        // The backend starts at a moment the proxy cannot know (not on the webhook).
        backend.wake_after(Duration::from_millis(300 + 37 * run));
        let mut tasks = Vec::new();
        for i in 0..10 {
            let (client, host) = (client.clone(), host.clone());
            let to = ceryx.addr;
            tasks.push(tokio::spawn(async move {
                let (req, body) = request(&host, i);
                let reply = client.send(to, req, body).await;
                assert_eq!(reply.status, StatusCode::OK);
                Instant::now()
            }));
        }
        let mut arrivals = Vec::new();
        for task in tasks {
            arrivals.push(task.await.unwrap());
        }
        added.extend(added_ms(&backend, &arrivals));
    }
    added.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&added, 0.5), percentile(&added, 0.99));
    println!(
        "wake latency added by ceryx over {} held requests: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        added.len(),
        percentile(&added, 1.0)
    );
    assert!(p99 < 200.0, "p99 {p99} ms");
}

#[tokio::test]
async fn without_redis_the_operators_page_is_shown_and_the_wake_held_in_process() {
    let page = std::env::temp_dir().join(format!("ceryx-wake-page-{}.html", std::process::id()));
    std::fs::write(&page, "<p>{{host}} is brewing</p>").unwrap();
    let ceryx = Process::start("run", &[("CERYX_WAKE_PAGE", page.display().to_string())]).await;
    let backend = Backend::asleep();
    let webhook = Webhook::start(Some(backend.clone())).await;
    let route = json!({"source": "brew.test", "target": backend.url(),
        "wake": {"webhook": webhook.url("/wake"), "strategy": "page"}});
    assert_eq!(put(&ceryx, &route).await.status, StatusCode::OK);
    let client = TestClient::default();

    let browser = Request::get("/")
        .header("host", "brew.test")
        .header("accept", "text/html");
    let reply = client.send(ceryx.addr, browser, "").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(&reply.body[..], b"<p>brew.test is brewing</p>");
    // Two more clients join the wake the page started: still one call.
    let arrivals = burst(&[ceryx.addr], "brew.test", 2).await;
    assert_eq!(arrivals.len(), 2);
    assert_eq!(webhook.calls("/wake").len(), 1);
    std::fs::remove_file(page).unwrap();
}

#[tokio::test]
async fn a_rule_backend_endpoint_is_held_and_woken_too() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let backend = Backend::asleep();
    let webhook = Webhook::start(Some(backend.clone())).await;
    let route = json!({"source": "rules.test", "target": "http://127.0.0.1:9",
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/post"}}],
                   "backendRefs": [{"endpoints": [backend.url()]}]}],
        "wake": {"webhook": webhook.url("/wake"), "timeout": "30s"}});
    assert_eq!(put(&ceryx, &route).await.status, StatusCode::OK);
    // Request 0 is a POST to /post/0, which the rule sends to the endpoint.
    let (req, body) = request("rules.test", 0);
    let reply = TestClient::default()
        .send(ceryx.addr, req, body.clone())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["body"], body);
    assert_eq!(webhook.calls("/wake").len(), 1);
}

#[tokio::test]
async fn a_route_served_by_one_replica_is_not_put_to_sleep_by_another() {
    let redis = RedisServer::start().await;
    let env = [("CERYX_REDIS_URL", redis.url())];
    let (a, b) = (
        Process::start("proxy", &env).await,
        Process::start("proxy", &env).await,
    );
    let upstream = Upstream::start("busy").await;
    let webhook = Webhook::start(None).await;
    let mut route = route("busy.test", &upstream.url());
    route.wake = Some(
        serde_json::from_value(json!({"webhook": webhook.url("/wake"),
            "sleepWebhook": webhook.url("/sleep"), "idleAfter": "1s"}))
        .unwrap(),
    );
    redis.store().put(&route).await.unwrap();
    let client = TestClient::default();
    // B serves once, then only A has traffic, for well over `idleAfter`.
    assert_eq!(
        client.served_by(b.addr, "busy.test").await.as_deref(),
        Some("busy")
    );
    let busy_until = Instant::now() + Duration::from_millis(2500);
    let mut traffic = tokio::time::interval(Duration::from_millis(100));
    while Instant::now() < busy_until {
        traffic.tick().await;
        assert_eq!(
            client.served_by(a.addr, "busy.test").await.as_deref(),
            Some("busy")
        );
    }
    assert!(webhook.calls("/sleep").is_empty(), "slept while in use");
    // Idle everywhere: one call, from one of them.
    eventually(Duration::from_secs(5), "the sleep webhook", || async {
        !webhook.calls("/sleep").is_empty()
    })
    .await;
    assert!(busy_until.elapsed() >= Duration::from_secs(1));
    let settled = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settled {
        traffic.tick().await;
    }
    assert_eq!(webhook.calls("/sleep").len(), 1);
}

#[tokio::test]
async fn a_websocket_to_a_sleeping_host_is_held_and_upgraded() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let backend = Backend::asleep();
    let webhook = Webhook::start(Some(backend.clone())).await;
    let route = json!({"source": "ws.test", "target": backend.url(),
        "wake": {"webhook": webhook.url("/wake"), "timeout": "30s"}});
    assert_eq!(put(&ceryx, &route).await.status, StatusCode::OK);

    let stream = tokio::net::TcpStream::connect(ceryx.addr).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async("ws://ws.test/ws", stream)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("awake?")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text("awake?"));
    assert_eq!(webhook.calls("/wake").len(), 1);
}
