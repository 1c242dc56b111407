//! Gateway API against a real kube-apiserver: the real `ceryx controller` (under the
//! chart's RBAC, with `gatewayAPI.enabled`) and `ceryx proxy`, a real Redis, echo
//! upstreams on 127.0.0.1 standing for pods. No endpoint controller runs here, so each
//! test writes the EndpointSlices a cluster would (see [`TrafficWorld`]). Each test has its own namespaces, GatewayClass (and controller
//! name), Redis and processes.

mod common;

use common::cluster::ControlPlane;
use common::tls::*;
use common::traffic::TrafficWorld;
use common::*;
use http::StatusCode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A test's own world ([`TrafficWorld`]) with its GatewayClass `<ns>`, served by
/// controller name `ceryx.dev/<ns>`.
struct World(TrafficWorld);

impl std::ops::Deref for World {
    type Target = TrafficWorld;

    fn deref(&self) -> &TrafficWorld {
        &self.0
    }
}

impl World {
    async fn start(plane: &'static ControlPlane, prefix: &str) -> World {
        let ns = plane.namespace(prefix);
        let controller_name = format!("ceryx.dev/{ns}");
        plane.apply_in(
            &ns,
            &format!("apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: {ns}\nspec:\n  controllerName: {controller_name}\n"),
        );
        let env = [
            ("CERYX_INGRESS_CLASS", ns.as_str()),
            ("CERYX_LEASE_NAME", ns.as_str()),
            ("CERYX_GATEWAY_CONTROLLER_NAME", controller_name.as_str()),
        ];
        World(TrafficWorld::start_in(plane, ns.clone(), &env).await)
    }

    fn apply(&self, namespace: &str, yaml: &str) {
        self.apply_to(namespace, yaml);
    }

    /// A Service `name` in `namespace` with one unnamed port 80, and its EndpointSlice
    /// with `upstream` as its one ready pod.
    fn service(&self, namespace: &str, name: &str, upstream: &Upstream) {
        self.apply(
            namespace,
            &format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports: [{{port: 80}}]\n"),
        );
        self.slice(namespace, name, name, "", upstream, true);
    }

    /// The object `kind/name` in `namespace`, as JSON.
    fn get(&self, namespace: &str, kind: &str, name: &str) -> Value {
        let out = self
            .plane
            .kubectl_ok(&["-n", namespace, "get", kind, name, "-o", "json"]);
        serde_json::from_str(&out).unwrap()
    }

    /// Polls until `check` holds for the object `kind/name`; returns it.
    async fn wait_object(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let obj = self.get(namespace, kind, name);
            if check(&obj) {
                return obj;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {kind} {name}: {what}; last seen {}\ncontroller log:\n{}",
                serde_json::to_string_pretty(&obj["status"]).unwrap(),
                self.controller.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Our entry in an HTTPRoute's `status.parents` for parent `gateway`.
    fn parent<'a>(&self, route: &'a Value, gateway: &str) -> Option<&'a Value> {
        route["status"]["parents"].as_array()?.iter().find(|p| {
            p["controllerName"] == format!("ceryx.dev/{}", self.ns)
                && p["parentRef"]["name"] == gateway
        })
    }
}

/// `(status, reason)` of condition `type_` in `conditions`.
fn condition(conditions: &Value, type_: &str) -> Option<(String, String)> {
    let c = conditions.as_array()?.iter().find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str()?.to_owned(),
        c["reason"].as_str()?.to_owned(),
    ))
}

fn is(conditions: &Value, type_: &str, status: &str, reason: &str) -> bool {
    condition(conditions, type_) == Some((status.to_owned(), reason.to_owned()))
}

/// Every condition in `conditions` carries `generation`.
fn observed(conditions: &Value, generation: &Value) {
    for c in conditions.as_array().unwrap() {
        assert_eq!(&c["observedGeneration"], generation, "{c}");
    }
}

