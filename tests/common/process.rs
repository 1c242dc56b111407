//! The `ceryx` binary run as a child process, as an operator would run it.

use super::client::TestClient;
use super::poll::eventually;
use super::port::free_port;
use http::{Request, StatusCode};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

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
        let mut command = Command::new(binary());
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

/// The `ceryx` binary: `CERYX_TEST_BINARY` when set (a copy of one's own build, where
/// several worktrees share one target directory and its `target/debug/ceryx`), else
/// Cargo's.
pub fn binary() -> String {
    std::env::var("CERYX_TEST_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ceryx").to_owned())
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
