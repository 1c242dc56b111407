//! The one place that prints: each scenario's rows as a Markdown section, in the format
//! docs/benchmarks.md records.

use crate::scale::Scale;
use crate::scenario::churn::Churn;
use crate::scenario::memory::Memory;
use crate::scenario::outage::Outage;
use crate::scenario::propagation::Propagation;
use crate::scenario::throughput::{Row, Throughput};
use std::fmt::Write;
use std::time::Duration;

/// The heading over every section.
pub fn title(scale: &Scale) -> String {
    format!(
        "# Ceryx vs nginx on 127.0.0.1, {} core(s), wrk -t1 -c50, median of {} round(s) of {} s\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        scale.rounds,
        scale.wrk_seconds
    )
}

pub fn throughput(t: &Throughput) -> String {
    let mut out = format!(
        "## Throughput and latency (spread: {} routes in Redis, requests over {} hosts)\n\n\
         | scenario | req/s | p50 | p99 | failed | req/s vs nginx | p99 vs nginx |\n\
         |---|---|---|---|---|---|---|\n",
        t.routes, t.hosts
    );
    // The nginx row of the same name, else plain proxy_pass.
    let nginx = |name: &str| {
        let same = name.replacen("ceryx", "nginx", 1);
        t.rows
            .iter()
            .find(|r| r.name == same)
            .or_else(|| t.rows.iter().find(|r| r.name == "nginx proxy_pass"))
            .map(summary)
    };
    for row in &t.rows {
        let (rps, p50, p99, failed) = summary(row);
        let ratios = match (row.name.starts_with("ceryx"), nginx(row.name)) {
            (true, Some((n_rps, _, n_p99, _))) => {
                format!("{:.2} | {:.2}", rps / n_rps, p99 / n_p99)
            }
            _ => "| ".into(),
        };
        let name = row.name;
        let _ = writeln!(
            out,
            "| {name} | {rps:.0} | {p50:.2} ms | {p99:.2} ms | {failed} | {ratios} |"
        );
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

/// Median requests/s, p50 and p99 over the rounds, and the failures of all of them.
fn summary(row: &Row) -> (f64, f64, f64, u64) {
    let runs = &row.runs;
    (
        median(runs.iter().map(|l| l.rps).collect()),
        median(runs.iter().map(|l| l.p50_ms).collect()),
        median(runs.iter().map(|l| l.p99_ms).collect()),
        runs.iter().map(|l| l.failed).sum::<u64>(),
    )
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
