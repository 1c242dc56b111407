//! Redis killed under load and restarted: known hosts must not fail, and a new route
//! must be served soon after the restart.

use crate::rig::Rig;
use crate::scale::Scale;
use crate::store::route;
use crate::wrk::{self, Hosts, Over};
use ceryx::store::RouteStore;
use std::error::Error;
use std::time::{Duration, Instant};

pub struct Outage {
    /// How long Redis was down.
    pub seconds: u64,
    /// Failed requests to known hosts over the whole run.
    pub failed: u64,
    pub requests: f64,
    /// From the restart until a route written then was served.
    pub recovery: Duration,
}

pub async fn run(rig: &mut Rig, scale: &Scale, proxy: u16) -> Result<Outage, Box<dyn Error>> {
    let seconds = scale.outage_seconds;
    // Load for a stretch before, during and after the outage.
    let load = tokio::task::spawn_blocking({
        let dir = rig.dir.clone();
        move || wrk::run(&dir, proxy, Over::Http, Hosts::Spread(100), 3 * seconds)
    });
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    rig.procs.kill("redis");
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let restarted = Instant::now();
    rig.start_redis().await?;
    let store = rig.store();
    let host = format!("recovered-{}.bench.test", std::process::id());
    loop {
        if store.put(&route(&host, &rig.a())).await.is_ok()
            && rig.answer(proxy, &host).await.map(|r| r.0) == Some(200)
        {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recovery = restarted.elapsed();
    let load = load.await??;
    Ok(Outage {
        seconds,
        failed: load.failed,
        requests: load.rps * (3 * seconds) as f64,
        recovery,
    })
}
