//! Load from wrk: one run against a port, and what its report says.

use std::path::Path;
use std::process::Command;

/// One load run (wrk or h2load), as the tool reports it.
#[derive(Clone, Copy, Default)]
pub struct Load {
    pub rps: f64,
    /// Latency percentiles; NaN where the tool reports none (h2load).
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub failed: u64,
    /// Requests completed, the divisor of CPU per request.
    pub requests: u64,
}

/// Which `Host` the requests name.
#[derive(Clone, Copy)]
pub enum Hosts {
    /// This one name.
    Host(&'static str),
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

/// What one wrk run sends.
#[derive(Clone, Copy)]
pub struct Job {
    pub over: Over,
    pub hosts: Hosts,
    pub connections: u32,
    /// The request path.
    pub path: &'static str,
    /// Bytes of a POST body per request; 0 for GET.
    pub upload: usize,
}

impl Job {
    /// `GET /` over `-c50`, the load of the churn and outage scenarios.
    pub fn get(over: Over, hosts: Hosts) -> Job {
        Job {
            over,
            hosts,
            connections: 50,
            path: "/",
            upload: 0,
        }
    }
}

/// One wrk run (`-t1 -c50 GET /`) of `seconds` against `port`; its Lua script goes to `dir`.
pub fn run(
    dir: &Path,
    port: u16,
    over: Over,
    hosts: Hosts,
    seconds: u64,
) -> Result<Load, std::io::Error> {
    load(dir, port, &Job::get(over, hosts), seconds)
}

/// One wrk run of `job` for `seconds` against `port`; its Lua script goes to `dir`.
pub fn load(dir: &Path, port: u16, job: &Job, seconds: u64) -> Result<Load, std::io::Error> {
    let mut command = Command::new("wrk");
    if let Over::HttpsNewConnections = job.over {
        command.args(["-H", "Connection: close"]);
    }
    command
        .args(["-t1", "--latency"])
        .arg(format!("-c{}", job.connections))
        .arg(format!("-d{seconds}s"));
    let mut script = String::new();
    match job.hosts {
        Hosts::Host(name) => {
            command.arg("-H").arg(format!("Host: {name}"));
        }
        Hosts::Spread(n) => script.push_str(&format!(
            "local i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(nil, nil, {{Host = \"h\" .. (i % {n}) .. \".bench.test\"}})\nend\n"
        )),
    }
    if job.upload > 0 {
        // Set before wrk builds its request, which then carries the body and its length.
        script.push_str(&format!(
            "wrk.method = \"POST\"\nwrk.body = string.rep(\"x\", {})\n",
            job.upload
        ));
    }
    if !script.is_empty() {
        let path = dir.join(format!("wrk-{}.lua", fingerprint(&script)));
        std::fs::write(&path, &script)?;
        command.arg("-s").arg(&path);
    }
    let scheme = match job.over {
        Over::Http => "http",
        Over::Https | Over::HttpsNewConnections => "https",
    };
    let output = command
        .arg(format!("{scheme}://127.0.0.1:{port}{}", job.path))
        .output()?;
    Ok(parse(&String::from_utf8_lossy(&output.stdout)))
}

/// A file name for `script`, so that runs in parallel (churn) never share one.
fn fingerprint(script: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    script.hash(&mut hasher);
    hasher.finish()
}

/// Reads requests/s, the 50th and 99th latency percentiles and failures from wrk's report.
fn parse(report: &str) -> Load {
    let mut load = Load::default();
    for line in report.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["Requests/sec:", rps] => load.rps = rps.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => load.requests = n.parse().unwrap_or(0),
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
