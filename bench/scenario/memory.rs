//! Resident memory of a fresh proxy, idle and after one request to each of many hosts.

use crate::process::rss_kib;
use crate::rig::Rig;
use crate::scale::Scale;
use http_body_util::{BodyExt, Empty};
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One proxy over `routes` routes in Redis.
pub struct Row {
    pub routes: usize,
    pub idle_kib: u64,
    pub after_kib: u64,
}

pub struct Memory {
    /// Hosts requested once each.
    pub touched: usize,
    pub rows: Vec<Row>,
}

pub async fn run(rig: &mut Rig, scale: &Scale) -> Result<Memory, Box<dyn Error>> {
    let touched = scale.touched_hosts;
    let mut rows = Vec::new();
    for routes in [scale.many_routes, scale.huge_routes] {
        rig.load_routes(routes, &rig.a()).await?;
        let port = rig.start_ceryx("proxy-mem", &[]).await?;
        let pid = rig.procs.pid("proxy-mem");
        rig.answer(port, "h0.bench.test").await;
        let idle_kib = rss_kib(pid);
        let mut tasks = tokio::task::JoinSet::new();
        let failed = Arc::new(AtomicU64::new(0));
        for worker in 0..64 {
            let (client, failed) = (rig.http.clone(), failed.clone());
            tasks.spawn(async move {
                for i in (worker..touched).step_by(64) {
                    let req = http::Request::get(format!("http://127.0.0.1:{port}/"))
                        .header("host", format!("h{i}.bench.test"))
                        .body(Empty::new())
                        .unwrap();
                    match client.request(req).await {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.into_body().collect().await;
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        tasks.join_all().await;
        let after_kib = rss_kib(pid);
        assert_eq!(
            failed.load(Ordering::Relaxed),
            0,
            "requests failed while touching hosts"
        );
        rows.push(Row {
            routes,
            idle_kib,
            after_kib,
        });
        rig.procs.kill("proxy-mem");
    }
    Ok(Memory { touched, rows })
}
