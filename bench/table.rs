//! The one place that prints: each scenario's rows as a Markdown section, in the format
//! docs/benchmarks.md records.

use crate::scale::Scale;
use crate::scenario::certificates::Certificates;
use crate::scenario::churn::Churn;
use crate::scenario::memory::Memory;
use crate::scenario::outage::Outage;
use crate::scenario::propagation::Propagation;
use crate::scenario::throughput::{Group, Row, Run, Server, Throughput};
use std::fmt::Write;
use std::time::Duration;

/// The heading over every section.
pub fn title(scale: &Scale) -> String {
    format!(
        "# Ceryx vs nginx and HAProxy on 127.0.0.1, {} core(s), median of {} round(s) of {} s\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        scale.rounds,
        scale.wrk_seconds
    )
}

pub fn throughput(t: &Throughput) -> String {
    let mut out = String::from(
        "## Throughput, latency and cost (wrk -t1 or h2load -t1; CPU per request and peak RSS of \
         all the server's processes, nginx's master and workers summed)\n\n\
         | scenario | server | req/s | MiB/s | p50 | p99 | failed | CPU/request | peak RSS | req/s vs better peer | CPU vs nginx |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for group in &t.groups {
        let (best, nginx) = peers(group);
        for (i, row) in group.rows.iter().enumerate() {
            let s = stats(row);
            let scenario = if i == 0 { group.name.as_str() } else { "" };
            let mib_s = group
                .body
                .map(|b| format!("{:.0}", s.rps * b as f64 / (1 << 20) as f64))
                .unwrap_or_default();
            let vs_best = match (row.server, &best) {
                (Server::Ceryx | Server::Original, Some(best)) => {
                    format!("{:.2}", s.rps / best.rps)
                }
                _ => String::new(),
            };
            let vs_nginx = match (row.server, &nginx) {
                (Server::Ceryx | Server::Haproxy | Server::Original, Some(nginx)) => {
                    format!("{:.2}", s.cpu_us / nginx.cpu_us)
                }
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "| {scenario} | {} | {:.0} | {mib_s} | {} | {} | {} | {:.1} µs | {} MiB | {vs_best} | {vs_nginx} |",
                row.name,
                s.rps,
                latency(s.p50),
                latency(s.p99),
                s.failed,
                s.cpu_us,
                s.peak_kib / 1024
            );
        }
    }
    out
}

/// The goals at a glance: each group's (first) Ceryx row against the better peer, and
/// against the original Ceryx's model where the group has it.
pub fn summary(t: &Throughput) -> String {
    let mut out = String::from(
        "## Summary: Ceryx's req/s against the better of nginx and HAProxy and against the original \
         Ceryx (its model), CPU per request against nginx\n\n\
         | scenario | better peer | req/s vs better peer | CPU/request vs nginx | req/s vs original Ceryx |\n\
         |---|---|---|---|---|\n",
    );
    for group in &t.groups {
        let (best, nginx) = peers(group);
        let of = |server| group.rows.iter().find(|r| r.server == server).map(stats);
        if let (Some(best), Some(nginx), Some(c)) = (best, nginx, of(Server::Ceryx)) {
            let vs_original = of(Server::Original)
                .map(|o| format!("{:.1}", c.rps / o.rps))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} | {:.2} | {vs_original} |",
                group.name,
                best.name,
                c.rps / best.rps,
                c.cpu_us / nginx.cpu_us
            );
        }
    }
    out
}

pub fn propagation(p: &Propagation) -> String {
    let mut out = format!(
        "## Propagation: a route change until both proxy processes serve it ({} changes each)\n\n\
         | writer | p50 | p99 | max |\n\
         |---|---|---|---|\n",
        p.changes
    );
    for row in &p.rows {
        let _ = writeln!(
            out,
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            row.writer,
            ms(percentile(&row.times, 0.5)),
            ms(percentile(&row.times, 0.99)),
            ms(row.times.last().copied().unwrap_or_default())
        );
    }
    out
}

