//! 500 CeryxRoutes through a 30 s Redis outage, against a real kube-apiserver: the
//! status PATCHes the controller sends are counted by the API server itself (its own
//! test binary, so no other test's requests are in the count).

mod common;

use ceryx::store::RouteStore;
use common::cluster::Controller;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const ROUTES: usize = 500;

#[tokio::test]
async fn a_redis_outage_costs_each_route_one_status_patch_and_all_return_within_seconds() {
    let plane = ceryx_plane_or_skip!();
    let ns = plane.namespace("outage");
    let mut redis = RedisServer::start().await;
    let controller = Controller::start(
        plane,
        &redis,
        &[("CERYX_INGRESS_CLASS", &ns), ("CERYX_LEASE_NAME", &ns)],
    )
    .await;
    let upstream = Upstream::start("many").await;
    let yaml: String = (0..ROUTES)
        .map(|i| {
            format!(
                "---\napiVersion: ceryx.dev/v1alpha1\nkind: CeryxRoute\nmetadata:\n  name: r{i}\nspec:\n  ingressClassName: {ns}\n  source: r{i}.outage.test\n  target:\n    url: {}\n",
                upstream.url()
            )
        })
        .collect();
    plane.apply_in(&ns, &yaml);
    let programmed = || {
        let list: Value =
            serde_json::from_str(&plane.kubectl_ok(&["get", "cxr", "-n", &ns, "-o", "json"]))
                .unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|obj| {
                obj["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Programmed" && c["status"] == "True")
            })
            .count()
    };
    // Polled slowly: listing 500 objects is work for the API server the controller shares.
    let wait_all = |limit: Duration| async move {
        let start = Instant::now();
        while programmed() != ROUTES {
            assert!(
                start.elapsed() < limit,
                "not all {ROUTES} routes programmed"
            );
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    };
    let applied = Instant::now();
    wait_all(Duration::from_secs(60)).await;
    eprintln!(
        "figure: {ROUTES} CeryxRoutes applied at once, all programmed after {:?}",
        applied.elapsed()
    );
    // Server-side apply is counted as verb APPLY.
    let patches = || {
        ["PATCH", "APPLY"]
            .iter()
            .map(|verb| {
                plane.metric(
                    "apiserver_request_total",
                    &[
                        r#"resource="ceryxroutes""#,
                        r#"subresource="status""#,
                        &format!(r#"verb="{verb}""#),
                    ],
                )
            })
            .sum::<f64>()
    };
    let before = patches();

    redis.kill();
    // The outage itself is the scenario: it lasts 30 s whatever the controller does.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = patches() - before;
    redis.restart().await;
    let back = Instant::now();
    let store = redis.store();
    eventually(
        Duration::from_secs(30),
        "every route back in the store",
        || async {
            store
                .list()
                .await
                .is_ok_and(|routes| routes.len() == ROUTES)
        },
    )
    .await;
    let served = back.elapsed();
    wait_all(Duration::from_secs(30)).await;
    let recovered = back.elapsed();
    for (verb, resource) in [
        ("APPLY", "ceryxroutes"),
        ("POST", "events"),
        ("PATCH", "events"),
    ] {
        let labels = [
            format!(r#"verb="{verb}""#),
            format!(r#"resource="{resource}""#),
        ];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let sum = plane.metric("apiserver_request_duration_seconds_sum", &labels);
        let count = plane.metric("apiserver_request_duration_seconds_count", &labels);
        eprintln!(
            "figure: API server {verb} {resource}: {count} requests, mean {:.1} ms",
            1000.0 * sum / count.max(1.0)
        );
    }
    let after = patches() - before - during;
    eprintln!(
        "figure: {ROUTES} CeryxRoutes, Redis down 30 s: {during} status PATCHes during the outage, {after} after; every route back in the store {served:?} and every status Programmed {recovered:?} after Redis returned"
    );
    // One patch per route to say the store is away (not one per retry), one to say it is
    // back; a few spare for reconciles that raced the restart.
    assert!(
        during <= ROUTES as f64 * 1.1,
        "{during} status PATCHes during the outage"
    );
    assert!(
        after <= ROUTES as f64 * 1.1,
        "{after} status PATCHes after it"
    );
    // Reconnecting takes up to 2 s (1 s reconnect back-off, 1 s subscription retry).
    assert!(served < Duration::from_secs(5), "{served:?}");
    assert!(recovered < Duration::from_secs(15), "{recovered:?}");
    controller.assert_nothing_forbidden();
}
