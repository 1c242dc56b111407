//! The controller against a real kube-apiserver: `kubectl` as a user runs it, the
//! real `ceryx controller` (under the chart's ServiceAccount and RBAC) and `ceryx proxy`
//! binaries, a real Redis. Each test has its own namespace, Redis and ingress class,
//! so the tests of this binary share one control plane without seeing each other.

mod common;

use ceryx::store::RouteStore;
use common::cluster::{ControlPlane, Controller};
use common::tls::*;
use common::*;
use http::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A test's own world: namespace (also its ingress class), Redis, controller, proxy.
struct World {
    plane: &'static ControlPlane,
    ns: String,
    redis: RedisServer,
    controller: Controller,
    proxy: Process,
    client: TestClient,
}

impl World {
    async fn start(plane: &'static ControlPlane, prefix: &str) -> World {
        World::start_with(plane, prefix, &[]).await
    }

    async fn start_with(
        plane: &'static ControlPlane,
        prefix: &str,
        proxy_env: &[(&str, String)],
    ) -> World {
        let ns = plane.namespace(prefix);
        let redis = RedisServer::start().await;
        let controller = Controller::start(
            plane,
            &redis,
            &[("CERYX_INGRESS_CLASS", &ns), ("CERYX_LEASE_NAME", &ns)],
        )
        .await;
        let mut env = vec![("CERYX_REDIS_URL", redis.url())];
        env.extend(proxy_env.iter().cloned());
        let proxy = Process::start("proxy", &env).await;
        World {
            plane,
            ns,
            redis,
            controller,
            proxy,
            client: TestClient::default(),
        }
    }

    /// `kubectl apply` of a CeryxRoute in this test's namespace and class.
    fn apply_route(&self, name: &str, spec: &str) -> String {
        let yaml = format!(
            "apiVersion: ceryx.dev/v1alpha1\nkind: CeryxRoute\nmetadata:\n  name: {name}\nspec:\n  ingressClassName: {}\n{}",
            self.ns,
            indent(spec)
        );
        self.plane.apply_in(&self.ns, &yaml).1
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        self.plane.kubectl_ok(&all)
    }

