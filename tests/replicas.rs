//! The `ceryx` binary as users run it: replicas sharing one Redis, Redis outages,
//! graceful shutdown, and the no-setup quick start.

mod common;

use ceryx::store::{RedisStore, RouteStore};
use common::*;
use http::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn redis_env(redis: &RedisServer) -> Vec<(&'static str, String)> {
    vec![
        ("CERYX_REDIS_HOST", "127.0.0.1".into()),
        ("CERYX_REDIS_PORT", redis.port.to_string()),
        ("CERYX_REDIS_TIMEOUT", "1000".into()),
        // An hour: only change notices can explain a change seen sooner.
        ("CERYX_CACHE_TTL", "3600".into()),
    ]
}

#[tokio::test]
async fn a_route_change_reaches_two_proxy_processes_within_milliseconds() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let env = redis_env(&redis);
    let replicas = [
        Process::start("proxy", &env).await,
        Process::start("proxy", &env).await,
    ];
    let client = TestClient::default();

    store.put(&route("svc.test", &a.url())).await.unwrap();
    for replica in &replicas {
        assert_eq!(
            client.served_by(replica.addr, "svc.test").await.as_deref(),
            Some("a")
        );
    }
    // Both replicas now hold the route in their cache, trusted for an hour.
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let (from, to) = if round % 2 == 0 { ("a", &b) } else { ("b", &a) };
        let start = Instant::now();
        store.put(&route("svc.test", &to.url())).await.unwrap();
        for (i, replica) in replicas.iter().enumerate() {
            eventually(
                Duration::from_secs(2),
                "the change to reach a replica",
                || async {
                    client.served_by(replica.addr, "svc.test").await.as_deref() != Some(from)
                },
            )
            .await;
            let seen = start.elapsed();
            println!("round {round}: replica {i} serves the new target after {seen:?}");
            worst = worst.max(seen);
        }
    }
    println!("worst time from write to both replicas serving it: {worst:?}");
    assert!(worst < Duration::from_millis(100), "{worst:?}");

    store.delete("svc.test").await.unwrap();
    for replica in &replicas {
        eventually(
            Duration::from_secs(2),
            "the deletion to reach a replica",
            || async {
                client.get(replica.addr, "svc.test", "/").await.status
                    == StatusCode::SERVICE_UNAVAILABLE
            },
        )
        .await;
    }
}

#[tokio::test]
async fn known_hosts_survive_a_redis_outage_and_new_routes_follow_its_return() {
    let mut redis = RedisServer::start().await;
    let store = redis.store();
    let up = Upstream::start("up").await;
    let mut env = redis_env(&redis);
    // A short TTL: known hosts must be served from the last known state, not from a
    // still-fresh cache entry.
    env.push(("CERYX_CACHE_TTL", "100ms".into()));
    let proxy = Process::start("proxy", &env).await;
    let client = TestClient::default();
    store.put(&route("known.test", &up.url())).await.unwrap();
    assert_eq!(
        client.get(proxy.addr, "known.test", "/").await.status,
        StatusCode::OK
    );

    redis.kill();
    for _ in 0..20 {
        let reply = client.get(proxy.addr, "known.test", "/").await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "a known host failed while redis was down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing is known about this host: the outage is the answer, not "no route".
    let unknown = client.get(proxy.addr, "unknown.test", "/").await;
    assert_eq!(unknown.status, StatusCode::INTERNAL_SERVER_ERROR);

    redis.restart().await;
    // The old store's connection recovers on its own too.
    let fresh: Arc<RedisStore> = redis.store();
    eventually(
        Duration::from_secs(10),
        "redis to accept writes again",
        || async { fresh.put(&route("new.test", &up.url())).await.is_ok() },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the new route to be served",
        || async { client.get(proxy.addr, "new.test", "/").await.status == StatusCode::OK },
    )
    .await;
    // The restarted Redis is empty: its truth wins over the last known state.
    eventually(
        Duration::from_secs(10),
        "the lost route to be gone",
        || async {
            client.get(proxy.addr, "known.test", "/").await.status
                == StatusCode::SERVICE_UNAVAILABLE
        },
    )
    .await;
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_stops_accepting() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let up = Upstream::start("up").await;
    store.put(&route("slow.test", &up.url())).await.unwrap();
    let mut proxy = Process::start("proxy", &redis_env(&redis)).await;

    let addr = proxy.addr;
    let in_flight =
        tokio::spawn(async move { TestClient::default().get(addr, "slow.test", "/slow").await });
    // The upstream holds /slow for two seconds; signal while it is being served.
    eventually(
        Duration::from_secs(5),
        "the request to reach the upstream",
        || async { up.hits.load(std::sync::atomic::Ordering::SeqCst) == 1 },
    )
    .await;
    proxy.terminate();
    let reply = in_flight.await.unwrap();
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "an in-flight request was cut by SIGTERM"
    );
    let status = tokio::task::spawn_blocking(move || proxy.child.wait().map(|s| (s, proxy)))
        .await
        .unwrap()
        .unwrap();
    assert!(status.0.success(), "exit status {:?}", status.0);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn ceryx_run_with_no_redis_serves_a_route_created_through_its_api_on_the_next_request() {
    let process = Process::start("run", &[]).await;
    let client = TestClient::default();
    let up = Upstream::start("up").await;
    let reply = client.get(process.addr, "quick.test", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&reply.body).contains("quick.test"));

    let body = format!(r#"{{"source": "quick.test", "target": "{}"}}"#, up.url());
    let created = client
        .send(process.api, http::Request::post("/api/routes"), body)
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let reply = client.get(process.addr, "quick.test", "/").await;
    assert_eq!(
        reply.upstream().as_deref(),
        Some("up"),
        "not served on the very next request"
    );
}
