//! The Redis store, shared by every proxy replica and writer: reads and scans here, the
//! key layout in [`keys`], the atomic writes in [`scripts`], the change notices in
//! [`subscription`], the primary (fixed, or named by sentinels) in [`primary`].

mod keys;
mod primary;
mod scripts;
mod subscription;

use super::error::StoreError;
use super::notice::{Change, Notices, Subscription};
use super::route_store::{CertificatePem, Lock, RouteStore};
use super::writer::Writer;
use crate::route::rules::{Backends, validate};
use crate::route::{Mode, Route, Rule, Settings, Wake, normalize_target, wake};
use async_trait::async_trait;
use keys::Keys;
use primary::{AbortOnDrop, Connector, Link, Primary, Sentinels};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, Value};
use scripts::Outcome;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use subscription::notice;

/// How many keys one SCAN step and one fetch pipeline handle when listing.
const BATCH: usize = 500;

/// Where Redis is and how to talk to it (the original `CERYX_REDIS_*` settings).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL; when set, host and port are ignored, and the
    /// password too if the URL carries one.
    pub url: Option<String>,
    /// Redis host name or address.
    pub host: String,
    /// Redis port.
    pub port: u16,
    /// Password sent with AUTH.
    pub password: Option<String>,
    /// Key prefix, `ceryx` by default.
    pub prefix: String,
    /// Connect and command timeout.
    pub timeout: Duration,
    /// Redis Sentinel addresses (`host:port`); when set, the primary is the one they
    /// name for [`RedisConfig::sentinel_master`], and host, port (and a URL's host) are
    /// ignored.
    pub sentinels: Vec<String>,
    /// The master name the sentinels monitor.
    pub sentinel_master: String,
    /// Password of the sentinels themselves (the primary's is `password`).
    pub sentinel_password: Option<String>,
    /// Replicas that must confirm a route write (`WAIT`) before it is acknowledged;
    /// 0 acknowledges what the primary applied.
    pub wait_replicas: usize,
}

impl RedisConfig {
    /// Ceryx's defaults for everything but the address.
    pub fn new(host: impl Into<String>, port: u16) -> RedisConfig {
        RedisConfig {
            url: None,
            host: host.into(),
            port,
            password: None,
            prefix: "ceryx".into(),
            timeout: Duration::from_millis(100),
            sentinels: Vec::new(),
            sentinel_master: "mymaster".into(),
            sentinel_password: None,
            wait_replicas: 0,
        }
    }

    fn connection_info(&self) -> Result<ConnectionInfo, StoreError> {
        let info = match &self.url {
            Some(url) => url.as_str().into_connection_info()?,
            None => ConnectionAddr::Tcp(self.host.clone(), self.port).into_connection_info()?,
        };
        let mut redis = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        // A password kept apart from the URL (a Kubernetes Secret) joins it.
        if let (None, Some(password)) = (redis.password(), &self.password) {
            redis = redis.set_password(password);
        }
        Ok(info.set_redis_settings(redis))
    }
}

/// Routes in Redis, shared by every proxy replica and writer.
pub struct RedisStore {
    primary: Arc<Primary>,
    keys: Keys,
    timeout: Duration,
    /// Replicas a write waits for (`WAIT`), 0 for none.
    wait_replicas: usize,
    notices: Arc<Notices>,
    /// Whether this connection hears its own PUBLISHes (else writes announce here).
    subscribed: Arc<AtomicBool>,
    _tasks: Vec<AbortOnDrop>,
}

