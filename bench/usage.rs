//! What a run cost a server: CPU time and peak memory of all its processes (nginx's
//! master and workers; HAProxy's and Ceryx's single process), read from /proc.

use crate::process::status_kib;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// A server's processes and their CPU time when a run started.
pub struct Sample {
    pids: Vec<u32>,
    cpu: Duration,
}

impl Sample {
    /// Starts measuring the server whose main process is `pid`; its peak memory is reset
    /// so that `finish` reports this run's peak.
    pub fn start(pid: u32) -> Sample {
        let pids = family(pid);
        for pid in &pids {
            // "5" resets VmHWM (Linux ≥ 4.0); where it fails the peak is the lifetime's.
            let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
        Sample {
            cpu: cpu(&pids),
            pids,
        }
    }

    /// CPU time (user + system) since `start`, and the summed peak RSS in KiB.
    pub fn finish(&self) -> (Duration, u64) {
        let peak = self.pids.iter().map(|&p| status_kib(p, "VmHWM:")).sum();
        (cpu(&self.pids).saturating_sub(self.cpu), peak)
    }
}

/// `pid` and its children (nginx forks its workers from the master).
fn family(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let children = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat(p).is_some_and(|(ppid, _)| ppid == pid));
    pids.extend(children);
    pids
}

/// Summed user + system time of `pids`.
fn cpu(pids: &[u32]) -> Duration {
    let ticks: u64 = pids.iter().filter_map(|&p| stat(p)).map(|(_, t)| t).sum();
    Duration::from_micros(ticks * 1_000_000 / ticks_per_second())
}

/// The parent and the CPU clock ticks (utime + stime) of `pid`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces: count fields after its `)`.
    let fields: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let number = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((number(1)? as u32, number(11)? + number(12)?))
}

/// `getconf CLK_TCK`, the unit of /proc's CPU times (100 where it cannot be asked).
fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}
