//! Where the store's connections go: one configured server, or the primary that a set of
//! Redis Sentinels names, followed across failovers without a restart.
//!
//! redis-rs 1.8 finds a primary through sentinels (`Sentinel::async_master_for`, which
//! also checks that the server it names answers `ROLE` as a primary), but its
//! `ConnectionManager` is made from one `Client`, that is one fixed address, and
//! reconnects only there: after a failover it would knock on the dead (or demoted)
//! primary for ever. So the current connections live in a cell here, and a follower task
//! swaps them for connections to the new primary when the sentinels announce one
//! (`+switch-master`), when a call fails (the connection was lost, or a demoted primary
//! refused a write with READONLY), or when the connection's periodic `ROLE` check finds a
//! replica at the other end. Each swap tells readers to resync, as any reconnect does.
//!
//! Writes are also held back ("fenced") from the moment a sentinel starts a failover
//! (`+try-failover`) until the switch (or the failover's abort): while the sentinels
//! promote a replica, the old primary still takes writes, and its other replica still
//! confirms them (`WAIT`), until that replica is moved to the new primary and drops them.
//! Measured without the fence: a planned failover (`SENTINEL FAILOVER`) lost 99 writes
//! that had been acknowledged in the 1.5 s between promotion and `+switch-master`. The
//! leading sentinel may be any of them, so every sentinel is listened to.

use super::RedisConfig;
use crate::store::error::StoreError;
use crate::store::notice::{Change, Notices};
use crate::sync::{lock, read, write};
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Role, TlsMode};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The sentinels' port when an address names none.
const SENTINEL_PORT: u16 = 26379;

/// How often the follower asks the sentinels again while no primary is known (at start,
/// and while a failover is under way), and at most how often a failed call makes it ask.
const RETRY: Duration = Duration::from_millis(100);

/// How often the follower asks the sentinels even when nothing went wrong: a safety net
/// for a `+switch-master` missed while no sentinel connection was up.
const RECHECK: Duration = Duration::from_secs(5);

/// Longest a failover holds writes back without a switch or an abort being heard (a
/// sentinel's `failover-timeout` is 3 minutes by default; a failover that takes longer
/// has failed, and writes go to the primary the sentinels still name).
const FENCE: Duration = Duration::from_secs(30);

/// The connections of one primary.
#[derive(Clone)]
pub(super) struct Link {
    /// Reads, and the change-notice subscription.
    pub(super) reads: ConnectionManager,
    /// Writes that wait for replicas (`WAIT` blocks its connection, so it gets its own:
    /// reads of the same process are never held behind it); `None` when writes do not
    /// wait, and go through `reads`.
    pub(super) writes: Option<ConnectionManager>,
    /// Which primary this is, counted from 0 (fixed server) or 1 (first one found).
    pub(super) generation: u64,
}

/// How connections to a primary are made.
pub(super) struct Connector {
    /// Settings of the reads connection of a given generation (its push messages count
    /// only while that generation is the live one).
    pub(super) reads: Box<dyn Fn(u64) -> ConnectionManagerConfig + Send + Sync>,
    /// Settings of the writes connection, if writes wait for replicas.
    pub(super) writes: Option<ConnectionManagerConfig>,
}

impl Connector {
    fn link(&self, client: Client, generation: u64) -> Result<Link, StoreError> {
        let reads =
            ConnectionManager::new_lazy_with_config(client.clone(), (self.reads)(generation))?;
        let writes = match &self.writes {
            Some(config) => Some(ConnectionManager::new_lazy_with_config(
                client,
                config.clone(),
            )?),
            None => None,
        };
        Ok(Link {
            reads,
            writes,
            generation,
        })
    }
}