#[tokio::test]
async fn a_gateway_and_its_httproute_are_served_as_written_with_every_status_field() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "gw").await;
    let ns = w.ns.clone();
    let (web, canary, api) = (
        Upstream::start("web").await,
        Upstream::start("canary").await,
        Upstream::start("api").await,
    );
    w.service(&ns, "web", &web);
    w.service(&ns, "canary", &canary);
    w.service(&ns, "api", &api);
    w.apply(
        &ns,
        &format!(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: edge
spec:
  gatewayClassName: {ns}
  listeners:
    - name: http
      port: 80
      protocol: HTTP
      hostname: "*.gw.test"
      allowedRoutes:
        namespaces: {{from: All}}
    - name: other
      port: 8080
      protocol: HTTP
      hostname: other.test
"#
        ),
    );
    w.apply(&ns, r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
spec:
  parentRefs: [{name: edge}]
  hostnames: [shop.gw.test, shop.elsewhere.test]
  rules:
    - matches: [{headers: [{name: x-canary, value: "1"}]}]
      backendRefs: [{name: canary, port: 80}]
    - matches: [{path: {type: PathPrefix, value: /split}}]
      backendRefs: [{name: web, port: 80, weight: 3}, {name: api, port: 80, weight: 1}]
    - matches: [{path: {type: Exact, value: /old}}]
      filters:
        - type: RequestRedirect
          requestRedirect: {scheme: https, hostname: new.gw.test, statusCode: 301, path: {type: ReplaceFullPath, replaceFullPath: /new}}
    - matches: [{path: {type: PathPrefix, value: /api}}]
      filters:
        - type: URLRewrite
          urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
        - type: RequestHeaderModifier
          requestHeaderModifier: {set: [{name: x-env, value: prod}]}
      backendRefs: [{name: api, port: 80}]
    - backendRefs: [{name: web, port: 80}]
"#);

    // Served as written.
    let home = w.wait_for("shop.gw.test", "/", &[], StatusCode::OK).await;
    assert_eq!(home.upstream().as_deref(), Some("web"));
    let canaried = w.send("shop.gw.test", "/", &[("x-canary", "1")]).await;
    assert_eq!(canaried.upstream().as_deref(), Some("canary"));
    let moved = w.send("shop.gw.test", "/old", &[]).await;
    assert_eq!(moved.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(moved.location(), "https://new.gw.test/new");
    let rewritten = w.send("shop.gw.test", "/api/items?x=1", &[]).await;
    assert_eq!(rewritten.upstream().as_deref(), Some("api"));
    assert_eq!(rewritten.json()["path"], "/v2/items?x=1");
    assert_eq!(rewritten.json()["headers"]["x-env"][0], "prod");
    let mut split: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..200 {
        let reply = w.send("shop.gw.test", "/split", &[]).await;
        *split
            .entry(reply.upstream().unwrap_or_default())
            .or_default() += 1;
    }
    let (to_web, to_api) = (
        split.get("web").copied().unwrap_or(0),
        split.get("api").copied().unwrap_or(0),
    );
    assert_eq!(to_web + to_api, 200, "{split:?}");
    assert!(
        (20..=80).contains(&to_api),
        "weights 3:1 over 200 requests: {split:?}"
    );
    // A host name no listener serves is not routed.
    let elsewhere = w.send("shop.elsewhere.test", "/", &[]).await;
    assert_eq!(elsewhere.status, StatusCode::SERVICE_UNAVAILABLE);

    // The GatewayClass.
    let class = w
        .wait_object("default", "gatewayclass", &ns, "Accepted", |c| {
            is(&c["status"]["conditions"], "Accepted", "True", "Accepted")
        })
        .await;
    let conditions = &class["status"]["conditions"];
    assert!(
        is(conditions, "SupportedVersion", "True", "SupportedVersion"),
        "{conditions}"
    );
    observed(conditions, &class["metadata"]["generation"]);
    assert!(
        class["status"]["supportedFeatures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "HTTPRoute")
    );

    // The Gateway: addresses, conditions, listeners.
    let gateway = w
        .wait_object(
            &ns,
            "gateway",
            "edge",
            "Programmed with one attached route",
            |g| {
                is(
                    &g["status"]["conditions"],
                    "Programmed",
                    "True",
                    "Programmed",
                ) && g["status"]["listeners"][0]["attachedRoutes"] == 1
            },
        )
        .await;
    let status = &gateway["status"];
    assert_eq!(
        status["addresses"],
        serde_json::json!([{"type": "IPAddress", "value": "127.0.0.1"}])
    );
    assert!(is(&status["conditions"], "Accepted", "True", "Accepted"));
    observed(&status["conditions"], &gateway["metadata"]["generation"]);
    let listeners = status["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 2);
    for listener in listeners {
        assert_eq!(
            listener["supportedKinds"],
            serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}])
        );
        let conditions = &listener["conditions"];
        assert!(is(conditions, "Accepted", "True", "Accepted"), "{listener}");
        assert!(
            is(conditions, "ResolvedRefs", "True", "ResolvedRefs"),
            "{listener}"
        );
        assert!(
            is(conditions, "Programmed", "True", "Programmed"),
            "{listener}"
        );
        assert!(
            is(conditions, "Conflicted", "False", "NoConflicts"),
            "{listener}"
        );
        observed(conditions, &gateway["metadata"]["generation"]);
    }
    assert_eq!(listeners[1]["name"], "other");
    assert_eq!(
        listeners[1]["attachedRoutes"], 0,
        "other.test is not the route's"
    );

    // The HTTPRoute's parent status.
    let route = w
        .wait_object(&ns, "httproute", "shop", "accepted by edge", |r| {
            w.parent(r, "edge")
                .is_some_and(|p| is(&p["conditions"], "Accepted", "True", "Accepted"))
        })
        .await;
    let parent = w.parent(&route, "edge").unwrap();
    // As the route says it (the API server fills in group and kind).
    assert_eq!(parent["parentRef"], route["spec"]["parentRefs"][0]);
    assert_eq!(parent["parentRef"]["name"], "edge");
    assert!(is(
        &parent["conditions"],
        "ResolvedRefs",
        "True",
        "ResolvedRefs"
    ));
    observed(&parent["conditions"], &route["metadata"]["generation"]);

    // Deleting the route takes its hosts away and detaches it.
    w.plane
        .kubectl_ok(&["-n", &ns, "delete", "httproute", "shop"]);
    w.wait_for("shop.gw.test", "/", &[], StatusCode::SERVICE_UNAVAILABLE)
        .await;
    w.wait_object(&ns, "gateway", "edge", "no attached route", |g| {
        g["status"]["listeners"][0]["attachedRoutes"] == 0
    })
    .await;
    w.controller.assert_nothing_forbidden();
}

