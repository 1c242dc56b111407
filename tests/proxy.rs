//! The proxy against a real Redis and real upstreams: lookup rules, modes, headers,
//! status codes, limits, upgrades and HTTP/2.

mod common;

use bytes::Bytes;
use ceryx::route::{Mode, Route, Settings};
use ceryx::store::RouteStore;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use redis::AsyncCommands;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn with(source: &str, target: &str, settings: Settings) -> Route {
    Route::new(source, target, settings).unwrap()
}

#[tokio::test]
async fn hosts_are_matched_exact_then_longest_wildcard_then_catch_all() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let (exact, short, long, any) = (
        Upstream::start("exact").await,
        Upstream::start("short").await,
        Upstream::start("long").await,
        Upstream::start("any").await,
    );
    store
        .put(&route("app.example.com", &exact.url()))
        .await
        .unwrap();
    store
        .put(&route("*.example.com", &short.url()))
        .await
        .unwrap();
    store
        .put(&route("*.b.example.com", &long.url()))
        .await
        .unwrap();
    let proxy = RunningProxy::start(store.clone(), test_args()).await;
    let client = TestClient::default();

    let served = |host: &'static str| {
        let client = &client;
        async move { client.get(proxy.addr, host, "/").await }
    };
    assert_eq!(
        served("app.example.com").await.upstream().as_deref(),
        Some("exact")
    );
    // Case, port and trailing dot do not matter.
    assert_eq!(
        served("APP.Example.com.:8080").await.upstream().as_deref(),
        Some("exact")
    );
    assert_eq!(
        served("x.b.example.com").await.upstream().as_deref(),
        Some("long")
    );
    assert_eq!(
        served("other.example.com").await.upstream().as_deref(),
        Some("short")
    );
    // `*.example.com` does not cover the bare domain.
    let none = served("example.com").await;
    assert_eq!(none.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&none.body).contains("example.com"));

    store.put(&route("$wildcard", &any.url())).await.unwrap();
    assert_eq!(
        served("example.com").await.upstream().as_deref(),
        Some("any")
    );
    assert_eq!(
        served("unknown.test").await.upstream().as_deref(),
        Some("any")
    );
}

#[tokio::test]
async fn redirect_mode_and_enforce_https_answer_301() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let upstream = Upstream::start("up").await;
    let redirect = Settings {
        mode: Mode::Redirect,
        ..Settings::default()
    };
    store
        .put(&with("old.test", "http://api:5555/api/routes", redirect))
        .await
        .unwrap();
    let https = Settings {
        enforce_https: true,
        ..Settings::default()
    };
    store
        .put(&with("secure.test", &upstream.url(), https))
        .await
        .unwrap();

    let mut args = test_args();
    args.trusted_proxies = vec!["127.0.0.2/32".parse().unwrap()];
    let proxy = RunningProxy::start(store.clone(), args).await;
    let client = TestClient::default();

    let reply = client
        .get(proxy.addr, "old.test", "/some/path/?some=args&more=args")
        .await;
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        reply.location(),
        "http://api:5555/api/routes/some/path/?some=args&more=args"
    );

    let reply = client
        .send(
            proxy.addr,
            Request::post("/p?q=1").header("host", "Secure.test:8080"),
            "x",
        )
        .await;
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(reply.location(), "https://secure.test/p?q=1");

    // X-Forwarded-Proto from an untrusted peer (127.0.0.1 here) changes nothing.
    let spoofed = client
        .send(
            proxy.addr,
            Request::get("/")
                .header("host", "secure.test")
                .header("x-forwarded-proto", "https"),
            "",
        )
        .await;
    assert_eq!(spoofed.status, StatusCode::MOVED_PERMANENTLY);

    // Behind a trusted TLS-terminating balancer, its X-Forwarded-Proto counts: no loop.
    let mut args = test_args();
    args.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let behind_balancer = RunningProxy::start(store, args).await;
    let reply = client
        .send(
            behind_balancer.addr,
            Request::get("/")
                .header("host", "secure.test")
                .header("x-forwarded-proto", "https"),
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["headers"]["x-forwarded-proto"][0], "https");
}

