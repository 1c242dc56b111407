//! `make bench`: Ceryx beside nginx and HAProxy on this machine, in one run (and beside
//! a model of the original Ceryx on the HTTP/1.1 rows of 32 connections). Starts every
//! server on 127.0.0.1, measures with wrk and h2load, and prints a table section per
//! scenario. `--smoke` runs every scenario with tiny counts (for `make test`, so the
//! script cannot rot); `--only <scenario>` runs one alone.
//!
//! `rig` starts the servers, `scenario::*` measure and return rows, `table` prints them.

// The tests' certificate helper, so that both make certificates the same way.
#[path = "../tests/common/certs.rs"]
mod certs;
mod front;
mod h2load;
mod haproxy;
mod nginx;
mod original;
mod process;
// The tests' Redis counters, so that both count round trips the same way.
#[path = "../tests/common/redis_calls.rs"]
mod redis_calls;
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

/// The scenarios, in the order they run; `--only <name>` runs one alone.
const SCENARIOS: &[&str] = &[
    "throughput",
    "propagation",
    "churn",
    "outage",
    "memory",
    "certificates",
];

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = || {
        format!(
            "usage: bench --ceryx <path to ceryx binary> [--smoke] [--only <{}>]",
            SCENARIOS.join("|")
        )
    };
    let smoke = args.iter().any(|a| a == "--smoke");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args.get(i + 1).cloned().ok_or_else(usage))
            .transpose()
    };
    let ceryx = value("--ceryx")?.map(PathBuf::from).ok_or_else(usage)?;
    let only = value("--only")?;
    if only.as_deref().is_some_and(|o| !SCENARIOS.contains(&o)) {
        return Err(usage().into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let scale = if smoke { scale::SMOKE } else { scale::FULL };
    runtime.block_on(run(ceryx, scale, only.as_deref()))
}

/// Every scenario in turn (or `only` the one named), each section printed as soon as it
/// is measured.
async fn run(ceryx: PathBuf, scale: Scale, only: Option<&str>) -> Result<(), Box<dyn Error>> {
    let wants = |name: &str| only.is_none_or(|o| o == name);
    let mut rig = Rig::start(ceryx, scale.spread_hosts).await?;
    print!("{}", table::title(&scale));
    let section = |text: String| print!("\n{text}");
    let mut throughput = None;
    // The first four scenarios share one proxy.
    if SCENARIOS[..4].iter().any(|s| wants(s)) {
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
        if wants("throughput") {
            let measured = scenario::throughput::run(&rig, &scale, &front).await?;
            section(table::throughput(&measured));
            throughput = Some(measured);
        }
        if wants("propagation") {
            let propagation = scenario::propagation::run(&mut rig, &scale, &store, proxy).await?;
            section(table::propagation(&propagation));
        }
        if wants("churn") {
            let churn = scenario::churn::run(&rig, &scale, &store, proxy).await?;
            section(table::churn(&churn));
        }
        if wants("outage") {
            let outage = scenario::outage::run(&mut rig, &scale, proxy).await?;
            section(table::outage(&outage));
        }
    }
    if wants("memory") {
        let memory = scenario::memory::run(&mut rig, &scale).await?;
        section(table::memory(&memory));
    }
    if wants("certificates") {
        let certificates = scenario::certificates::run(&mut rig, &scale).await?;
        section(table::certificates(&certificates));
    }
    if let Some(throughput) = &throughput {
        section(table::summary(throughput));
    }
    Ok(())
}
