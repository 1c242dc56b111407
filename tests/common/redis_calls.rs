//! What a Redis server did between two readings of `INFO stats commandstats`: its read
//! events (one per round trip a client makes, however many commands it pipelines) and
//! its calls per command. Shared with the benchmark (`bench/main.rs` includes this
//! file), so it uses nothing else from the harness.

use std::collections::HashMap;

/// The commands of a route lookup (target, settings, rules, wake, certificate).
const LOOKUP: &[&str] = &["get", "hgetall"];

/// One reading of a server's counters.
pub struct RedisCalls {
    reads: u64,
    calls: HashMap<String, u64>,
}

/// The route lookups between two readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookups {
    /// Round trips that carried lookup commands: the read events, less one for each
    /// other command (a background `PING` or `SCAN`, the readings' own `INFO`), each of
    /// which is sent alone.
    pub round_trips: u64,
    /// Lookup commands run.
    pub commands: u64,
    /// Other commands run, the previous reading's `INFO` not counted: none means nothing
    /// else talked to the server meanwhile, so `round_trips` is exact.
    pub others: u64,
}

impl RedisCalls {
    /// Reads the counters through `conn` (its own `INFO` counts in the next reading).
    pub async fn read(conn: &mut redis::aio::MultiplexedConnection) -> RedisCalls {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .arg("commandstats")
            .query_async(conn)
            .await
            .expect("INFO stats commandstats");
        let mut reads = 0;
        let mut calls = HashMap::new();
        for line in info.lines() {
            if let Some(n) = line.strip_prefix("total_reads_processed:") {
                reads = n.trim().parse().unwrap_or(0);
            } else if let Some((name, stats)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            {
                let n = stats
                    .split(',')
                    .find_map(|s| s.strip_prefix("calls="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                calls.insert(name.to_owned(), n);
            }
        }
        RedisCalls { reads, calls }
    }

    /// The lookups since `before`.
    pub fn since(&self, before: &RedisCalls) -> Lookups {
        let (mut commands, mut others) = (0, 0);
        for (name, n) in &self.calls {
            let n = n - before.calls.get(name).copied().unwrap_or(0);
            if LOOKUP.contains(&name.as_str()) {
                commands += n;
            } else {
                others += n;
            }
        }
        let reads = self.reads - before.reads;
        Lookups {
            round_trips: reads.saturating_sub(others),
            commands,
            others: others.saturating_sub(1),
        }
    }
}
