//! A Sentinel-managed Redis of our own: one primary, two replicas and three
//! `redis-sentinel` processes (quorum 2), all on free loopback ports, with a short
//! `down-after-milliseconds` so a failover takes seconds.

use super::poll::eventually;
use super::port::free_port;
use super::redis_server::server_program;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The master name the sentinels monitor.
pub const MASTER: &str = "mymaster";
/// How long a primary must be silent before a sentinel thinks it down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);
/// Sentinel's `failover-timeout`: bounds one failover attempt (and the replicas'
/// reconfiguration), and when the next attempt may start.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_millis(3000);

/// The sentinel binary: `redis-sentinel`, or the one `CERYX_TEST_REDIS_SENTINEL` names
/// (`make test-valkey`: Valkey's server called `valkey-sentinel`).
fn sentinel_program() -> String {
    std::env::var("CERYX_TEST_REDIS_SENTINEL").unwrap_or_else(|_| "redis-sentinel".into())
}

/// Whether `redis-sentinel` is installed. Without it a test returns early on a
/// developer's machine, and fails on CI (`CI=true`), where nothing may be skipped.
pub fn sentinel_installed() -> bool {
    let found = Command::new(sentinel_program())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "redis-sentinel is not installed: CI must run the Sentinel tests (scripts/test-deps installs Debian's redis-sentinel)"
        );
        eprintln!("SKIPPED: redis-sentinel is not installed (apt-get install redis-sentinel)");
    }
    found
}

/// One `redis-server` or `redis-sentinel` process, killed when dropped.
struct Node {
    port: u16,
    child: Option<Child>,
}

