//! `make bench`: Ceryx beside nginx on this machine, in one run. Starts every server on
//! 127.0.0.1, measures with wrk, and prints one table. `--smoke` runs every scenario
//! with tiny counts (for `make test`, so the script cannot rot).

use ceryx::route::{Route, Settings};
use ceryx::store::{RedisConfig, RedisStore, RouteStore};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<bytes::Bytes>>;

/// How big each scenario is.
struct Scale {
    rounds: usize,
    wrk_seconds: u64,
    many_routes: usize,
    huge_routes: usize,
    spread_hosts: usize,
    touched_hosts: usize,
    changes: usize,
    churn_seconds: u64,
    outage_seconds: u64,
}

const FULL: Scale = Scale {
    rounds: 3,
    wrk_seconds: 8,
    many_routes: 100_000,
    huge_routes: 1_000_000,
    spread_hosts: 1_000,
    touched_hosts: 100_000,
    changes: 200,
    churn_seconds: 30,
    outage_seconds: 10,
};

const SMOKE: Scale = Scale {
    rounds: 1,
    wrk_seconds: 1,
    many_routes: 2_000,
    huge_routes: 4_000,
    spread_hosts: 100,
    touched_hosts: 1_000,
    changes: 10,
    churn_seconds: 2,
    outage_seconds: 1,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let ceryx = args
        .iter()
        .position(|a| a == "--ceryx")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .ok_or("usage: bench --ceryx <path to ceryx binary> [--smoke]")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(Bench::new(ceryx, if smoke { SMOKE } else { FULL })?.run())
}

/// Child processes, killed when dropped.
#[derive(Default)]
struct Processes(Vec<(String, Child)>);

