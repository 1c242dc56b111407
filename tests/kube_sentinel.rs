//! The controller across a Sentinel failover (issue 16), against a real kube-apiserver:
//! the primary is SIGKILLed, CeryxRoutes are changed and added while the sentinels
//! elect a new one, and the same controller process (no restart) writes every route's
//! latest state to the new primary and reports it Programmed.

mod common;

use common::cluster::Controller;
use common::sentinel::{MASTER, SentinelSet, sentinel_installed};
use common::*;
use serde_json::Value;
use std::ops::Range;
use std::time::{Duration, Instant};

const ROUTES: usize = 50;

/// CeryxRoutes `r<i>` for `range`, each to a target whose path is `version`.
fn routes(ns: &str, range: Range<usize>, version: &str) -> String {
    range
        .map(|i| {
            format!(
                "---\napiVersion: ceryx.dev/v1alpha1\nkind: CeryxRoute\nmetadata:\n  name: r{i}\nspec:\n  ingressClassName: {ns}\n  source: r{i}.failover.test\n  target:\n    url: http://127.0.0.1:9/{version}\n"
            )
        })
        .collect()
}

/// Whether the server on `port` holds every route of `expected` (index, version).
async fn stored(set: &SentinelSet, port: u16, expected: &[(usize, &str)]) -> bool {
    let mut conn = set.raw(port).await;
    let keys: Vec<String> = expected
        .iter()
        .map(|(i, _)| format!("ceryx:routes:r{i}.failover.test"))
        .collect();
    let Ok(values) = redis::cmd("MGET")
        .arg(&keys)
        .query_async::<Vec<Option<String>>>(&mut conn)
        .await
    else {
        return false;
    };
    values.iter().zip(expected).all(|(value, (_, version))| {
        value.as_deref() == Some(&format!("http://127.0.0.1:9/{version}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_controller_keeps_reconciling_across_a_sentinel_failover() {
    if !sentinel_installed() {
        return;
    }
    let plane = ceryx_plane_or_skip!();
    let ns = plane.namespace("failover");
    let mut set = SentinelSet::start().await;
    let sentinels = set.sentinels();
    let mut controller = Controller::start_on(
        plane,
        &[
            ("CERYX_REDIS_SENTINELS", &sentinels),
            ("CERYX_REDIS_SENTINEL_MASTER", MASTER),
            ("CERYX_REDIS_TIMEOUT", "500"),
        ],
        &[("CERYX_INGRESS_CLASS", &ns), ("CERYX_LEASE_NAME", &ns)],
    )
    .await;
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
                    .any(|c| {
                        c["type"] == "Programmed"
                            && c["status"] == "True"
                            && c["observedGeneration"] == obj["metadata"]["generation"]
                    })
            })
            .count()
    };

    plane.apply_in(&ns, &routes(&ns, 0..ROUTES, "a"));
    let first: Vec<(usize, &str)> = (0..ROUTES).map(|i| (i, "a")).collect();
    let primary = set.primary_port().await.unwrap();
    eventually(Duration::from_secs(60), "every route in the store", || {
        stored(&set, primary, &first)
    })
    .await;

    let old = set.kill_primary().await;
    let killed = Instant::now();
    // While the sentinels elect a new primary: half the routes change, as many are added.
    plane.apply_in(
        &ns,
        &(routes(&ns, 0..ROUTES / 2, "b") + &routes(&ns, ROUTES..2 * ROUTES, "b")),
    );
    let new = set.new_primary(old, Duration::from_secs(30)).await;
    let switched = killed.elapsed();
    let latest: Vec<(usize, &str)> = (0..2 * ROUTES)
        .map(|i| {
            let unchanged = (ROUTES / 2..ROUTES).contains(&i);
            (i, if unchanged { "a" } else { "b" })
        })
        .collect();
    eventually(
        Duration::from_secs(60),
        "every route's latest state on the new primary",
        || stored(&set, new, &latest),
    )
    .await;
    let written = killed.elapsed();
    let start = Instant::now();
    while programmed() != 2 * ROUTES {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not every route Programmed after the failover"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let reported = killed.elapsed();
    // The same process all along.
    assert!(controller.is_running(), "the controller exited");
    eprintln!(
        "controller across a sentinel failover: sentinels switched {switched:?} after the SIGKILL; \
         {} routes changed or added meanwhile, all on the new primary {written:?} after the kill, \
         all {} Programmed {reported:?} after it",
        ROUTES + ROUTES / 2,
        2 * ROUTES
    );
    controller.assert_nothing_forbidden();
}