/// The current primary's connections, shared by the store's calls and tasks.
pub(super) struct Primary {
    link: RwLock<Option<Link>>,
    /// The generation whose push messages count (older connections may still deliver
    /// some while they wind down).
    live: Arc<AtomicU64>,
    /// Set by a failed call: the follower asks the sentinels again.
    kick: Notify,
    /// Set when a new primary's connections are in place: they are subscribed at once.
    installed: Notify,
    /// Whether the current connection hears the notices (the store's flag): not a new
    /// one, until it has subscribed.
    subscribed: Arc<AtomicBool>,
    /// Whether a sentinel set names the primary (then it can change).
    followed: bool,
    /// The primary the last `+switch-master` named (host, port), not yet followed.
    announced: Mutex<Option<(String, u16)>>,
    /// Where the followed primary is (host, port): a failover of another server (one
    /// already replaced) fences nothing.
    address: Mutex<Option<(String, u16)>>,
    /// The sentinels (by index) that announced a failover not finished yet, and when
    /// the first did.
    fence: Mutex<(BTreeSet<usize>, Option<Instant>)>,
}

impl Primary {
    /// One fixed server: its connections, made now (they connect lazily).
    pub(super) fn fixed(
        client: Client,
        connector: &Connector,
        live: Arc<AtomicU64>,
        subscribed: Arc<AtomicBool>,
    ) -> Result<Primary, StoreError> {
        Ok(Primary {
            link: RwLock::new(Some(connector.link(client, live.load(Ordering::Acquire))?)),
            live,
            kick: Notify::new(),
            installed: Notify::new(),
            subscribed,
            followed: false,
            announced: Default::default(),
            address: Default::default(),
            fence: Default::default(),
        })
    }

    /// A primary the sentinels will name: none until [`follow`] finds it.
    pub(super) fn followed(live: Arc<AtomicU64>, subscribed: Arc<AtomicBool>) -> Primary {
        Primary {
            link: RwLock::new(None),
            live,
            kick: Notify::new(),
            installed: Notify::new(),
            subscribed,
            followed: true,
            announced: Default::default(),
            address: Default::default(),
            fence: Default::default(),
        }
    }

    /// The current connections, or `NoPrimary` while the sentinels have named none.
    pub(super) fn link(&self) -> Result<Link, StoreError> {
        read(&self.link).clone().ok_or(StoreError::NoPrimary)
    }

    /// Refuses a write while a failover is under way (see the module's notes).
    pub(super) fn may_write(&self) -> Result<(), StoreError> {
        let fence = lock(&self.fence);
        match fence.1 {
            Some(since) if since.elapsed() < FENCE => Err(StoreError::FailingOver),
            _ => Ok(()),
        }
    }

    /// Sentinel `by` started a failover (`true`) or gave it up (`false`).
    fn failing_over(&self, by: usize, started: bool) {
        let mut fence = lock(&self.fence);
        let (sentinels, since) = &mut *fence;
        if started {
            sentinels.insert(by);
            since.get_or_insert_with(Instant::now);
        } else {
            sentinels.remove(&by);
            if sentinels.is_empty() {
                *since = None;
            }
        }
    }

    /// The failover is over (the primary switched): writes go on.
    fn unfence(&self) {
        *lock(&self.fence) = Default::default();
    }

    /// A call failed: the primary may have changed.
    pub(super) fn failed(&self) {
        if self.followed {
            self.kick.notify_one();
        }
    }

    /// Resolves when new connections were put in place.
    pub(super) async fn installed(&self) {
        self.installed.notified().await;
    }