impl Node {
    fn spawn(program: &str, args: &[String]) -> Node {
        let port = args
            .iter()
            .position(|a| a == "--port")
            .map(|i| args[i + 1].parse().unwrap())
            .unwrap_or(0);
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} must be installed: {e}"));
        Node {
            port,
            child: Some(child),
        }
    }

    fn kill(&mut self) {
        // `Child::kill` is SIGKILL: the process gets no chance to do anything.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A primary, two replicas and three sentinels watching them.
pub struct SentinelSet {
    servers: Vec<Node>,
    sentinels: Vec<Node>,
    dir: PathBuf,
    /// The servers' password (AUTH), if they require one.
    password: Option<String>,
    /// The sentinels' own password, if they require one.
    sentinel_password: Option<String>,
}

impl SentinelSet {
    /// Starts the servers, waits until both replicas are in sync, then starts the
    /// sentinels and waits until each knows the two replicas and the two other
    /// sentinels (so that a failover can be agreed on at once).
    pub async fn start() -> SentinelSet {
        SentinelSet::start_with(None, None).await
    }

    /// A set whose servers require `password` and whose sentinels require
    /// `sentinel_password` (each told the other's, as an operator would).
    pub async fn start_with_passwords(password: &str, sentinel_password: &str) -> SentinelSet {
        SentinelSet::start_with(Some(password), Some(sentinel_password)).await
    }

    async fn start_with(password: Option<&str>, sentinel_password: Option<&str>) -> SentinelSet {
        let primary_port = free_port();
        let dir = std::env::temp_dir().join(format!("ceryx-test-sentinel-{primary_port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut servers = vec![server(primary_port, None, &dir, password)];
        for _ in 0..2 {
            servers.push(server(free_port(), Some(primary_port), &dir, password));
        }
        let mut set = SentinelSet {
            servers,
            sentinels: Vec::new(),
            dir,
            password: password.map(String::from),
            sentinel_password: sentinel_password.map(String::from),
        };
        for node in &set.servers {
            let port = node.port;
            eventually(Duration::from_secs(10), "redis-server to start", || async {
                ping(port, password).await
            })
            .await;
        }
        for replica in &set.servers[1..] {
            let port = replica.port;
            eventually(Duration::from_secs(20), "a replica to sync", || async {
                info(port, password, "replication")
                    .await
                    .is_some_and(|i| i.get("master_link_status").map(String::as_str) == Some("up"))
            })
            .await;
        }
        for _ in 0..3 {
            let port = free_port();
            let conf = set.dir.join(format!("sentinel-{port}.conf"));
            // The servers' password for the sentinels, and theirs (which they also use
            // with each other).
            let mut auth = String::new();
            if let Some(password) = password {
                auth += &format!("sentinel auth-pass {MASTER} {password}\n");
            }
            if let Some(password) = sentinel_password {
                auth += &format!("requirepass {password}\n");
            }
            std::fs::write(
                &conf,
                auth + &format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {MASTER} {down}\n\
                     sentinel failover-timeout {MASTER} {failover}\n\
                     sentinel parallel-syncs {MASTER} 2\n",
                    dir = set.dir.display(),
                    down = DOWN_AFTER.as_millis(),
                    failover = FAILOVER_TIMEOUT.as_millis(),
                ),
            )
            .unwrap();
            let mut node = Node::spawn(&sentinel_program(), &[conf.display().to_string()]);
            node.port = port;
            set.sentinels.push(node);
        }
        for sentinel in &set.sentinels {
            let port = sentinel.port;
            eventually(
                Duration::from_secs(30),
                "each sentinel to know both replicas and the other sentinels",
                || async {
                    let Some(master) = sentinel_master(port, sentinel_password).await else {
                        return false;
                    };
                    master.get("num-slaves").map(String::as_str) == Some("2")
                        && master.get("num-other-sentinels").map(String::as_str) == Some("2")
                },
            )
            .await;
        }
        set
    }

    /// The sentinels' addresses, as `CERYX_REDIS_SENTINELS` takes them.
    pub fn sentinels(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The environment of a `ceryx` process using this set.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("CERYX_REDIS_SENTINELS", self.sentinels()),
            ("CERYX_REDIS_SENTINEL_MASTER", MASTER.into()),
        ];
        if let Some(password) = &self.password {
            env.push(("CERYX_REDIS_PASSWORD", password.clone()));
        }
        if let Some(password) = &self.sentinel_password {
            env.push(("CERYX_REDIS_SENTINEL_PASSWORD", password.clone()));
        }
        env
    }

    /// The port of the server the sentinels name as primary now.
    pub async fn primary_port(&self) -> Option<u16> {
        for sentinel in &self.sentinels {
            let Ok(mut conn) = connect(sentinel.port, self.sentinel_password.as_deref()).await
            else {
                continue;
            };
            let addr: Result<Option<(String, u16)>, _> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(MASTER)
                .query_async(&mut conn)
                .await;
            if let Ok(Some((_, port))) = addr {
                return Some(port);
            }
        }
        None
    }

    /// SIGKILLs the current primary; returns its port.
    pub async fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().await.expect("a primary");
        let node = self
            .servers
            .iter_mut()
            .find(|n| n.port == port)
            .expect("the primary is one of ours");
        node.kill();
        port
    }

    /// Asks a sentinel for a failover while the primary is alive (planned maintenance):
    /// `SENTINEL FAILOVER`; the old primary is demoted to a replica later. Returns its port.
    pub async fn fail_over(&self) -> u16 {
        let port = self.primary_port().await.expect("a primary");
        let sentinel = &self.sentinels[0];
        let mut conn = connect(sentinel.port, self.sentinel_password.as_deref())
            .await
            .unwrap();
        let _: () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER)
            .query_async(&mut conn)
            .await
            .unwrap();
        port
    }

    /// Whether the server on `port` says it is a replica.
    pub async fn is_replica(&self, port: u16) -> bool {
        role(port, self.password.as_deref()).await.as_deref() == Some("slave")
    }

    /// Waits until the sentinels name a primary other than `old` and that server says it
    /// is one; returns its port.
    pub async fn new_primary(&self, old: u16, limit: Duration) -> u16 {
        let start = Instant::now();
        loop {
            if let Some(port) = self.primary_port().await
                && port != old
                && role(port, self.password.as_deref()).await.as_deref() == Some("master")
            {
                return port;
            }
            assert!(start.elapsed() < limit, "no failover within {limit:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A plain connection to the server on `port`.
    pub async fn raw(&self, port: u16) -> redis::aio::MultiplexedConnection {
        connect(port, self.password.as_deref()).await.unwrap()
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        self.sentinels.clear();
        self.servers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn server(
    port: u16,
    replica_of: Option<u16>,
    dir: &std::path::Path,
    password: Option<&str>,
) -> Node {
    // A replica keeps the copy it receives in a file there (not in the working directory).
    let dir = dir.join(format!("server-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--dir",
        &dir.display().to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        // A replica's first sync starts at once, not after the default 5 s.
        "--repl-diskless-sync-delay",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(password) = password {
        // Every server may become a replica after a failover: each knows the password.
        for flag in ["--requirepass", "--masterauth"] {
            args.extend([flag.into(), password.into()]);
        }
    }
    if let Some(primary) = replica_of {
        args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.to_string(),
        ]);
    }
    Node::spawn(&server_program(), &args)
}

async fn connect(
    port: u16,
    password: Option<&str>,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let url = match password {
        Some(password) => format!("redis://:{password}@127.0.0.1:{port}/"),
        None => format!("redis://127.0.0.1:{port}/"),
    };
    let client = redis::Client::open(url)?;
    match tokio::time::timeout(
        Duration::from_secs(1),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        Ok(conn) => conn,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "connect timed out",
        ))),
    }
}

async fn ping(port: u16, password: Option<&str>) -> bool {
    match connect(port, password).await {
        Ok(mut c) => redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .is_ok(),
        Err(_) => false,
    }
}

/// `INFO <section>` of the server on `port`, as fields.
async fn info(port: u16, password: Option<&str>, section: &str) -> Option<HashMap<String, String>> {
    let mut conn = connect(port, password).await.ok()?;
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn)
        .await
        .ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect(),
    )
}

/// `role` from the server's `INFO replication`: `master` or `slave`.
async fn role(port: u16, password: Option<&str>) -> Option<String> {
    info(port, password, "replication").await?.remove("role")
}

/// What the sentinel on `port` knows of the monitored master.
async fn sentinel_master(port: u16, password: Option<&str>) -> Option<HashMap<String, String>> {
    let mut conn = connect(port, password).await.ok()?;
    redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(MASTER)
        .query_async(&mut conn)
        .await
        .ok()
}
