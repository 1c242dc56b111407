//! Test harness: a real `redis-server` on a free port, real upstream servers and the
//! proxy itself, all on 127.0.0.1.

#![allow(dead_code)]

pub mod cluster;
pub mod tls;

use bytes::Bytes;
use ceryx::proxy::{self, Config, Proxy};
use ceryx::route::{Route, Settings};
use ceryx::store::{RedisConfig, RedisStore, RouteStore};
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every few milliseconds until it holds; panics after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A `redis-server` of our own, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    pub password: Option<String>,
    /// Where an append-only file keeps the data across restarts, if anywhere.
    persist: Option<std::path::PathBuf>,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        Self::start_with(None).await
    }

    /// A server that requires AUTH with `password`.
    pub async fn start_with(password: Option<&str>) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            password: password.map(String::from),
            persist: None,
            child: None,
        };
        server.spawn().await;
        server
    }

    /// A server that keeps its data across `restart` (append-only file).
    pub async fn start_persistent() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("ceryx-test-redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer {
            port,
            password: None,
            persist: Some(dir),
            child: None,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut args = vec!["--port", &port, "--bind", "127.0.0.1", "--save", ""];
        if let Some(password) = &self.password {
            args.extend(["--requirepass", password]);
        }
        let dir = self.persist.as_ref().map(|d| d.display().to_string());
        match &dir {
            Some(dir) => args.extend([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                dir,
            ]),
            None => args.extend(["--appendonly", "no"]),
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let url = self.url();
        eventually(Duration::from_secs(10), "redis-server to start", || async {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                return false;
            };
            match client.get_multiplexed_async_connection().await {
                Ok(mut c) => redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        })
        .await;
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} redis-server");
    }

    /// Starts a fresh (empty) server on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    pub fn config(&self) -> RedisConfig {
        let mut config = RedisConfig::new("127.0.0.1", self.port);
        config.password = self.password.clone();
        // Generous for loaded CI machines; the outage test sets its own.
        config.timeout = Duration::from_secs(2);
        config
    }

    pub fn store(&self) -> Arc<RedisStore> {
        Arc::new(RedisStore::connect(&self.config()).unwrap())
    }

    /// A plain connection, to write keys the way other tools (and old Ceryx) do.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.persist {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// An upstream that answers with a JSON echo of what it received, tagged with its name.
/// `/slow` answers after two seconds; `/ws` is a WebSocket echo.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Requests received so far (counted when they arrive, before any answer).
    pub hits: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted_count = connections.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap().0,
                    _ = token.cancelled() => return,
                };
                accepted_count.fetch_add(1, Ordering::SeqCst);
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        echo(name, req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream {
            addr,
            connections,
            hits,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn echo(
    name: &'static str,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/ws" {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .cloned()
            .unwrap_or(http::HeaderValue::from_static(""));
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                None,
            )
            .await;
            while let Some(Ok(message)) = ws.next().await {
                if message.is_close() || ws.send(message).await.is_err() {
                    break;
                }
            }
        });
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .body(Full::default())
            .unwrap());
    }
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let method = req.method().to_string();
    let path = req.uri().to_string();
    let body_len = match req.into_body().collect().await {
        Ok(body) => body.to_bytes().len() as i64,
        Err(_) => -1,
    };
    let json = serde_json::json!({"name": name, "method": method, "path": path, "headers": headers, "body_len": body_len});
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("connection", "keep-alive, x-upstream-private")
        .header("x-upstream-private", "not for clients")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap())
}

/// A proxy running in this process.
pub struct RunningProxy {
    pub addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    stop: CancellationToken,
}

impl RunningProxy {
    pub async fn start(store: Arc<dyn RouteStore>, args: Config) -> RunningProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Proxy::new(store, args).unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(proxy::serve(listener, proxy.clone(), stop.clone()));
        RunningProxy { addr, proxy, stop }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Settings for tests: short timeouts so failure paths answer quickly.
pub fn test_args() -> Config {
    Config {
        upstream_connect_timeout: Duration::from_secs(2),
        upstream_response_timeout: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(5),
        // Tests read the log from  processes they start (tests/observability.rs).
        access_log: false,
        ..Config::default()
    }
}

/// Writes a route as the CeryxRoute `owner` (`<namespace>/<name>`) would.
pub async fn owned(store: &dyn RouteStore, source: &str, target: &str, owner: &str) {
    let by = ceryx::store::Writer::Resource {
        owner,
        take_unowned: false,
    };
    store.write(&route(source, target), by).await.unwrap();
}

pub fn route(source: &str, target: &str) -> Route {
    Route::new(source, target, Settings::default()).unwrap()
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {:?}", self.body))
    }

