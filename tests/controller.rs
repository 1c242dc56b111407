//! The reconciler against kube-rs's mocked API server (tower-test), with the exact
//! requests asserted, and a real Redis as the route store.

mod common;

use ceryx::controller::CeryxRoute;
use ceryx::controller::reconcile::{Context, FINALIZER, reconcile};
use ceryx::store::{CertificatePem, RouteStore};
use common::*;
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower_test::mock::Handle;

const FINALIZER_PATCH: &str = "/apis/ceryx.dev/v1alpha1/namespaces/shop/ceryxroutes/web?";
const STATUS: &str = "/apis/ceryx.dev/v1alpha1/namespaces/shop/ceryxroutes/web/status?&force=true&fieldManager=ceryx-controller";

/// The test's side of the mocked API server.
type ApiServer = Handle<Request<Body>, Response<Body>>;

fn resource(spec: Value, finalizer: bool, deleting: bool) -> CeryxRoute {
    named("web", "2026-03-01T00:00:00Z", spec, finalizer, deleting)
}

/// A resource in namespace `shop` created at `created`.
fn named(name: &str, created: &str, spec: Value, finalizer: bool, deleting: bool) -> CeryxRoute {
    let mut metadata = json!({"name": name, "namespace": "shop", "generation": 3, "uid": format!("u-{name}"), "creationTimestamp": created});
    if finalizer {
        metadata["finalizers"] = json!([FINALIZER]);
    }
    if deleting {
        metadata["deletionTimestamp"] = json!("2026-11-27T20:00:00Z");
    }
    serde_json::from_value(json!({"apiVersion": "ceryx.dev/v1alpha1", "kind": "CeryxRoute", "metadata": metadata, "spec": spec})).unwrap()
}

fn url_spec(source: &str) -> Value {
    json!({"source": source, "target": {"url": "http://web.internal:8080"}})
}

/// A mocked API server and a context over a real Redis store.
fn setup(redis: &RedisServer) -> (Arc<Context>, ApiServer, Arc<dyn RouteStore>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let store: Arc<dyn RouteStore> = redis.store();
    let context = Context::new(
        kube::Client::new(service, "default"),
        store.clone(),
        "cluster.local".into(),
        "ceryx".into(),
    );
    (Arc::new(context), handle, store)
}

/// Answers the next API call after checking its method and path (with query); returns
/// its JSON body.
async fn expect(
    handle: &mut ApiServer,
    method: Method,
    path_and_query: &str,
    answer: &CeryxRoute,
) -> Value {
    let answer = serde_json::to_value(answer).unwrap();
    expect_answer(handle, method, path_and_query, 200, &answer).await
}

/// [`expect`], answering with `status` and `answer`.
async fn expect_answer(
    handle: &mut ApiServer,
    method: Method,
    path_and_query: &str,
    status: u16,
    answer: &Value,
) -> Value {
    let (request, respond) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("no API call")
        .expect("the client went away");
    assert_eq!(request.method(), method);
    assert_eq!(
        request.uri().path_and_query().unwrap().as_str(),
        path_and_query
    );
    let body = request.into_body().collect_bytes().await.unwrap();
    respond.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(answer).unwrap()))
            .unwrap(),
    );
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

/// Answers the Event the controller publishes (echoing it back) and returns it. A repeat
/// of the same reason on the same resource is a PATCH of the first one's series.
async fn expect_event(handle: &mut ApiServer) -> Value {
    let (request, respond) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("no Event published")
        .expect("the client went away");
    let path = request.uri().path_and_query().unwrap().as_str().to_owned();
    match *request.method() {
        Method::POST => assert_eq!(path, format!("{EVENTS}?")),
        Method::PATCH => assert!(path.starts_with(&format!("{EVENTS}/web.")), "{path}"),
        ref other => panic!("{other} {path}"),
    }
    let body = request.into_body().collect_bytes().await.unwrap();
    respond.send_response(Response::builder().body(Body::from(body.clone())).unwrap());
    serde_json::from_slice(&body).unwrap()
}