    /// Checks the other end of `link` is (still) the primary: `PING` for a fixed server,
    /// `ROLE` for a followed one, so that a demoted primary is noticed even without a
    /// write. A failure asks the follower to look again.
    pub(super) async fn check(&self, link: &Link) {
        let mut conn = link.reads.clone();
        let healthy = if self.followed {
            match redis::cmd("ROLE").query_async::<Role>(&mut conn).await {
                Ok(Role::Primary { .. }) => true,
                Ok(_) => {
                    tracing::warn!("the redis server followed is no longer the primary");
                    false
                }
                Err(e) => {
                    tracing::debug!(error = %e, "redis role check failed");
                    false
                }
            }
        } else {
            redis::cmd("PING")
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| tracing::debug!(error = %e, "redis ping failed"))
                .is_ok()
        };
        if !healthy {
            self.failed();
        }
    }

    /// Puts connections to a new primary in place; readers resync, as after any
    /// reconnect, since notices published meanwhile went to the old one (or nowhere).
    fn install(
        &self,
        client: Client,
        connector: &Connector,
        notices: &Notices,
    ) -> Result<(), StoreError> {
        let generation = self.live.load(Ordering::Acquire) + 1;
        let address = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                Some((host.clone(), *port))
            }
            _ => None,
        };
        let link = connector.link(client, generation)?;
        *lock(&self.address) = address;
        // From now on only the new connection's pushes count: the old one's late
        // "disconnected" must not mark the new subscription as down, nor its
        // "subscribed" the new one as up.
        self.live.store(generation, Ordering::Release);
        self.subscribed.store(false, Ordering::Release);
        *write(&self.link) = Some(link);
        self.unfence();
        self.installed.notify_one();
        notices.send(Change::Resync);
        if generation > 1 {
            crate::telemetry::store_primary_switch();
        }
        Ok(())
    }
}

/// What the follower needs to ask the sentinels.
pub(super) struct Sentinels {
    /// Each sentinel's address, with its password.
    pub(super) nodes: Vec<ConnectionInfo>,
    /// The monitored master's name.
    pub(super) master: String,
    /// How to reach the primary they name (password, protocol, TLS).
    pub(super) node: SentinelNodeConnectionInfo,
    /// The same as a connection's settings, whose address is replaced by the one a
    /// `+switch-master` announces.
    primary: ConnectionInfo,
    /// Bound of one round of questions (a sentinel that stopped answering must not hold
    /// the follower).
    pub(super) timeout: Duration,
}

impl Sentinels {
    /// A client for the primary a `+switch-master` announced at `host:port`, once that
    /// server says it is the primary (`ROLE`, as the crate checks what sentinels name).
    /// Asking the sentinels instead may get the old primary from one that has not
    /// switched yet (they catch up within a second or two), and the old primary,
    /// demoted only seconds later, still answers as one.
    async fn announced(&self, host: &str, port: u16) -> redis::RedisResult<Client> {
        let addr = match self.primary.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.to_owned(), port),
        };
        let client = Client::open(self.primary.clone().set_addr(addr))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        match redis::cmd("ROLE").query_async::<Role>(&mut conn).await? {
            Role::Primary { .. } => Ok(client),
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
                "the announced primary is a replica",
            ))),
        }
    }

    /// The sentinel settings of `config`, if it names sentinels.
    pub(super) fn of(
        config: &RedisConfig,
        primary: &ConnectionInfo,
    ) -> Result<Option<Sentinels>, StoreError> {
        if config.sentinels.is_empty() {
            return Ok(None);
        }
        let nodes = config
            .sentinels
            .iter()
            .map(|address| sentinel_info(address, config.sentinel_password.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(primary.redis_settings().clone());
        if let ConnectionAddr::TcpTls { insecure, .. } = primary.addr() {
            node = node.set_tls_mode(if *insecure {
                TlsMode::Insecure
            } else {
                TlsMode::Secure
            });
        }
        Ok(Some(Sentinels {
            nodes,
            master: config.sentinel_master.clone(),
            node,
            primary: primary.clone(),
            // Every sentinel may be asked in turn, and the primary named is checked.
            timeout: config.timeout * 4 + Duration::from_secs(1),
        }))
    }
}

/// One sentinel's address: `host:port` (port 26379 when left out), `[v6]:port`, or a
/// `redis://` / `rediss://` URL; the sentinels' password joins it unless it has one.
fn sentinel_info(address: &str, password: Option<&str>) -> Result<ConnectionInfo, StoreError> {
    let address = address.trim();
    let info = if address.contains("://") {
        address.into_connection_info()?
    } else {
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') => (
                host,
                port.parse()
                    .map_err(|_| StoreError::Sentinel(address.to_owned()))?,
            ),
            _ => (address, SENTINEL_PORT),
        };
        let host = crate::route::bare_host(host);
        if host.is_empty() {
            return Err(StoreError::Sentinel(address.to_owned()));
        }
        ConnectionAddr::Tcp(host.to_owned(), port).into_connection_info()?
    };
    let settings = info.redis_settings().clone();
    Ok(match (settings.password(), password) {
        (None, Some(password)) => info.set_redis_settings(settings.set_password(password)),
        _ => info,
    })
}