pub fn churn(c: &Churn) -> String {
    format!(
        "## Churn: wrk over {} hosts for {} s while their targets flip ({} changes, {:.0}/s)\n\n\
         | | req/s | p99 | failed (non-2xx or socket errors) |\n\
         |---|---|---|---|\n\
         | no churn | {:.0} | {:.2} ms | {} |\n\
         | churn | {:.0} ({:.2}x) | {:.2} ms | {} |\n",
        c.hosts,
        c.seconds,
        c.changes,
        c.changes as f64 / c.seconds as f64,
        c.calm.rps,
        c.calm.p99_ms,
        c.calm.failed,
        c.churned.rps,
        c.churned.rps / c.calm.rps,
        c.churned.p99_ms,
        c.churned.failed
    )
}

pub fn outage(o: &Outage) -> String {
    format!(
        "## Redis outage: killed for {} s under load on 100 known hosts\n\n\
         | failed requests to known hosts | requests | time from restart to a new route served |\n\
         |---|---|---|\n\
         | {} | {:.0} | {:.0} ms (includes redis-server start) |\n",
        o.seconds,
        o.failed,
        o.requests,
        ms(o.recovery)
    )
}

pub fn memory(m: &Memory) -> String {
    let mut out = format!(
        "## Memory: proxy RSS after one request to each of {} hosts\n\n\
         | routes in Redis | idle RSS | RSS after | per cached route |\n\
         |---|---|---|---|\n",
        m.touched
    );
    for row in &m.rows {
        let per_route =
            (row.after_kib.saturating_sub(row.idle_kib) * 1024) as f64 / m.touched as f64;
        let _ = writeln!(
            out,
            "| {} | {} KiB | {} KiB | {per_route:.0} bytes |",
            row.routes, row.idle_kib, row.after_kib
        );
    }
    out
}

pub fn certificates(c: &Certificates) -> String {
    let n = c.handshakes.len();
    let half = n / 2;
    let per = |x: u64| x as f64 / n.max(1) as f64;
    let per_host = (c.rss_kib[2].saturating_sub(c.rss_kib[1]) * 1024) as f64 / half.max(1) as f64;
    format!(
        "## Certificates: {} routes in Redis, each with its own certificate; a full TLS handshake \
         (TCP connect included) to each of {n} hosts the proxy has never seen, one at a time\n\n\
         | first handshakes | p50 | p99 | max | store round trips per handshake | store commands per handshake | own certificate served |\n\
         |---|---|---|---|---|---|---|\n\
         | {n} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} | {:.2} | {} |\n\n\
         | proxy RSS idle | after {half} hosts | after {n} hosts | per host served (the second {half}) |\n\
         |---|---|---|---|\n\
         | {} KiB | {} KiB | {} KiB | {per_host:.0} bytes |\n",
        c.stored,
        ms(percentile(&c.handshakes, 0.5)),
        ms(percentile(&c.handshakes, 0.99)),
        ms(c.handshakes.last().copied().unwrap_or_default()),
        per(c.round_trips),
        per(c.commands),
        c.own,
        c.rss_kib[0],
        c.rss_kib[1],
        c.rss_kib[2],
    )
}

/// A row's figures over its rounds: medians, all failures, the highest peak.
struct Stats {
    name: &'static str,
    rps: f64,
    p50: f64,
    p99: f64,
    failed: u64,
    cpu_us: f64,
    peak_kib: u64,
}

fn stats(row: &Row) -> Stats {
    let runs = &row.runs;
    let median_of = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    Stats {
        name: row.name,
        rps: median_of(|r| r.load.rps),
        p50: median_of(|r| r.load.p50_ms),
        p99: median_of(|r| r.load.p99_ms),
        failed: runs.iter().map(|r| r.load.failed).sum(),
        cpu_us: median_of(|r| r.cpu.as_secs_f64() * 1e6 / r.load.requests.max(1) as f64),
        peak_kib: runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0),
    }
}

/// The better of nginx and HAProxy by req/s, and nginx, in `group`.
fn peers(group: &Group) -> (Option<Stats>, Option<Stats>) {
    let of = |server| group.rows.iter().find(|r| r.server == server).map(stats);
    let nginx = of(Server::Nginx);
    let best = [of(Server::Nginx), of(Server::Haproxy)]
        .into_iter()
        .flatten()
        .max_by(|a, b| a.rps.total_cmp(&b.rps));
    (best, nginx)
}

/// A latency in ms, or a dash where the tool reports none.
fn latency(ms: f64) -> String {
    if ms.is_nan() {
        "–".into()
    } else {
        format!("{ms:.2} ms")
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
