//! Load from wrk: one run against a port, and what its report says.

use std::path::Path;
use std::process::Command;

/// One wrk run, as wrk reports it.
#[derive(Clone, Copy, Default)]
pub struct Load {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub failed: u64,
}

/// Which `Host` the requests name.
#[derive(Clone, Copy)]
pub enum Hosts {
    /// `bench.test`.
    One,
    /// `rules.bench.test`, the host with ten rules.
    Rules,
    /// `h<i>.bench.test`, round robin over this many.
    Spread(usize),
}

/// How wrk talks to the proxy.
#[derive(Clone, Copy)]
pub enum Over {
    Http,
    Https,
    /// `Connection: close`: a TCP connection and TLS handshake per request.
    HttpsNewConnections,
}

/// One wrk run (`-t1 -c50`) of `seconds` against `port`; its Lua script goes to `dir`.
pub fn run(
    dir: &Path,
    port: u16,
    over: Over,
    hosts: Hosts,
    seconds: u64,
) -> Result<Load, std::io::Error> {
    let mut command = Command::new("wrk");
    if let Over::HttpsNewConnections = over {
        command.args(["-H", "Connection: close"]);
    }
    command
        .args(["-t1", "-c50", "--latency", "-d"])
        .arg(format!("{seconds}s"));
    match hosts {
        Hosts::One => {
            command.args(["-H", "Host: bench.test"]);
        }
        Hosts::Rules => {
            command.args(["-H", "Host: rules.bench.test"]);
        }
        Hosts::Spread(n) => {
            let script = dir.join(format!("spread-{n}.lua"));
            std::fs::write(
                &script,
                format!(
                    "local i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(\"GET\", \"/\", {{Host = \"h\" .. (i % {n}) .. \".bench.test\"}})\nend\n"
                ),
            )?;
            command.arg("-s").arg(&script);
        }
    }
    let scheme = match over {
        Over::Http => "http",
        Over::Https | Over::HttpsNewConnections => "https",
    };
    let output = command
        .arg(format!("{scheme}://127.0.0.1:{port}/"))
        .output()?;
    Ok(parse(&String::from_utf8_lossy(&output.stdout)))
}

/// Reads requests/s, the 50th and 99th latency percentiles and failures from wrk's report.
fn parse(report: &str) -> Load {
    let mut load = Load::default();
    for line in report.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["Requests/sec:", rps] => load.rps = rps.parse().unwrap_or(0.0),
            ["50%", latency] => load.p50_ms = to_ms(latency),
            ["99%", latency] => load.p99_ms = to_ms(latency),
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                load.failed += n.parse::<u64>().unwrap_or(0)
            }
            ["Socket", "errors:", rest @ ..] => {
                load.failed += rest
                    .iter()
                    .filter_map(|f| f.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>()
            }
            _ => {}
        }
    }
    load
}

/// A wrk latency (`812.00us`, `1.20ms`, `2.00s`, `1.00m`) in milliseconds.
fn to_ms(latency: &str) -> f64 {
    let split = latency
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(latency.len());
    let (value, unit) = latency.split_at(split);
    let value: f64 = value.parse().unwrap_or(0.0);
    match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => value,
    }
}