impl Processes {
    fn kill(&mut self, name: &str) {
        if let Some(i) = self.0.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.0.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn pid(&self, name: &str) -> u32 {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, c)| c.id())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: an nginx master must take its workers down with it.
        for (_, child) in &mut self.0 {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_listening(port: u16) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing listens on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One wrk run, as wrk reports it.
#[derive(Clone, Copy, Default)]
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
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

struct Bench {
    ceryx: PathBuf,
    scale: Scale,
    dir: PathBuf,
    procs: Processes,
    upstream_a: u16,
    upstream_b: u16,
    nginx: u16,
    nginx_tls: u16,
    redis: u16,
    http: HttpClient,
}

impl Bench {
    fn new(ceryx: PathBuf, scale: Scale) -> Result<Bench, Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("ceryx-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // One certificate for both HTTPS proxies (clients send no SNI to 127.0.0.1).
        let made = rcgen::generate_simple_self_signed(vec!["bench.test".to_owned()])?;
        std::fs::write(dir.join("tls.crt"), made.cert.pem())?;
        std::fs::write(dir.join("tls.key"), made.signing_key.serialize_pem())?;
        Ok(Bench {
            ceryx,
            scale,
            dir,
            procs: Processes::default(),
            upstream_a: free_port(),
            upstream_b: free_port(),
            nginx: free_port(),
            nginx_tls: free_port(),
            redis: free_port(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    async fn run(mut self) -> Result<(), Box<dyn std::error::Error>> {
        self.start_nginx().await?;
        self.start_redis().await?;
        let store = self.store();
        let a = format!("http://127.0.0.1:{}", self.upstream_a);
        let b = format!("http://127.0.0.1:{}", self.upstream_b);
        store.put(&route("bench.test", &a)).await?;
        let proxy_tls = free_port();
        let (https_addr, crt, key) = (
            format!("127.0.0.1:{proxy_tls}"),
            self.dir.join("tls.crt").display().to_string(),
            self.dir.join("tls.key").display().to_string(),
        );
        let proxy = self
            .start_ceryx(
                "proxy-1",
                &[
                    "proxy",
                    "--https-addr",
                    &https_addr,
                    "--ssl-default-certificate",
                    &crt,
                    "--ssl-default-key",
                    &key,
                ],
            )
            .await?;
        wait_listening(proxy_tls).await;
        let s = &self.scale;
        println!(
            "# Ceryx vs nginx on 127.0.0.1, {} core(s), wrk -t1 -c50, median of {} round(s) of {} s",
            num_cpus(),
            s.rounds,
            s.wrk_seconds
        );
        println!();

        // 1-3: one host.
        let mut rows: Vec<(&str, Vec<Load>)> = vec![
            ("upstream direct", vec![]),
            ("nginx proxy_pass", vec![]),
            ("ceryx, 1 route", vec![]),
        ];
        for _ in 0..s.rounds {
            for (i, port) in [self.upstream_a, self.nginx, proxy].into_iter().enumerate() {
                rows[i].1.push(self.wrk(port, Hosts::One, s.wrk_seconds)?);
            }
        }
        // 4: many routes, requests spread over many hosts.
        self.load_routes(s.many_routes, &a).await?;
        let mut spread = vec![
            ("nginx, spread over hosts", vec![]),
            ("ceryx, spread over hosts", vec![]),
        ];
        for _ in 0..s.rounds {
            spread[0]
                .1
                .push(self.wrk(self.nginx, Hosts::Spread(s.spread_hosts), s.wrk_seconds)?);
            spread[1]
                .1
                .push(self.wrk(proxy, Hosts::Spread(s.spread_hosts), s.wrk_seconds)?);
        }
        rows.extend(spread);
        // 5: HTTPS, kept alive and with a TLS handshake per request.
        let mut https = vec![
            ("nginx https, keep-alive", vec![]),
            ("ceryx https, keep-alive", vec![]),
            ("nginx https, new connection per request", vec![]),
            ("ceryx https, new connection per request", vec![]),
        ];
        for _ in 0..s.rounds {
            for (i, (port, over)) in [
                (self.nginx_tls, Over::Https),
                (proxy_tls, Over::Https),
                (self.nginx_tls, Over::HttpsNewConnections),
                (proxy_tls, Over::HttpsNewConnections),
            ]
            .into_iter()
            .enumerate()
            {
                https[i]
                    .1
                    .push(wrk_over(&self.dir, port, over, Hosts::One, s.wrk_seconds)?);
            }
        }
        rows.extend(https);
        print_load_table(&rows, s.many_routes, s.spread_hosts);

        self.propagation(&store, proxy, &a, &b).await?;
        self.churn(&store, proxy, &a, &b).await?;
        self.outage(proxy, &a).await?;
        self.memory(&a).await?;
        Ok(())
    }

    fn store(&self) -> Arc<RedisStore> {
        let mut config = RedisConfig::new("127.0.0.1", self.redis);
        config.timeout = Duration::from_secs(5);
        Arc::new(RedisStore::connect(&config).expect("redis settings"))
    }

    async fn start_nginx(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let conf = |name: &str,
                    workers: &str,
                    servers: String|
         -> Result<PathBuf, std::io::Error> {
            let path = self.dir.join(format!("{name}.conf"));
            std::fs::write(
                &path,
                format!(
                    "worker_processes {workers};\ndaemon off;\npid {dir}/{name}.pid;\nerror_log {dir}/{name}.log;\n\
                     events {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n{servers}}}\n",
                    dir = self.dir.display()
                ),
            )?;
            Ok(path)
        };
        let upstream = conf(
            "upstream",
            "1",
            format!(
                "  server {{ listen 127.0.0.1:{}; location / {{ return 200 \"a\"; }} }}\n  server {{ listen 127.0.0.1:{}; location / {{ return 200 \"b\"; }} }}\n",
                self.upstream_a, self.upstream_b
            ),
        )?;
        let proxy = conf(
            "proxy",
            "auto",
            format!(
                "  upstream backend {{ server 127.0.0.1:{}; keepalive 64; }}\n  server {{ listen 127.0.0.1:{};\n    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $http_host; }} }}\n  server {{ listen 127.0.0.1:{} ssl; ssl_certificate {dir}/tls.crt; ssl_certificate_key {dir}/tls.key;\n    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $http_host; }} }}\n",
                self.upstream_a,
                self.nginx,
                self.nginx_tls,
                dir = self.dir.display()
            ),
        )?;
        for (name, path) in [("nginx-upstream", upstream), ("nginx-proxy", proxy)] {
            let child = Command::new("nginx")
                .arg("-p")
                .arg(&self.dir)
                .arg("-c")
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            self.procs.0.push((name.into(), child));
        }
        for port in [self.upstream_a, self.upstream_b, self.nginx, self.nginx_tls] {
            wait_listening(port).await;
        }
        Ok(())
    }

    async fn start_redis(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        // Append-only file, so a restart keeps the routes (as a production Redis would).
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.redis.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()?;
        self.procs.0.push(("redis".into(), child));
        wait_listening(self.redis).await;
        Ok(())
    }

    async fn start_ceryx(
        &mut self,
        name: &str,
        extra: &[&str],
    ) -> Result<u16, Box<dyn std::error::Error>> {
        let port = free_port();
        let mut command = Command::new(&self.ceryx);
        command
            .args(extra)
            .args(if extra.is_empty() {
                &["proxy"][..]
            } else {
                &[][..]
            })
            .env("CERYX_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("CERYX_REDIS_HOST", "127.0.0.1")
            .env("CERYX_REDIS_PORT", self.redis.to_string())
            .env("RUST_LOG", "warn")
            // nginx runs with `access_log off`; metrics stay on, as in production.
            .env("CERYX_ACCESS_LOG", "false")
            .env("CERYX_HTTPS_ADDR", "")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.procs.0.push((name.into(), command.spawn()?));
        wait_listening(port).await;
        Ok(port)
    }

    fn wrk(&self, port: u16, hosts: Hosts, seconds: u64) -> Result<Load, std::io::Error> {
        wrk(&self.dir, port, hosts, seconds)
    }

    /// Writes `count` routes `h<i>.bench.test` → `target` in Ceryx's layout, pipelined.
    async fn load_routes(
        &self,
        count: usize,
        target: &str,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.redis))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        for chunk in (0..count).collect::<Vec<_>>().chunks(5_000) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.set(format!("ceryx:routes:h{i}.bench.test"), target)
                    .ignore();
                pipe.hset_multiple(
                    format!("ceryx:settings:h{i}.bench.test"),
                    &[("enforce_https", "0"), ("mode", "proxy")],
                )
                .ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        Ok(())
    }

    /// Status and body of `GET /` for `host`; `None` when the connection failed, status
    /// 0 when the proxy took over 2 s (told apart for the propagation check's message).
    async fn answer(&self, port: u16, host: &str) -> Option<(u16, String)> {
        let req = http::Request::get(format!("http://127.0.0.1:{port}/"))
            .header("host", host)
            .body(Empty::new())
            .ok()?;
        let exchange = async {
            let response = self.http.request(req).await.ok()?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.ok()?.to_bytes();
            Some((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(Duration::from_secs(2), exchange)
            .await
            .unwrap_or(Some((0, "no answer within 2 s".into())))
    }

    /// Time from a write until two proxies both serve it, through the store and the API.
    async fn propagation(
        &mut self,
        store: &Arc<RedisStore>,
        first: u16,
        a: &str,
        b: &str,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let second = self.start_ceryx("proxy-2", &[]).await?;
        let api_port = free_port();
        let api_addr = format!("127.0.0.1:{api_port}");
        self.start_ceryx("api", &["run", "--api-addr", &api_addr])
            .await?;
        wait_listening(api_port).await;
        println!();
        println!(
            "## Propagation: a route change until both proxy processes serve it ({} changes each)",
            self.scale.changes
        );
        println!();
        println!("| writer | p50 | p99 | max |");
        println!("|---|---|---|---|");
        for writer in ["store (one atomic write + PUBLISH)", "REST API"] {
            store.put(&route("prop.bench.test", a)).await?;
            for port in [first, second] {
                while self.answer(port, "prop.bench.test").await.map(|r| r.1) != Some("a".into()) {}
            }
            let mut times = Vec::new();
            for change in 0..self.scale.changes {
                let (target, body) = if change % 2 == 0 { (b, "b") } else { (a, "a") };
                let start = Instant::now();
                if writer == "REST API" {
                    let req =
                        http::Request::put(format!("http://{api_addr}/api/routes/prop.bench.test"))
                            .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                                r#"{{"target": "{target}"}}"#
                            ))))?;
                    let client = Client::builder(TokioExecutor::new()).build_http();
                    client.request(req).await?;
                } else {
                    store.put(&route("prop.bench.test", target)).await?;
                }
                for port in [first, second] {
                    loop {
                        let answer = self.answer(port, "prop.bench.test").await;
                        if answer.as_ref().map(|r| r.1.as_str()) == Some(body) {
                            break;
                        }
                        assert!(
                            start.elapsed() < Duration::from_secs(10),
                            "change {change} ({writer}) never reached the proxy on port {port}: \
                             it still answers {answer:?}"
                        );
                    }
                }
                times.push(start.elapsed());
            }
            times.sort();
            println!(
                "| {writer} | {:.2} ms | {:.2} ms | {:.2} ms |",
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.99)),
                ms(*times.last().unwrap())
            );
        }
        self.procs.kill("proxy-2");
        self.procs.kill("api");
        Ok(())
    }

    /// wrk over 100 hosts while their targets flip between two upstreams.
    async fn churn(
        &mut self,
        store: &Arc<RedisStore>,
        proxy: u16,
        a: &str,
        b: &str,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let hosts = 100;
        for i in 0..hosts {
            store.put(&route(&format!("h{i}.bench.test"), a)).await?;
        }
        let seconds = self.scale.churn_seconds;
        let calm = self.wrk(proxy, Hosts::Spread(hosts), seconds)?;
        let running = Arc::new(AtomicBool::new(true));
        let flipper = {
            let (store, running) = (store.clone(), running.clone());
            let (a, b) = (a.to_owned(), b.to_owned());
            tokio::spawn(async move {
                let mut changes = 0u64;
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                while running.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let target = if (changes / hosts as u64).is_multiple_of(2) {
                        &b
                    } else {
                        &a
                    };
                    let _ = store
                        .put(&route(
                            &format!("h{}.bench.test", changes % hosts as u64),
                            target,
                        ))
                        .await;
                    changes += 1;
                }
                changes
            })
        };
        let churned = tokio::task::spawn_blocking({
            let bench_dir = self.dir.clone();
            move || wrk(&bench_dir, proxy, Hosts::Spread(hosts), seconds)
        })
        .await??;
        running.store(false, Ordering::Relaxed);
        let changes = flipper.await?;
        println!();
        println!(
            "## Churn: wrk over {hosts} hosts for {seconds} s while their targets flip ({changes} changes, {:.0}/s)",
            changes as f64 / seconds as f64
        );
        println!();
        println!("| | req/s | p99 | failed (non-2xx or socket errors) |");
        println!("|---|---|---|---|");
        println!(
            "| no churn | {:.0} | {:.2} ms | {} |",
            calm.rps, calm.p99_ms, calm.failed
        );
        println!(
            "| churn | {:.0} ({:.2}x) | {:.2} ms | {} |",
            churned.rps,
            churned.rps / calm.rps,
            churned.p99_ms,
            churned.failed
        );
        Ok(())
    }

    /// Redis killed under load and restarted; known hosts must not fail.
    async fn outage(&mut self, proxy: u16, a: &str) -> Result<(), Box<dyn std::error::Error>> {
        let seconds = self.scale.outage_seconds;
        let load = tokio::task::spawn_blocking({
            let dir = self.dir.clone();
            move || wrk(&dir, proxy, Hosts::Spread(100), 3 * seconds)
        });
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        self.procs.kill("redis");
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let restarted = Instant::now();
        self.start_redis().await?;
        let store = self.store();
        let host = format!("recovered-{}.bench.test", std::process::id());
        loop {
            if store.put(&route(&host, a)).await.is_ok()
                && self.answer(proxy, &host).await.map(|r| r.0) == Some(200)
            {
                break;
            }
            assert!(
                restarted.elapsed() < Duration::from_secs(30),
                "never recovered"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let recovery = restarted.elapsed();
        let load = load.await??;
        println!();
        println!("## Redis outage: killed for {seconds} s under load on 100 known hosts");
        println!();
        println!(
            "| failed requests to known hosts | requests | time from restart to a new route served |"
        );
        println!("|---|---|---|");
        println!(
            "| {} | {:.0} | {:.0} ms (includes redis-server start) |",
            load.failed,
            load.rps * (3 * seconds) as f64,
            ms(recovery)
        );
        Ok(())
    }

    /// Resident memory of a fresh proxy, idle and after a request to many hosts.
    async fn memory(&mut self, a: &str) -> Result<(), Box<dyn std::error::Error>> {
        let touched = self.scale.touched_hosts;
        println!();
        println!("## Memory: proxy RSS after one request to each of {touched} hosts");
        println!();
        println!("| routes in Redis | idle RSS | RSS after | per cached route |");
        println!("|---|---|---|---|");
        for routes in [self.scale.many_routes, self.scale.huge_routes] {
            self.load_routes(routes, a).await?;
            let port = self.start_ceryx("proxy-mem", &[]).await?;
            let pid = self.procs.pid("proxy-mem");
            self.answer(port, "h0.bench.test").await;
            let idle = rss_kib(pid);
            let client = self.http.clone();
            let mut tasks = tokio::task::JoinSet::new();
            let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
            for worker in 0..64 {
                let (client, failed) = (client.clone(), failed.clone());
                tasks.spawn(async move {
                    for i in (worker..touched).step_by(64) {
                        let req = http::Request::get(format!("http://127.0.0.1:{port}/"))
                            .header("host", format!("h{i}.bench.test"))
                            .body(Empty::new())
                            .unwrap();
                        match client.request(req).await {
                            Ok(r) if r.status() == 200 => {
                                let _ = r.into_body().collect().await;
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
            tasks.join_all().await;
            let after = rss_kib(pid);
            let per_route = (after.saturating_sub(idle) * 1024) as f64 / touched as f64;
            println!(
                "| {routes} | {} KiB | {} KiB | {per_route:.0} bytes |",
                idle, after
            );
            assert_eq!(
                failed.load(Ordering::Relaxed),
                0,
                "requests failed while touching hosts"
            );
            self.procs.kill("proxy-mem");
        }
        Ok(())
    }
}

enum Hosts {
    One,
    Spread(usize),
}

/// How wrk talks to the proxy.
#[derive(Clone, Copy)]
enum Over {
    Http,
    Https,
    /// `Connection: close`: a TCP connection and TLS handshake per request.
    HttpsNewConnections,
}

/// One wrk run against `port`, with one `Host` or spread over `h<i>.bench.test`.
fn wrk(dir: &Path, port: u16, hosts: Hosts, seconds: u64) -> Result<Load, std::io::Error> {
    wrk_over(dir, port, Over::Http, hosts, seconds)
}

fn wrk_over(
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
    Ok(parse_wrk(&String::from_utf8_lossy(&output.stdout)))
}

/// Reads requests/s, the 50th and 99th latency percentiles and failures from wrk's report.
fn parse_wrk(report: &str) -> Load {
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn route(source: &str, target: &str) -> Route {
    Route::new(source, target, Settings::default()).expect("valid bench route")
}

fn print_load_table(rows: &[(&str, Vec<Load>)], routes: usize, hosts: usize) {
    let summary = |runs: &Vec<Load>| {
        (
            median(runs.iter().map(|l| l.rps).collect()),
            median(runs.iter().map(|l| l.p50_ms).collect()),
            median(runs.iter().map(|l| l.p99_ms).collect()),
            runs.iter().map(|l| l.failed).sum::<u64>(),
        )
    };
    println!(
        "## Throughput and latency (spread: {routes} routes in Redis, requests over {hosts} hosts)"
    );
    println!();
    println!("| scenario | req/s | p50 | p99 | failed | req/s vs nginx | p99 vs nginx |");
    println!("|---|---|---|---|---|---|---|");
    // The nginx row of the same name, else plain proxy_pass.
    let nginx = |name: &str| {
        let same = name.replacen("ceryx", "nginx", 1);
        rows.iter()
            .find(|(n, _)| *n == same)
            .or_else(|| rows.iter().find(|(n, _)| *n == "nginx proxy_pass"))
            .map(|(_, runs)| summary(runs))
    };
    for (name, runs) in rows {
        let (rps, p50, p99, failed) = summary(runs);
        let ratios = match (name.starts_with("ceryx"), nginx(name)) {
            (true, Some((n_rps, _, n_p99, _))) => {
                format!("{:.2} | {:.2}", rps / n_rps, p99 / n_p99)
            }
            _ => "| ".into(),
        };
        println!("| {name} | {rps:.0} | {p50:.2} ms | {p99:.2} ms | {failed} | {ratios} |");
    }
}