#[tokio::test]
async fn upstream_gets_prefixed_path_client_host_and_forwarding_headers() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let upstream = Upstream::start("up").await;
    store
        .put(&route("h.test", &format!("{}/x/", upstream.url())))
        .await
        .unwrap();
    let proxy = RunningProxy::start(store, test_args()).await;

    let reply = TestClient::default()
        .send(
            proxy.addr,
            Request::put("/y?z=1")
                .header("host", "h.test:8080")
                .header("x-forwarded-for", "203.0.113.7")
                .header("connection", "x-hop")
                .header("x-hop", "secret")
                .header("proxy-authorization", "Basic Zm9vOmJhcg==")
                .header("x-end-to-end", "kept"),
            "hello",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let echo = reply.json();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/x/y?z=1");
    assert_eq!(echo["body_len"], 5);
    let headers = &echo["headers"];
    assert_eq!(headers["host"][0], "h.test:8080");
    assert_eq!(headers["x-forwarded-for"][0], "203.0.113.7, 127.0.0.1");
    assert_eq!(headers["x-real-ip"][0], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"][0], "http");
    assert_eq!(headers["x-end-to-end"][0], "kept");
    assert!(
        headers.get("x-hop").is_none(),
        "a header named in Connection was forwarded"
    );
    assert!(headers.get("proxy-authorization").is_none());
    // Hop-by-hop headers of the response stay between upstream and proxy too.
    assert!(reply.headers.get("x-upstream-private").is_none());
}

#[tokio::test]
async fn failures_get_clean_status_codes_in_html_or_json() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let upstream = Upstream::start("up").await;
    store
        .put(&route(
            "refused.test",
            &format!("http://127.0.0.1:{}", free_port()),
        ))
        .await
        .unwrap();
    store
        .put(&route("slow.test", &upstream.url()))
        .await
        .unwrap();
    let mut args = test_args();
    args.upstream_response_timeout = Duration::from_millis(300);
    let proxy = RunningProxy::start(store, args).await;
    let client = TestClient::default();

    let refused = client.get(proxy.addr, "refused.test", "/").await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY);
    assert!(
        refused.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(String::from_utf8_lossy(&refused.body).contains("502 Bad Gateway"));

    let slow = client.get(proxy.addr, "slow.test", "/slow").await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);

    let json = client
        .send(
            proxy.addr,
            Request::get("/")
                .header("host", "nowhere.test")
                .header("accept", "application/json"),
            "",
        )
        .await;
    assert_eq!(json.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json.json()["status"], 503);
    assert!(
        json.json()["error"]
            .as_str()
            .unwrap()
            .contains("nowhere.test")
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_smaller_ones_stream_through() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let upstream = Upstream::start("up").await;
    store.put(&route("b.test", &upstream.url())).await.unwrap();
    let mut args = test_args();
    args.max_request_body_size = 1024;
    let proxy = RunningProxy::start(store, args).await;
    let client = TestClient::default();

    let declared = client
        .send(
            proxy.addr,
            Request::post("/").header("host", "b.test"),
            vec![b'a'; 1025],
        )
        .await;
    assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
    let fits = client
        .send(
            proxy.addr,
            Request::post("/").header("host", "b.test"),
            vec![b'a'; 1024],
        )
        .await;
    assert_eq!(fits.json()["body_len"], 1024);

    // Chunked, no Content-Length: the limit is enforced while streaming.
    for (chunks, expected) in [(3, StatusCode::OK), (5, StatusCode::PAYLOAD_TOO_LARGE)] {
        let stream = futures_util::stream::iter((0..chunks).map(|_| {
            Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(vec![b'c'; 300])))
        }));
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let req = Request::post(format!("http://{}/", proxy.addr))
            .header("host", "b.test")
            .body(StreamBody::new(stream))
            .unwrap();
        let response = http.request(req).await.unwrap();
        assert_eq!(response.status(), expected, "{chunks} chunks of 300 bytes");
        let _ = response.into_body().collect().await;
    }
}

