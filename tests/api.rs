//! The REST API against a real Redis: every call of the table with and without
//! trailing slashes, the exact JSON, every error, auth, and old clients' habits.

mod common;

use ceryx::store::RouteStore;
use common::*;
use http::{Request, StatusCode};
use redis::AsyncCommands;
use std::collections::HashMap;

fn body(source: &str) -> String {
    format!(
        r#"{{"source": "{source}", "target": "http://somewhere", "settings": {{"enforce_https": false, "mode": "proxy", "certificate_path": null, "key_path": null}}}}"#
    )
}

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

#[tokio::test]
async fn every_call_answers_with_and_without_trailing_slash() {
    let redis = RedisServer::start().await;
    let api = RunningApi::start(redis.store(), None).await;
    let client = TestClient::default();

    for (i, collection) in ["/api/routes", "/api/routes/", "/route", "/route/"]
        .iter()
        .enumerate()
    {
        let source = format!("{i}.api.ceryx.test");
        let created = client
            .send(
                api.addr,
                Request::post(*collection),
                format!(r#"{{"source": "{source}", "target": "http://somewhere"}}"#),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "POST {collection}");
        assert_eq!(created.headers["content-type"], "application/json");
        // Byte for byte what Ceryx 0.6+ answers (Python's json.dumps separators).
        assert_eq!(text(&created), body(&source), "POST {collection}");

        let listed = client.send(api.addr, Request::get(*collection), "").await;
        assert_eq!(listed.status, StatusCode::OK, "GET {collection}");
        let sources: Vec<String> = listed
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["source"].as_str().unwrap().to_owned())
            .collect();
        assert!(sources.contains(&source), "GET {collection}: {sources:?}");

        for slash in ["", "/"] {
            let item = format!("/api/routes/{source}{slash}");
            let read = client.send(api.addr, Request::get(&item), "").await;
            assert_eq!(
                (read.status, text(&read)),
                (StatusCode::OK, body(&source)),
                "GET {item}"
            );

            let put = client
                .send(
                    api.addr,
                    Request::put(&item),
                    r#"{"target": "other:8080", "settings": {"mode": "redirect"}}"#,
                )
                .await;
            assert_eq!(put.status, StatusCode::OK, "PUT {item}");
            assert_eq!(put.json()["target"], "http://other:8080");
            assert_eq!(put.json()["settings"]["mode"], "redirect");
            assert_eq!(
                client.send(api.addr, Request::get(&item), "").await.json(),
                put.json()
            );

            let deleted = client.send(api.addr, Request::delete(&item), "").await;
            assert_eq!(
                (deleted.status, deleted.body.len()),
                (StatusCode::NO_CONTENT, 0),
                "DELETE {item}"
            );
            let gone = client.send(api.addr, Request::get(&item), "").await;
            assert_eq!(gone.status, StatusCode::NOT_FOUND);
            assert_eq!(
                text(&gone),
                format!(r#"{{"detail": "No route found for {source}."}}"#)
            );
            let again = client.send(api.addr, Request::delete(&item), "").await;
            assert_eq!(again.status, StatusCode::NO_CONTENT, "DELETE is idempotent");

            // Recreate for the next slash form.
            client
                .send(
                    api.addr,
                    Request::put(&item),
                    r#"{"target": "http://somewhere"}"#,
                )
                .await;
        }
    }
}

#[tokio::test]
async fn errors_are_json_with_the_field_named_and_nothing_is_written() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let api = RunningApi::start(store.clone(), None).await;
    let client = TestClient::default();
    let post = |body: &'static str| client.send(api.addr, Request::post("/api/routes"), body);

    let bad_json = post(r#"{"source": "x.test", "target": "#).await;
    assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_json.json()["detail"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    let missing = post(r#"{"source": "x.test"}"#).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.json()["errors"]["target"],
        "This field is required."
    );
    assert_eq!(missing.json()["detail"], "Invalid route.");

    let bad = post(r#"{"source": "not a host", "target": "ftp://x", "settings": {"mode": "tunnel", "enforce_https": "perhaps"}}"#).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let errors = &bad.json()["errors"];
    assert!(
        errors["source"].is_string() && errors["target"].is_string(),
        "{errors}"
    );
    assert!(
        errors["settings"]["mode"].is_string() && errors["settings"]["enforce_https"].is_string(),
        "{errors}"
    );

    let form = client
        .send(
            api.addr,
            Request::post("/api/routes")
                .header("content-type", "application/x-www-form-urlencoded"),
            "source=x.test&target=y",
        )
        .await;
    assert_eq!(form.status, StatusCode::BAD_REQUEST);
    assert_eq!(post(r#"["x.test"]"#).await.status, StatusCode::BAD_REQUEST);

    let huge = client
        .send(
            api.addr,
            Request::post("/api/routes"),
            format!(r#"{{"source": "{}"}}"#, "a".repeat(100_000)),
        )
        .await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(huge.json()["detail"].is_string());

    for (method, path) in [
        ("PATCH", "/api/routes/x.test"),
        ("DELETE", "/api/routes"),
        ("POST", "/api/routes/x.test/"),
    ] {
        let reply = client
            .send(api.addr, Request::builder().method(method).uri(path), "")
            .await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(reply.json()["detail"], "Method not allowed.");
    }
    let unknown = client
        .send(api.addr, Request::get("/api/nothing"), "")
        .await;
    assert_eq!(
        (unknown.status, unknown.json()["detail"].as_str()),
        (StatusCode::NOT_FOUND, Some("Not found."))
    );

    assert!(
        store.list().await.unwrap().is_empty(),
        "a refused call wrote something"
    );
}

#[tokio::test]
async fn a_token_guards_every_call_but_the_probes() {
    let redis = RedisServer::start().await;
    let api = RunningApi::start(redis.store(), Some("s3cret-token")).await;
    let client = TestClient::default();

    for auth in [
        None,
        Some("Bearer wrong"),
        Some("s3cret-token"),
        Some("Bearer s3cret-token-and-more"),
    ] {
        let mut req = Request::get("/api/routes");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let reply = client.send(api.addr, req, "").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
    }
    let denied = client
        .send(api.addr, Request::post("/api/routes"), body("a.test"))
        .await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert!(redis.store().list().await.unwrap().is_empty());

    let ok = client
        .send(
            api.addr,
            Request::get("/api/routes").header("authorization", "Bearer s3cret-token"),
            "",
        )
        .await;
    assert_eq!((ok.status, text(&ok)), (StatusCode::OK, "[]".to_owned()));
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            client.send(api.addr, Request::get(probe), "").await.status,
            StatusCode::OK,
            "{probe}"
        );
    }
}

#[tokio::test]
async fn old_clients_calls_replay_unchanged() {
    let redis = RedisServer::start().await;
    let api = RunningApi::start(redis.store(), None).await;
    let client = TestClient::default();
    let mut raw = redis.raw().await;

    // ceryx-py: all four settings keys, explicit nulls, no trailing slash.
    let created = client
        .send(
            api.addr,
            Request::post("/api/routes").header("content-type", "application/json"),
            r#"{"source": "py.test", "target": "http://py:80", "settings": {"enforce_https": true, "mode": "proxy", "certificate_path": null, "key_path": null}}"#,
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    // GET then PUT of what came back keeps HTTPS enforcement (old Ceryx read it as false).
    let read = client
        .send(api.addr, Request::get("/api/routes/py.test/"), "")
        .await;
    assert_eq!(read.json()["settings"]["enforce_https"], true);
    let put = client
        .send(
            api.addr,
            Request::put("/api/routes/py.test/"),
            read.body.clone(),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.json()["settings"]["enforce_https"], true);
    let hash: HashMap<String, String> = raw.hgetall("ceryx:settings:py.test").await.unwrap();
    assert_eq!(hash["enforce_https"], "1");

    // APIStar's own test: a scheme-less target gets http://.
    let apistar = client
        .send(
            api.addr,
            Request::post("/api/routes"),
            r#"{"source": "test.dev", "target": "localhost:11235"}"#,
        )
        .await;
    assert_eq!(apistar.json()["target"], "http://localhost:11235");
    // The README's redirect example, and non-strict booleans.
    let redirect = client
        .send(api.addr, Request::post("/api/routes/"), r#"{"source": "sourcelair.com", "target": "https://www.sourcelair.com", "settings": {"mode": "redirect", "enforce_https": "on"}}"#)
        .await;
    assert_eq!(redirect.status, StatusCode::CREATED);
    assert_eq!(redirect.json()["settings"]["enforce_https"], true);

    // A PUT replaces the settings: no certificate path left behind.
    client
        .send(api.addr, Request::put("/api/routes/py.test"), r#"{"target": "py:80", "settings": {"certificate_path": "/c.pem", "key_path": "/k.pem"}}"#)
        .await;
    let replaced = client
        .send(
            api.addr,
            Request::put("/api/routes/py.test"),
            r#"{"target": "py:80"}"#,
        )
        .await;
    assert_eq!(
        replaced.json()["settings"]["certificate_path"],
        serde_json::Value::Null
    );
    let hash: HashMap<String, String> = raw.hgetall("ceryx:settings:py.test").await.unwrap();
    assert!(!hash.contains_key("certificate_path"), "{hash:?}");

    // ceryx-web: DELETE without slash. A route an old tool stored in capitals is found too.
    let _: () = raw
        .set("ceryx:routes:Legacy.Test", "legacy:1")
        .await
        .unwrap();
    let legacy = client
        .send(api.addr, Request::get("/api/routes/Legacy.Test"), "")
        .await;
    assert_eq!(legacy.json()["target"], "http://legacy:1");
    assert_eq!(
        client
            .send(api.addr, Request::delete("/api/routes/Legacy.Test"), "")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert!(
        !raw.exists::<_, bool>("ceryx:routes:Legacy.Test")
            .await
            .unwrap()
    );
    // `$wildcard`, percent-encoded in the path as clients do.
    client
        .send(
            api.addr,
            Request::post("/api/routes"),
            r#"{"source": "$wildcard", "target": "fallback:80"}"#,
        )
        .await;
    let wildcard = client
        .send(api.addr, Request::get("/api/routes/%24wildcard"), "")
        .await;
    assert_eq!(wildcard.json()["source"], "$wildcard");
}

#[tokio::test]
async fn store_outage_is_a_503_and_readyz_says_so() {
    let mut redis = RedisServer::start().await;
    let mut config = redis.config();
    config.timeout = std::time::Duration::from_millis(300);
    let api = RunningApi::start(
        std::sync::Arc::new(ceryx::store::RedisStore::connect(&config).unwrap()),
        None,
    )
    .await;
    let client = TestClient::default();
    assert_eq!(
        client
            .send(api.addr, Request::get("/readyz"), "")
            .await
            .status,
        StatusCode::OK
    );
    redis.kill();
    let ready = client.send(api.addr, Request::get("/readyz"), "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let write = client
        .send(api.addr, Request::post("/api/routes"), body("down.test"))
        .await;
    assert_eq!(write.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        write.json()["detail"]
            .as_str()
            .unwrap()
            .contains("route store")
    );
    assert_eq!(
        client
            .send(api.addr, Request::get("/healthz"), "")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_documented_call_answers_as_documented() {
    let redis = RedisServer::start().await;
    let api = RunningApi::start(redis.store(), None).await;
    let client = TestClient::default();
    let doc = client
        .send(api.addr, Request::get("/api/openapi.json"), "")
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.json();
    assert_eq!(doc["openapi"], "3.0.3");
    let mut calls = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete"] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let uri = path.replace("{source}", "doc.test");
            let payload = if operation.get("requestBody").is_some() {
                body("doc.test")
            } else {
                String::new()
            };
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri);
            let reply = client.send(api.addr, req, payload).await;
            let documented = operation["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(reply.status.as_str()),
                "{method} {uri} answered {} (documented: {:?})",
                reply.status,
                documented.keys()
            );
            calls += 1;
        }
    }
    assert_eq!(calls, 8, "documented operations");
}

#[tokio::test]
async fn a_route_created_through_the_api_is_served_by_another_proxy_on_the_next_request() {
    let redis = RedisServer::start().await;
    let up = Upstream::start("up").await;
    // API and proxy with stores of their own, as in separate processes.
    let api = RunningApi::start(redis.store(), None).await;
    let mut args = test_args();
    args.cache_ttl = std::time::Duration::from_secs(3600);
    let proxy = RunningProxy::start(redis.store(), args).await;
    let client = TestClient::default();

    for round in 0..20 {
        let host = format!("next{round}.test");
        // Seen and cached as "no route" first: only the change notice can fix that.
        assert_eq!(
            client.get(proxy.addr, &host, "/").await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let body = format!(r#"{{"source": "{host}", "target": "{}"}}"#, up.url());
        assert_eq!(
            client
                .send(api.addr, Request::post("/api/routes"), body)
                .await
                .status,
            StatusCode::CREATED
        );
        let reply = client.get(proxy.addr, &host, "/").await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "round {round}: not served on the very next request"
        );
    }
}

#[tokio::test]
async fn routes_a_resource_owns_are_refused_with_409_and_left_intact() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    owned(&*store, "owned.test", "http://web:80", "shop/web").await;
    let api = RunningApi::start(store.clone(), None).await;
    let client = TestClient::default();

    let calls = [
        (Request::post("/api/routes"), body("owned.test")),
        (
            Request::put("/api/routes/owned.test"),
            r#"{"target": "http://elsewhere"}"#.to_owned(),
        ),
        (Request::delete("/api/routes/owned.test/"), String::new()),
    ];
    for (req, payload) in calls {
        let reply = client.send(api.addr, req, payload).await;
        assert_eq!(reply.status, StatusCode::CONFLICT);
        assert!(
            reply.json()["detail"]
                .as_str()
                .unwrap()
                .contains("shop/web"),
            "{}",
            text(&reply)
        );
    }
    let read = client
        .send(api.addr, Request::get("/api/routes/owned.test"), "")
        .await;
    assert_eq!(
        (read.status, read.json()["target"].as_str()),
        (StatusCode::OK, Some("http://web:80"))
    );
}

/// Issue 18, item 13: the auth scheme is case-insensitive (RFC 9110 §11.1), and one or
/// more spaces separate it from the token (§11.4).
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let redis = RedisServer::start().await;
    let api = RunningApi::start(redis.store(), Some("s3cret-token")).await;
    let client = TestClient::default();
    for auth in [
        "bearer s3cret-token",
        "BEARER s3cret-token",
        "bEaReR s3cret-token",
        "Bearer  s3cret-token",
    ] {
        let req = Request::get("/api/routes").header("authorization", auth);
        let reply = client.send(api.addr, req, "").await;
        assert_eq!(reply.status, StatusCode::OK, "{auth:?}");
    }
    for auth in [
        "Basic s3cret-token",
        "Bearers3cret-token",
        "bearer",
        "bearer s3cret-token-and-more",
        "bearer S3CRET-TOKEN",
    ] {
        let req = Request::get("/api/routes").header("authorization", auth);
        let reply = client.send(api.addr, req, "").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{auth:?}");
    }
}

/// Issue 18, item 14: targets that are not URLs to forward to, that name the proxy's own
/// listener, or an address in CERYX_UPSTREAM_DENY get a 400 naming `target`, and nothing
/// is written; the binary's `run` wires both rules. Before, `javascript:alert(1)` was
/// stored as `http://javascript:alert(1)`.
#[tokio::test]
async fn targets_that_cannot_or_must_not_be_forwarded_to_are_refused() {
    let ceryx = Process::start("run", &[]).await;
    let client = TestClient::default();
    let own = format!("http://127.0.0.1:{}", ceryx.addr.port());
    let own_by_name = format!("localhost:{}/x", ceryx.addr.port());
    let refused = [
        ("javascript:alert(1)", "port from 1 to 65535"),
        ("data:text/plain,hi", "port from 1 to 65535"),
        ("http://x.test:99999", "port from 1 to 65535"),
        ("http://x.test:-1", "port from 1 to 65535"),
        (own.as_str(), "own listener"),
        (own_by_name.as_str(), "own listener"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "CERYX_UPSTREAM_DENY",
        ),
        ("http://[fd00:ec2::254]/", "CERYX_UPSTREAM_DENY"),
    ];
    for (target, why) in refused {
        let body = format!(r#"{{"source": "bad.test", "target": "{target}"}}"#);
        let reply = client
            .send(ceryx.api, Request::post("/api/routes"), body)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{target}");
        let message = reply.json()["errors"]["target"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(why), "{target}: {message}");
    }
    let listed = client
        .send(ceryx.api, Request::get("/api/routes"), "")
        .await;
    assert_eq!(listed.json(), serde_json::json!([]), "nothing was written");

    // A redirect's target is only sent to the client; another port of this machine is
    // another server.
    let redirect =
        format!(r#"{{"source": "r.test", "target": "{own}", "settings": {{"mode": "redirect"}}}}"#);
    let other = format!(
        r#"{{"source": "o.test", "target": "http://127.0.0.1:{}"}}"#,
        free_port()
    );
    for body in [redirect, other] {
        let reply = client
            .send(ceryx.api, Request::post("/api/routes"), body)
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }

    // An empty CERYX_UPSTREAM_DENY allows every address; the listener rule stays.
    let open = Process::start("run", &[("CERYX_UPSTREAM_DENY", String::new())]).await;
    let metadata = r#"{"source": "m.test", "target": "http://169.254.169.254/"}"#;
    let reply = client
        .send(open.api, Request::post("/api/routes"), metadata)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
}
