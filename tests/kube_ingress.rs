//! Ingresses, and Services resolved to their endpoints, against a real kube-apiserver:
//! the real `ceryx controller` (under the chart's RBAC) and `ceryx proxy`, a real Redis,
//! echo upstreams on 127.0.0.1 standing for pods (see [`TrafficWorld`]). Each test has
//! its own namespace, IngressClass, Redis and processes.

mod common;

use common::cluster::ControlPlane;
use common::tls::*;
use common::traffic::TrafficWorld;
use common::*;
use http::{Request, StatusCode};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A test's own world, with its IngressClass `<ns>`.
struct World(TrafficWorld);

impl std::ops::Deref for World {
    type Target = TrafficWorld;

    fn deref(&self) -> &TrafficWorld {
        &self.0
    }
}

impl World {
    /// Starts the world and creates its IngressClass (the cluster default when
    /// `default`).
    async fn start(plane: &'static ControlPlane, prefix: &str, default: bool) -> World {
        let w = TrafficWorld::start(plane, prefix, &[]).await;
        let annotation = if default {
            "\n  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}"
        } else {
            ""
        };
        w.apply_to(
            &w.ns,
            &format!("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: {}{annotation}\nspec:\n  controller: ceryx.dev/ingress-controller\n", w.ns),
        );
        World(w)
    }

    fn apply(&self, yaml: &str) {
        self.apply_to(&self.ns, yaml);
    }

    /// An Ingress of this test's class; `annotations` and `spec` as YAML lines.
    fn ingress(&self, name: &str, annotations: &[(&str, &str)], spec: &str) {
        let mut yaml =
            format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n");
        if !annotations.is_empty() {
            yaml.push_str("  annotations:\n");
            for (k, v) in annotations {
                yaml.push_str(&format!("    {k}: {v:?}\n"));
            }
        }
        yaml.push_str(&format!("spec:\n  ingressClassName: {}\n", self.ns));
        for line in spec.lines() {
            yaml.push_str(&format!("  {line}\n"));
        }
        self.apply(&yaml);
    }

    /// A Service with `ports` (YAML flow list).
    fn service(&self, name: &str, ports: &str) {
        self.apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports: {ports}\n"
        ));
    }

    /// A slice of Service `service` in this namespace ([`TrafficWorld::slice`]).
    fn pod(&self, name: &str, service: &str, port_name: &str, upstream: &Upstream, ready: bool) {
        self.slice(&self.ns, name, service, port_name, upstream, ready);
    }

    async fn get(&self, host: &str, path: &str) -> Reply {
        self.send(host, path, &[]).await
    }

    async fn wait(&self, host: &str, path: &str, status: StatusCode) -> Reply {
        self.wait_for(host, path, &[], status).await
    }

    /// Which upstreams answered `n` requests for `host` `path`, sent 16 at a time (as a
    /// busy service gets them: one client's requests one after another all go to the
    /// fastest endpoint), and how often.
    async fn spread(&self, host: &str, path: &str, n: usize) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..n.div_ceil(16) {
            let replies =
                futures_util::future::join_all((0..16).map(|_| self.get(host, path))).await;
            for reply in replies {
                let name = reply.upstream().unwrap_or_else(|| reply.status.to_string());
                *seen.entry(name).or_default() += 1;
            }
        }
        seen
    }

    /// Polls until an Event with `reason` on Ingress `name` says `words`.
    async fn wait_ingress_event(&self, name: &str, reason: &str, words: &str) {
        self.wait_event("Ingress", name, reason, words).await;
    }
}