    fn get(&self, name: &str) -> Option<Value> {
        let out = self
            .plane
            .kubectl(&["-n", &self.ns, "get", "cxr", name, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// `(status, reason, message)` of a condition of a CeryxRoute.
    fn condition(&self, name: &str, type_: &str) -> Option<(String, String, String)> {
        let obj = self.get(name)?;
        let c = obj["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_)?
            .clone();
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
        Some((s("status"), s("reason"), s("message")))
    }

    async fn wait_condition(&self, name: &str, type_: &str, status: &str, reason: &str) {
        let what = format!("{name}: {type_}={status} ({reason})");
        let mut last = None;
        let start = Instant::now();
        loop {
            let now = self.condition(name, type_);
            if now
                .as_ref()
                .is_some_and(|(s, r, _)| s == status && r == reason)
            {
                return;
            }
            last = now.or(last);
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}; last seen {last:?}\ncontroller log:\n{}",
                self.controller.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the proxy answers `host` with `status`; returns the reply.
    async fn wait_answer(&self, host: &str, status: StatusCode) -> Reply {
        let log = || format!("controller log:\n{}", self.controller.log());
        let what = (host, "/", &[][..]);
        self.client
            .wait_for(self.proxy.addr, what, status, log)
            .await
    }

    /// Events on CeryxRoute `name` with `reason`: their notes.
    fn events(&self, name: &str, reason: &str) -> Vec<String> {
        let out = self.kubectl(&[
            "get",
            "events.events.k8s.io",
            "-o",
            "json",
            "--field-selector",
            &format!("regarding.name={name},reason={reason}"),
        ]);
        let list: Value = serde_json::from_str(&out).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn indent(spec: &str) -> String {
    spec.lines().map(|l| format!("  {l}\n")).collect()
}

#[tokio::test]
async fn the_crd_applies_server_side_without_warnings_and_validates_with_readable_messages() {
    let plane = ceryx_plane_or_skip!();
    let warnings = plane.install_ceryx();
    assert_eq!(
        warnings.trim(),
        "",
        "kubectl apply --server-side -f crds/ warned"
    );
    let crd: Value = serde_json::from_str(&plane.kubectl_ok(&[
        "get",
        "crd",
        "ceryxroutes.ceryx.dev",
        "-o",
        "json",
    ]))
    .unwrap();
    let established = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established);
    // `kubectl get ceryx` lists them by category.
    plane.kubectl_ok(&["get", "ceryx", "-A"]);

    let ns = plane.namespace("schema");
    let refused = |spec: &str| {
        let yaml = format!(
            "apiVersion: ceryx.dev/v1alpha1\nkind: CeryxRoute\nmetadata:\n  name: bad\nspec:\n{}",
            indent(spec)
        );
        let out = plane.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &yaml);
        assert!(!out.status.success(), "accepted: {spec}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let both =
        refused("source: a.test\ntarget:\n  url: http://a:1\n  service: {name: web, port: 80}");
    assert!(both.contains("exactly one of url or service"), "{both}");
    let redirect = refused(
        "source: a.test\ntarget:\n  service: {name: web, port: 80}\nsettings:\n  mode: redirect",
    );
    assert!(
        redirect.contains("mode: redirect needs target.url"),
        "{redirect}"
    );
    let port = refused("source: a.test\ntarget:\n  service: {name: web, port: 70000}");
    assert!(port.contains("65535"), "{port}");
    let secret = refused(
        "source: a.test\ntarget:\n  url: http://a:1\nsettings:\n  tls: {secretName: Not_A_Name}",
    );
    assert!(secret.contains("secretName"), "{secret}");
}

#[tokio::test]
async fn every_example_is_served_and_kubectl_wait_and_get_behave() {
    let plane = ceryx_plane_or_skip!();
    let upstream = Upstream::start("docs").await;
    let https = format!("127.0.0.1:{}", free_port());
    // The examples use the default class; this is the only test that does.
    let redis = RedisServer::start().await;
    let controller = Controller::start(plane, &redis, &[("CERYX_LEASE_NAME", "examples")]).await;
    let proxy = Process::start(
        "proxy",
        &[
            ("CERYX_REDIS_URL", redis.url()),
            ("CERYX_HTTPS_ADDR", https.clone()),
        ],
    )
    .await;
    plane.kubectl_ok(&["create", "namespace", "shop"]);
    // What the shop example refers to: its Service and its certificate's Secret.
    plane.apply_in(
        "shop",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: storefront\nspec:\n  ports: [{port: 8080}]\n",
    );
    let (pem, der) = issue(&["shop.example.com"]);
    plane.tls_secret("shop", "shop-example-com-tls", &pem);
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")).unwrap() {
        let path = entry.unwrap().path();
        // The example's placeholder backend becomes a real one on 127.0.0.1.
        let yaml = std::fs::read_to_string(&path)
            .unwrap()
            .replace("http://docs-backend.internal:8000", &upstream.url());
        let out = plane.kubectl_stdin(&["apply", "-f", "-"], &yaml);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for namespace in ["default", "shop"] {
        plane.kubectl_ok(&[
            "wait",
            "-n",
            namespace,
            "--for=condition=Programmed",
            "cxr",
            "--all",
            "--timeout=30s",
        ]);
    }
    let client = TestClient::default();
    let docs = client
        .get(proxy.addr, "docs.example.com", "/guide?x=1")
        .await;
    assert_eq!(docs.status, StatusCode::OK);
    assert_eq!(docs.json()["path"], "/site/guide?x=1");
    let brand = client
        .get(proxy.addr, "shop.old-brand.example", "/sale")
        .await;
    assert_eq!(brand.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(brand.location(), "https://www.new-brand.example/sale");
    let shop = client.get(proxy.addr, "shop.example.com", "/cart").await;
    assert_eq!(shop.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(shop.location(), "https://shop.example.com/cart");
    let served = leaf(
        &connect(
            https.parse().unwrap(),
            Some("shop.example.com"),
            &[b"http/1.1"],
        )
        .await,
    );
    assert_eq!(served, der, "the Secret's certificate is served by SNI");

    let table = plane.kubectl_ok(&["get", "cxr", "-A"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "HOST",
            "TARGET",
            "PROGRAMMED",
            "REASON",
            "AGE"
        ]
    );
    let shop_row = table.lines().find(|l| l.starts_with("shop ")).unwrap();
    for column in [
        "shop.example.com",
        "http://storefront.shop.svc.cluster.local:8080",
        "True",
        "Programmed",
    ] {
        assert!(shop_row.contains(column), "{shop_row}");
    }
    for namespace in ["default", "shop"] {
        plane.kubectl_ok(&["delete", "cxr", "--all", "-n", namespace, "--timeout=30s"]);
    }
    let gone = client.get(proxy.addr, "docs.example.com", "/").await;
    assert_eq!(gone.status, StatusCode::SERVICE_UNAVAILABLE);
    controller.assert_nothing_forbidden();
}

#[tokio::test]
async fn editing_the_source_moves_the_host_and_deleting_removes_it() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "edit").await;
    let upstream = Upstream::start("app").await;
    w.apply_route(
        "app",
        &format!("source: old.test\ntarget:\n  url: {}", upstream.url()),
    );
    w.wait_answer("old.test", StatusCode::OK).await;
    let finalizers = w.get("app").unwrap()["metadata"]["finalizers"].clone();
    assert_eq!(
        finalizers,
        serde_json::json!([format!("{}.ceryx.dev/route-cleanup", w.ns)])
    );

    w.apply_route(
        "app",
        &format!("source: new.test\ntarget:\n  url: {}", upstream.url()),
    );
    w.wait_answer("new.test", StatusCode::OK).await;
    w.wait_answer("old.test", StatusCode::SERVICE_UNAVAILABLE)
        .await;
    assert_eq!(w.get("app").unwrap()["status"]["source"], "new.test");

    w.kubectl(&["delete", "cxr", "app", "--timeout=20s"]);
    let reply = w.client.get(w.proxy.addr, "new.test", "/").await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "gone once kubectl delete returns"
    );
    assert!(w.redis.store().list().await.unwrap().is_empty());
    w.controller.assert_nothing_forbidden();
}

#[tokio::test]
async fn the_oldest_claim_wins_and_the_loser_takes_the_host_once_the_winner_is_gone() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "conflict").await;
    let (first, second) = (
        Upstream::start("first").await,
        Upstream::start("second").await,
    );
    w.apply_route(
        "first",
        &format!("source: shared.test\ntarget:\n  url: {}", first.url()),
    );
    w.wait_condition("first", "Programmed", "True", "Programmed")
        .await;
    w.apply_route(
        "second",
        &format!("source: shared.test\ntarget:\n  url: {}", second.url()),
    );
    w.wait_condition("second", "Accepted", "False", "HostConflict")
        .await;
    let (_, _, message) = w.condition("second", "Programmed").unwrap();
    assert!(message.contains(&format!("{}/first", w.ns)), "{message}");
    assert_eq!(
        w.client
            .served_by(w.proxy.addr, "shared.test")
            .await
            .as_deref(),
        Some("first")
    );
    eventually(Duration::from_secs(10), "a HostConflict Event", || async {
        !w.events("second", "HostConflict").is_empty()
    })
    .await;

    let deleted = Instant::now();
    w.kubectl(&["delete", "cxr", "first", "--timeout=20s"]);
    w.wait_condition("second", "Programmed", "True", "Programmed")
        .await;
    let took = deleted.elapsed();
    assert_eq!(
        w.client
            .served_by(w.proxy.addr, "shared.test")
            .await
            .as_deref(),
        Some("second")
    );
    assert!(
        took < Duration::from_secs(5),
        "the loser took the host after {took:?}"
    );
    eprintln!("figure: loser took the host {took:?} after the winner's delete");

    // A host made through the REST API is not taken without the annotation, and is
    // taken at once when that route goes.
    let store = w.redis.store();

    store.put(&route("api.test", &first.url())).await.unwrap();
    w.apply_route(
        "waits",
        &format!("source: api.test\ntarget:\n  url: {}", second.url()),
    );
    w.wait_condition("waits", "Accepted", "False", "HostConflict")
        .await;
    store.delete("api.test").await.unwrap();
    w.wait_condition("waits", "Programmed", "True", "Programmed")
        .await;
    assert_eq!(
        w.client
            .served_by(w.proxy.addr, "api.test")
            .await
            .as_deref(),
        Some("second")
    );
    w.controller.assert_nothing_forbidden();
}

#[tokio::test]
async fn a_missing_service_is_reported_and_nothing_is_routed_until_it_exists() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "service").await;
    w.apply_route(
        "web",
        "source: web.test\ntarget:\n  service: {name: web, port: 8080}",
    );
    w.wait_condition("web", "ResolvedRefs", "False", "BackendNotFound")
        .await;
    let (status, _, message) = w.condition("web", "Programmed").unwrap();
    assert_eq!(status, "False");
    assert!(
        message.contains("Service") && message.contains("not found"),
        "{message}"
    );
    w.wait_answer("web.test", StatusCode::SERVICE_UNAVAILABLE)
        .await;
    assert!(w.redis.store().get("web.test").await.unwrap().is_none());

    w.plane.apply_in(
        &w.ns,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 8080}]\n",
    );
    w.wait_condition("web", "Programmed", "True", "Programmed")
        .await;
    let stored = w.redis.store().get("web.test").await.unwrap().unwrap();
    assert_eq!(
        stored.target,
        format!("http://web.{}.svc.cluster.local:8080", w.ns)
    );

