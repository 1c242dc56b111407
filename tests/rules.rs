//! Routing rules (issue 19) through what a user runs: the `ceryx` binary on a real
//! Redis, rules written through its REST API, real upstreams on 127.0.0.1.

mod common;

use ceryx::store::RouteStore;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use redis::AsyncCommands;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// `ceryx run` on a fresh Redis.
async fn ceryx(redis: &RedisServer) -> Process {
    Process::start("run", &[("CERYX_REDIS_URL", redis.url())]).await
}

/// Writes a route through the API; panics unless it is accepted.
async fn put(ceryx: &Process, route: Value) {
    let source = route["source"].as_str().unwrap().to_owned();
    let reply = TestClient::default()
        .send(
            ceryx.api,
            Request::put(format!("/api/routes/{source}")),
            route.to_string(),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

async fn get(ceryx: &Process, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::get(path).header("host", host);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    TestClient::default().send(ceryx.addr, req, "").await
}

fn name(reply: &Reply) -> String {
    reply
        .upstream()
        .unwrap_or_else(|| panic!("{}: {}", reply.status, String::from_utf8_lossy(&reply.body)))
}

#[tokio::test]
async fn every_match_kind_in_the_gateway_apis_precedence() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let names = [
        "target", "prefix", "long", "exact", "regex", "method", "header", "headers", "query",
    ];
    let mut upstreams = Vec::new();
    for name in names {
        upstreams.push(Upstream::start(name).await);
    }
    let url = |name: &str| upstreams[names.iter().position(|n| *n == name).unwrap()].url();
    let backend = |name: &str| json!([{"url": url(name)}]);
    put(
        &ceryx,
        json!({"source": "m.test", "target": url("target"), "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/a"}}], "backendRefs": backend("prefix")},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/a/b"}}], "backendRefs": backend("long")},
            {"matches": [{"path": {"type": "Exact", "value": "/a/b"}}], "backendRefs": backend("exact")},
            {"matches": [{"path": {"type": "RegularExpression", "value": "/r/[0-9]+"}}], "backendRefs": backend("regex")},
            {"matches": [{"path": {"value": "/a"}, "method": "POST"}], "backendRefs": backend("method")},
            {"matches": [{"path": {"value": "/a"}, "headers": [{"name": "X-Canary", "value": "1"}]}], "backendRefs": backend("header")},
            {"matches": [{"path": {"value": "/a"}, "headers": [{"name": "x-canary", "value": "1"},
                                                               {"name": "x-user", "type": "RegularExpression", "value": "u[0-9]+"}]}],
             "backendRefs": backend("headers")},
            {"matches": [{"path": {"value": "/a"}, "queryParams": [{"name": "v", "value": "2"}]}], "backendRefs": backend("query")},
        ]}),
    )
    .await;
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 12] = [
        ("GET", "/a/b", &[], "exact"),
        ("GET", "/a/b/c", &[], "long"),
        ("GET", "/a/bc", &[], "prefix"),
        ("GET", "/a", &[], "prefix"),
        ("GET", "/ab", &[], "target"),
        ("GET", "/r/42", &[], "regex"),
        ("GET", "/r/x", &[], "target"),
        (
            "POST",
            "/a",
            &[("x-canary", "1"), ("x-user", "u7")],
            "method",
        ),
        (
            "GET",
            "/a",
            &[("x-canary", "1"), ("x-user", "u7")],
            "headers",
        ),
        (
            "GET",
            "/a",
            &[("x-canary", "1"), ("x-user", "nobody")],
            "header",
        ),
        ("GET", "/a?v=2", &[], "query"),
        ("GET", "/a?v=3", &[], "prefix"),
    ];
    let client = TestClient::default();
    for (method, path, headers, expected) in cases {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "m.test");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let reply = client.send(ceryx.addr, req, "").await;
        assert_eq!(name(&reply), expected, "{method} {path} {headers:?}");
    }
}

