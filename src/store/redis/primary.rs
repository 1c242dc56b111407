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

use super::RedisConfig;
use crate::store::error::StoreError;
use crate::store::notice::{Change, Notices};
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Role, TlsMode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// The sentinels' port when an address names none.
const SENTINEL_PORT: u16 = 26379;

/// How often the follower asks the sentinels again while no primary is known (at start,
/// and while a failover is under way), and at most how often a failed call makes it ask.
const RETRY: Duration = Duration::from_millis(100);

/// How often the follower asks the sentinels even when nothing went wrong: a safety net
/// for a `+switch-master` missed while no sentinel connection was up.
const RECHECK: Duration = Duration::from_secs(5);

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
        }
    }

    /// The current connections, or `NoPrimary` while the sentinels have named none.
    pub(super) fn link(&self) -> Result<Link, StoreError> {
        self.link
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::NoPrimary)
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
        let link = connector.link(client, generation)?;
        // From now on only the new connection's pushes count: the old one's late
        // "disconnected" must not mark the new subscription as down, nor its
        // "subscribed" the new one as up.
        self.live.store(generation, Ordering::Release);
        self.subscribed.store(false, Ordering::Release);
        *self.link.write().unwrap_or_else(|e| e.into_inner()) = Some(link);
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
    /// Bound of one round of questions (a sentinel that stopped answering must not hold
    /// the follower).
    pub(super) timeout: Duration,
}

impl Sentinels {
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
        let host = host.trim_start_matches('[').trim_end_matches(']');
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
    let switches = tokio::spawn(listen_for_switches(
        sentinels.nodes.clone(),
        sentinels.master.clone(),
        primary.clone(),
    ));
    let _switches = AbortOnDrop(switches);
    let mut current: Option<ConnectionAddr> = None;
    let mut warned = false;
    loop {
        // Failed calls come in bursts: one question per burst is enough.
        let asked = std::time::Instant::now();
        let found = tokio::time::timeout(
            sentinels.timeout,
            sentinel.async_master_for(&sentinels.master, Some(&sentinels.node)),
        )
        .await;
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

/// Listens to the sentinels' `+switch-master` announcements (on one sentinel at a time)
/// and wakes the follower on each for `master`, and on every new sentinel connection
/// (one may have been missed meanwhile).
async fn listen_for_switches(nodes: Vec<ConnectionInfo>, master: String, primary: Arc<Primary>) {
    for node in nodes.iter().cycle() {
        let connected = async {
            let mut pubsub = Client::open(node.clone())?.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(2), connected).await {
            Ok(Ok(mut pubsub)) => {
                primary.kick.notify_one();
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let payload: String = message.get_payload().unwrap_or_default();
                    // "<master name> <old ip> <old port> <new ip> <new port>"
                    if payload.split(' ').next() == Some(master.as_str()) {
                        tracing::info!(%payload, "the sentinels switched the redis primary");
                        primary.kick.notify_one();
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(sentinel = %node.addr(), error = %e, "sentinel unreachable")
            }
            Err(_) => tracing::debug!(sentinel = %node.addr(), "sentinel did not answer in time"),
        }
        tokio::time::sleep(RETRY).await;
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
