//! Requests per second, latency, CPU per request and peak memory of Ceryx beside nginx
//! and HAProxy (and of the upstream alone): HTTP/1.1 at 32 and 256 connections, many
//! hosts over many routes, h2c and h2 over TLS, HTTPS kept alive and with a handshake per
//! request, a 1 MiB response and a 10 MiB upload. The HTTP/1.1 rows of 32 connections
//! also measure the original Ceryx's model (see `original`).

use crate::front::Front;
use crate::h2load;
use crate::nginx::BIG_BYTES;
use crate::original;
use crate::rig::{CERYX_PROXY, Rig};
use crate::scale::Scale;
use crate::sink::UPLOAD_BYTES;
use crate::store::route;
use crate::usage::Sample;
use crate::wrk::{self, Hosts, Job, Load, Over};
use ceryx::store::RouteStore;
use std::error::Error;
use std::time::Duration;

/// Which server a row measures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Upstream,
    Nginx,
    Haproxy,
    /// The model of the original Ceryx (OpenResty + Lua + Redis).
    Original,
    Ceryx,
}

impl Server {
    /// The name `Processes` knows its main process by.
    fn process(self) -> &'static str {
        match self {
            Server::Upstream => "nginx-upstream",
            Server::Nginx => "nginx-proxy",
            Server::Haproxy => "haproxy",
            Server::Original => original::PROCESS,
            Server::Ceryx => CERYX_PROXY,
        }
    }
}

/// One run: what the load tool reported, and what it cost the server.
#[derive(Clone, Copy)]
pub struct Run {
    pub load: Load,
    pub cpu: Duration,
    pub peak_rss_kib: u64,
}

/// The runs of one server in one group, one per round.
pub struct Row {
    pub name: &'static str,
    pub server: Server,
    pub runs: Vec<Run>,
}

/// Rows under the same load, their runs interleaved within each round.
pub struct Group {
    pub name: String,
    /// Body bytes per request, for the large-body rows' MiB/s.
    pub body: Option<usize>,
    pub rows: Vec<Row>,
}

pub struct Throughput {
    pub groups: Vec<Group>,
}

/// One server of a group and where its load goes.
#[derive(Clone, Copy)]
struct Arm {
    name: &'static str,
    server: Server,
    port: u16,
    hosts: Hosts,
}

/// The host of the one-host rows.
const HOST: &str = "bench.test";
const ONE: Hosts = Hosts::Host(HOST);
/// Routed to the sink by Ceryx; nginx and HAProxy route `/upload` there.
const UPLOAD_HOST: &str = "upload.bench.test";

