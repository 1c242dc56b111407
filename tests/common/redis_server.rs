//! A real `redis-server` per test: plain, with a password, or persistent across restarts;
//! frozen and thawed to stand for a store that stops answering.

use super::poll::eventually;
use super::port::free_port;
use ceryx::store::{RedisConfig, RedisStore};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The server binary the tests start: `redis-server`, or the one
/// `CERYX_TEST_REDIS_SERVER` names (`make test-valkey` runs them on Valkey's).
pub fn server_program() -> String {
    std::env::var("CERYX_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
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
        let child = Command::new(server_program())
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