#[tokio::test]
async fn other_classes_are_left_alone_and_a_backend_elsewhere_needs_a_reference_grant() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "gwref").await;
    let ns = w.ns.clone();
    let backends = plane.namespace("gwref-backends");
    let (web, shared) = (
        Upstream::start("web").await,
        Upstream::start("shared").await,
    );
    w.service(&ns, "web", &web);
    w.service(&backends, "shared", &shared);
    // Another implementation's class and Gateway, beside ours.
    w.apply(
        &ns,
        &format!("apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: {ns}-other\nspec:\n  controllerName: example.com/other\n"),
    );
    for (name, class) in [("ours", ns.clone()), ("theirs", format!("{ns}-other"))] {
        w.apply(
            &ns,
            &format!(
                r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {name}
spec:
  gatewayClassName: {class}
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
"#
            ),
        );
    }
    w.apply(
        &ns,
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: foreign
spec:
  parentRefs: [{name: theirs}]
  hostnames: [foreign.test]
  rules: [{backendRefs: [{name: web, port: 80}]}]
"#,
    );
    w.apply(
        &ns,
        &format!(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: crossing
spec:
  parentRefs: [{{name: ours}}, {{name: theirs}}]
  hostnames: [crossing.test]
  rules: [{{backendRefs: [{{name: shared, namespace: {backends}, port: 80}}]}}]
"#
        ),
    );

    // Without a grant: refused, and the rule (left with no backend) answers 500.
    let route = w
        .wait_object(&ns, "httproute", "crossing", "RefNotPermitted", |r| {
            w.parent(r, "ours")
                .is_some_and(|p| is(&p["conditions"], "ResolvedRefs", "False", "RefNotPermitted"))
        })
        .await;
    let parent = w.parent(&route, "ours").unwrap();
    assert!(
        is(&parent["conditions"], "Accepted", "True", "Accepted"),
        "{parent}"
    );
    assert!(
        w.parent(&route, "theirs").is_none(),
        "a parent of another class is not ours to judge"
    );
    assert_eq!(route["status"]["parents"].as_array().unwrap().len(), 1);
    w.wait_for("crossing.test", "/", &[], StatusCode::INTERNAL_SERVER_ERROR)
        .await;

    // With one: served.
    w.apply(
        &backends,
        &format!(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata:
  name: routes-of-{ns}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {ns}}}]
  to: [{{group: "", kind: Service, name: shared}}]