impl RedisStore {
    /// Prepares the connection without waiting for Redis, so a proxy can start (and
    /// serve what it can) while Redis is down; it connects and subscribes on its own.
    /// With sentinels, it asks them for the primary and follows every failover.
    pub fn connect(config: &RedisConfig) -> Result<RedisStore, StoreError> {
        let info = config.connection_info()?;
        let notices = Arc::new(Notices::default());
        let keys = Keys::new(&config.prefix);
        let channel = keys.channel();
        let subscribed = Arc::new(AtomicBool::new(false));
        let sentinels = Sentinels::of(config, &info)?;
        // A manager retries a lost connection several times (3.5 s by default) before a
        // waiting call hears of it. With sentinels, a primary that stops answering is
        // the follower's to replace: calls fail at once (so that a write the server never
        // got says "nothing was changed") and the next call tries again.
        let followed = sentinels.is_some();
        let retries = move |config: ConnectionManagerConfig| match followed {
            true => config.set_number_of_retries(0),
            false => config,
        };
        // The generation whose push messages count: see `Primary::install`.
        let live = Arc::new(AtomicU64::new(0));
        let reads = {
            let (channel, notices, subscribed, live) = (
                channel.clone(),
                notices.clone(),
                subscribed.clone(),
                live.clone(),
            );
            let timeout = config.timeout;
            move |generation| {
                let handler = subscription::notice_handler(
                    channel.clone(),
                    notices.clone(),
                    subscribed.clone(),
                    live.clone(),
                    generation,
                );
                retries(
                    ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout))
                        .set_max_delay(Duration::from_secs(1))
                        .set_push_sender(handler)
                        .set_automatic_resubscription(),
                )
            }
        };
        // A WAIT answers within its own timeout (the store's) after the write it follows,
        // which may queue behind another write's WAIT on this connection.
        let writes = (config.wait_replicas > 0).then(|| {
            retries(
                ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.timeout))
                    .set_response_timeout(Some(config.timeout * 3))
                    .set_max_delay(Duration::from_secs(1)),
            )
        });
        let connector = Connector {
            reads: Box::new(reads),
            writes,
        };
        let mut tasks = Vec::new();
        let primary = match sentinels {
            None => Arc::new(Primary::fixed(
                redis::Client::open(info)?,
                &connector,
                live,
                subscribed.clone(),
            )?),
            Some(sentinels) => {
                tracing::info!(master = %sentinels.master, sentinels = sentinels.nodes.len(), "redis primary named by sentinels");
                let primary = Arc::new(Primary::followed(live, subscribed.clone()));
                tasks.push(AbortOnDrop(tokio::spawn(primary::follow(
                    primary.clone(),
                    sentinels,
                    connector,
                    notices.clone(),
                ))));
                primary
            }
        };
        tasks.push(AbortOnDrop(tokio::spawn(subscription::keep_subscribed(
            primary.clone(),
            channel,
        ))));
        Ok(RedisStore {
            primary,
            keys,
            timeout: config.timeout,
            wait_replicas: config.wait_replicas,
            notices,
            subscribed,
            _tasks: tasks,
        })
    }

    /// Every key starting with `key_prefix` (SCAN, never KEYS), without duplicates.
    async fn scan(&self, key_prefix: &str) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}*", escape_glob(key_prefix));
        let mut conn = self.conn()?;
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let step = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(BATCH)
                .to_owned();
            let (next, found): (u64, Vec<String>) = self.run(step.query_async(&mut conn)).await?;
            keys.extend(found);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        // SCAN may return a key more than once.
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Makes sure this process hears of a write to `source` before the writer returns.
    /// The script's PUBLISH reaches this connection's own subscription before the
    /// script's answer does, so it is announced once, by Redis; only while that
    /// subscription is down (not yet made, or reconnecting) is it announced here.
    /// Writes that wait for replicas go through a connection of their own, whose answer
    /// may overtake the notice on the subscribed one: those always announce here too (a
    /// second notice of the same change costs one more read).
    fn announced(&self, source: &str) {
        if self.wait_replicas > 0 || !self.subscribed.load(Ordering::Acquire) {
            self.notices.send(Change::route(source));
        }
    }

    /// Runs one Redis call under the store's timeout: a reconnecting connection must
    /// not hold a request longer than `CERYX_REDIS_TIMEOUT`.
    async fn run<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        self.run_within(self.timeout, call).await
    }

    /// [`RedisStore::run`] with a bound of its own. A failure may mean the primary changed:
    /// the follower (with sentinels) asks again.
    async fn run_within<T>(
        &self,
        limit: Duration,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(limit, call).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Timeout),
        };
        if result.is_err() {
            crate::telemetry::store_error();
            self.primary.failed();
        }
        result
    }

    /// The connection for reads (and writes that do not wait for replicas).
    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        self.link().map(|link| link.reads)
    }

    fn link(&self) -> Result<Link, StoreError> {
        self.primary.link().inspect_err(|_| {
            crate::telemetry::store_error();
            self.primary.failed();
        })
    }

    /// Reads `sources` in one pipeline: each route's target, settings, rules and wake
    /// setting, and with `certificates` its stored certificate too.
    async fn fetch_routes(
        &self,
        sources: &[&str],
        certificates: bool,
    ) -> Result<Vec<Option<(Route, Option<CertificatePem>)>>, StoreError> {
        if sources.is_empty() {
            // Redis refuses an empty pipeline.
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for source in sources {
            pipe.get(self.keys.route(source))
                .hgetall(self.keys.settings(source))
                .get(self.keys.rules(source))
                .get(self.keys.wake(source));
            if certificates {
                pipe.hgetall(self.keys.certificate(source));
            }
        }
        let mut conn = self.conn()?;
        let values: Vec<Value> = self.run(pipe.query_async(&mut conn)).await?;
        let mut values = values.into_iter();
        let mut routes = Vec::with_capacity(sources.len());
        for source in sources {
            let (Some(target), Some(settings), Some(rules), Some(wake)) =
                (values.next(), values.next(), values.next(), values.next())
            else {
                break;
            };
            let certificate = match certificates {
                true => values
                    .next()
                    .and_then(|hash| parse_certificate(source, hash)),
                false => None,
            };
            let route = parse_route(source, target, settings, rules, wake)?;
            routes.push(route.map(|route| (route, certificate)));
        }
        Ok(routes)
    }

    /// Runs one write script and returns its answer. With replicas to wait for, the
    /// script and a `WAIT` go together in one round trip on the writes connection, and a
    /// change is acknowledged only once enough replicas confirmed it: what a failover
    /// keeps. A refusal (nothing written) is answered as such, confirmed or not.
    async fn write_script(&self, script: redis::Cmd) -> Result<String, StoreError> {
        self.primary.may_write()?;
        let link = self.link()?;
        let Some(mut conn) = link.writes else {
            let mut conn = link.reads;
            return self.run(script.query_async(&mut conn)).await;
        };
        let mut pipe = redis::pipe();
        pipe.add_command(script)
            .cmd("WAIT")
            .arg(self.wait_replicas)
            .arg(
                u64::try_from(self.timeout.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
        let (answer, confirmed): (String, usize) = self
            .run_within(self.timeout * 2, pipe.query_async(&mut conn))
            .await?;
        let changed = matches!(scripts::outcome(&answer), Ok(o) if o != Outcome::Kept);
        if changed && confirmed < self.wait_replicas {
            crate::telemetry::store_error();
            return Err(StoreError::NotReplicated {
                wanted: self.wait_replicas,
                confirmed,
            });
        }
        Ok(answer)
    }
}

#[async_trait]
impl RouteStore for RedisStore {
    async fn fetch(&self, sources: &[&str]) -> Result<Vec<Option<Route>>, StoreError> {
        let routes = self.fetch_routes(sources, false).await?;
        Ok(routes
            .into_iter()
            .map(|r| r.map(|(route, _)| route))
            .collect())
    }

    async fn fetch_with_certificates(
        &self,
        sources: &[&str],
    ) -> Result<Vec<Option<(Route, Option<CertificatePem>)>>, StoreError> {
        self.fetch_routes(sources, true).await
    }

    async fn list(&self) -> Result<Vec<Route>, StoreError> {
        let key_prefix = self.keys.route("");
        let keys = self.scan(&key_prefix).await?;
        let sources: Vec<&str> = keys
            .iter()
            .filter_map(|k| k.strip_prefix(&key_prefix))
            .collect();
        let mut routes = Vec::with_capacity(sources.len());
        for chunk in sources.chunks(BATCH) {
            // A key deleted between SCAN and GET is simply not listed.
            routes.extend(self.fetch(chunk).await?.into_iter().flatten());
        }
        routes.sort_by(|a, b| a.source.cmp(&b.source));
        Ok(routes)
    }

    async fn wildcards(&self) -> Result<Vec<String>, StoreError> {
        // Keys only: one SCAN pass, no route read.
        let key_prefix = self.keys.route("");
        let keys = self.scan(&self.keys.route("*.")).await?;
        Ok(keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&key_prefix).map(str::to_owned))
            .collect())
    }

    async fn write(&self, route: &Route, by: Writer<'_>) -> Result<(), StoreError> {
        let settings = &route.settings;
        let mut call = redis::cmd("EVAL");
        let rules = match route.rules.is_empty() {
            true => String::new(),
            // Plain structs with string keys: serialising cannot fail.
            false => serde_json::to_string(&route.rules).unwrap_or_default(),
        };
        let wake = route
            .wake
            .as_ref()
            .and_then(|wake| serde_json::to_string(wake).ok())
            .unwrap_or_default();
        call.arg(scripts::WRITE)
            .arg(5)
            .arg(self.keys.route(&route.source))
            .arg(self.keys.settings(&route.source))
            .arg(self.keys.owner(&route.source))
            .arg(self.keys.rules(&route.source))
            .arg(self.keys.wake(&route.source))
            .arg(&route.target)
            .arg(by.owner().unwrap_or(""))
            .arg(matches!(
                by,
                Writer::Resource {
                    take_unowned: true,
                    ..
                } | Writer::TakeOver { .. }
            ) as u8)
            .arg(self.keys.channel())
            .arg(notice(&route.source))
            .arg(by.replaces().unwrap_or(""))
            .arg(rules)
            .arg(wake)
            .arg("enforce_https")
            .arg(if settings.enforce_https { "1" } else { "0" })
            .arg("mode")
            .arg(settings.mode.as_str());
        // The hash is replaced, not merged: no stale certificate path survives an update.
        if let Some(path) = &settings.certificate_path {
            call.arg("certificate_path").arg(path);
        }
        if let Some(path) = &settings.key_path {
            call.arg("key_path").arg(path);
        }
        let outcome = self.write_script(call).await?;
        scripts::outcome(&outcome)?;
        self.announced(&route.source);
        Ok(())
    }

    async fn remove(&self, source: &str, by: Writer<'_>) -> Result<bool, StoreError> {
        let mut call = redis::cmd("EVAL");
        call.arg(scripts::REMOVE)
            .arg(6)
            .arg(self.keys.route(source))
            .arg(self.keys.settings(source))
            .arg(self.keys.owner(source))
            .arg(self.keys.certificate(source))
            .arg(self.keys.rules(source))
            .arg(self.keys.wake(source))
            .arg(by.owner().unwrap_or(""))
            .arg(self.keys.channel())
            .arg(notice(source));
        let outcome = self.write_script(call).await?;
        let outcome = scripts::outcome(&outcome)?;
        if outcome != Outcome::Kept {
            self.announced(source);
        }
        Ok(outcome == Outcome::Deleted(true))
    }

    async fn certificates(
        &self,
        sources: &[&str],
    ) -> Result<Vec<Option<CertificatePem>>, StoreError> {
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for source in sources {
            pipe.hgetall(self.keys.certificate(source));
        }
        let mut conn = self.conn()?;
        let hashes: Vec<Value> = self.run(pipe.query_async(&mut conn)).await?;
        Ok(sources
            .iter()
            .zip(hashes)
            .map(|(source, hash)| parse_certificate(source, hash))
            .collect())
    }

    async fn set_certificate(
        &self,
        source: &str,
        pem: Option<&CertificatePem>,
        owner: &str,
    ) -> Result<(), StoreError> {
        let mut call = redis::cmd("EVAL");
        call.arg(scripts::CERTIFICATE)
            .arg(2)
            .arg(self.keys.owner(source))
            .arg(self.keys.certificate(source))
            .arg(owner)
            .arg(self.keys.channel())
            .arg(notice(source));
        if let Some(pem) = pem {
            call.arg(&pem.certificate).arg(&pem.key);
        }
        let outcome = self.write_script(call).await?;
        scripts::outcome(&outcome)?;
        self.announced(source);
        Ok(())
    }

    async fn owners(&self) -> Result<Vec<(String, String)>, StoreError> {
        let key_prefix = self.keys.owner("");
        let keys = self.scan(&key_prefix).await?;
        let mut owners = Vec::with_capacity(keys.len());
        let mut conn = self.conn()?;
        for chunk in keys.chunks(BATCH) {
            let values: Vec<Option<String>> = self
                .run(redis::cmd("MGET").arg(chunk).query_async(&mut conn))
                .await?;
            for (key, owner) in chunk.iter().zip(values) {
                if let (Some(source), Some(owner)) = (key.strip_prefix(&key_prefix), owner) {
                    owners.push((source.to_owned(), owner));
                }
            }
        }
        Ok(owners)
    }

    async fn try_lock(
        &self,
        lock: Lock,
        source: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let set = redis::cmd("SET")
            .arg(self.keys.lock(lock.name(), source))
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .to_owned();
        let answer: Option<String> = self.run(set.query_async(&mut conn)).await?;
        Ok(answer.is_some())
    }

    async fn unlock(&self, lock: Lock, source: &str, holder: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut call = redis::cmd("EVAL");
        call.arg(scripts::UNLOCK)
            .arg(1)
            .arg(self.keys.lock(lock.name(), source))
            .arg(holder);
        self.run(call.query_async::<i64>(&mut conn)).await?;
        Ok(())
    }

    async fn set_served(&self, source: &str, at: u64) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut call = redis::cmd("EVAL");
        call.arg(scripts::SERVED)
            .arg(1)
            .arg(self.keys.served(source))
            .arg(at);
        self.run(call.query_async::<i64>(&mut conn)).await?;
        Ok(())
    }

    async fn served(&self, source: &str) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn()?;
        let get = redis::cmd("GET").arg(self.keys.served(source)).to_owned();
        let at: Option<String> = self.run(get.query_async(&mut conn)).await?;
        Ok(at.and_then(|at| at.parse().ok()))
    }

    async fn clear_served(&self, source: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let del = redis::cmd("DEL").arg(self.keys.served(source)).to_owned();
        self.run(del.query_async::<i64>(&mut conn)).await?;
        Ok(())
    }

    async fn request_wake(&self, source: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.keys.wake_request(source))
            .arg(1)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .ignore()
            .cmd("PUBLISH")
            .arg(self.keys.channel())
            .arg(subscription::wake_notice(source))
            .ignore();
        self.run(pipe.query_async::<()>(&mut conn)).await
    }

    async fn wake_requested(&self, source: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let exists = redis::cmd("EXISTS")
            .arg(self.keys.wake_request(source))
            .to_owned();
        let n: i64 = self.run(exists.query_async(&mut conn)).await?;
        Ok(n > 0)
    }

    async fn clear_wake_request(&self, source: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let del = redis::cmd("DEL")
            .arg(self.keys.wake_request(source))
            .to_owned();
        self.run(del.query_async::<i64>(&mut conn)).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        self.run(redis::cmd("PING").query_async::<()>(&mut conn))
            .await
    }

    fn subscribe(&self) -> Subscription {
        self.notices.subscribe()
    }
}

