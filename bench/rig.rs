//! The servers every scenario shares: both nginx instances, HAProxy, the upload sink,
//! Redis, the original Ceryx's model and the Ceryx processes, all on 127.0.0.1, with
//! their files in one temporary directory.

use crate::certs;
use crate::front::{Front, Routing};
use crate::haproxy;
use crate::nginx;
use crate::original;
use crate::process::{Processes, free_port, wait_listening};
use crate::sink;
use crate::store;
use crate::wrk::{self, Hosts, Load, Over};
use ceryx::store::RedisStore;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::error::Error;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub type HttpClient = Client<HttpConnector, Empty<bytes::Bytes>>;

/// The process name of the Ceryx proxy the throughput rows measure.
pub const CERYX_PROXY: &str = "proxy-1";

pub struct Rig {
    ceryx: PathBuf,
    pub dir: PathBuf,
    pub procs: Processes,
    pub nginx: nginx::Ports,
    pub haproxy: Front,
    /// The original Ceryx's model's HTTP port (it serves nothing else).
    pub original: u16,
    /// The upload sink's port.
    pub sink: u16,
    pub redis: u16,
    pub http: HttpClient,
}

impl Rig {
    /// Writes the certificate and starts nginx, HAProxy, the sink, Redis and the original
    /// Ceryx's model; `ceryx` is the binary to run, `spread_hosts` how many hosts the
    /// reference proxies route.
    pub async fn start(ceryx: PathBuf, spread_hosts: usize) -> Result<Rig, Box<dyn Error>> {
        let dir = std::env::temp_dir().join(format!("ceryx-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // One certificate for all HTTPS proxies (clients send no SNI to 127.0.0.1).
        let (pem, _) = certs::issue(&["bench.test"]);
        std::fs::write(dir.join("tls.crt"), pem.certificate)?;
        std::fs::write(dir.join("tls.key"), pem.key)?;
        let mut rig = Rig {
            ceryx,
            dir,
            procs: Processes::default(),
            nginx: nginx::Ports {
                upstream_a: free_port(),
                upstream_b: free_port(),
                proxy: Front::free(),
            },
            haproxy: Front::free(),
            original: free_port(),
            sink: sink::start()?,
            redis: free_port(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        };
        let routing = Routing {
            upstream: rig.nginx.upstream_a,
            sink: rig.sink,
            hosts: (0..spread_hosts).map(store::spread_host).collect(),
        };
        nginx::start(&rig.dir, &rig.nginx, &routing, &mut rig.procs).await?;
        haproxy::start(&rig.dir, &rig.haproxy, &routing, &mut rig.procs).await?;
        rig.start_redis().await?;
        original::start(&rig.dir, rig.original, rig.redis, &mut rig.procs).await?;
        Ok(rig)
    }

    /// The upstream answering "a".
    pub fn a(&self) -> String {
        format!("http://127.0.0.1:{}", self.nginx.upstream_a)
    }

    /// The upstream answering "b".
    pub fn b(&self) -> String {
        format!("http://127.0.0.1:{}", self.nginx.upstream_b)
    }

    /// (Re)starts Redis on its port, with the data it kept.
    pub async fn start_redis(&mut self) -> Result<(), std::io::Error> {
        store::start(&self.dir, self.redis, &mut self.procs).await
    }

    pub fn store(&self) -> Arc<RedisStore> {
        store::connect(self.redis)
    }

    pub async fn load_routes(&self, count: usize, target: &str) -> Result<(), Box<dyn Error>> {
        store::load_routes(self.redis, count, target).await
    }

    /// Starts `ceryx <extra>` (`ceryx proxy` without) as process `name` on the store;
    /// returns its HTTP port once it listens.
    pub async fn start_ceryx(&mut self, name: &str, extra: &[&str]) -> Result<u16, Box<dyn Error>> {
        self.start_ceryx_on(name, extra, self.redis).await
    }

    /// [`Rig::start_ceryx`] on the Redis at port `redis`.
    async fn start_ceryx_on(
        &mut self,
        name: &str,
        extra: &[&str],
        redis: u16,
    ) -> Result<u16, Box<dyn Error>> {
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
            .env("CERYX_REDIS_PORT", redis.to_string())
            .env("RUST_LOG", "warn")
            // nginx runs with `access_log off`; metrics stay on, as in production.
            .env("CERYX_ACCESS_LOG", "false")
            .env("CERYX_HTTPS_ADDR", "")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.procs.add(name, command.spawn()?);
        wait_listening(port).await;
        Ok(port)
    }

    /// Starts `ceryx proxy` as process `name` with HTTPS on the rig's certificate;
    /// returns its HTTP and HTTPS ports once both listen.
    pub async fn start_https_proxy(&mut self, name: &str) -> Result<(u16, u16), Box<dyn Error>> {
        self.start_https_proxy_on(name, self.redis).await
    }

    /// [`Rig::start_https_proxy`] on the Redis at port `redis`.
    pub async fn start_https_proxy_on(
        &mut self,
        name: &str,
        redis: u16,
    ) -> Result<(u16, u16), Box<dyn Error>> {
        let tls = free_port();
        let (https_addr, crt, key) = (
            format!("127.0.0.1:{tls}"),
            self.dir.join("tls.crt").display().to_string(),
            self.dir.join("tls.key").display().to_string(),
        );
        let http = self
            .start_ceryx_on(
                name,
                &[
                    "proxy",
                    "--https-addr",
                    &https_addr,
                    "--ssl-default-certificate",
                    &crt,
                    "--ssl-default-key",
                    &key,
                ],
                redis,
            )
            .await?;
        wait_listening(tls).await;
        Ok((http, tls))
    }

    /// One plain-HTTP wrk run against `port`.
    pub fn wrk(&self, port: u16, hosts: Hosts, seconds: u64) -> Result<Load, std::io::Error> {
        wrk::run(&self.dir, port, Over::Http, hosts, seconds)
    }

    /// Status and body of `GET /` for `host`; `None` when the connection failed, status
    /// 0 when the proxy took over 2 s (told apart for the propagation check's message).
    pub async fn answer(&self, port: u16, host: &str) -> Option<(u16, String)> {
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
}
