//! Redis high availability (issue 16): a Sentinel-managed primary with two replicas,
//! the primary SIGKILLed under load. Known hosts keep being served, every write the API
//! acknowledged survives the failover, every other answer says what happened, and new
//! routes are served again as soon as the sentinels have switched. Figures are printed
//! (`cargo test --test sentinel -- --nocapture`).

mod common;

use common::sentinel::{DOWN_AFTER, FAILOVER_TIMEOUT, SentinelSet, sentinel_installed};
use common::*;
use http::{Request, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Bound of every wait for a failover: two attempts, with room for a slow machine.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);

/// The environment of a `ceryx` process on `set`.
fn env(set: &SentinelSet) -> Vec<(&'static str, String)> {
    let mut env = set.env();
    // Generous for loaded CI machines: it bounds each Redis call and each WAIT.
    env.push(("CERYX_REDIS_TIMEOUT", "500".into()));
    env
}

/// One write through the REST API: its status, its JSON `detail` (if any), how long.
async fn put(
    client: &TestClient,
    api: SocketAddr,
    source: &str,
    target: &str,
) -> (StatusCode, String, Duration) {
    let body = format!(r#"{{"source": "{source}", "target": "{target}"}}"#);
    let request =
        Request::put(format!("/api/routes/{source}")).header("content-type", "application/json");
    let start = Instant::now();
    let reply = client.send(api, request, body).await;
    let took = start.elapsed();
    let detail = match reply.status.is_success() {
        true => String::new(),
        false => reply.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    (reply.status, detail, took)
}

/// Clients requesting `hosts` in turn through `proxy` until `stop` (or a bound);
/// returns (requests, failures).
fn hammer(
    proxy: SocketAddr,
    hosts: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let requests = Arc::new(AtomicUsize::new(0));
        let mut clients = tokio::task::JoinSet::new();
        for worker in 0..8 {
            let (hosts, stop, requests) = (hosts.clone(), stop.clone(), requests.clone());
            clients.spawn(async move {
                let client = TestClient::default();
                let mut failures = Vec::new();
                let first = worker * hosts.len() / 8;
                // Bounded even if `stop` never comes.
                for i in first..first + 1_000_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let host = &hosts[i % hosts.len()];
                    let reply = client.get(proxy, host, "/").await;
                    if reply.status != StatusCode::OK {
                        failures.push(format!("{host}: {}", reply.status));
                    }
                    requests.fetch_add(1, Ordering::Relaxed);
                }
                failures
            });
        }
        let failures = clients.join_all().await.concat();
        (requests.load(Ordering::Relaxed), failures)
    })
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_request_to_a_known_host_fails_when_the_primary_is_killed() {
    if !sentinel_installed() {
        return;
    }
    let mut set = SentinelSet::start().await;
    let up = Upstream::start("up").await;
    let mut env = env(&set);
    // Entries go stale quickly, so the outage is met by refreshes that fail.
    env.push(("CERYX_CACHE_TTL", "500ms".into()));
    let api = Process::start("api", &env).await;
    let proxy = Process::start("proxy", &env).await;
    // A proxy (with its API: `ceryx run`) that trusts its cache for an hour: only a
    // change notice can tell it of a change, so after the failover it must be
    // subscribed on the new primary.
    let mut patient = env.clone();
    patient.push(("CERYX_CACHE_TTL", "3600".into()));
    let patient = Process::start("run", &patient).await;
    let client = TestClient::default();

    let hosts: Arc<Vec<String>> = Arc::new((0..1000).map(|i| format!("known{i}.test")).collect());
    for host in hosts.iter() {
        let (status, detail, _) = put(&client, api.api, host, &up.url()).await;
        assert_eq!(status, StatusCode::OK, "{host}: {detail}");
    }
    // Every host known to the proxy before the kill.
    for host in hosts.iter() {
        assert_eq!(
            client.get(proxy.addr, host, "/").await.status,
            StatusCode::OK
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let before = up.hits.load(Ordering::Relaxed);
    let load = hammer(proxy.addr, hosts.clone(), stop.clone());
    eventually(Duration::from_secs(10), "the load to run", || async {
        up.hits.load(Ordering::Relaxed) > before + 500
    })
    .await;

    let old = set.kill_primary().await;
    let killed = Instant::now();
    let switched = async {
        set.new_primary(old, FAILOVER_LIMIT).await;
        killed.elapsed()
    };
    // A user creating a route after the kill: retried until the API acknowledges it.
    let created = async {
        let mut refusals = Vec::new();
        for _ in 0..3000 {
            let (status, detail, _) = put(&client, api.api, "after.test", &up.url()).await;
            if status.is_success() {
                return (killed.elapsed(), refusals);
            }
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{detail}");
            refusals.push(detail);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no write acknowledged after the failover: {refusals:?}");
    };
    let (switched, (written, refusals)) = tokio::join!(switched, created);
    let served_after = async {
        for _ in 0..3000 {
            if client.get(proxy.addr, "after.test", "/").await.status == StatusCode::OK {
                return killed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the route created after the failover is not served");
    };
    let served = served_after.await;
    // The patient proxy reads known0 after the switch (its table went stale then; it
    // may follow the new primary a moment after the other processes), then hears of a
    // change to it from the new primary.
    let b = Upstream::start("b").await;
    eventually(
        Duration::from_secs(2),
        "the patient proxy to serve a known host from the new primary",
        || async {
            client
                .served_by(patient.addr, "known0.test")
                .await
                .as_deref()
                == Some("up")
        },
    )
    .await;
    let changed = Instant::now();
    let (status, detail, _) = put(&client, api.api, "known0.test", &b.url()).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    eventually(
        Duration::from_secs(2),
        "a change to reach a proxy through the new primary's notices",
        || async {
            client
                .served_by(patient.addr, "known0.test")
                .await
                .as_deref()
                == Some("b")
        },
    )
    .await;
    let noticed = changed.elapsed();
    // Some more load on the new primary, then stop.
    let hits = up.hits.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(10),
        "load after the failover",
        || async { up.hits.load(Ordering::Relaxed) > hits + 1000 },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let (requests, failures) = load.await.unwrap();
    // The API process counted one move to a new primary.
    let metrics = client.get(api.api, "localhost", "/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ceryx_store_primary_switches_total") && l.ends_with(" 1")),
        "{metrics}"
    );

    let mut kinds: Vec<&str> = refusals
        .iter()
        .map(|d| {
            if d.contains("nothing was changed") {
                "nothing was changed"
            } else if d.contains("may or may not have been kept") {
                "may or may not have been kept"
            } else {
                "other"
            }
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    eprintln!(
        "sentinel failover under load: down-after {DOWN_AFTER:?}, failover-timeout {FAILOVER_TIMEOUT:?}; \
         sentinels switched {switched:?} after the SIGKILL; first acknowledged write {written:?} \
         after it ({} refused before: {kinds:?}); that route served {served:?} after it; \
         a change after the failover served by a `ceryx run` with a 1 h cache {noticed:?} after it was written; \
         {requests} requests to 1000 known hosts, {} failed",
        refusals.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        !kinds.contains(&"other"),
        "a refusal that does not say what happened: {refusals:?}"
    );
    assert!(
        served <= switched + Duration::from_secs(1),
        "served {served:?} after the kill, the sentinels switched after {switched:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_survives_a_failover() {
    if !sentinel_installed() {
        return;
    }
    // With passwords on the servers and on the sentinels, as in production.
    let mut set = SentinelSet::start_with_passwords("primary-secret", "sentinel-secret").await;
    let api = Process::start("api", &env(&set)).await;
    const WRITES: usize = 1000;
    const WORKERS: usize = 4;
    // A random moment: after 100 to 699 answers.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    let kill_at = 100 + seed % 600;
    let answered = Arc::new(AtomicUsize::new(0));
    let target = |i: usize| format!("http://127.0.0.1:9/w{i}");

    let mut writers = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let (answered, api) = (answered.clone(), api.api);
        writers.spawn(async move {
            let client = TestClient::default();
            let mut answers = Vec::new();
            for i in (worker..WRITES).step_by(WORKERS) {
                let (status, detail, _) =
                    put(&client, api, &format!("w{i}.test"), &target(i)).await;
                answered.fetch_add(1, Ordering::Relaxed);
                if !status.is_success() {
                    // As a client backs off; keeps the writes spread over the failover.
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                answers.push((i, status, detail));
            }
            answers
        });
    }
    eventually(
        Duration::from_secs(60),
        "writes before the kill",
        || async { answered.load(Ordering::Relaxed) >= kill_at },
    )
    .await;
    let old = set.kill_primary().await;
    let killed = Instant::now();
    let answers = writers.join_all().await.concat();
    let new = set.new_primary(old, FAILOVER_LIMIT).await;
    let switched = killed.elapsed();

    let mut primary = set.raw(new).await;
    let keys: Vec<String> = (0..WRITES)
        .map(|i| format!("ceryx:routes:w{i}.test"))
        .collect();
    let stored: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut primary)
        .await
        .unwrap();
    let (mut acknowledged, mut lost, mut not_written, mut phantoms) =
        (0, Vec::new(), 0, Vec::new());
    let (mut unsure_kept, mut unsure_gone, mut unexplained) = (0, 0, Vec::new());
    for (i, status, detail) in &answers {
        let kept = stored[*i].as_deref() == Some(target(*i).as_str());
        if status.is_success() {
            acknowledged += 1;
            if !kept {
                lost.push(i);
            }
        } else if *status == StatusCode::SERVICE_UNAVAILABLE
            && detail.contains("nothing was changed")
        {
            not_written += 1;
            if kept {
                phantoms.push(i);
            }
        } else if *status == StatusCode::SERVICE_UNAVAILABLE
            && detail.contains("may or may not have been kept")
        {
            if kept {
                unsure_kept += 1;
            } else {
                unsure_gone += 1;
            }
        } else {
            unexplained.push(format!("w{i}: {status} {detail}"));
        }
    }
    eprintln!(
        "{WRITES} writes, primary SIGKILLed after {kill_at} answers, sentinels switched {switched:?} later: \
         {acknowledged} acknowledged, {} of them lost; {not_written} answered 503 \"nothing was changed\" \
         ({} of them stored anyway); {} answered 503 \"may or may not have been kept\" ({unsure_kept} kept, \
         {unsure_gone} not); {} unexplained",
        lost.len(),
        phantoms.len(),
        unsure_kept + unsure_gone,
        unexplained.len()
    );
    assert_eq!(answers.len(), WRITES);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(
        phantoms.is_empty(),
        "\"nothing was changed\" but stored: {phantoms:?}"
    );
    assert!(unexplained.is_empty(), "{unexplained:?}");
    assert!(acknowledged > kill_at / 2, "too few writes acknowledged");
}

/// A planned failover (`SENTINEL FAILOVER`): the old primary lives on and is demoted to a
/// replica a few seconds later. Writes through the API go on throughout; each answer
/// says what happened, and writes reach the new primary without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_follow_a_planned_failover() {
    if !sentinel_installed() {
        return;
    }
    let set = SentinelSet::start().await;
    let api = Process::start("api", &env(&set)).await;
    let client = TestClient::default();
    let target = |i: usize| format!("http://127.0.0.1:9/p{i}");
    let (status, detail, _) = put(&client, api.api, "p0.test", &target(0)).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    let old = set.fail_over().await;
    let started = Instant::now();
    let mut answers = Vec::new();
    // Writes until the old primary is a replica and a write after that was acknowledged.
    let mut demoted = None;
    for i in 1..20_000 {
        let (status, detail, _) = put(&client, api.api, &format!("p{i}.test"), &target(i)).await;
        answers.push((i, status, detail));
        if demoted.is_none() && set.is_replica(old).await {
            demoted = Some((started.elapsed(), i));
        }
        if let Some((_, at)) = demoted
            && status.is_success()
            && i > at
        {
            break;
        }
        assert!(
            started.elapsed() < FAILOVER_LIMIT,
            "no write acknowledged after the demotion"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (demoted, _) = demoted.expect("the old primary demoted");
    let new = set.new_primary(old, FAILOVER_LIMIT).await;
    let mut primary = set.raw(new).await;
    let (mut lost, mut refused, mut unsure) = (Vec::new(), Vec::new(), 0);
    for (i, status, detail) in &answers {
        let stored: Option<String> = redis::cmd("GET")
            .arg(format!("ceryx:routes:p{i}.test"))
            .query_async(&mut primary)
            .await
            .unwrap();
        let kept = stored.as_deref() == Some(target(*i).as_str());
        if status.is_success() {
            if !kept {
                lost.push(*i);
            }
        } else if detail.contains("nothing was changed") {
            assert!(!kept, "p{i}: \"nothing was changed\" but stored");
            refused.push(detail.clone());
        } else {
            assert!(
                detail.contains("may or may not have been kept"),
                "p{i}: {status} {detail}"
            );
            unsure += 1;
        }
    }
    eprintln!(
        "planned failover: old primary demoted {demoted:?} after SENTINEL FAILOVER; {} writes, \
         {} acknowledged ({} of them lost), {} \"nothing was changed\", {unsure} \"may or may not \
         have been kept\"",
        answers.len(),
        answers.iter().filter(|(_, s, _)| s.is_success()).count(),
        lost.len(),
        refused.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_no_replica_confirms_is_a_503_that_says_it_may_have_been_kept() {
    let redis = RedisServer::start().await;
    let env = vec![
        ("CERYX_REDIS_HOST", "127.0.0.1".into()),
        ("CERYX_REDIS_PORT", redis.port.to_string()),
        ("CERYX_REDIS_TIMEOUT", "200".into()),
        // One replica required, none there.
        ("CERYX_REDIS_WAIT_REPLICAS", "1".into()),
    ];
    let api = Process::start("api", &env).await;
    let client = TestClient::default();
    let (status, detail, took) = put(&client, api.api, "lonely.test", "http://127.0.0.1:9").await;
    eprintln!("a write no replica confirms: {status} after {took:?}: {detail}");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(detail.contains("may or may not have been kept"), "{detail}");
    assert!(detail.contains("0 of 1 replicas"), "{detail}");
    assert!(
        took >= Duration::from_millis(200),
        "WAIT did not wait: {took:?}"
    );
    // It was applied on the primary (only not confirmed): the detail told the truth.
    let mut raw = redis.raw().await;
    let stored: Option<String> = redis::cmd("GET")
        .arg("ceryx:routes:lonely.test")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some("http://127.0.0.1:9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_write_latency_cost_of_waiting_for_a_replica() {
    if !sentinel_installed() {
        return;
    }
    const WRITES: usize = 300;
    async fn latencies(api: SocketAddr, name: &str) -> Vec<Duration> {
        let client = TestClient::default();
        let mut took = Vec::with_capacity(WRITES);
        for i in 0..WRITES {
            let (status, detail, t) = put(
                &client,
                api,
                &format!("{name}{i}.test"),
                "http://127.0.0.1:9",
            )
            .await;
            assert!(status.is_success(), "{name}: {status} {detail}");
            took.push(t);
        }
        took.sort();
        took
    }
    let single = RedisServer::start().await;
    let alone = Process::start(
        "api",
        &[
            ("CERYX_REDIS_HOST", "127.0.0.1".into()),
            ("CERYX_REDIS_PORT", single.port.to_string()),
            ("CERYX_REDIS_TIMEOUT", "500".into()),
        ],
    )
    .await;
    let set = SentinelSet::start().await;
    let waiting = Process::start("api", &env(&set)).await;
    let mut no_wait = env(&set);
    no_wait.push(("CERYX_REDIS_WAIT_REPLICAS", "0".into()));
    let not_waiting = Process::start("api", &no_wait).await;

    // Interleaved rounds would share the machine's noise; one after the other is simpler
    // and each runs long enough to average it out.
    let runs = [
        (
            "one redis, no replica, no WAIT",
            latencies(alone.api, "alone").await,
        ),
        (
            "sentinels, 2 replicas, no WAIT",
            latencies(not_waiting.api, "nowait").await,
        ),
        (
            "sentinels, 2 replicas, WAIT 1",
            latencies(waiting.api, "wait").await,
        ),
    ];
    for (name, took) in &runs {
        let mean = took.iter().sum::<Duration>() / took.len() as u32;
        eprintln!(
            "write latency through the API, {name}: mean {mean:?}, p50 {:?}, p99 {:?} ({WRITES} sequential writes)",
            percentile(took, 50),
            percentile(took, 99)
        );
    }
}