    // Gone again: the route goes with it.
    w.kubectl(&["delete", "service", "web"]);
    w.wait_condition("web", "ResolvedRefs", "False", "BackendNotFound")
        .await;
    assert!(w.redis.store().get("web.test").await.unwrap().is_none());
    w.controller.assert_nothing_forbidden();
}

#[tokio::test]
async fn a_tls_secret_is_served_by_sni_renewed_at_the_next_handshake_and_its_loss_reported() {
    let plane = ceryx_plane_or_skip!();
    let https: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let w = World::start_with(plane, "tls", &[("CERYX_HTTPS_ADDR", https.to_string())]).await;
    let upstream = Upstream::start("secure").await;
    let (pem, der) = issue(&["secure.test"]);
    plane.tls_secret(&w.ns, "secure-tls", &pem);
    w.apply_route(
        "secure",
        &format!(
            "source: secure.test\ntarget:\n  url: {}\nsettings:\n  tls: {{secretName: secure-tls}}",
            upstream.url()
        ),
    );
    w.wait_condition("secure", "Programmed", "True", "Programmed")
        .await;
    assert_eq!(
        leaf(&connect(https, Some("secure.test"), &[b"http/1.1"]).await),
        der
    );

    let (renewed, renewed_der) = issue(&["secure.test"]);
    plane.tls_secret(&w.ns, "secure-tls", &renewed);
    eventually(
        Duration::from_secs(10),
        "the renewed certificate",
        || async {
            leaf(&connect(https, Some("secure.test"), &[b"http/1.1"]).await) == renewed_der
        },
    )
    .await;

    w.kubectl(&["delete", "secret", "secure-tls"]);
    w.wait_condition("secure", "Programmed", "False", "InvalidCertificate")
        .await;
    let (_, _, message) = w.condition("secure", "ResolvedRefs").unwrap();
    assert!(
        message.contains("secure-tls") && message.contains("not found"),
        "{message}"
    );
    let served = leaf(&connect(https, Some("secure.test"), &[b"http/1.1"]).await);
    assert_ne!(served, renewed_der);
    assert!(
        served.windows(9).any(|w| w == b"localhost"),
        "the self-signed default"
    );
    // Plain HTTP is unaffected.
    assert_eq!(
        w.client
            .served_by(w.proxy.addr, "secure.test")
            .await
            .as_deref(),
        Some("secure")
    );
    w.controller.assert_nothing_forbidden();
}