/// Reads a route the way the Ceryx proxy did: any target string (a bare `host:port`
/// gets `http://`), `enforce_https` on for "1" (or "true"), `redirect` mode only when
/// it says so exactly. Rules another tool wrote that do not read or validate are left
/// out (the host is served by its target, as in Ceryx) with a warning, and so is a wake
/// setting (requests to a sleeping backend get 502, as without one).
pub(crate) fn parse_route(
    source: &str,
    target: Value,
    settings: Value,
    rules: Value,
    wake: Value,
) -> Result<Option<Route>, StoreError> {
    let Some(target): Option<String> =
        redis::from_redis_value(target).map_err(redis::RedisError::from)?
    else {
        return Ok(None);
    };
    let hash: HashMap<String, String> =
        redis::from_redis_value(settings).map_err(redis::RedisError::from)?;
    let path = |field: &str| hash.get(field).filter(|p| !p.trim().is_empty()).cloned();
    let settings = Settings {
        enforce_https: matches!(
            hash.get("enforce_https").map(String::as_str),
            Some("1" | "true")
        ),
        mode: match hash.get("mode").map(String::as_str) {
            Some("redirect") => Mode::Redirect,
            _ => Mode::Proxy,
        },
        certificate_path: path("certificate_path"),
        key_path: path("key_path"),
    };
    let rules: Option<String> = redis::from_redis_value(rules).map_err(redis::RedisError::from)?;
    let rules = rules.map_or_else(Vec::new, |json| {
        serde_json::from_str::<Vec<Rule>>(&json)
            .map_err(|e| e.to_string())
            .and_then(|rules| validate(&rules, Backends::Stored).map(|()| rules).map_err(|e| e.to_string()))
            .unwrap_or_else(|error| {
                tracing::warn!(%source, %error, "stored rules unreadable: serving the target alone");
                Vec::new()
            })
    });
    let wake: Option<String> = redis::from_redis_value(wake).map_err(redis::RedisError::from)?;
    let wake = wake.and_then(|json| {
        serde_json::from_str::<Wake>(&json)
            .map_err(|e| e.to_string())
            .and_then(|mut wake| {
                wake::validate(&mut wake)
                    .map(|()| wake)
                    .map_err(|e| e.to_string())
            })
            .inspect_err(|error| {
                tracing::warn!(%source, %error, "stored wake setting unreadable: left out");
            })
            .ok()
    });
    Ok(Some(Route {
        source: source.to_owned(),
        target: normalize_target(&target),
        settings,
        rules,
        wake: wake.map(Box::new),
    }))
}

/// Reads a stored certificate (a hash: `certificate`, `key`). One that another tool
/// wrote and that does not read as text is left out with a warning: the host is served
/// the default, as for a certificate that does not parse.
fn parse_certificate(source: &str, hash: Value) -> Option<CertificatePem> {
    let mut hash: HashMap<String, String> = redis::from_redis_value(hash)
        .inspect_err(
            |error| tracing::warn!(%source, %error, "stored certificate unreadable: left out"),
        )
        .ok()?;
    Some(CertificatePem {
        certificate: hash.remove("certificate")?,
        key: hash.remove("key")?,
    })
}

/// Escapes Redis glob characters, so a prefix is matched literally by SCAN.
fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