#[tokio::test]
async fn routes_in_old_ceryx_layout_are_served_and_ours_are_readable_by_it() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let upstream = Upstream::start("legacy").await;
    let mut raw = redis.raw().await;
    // What old Ceryx tools wrote: a bare host:port target and an HMSET settings hash.
    let _: () = raw
        .set("ceryx:routes:legacy.test", upstream.addr.to_string())
        .await
        .unwrap();
    let _: () = raw
        .hset_multiple(
            "ceryx:settings:legacy.test",
            &[("enforce_https", "0"), ("mode", "proxy")],
        )
        .await
        .unwrap();
    let proxy = RunningProxy::start(store.clone(), test_args()).await;
    let reply = TestClient::default()
        .get(proxy.addr, "legacy.test", "/")
        .await;
    assert_eq!(reply.upstream().as_deref(), Some("legacy"));

    let settings = Settings {
        enforce_https: true,
        certificate_path: Some("/c.pem".into()),
        ..Settings::default()
    };
    store
        .put(&with("new.test", "new:80", settings))
        .await
        .unwrap();
    let target: String = raw.get("ceryx:routes:new.test").await.unwrap();
    assert_eq!(target, "http://new:80");
    let hash: std::collections::HashMap<String, String> =
        raw.hgetall("ceryx:settings:new.test").await.unwrap();
    let expected = [
        ("enforce_https", "1"),
        ("mode", "proxy"),
        ("certificate_path", "/c.pem"),
    ];
    assert_eq!(
        hash,
        expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    );

    // An update replaces the whole hash: no stale certificate path survives.
    store.put(&route("new.test", "new:80")).await.unwrap();
    let hash: std::collections::HashMap<String, String> =
        raw.hgetall("ceryx:settings:new.test").await.unwrap();
    assert!(!hash.contains_key("certificate_path"), "{hash:?}");
}

#[tokio::test]
async fn direct_redis_writes_are_served_on_first_sight_and_within_the_ttl() {
    let redis = RedisServer::start().await;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let mut args = test_args();
    args.cache_ttl = Duration::from_millis(300);
    let proxy = RunningProxy::start(redis.store(), args).await;
    let client = TestClient::default();
    let mut raw = redis.raw().await;

    assert_eq!(
        client.get(proxy.addr, "d.test", "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // No change notice: a tool writing Redis directly.
    let _: () = raw.set("ceryx:routes:d.test", a.url()).await.unwrap();
    let start = std::time::Instant::now();
    eventually(
        Duration::from_secs(3),
        "a direct write to be served",
        || async { client.served_by(proxy.addr, "d.test").await.as_deref() == Some("a") },
    )
    .await;
    let _: () = raw.set("ceryx:routes:d.test", b.url()).await.unwrap();
    eventually(
        Duration::from_secs(3),
        "a direct change to be served",
        || async { client.served_by(proxy.addr, "d.test").await.as_deref() == Some("b") },
    )
    .await;
    // Each change waited at most one TTL (plus scheduling slack).
    assert!(
        start.elapsed() < Duration::from_millis(2 * 300 + 500),
        "{:?}",
        start.elapsed()
    );

    // A never-seen host costs no wait at all.
    let _: () = raw.set("ceryx:routes:fresh.test", a.url()).await.unwrap();
    assert_eq!(
        client.served_by(proxy.addr, "fresh.test").await.as_deref(),
        Some("a")
    );
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let upstream = Upstream::start("ws").await;
    store.put(&route("ws.test", &upstream.url())).await.unwrap();
    let proxy = RunningProxy::start(store, test_args()).await;

    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async("ws://ws.test/ws", stream)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "through", "ceryx"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn http2_clients_with_prior_knowledge_are_proxied() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let upstream = Upstream::start("h2").await;
    store.put(&route("h2.test", &upstream.url())).await.unwrap();
    let proxy = RunningProxy::start(store, test_args()).await;

    // Prior knowledge: the connection starts with the HTTP/2 preface, no upgrade.
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut replies = Vec::new();
    for i in 0..3 {
        // HTTP/2 carries the host as :authority, with no Host header.
        let req = Request::get(format!("http://h2.test/n/{i}"))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let mut sender = sender.clone();
        replies.push(async move { sender.send_request(req).await });
    }
    // All three on one connection, concurrently.
    for (i, reply) in futures_util::future::join_all(replies)
        .await
        .into_iter()
        .enumerate()
    {
        let reply = reply.unwrap();
        assert_eq!(reply.version(), http::Version::HTTP_2);
        assert_eq!(reply.status(), StatusCode::OK);
        let body = reply.into_body().collect().await.unwrap().to_bytes();
        let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["path"], format!("/n/{i}"));
        assert_eq!(echo["headers"]["host"][0], "h2.test");
    }
}

/// Sends raw bytes and returns the status line of the answer.
async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn bad_input_gets_4xx_and_the_proxy_keeps_serving() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let upstream = Upstream::start("up").await;
    store.put(&route("ok.test", &upstream.url())).await.unwrap();
    let proxy = RunningProxy::start(store, test_args()).await;

    let huge = format!(
        "GET / HTTP/1.1\r\nHost: ok.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "malformed host",
            b"GET / HTTP/1.1\r\nHost: bad host!\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
        ),
        (
            "bad port",
            b"GET / HTTP/1.1\r\nHost: ok.test:http\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
        ),
        (
            "no host",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
        ),
        (
            "non-utf8 host",
            b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
        ),
        (
            "garbage",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
        ),
        ("huge headers", huge.into_bytes(), "HTTP/1.1 431"),
        (
            "connect",
            b"CONNECT ok.test:443 HTTP/1.1\r\nHost: ok.test:443\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
        ),
        (
            "absolute form",
            b"GET http://ok.test/abs HTTP/1.1\r\nHost: other.test\r\n\r\n".to_vec(),
            "HTTP/1.1 200",
        ),
    ];
    for (what, bytes, expected) in cases {
        let status = raw_exchange(proxy.addr, &bytes).await;
        assert!(status.starts_with(expected), "{what}: got {status:?}");
    }
    let reply = TestClient::default().get(proxy.addr, "ok.test", "/").await;
    assert_eq!(reply.status, StatusCode::OK, "the proxy stopped serving");
}