/// Reconciles a controller counted so far (its own metrics).
async fn reconciles(client: &TestClient, controller: &Controller) -> f64 {
    let reply = client.get(controller.metrics, "metrics", "/metrics").await;
    String::from_utf8_lossy(&reply.body)
        .lines()
        .filter(|l| l.starts_with("ceryx_controller_reconciles_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn one_controller_leads_and_another_takes_over_when_it_dies_or_stalls() {
    let plane = ceryx_plane_or_skip!();
    let ns = plane.namespace("leader");
    let redis = RedisServer::start().await;
    let env = [
        ("CERYX_INGRESS_CLASS", ns.as_str()),
        ("CERYX_LEASE_NAME", ns.as_str()),
        ("CERYX_LEASE_DURATION", "3"),
    ];
    let a = Controller::start(plane, &redis, &env).await;
    let proxy = Process::start("proxy", &[("CERYX_REDIS_URL", redis.url())]).await;
    let client = TestClient::default();
    let upstream = Upstream::start("led").await;
    let apply = |name: &str| {
        let yaml = format!(
            "apiVersion: ceryx.dev/v1alpha1\nkind: CeryxRoute\nmetadata:\n  name: {name}\nspec:\n  ingressClassName: {ns}\n  source: {name}.test\n  target:\n    url: {}\n",
            upstream.url()
        );
        plane.apply_in(&ns, &yaml);
    };
    let served = |host: String| {
        let (client, addr) = (&client, proxy.addr);
        async move { client.served_by(addr, &host).await.as_deref() == Some("led") }
    };
    apply("one");
    eventually(Duration::from_secs(20), "one.test served", || {
        served("one.test".into())
    })
    .await;
    // A second replica starts, and stays a follower.
    let b = Controller::start(plane, &redis, &env).await;
    apply("two");
    eventually(Duration::from_secs(20), "two.test served", || {
        served("two.test".into())
    })
    .await;
    let holder = || {
        let lease: Value = serde_json::from_str(&plane.kubectl_ok(&[
            "get",
            "lease",
            &ns,
            "-n",
            common::cluster::RELEASE_NAMESPACE,
            "-o",
            "json",
        ]))
        .unwrap();
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (leader, follower) = if reconciles(&client, &a).await > 0.0 {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(
        reconciles(&client, &follower).await,
        0.0,
        "the follower reconciled"
    );
    assert!(reconciles(&client, &leader).await >= 2.0);
    let leader_identity = holder();

    // SIGKILL: the follower takes over within the lease duration and a few seconds.
    leader.signal("KILL");
    let killed = Instant::now();
    apply("three");
    eventually(
        Duration::from_secs(15),
        "three.test served after the failover",
        || served("three.test".into()),
    )
    .await;
    let failover = killed.elapsed();
    eprintln!("figure: failover after SIGKILL (lease 3 s) {failover:?}");
    assert_ne!(holder(), leader_identity);
    drop(leader);

    // A stalled leader (SIGSTOP past its lease) is replaced, and writes nothing when it
    // wakes: the new leader's routes stand.
    let standby = Controller::start(plane, &redis, &env).await;
    follower.signal("STOP");
    let stopped = Instant::now();
    apply("four");
    eventually(
        Duration::from_secs(15),
        "four.test served by the standby",
        || served("four.test".into()),
    )
    .await;
    eprintln!("figure: failover after SIGSTOP {:?}", stopped.elapsed());
    let standby_count = reconciles(&client, &standby).await;
    assert!(standby_count > 0.0);
    let logged_before_wake = follower.log().len();
    follower.signal("CONT");
    let mut woken = follower;
    let status = tokio::task::spawn_blocking(move || {
        let status = woken.child.wait();
        (woken, status)
    });
    let (woken, status) = tokio::time::timeout(Duration::from_secs(10), status)
        .await
        .expect("the stalled leader exits when it wakes")
        .unwrap();
    assert!(
        !status.unwrap().success(),
        "it exits to restart as a follower"
    );
    let log = woken.log();
    let after_wake = &log[logged_before_wake..];
    assert!(
        !after_wake.contains("route written"),
        "the stalled leader wrote: {after_wake}"
    );
    assert!(after_wake.contains("lost the leader lease"), "{after_wake}");
    for name in ["one", "two", "three", "four"] {
        assert!(served(format!("{name}.test")).await, "{name}.test");
    }
    standby.assert_nothing_forbidden();
}

#[tokio::test]
async fn fifty_routes_go_from_kubectl_apply_to_a_proxied_answer_in_milliseconds() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "latency").await;
    let upstream = Upstream::start("fast").await;
    let (mut took, mut after_kubectl) = (Vec::new(), Vec::new());
    for i in 0..50 {
        let host = format!("r{i}.fast.test");
        let applied = Instant::now();
        w.apply_route(
            &format!("r{i}"),
            &format!("source: {host}\ntarget:\n  url: {}", upstream.url()),
        );
        let returned = Instant::now();
        loop {
            if w.client.served_by(w.proxy.addr, &host).await.as_deref() == Some("fast") {
                break;
            }
            assert!(
                applied.elapsed() < Duration::from_secs(10),
                "{host} never served"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        took.push(applied.elapsed());
        after_kubectl.push(returned.elapsed());
    }
    for times in [&mut took, &mut after_kubectl] {
        times.sort();
    }
    let p50 = |t: &[Duration]| t[t.len() / 2];
    let p99 = |t: &[Duration]| t[t.len() * 99 / 100];
    eprintln!(
        "figure: kubectl apply -> first proxied 200 over 50 objects: p50 {:?}, p99 {:?}; after kubectl returned: p50 {:?}, p99 {:?}",
        p50(&took),
        p99(&took),
        p50(&after_kubectl),
        p99(&after_kubectl)
    );
    w.controller.assert_nothing_forbidden();
}

#[tokio::test]
async fn garbage_collection_leaves_the_routes_of_another_install_alone() {
    let plane = ceryx_plane_or_skip!();
    let ns = plane.namespace("installs");
    let redis = RedisServer::start().await;
    let install = |id: &'static str| {
        [
            ("CERYX_INGRESS_CLASS", ns.as_str()),
            ("CERYX_LEASE_NAME", ns.as_str()),
            ("CERYX_LEASE_DURATION", "3"),
            ("CERYX_INSTALL_ID", id),
        ]
    };
    let upstream = Upstream::start("kept").await;
    let alpha = Controller::start(plane, &redis, &install("alpha")).await;
    let yaml = format!(
        "apiVersion: ceryx.dev/v1alpha1\nkind: CeryxRoute\nmetadata:\n  name: gone\nspec:\n  ingressClassName: {ns}\n  source: gone.test\n  target:\n    url: {}\n",
        upstream.url()
    );
    plane.apply_in(&ns, &yaml);
    let store = redis.store();
    eventually(Duration::from_secs(20), "the route written", || async {
        store.get("gone.test").await.is_ok_and(|r| r.is_some())
    })
    .await;
    assert_eq!(
        store.owners().await.unwrap(),
        [("gone.test".to_owned(), format!("{ns}/gone@alpha"))]
    );
    // The resource goes while no controller of its install runs.
    drop(alpha);
    plane.kubectl_ok(&[
        "-n",
        &ns,
        "patch",
        "cxr",
        "gone",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    plane.kubectl_ok(&["-n", &ns, "delete", "cxr", "gone", "--timeout=20s"]);

    // Another install sharing the Redis prefix collects at start, and keeps it.
    let beta = Controller::start(plane, &redis, &install("beta")).await;
    eventually(
        Duration::from_secs(20),
        "beta's garbage collection",
        || async { beta.log().contains("garbage collection done") },
    )
    .await;
    assert!(
        store.get("gone.test").await.unwrap().is_some(),
        "beta removed alpha's route"
    );
    drop(beta);

    // Its own install's next start removes it.
    let again = Controller::start(plane, &redis, &install("alpha")).await;
    eventually(
        Duration::from_secs(20),
        "alpha's garbage collection",
        || async { store.get("gone.test").await.is_ok_and(|r| r.is_none()) },
    )
    .await;
    again.assert_nothing_forbidden();
}

/// Issue 19: a CeryxRoute's rules reach the proxy, a Service a rule names is resolved
/// (and reported while missing), and a rule only the controller can judge is refused
/// with the field named.
#[tokio::test]
async fn the_rules_of_a_ceryxroute_are_served_and_their_services_checked() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "rules").await;
    let (web, api) = (Upstream::start("web").await, Upstream::start("api").await);
    let spec = format!(
        "source: shop.test
target:
  url: {}
rules:
- matches:
  - path: {{type: PathPrefix, value: /api}}
  filters:
  - type: RequestHeaderModifier
    requestHeaderModifier:
      set: [{{name: x-env, value: prod}}]
  backendRefs:
  - url: {}
- matches:
  - path: {{type: Exact, value: /cart}}
  backendRefs:
  - service: {{name: cart, port: 8080}}",
        web.url(),
        api.url()
    );
    w.apply_route("shop", &spec);
    w.wait_condition("shop", "ResolvedRefs", "False", "BackendNotFound")
        .await;
    let (_, _, message) = w.condition("shop", "Programmed").unwrap();
    assert!(message.contains("cart"), "{message}");

    w.plane.apply_in(
        &w.ns,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: cart\nspec:\n  ports: [{port: 8080}]\n",
    );
    w.wait_condition("shop", "Programmed", "True", "Programmed")
        .await;
    let reply = w.client.get(w.proxy.addr, "shop.test", "/api/items").await;
    assert_eq!(reply.upstream().as_deref(), Some("api"));
    assert_eq!(
        reply.json()["headers"]["x-env"],
        serde_json::json!(["prod"])
    );
    assert_eq!(
        w.client
            .served_by(w.proxy.addr, "shop.test")
            .await
            .as_deref(),
        Some("web")
    );
    // The store holds the Service with its ready endpoints: none here, so 503.
    let stored = w.redis.store().get("shop.test").await.unwrap().unwrap();
    let cart = &stored.rules[1].backend_refs[0];
    assert_eq!(cart.service.as_ref().map(|s| s.name.as_str()), Some("cart"));
    assert!(cart.url.is_none() && cart.endpoints.is_empty(), "{cart:?}");
    assert!(
        w.condition("shop", "Programmed")
            .unwrap()
            .2
            .contains("no ready endpoints (answered 503): Service cart")
    );

    // The schema takes any string as a pattern; the controller compiles it.
    w.apply_route(
        "shop",
        &format!(
            "source: shop.test\ntarget:\n  url: {}\nrules:\n- matches:\n  - path: {{type: RegularExpression, value: '('}}",
            web.url()
        ),
    );
    w.wait_condition("shop", "Accepted", "False", "InvalidSpec")
        .await;
    let (_, _, message) = w.condition("shop", "Accepted").unwrap();
    assert!(
        message.starts_with("spec.rules[0].matches[0].path.value: "),
        "{message}"
    );
    w.controller.assert_nothing_forbidden();
}
