//! How big each scenario is: the full run and the smoke run of `make test`.

#[derive(Clone, Copy)]
pub struct Scale {
    pub rounds: usize,
    pub wrk_seconds: u64,
    pub many_routes: usize,
    pub huge_routes: usize,
    pub spread_hosts: usize,
    pub touched_hosts: usize,
    pub changes: usize,
    pub churn_seconds: u64,
    pub outage_seconds: u64,
    /// Routes stored each with its own certificate.
    pub certificate_routes: usize,
    /// Hosts handshaken before the second memory reading (as many again before the third).
    pub certificate_hosts: usize,
}

pub const FULL: Scale = Scale {
    rounds: 3,
    wrk_seconds: 6,
    many_routes: 100_000,
    huge_routes: 1_000_000,
    spread_hosts: 1_000,
    touched_hosts: 100_000,
    changes: 200,
    churn_seconds: 30,
    outage_seconds: 10,
    certificate_routes: 100_000,
    certificate_hosts: 5_000,
};

/// Every scenario with tiny counts, so that `make test` keeps the benchmark working.
pub const SMOKE: Scale = Scale {
    rounds: 1,
    wrk_seconds: 1,
    many_routes: 2_000,
    huge_routes: 4_000,
    spread_hosts: 100,
    touched_hosts: 1_000,
    changes: 10,
    churn_seconds: 2,
    outage_seconds: 1,
    certificate_routes: 200,
    certificate_hosts: 20,
};