/// An HTTPS upstream with a self-signed certificate for 127.0.0.1, answering "tls".
async fn tls_upstream() -> std::net::SocketAddr {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let (pem, cert) = issue(&["127.0.0.1"]);
    let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(Bytes::from("tls")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn https_targets_are_verified_unless_verification_is_off() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let upstream = tls_upstream().await;
    store
        .put(&route("tls.test", &format!("https://{upstream}")))
        .await
        .unwrap();
    let client = TestClient::default();

    let verifying = RunningProxy::start(store.clone(), test_args()).await;
    let reply = client.get(verifying.addr, "tls.test", "/").await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_GATEWAY,
        "a self-signed upstream was trusted"
    );

    let mut args = test_args();
    args.upstream_tls_verify = false;
    let trusting = RunningProxy::start(store, args).await;
    let reply = client.get(trusting.addr, "tls.test", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "tls");
}

#[tokio::test]
async fn slow_uploads_pass_while_stalled_uploads_and_idle_clients_are_cut() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let upstream = Upstream::start("up").await;
    store.put(&route("up.test", &upstream.url())).await.unwrap();
    let mut args = test_args();
    args.upstream_response_timeout = Duration::from_millis(400);
    args.client_header_timeout = Duration::from_millis(500);
    let proxy = RunningProxy::start(store, args).await;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let post = |body| {
        Request::post(format!("http://{}/", proxy.addr))
            .header("host", "up.test")
            .body(body)
            .unwrap()
    };

    // Six chunks, 150 ms apart: longer than the response timeout, but never idle that long.
    let slow = futures_util::stream::iter(0..6).then(|_| async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from_static(b"0123456789")))
    });
    let response = http
        .request(post(BodyExt::boxed_unsync(StreamBody::new(slow))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["body_len"],
        60
    );

    // One chunk, then silence.
    let stalled = futures_util::stream::iter([Ok::<_, std::io::Error>(hyper::body::Frame::data(
        Bytes::from_static(b"x"),
    ))])
    .chain(futures_util::stream::pending());
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        http.request(post(BodyExt::boxed_unsync(StreamBody::new(stalled)))),
    )
    .await
    .expect("a stalled upload held the proxy")
    .unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);

    // A connection that never finishes a request head is closed, idle keep-alive too.
    let keep_alive = b"GET / HTTP/1.1\r\nHost: up.test\r\n\r\n";
    for opening in [&b""[..], b"GET / HTTP/1.1\r\nHost: up.test\r\n", keep_alive] {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(opening).await.unwrap();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "a slow client kept its connection ({opening:?})"
        );
    }
}