fn condition<'a>(status_patch: &'a Value, type_: &str) -> &'a Value {
    status_patch["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

#[tokio::test]
async fn a_new_resource_first_gets_the_finalizer_and_nothing_else() {
    let redis = RedisServer::start().await;
    let (ctx, mut api, store) = setup(&redis);
    let obj = resource(url_spec("web.example.com"), false, false);
    let answer = resource(url_spec("web.example.com"), true, false);
    let (result, patch) = tokio::join!(
        reconcile(Arc::new(obj), ctx),
        expect(&mut api, Method::PATCH, FINALIZER_PATCH, &answer)
    );
    result.unwrap();
    assert_eq!(
        patch,
        json!([{"op": "test", "path": "/metadata/finalizers", "value": null}, {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
    );
    assert_eq!(
        store.get("web.example.com").await.unwrap(),
        None,
        "written before the finalizer was in place"
    );
}

#[tokio::test]
async fn apply_writes_the_owned_route_and_reports_programmed() {
    let redis = RedisServer::start().await;
    let (ctx, mut api, store) = setup(&redis);
    let spec = json!({"source": "shop.example.com", "target": {"service": {"name": "storefront", "port": 8080}}, "settings": {"enforceHttps": true}});
    let obj = resource(spec.clone(), true, false);
    let api_server = async {
        let status = expect(&mut api, Method::PATCH, STATUS, &obj).await;
        (status, expect_event(&mut api).await)
    };
    let (result, (status, event)) = tokio::join!(reconcile(Arc::new(obj.clone()), ctx), api_server);
    result.unwrap();
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Normal"), Some("Programmed"))
    );
    assert_eq!(event["regarding"]["name"], "web");

    assert_eq!(status["apiVersion"], "ceryx.dev/v1alpha1");
    assert_eq!(status["status"]["observedGeneration"], 3);
    assert_eq!(
        status["status"]["target"],
        "http://storefront.shop.svc.cluster.local:8080"
    );
    for type_ in ["Accepted", "Programmed"] {
        let c = condition(&status, type_);
        assert_eq!(
            (
                c["status"].as_str(),
                c["reason"].as_str(),
                c["observedGeneration"].as_i64()
            ),
            (Some("True"), Some(type_), Some(3)),
            "{c}"
        );
    }
    let route = store.get("shop.example.com").await.unwrap().unwrap();
    assert_eq!(
        route.target,
        "http://storefront.shop.svc.cluster.local:8080"
    );
    assert!(route.settings.enforce_https);
    assert_eq!(
        store.owners().await.unwrap(),
        [("shop.example.com".to_string(), "shop/web".to_string())]
    );
}

#[tokio::test]
async fn a_host_someone_else_holds_is_a_conflict_and_stays_theirs() {
    let redis = RedisServer::start().await;
    let (ctx, mut api, store) = setup(&redis);
    owned(
        &*store,
        "taken.example.com",
        "http://older:80",
        "shop/older",
    )
    .await;
    store
        .put(&route("api.example.com", "http://api-made:80"))
        .await
        .unwrap();

    let older = named(
        "older",
        "2026-01-01T00:00:00Z",
        url_spec("taken.example.com"),
        true,
        false,
    );
    for (host, expected) in [
        ("taken.example.com", "shop/older"),
        ("api.example.com", "REST API"),
    ] {
        let obj = resource(url_spec(host), true, false);
        let api_server = async {
            if host == "taken.example.com" {
                // The holder is looked up: it is older, so it keeps the host.
                let path = "/apis/ceryx.dev/v1alpha1/namespaces/shop/ceryxroutes/older";
                expect(&mut api, Method::GET, path, &older).await;
            }
            let status = expect(&mut api, Method::PATCH, STATUS, &obj).await;
            let event = expect_event(&mut api).await;
            assert_eq!(
                (event["type"].as_str(), event["reason"].as_str()),
                (Some("Warning"), Some("HostConflict"))
            );
            status
        };
        let (result, status) =
            tokio::join!(reconcile(Arc::new(obj.clone()), ctx.clone()), api_server);
        result.unwrap();
        for type_ in ["Accepted", "Programmed"] {
            let c = condition(&status, type_);
            assert_eq!(
                (c["status"].as_str(), c["reason"].as_str()),
                (Some("False"), Some("HostConflict")),
                "{c}"
            );
            assert!(c["message"].as_str().unwrap().contains(expected), "{c}");
        }
    }
    assert_eq!(
        store
            .get("taken.example.com")
            .await
            .unwrap()
            .unwrap()
            .target,
        "http://older:80"
    );
    assert_eq!(
        store.get("api.example.com").await.unwrap().unwrap().target,
        "http://api-made:80"
    );
}

#[tokio::test]
async fn deletion_removes_our_route_and_leaves_a_foreign_one_alone() {
    let redis = RedisServer::start().await;
    let (ctx, mut api, store) = setup(&redis);
    owned(&*store, "mine.example.com", "http://web:80", "shop/web").await;
    owned(
        &*store,
        "theirs.example.com",
        "http://other:80",
        "shop/other",
    )
    .await;

    for host in ["mine.example.com", "theirs.example.com"] {
        let obj = resource(url_spec(host), true, true);
        let answer = resource(url_spec(host), false, true);
        let (result, patch) = tokio::join!(
            reconcile(Arc::new(obj), ctx.clone()),
            expect(&mut api, Method::PATCH, FINALIZER_PATCH, &answer)
        );
        result.unwrap();
        assert_eq!(
            patch,
            json!([{"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER}, {"op": "remove", "path": "/metadata/finalizers/0"}])
        );
    }
    assert_eq!(store.get("mine.example.com").await.unwrap(), None);
    assert_eq!(
        store
            .get("theirs.example.com")
            .await
            .unwrap()
            .unwrap()
            .target,
        "http://other:80"
    );
}

#[tokio::test]
async fn resources_of_another_class_are_not_touched() {
    let redis = RedisServer::start().await;
    let (ctx, mut api, store) = setup(&redis);
    let mut spec = url_spec("nginx.example.com");
    spec["ingressClassName"] = json!("nginx");
    reconcile(Arc::new(resource(spec, false, false)), ctx)
        .await
        .unwrap();
    // The client is gone with the context: any call it made would be waiting here.
    let call = tokio::time::timeout(Duration::from_millis(100), api.next_request()).await;
    assert!(matches!(call, Err(_) | Ok(None)), "an API call was made");
    assert_eq!(store.get("nginx.example.com").await.unwrap(), None);
}

#[tokio::test]
async fn garbage_collection_removes_only_routes_of_resources_that_are_gone() {
    let redis = RedisServer::start().await;
    let (ctx, mut api, store) = setup(&redis);
    for (host, owner) in [
        ("kept.example.com", "shop/web"),
        ("orphan.example.com", "shop/gone"),
    ] {
        owned(&*store, host, "http://x:80", owner).await;
    }
    store
        .put(&route("api.example.com", "http://x:80"))
        .await
        .unwrap();
    let list = json!({
        "apiVersion": "ceryx.dev/v1alpha1", "kind": "CeryxRouteList", "metadata": {"resourceVersion": "7"},
        "items": [resource(url_spec("kept.example.com"), true, false)]
    });
    let server = async {
        let (request, respond) = api.next_request().await.expect("no list call");
        assert_eq!(
            (request.method(), request.uri().to_string().as_str()),
            (&Method::GET, "/apis/ceryx.dev/v1alpha1/ceryxroutes?")
        );
        respond.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&list).unwrap()))
                .unwrap(),
        );
    };
    let (removed, ()) = tokio::join!(ceryx::controller::reconcile::collect_garbage(&ctx), server);
    assert_eq!(removed.unwrap(), 1);
    assert_eq!(store.get("orphan.example.com").await.unwrap(), None);
    assert!(store.get("kept.example.com").await.unwrap().is_some());
    assert!(
        store.get("api.example.com").await.unwrap().is_some(),
        "a REST API route is nobody's garbage"
    );
}

#[tokio::test]
async fn an_older_resource_takes_its_host_from_a_newer_one_and_says_so_on_both() {
    let redis = RedisServer::start().await;
    let (ctx, mut api, store) = setup(&redis);
    owned(&*store, "both.example.com", "http://newer:80", "shop/newer").await;
    let newer = named(
        "newer",
        "2026-06-01T00:00:00Z",
        url_spec("both.example.com"),
        true,
        false,
    );
    let obj = resource(url_spec("both.example.com"), true, false);

    let api_server = async {
        expect(
            &mut api,
            Method::GET,
            "/apis/ceryx.dev/v1alpha1/namespaces/shop/ceryxroutes/newer",
            &newer,
        )
        .await;
        let theirs = expect(
            &mut api,
            Method::PATCH,
            &STATUS.replace("/web/", "/newer/"),
            &newer,
        )
        .await;
        let ours = expect(&mut api, Method::PATCH, STATUS, &obj).await;
        expect_event(&mut api).await;
        (theirs, ours)
    };
    let (result, (theirs, ours)) =
        tokio::join!(reconcile(Arc::new(obj.clone()), ctx.clone()), api_server);
    result.unwrap();
    assert_eq!(condition(&theirs, "Programmed")["reason"], "HostConflict");
    assert!(
        condition(&theirs, "Programmed")["message"]
            .as_str()
            .unwrap()
            .contains("shop/web")
    );
    assert_eq!(condition(&ours, "Programmed")["status"], "True");
    assert_eq!(
        store.owners().await.unwrap(),
        [("both.example.com".to_string(), "shop/web".to_string())]
    );
    assert_eq!(
        store.get("both.example.com").await.unwrap().unwrap().target,
        "http://web.internal:8080"
    );
}

#[tokio::test]
async fn a_resource_moved_to_another_class_gives_back_its_host_and_finalizer() {
    let redis = RedisServer::start().await;
    let (ctx, mut api, store) = setup(&redis);
    owned(&*store, "moved.example.com", "http://web:80", "shop/web").await;
    let mut spec = url_spec("moved.example.com");
    spec["ingressClassName"] = json!("nginx");
    let mut obj = resource(spec.clone(), true, false);
    obj.metadata.resource_version = Some("42".into());
    let answer = resource(spec, false, false);
    let (result, patch) = tokio::join!(
        reconcile(Arc::new(obj), ctx),
        expect(&mut api, Method::PATCH, FINALIZER_PATCH, &answer)
    );
    result.unwrap();
    assert_eq!(
        patch,
        json!({"metadata": {"finalizers": [], "resourceVersion": "42"}})
    );
    assert_eq!(store.get("moved.example.com").await.unwrap(), None);
}

#[tokio::test]
async fn reconciles_are_counted_by_result_and_timed() {
    // One recorder per test binary; other tests' reconciles may count too.
    let _ = ceryx::telemetry::install(None);
    let series =
        |result: &str| format!("ceryx_controller_reconciles_total{{result=\"{result}\"}} ");
    let count = |result: &str| {
        let text = ceryx::telemetry::render();
        let series = series(result);
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (ok, failed) = (count("ok"), count("error"));

    let redis = RedisServer::start().await;
    let (ctx, _api, _store) = setup(&redis);
    let mut spec = url_spec("other.example.com");
    spec["ingressClassName"] = json!("nginx");
    reconcile(Arc::new(resource(spec, false, false)), ctx.clone())
        .await
        .unwrap();
    let mut unnamed = resource(url_spec("x.example.com"), false, false);
    unnamed.metadata.namespace = None;
    assert!(reconcile(Arc::new(unnamed), ctx).await.is_err());

    assert!(count("ok") >= ok + 1.0);
    assert!(count("error") >= failed + 1.0);
    let text = ceryx::telemetry::render();
    assert!(
        text.contains("ceryx_controller_reconcile_duration_seconds_count"),
        "{text}"
    );
}

const SECRET: &str = "/api/v1/namespaces/shop/secrets/web-tls";

/// A `kubernetes.io/tls` Secret `web-tls` in `shop` holding `certificate` and `key`.
fn tls_secret(certificate: &str, key: &str) -> Value {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("web-tls".into()),
            namespace: Some("shop".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("tls.crt".to_owned(), bytes(certificate)),
                ("tls.key".to_owned(), bytes(key)),
            ]
            .into(),
        ),
        ..Default::default()
    };
    serde_json::to_value(secret).unwrap()
}

fn issue(name: &str) -> CertificatePem {
    let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    CertificatePem {
        certificate: made.cert.pem(),
        key: made.signing_key.serialize_pem(),
    }
}

/// Reconciles `obj` while the API server answers the Secret read with `secret` (status
/// and body); returns the status patch.
async fn reconcile_with_secret(
    obj: &CeryxRoute,
    ctx: &Arc<Context>,
    api: &mut ApiServer,
    secret: (u16, Value),
) -> Value {
    let api_server = async {
        expect_answer(api, Method::GET, SECRET, secret.0, &secret.1).await;
        let status = expect(api, Method::PATCH, STATUS, obj).await;
        expect_event(api).await;
        status
    };
    let (result, status) = tokio::join!(reconcile(Arc::new(obj.clone()), ctx.clone()), api_server);
    result.unwrap();
    status
}

fn tls_spec() -> Value {
    json!({"source": "tls.example.com", "target": {"url": "http://web.internal:8080"},
        "settings": {"tls": {"secretName": "web-tls"}}})
}

#[tokio::test]
async fn a_tls_secret_is_stored_for_the_proxies_and_updates_follow_it() {
    let redis = RedisServer::start().await;
    let (ctx, mut api, store) = setup(&redis);
    let obj = resource(tls_spec(), true, false);
    let stored = || async {
        store
            .certificates(&["tls.example.com"])
            .await
            .unwrap()
            .pop()
            .flatten()
    };

    let first = issue("tls.example.com");
    let secret = tls_secret(&first.certificate, &first.key);
    let status = reconcile_with_secret(&obj, &ctx, &mut api, (200, secret)).await;
    let programmed = condition(&status, "Programmed");
    assert_eq!(programmed["status"], "True", "{programmed}");
    assert!(
        programmed["message"]
            .as_str()
            .unwrap()
            .ends_with("(TLS from Secret web-tls)")
    );
    assert_eq!(stored().await, Some(first));

    // The Secret renewed (cert-manager does this): the next reconcile stores the new pair.
    let second = issue("tls.example.com");
    let secret = tls_secret(&second.certificate, &second.key);
    reconcile_with_secret(&obj, &ctx, &mut api, (200, secret)).await;
    assert_eq!(stored().await, Some(second));
}

#[tokio::test]
async fn a_missing_or_invalid_secret_is_reported_and_the_route_still_served() {
    let redis = RedisServer::start().await;
    let (ctx, mut api, store) = setup(&redis);
    let obj = resource(tls_spec(), true, false);
    let good = issue("tls.example.com");
    let other = issue("tls.example.com");
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "secrets \"web-tls\" not found", "reason": "NotFound", "code": 404});
    let mut opaque = tls_secret(&good.certificate, &good.key);
    opaque["type"] = json!("Opaque");
    let cases = [
        ((200, tls_secret(&good.certificate, &good.key)), None),
        (
            (200, tls_secret("garbage", &good.key)),
            Some("no valid PEM certificate"),
        ),
        (
            (200, tls_secret(&good.certificate, &other.key)),
            Some("the key does not fit the certificate"),
        ),
        ((200, opaque), Some("type is Opaque, not kubernetes.io/tls")),
        ((404, not_found), Some("Secret shop/web-tls: not found")),
    ];
    for (secret, problem) in cases {
        let status = reconcile_with_secret(&obj, &ctx, &mut api, secret).await;
        let programmed = condition(&status, "Programmed");
        let stored = store
            .certificates(&["tls.example.com"])
            .await
            .unwrap()
            .pop()
            .flatten();
        match problem {
            None => {
                assert_eq!(programmed["status"], "True", "{programmed}");
                assert_eq!(stored.as_ref(), Some(&good));
            }
            Some(problem) => {
                assert_eq!(
                    (programmed["status"].as_str(), programmed["reason"].as_str()),
                    (Some("False"), Some("InvalidCertificate")),
                    "{programmed}"
                );
                let message = programmed["message"].as_str().unwrap();
                assert!(message.contains(problem), "{message}");
                assert_eq!(stored, None, "a bad Secret leaves the default certificate");
                assert_eq!(condition(&status, "Accepted")["status"], "True");
            }
        }
        // Plain HTTP is unaffected: the route is in the store whatever the Secret holds.
        let route = store.get("tls.example.com").await.unwrap().unwrap();
        assert_eq!(route.target, "http://web.internal:8080");
    }
}