/// `ceryx` is where the Ceryx proxy listens (`spread` and `h2c` are its HTTP port).
pub async fn run(rig: &Rig, s: &Scale, ceryx: &Front) -> Result<Throughput, Box<dyn Error>> {
    let sink = format!("http://127.0.0.1:{}", rig.sink);
    rig.store().put(&route(UPLOAD_HOST, &sink)).await?;
    check_original(rig).await?;
    // nginx, HAProxy and Ceryx on the port `port` picks, all asked for `hosts`.
    let peers = |port: fn(&Front) -> u16, hosts: Hosts| {
        [
            ("nginx", Server::Nginx, &rig.nginx.proxy),
            ("haproxy", Server::Haproxy, &rig.haproxy),
            ("ceryx", Server::Ceryx, ceryx),
        ]
        .map(|(name, server, front)| Arm {
            name,
            server,
            port: port(front),
            hosts,
        })
        .to_vec()
    };
    let wrk = |over, connections, path, upload| {
        move |arm: &Arm| {
            let job = Job {
                over,
                hosts: arm.hosts,
                connections,
                path,
                upload,
            };
            wrk::load(&rig.dir, arm.port, &job, s.wrk_seconds)
        }
    };
    let h2load = |over| move |arm: &Arm| h2load::run(arm.port, over, HOST, 32, 10, s.wrk_seconds);
    let measure =
        |name: &str, body, arms: Vec<Arm>, load: &dyn Fn(&Arm) -> Result<Load, std::io::Error>| {
            measure(rig, s.rounds, name.into(), body, &arms, load)
        };
    let http = |f: &Front| f.http;
    // Placed after HAProxy, before Ceryx.
    let original = |hosts| Arm {
        name: "original ceryx (model)",
        server: Server::Original,
        port: rig.original,
        hosts,
    };

    let mut one = peers(http, ONE);
    one.insert(2, original(ONE));
    one.insert(
        0,
        Arm {
            name: "upstream direct",
            server: Server::Upstream,
            port: rig.nginx.upstream_a,
            hosts: ONE,
        },
    );
    one.push(Arm {
        name: "ceryx, 10 rules",
        server: Server::Ceryx,
        port: ceryx.http,
        hosts: Hosts::Host("rules.bench.test"),
    });
    let mut groups = vec![
        measure(
            "HTTP/1.1 keep-alive, 1 host, 32 connections",
            None,
            one,
            &wrk(Over::Http, 32, "/", 0),
        )?,
        measure(
            "HTTP/1.1 keep-alive, 1 host, 256 connections",
            None,
            peers(http, ONE),
            &wrk(Over::Http, 256, "/", 0),
        )?,
    ];
    rig.load_routes(s.many_routes, &rig.a()).await?;
    let spread = Hosts::Spread(s.spread_hosts);
    let mut many = peers(|f| f.spread, spread);
    many.insert(2, original(spread));
    groups.push(measure(
        &format!(
            "HTTP/1.1 keep-alive, {} hosts of {} routes, 32 connections",
            s.spread_hosts, s.many_routes
        ),
        None,
        many,
        &wrk(Over::Http, 32, "/", 0),
    )?);
    groups.push(measure(
        "h2c (prior knowledge), h2load -c32 -m10",
        None,
        peers(|f| f.h2c, ONE),
        &h2load(h2load::Over::H2c),
    )?);
    groups.push(measure(
        "h2 over TLS (ALPN), h2load -c32 -m10",
        None,
        peers(|f| f.tls, ONE),
        &h2load(h2load::Over::H2Tls),
    )?);
    let tls = |f: &Front| f.tls;
    groups.push(measure(
        "HTTPS keep-alive, HTTP/1.1, 32 connections",
        None,
        peers(tls, ONE),
        &wrk(Over::Https, 32, "/", 0),
    )?);
    groups.push(measure(
        "HTTPS, a full TLS handshake per request, 32 connections",
        None,
        peers(tls, ONE),
        &wrk(Over::HttpsNewConnections, 32, "/", 0),
    )?);
    groups.push(measure(
        "1 MiB response, 8 connections",
        Some(BIG_BYTES),
        peers(http, ONE),
        &wrk(Over::Http, 8, "/big", 0),
    )?);
    groups.push(measure(
        "10 MiB upload (streamed to a sink that checks its length), 8 connections",
        Some(UPLOAD_BYTES),
        peers(http, Hosts::Host(UPLOAD_HOST)),
        &wrk(Over::Http, 8, "/upload", UPLOAD_BYTES),
    )?);
    Ok(Throughput { groups })
}

/// Fails unless the original Ceryx's model routes `HOST` to upstream "a": its Lua runs
/// only per request, so a module nginx could not load shows here, not at its start.
async fn check_original(rig: &Rig) -> Result<(), Box<dyn Error>> {
    match rig.answer(rig.original, HOST).await {
        Some((200, body)) if body == "a" => Ok(()),
        answer => {
            let log = std::fs::read_to_string(rig.dir.join("original.log")).unwrap_or_default();
            Err(format!(
                "the original Ceryx's model answered {answer:?} for {HOST}, not 200 \"a\"; \
                 its error log:\n{log}"
            )
            .into())
        }
    }
}

/// `rounds` runs of `load` on each arm, the arms in turn within each round, each run
/// with the CPU time and peak memory of the server under load.
fn measure(
    rig: &Rig,
    rounds: usize,
    name: String,
    body: Option<usize>,
    arms: &[Arm],
    load: &dyn Fn(&Arm) -> Result<Load, std::io::Error>,
) -> Result<Group, std::io::Error> {
    let mut rows: Vec<Row> = arms
        .iter()
        .map(|arm| Row {
            name: arm.name,
            server: arm.server,
            runs: Vec::new(),
        })
        .collect();
    for _ in 0..rounds {
        for (arm, row) in arms.iter().zip(&mut rows) {
            let sample = Sample::start(rig.procs.pid(arm.server.process()));
            let load = load(arm)?;
            let (cpu, peak_rss_kib) = sample.finish();
            row.runs.push(Run {
                load,
                cpu,
                peak_rss_kib,
            });
        }
    }
    Ok(Group { name, body, rows })
}