#[tokio::test]
async fn an_ingress_is_served_as_written_over_the_ready_endpoints_of_its_services() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "ing", false).await;
    let (web_a, web_b, api) = (
        Upstream::start("web-a").await,
        Upstream::start("web-b").await,
        Upstream::start("api").await,
    );
    w.service("web", "[{name: http, port: 80}]");
    w.service("api", "[{port: 8080}]");
    w.service("empty", "[{port: 80}]");
    w.pod("web-a", "web", "http", &web_a, true);
    w.pod("web-b", "web", "http", &web_b, true);
    w.pod("api", "api", "", &api, true);
    let (pem, der) = issue(&["secure.test"]);
    plane.tls_secret(&w.ns, "secure-tls", &pem);
    w.ingress(
        "shop",
        &[],
        "tls:\n- hosts: [secure.test]\n  secretName: secure-tls\nrules:\n\
         - host: shop.test\n  http:\n    paths:\n\
         \x20   - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}\n\
         \x20   - {path: /health, pathType: Exact, backend: {service: {name: api, port: {number: 8080}}}}\n\
         \x20   - {path: /empty, pathType: ImplementationSpecific, backend: {service: {name: empty, port: {number: 80}}}}\n\
         - host: secure.test\n  http:\n    paths:\n\
         \x20   - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}\n",
    );

    w.wait("shop.test", "/", StatusCode::OK).await;
    let spread = w.spread("shop.test", "/catalog", 80).await;
    assert!(
        spread.get("web-a").is_some_and(|n| *n >= 16)
            && spread.get("web-b").is_some_and(|n| *n >= 16),
        "balanced over both endpoints: {spread:?}"
    );
    assert_eq!(
        w.get("shop.test", "/health").await.upstream().as_deref(),
        Some("api")
    );
    // Exact is exact: /health/x is the Prefix / rule's.
    assert_ne!(
        w.get("shop.test", "/health/x").await.upstream().as_deref(),
        Some("api")
    );

    // A Service without endpoints: 503 saying so, and a Warning on the Ingress.
    let empty = w.get("shop.test", "/empty/page").await;
    assert_eq!(empty.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        String::from_utf8_lossy(&empty.body).contains("no ready endpoints"),
        "{:?}",
        empty.body
    );
    w.wait_ingress_event(
        "shop",
        "NoReadyEndpoints",
        &format!("Service {}/empty", w.ns),
    )
    .await;

    // TLS: the Secret's certificate by SNI; plain HTTP redirected (ssl-redirect's default).
    let served = leaf(&connect(w.https, Some("secure.test"), &[b"http/1.1"]).await);
    assert_eq!(served, der);
    let plain = w.get("secure.test", "/api/v1").await;
    assert_eq!(plain.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(plain.location(), "https://secure.test/api/v1");
    // A path no rule of the host takes: 404.
    let tls = connect(w.https, Some("secure.test"), &[b"http/1.1"]).await;
    assert_eq!(get_over(tls, "secure.test").await.0, StatusCode::NOT_FOUND);

    // status.loadBalancer, as external-dns and Argo CD read it.
    eventually(Duration::from_secs(20), "status.loadBalancer", || async {
        w.kubectl(&[
            "get",
            "ingress",
            "shop",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]) == "127.0.0.1"
    })
    .await;
    w.wait_ingress_event("shop", "Programmed", "secure.test, shop.test")
        .await;

    // An endpoint that stops being ready stops getting traffic within a second.
    w.pod("web-b", "web", "http", &web_b, false);
    let changed = Instant::now();
    loop {
        let spread = w.spread("shop.test", "/", 10).await;
        if spread.keys().eq(["web-a"]) {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "web-b still served: {spread:?}"
        );
    }
    let hits = web_b.hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        w.spread("shop.test", "/", 20)
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["web-a"]
    );
    assert_eq!(web_b.hits.load(std::sync::atomic::Ordering::SeqCst), hits);

    // Deleting the Ingress removes its hosts.
    w.kubectl(&["delete", "ingress", "shop"]);
    w.wait("shop.test", "/", StatusCode::SERVICE_UNAVAILABLE)
        .await;
    w.controller.assert_nothing_forbidden();
}

