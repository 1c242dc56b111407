//! Hold and wake against a real kube-apiserver: a CeryxRoute whose `spec.wake` names a
//! Deployment scaled to zero. The real `ceryx controller` (under the chart's RBAC) scales
//! it through the scale subresource when a real `ceryx proxy` holds a request for it, and
//! back to zero once idle. No kubelet or endpoint controller runs here: the Deployment
//! only records its replicas, and the test plays both, starting an echo upstream and
//! writing the EndpointSlice (see [`TrafficWorld::slice`]).

mod common;

use common::cluster::ControlPlane;
use common::traffic::TrafficWorld;
use common::*;
use http::{Request, StatusCode};
use std::time::{Duration, Instant};

/// A test's own world ([`TrafficWorld`]) with more proxies on the same Redis.
struct World {
    w: TrafficWorld,
    more: Vec<Process>,
}

impl std::ops::Deref for World {
    type Target = TrafficWorld;

    fn deref(&self) -> &TrafficWorld {
        &self.w
    }
}

impl World {
    /// Starts everything with `proxies` proxy processes sharing one Redis, and creates
    /// Deployment `web` (0 replicas), Service `web` and CeryxRoute `web` for `web.test`
    /// with `wake` (YAML flow map); waits until the route is programmed.
    async fn start(
        plane: &'static ControlPlane,
        prefix: &str,
        proxies: usize,
        wake: &str,
    ) -> World {
        let w = TrafficWorld::start(plane, prefix, &[]).await;
        let mut more = Vec::new();
        for _ in 1..proxies {
            more.push(Process::start("proxy", &[("CERYX_REDIS_URL", w.redis.url())]).await);
        }
        let w = World { w, more };
        w.apply(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 0\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: example.invalid/web}]\n",
        );
        w.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80}]\n");
        w.apply(&format!(
            "apiVersion: ceryx.dev/v1alpha1\nkind: CeryxRoute\nmetadata:\n  name: web\nspec:\n  ingressClassName: {}\n  source: web.test\n  target:\n    service: {{name: web, port: 80}}\n  wake: {wake}\n",
            w.ns
        ));
        eventually(Duration::from_secs(20), "the route programmed", || async {
            w.kubectl(&[
                "get",
                "cxr",
                "web",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Programmed\")].status}",
            ]) == "True"
        })
        .await;
        w
    }

    fn apply(&self, yaml: &str) {
        self.apply_to(&self.ns, yaml);
    }

    /// The address of proxy `i`.
    fn proxy(&self, i: usize) -> std::net::SocketAddr {
        match i {
            0 => self.w.proxy.addr,
            i => self.more[i - 1].addr,
        }
    }

    /// Deployment `web`'s `spec.replicas`.
    fn replicas(&self) -> String {
        self.kubectl(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
    }

    /// Polls until Deployment `web` asks for `n` replicas.
    async fn wait_replicas(&self, n: u32) {
        let what = format!("Deployment web at {n} replicas");
        eventually(Duration::from_secs(20), &what, || async {
            self.replicas() == n.to_string()
        })
        .await;
    }

    /// The pod the Deployment would run: an echo upstream and its EndpointSlice (as a
    /// kubelet and the endpoint controller would make them).
    async fn pod(&self) -> Upstream {
        let pod = Upstream::start("web").await;
        self.slice(&self.ns, "web-pod", "web", "http", &pod, true);
        pod
    }

    /// A POST of `body` to `web.test` through proxy `i`, answered whenever it is.
    fn post(&self, i: usize, body: String) -> tokio::task::JoinHandle<Reply> {
        let to = self.proxy(i);
        tokio::spawn(async move {
            let req = Request::post("/hello").header("host", "web.test");
            TestClient::default().send(to, req, body).await
        })
    }

    /// Polls until an Event `reason` on CeryxRoute `web` says `words`.
    async fn wait_web_event(&self, reason: &str, words: &str) {
        self.wait_event("CeryxRoute", "web", reason, words).await;
    }
}

/// Wakes Deployment `web`, back to zero after 3 s idle.
const SCALE_WEB: &str =
    "{scaleTargetRef: {kind: Deployment, name: web}, idleAfter: 3s, timeout: 30s}";

/// Checks that each of `held` (request `i` sent `body {i}`) is answered 200 with its
/// body intact, within 20 s.
async fn answered(held: Vec<tokio::task::JoinHandle<Reply>>) {
    for (i, request) in held.into_iter().enumerate() {
        let reply = tokio::time::timeout(Duration::from_secs(20), request)
            .await
            .expect("answered once the endpoint is ready")
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(echoed(&reply), format!("body {i}"));
    }
}

