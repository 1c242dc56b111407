//! wrk over 100 hosts while their targets flip between the two upstreams.

use crate::rig::Rig;
use crate::scale::Scale;
use crate::store::route;
use crate::wrk::{self, Hosts, Load, Over};
use ceryx::store::{RedisStore, RouteStore};
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct Churn {
    pub hosts: usize,
    pub seconds: u64,
    /// Route changes written during the churned run.
    pub changes: u64,
    /// The same load without changes, for comparison.
    pub calm: Load,
    pub churned: Load,
}

pub async fn run(
    rig: &Rig,
    scale: &Scale,
    store: &Arc<RedisStore>,
    proxy: u16,
) -> Result<Churn, Box<dyn Error>> {
    let hosts = 100;
    let (a, b) = (rig.a(), rig.b());
    for i in 0..hosts {
        store.put(&route(&format!("h{i}.bench.test"), &a)).await?;
    }
    let seconds = scale.churn_seconds;
    let calm = rig.wrk(proxy, Hosts::Spread(hosts), seconds)?;
    let running = Arc::new(AtomicBool::new(true));
    let flipper = {
        let (store, running) = (store.clone(), running.clone());
        tokio::spawn(async move {
            let mut changes = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while running.load(Ordering::Relaxed) {
                tick.tick().await;
                let target = if (changes / hosts as u64).is_multiple_of(2) {
                    &b
                } else {
                    &a
                };
                let _ = store
                    .put(&route(
                        &format!("h{}.bench.test", changes % hosts as u64),
                        target,
                    ))
                    .await;
                changes += 1;
            }
            changes
        })
    };
    let churned = tokio::task::spawn_blocking({
        let dir = rig.dir.clone();
        move || wrk::run(&dir, proxy, Over::Http, Hosts::Spread(hosts), seconds)
    })
    .await??;
    running.store(false, Ordering::Relaxed);
    let changes = flipper.await?;
    Ok(Churn {
        hosts,
        seconds,
        changes,
        calm,
        churned,
    })
}