"#
        ),
    );
    let served = w.wait_for("crossing.test", "/", &[], StatusCode::OK).await;
    assert_eq!(served.upstream().as_deref(), Some("shared"));
    w.wait_object(&ns, "httproute", "crossing", "ResolvedRefs", |r| {
        w.parent(r, "ours")
            .is_some_and(|p| is(&p["conditions"], "ResolvedRefs", "True", "ResolvedRefs"))
    })
    .await;

    // The route of the other class only: no status from us, no host, and their Gateway
    // untouched.
    let foreign = w.get(&ns, "httproute", "foreign");
    assert!(
        foreign["status"]["parents"]
            .as_array()
            .is_none_or(|p| p.is_empty()),
        "{}",
        foreign["status"]
    );
    assert_eq!(
        w.send("foreign.test", "/", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let theirs = w.get(&ns, "gateway", "theirs");
    assert!(
        theirs["status"]["addresses"].is_null()
            && is(
                &theirs["status"]["conditions"],
                "Accepted",
                "Unknown",
                "Pending"
            ),
        "{}",
        theirs["status"]
    );
    let ours = w.get(&ns, "gateway", "ours");
    assert_eq!(ours["status"]["listeners"][0]["attachedRoutes"], 1);
    w.controller.assert_nothing_forbidden();
}

#[tokio::test]
async fn an_https_listener_serves_its_certificate_by_sni_once_a_grant_lets_it_use_the_secret() {
    let plane = ceryx_plane_or_skip!();
    let w = World::start(plane, "gwtls").await;
    let ns = w.ns.clone();
    let certs = plane.namespace("gwtls-certs");
    let web = Upstream::start("web").await;
    w.service(&ns, "web", &web);
    let (pem, der) = issue(&["secure.gwtls.test"]);
    plane.tls_secret(&certs, "secure", &pem);
    w.apply(
        &ns,
        &format!(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: edge
spec:
  gatewayClassName: {ns}
  listeners:
    - name: https
      port: 443
      protocol: HTTPS
      hostname: secure.gwtls.test
      tls: {{certificateRefs: [{{name: secure, namespace: {certs}}}]}}
    - name: broken
      port: 443
      protocol: HTTPS
      hostname: broken.gwtls.test
      tls: {{certificateRefs: [{{name: missing}}]}}
"#
        ),
    );
    w.apply(
        &ns,
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: site
spec:
  parentRefs: [{name: edge, sectionName: https}]
  hostnames: [secure.gwtls.test]
  rules: [{backendRefs: [{name: web, port: 80}]}]
"#,
    );
    let listener = |g: &Value, name: &str| {
        g["status"]["listeners"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["name"] == name).cloned())
            .unwrap_or_default()
    };
    // The Secret is in another namespace: refused until a grant there allows it.
    let gateway = w
        .wait_object(&ns, "gateway", "edge", "https RefNotPermitted", |g| {
            is(
                &listener(g, "https")["conditions"],
                "ResolvedRefs",
                "False",
                "RefNotPermitted",
            )
        })
        .await;
    let broken = listener(&gateway, "broken");
    assert!(
        is(
            &broken["conditions"],
            "ResolvedRefs",
            "False",
            "InvalidCertificateRef"
        ),
        "{broken}"
    );
    assert!(
        is(&broken["conditions"], "Programmed", "False", "Invalid"),
        "{broken}"
    );
    assert!(
        is(
            &gateway["status"]["conditions"],
            "Accepted",
            "False",
            "ListenersNotValid"
        ),
        "{}",
        gateway["status"]
    );
    w.wait_for("secure.gwtls.test", "/", &[], StatusCode::OK)
        .await;
    let sni = || async { leaf(&connect(w.https, Some("secure.gwtls.test"), &[b"http/1.1"]).await) };
    assert_ne!(
        sni().await,
        der,
        "not the Secret's certificate without a grant"
    );

    w.apply(
        &certs,
        &format!(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata:
  name: gateways-of-{ns}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: {ns}}}]
  to: [{{group: "", kind: Secret}}]
"#
        ),
    );
    let gateway = w
        .wait_object(&ns, "gateway", "edge", "https resolved", |g| {
            is(
                &listener(g, "https")["conditions"],
                "Programmed",
                "True",
                "Programmed",
            )
        })
        .await;
    assert_eq!(listener(&gateway, "https")["attachedRoutes"], 1);
    assert!(
        is(
            &gateway["status"]["conditions"],
            "Accepted",
            "True",
            "ListenersNotValid"
        ),
        "one listener of two is still broken: {}",
        gateway["status"]
    );
    eventually(
        Duration::from_secs(20),
        "the Secret's certificate by SNI",
        || async { sni().await == der },
    )
    .await;
    w.controller.assert_nothing_forbidden();
}