#[tokio::test]
async fn ingresses_sharing_a_host_merge_and_the_older_keeps_a_contested_path() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "merge", false).await;
    let (web, api, other) = (
        Upstream::start("web").await,
        Upstream::start("api").await,
        Upstream::start("other").await,
    );
    for (name, upstream) in [("web", &web), ("api", &api), ("other", &other)] {
        w.service(name, "[{port: 80}]");
        w.pod(name, name, "", upstream, true);
    }
    let path = |p: &str, service: &str| {
        format!(
            "\x20   - {{path: {p}, pathType: Prefix, backend: {{service: {{name: {service}, port: {{number: 80}}}}}}}}\n"
        )
    };
    let rules = |paths: String| format!("rules:\n- host: app.test\n  http:\n    paths:\n{paths}");
    w.ingress("first", &[], &rules(path("/", "web")));
    w.wait("app.test", "/", StatusCode::OK).await;
    w.ingress(
        "second",
        &[],
        &rules(path("/api", "api") + &path("/", "other")),
    );
    w.wait_ingress_event("second", "HostConflict", "served by Ingress")
        .await;
    eventually(
        Duration::from_secs(20),
        "/api from the second Ingress",
        || async { w.get("app.test", "/api/users").await.upstream().as_deref() == Some("api") },
    )
    .await;
    assert_eq!(
        w.get("app.test", "/").await.upstream().as_deref(),
        Some("web")
    );
    // The older one gone, the newer one takes its path.
    w.kubectl(&["delete", "ingress", "first"]);
    eventually(
        Duration::from_secs(20),
        "/ from the second Ingress",
        || async { w.get("app.test", "/").await.upstream().as_deref() == Some("other") },
    )
    .await;
    w.controller.assert_nothing_forbidden();
}

#[tokio::test]
async fn ingress_nginx_annotations_behave_as_ingress_nginx_documents_them() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "nginx", true).await;
    let web = Upstream::start("web").await;
    w.service("web", "[{port: 80}]");
    w.pod("web", "web", "", &web, true);
    let one = |host: &str, path: &str, kind: &str| {
        format!(
            "rules:\n- host: {host}\n  http:\n    paths:\n    - {{path: {path:?}, pathType: {kind}, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
        )
    };
    let n = |name: &str| format!("nginx.ingress.kubernetes.io/{name}");
    w.ingress(
        "rewrite",
        &[(&n("rewrite-target"), "/$2"), (&n("use-regex"), "true")],
        &one("rewrite.test", "/app(/|$)(.*)", "ImplementationSpecific"),
    );
    w.ingress(
        "moved",
        &[(&n("permanent-redirect"), "https://new.example/landing")],
        &one("moved.test", "/", "Prefix"),
    );
    w.ingress(
        "forced",
        &[(&n("force-ssl-redirect"), "true")],
        &one("forced.test", "/", "Prefix"),
    );
    w.ingress(
        "regex",
        &[(&n("use-regex"), "true")],
        &one("regex.test", "/v[0-9]+/items", "ImplementationSpecific"),
    );
    w.ingress(
        "slow",
        &[(&n("proxy-read-timeout"), "1")],
        &one("slow.test", "/", "Prefix"),
    );
    w.ingress(
        "small",
        &[(&n("proxy-body-size"), "1k")],
        &one("small.test", "/", "Prefix"),
    );
    w.ingress(
        "odd",
        &[(&n("configuration-snippet"), "more_set_headers \"X: y\";")],
        &one("odd.test", "/", "Prefix"),
    );
    // No class named: the default class is this test's.
    let classless = one("classless.test", "/", "Prefix");
    w.apply(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: classless\nspec:\n{}",
        classless
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    ));

    let rewritten = w
        .wait("rewrite.test", "/app/users?page=2", StatusCode::OK)
        .await;
    assert_eq!(rewritten.json()["path"], "/users?page=2");
    assert_eq!(w.get("rewrite.test", "/app").await.json()["path"], "/");
    assert_eq!(
        w.get("rewrite.test", "/application").await.status,
        StatusCode::NOT_FOUND
    );

    let moved = w
        .wait("moved.test", "/old", StatusCode::MOVED_PERMANENTLY)
        .await;
    assert_eq!(moved.location(), "https://new.example/landing");
    let forced = w
        .wait("forced.test", "/x", StatusCode::MOVED_PERMANENTLY)
        .await;
    assert_eq!(forced.location(), "https://forced.test/x");

    w.wait("regex.test", "/v2/items", StatusCode::OK).await;
    assert_eq!(
        w.get("regex.test", "/V10/items/7").await.status,
        StatusCode::OK,
        "case-insensitive, anchored at the start only"
    );
    assert_eq!(
        w.get("regex.test", "/vx/items").await.status,
        StatusCode::NOT_FOUND
    );

    w.wait("slow.test", "/", StatusCode::OK).await;
    let started = Instant::now();
    let slow = w
        .client
        .send(
            w.proxy.addr,
            Request::get("/slow").header("host", "slow.test"),
            "",
        )
        .await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );

    // proxy-body-size: larger bodies answered 413 by the proxy, as nginx does.
    w.wait("small.test", "/", StatusCode::OK).await;
    let post = |size: usize| {
        w.client.send(
            w.proxy.addr,
            Request::post("/upload").header("host", "small.test"),
            "x".repeat(size),
        )
    };
    assert_eq!(post(2048).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(post(512).await.json()["body_len"], 512);

    w.wait("odd.test", "/", StatusCode::OK).await;
    w.wait_ingress_event(
        "odd",
        "UnsupportedAnnotation",
        "nginx.ingress.kubernetes.io/configuration-snippet",
    )
    .await;
    w.wait("classless.test", "/", StatusCode::OK).await;
    w.controller.assert_nothing_forbidden();
}

