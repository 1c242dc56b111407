//! What operators see of the `ceryx` binary under real traffic: Prometheus metrics,
//! StatsD lines over UDP, and the JSON access log on stdout.

mod common;

use ceryx::store::RouteStore;
use common::*;
use futures_util::SinkExt;
use http::{Request, StatusCode};
use serde_json::Value;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message;

/// The value of one exact series (`name{labels}`) in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(client: &TestClient, addr: SocketAddr) -> String {
    let reply = client.send(addr, Request::get("/metrics"), "").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    String::from_utf8(reply.body.to_vec()).unwrap()
}

fn metrics_addr() -> (SocketAddr, (&'static str, String)) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    (addr, ("CERYX_METRICS_ADDR", addr.to_string()))
}

#[tokio::test]
async fn metrics_count_requests_latency_bytes_cache_tunnels_and_propagation() {
    let mut redis = RedisServer::start().await;
    let store = redis.store();
    let upstream = Upstream::start("m").await;
    let (ops, ops_env) = metrics_addr();
    let env = [
        ("CERYX_REDIS_HOST", "127.0.0.1".into()),
        ("CERYX_REDIS_PORT", redis.port.to_string()),
        ("CERYX_REDIS_TIMEOUT", "500".into()),
        ops_env,
    ];
    let ceryx = Process::start("run", &env).await;
    let client = TestClient::default();

    // Written by another process: the notice carries its write time.
    store.put(&route("m.test", &upstream.url())).await.unwrap();
    for _ in 0..5 {
        assert_eq!(
            client.get(ceryx.addr, "m.test", "/").await.status,
            StatusCode::OK
        );
    }
    let post = Request::post("/upload").header("host", "m.test");
    assert_eq!(
        client.send(ceryx.addr, post, vec![b'x'; 1000]).await.status,
        StatusCode::OK
    );
    for host in ["unknown-1.test", "unknown-2.test"] {
        let status = client.get(ceryx.addr, host, "/").await.status;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    let text = scrape(&client, ceryx.api).await;
    let get = r#"ceryx_requests_total{route="m.test",method="GET",status="2xx"}"#;
    assert_eq!(sample(&text, get), Some(5.0), "{text}");
    let post = r#"ceryx_requests_total{route="m.test",method="POST",status="2xx"}"#;
    assert_eq!(sample(&text, post), Some(1.0));
    // Unknown hosts all count under one label, whatever the client sent.
    assert!(!text.contains("unknown-1.test"));
    let unknown = text
        .lines()
        .filter(|l| l.starts_with(r#"ceryx_requests_total{route="none""#))
        .count();
    assert_eq!(unknown, 1, "one series for both unknown hosts: {text}");
    // Eight requests answered, six of them forwarded (latency is not split by route).
    assert_eq!(
        sample(&text, "ceryx_request_duration_seconds_count"),
        Some(8.0)
    );
    assert_eq!(
        sample(&text, "ceryx_upstream_duration_seconds_count"),
        Some(6.0)
    );
    let under_a_minute = r#"ceryx_request_duration_seconds_bucket{le="60"}"#;
    assert_eq!(sample(&text, under_a_minute), Some(8.0));
    assert_eq!(sample(&text, "ceryx_request_bytes_total"), Some(1000.0));
    assert!(sample(&text, "ceryx_response_bytes_total").unwrap() > 6.0 * 100.0);
    assert!(sample(&text, "ceryx_route_cache_hits_total").unwrap() >= 4.0);
    assert!(sample(&text, "ceryx_route_cache_misses_total").unwrap() >= 1.0);
    assert!(sample(&text, "ceryx_route_cache_entries").unwrap() >= 1.0);
    assert!(sample(&text, "ceryx_route_invalidations_total").unwrap() >= 1.0);
    assert!(sample(&text, "ceryx_route_propagation_seconds_count").unwrap() >= 1.0);
    assert!(
        sample(&text, r#"ceryx_route_propagation_seconds_bucket{le="1"}"#).unwrap() >= 1.0,
        "a notice takes well under a second here"
    );
    // Propagation has its own, finer buckets.
    let finest = r#"ceryx_route_propagation_seconds_bucket{le="0.0001"}"#;
    assert!(sample(&text, finest).is_some(), "{text}");
    assert!(text.contains("# HELP ceryx_requests_total"));

    // Gauges: an open WebSocket is a connection and a tunnel until it closes.
    let stream = TcpStream::connect(ceryx.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://m.test/ws", stream)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "the tunnel to be counted",
        || async {
            let text = scrape(&client, ops).await;
            sample(&text, "ceryx_open_tunnels") == Some(1.0)
                && sample(&text, "ceryx_open_connections").unwrap_or(0.0) >= 1.0
        },
    )
    .await;
    ws.send(Message::Close(None)).await.unwrap();
    drop(ws);
    eventually(Duration::from_secs(5), "the tunnel to be gone", || async {
        sample(&scrape(&client, ops).await, "ceryx_open_tunnels") == Some(0.0)
    })
    .await;

    // The probes beside the metrics, for pods without the REST API.
    for probe in ["/healthz", "/readyz"] {
        let reply = client.send(ops, Request::get(probe), "").await;
        assert_eq!(reply.status, StatusCode::OK, "{probe}");
    }

    // Store trouble: a lost connection and a lookup that cannot reach Redis.
    redis.kill();
    eventually(
        Duration::from_secs(5),
        "the reconnect to be counted",
        || async {
            sample(&scrape(&client, ops).await, "ceryx_store_reconnects_total").unwrap_or(0.0)
                >= 1.0
        },
    )
    .await;
    let reply = client.get(ceryx.addr, "never-seen.test", "/").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let ready = client.send(ops, Request::get("/readyz"), "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let live = client.send(ops, Request::get("/healthz"), "").await;
    assert_eq!(live.status, StatusCode::OK, "alive while Redis is away");
    let text = scrape(&client, ops).await;
    assert!(sample(&text, "ceryx_store_errors_total").unwrap() >= 1.0);
    // The two unknown hosts (503) and this one (500).
    let failed = r#"ceryx_requests_total{route="none",method="GET",status="5xx"}"#;
    assert_eq!(sample(&text, failed), Some(3.0));
}

#[tokio::test]
async fn statsd_receives_the_same_figures_over_udp() {
    let statsd = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstream = Upstream::start("s").await;
    let env = [(
        "CERYX_STATSD_ADDR",
        statsd.local_addr().unwrap().to_string(),
    )];
    let ceryx = Process::start("run", &env).await;
    let client = TestClient::default();
    ceryx.create_route(&client, "s.test", &upstream.url()).await;
    for _ in 0..3 {
        assert_eq!(
            client.get(ceryx.addr, "s.test", "/").await.status,
            StatusCode::OK
        );
    }

    let mut lines = Vec::new();
    let mut buf = vec![0u8; 65536];
    let wanted = |lines: &[String]| {
        let requests = lines
            .iter()
            .filter(|l| l.starts_with("ceryx_requests_total:1|c") && l.contains("route:s.test"))
            .count();
        let latency = lines
            .iter()
            .any(|l| l.starts_with("ceryx_request_duration_seconds:") && l.contains("|h"));
        let gauge = lines
            .iter()
            .any(|l| l.starts_with("ceryx_open_connections:") && l.contains("|g"));
        requests == 3 && latency && gauge
    };
    let deadline = (std::time::Instant::now() + Duration::from_secs(10)).into();
    while !wanted(&lines) {
        let received = tokio::time::timeout_at(deadline, statsd.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("StatsD lines missing; got {lines:#?}"))
            .unwrap();
        let datagram = String::from_utf8_lossy(&buf[..received]).into_owned();
        lines.extend(datagram.lines().map(String::from));
    }
    let line = lines
        .iter()
        .find(|l| l.starts_with("ceryx_requests_total:1|c") && l.contains("route:s.test"))
        .unwrap();
    assert!(
        line.contains("method:GET") && line.contains("status:2xx"),
        "{line}"
    );
}

#[tokio::test]
async fn access_log_is_one_json_object_per_request_with_request_ids() {
    let upstream = Upstream::start("l").await;
    let ceryx = Process::start_logged("run", &[]).await;
    let client = TestClient::default();
    ceryx.create_route(&client, "l.test", &upstream.url()).await;

    let given = Request::get("/hello?x=1")
        .header("host", "l.test")
        .header("x-request-id", "client-chosen-id")
        .header("user-agent", "observability-test");
    let reply = client.send(ceryx.addr, given, "").await;
    assert_eq!(
        reply.json()["headers"]["x-request-id"][0],
        "client-chosen-id"
    );
    let mut generated = Vec::new();
    for _ in 0..3 {
        let reply = client.get(ceryx.addr, "l.test", "/").await;
        let id = reply.json()["headers"]["x-request-id"][0]
            .as_str()
            .unwrap()
            .to_owned();
        generated.push(id);
    }
    client.get(ceryx.addr, "nowhere.test", "/missing").await;

    eventually(Duration::from_secs(5), "five log lines", || async {
        ceryx.stdout.lock().unwrap().len() >= 5
    })
    .await;
    let lines = ceryx.stdout.lock().unwrap().clone();
    let entries: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(entries.len(), 5, "one line per request: {lines:#?}");

    let first = &entries[0];
    assert_eq!(first["request_id"], "client-chosen-id");
    assert_eq!(first["host"], "l.test");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/hello?x=1");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["client"], "127.0.0.1");
    assert_eq!(first["route"], "l.test");
    assert_eq!(first["upstream"], upstream.url());
    assert_eq!(first["user_agent"], "observability-test");
    assert_eq!(first["bytes_out"], reply.body.len());
    let (total, up) = (
        first["latency_ms"].as_f64().unwrap(),
        first["upstream_latency_ms"].as_f64().unwrap(),
    );
    assert!(
        up > 0.0 && total >= up,
        "latency {total} ms, upstream {up} ms"
    );
    let time: jiff::Timestamp = first["time"].as_str().unwrap().parse().unwrap();
    assert!(jiff::Timestamp::now().duration_since(time).as_secs() < 60);

    // Generated ids: what the upstream received is what was logged, all different.
    let logged: Vec<&str> = entries[1..4]
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(logged, generated);
    assert_eq!(generated.iter().collect::<HashSet<_>>().len(), 3);
    assert!(
        generated
            .iter()
            .all(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()))
    );

    let missing = &entries[4];
    assert_eq!(missing["host"], "nowhere.test");
    assert_eq!(missing["route"], Value::Null);
    assert_eq!(missing["upstream_latency_ms"], Value::Null);
    assert_eq!(missing["status"], 503);
}