/// The echoed body of a reply from the echo upstream.
fn echoed(reply: &Reply) -> String {
    reply.json()["body"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_request_scales_the_deployment_up_is_held_until_its_endpoint_and_idle_scales_it_down() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "wake", 1, SCALE_WEB).await;
    assert_eq!(w.replicas(), "0");

    let held = w.post(0, "the held body".to_owned());
    w.wait_replicas(1).await;
    w.wait_web_event(
        "ScaledUp",
        "Scaled Deployment web to 1 replica for a waiting request",
    )
    .await;
    assert!(
        !held.is_finished(),
        "held until the Service has an endpoint"
    );

    let pod = w.pod().await;
    let reply = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("answered once the endpoint is ready")
        .unwrap();
    let served = Instant::now();
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.upstream().as_deref(), Some("web"));
    assert_eq!(echoed(&reply), "the held body");
    assert_eq!(pod.hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // No traffic from now on: back to zero after `idleAfter`, not sooner.
    w.wait_replicas(0).await;
    assert!(
        served.elapsed() >= Duration::from_secs(3),
        "scaled down {:?} after the last request",
        served.elapsed()
    );
    w.wait_web_event("ScaledDown", "Scaled Deployment web to 0 after 3s idle")
        .await;
    w.controller.assert_nothing_forbidden();
}

#[tokio::test]
async fn concurrent_requests_through_two_proxies_scale_up_once() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "wake-once", 2, SCALE_WEB).await;
    let generation = || {
        w.kubectl(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.metadata.generation}",
        ])
    };
    let before: u64 = generation().parse().unwrap();

    let held: Vec<_> = (0..20)
        .map(|i| w.post(i % 2, format!("body {i}")))
        .collect();
    w.wait_replicas(1).await;
    let _pod = w.pod().await;
    answered(held).await;
    // One change of the Deployment's spec, and one scale-up in the controller's log.
    assert_eq!(generation().parse::<u64>().unwrap(), before + 1);
    let log = w.controller.log();
    assert_eq!(
        log.matches("Scaled Deployment web to 1 replica").count(),
        1,
        "{log}"
    );
    w.controller.assert_nothing_forbidden();
}

/// A webhook wake holds requests for a Service without endpoints the same way: one
/// webhook call (from one of two proxies), then the requests wait for the endpoint.
#[tokio::test]
async fn a_webhook_wake_holds_requests_until_the_service_has_an_endpoint() {
    let plane = ceryx_plane_or_skip!();
    let waker = Upstream::start("waker").await;
    let wake = format!("{{webhook: \"{}/wake\", timeout: 30s}}", waker.url());
    let w = World::start(plane, "wake-hook", 2, &wake).await;
    let held: Vec<_> = (0..10)
        .map(|i| w.post(i % 2, format!("body {i}")))
        .collect();
    eventually(
        Duration::from_secs(20),
        "the wake webhook called",
        || async { waker.hits.load(std::sync::atomic::Ordering::SeqCst) > 0 },
    )
    .await;
    assert!(held.iter().all(|h| !h.is_finished()));
    let _pod = w.pod().await;
    answered(held).await;
    assert_eq!(waker.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The controller scales nothing for a webhook wake.
    assert_eq!(w.replicas(), "0");
}

/// `strategy: page`: a browser navigation gets the refreshing page at once (and the
/// Deployment is scaled up); any other request is held, and gets 504 once `timeout`
/// passes with no endpoint.
#[tokio::test]
async fn a_browser_gets_the_page_and_a_request_no_endpoint_comes_for_gets_504() {
    let plane = ceryx_plane_or_skip!();
    let wake = "{scaleTargetRef: {kind: Deployment, name: web}, timeout: 2s, strategy: page}";
    let w = World::start(plane, "wake-page", 1, wake).await;
    let to = w.proxy(0);
    let client = TestClient::default();
    let browser = Request::get("/")
        .header("host", "web.test")
        .header("accept", "text/html,application/xhtml+xml");
    let page = tokio::time::timeout(Duration::from_secs(1), client.send(to, browser, ""))
        .await
        .expect("the page at once");
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&page.body).contains("Starting web.test"));
    w.wait_replicas(1).await;

    let started = Instant::now();
    let held = w.post(0, "never served".to_owned()).await.unwrap();
    assert_eq!(held.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        String::from_utf8_lossy(&held.body).contains("did not start"),
        "{:?}",
        held.body
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "held for the timeout"
    );
    w.controller.assert_nothing_forbidden();
}