#[tokio::test]
async fn a_ceryxroute_service_target_is_served_over_the_services_ready_endpoints() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "cxr", false).await;
    let (pod_a, pod_b) = (
        Upstream::start("pod-a").await,
        Upstream::start("pod-b").await,
    );
    w.service("web", "[{name: http, port: 80}]");
    w.apply(&format!(
        "apiVersion: ceryx.dev/v1alpha1\nkind: CeryxRoute\nmetadata:\n  name: web\nspec:\n  ingressClassName: {}\n  source: web.test\n  target:\n    service: {{name: web, port: 80}}\n",
        w.ns
    ));
    // The Service exists but no pod is ready: 503, and the status says why.
    eventually(
        Duration::from_secs(20),
        "503 for want of endpoints",
        || async {
            let reply = w.get("web.test", "/").await;
            reply.status == StatusCode::SERVICE_UNAVAILABLE
                && String::from_utf8_lossy(&reply.body)
                    .contains(&format!("Service {}/web has no ready endpoints", w.ns))
        },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the status to name the Service",
        || async {
            w.kubectl(&[
                "get",
                "cxr",
                "web",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Programmed\")].message}",
            ])
            .contains("no ready endpoints (answered 503): Service web")
        },
    )
    .await;
    w.pod("pod-a", "web", "http", &pod_a, true);
    w.pod("pod-b", "web", "http", &pod_b, true);
    eventually(Duration::from_secs(20), "both pods to serve", || async {
        w.spread("web.test", "/", 16).await.len() == 2
    })
    .await;
    w.kubectl(&["delete", "endpointslice", "pod-a"]);
    let changed = Instant::now();
    while w.spread("web.test", "/", 8).await.keys().ne(["pod-b"]) {
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "pod-a still served"
        );
    }
    w.controller.assert_nothing_forbidden();
}