#[tokio::test]
async fn responses_stream_and_upstream_connections_are_reused() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    // An upstream that sends its second chunk only once the client has seen the first:
    // a proxy that buffered responses would never deliver either.
    let seen_first = std::sync::Arc::new(tokio::sync::Notify::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gate = seen_first.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(move |_req| {
            let gate = gate.clone();
            async move {
                let (tx, rx) = tokio::sync::mpsc::channel::<
                    Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
                >(1);
                tokio::spawn(async move {
                    tx.send(Ok(hyper::body::Frame::data(Bytes::from("first;"))))
                        .await
                        .unwrap();
                    gate.notified().await;
                    tx.send(Ok(hyper::body::Frame::data(Bytes::from("second"))))
                        .await
                        .unwrap();
                });
                let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|f| (f, rx))
                }));
                Ok::<_, std::convert::Infallible>(http::Response::new(body))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    });
    store
        .put(&route("stream.test", &format!("http://{addr}")))
        .await
        .unwrap();
    let proxy = RunningProxy::start(store.clone(), test_args()).await;

    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let req = Request::get(format!("http://{}/", proxy.addr))
        .header("host", "stream.test")
        .body(Default::default())
        .unwrap();
    let mut body = tokio::time::timeout(Duration::from_secs(5), http.request(req))
        .await
        .unwrap()
        .unwrap()
        .into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first chunk held back")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first;");
    seen_first.notify_one();
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(rest, "second");

    // Sequential requests to one upstream share one pooled connection.
    let upstream = Upstream::start("pooled").await;
    store
        .put(&route("pool.test", &upstream.url()))
        .await
        .unwrap();
    let client = TestClient::default();
    for _ in 0..5 {
        assert_eq!(
            client.get(proxy.addr, "pool.test", "/").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

/// Issue 18, item 8: `Connection` may nominate hop-by-hop fields only. The fields the
/// proxy routes and forwards by (`Host`, the forwarding headers) always pass.
#[tokio::test]
async fn connection_cannot_strip_host_or_forwarding_headers() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let upstream = Upstream::start("up").await;
    store.put(&route("h.test", &upstream.url())).await.unwrap();
    let proxy = RunningProxy::start(store, test_args()).await;

    let reply = TestClient::default()
        .send(
            proxy.addr,
            Request::post("/")
                .header("host", "h.test")
                .header("connection", "Host, X-Forwarded-For, Content-Length, x-hop")
                .header("x-forwarded-for", "203.0.113.7")
                .header("x-hop", "secret"),
            "hello",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let echo = reply.json();
    let headers = &echo["headers"];
    assert_eq!(headers["host"], serde_json::json!(["h.test"]), "{echo}");
    assert_eq!(headers["x-forwarded-for"][0], "203.0.113.7, 127.0.0.1");
    assert_eq!(headers["content-length"][0], "5");
    assert_eq!(echo["body_len"], 5);
    assert!(headers.get("x-hop").is_none(), "a hop-by-hop field passed");
}

/// Issue 18, item 9: RFC 9112 §3.2: a request with more than one `Host` is answered 400
/// (as nginx does), never routed by one and forwarded with both.
#[tokio::test]
async fn two_host_headers_are_refused() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let upstream = Upstream::start("up").await;
    store.put(&route("ok.test", &upstream.url())).await.unwrap();
    store
        .put(&route("other.test", &upstream.url()))
        .await
        .unwrap();
    let proxy = RunningProxy::start(store, test_args()).await;

    for (what, request) in [
        (
            "two lines",
            &b"GET / HTTP/1.1\r\nHost: ok.test\r\nHost: other.test\r\n\r\n"[..],
        ),
        (
            "the same host twice",
            &b"GET / HTTP/1.1\r\nHost: ok.test\r\nHost: ok.test\r\n\r\n"[..],
        ),
        (
            "absolute form with two",
            &b"GET http://ok.test/ HTTP/1.1\r\nHost: ok.test\r\nHost: other.test\r\n\r\n"[..],
        ),
    ] {
        let status = raw_exchange(proxy.addr, request).await;
        assert!(status.starts_with("HTTP/1.1 400"), "{what}: got {status:?}");
    }
    assert_eq!(
        upstream.hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a request with two Host headers was forwarded"
    );
    let reply = TestClient::default().get(proxy.addr, "ok.test", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// Issue 18, item 12: a request body that breaks HTTP/1.1 chunked framing is the
/// client's fault: 400, logged as a refused request, not as an upstream failure.
#[tokio::test]
async fn an_invalid_chunked_body_is_the_clients_error() {
    let upstream = Upstream::start("up").await;
    let (addr, api) = (free_port(), free_port());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ceryx"))
        .arg("run")
        .env("CERYX_HTTP_ADDR", format!("127.0.0.1:{addr}"))
        .env("CERYX_API_ADDR", format!("127.0.0.1:{api}"))
        .env("CERYX_HTTPS_ADDR", "")
        .env("CERYX_ACCESS_LOG", "false")
        .env("CERYX_DEBUG", "true")
        .env_remove("RUST_LOG")
        .env_remove("CERYX_REDIS_HOST")
        .env_remove("CERYX_REDIS_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let proxy: std::net::SocketAddr = format!("127.0.0.1:{addr}").parse().unwrap();
    let api: std::net::SocketAddr = format!("127.0.0.1:{api}").parse().unwrap();
    eventually(Duration::from_secs(10), "ceryx to listen", || async {
        TcpStream::connect(api).await.is_ok() && TcpStream::connect(proxy).await.is_ok()
    })
    .await;
    let client = TestClient::default();
    let body = format!(
        r#"{{"source": "chunk.test", "target": "{}"}}"#,
        upstream.url()
    );
    let created = client.send(api, Request::post("/api/routes"), body).await;
    assert_eq!(created.status, StatusCode::CREATED);

    let cases: [(&str, &[u8]); 3] = [
        ("chunk size not hex", b"zz\r\nhello\r\n0\r\n\r\n"),
        ("chunk longer than its size", b"2\r\nhello\r\n0\r\n\r\n"),
        ("no CRLF after the data", b"5\r\nhelloXX0\r\n\r\n"),
    ];
    for (what, chunks) in cases {
        let mut request =
            b"POST /up HTTP/1.1\r\nHost: chunk.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        request.extend_from_slice(chunks);
        let status = raw_exchange(proxy, &request).await;
        assert!(status.starts_with("HTTP/1.1 400"), "{what}: got {status:?}");
    }
    let reply = client.get(proxy, "chunk.test", "/").await;
    assert_eq!(reply.status, StatusCode::OK, "the proxy stopped serving");

    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        !log.contains("upstream failed"),
        "a client's broken body was logged as an upstream failure:\n{log}"
    );
    assert!(log.contains("request refused"), "{log}");
}

/// The listen backlog of the socket listening on `port`, as the kernel holds it (the
/// Send-Q column `ss -ltn` shows for a listening socket).
fn listen_backlog(port: u16) -> u32 {
    let out = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("the backlog test reads it with `ss` (apt-get install iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    // State Recv-Q Send-Q Local Peer
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("nothing listens on {port}"));
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Issue 18, item 11: the listen backlog of the proxy's HTTP and HTTPS listeners and of
/// the API is `CERYX_LISTEN_BACKLOG` (or `--listen-backlog`), not the 128 of
/// `TcpListener::bind`.
#[tokio::test]
async fn the_listen_backlog_is_configurable() {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(4096);
    let https = free_port();
    let ceryx = Process::start(
        "run",
        &[
            ("CERYX_LISTEN_BACKLOG", "777".into()),
            ("CERYX_HTTPS_ADDR", format!("127.0.0.1:{https}")),
        ],
    )
    .await;
    let expected = 777.min(somaxconn);
    for (what, port) in [
        ("http", ceryx.addr.port()),
        ("https", https),
        ("api", ceryx.api.port()),
    ] {
        assert_eq!(listen_backlog(port), expected, "{what} listener");
    }
    drop(ceryx);

    // The default is deeper than nginx's 511 (the kernel caps it at somaxconn).
    let ceryx = Process::start("proxy", &[]).await;
    assert_eq!(listen_backlog(ceryx.addr.port()), 4096.min(somaxconn));
    let flag = free_port();
    let mut by_flag = std::process::Command::new(env!("CARGO_BIN_EXE_ceryx"))
        .args(["api", "--listen-backlog", "333"])
        .env("CERYX_API_ADDR", format!("127.0.0.1:{flag}"))
        .env_remove("CERYX_LISTEN_BACKLOG")
        .env_remove("CERYX_REDIS_HOST")
        .env_remove("CERYX_REDIS_URL")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{flag}").parse().unwrap();
    eventually(Duration::from_secs(10), "ceryx api to listen", || async {
        TcpStream::connect(addr).await.is_ok()
    })
    .await;
    let backlog = listen_backlog(flag);
    let _ = by_flag.kill();
    let _ = by_flag.wait();
    assert_eq!(backlog, 333.min(somaxconn), "--listen-backlog");
}

#[tokio::test]
async fn a_route_back_at_the_proxy_is_answered_508_at_once() {
    let store: std::sync::Arc<dyn RouteStore> =
        std::sync::Arc::new(ceryx::store::MemoryStore::default());
    let proxy = RunningProxy::start(store.clone(), test_args()).await;
    store
        .put(&route("loop.test", &format!("http://{}", proxy.addr)))
        .await
        .unwrap();
    let reply = TestClient::default()
        .get(proxy.addr, "loop.test", "/")
        .await;
    // One hop back, then refused: without the marker this went on until fds ran out.
    assert_eq!(reply.status, StatusCode::LOOP_DETECTED);
}

#[tokio::test]
async fn an_absolute_form_request_is_forwarded_with_the_host_it_was_routed_by() {
    let store: std::sync::Arc<dyn RouteStore> =
        std::sync::Arc::new(ceryx::store::MemoryStore::default());
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    store.put(&route("a.test", &a.url())).await.unwrap();
    store.put(&route("b.test", &b.url())).await.unwrap();
    let proxy = RunningProxy::start(store, test_args()).await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(b"GET http://a.test/x HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let echoed: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(echoed["name"], "a");
    assert_eq!(echoed["headers"]["host"], serde_json::json!(["a.test"]));
}

/// An upstream on 127.0.0.1 that reads one request head, then writes `answer` and keeps
/// the connection open, saying nothing more; the receiver reports when the proxy closes
/// its side (the upstream connection dropped).
async fn raw_upstream(
    answer: &'static [u8],
) -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed, on_close) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the proxy closed before sending its request");
            head.extend_from_slice(&buf[..n]);
        }
        conn.write_all(answer).await.unwrap();
        // Bounded: the test gives up long before.
        let _ = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf)).await;
        let _ = closed.send(());
    });
    (addr, on_close)
}

