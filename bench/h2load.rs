//! Load from h2load (HTTP/2): one run against a port, and what its report says.

use crate::wrk::Load;
use std::process::Command;

/// How h2load reaches the proxy.
#[derive(Clone, Copy)]
pub enum Over {
    /// Cleartext HTTP/2 with prior knowledge (no upgrade).
    H2c,
    /// TLS, with `h2` the only protocol offered by ALPN.
    H2Tls,
}

/// One h2load run of `seconds` against `port`: `connections` connections of `streams`
/// concurrent streams each, every request `GET /` for `host`.
pub fn run(
    port: u16,
    over: Over,
    host: &str,
    connections: u32,
    streams: u32,
    seconds: u64,
) -> Result<Load, std::io::Error> {
    let scheme = match over {
        Over::H2c => "http",
        Over::H2Tls => "https",
    };
    let output = Command::new("h2load")
        .args(["-t1", "--npn-list=h2"])
        .arg(format!("-c{connections}"))
        .arg(format!("-m{streams}"))
        .arg(format!("-D{seconds}"))
        .arg("-H")
        .arg(format!(":authority: {host}"))
        .arg(format!("{scheme}://127.0.0.1:{port}/"))
        .output()?;
    Ok(parse(
        &String::from_utf8_lossy(&output.stdout),
        u64::from(connections * streams),
    ))
}

/// Reads requests/s, completed and failed requests (failed, errored or timed out, or
/// answered 4xx/5xx) from h2load's report; it reports no latency percentiles. When the
/// duration is over h2load cuts the streams still open and counts them failed: up to
/// `open` (connections × streams) failures are those, not the server's.
fn parse(report: &str, open: u64) -> Load {
    let mut load = Load {
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        ..Load::default()
    };
    for line in report.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            // "finished in 6.00s, 12345.67 req/s, 1.23MB/s"
            load.rps = rest
                .split(", ")
                .find_map(|f| f.strip_suffix(" req/s")?.parse().ok())
                .unwrap_or(0.0);
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            // "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
            for (n, what) in counts(rest) {
                match what {
                    "done" => load.requests = n,
                    // "errored" and "timeout" are kinds of "failed".
                    "failed" => load.failed += n.saturating_sub(open),
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            // "status codes: N 2xx, N 3xx, N 4xx, N 5xx"
            load.failed += counts(rest)
                .filter(|(_, what)| matches!(*what, "4xx" | "5xx"))
                .map(|(n, _)| n)
                .sum::<u64>();
        }
    }
    load
}

/// The "N word" pairs of a comma-separated h2load line.
fn counts(line: &str) -> impl Iterator<Item = (u64, &str)> {
    line.split(", ").filter_map(|field| {
        let (n, what) = field.split_once(' ')?;
        Some((n.parse().ok()?, what))
    })
}