/// The README's migration guide, as written: its ingress-nginx Ingress applied as it
/// stands (nginx's class: not ours), then its `kubectl patch` line (with this test's
/// class for `ceryx`).
#[tokio::test]
async fn the_readmes_move_from_ingress_nginx_works_as_written() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "migrate", false).await;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let guide = &readme[readme.find("<!-- ingress-nginx example").unwrap()..];
    let block = |fence: &str| {
        let start = guide.find(fence).unwrap() + fence.len();
        let end = start + guide[start..].find("```").unwrap();
        // The guide's code blocks are indented under a list item.
        guide[start..end]
            .lines()
            .map(|l| l.strip_prefix("   ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (yaml, patch) = (block("```yaml\n"), block("```sh\n"));
    let (api, storefront) = (
        Upstream::start("api").await,
        Upstream::start("storefront").await,
    );
    w.service("api", "[{port: 8080}]");
    w.service("storefront", "[{name: http, port: 80}]");
    w.pod("api", "api", "", &api, true);
    w.pod("storefront", "storefront", "http", &storefront, true);
    w.plane.apply_in(&w.ns, &yaml);
    assert_eq!(
        w.get("shop.example.com", "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ours yet"
    );

    let patch = patch.trim().replace("\"ceryx\"", &format!("{:?}", w.ns));
    let args = shell_words(&patch);
    assert_eq!(&args[..3], ["kubectl", "patch", "ingress"], "{patch}");
    w.kubectl(&args[1..].iter().map(String::as_str).collect::<Vec<_>>());

    w.wait("shop.example.com", "/", StatusCode::OK).await;
    assert_eq!(
        w.get("shop.example.com", "/cart")
            .await
            .upstream()
            .as_deref(),
        Some("storefront")
    );
    let api_reply = w.get("shop.example.com", "/api/orders?id=7").await;
    assert_eq!(api_reply.upstream().as_deref(), Some("api"));
    assert_eq!(api_reply.json()["path"], "/orders?id=7");
    w.wait_ingress_event("shop", "UnsupportedAnnotation", "configuration-snippet")
        .await;
    eventually(
        Duration::from_secs(20),
        "the address in kubectl get ingress",
        || async { w.kubectl(&["get", "ingress", "shop"]).contains("127.0.0.1") },
    )
    .await;
    w.controller.assert_nothing_forbidden();
}

/// Splits a shell line on spaces, keeping single-quoted words whole.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let (word, tail) = match rest.strip_prefix('\'') {
            Some(quoted) => quoted.split_once('\'').unwrap(),
            None => rest.split_once(' ').unwrap_or((rest, "")),
        };
        words.push(word.to_owned());
        rest = tail.trim_start();
    }
    words
}

/// `CERYX_PUBLISH_SERVICE`: the proxies' Service's load balancer address is what the
/// Ingresses say, and follows it.
#[tokio::test]
async fn the_address_of_the_proxies_service_is_published_on_ingresses() {
    let plane = ceryx_plane_or_skip!();
    let ns = plane.namespace("publish");
    let service = format!("{ns}/ceryx-proxy");
    let w = World(
        TrafficWorld::start_in(
            plane,
            ns.clone(),
            &[
                ("CERYX_INGRESS_CLASS", &ns),
                ("CERYX_LEASE_NAME", &ns),
                ("CERYX_PUBLISH_SERVICE", &service),
            ],
        )
        .await,
    );
    w.apply_to(&ns, &format!("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: {ns}\nspec:\n  controller: ceryx.dev/ingress-controller\n"));
    w.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: ceryx-proxy\nspec:\n  type: LoadBalancer\n  ports: [{port: 80}]\n");
    let balancer = |address: &str| {
        w.kubectl(&[
            "patch",
            "service",
            "ceryx-proxy",
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{address}"}}]}}}}}}"#),
        ]);
    };
    balancer("203.0.113.7");
    w.service("web", "[{port: 80}]");
    w.ingress("web", &[], "rules:\n- host: web.test\n  http:\n    paths:\n    - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n");
    let published = || {
        w.kubectl(&[
            "get",
            "ingress",
            "web",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ])
    };
    eventually(
        Duration::from_secs(20),
        "the balancer's address published",
        || async {
            // The publish address of the test world comes first.
            published() == "127.0.0.1 203.0.113.7"
        },
    )
    .await;
    balancer("203.0.113.8");
    eventually(
        Duration::from_secs(20),
        "the new address published",
        || async { published() == "127.0.0.1 203.0.113.8" },
    )
    .await;
}