/// Sends a GET for `host` and reads the answer until the proxy closes the connection or
/// `limit` passes; the bytes read, and whether it closed in time.
async fn read_until_closed(
    proxy: std::net::SocketAddr,
    host: &str,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let mut conn = TcpStream::connect(proxy).await.unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(limit, conn.read_to_end(&mut answer)).await;
    (answer, closed.ok().map(|_| started.elapsed()))
}

/// Issue 18, item 4: an upstream that stops mid-body is cut after the response timeout
/// (nginx's `proxy_read_timeout`, which runs between two reads): the client's response
/// ends short of its length, never as if complete, and the upstream connection is
/// dropped. Before, the client was held for as long as the upstream kept still.
#[tokio::test]
async fn a_body_stalled_by_its_upstream_is_cut_after_the_response_timeout() {
    let store: std::sync::Arc<dyn RouteStore> =
        std::sync::Arc::new(ceryx::store::MemoryStore::default());
    let (length, length_closed) =
        raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789").await;
    let (chunked, chunked_closed) =
        raw_upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n")
            .await;
    store
        .put(&route("length.test", &format!("http://{length}")))
        .await
        .unwrap();
    store
        .put(&route("chunked.test", &format!("http://{chunked}")))
        .await
        .unwrap();
    let timeout = Duration::from_secs(1);
    let args = ceryx::proxy::Config {
        upstream_response_timeout: timeout,
        ..test_args()
    };
    let proxy = RunningProxy::start(store, args).await;

    for (host, upstream_closed) in [
        ("length.test", length_closed),
        ("chunked.test", chunked_closed),
    ] {
        let (answer, held) = read_until_closed(proxy.addr, host, Duration::from_secs(10)).await;
        let held = held.unwrap_or_else(|| panic!("{host}: client still held after 10 s"));
        eprintln!("{host}: a stalled body held the client {held:?} (response timeout {timeout:?})");
        assert!(
            held >= timeout && held < timeout * 4,
            "{host}: held {held:?}"
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 200"), "{host}: {text}");
        assert!(
            text.contains("0123456789"),
            "{host}: the part sent reaches the client"
        );
        // Never complete-looking: 10 of 100 bytes, or a chunked body with no last chunk.
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        if host == "length.test" {
            assert_eq!(body, "0123456789", "{host}");
        } else {
            assert!(
                !body.contains("\r\n0\r\n\r\n"),
                "{host}: ended as if whole: {body:?}"
            );
        }
        tokio::time::timeout(Duration::from_secs(5), upstream_closed)
            .await
            .unwrap_or_else(|_| panic!("{host}: the upstream connection was kept"))
            .unwrap();
    }
}

/// Issue 18, item 6: an upstream's `Content-Length` beside `Transfer-Encoding` is removed
/// (RFC 9112 §6.3); the body comes whole. Before, the client got `content-length: 5` and
/// `hello` of a 12-byte chunked body.
#[tokio::test]
async fn content_length_beside_transfer_encoding_is_not_passed_on() {
    let store: std::sync::Arc<dyn RouteStore> =
        std::sync::Arc::new(ceryx::store::MemoryStore::default());
    let (upstream, _closed) = raw_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nc\r\nhello world!\r\n0\r\n\r\n",
    )
    .await;
    store
        .put(&route("te.test", &format!("http://{upstream}")))
        .await
        .unwrap();
    let proxy = RunningProxy::start(store, test_args()).await;
    let reply = TestClient::default().get(proxy.addr, "te.test", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_ne!(
        reply.headers.get("content-length").map(|v| v.as_bytes()),
        Some(&b"5"[..])
    );
    assert_eq!(reply.body, "hello world!");
}

/// Issue 18, item 14: the proxy never connects to an address in CERYX_UPSTREAM_DENY,
/// whether the route names it (checked before connecting) or a name resolves to it
/// (checked on the address connected to); the client gets 502 and the upstream no request.
#[tokio::test]
async fn denied_upstream_addresses_are_never_forwarded_to() {
    let store: std::sync::Arc<dyn RouteStore> =
        std::sync::Arc::new(ceryx::store::MemoryStore::default());
    let upstream = Upstream::start("secret").await;
    let port = upstream.addr.port();
    store
        .put(&route("literal.test", &upstream.url()))
        .await
        .unwrap();
    store
        .put(&route("name.test", &format!("http://localhost:{port}")))
        .await
        .unwrap();
    let args = ceryx::proxy::Config {
        upstream_deny: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        ..test_args()
    };
    let denying = RunningProxy::start(store.clone(), args).await;
    let client = TestClient::default();
    for host in ["literal.test", "name.test"] {
        let reply = client.get(denying.addr, host, "/").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{host}");
    }
    assert_eq!(upstream.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    // The literal was refused before any connection; the name after its connect only.
    assert!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
            <= 1
    );

    // The default list leaves loopback alone.
    let default = RunningProxy::start(store, test_args()).await;
    assert_eq!(
        client.get(default.addr, "name.test", "/").await.status,
        StatusCode::OK
    );
}