    /// The upstream's name, when the echo server answered.
    pub fn upstream(&self) -> Option<String> {
        serde_json::from_slice::<serde_json::Value>(&self.body).ok()?["name"]
            .as_str()
            .map(String::from)
    }

    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

/// An HTTP/1.1 client that sends whatever `Host` it is told.
pub struct TestClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for TestClient {
    fn default() -> Self {
        TestClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl TestClient {
    pub async fn send(
        &self,
        to: SocketAddr,
        req: http::request::Builder,
        body: impl Into<Bytes>,
    ) -> Reply {
        let req = req.body(Full::new(body.into())).unwrap();
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("http://{to}{path}").parse().unwrap();
        let response = self
            .client
            .request(Request::from_parts(parts, body))
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// The name of the echo upstream that answered `GET /` for `host`, if one did.
    pub async fn served_by(&self, to: SocketAddr, host: &str) -> Option<String> {
        self.get(to, host, "/").await.upstream()
    }

    pub async fn get(&self, to: SocketAddr, host: &str, path: &str) -> Reply {
        self.send(to, Request::get(path).header("host", host), Bytes::new())
            .await
    }
}

/// The REST API running in this process.
pub struct RunningApi {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl RunningApi {
    pub async fn start(store: Arc<dyn RouteStore>, token: Option<&str>) -> RunningApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let router = ceryx::api::router(store, token.map(String::from));
        tokio::spawn(ceryx::api::serve(listener, router, stop.clone()));
        RunningApi { addr, stop }
    }
}

impl Drop for RunningApi {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A `ceryx` process, killed when dropped.
pub struct Process {
    pub child: Child,
    /// The proxy's address.
    pub addr: SocketAddr,
    /// The REST API's address (`run` and `api` only).
    pub api: SocketAddr,
    /// Lines the process wrote to stdout so far (with [`Process::start_logged`]).
    pub stdout: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `ceryx <subcommand>` on a free port and waits until it accepts connections.
    pub async fn start(subcommand: &str, env: &[(&str, String)]) -> Process {
        Process::spawn(subcommand, env, false).await
    }

    /// Like [`Process::start`], keeping what the process writes to stdout.
    pub async fn start_logged(subcommand: &str, env: &[(&str, String)]) -> Process {
        Process::spawn(subcommand, env, true).await
    }

    async fn spawn(subcommand: &str, env: &[(&str, String)], logged: bool) -> Process {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ceryx"));
        command
            .arg(subcommand)
            .env("CERYX_HTTP_ADDR", addr.to_string())
            .env("CERYX_API_ADDR", api.to_string())
            .stdout(if logged {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        for var in [
            "CERYX_REDIS_HOST",
            "CERYX_REDIS_URL",
            "CERYX_REDIS_PORT",
            "CERYX_CACHE_TTL",
            "CERYX_STATSD_ADDR",
            "CERYX_METRICS_ADDR",
        ] {
            command.env_remove(var);
        }
        command.env("CERYX_ACCESS_LOG", logged.to_string());
        // Off unless a test asks for it: every process would want 0.0.0.0:8443.
        command.env("CERYX_HTTPS_ADDR", "");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stdout = Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let lines = stdout.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let listening = if subcommand == "api" { api } else { addr };
        eventually(Duration::from_secs(10), "ceryx to listen", || async {
            tokio::net::TcpStream::connect(listening).await.is_ok()
        })
        .await;
        if subcommand == "run" {
            eventually(Duration::from_secs(10), "the API to listen", || async {
                tokio::net::TcpStream::connect(api).await.is_ok()
            })
            .await;
        }
        Process {
            child,
            addr,
            api,
            stdout,
        }
    }

    /// Creates a route through the process's REST API, as a user's `curl` would.
    pub async fn create_route(&self, client: &TestClient, source: &str, target: &str) {
        let body = format!(r#"{{"source": "{source}", "target": "{target}"}}"#);
        let create = Request::post("/api/routes").header("content-type", "application/json");
        let reply = client.send(self.api, create, body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "creating {source}");
    }

    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