/// Keeps `primary` on the server the sentinels name: asks them at start, then whenever a
/// call fails or they announce a switch, and every [`RECHECK`] regardless.
pub(super) async fn follow(
    primary: Arc<Primary>,
    sentinels: Sentinels,
    connector: Connector,
    notices: Arc<Notices>,
) {
    let mut sentinel = match Sentinel::build(sentinels.nodes.clone()) {
        Ok(sentinel) => sentinel,
        Err(e) => return tracing::error!(error = %e, "redis sentinel settings"),
    };
    let switches = tokio::spawn(listen_to_sentinels(
        sentinels.nodes.clone(),
        sentinels.master.clone(),
        primary.clone(),
    ));
    let _switches = AbortOnDrop(switches);
    let mut current: Option<ConnectionAddr> = None;
    let mut warned = false;
    loop {
        // Failed calls come in bursts: one question per burst is enough.
        let asked = Instant::now();
        let announced = lock(&primary.announced).take();
        let found = match &announced {
            Some((host, port)) => {
                tokio::time::timeout(sentinels.timeout, sentinels.announced(host, *port)).await
            }
            None => {
                tokio::time::timeout(
                    sentinels.timeout,
                    sentinel.async_master_for(&sentinels.master, Some(&sentinels.node)),
                )
                .await
            }
        };
        match found {
            Ok(Ok(client)) => {
                warned = false;
                let addr = client.get_connection_info().addr().clone();
                if current.as_ref() != Some(&addr) {
                    match primary.install(client, &connector, &notices) {
                        Ok(()) => {
                            tracing::info!(master = %sentinels.master, primary = %addr, "following the redis primary the sentinels name");
                            current = Some(addr);
                        }
                        Err(e) => {
                            tracing::warn!(primary = %addr, error = %e, "cannot connect to the redis primary the sentinels name");
                        }
                    }
                }
            }
            // During a failover the sentinels name no primary for a while: said once.
            Ok(Err(e)) if !warned => {
                warned = true;
                tracing::warn!(master = %sentinels.master, error = %e, "the sentinels name no reachable primary (yet)");
            }
            Err(_) if !warned => {
                warned = true;
                tracing::warn!(master = %sentinels.master, "the sentinels did not answer in time");
            }
            _ => {}
        }
        let wait = if current.is_none() || warned {
            RETRY
        } else {
            RECHECK
        };
        tokio::select! {
            _ = primary.kick.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        tokio::time::sleep_until((asked + RETRY).into()).await;
    }
}

/// Listens to every sentinel's announcements about `master`: a failover starting
/// (`+try-failover`) or given up (`-failover-abort-*`) by that sentinel fences writes or
/// lifts its fence; a switch (`+switch-master`) wakes the follower. A new connection
/// wakes it too (a switch may have been missed meanwhile).
async fn listen_to_sentinels(nodes: Vec<ConnectionInfo>, master: String, primary: Arc<Primary>) {
    let listeners = nodes.into_iter().enumerate().map(|(index, node)| {
        let (master, primary) = (master.clone(), primary.clone());
        async move {
            loop {
                listen_to_sentinel(index, &node, &master, &primary).await;
                // Whatever failover this sentinel led, it is not heard of any more.
                primary.failing_over(index, false);
                tokio::time::sleep(RETRY).await;
            }
        }
    });
    futures_util::future::join_all(listeners).await;
}

/// One sentinel's announcements, until its connection ends.
async fn listen_to_sentinel(index: usize, node: &ConnectionInfo, master: &str, primary: &Primary) {
    let connected = async {
        let mut pubsub = Client::open(node.clone())?.get_async_pubsub().await?;
        pubsub
            .subscribe(&["+switch-master", "+try-failover"])
            .await?;
        pubsub.psubscribe("-failover-abort-*").await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let mut pubsub = match tokio::time::timeout(Duration::from_secs(2), connected).await {
        Ok(Ok(pubsub)) => pubsub,
        Ok(Err(e)) => {
            return tracing::debug!(sentinel = %node.addr(), error = %e, "sentinel unreachable");
        }
        Err(_) => {
            return tracing::debug!(sentinel = %node.addr(), "sentinel did not answer in time");
        }
    };
    primary.kick.notify_one();
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let payload: String = message.get_payload().unwrap_or_default();
        let mut words = payload.split(' ');
        match message.get_channel_name() {
            // "<master name> <old ip> <old port> <new ip> <new port>"
            "+switch-master" if words.next() == Some(master) => {
                tracing::info!(%payload, "the sentinels switched the redis primary");
                // This sentinel's failover (if it led one) is over.
                primary.failing_over(index, false);
                let (host, port) = (words.nth(2), words.next().and_then(|p| p.parse().ok()));
                if let (Some(host), Some(port)) = (host, port) {
                    *lock(&primary.announced) = Some((host.to_owned(), port));
                }
                primary.kick.notify_one();
            }
            // "master <master name> <ip> <port>"
            "+try-failover" if words.nth(1) == Some(master) => {
                let (host, port) = (
                    words.next(),
                    words.next().and_then(|p| p.parse::<u16>().ok()),
                );
                let current = lock(&primary.address).clone();
                // A late attempt on a primary already replaced is not ours to wait for.
                let ours = match (&current, host, port) {
                    (Some((h, p)), Some(host), Some(port)) => h == host && *p == port,
                    _ => true,
                };
                if ours {
                    tracing::warn!(%payload, "a sentinel started a failover: writes wait for the new primary");
                    primary.failing_over(index, true);
                }
            }
            abort if abort.starts_with("-failover-abort") && words.nth(1) == Some(master) => {
                tracing::info!(%payload, reason = abort, "a sentinel gave up a failover");
                primary.failing_over(index, false);
            }
            _ => {}
        }
    }
}

/// Stops a task when its owner stops.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_wait_while_any_sentinel_fails_over() {
        let primary = Primary::followed(Arc::default(), Arc::default());
        assert!(primary.may_write().is_ok());
        // Two sentinels try; the one not elected gives up, the other goes on.
        primary.failing_over(0, true);
        primary.failing_over(2, true);
        primary.failing_over(2, false);
        assert!(matches!(primary.may_write(), Err(StoreError::FailingOver)));
        assert!(!StoreError::FailingOver.may_have_written());
        primary.failing_over(0, false);
        assert!(primary.may_write().is_ok());
        // The switch lifts every fence.
        primary.failing_over(1, true);
        primary.unfence();
        assert!(primary.may_write().is_ok());
        // A fence nobody lifts ends after FENCE.
        primary.failing_over(1, true);
        primary.fence.lock().unwrap().1 = Instant::now().checked_sub(FENCE);
        assert!(primary.may_write().is_ok());
    }

    #[test]
    fn sentinel_addresses() {
        let addr = |a: &str| sentinel_info(a, Some("pw")).unwrap();
        let a = addr("10.0.0.1:26380");
        assert_eq!(a.addr(), &ConnectionAddr::Tcp("10.0.0.1".into(), 26380));
        assert_eq!(a.redis_settings().password(), Some("pw"));
        assert_eq!(
            addr("sentinel.redis").addr(),
            &ConnectionAddr::Tcp("sentinel.redis".into(), 26379)
        );
        assert_eq!(
            addr("[::1]:5000").addr(),
            &ConnectionAddr::Tcp("::1".into(), 5000)
        );
        let url = addr("redis://:own@s1:1234");
        assert_eq!(url.redis_settings().password(), Some("own"));
        assert!(sentinel_info("s1:port", None).is_err());
        assert!(sentinel_info(":1", None).is_err());
    }
}
