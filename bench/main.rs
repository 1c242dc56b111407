//! `make bench`: Ceryx beside nginx and HAProxy on this machine, in one run. Starts every
//! server on 127.0.0.1, measures with wrk and h2load, and prints a table section per
//! scenario. `--smoke`
//! runs every scenario with tiny counts (for `make test`, so the script cannot rot).
//!
//! `rig` starts the servers, `scenario::*` measure and return rows, `table` prints them.

// The tests' certificate helper, so that both make certificates the same way.
#[path = "../tests/common/certs.rs"]
mod certs;
mod front;
mod h2load;
mod haproxy;
mod nginx;
mod process;
mod rig;
mod scale;
mod scenario;
mod sink;
mod store;
mod table;
mod usage;
mod wrk;

use ceryx::store::RouteStore;
use front::Front;
use rig::{CERYX_PROXY, Rig};
use scale::Scale;
use std::error::Error;
use std::path::PathBuf;
use store::route;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let ceryx = args
        .iter()
        .position(|a| a == "--ceryx")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .ok_or("usage: bench --ceryx <path to ceryx binary> [--smoke]")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(run(ceryx, if smoke { scale::SMOKE } else { scale::FULL }))
}

/// Every scenario in turn, each section printed as soon as it is measured.
async fn run(ceryx: PathBuf, scale: Scale) -> Result<(), Box<dyn Error>> {
    let mut rig = Rig::start(ceryx, scale.spread_hosts).await?;
    let store = rig.store();
    store.put(&route("bench.test", &rig.a())).await?;
    store
        .put(&store::with_rules("rules.bench.test", &rig.a()))
        .await?;
    let (proxy, proxy_tls) = rig.start_https_proxy(CERYX_PROXY).await?;
    // One HTTP port serves HTTP/1.1 and h2c alike.
    let front = Front {
        http: proxy,
        spread: proxy,
        h2c: proxy,
        tls: proxy_tls,
    };
    print!("{}", table::title(&scale));
    let section = |text: String| print!("\n{text}");

    let throughput = scenario::throughput::run(&rig, &scale, &front).await?;
    section(table::throughput(&throughput));
    let propagation = scenario::propagation::run(&mut rig, &scale, &store, proxy).await?;
    section(table::propagation(&propagation));
    let churn = scenario::churn::run(&rig, &scale, &store, proxy).await?;
    section(table::churn(&churn));
    let outage = scenario::outage::run(&mut rig, &scale, proxy).await?;
    section(table::outage(&outage));
    let memory = scenario::memory::run(&mut rig, &scale).await?;
    section(table::memory(&memory));
    section(table::summary(&throughput));
    Ok(())
}
