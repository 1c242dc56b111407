//! Requests per second and latency of the upstream, nginx and Ceryx: one host (without
//! rules, and with ten rules the request passes nine of), many hosts over many routes,
//! and HTTPS kept alive or with a handshake per request.

use crate::rig::Rig;
use crate::scale::Scale;
use crate::wrk::{self, Hosts, Load, Over};
use std::error::Error;

/// The wrk runs of one server in one setting, one per round.
pub struct Row {
    pub name: &'static str,
    pub runs: Vec<Load>,
}

pub struct Throughput {
    /// Routes in Redis for the spread rows.
    pub routes: usize,
    /// Hosts the spread rows' requests go to.
    pub hosts: usize,
    pub rows: Vec<Row>,
}

/// `proxy` and `proxy_tls` are the HTTP and HTTPS ports of a Ceryx proxy.
pub async fn run(
    rig: &Rig,
    s: &Scale,
    proxy: u16,
    proxy_tls: u16,
) -> Result<Throughput, Box<dyn Error>> {
    let row = |name| Row { name, runs: vec![] };
    // 1-3: one host.
    let mut rows = vec![
        row("upstream direct"),
        row("nginx proxy_pass"),
        row("ceryx, 1 route"),
        row("ceryx, 1 route with 10 rules"),
    ];
    for _ in 0..s.rounds {
        for (i, (port, hosts)) in [
            (rig.nginx.upstream_a, Hosts::One),
            (rig.nginx.proxy, Hosts::One),
            (proxy, Hosts::One),
            (proxy, Hosts::Rules),
        ]
        .into_iter()
        .enumerate()
        {
            rows[i].runs.push(rig.wrk(port, hosts, s.wrk_seconds)?);
        }
    }
    // 4: many routes, requests spread over many hosts.
    rig.load_routes(s.many_routes, &rig.a()).await?;
    let mut spread = vec![
        row("nginx, spread over hosts"),
        row("ceryx, spread over hosts"),
    ];
    for _ in 0..s.rounds {
        for (i, port) in [rig.nginx.proxy, proxy].into_iter().enumerate() {
            spread[i]
                .runs
                .push(rig.wrk(port, Hosts::Spread(s.spread_hosts), s.wrk_seconds)?);
        }
    }
    rows.extend(spread);
    // 5: HTTPS, kept alive and with a TLS handshake per request.
    let mut https = vec![
        row("nginx https, keep-alive"),
        row("ceryx https, keep-alive"),
        row("nginx https, new connection per request"),
        row("ceryx https, new connection per request"),
    ];
    for _ in 0..s.rounds {
        for (i, (port, over)) in [
            (rig.nginx.proxy_tls, Over::Https),
            (proxy_tls, Over::Https),
            (rig.nginx.proxy_tls, Over::HttpsNewConnections),
            (proxy_tls, Over::HttpsNewConnections),
        ]
        .into_iter()
        .enumerate()
        {
            https[i]
                .runs
                .push(wrk::run(&rig.dir, port, over, Hosts::One, s.wrk_seconds)?);
        }
    }
    rows.extend(https);
    Ok(Throughput {
        routes: s.many_routes,
        hosts: s.spread_hosts,
        rows,
    })
}