#[tokio::test]
async fn each_filter_does_what_it_names() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let (web, api, mirror) = (
        Upstream::start("web").await,
        Upstream::start("api").await,
        Upstream::start("mirror").await,
    );
    put(
        &ceryx,
        json!({"source": "f.test", "target": web.url(), "rules": [
            {"matches": [{"path": {"value": "/api"}}],
             "filters": [
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                    "set": [{"name": "x-env", "value": "prod"}],
                    "add": [{"name": "x-added", "value": "yes"}],
                    "remove": ["x-secret"]}},
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                    "set": [{"name": "x-served-by", "value": "ceryx"}], "remove": ["content-type"]}},
                {"type": "URLRewrite", "urlRewrite": {"hostname": "internal.api",
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}},
                {"type": "RequestMirror", "requestMirror": {"backendRef": {"url": mirror.url()}}}],
             "backendRefs": [{"url": api.url()}]},
            {"matches": [{"path": {"type": "Exact", "value": "/full"}}],
             "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/elsewhere"}}}]},
            {"matches": [{"path": {"value": "/old"}}],
             "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "hostname": "new.test", "port": 8443,
                 "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}, "statusCode": 308}}]},
            {"matches": [{"path": {"value": "/moved"}}],
             "filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "other.test"}}]},
        ]}),
    )
    .await;

    let reply = get(
        &ceryx,
        "f.test",
        "/api/users?page=2",
        &[("x-env", "dev"), ("x-secret", "s")],
    )
    .await;
    assert_eq!(name(&reply), "api");
    let echoed = reply.json();
    assert_eq!(echoed["path"], "/v2/users?page=2");
    assert_eq!(echoed["headers"]["host"], json!(["internal.api"]));
    assert_eq!(echoed["headers"]["x-env"], json!(["prod"]));
    assert_eq!(echoed["headers"]["x-added"], json!(["yes"]));
    assert!(echoed["headers"].get("x-secret").is_none());
    assert_eq!(reply.headers["x-served-by"], "ceryx");
    assert!(reply.headers.get("content-type").is_none());
    eventually(
        Duration::from_secs(5),
        "the mirror to get its copy",
        || async { mirror.hits.load(std::sync::atomic::Ordering::SeqCst) == 1 },
    )
    .await;

    let full = get(&ceryx, "f.test", "/full?x=1", &[]).await;
    assert_eq!(
        (name(&full).as_str(), full.json()["path"].as_str()),
        ("web", Some("/elsewhere?x=1"))
    );

    let redirected = get(&ceryx, "f.test", "/old/page?q=1", &[]).await;
    assert_eq!(redirected.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirected.location(), "https://new.test:8443/new/page?q=1");
    let moved = get(&ceryx, "f.test", "/moved/x", &[]).await;
    assert_eq!(moved.status, StatusCode::FOUND, "the Gateway API's default");
    assert_eq!(moved.location(), "http://other.test/moved/x");
    // Unmatched paths keep the host's target, untouched.
    let plain = get(&ceryx, "f.test", "/other", &[("x-secret", "s")]).await;
    assert_eq!(name(&plain), "web");
    assert_eq!(plain.json()["headers"]["x-secret"], json!(["s"]));
    assert_eq!(web.hits.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn weights_split_traffic_as_the_gateway_api_defines() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let (v1, v2a, v2b, off) = (
        Upstream::start("v1").await,
        Upstream::start("v2a").await,
        Upstream::start("v2b").await,
        Upstream::start("off").await,
    );
    put(
        &ceryx,
        json!({"source": "w.test", "target": v1.url(), "rules": [{"backendRefs": [
            {"url": v1.url(), "weight": 90},
            {"endpoints": [v2a.url(), v2b.url()], "weight": 10},
            {"url": off.url(), "weight": 0}]}]}),
    )
    .await;
    let client = TestClient::default();
    const N: usize = 10_000;
    let mut served = std::collections::HashMap::<String, usize>::new();
    for _ in 0..N / 50 {
        let batch = (0..50).map(|_| client.get(ceryx.addr, "w.test", "/"));
        for reply in futures_util::future::join_all(batch).await {
            *served.entry(name(&reply)).or_default() += 1;
        }
    }
    let share = |n: &str| served.get(n).copied().unwrap_or(0) as f64 / N as f64;
    eprintln!("10,000 requests at 90/10: {served:?}");
    assert!((share("v1") - 0.90).abs() <= 0.02, "{served:?}");
    assert!(
        (share("v2a") + share("v2b") - 0.10).abs() <= 0.02,
        "{served:?}"
    );
    assert!(
        share("v2a") > 0.03 && share("v2b") > 0.03,
        "both endpoints of v2 serve: {served:?}"
    );
    assert_eq!(share("off"), 0.0);

    // Every weight 0: 500, as the Gateway API says.
    put(&ceryx, json!({"source": "z.test", "target": v1.url(), "rules": [{"backendRefs": [{"url": v1.url(), "weight": 0}]}]})).await;
    assert_eq!(
        get(&ceryx, "z.test", "/", &[]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn a_rule_bounds_each_attempt_and_the_whole_request() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let slow = Upstream::start("slow").await;
    put(
        &ceryx,
        json!({"source": "t.test", "target": slow.url(), "rules": [
            {"matches": [{"path": {"value": "/attempt"}}], "timeouts": {"backendRequest": "300ms"},
             "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/slow"}}}]},
            {"matches": [{"path": {"value": "/request"}}], "timeouts": {"request": "500ms"},
             "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/slow"}}}]},
            {"matches": [{"path": {"value": "/slow"}}], "timeouts": {"request": "10s", "backendRequest": "5s"}},
        ]}),
    )
    .await;
    for (path, limit) in [("/attempt", 300), ("/request", 500)] {
        let started = Instant::now();
        let reply = get(&ceryx, "t.test", path, &[]).await;
        let took = started.elapsed();
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{path}");
        assert!(
            took >= Duration::from_millis(limit) && took < Duration::from_millis(1800),
            "{path}: {took:?}"
        );
    }
    // Longer limits let the 2 s upstream answer.
    assert_eq!(
        get(&ceryx, "t.test", "/slow", &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn websocket_and_http2_pass_through_a_rule() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let (web, ws) = (Upstream::start("web").await, Upstream::start("ws").await);
    put(
        &ceryx,
        json!({"source": "u.test", "target": web.url(), "rules": [
            {"matches": [{"path": {"type": "Exact", "value": "/ws"}}], "backendRefs": [{"url": ws.url()}]}]}),
    )
    .await;
    let url = format!("ws://{}/ws", ceryx.addr);
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .unwrap();
    request
        .headers_mut()
        .insert("host", "u.test".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket.send(Message::text("through a rule")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_text().unwrap(), "through a rule");
    assert_eq!(ws.hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // HTTP/2 with prior knowledge: on one connection, each request is routed (here split
    // 50/50) on its own, so a long-lived connection is not pinned to one backend.
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    put(
        &ceryx,
        json!({"source": "h2.test", "target": web.url(), "rules": [
            {"matches": [{"path": {"value": "/api"}}], "backendRefs": [{"url": a.url()}, {"url": b.url()}]}]}),
    )
    .await;
    let stream = tokio::net::TcpStream::connect(ceryx.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let req = Request::get("http://h2.test/api/x")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let reply = sender.send_request(req).await.unwrap();
        assert_eq!(reply.version(), http::Version::HTTP_2);
        let body = http_body_util::BodyExt::collect(reply.into_body())
            .await
            .unwrap()
            .to_bytes();
        let echoed: Value = serde_json::from_slice(&body).unwrap();
        served.insert(echoed["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(served, ["a", "b"].map(String::from).into());
}

#[tokio::test]
async fn rules_are_stored_apart_and_old_tools_see_what_they_saw() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let web = Upstream::start("web").await;
    let client = TestClient::default();
    let rules = json!([{"matches": [{"path": {"type": "Exact", "value": "/x"}}], "backendRefs": [{"url": web.url()}]}]);
    put(
        &ceryx,
        json!({"source": "r.test", "target": web.url(), "rules": rules}),
    )
    .await;
    put(&ceryx, json!({"source": "plain.test", "target": web.url()})).await;

    let read = client
        .send(ceryx.api, Request::get("/api/routes/r.test"), "")
        .await
        .json();
    assert_eq!(read["rules"], rules);
    let plain = client
        .send(ceryx.api, Request::get("/api/routes/plain.test"), "")
        .await
        .json();
    assert!(
        plain.get("rules").is_none(),
        "no rules key for old clients: {plain}"
    );

    // Ceryx's keys hold exactly what old Ceryx wrote; the rules have a key of their own.
    let mut raw = redis.raw().await;
    let target: String = raw.get("ceryx:routes:r.test").await.unwrap();
    assert_eq!(target, web.url());
    let settings: std::collections::HashMap<String, String> =
        raw.hgetall("ceryx:settings:r.test").await.unwrap();
    let mut fields: Vec<&String> = settings.keys().collect();
    fields.sort();
    assert_eq!(fields, ["enforce_https", "mode"]);
    let stored: String = raw.get("ceryx:rules:r.test").await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&stored).unwrap(), rules);
    assert!(
        !raw.exists::<_, bool>("ceryx:rules:plain.test")
            .await
            .unwrap()
    );

    // An old tool rewriting the target leaves the rules; a PUT without rules drops them.
    let _: () = raw
        .set("ceryx:routes:r.test", "http://127.0.0.1:1")
        .await
        .unwrap();
    put(&ceryx, json!({"source": "r.test", "target": web.url()})).await;
    assert!(!raw.exists::<_, bool>("ceryx:rules:r.test").await.unwrap());
    // A delete takes the rules with the route.
    put(
        &ceryx,
        json!({"source": "gone.test", "target": web.url(), "rules": rules}),
    )
    .await;
    assert!(
        raw.exists::<_, bool>("ceryx:rules:gone.test")
            .await
            .unwrap()
    );
    let deleted = client
        .send(ceryx.api, Request::delete("/api/routes/gone.test"), "")
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(
        !raw.exists::<_, bool>("ceryx:rules:gone.test")
            .await
            .unwrap()
    );

    // Bad rules: 400 naming the field by its path, nothing written.
    let bad = json!({"source": "bad.test", "target": web.url(), "rules": [
        {"matches": [{"path": {"type": "Prefix", "value": "/"}}]}]});
    let reply = client
        .send(ceryx.api, Request::post("/api/routes"), bad.to_string())
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let message = reply.json()["errors"]["rules"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("rules[0].matches[0].path.type: unknown variant `Prefix`"),
        "{message}"
    );
    let bad = json!({"source": "bad.test", "target": web.url(), "rules": [
        {"backendRefs": [{"url": "http://a:1", "weight": 2000000}]}]});
    let reply = client
        .send(ceryx.api, Request::post("/api/routes"), bad.to_string())
        .await;
    assert_eq!(
        reply.json()["errors"]["rules"],
        "rules[0].backendRefs[0].weight: At most 1000000."
    );
    assert!(
        !raw.exists::<_, bool>("ceryx:routes:bad.test")
            .await
            .unwrap()
    );

    // A change of rules is served at once, by every replica (the notice is the same).
    let other = Upstream::start("other").await;
    let replica = Process::start("proxy", &[("CERYX_REDIS_URL", redis.url())]).await;
    assert_eq!(name(&client.get(replica.addr, "r.test", "/x").await), "web");
    put(&ceryx, json!({"source": "r.test", "target": web.url(), "rules": [
        {"matches": [{"path": {"type": "Exact", "value": "/x"}}], "backendRefs": [{"url": other.url()}]}]})).await;
    eventually(
        Duration::from_secs(1),
        "the replica to serve the new rules",
        || async {
            client
                .get(replica.addr, "r.test", "/x")
                .await
                .upstream()
                .as_deref()
                == Some("other")
        },
    )
    .await;
}

/// An upstream whose every answer `script(path)` decides: a status and a delay. It
/// reads the whole request body first and answers `{"name", "body_len"}`.
struct Scripted {
    addr: std::net::SocketAddr,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Scripted {
    async fn start(name: &'static str, script: fn(&str) -> (u16, u64)) -> Scripted {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            async move {
                                let (status, delay) = script(req.uri().path());
                                let body_len = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map_or(-1, |b| b.to_bytes().len() as i64);
                                tokio::time::sleep(Duration::from_millis(delay)).await;
                                let body = json!({"name": name, "body_len": body_len}).to_string();
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .status(status)
                                        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Scripted { addr, hits }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A loopback port nothing listens on: connections are refused.
fn refusing() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

#[tokio::test]
async fn a_slow_endpoint_gets_far_less_traffic() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    // Far apart, so that a loaded machine's scheduling delays cannot hide the difference.
    let fast_a = Scripted::start("fast-a", |_| (200, 10)).await;
    let fast_b = Scripted::start("fast-b", |_| (200, 10)).await;
    let slow = Scripted::start("slow", |_| (200, 200)).await;
    put(
        &ceryx,
        json!({"source": "b.test", "target": fast_a.url(), "rules": [
            {"backendRefs": [{"endpoints": [fast_a.url(), fast_b.url(), slow.url()]}]}]}),
    )
    .await;
    let client = TestClient::default();
    for _ in 0..30 {
        let batch = (0..10).map(|_| client.get(ceryx.addr, "b.test", "/"));
        for reply in futures_util::future::join_all(batch).await {
            assert_eq!(reply.status, StatusCode::OK);
        }
    }
    let (a, b, s) = (fast_a.hits(), fast_b.hits(), slow.hits());
    eprintln!("300 requests over two fast endpoints and one 20x slower: {a} / {b} / {s}");
    // Round robin would give the slow one a third (100).
    assert!(s < 30, "slow endpoint got {s} of 300");
    assert!(a > 50 && b > 50, "both fast endpoints serve: {a} / {b}");
}

#[tokio::test]
async fn a_refusing_endpoint_costs_at_most_its_first_failures() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let (a, b) = (
        Scripted::start("a", |_| (200, 0)).await,
        Scripted::start("b", |_| (200, 0)).await,
    );
    put(
        &ceryx,
        json!({"source": "o.test", "target": a.url(), "rules": [
            {"backendRefs": [{"endpoints": [a.url(), b.url(), refusing()]}]}]}),
    )
    .await;
    let client = TestClient::default();
    let mut failed_at = Vec::new();
    for i in 0..200 {
        if client.get(ceryx.addr, "o.test", "/").await.status != StatusCode::OK {
            failed_at.push(i);
        }
    }
    eprintln!("one of three endpoints refusing, no retries: failures at {failed_at:?}");
    // Envoy's rule: five consecutive failures eject it; the latency estimate keeps it
    // out of the choice even sooner.
    assert!(failed_at.len() <= 5, "{failed_at:?}");
    assert!(failed_at.iter().all(|i| *i < 50), "{failed_at:?}");
}

#[tokio::test]
async fn connect_failures_are_retried_on_another_endpoint_with_the_body() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let ok = Upstream::start("ok").await;
    let client = TestClient::default();
    // Fresh hosts with fresh dead endpoints: the first request of each has two chances
    // in three to meet a dead endpoint first.
    for host in ["r1.test", "r2.test", "r3.test"] {
        put(
            &ceryx,
            json!({"source": host, "target": ok.url(), "rules": [
                {"backendRefs": [{"endpoints": [refusing(), refusing(), ok.url()]}],
                 "retry": {"attempts": 2, "backoff": "1ms"}}]}),
        )
        .await;
        for _ in 0..10 {
            let body = vec![b'x'; 4096];
            let req = Request::post("/upload").header("host", host);
            let reply = client.send(ceryx.addr, req, body).await;
            assert_eq!(reply.status, StatusCode::OK, "{host}");
            assert_eq!(
                reply.json()["body_len"],
                4096,
                "{host}: the body reached the retry whole"
            );
        }
    }
}

#[tokio::test]
async fn statuses_are_retried_only_when_safe_and_within_the_budget() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let down = [
        Scripted::start("d1", |_| (503, 0)).await,
        Scripted::start("d2", |_| (503, 0)).await,
        Scripted::start("d3", |_| (503, 0)).await,
    ];
    let urls: Vec<String> = down.iter().map(Scripted::url).collect();
    put(
        &ceryx,
        json!({"source": "s.test", "target": urls[0], "rules": [
            {"backendRefs": [{"endpoints": urls}],
             "retry": {"attempts": 3, "codes": [503], "backoff": "1ms"}}]}),
    )
    .await;
    let hits = || down.iter().map(Scripted::hits).sum::<usize>();
    let client = TestClient::default();

    // A POST whose body was sent is never retried; a GET is, up to its attempts.
    let post = client
        .send(
            ceryx.addr,
            Request::post("/").header("host", "s.test"),
            "payload",
        )
        .await;
    assert_eq!((post.status, hits()), (StatusCode::SERVICE_UNAVAILABLE, 1));
    let get = client.get(ceryx.addr, "s.test", "/").await;
    assert_eq!(
        (get.status, hits()),
        (StatusCode::SERVICE_UNAVAILABLE, 1 + 4)
    );

    // With every endpoint failing, the budget (20 % of requests, plus 3 a second over
    // 10 s) caps retries: 4 attempts a request would make 800 for 200 requests.
    for _ in 0..198 {
        client.get(ceryx.addr, "s.test", "/").await;
    }
    let total = hits();
    eprintln!("200 GETs, 3 retries each allowed, every endpoint 503: {total} upstream requests");
    assert!((230..=290).contains(&total), "{total}");
}

#[tokio::test]
async fn active_health_checks_take_a_failing_endpoint_out() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let healthy = Scripted::start("healthy", |_| (200, 0)).await;
    // Serves requests but fails its health check: only an active check sees it.
    let sick = Scripted::start("sick", |path| {
        if path == "/healthz" {
            (503, 0)
        } else {
            (200, 0)
        }
    })
    .await;
    put(
        &ceryx,
        json!({"source": "h.test", "target": healthy.url(), "rules": [
            {"backendRefs": [{"endpoints": [healthy.url(), sick.url()],
              "healthCheck": {"path": "/healthz", "interval": "100ms", "timeout": "1s", "unhealthyThreshold": 1}}]}]}),
    )
    .await;
    let client = TestClient::default();
    eventually(
        Duration::from_secs(10),
        "the sick endpoint to be taken out",
        || async {
            for _ in 0..30 {
                if name(&client.get(ceryx.addr, "h.test", "/").await) != "healthy" {
                    return false;
                }
            }
            true
        },
    )
    .await;
}

#[tokio::test]
async fn a_mirror_pointing_back_at_the_proxy_is_refused_not_repeated() {
    let redis = RedisServer::start().await;
    let ceryx = ceryx(&redis).await;
    let web = Upstream::start("web").await;
    let rules = json!([{"filters": [{"type": "RequestMirror",
        "requestMirror": {"backendRef": {"url": format!("http://127.0.0.1:{}", ceryx.addr.port())}}}]}]);
    // The API refuses it, naming the rule.
    let body = json!({"source": "loop.test", "target": web.url(), "rules": rules});
    let reply = TestClient::default()
        .send(ceryx.api, Request::post("/api/routes"), body.to_string())
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let message = reply.json()["errors"]["rules"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("rules[0]: ") && message.contains("own listener"),
        "{message}"
    );

    // Written straight into the store, each copy comes back carrying the proxy's
    // CDN-Loop token and is answered 508 instead of being served and mirrored again.
    let mut looping = route("loop.test", &web.url());
    looping.rules = serde_json::from_value(rules).unwrap();
    redis.store().put(&looping).await.unwrap();
    for _ in 0..5 {
        assert_eq!(
            get(&ceryx, "loop.test", "/", &[]).await.status,
            StatusCode::OK
        );
    }
    // Absence can only be watched for: a copy served would have reached `web` (and been
    // mirrored again, without end) within milliseconds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(web.hits.load(std::sync::atomic::Ordering::SeqCst), 5);
}
