//! Settings from command-line flags and `CERYX_*` environment variables (every flag has
//! both), with the original Ceryx names and defaults.

use crate::proxy;
use crate::route::rules::parse_size;
use crate::store::RedisConfig;
use clap::Args;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

/// Where routes are stored.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Redis URL (`redis://` or `rediss://`), instead of host and port
    /// (`CERYX_REDIS_PASSWORD` applies when the URL carries none).
    #[arg(long, env = "CERYX_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Redis host. Without it (or a URL) routes live in memory, in this process only.
    #[arg(long, env = "CERYX_REDIS_HOST")]
    pub redis_host: Option<String>,
    /// Redis port.
    #[arg(long, env = "CERYX_REDIS_PORT", default_value_t = 6379)]
    pub redis_port: u16,
    /// Redis password (AUTH).
    #[arg(long, env = "CERYX_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// Prefix of every Redis key.
    #[arg(long, env = "CERYX_REDIS_PREFIX", default_value = "ceryx")]
    pub redis_prefix: String,
    /// Redis connect and command timeout; a bare number is milliseconds. Also how long a
    /// write waits for replicas to confirm it (see `CERYX_REDIS_WAIT_REPLICAS`).
    #[arg(long, env = "CERYX_REDIS_TIMEOUT", default_value = "100", value_parser = millis)]
    pub redis_timeout: Duration,
    /// Redis Sentinel addresses (comma-separated `host:port`): the primary is the one they
    /// name, followed across failovers; host, port (and a URL's host) are then ignored.
    #[arg(long, env = "CERYX_REDIS_SENTINELS", value_delimiter = ',')]
    pub redis_sentinels: Vec<String>,
    /// The master name the sentinels monitor.
    #[arg(long, env = "CERYX_REDIS_SENTINEL_MASTER", default_value = "mymaster")]
    pub redis_sentinel_master: String,
    /// Password of the sentinels themselves (the primary's is `CERYX_REDIS_PASSWORD`).
    #[arg(long, env = "CERYX_REDIS_SENTINEL_PASSWORD", hide_env_values = true)]
    pub redis_sentinel_password: Option<String>,
    /// Replicas that must confirm a route write (Redis `WAIT`, bounded by
    /// `CERYX_REDIS_TIMEOUT`) before it is acknowledged; 1 with sentinels, 0 without.
    #[arg(long, env = "CERYX_REDIS_WAIT_REPLICAS")]
    pub redis_wait_replicas: Option<usize>,
}

impl StoreArgs {
    /// The Redis settings, or `None` for the embedded in-memory store.
    pub fn redis(&self) -> Option<RedisConfig> {
        // An empty variable (as compose files often pass) counts as unset.
        let set = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        let (url, host) = (set(&self.redis_url), set(&self.redis_host));
        let sentinels: Vec<String> = self
            .redis_sentinels
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if url.is_none() && host.is_none() && sentinels.is_empty() {
            return None;
        }
        // With sentinels the primary has replicas: a write is acknowledged once one of
        // them has it, so a failover keeps it.
        let wait_replicas =
            self.redis_wait_replicas
                .unwrap_or(if sentinels.is_empty() { 0 } else { 1 });
        Some(RedisConfig {
            url,
            host: host.unwrap_or_else(|| "127.0.0.1".into()),
            port: self.redis_port,
            password: self.redis_password.clone().filter(|p| !p.is_empty()),
            prefix: self.redis_prefix.clone(),
            timeout: self.redis_timeout,
            sentinels,
            sentinel_master: self.redis_sentinel_master.clone(),
            sentinel_password: self
                .redis_sentinel_password
                .clone()
                .filter(|p| !p.is_empty()),
            wait_replicas,
        })
    }
}

/// Where the REST API listens and who may call it.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// REST API listen address. Loopback by default: without a token, anyone who can
    /// reach the API can reroute every host.
    #[arg(long, env = "CERYX_API_ADDR", default_value = "127.0.0.1:5555")]
    pub api_addr: SocketAddr,
    /// Bearer token every API call (but the health probes) must carry.
    #[arg(long, env = "CERYX_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
}

/// How the proxy's and the REST API's listening sockets are made.
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Connections the kernel queues on each listener (proxy HTTP and HTTPS, REST API)
    /// until they are accepted: the `listen(2)` backlog, capped by the kernel at
    /// `net.core.somaxconn`.
    #[arg(long, env = "CERYX_LISTEN_BACKLOG", default_value_t = DEFAULT_BACKLOG, value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub listen_backlog: u32,
}

/// The default `CERYX_LISTEN_BACKLOG`: deeper than nginx's 511, as deep as Linux allows
/// by default (`net.core.somaxconn` is 4096 since 5.4; Envoy and Go listen with
/// somaxconn itself). A burst that arrives while the process is paused or busy waits in
/// the queue instead of losing its SYN and retrying a second later (128, the old value,
/// left 271 of 400 connects waiting 1 s); a queued connection costs kernel memory only
/// while it waits.
pub const DEFAULT_BACKLOG: u32 = 4096;

/// The ops listener (probes and metrics) of processes without the REST API, and where
/// metrics go besides.
#[derive(Debug, Clone, Args)]
pub struct OpsArgs {
    /// StatsD server (`host:port`, UDP) that receives every metric too; off when unset.
    #[arg(long, env = "CERYX_STATSD_ADDR")]
    pub statsd_addr: Option<String>,
    /// Address for `/healthz`, `/readyz` (and metrics) apart from the REST API, for
    /// probes of proxy-only and controller pods; off when unset.
    #[arg(long, env = "CERYX_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// What the Kubernetes controller takes and how it names Services.
#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    /// The `spec.ingressClassName` this controller takes (resources without one count
    /// as `ceryx`).
    #[arg(long, env = "CERYX_INGRESS_CLASS", default_value = "ceryx", value_parser = class_name)]
    pub ingress_class: String,
    /// Cluster DNS domain, for Service targets (`<name>.<namespace>.svc.<domain>`).
    #[arg(long, env = "CERYX_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Elect one leader among controller replicas through a Lease (turn off only for a
    /// single replica).
    #[arg(long, env = "CERYX_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub leader_election: bool,
    /// Namespace of the Lease (set it to the pod's own namespace).
    #[arg(long, env = "CERYX_LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the Lease, one per install (the chart uses `<release>-controller`).
    #[arg(long, env = "CERYX_LEASE_NAME", default_value = "ceryx-controller")]
    pub lease_name: String,
    /// This replica's name in the Lease, unique per replica; the host name (in a
    /// cluster: the pod name) by default.
    #[arg(long, env = "CERYX_LEASE_IDENTITY")]
    pub lease_identity: Option<String>,
    /// How long a Lease holds without renewal (seconds): a dead leader is replaced
    /// after this long, and a leader that could not renew for this long stops writing.
    #[arg(long, env = "CERYX_LEASE_DURATION", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_duration: u64,
    /// Which install wrote a route, recorded with its owner in the store, so that
    /// installs sharing one Redis prefix never collect each other's routes. By default
    /// the cluster's identity (the `kube-system` namespace's UID), the Lease namespace
    /// and the Lease name.
    #[arg(long, env = "CERYX_INSTALL_ID", value_parser = install_id)]
    pub install_id: Option<String>,
    /// Addresses (IPs or host names, comma-separated) where the proxies are reachable,
    /// published in the status of the Ingresses and Gateways this controller serves
    /// (for external-dns, Argo CD, `kubectl get ingress`).
    #[arg(long, env = "CERYX_PUBLISH_ADDRESS", value_delimiter = ',')]
    pub publish_address: Vec<String>,
    /// The proxies' Service, `<namespace>/<name>`: its load balancer's addresses (or
    /// external IPs) are published too.
    #[arg(long, env = "CERYX_PUBLISH_SERVICE")]
    pub publish_service: Option<String>,
    /// The `controllerName` of the GatewayClasses this controller serves (Gateway API);
    /// installs sharing a cluster each need their own.
    #[arg(
        long,
        env = "CERYX_GATEWAY_CONTROLLER_NAME",
        default_value = "ceryx.dev/gateway-controller"
    )]
    pub gateway_controller_name: String,
}

/// A class name: a DNS-1123 subdomain short enough to prefix the class's finalizer.
fn class_name(value: &str) -> Result<String, String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if value.len() > 200 || !value.split('.').all(label_ok) {
        return Err("a DNS-1123 subdomain of at most 200 characters".into());
    }
    Ok(value.to_owned())
}

/// An install identity: printable, without `@` (which separates it in an owner).
fn install_id(value: &str) -> Result<String, String> {
    if value.is_empty()
        || value.len() > 200
        || value.contains('@')
        || value.chars().any(char::is_control)
    {
        return Err("1 to 200 printable characters, no '@'".into());
    }
    Ok(value.to_owned())
}

impl ControllerArgs {
    /// The Lease identity: as configured, else this host's name.
    pub fn identity(&self) -> String {
        self.lease_identity.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| format!("ceryx-{}", std::process::id()))
        })
    }
}

/// The proxy's defaults, as [`proxy::Config::default`] writes them (the one place).
static DEFAULT: LazyLock<proxy::Config> = LazyLock::new(proxy::Config::default);

/// A default as clap shows and parses it, made once: clap keeps `&'static str`s.
macro_rules! shown {
    ($text:expr) => {{
        static TEXT: OnceLock<String> = OnceLock::new();
        TEXT.get_or_init(|| $text).as_str()
    }};
}

/// How the proxy listens, forwards and caches. Its defaults are
/// [`proxy::Config::default`]'s, shown by `--help`.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Plain-HTTP listen address.
    #[arg(long, env = "CERYX_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// HTTPS listen address (certificates chosen by SNI); empty turns HTTPS off.
    #[arg(long, env = "CERYX_HTTPS_ADDR", default_value = "0.0.0.0:8443", value_parser = maybe_addr)]
    pub https_addr: ::std::option::Option<SocketAddr>,
    /// Certificate (PEM chain) for hosts without their own; a self-signed one is made at
    /// start when unset.
    #[arg(long, env = "CERYX_SSL_DEFAULT_CERTIFICATE")]
    pub ssl_default_certificate: Option<PathBuf>,
    /// Private key (PEM) of the default certificate.
    #[arg(long, env = "CERYX_SSL_DEFAULT_KEY")]
    pub ssl_default_key: Option<PathBuf>,
    /// How long a cached route is trusted without a change notice (catches routes
    /// written straight into Redis by other tools); a bare number is seconds.
    #[arg(long, env = "CERYX_CACHE_TTL", default_value = shown!(in_seconds(DEFAULT.cache_ttl)), value_parser = seconds)]
    pub cache_ttl: Duration,
    /// Largest request body, in nginx syntax (`100m`, `512k`, `0` for no limit).
    #[arg(long, env = "CERYX_MAX_REQUEST_BODY_SIZE", default_value = shown!(in_nginx_size(DEFAULT.max_request_body_size)), value_parser = size)]
    pub max_request_body_size: u64,
    /// Peers (comma-separated CIDRs) whose `X-Forwarded-Proto` is believed.
    #[arg(long, env = "CERYX_TRUSTED_PROXIES", value_delimiter = ',', value_parser = cidr)]
    pub trusted_proxies: Vec<IpNet>,
    /// Verify the certificates of `https://` targets against the system roots.
    #[arg(long, env = "CERYX_UPSTREAM_TLS_VERIFY", default_value_t = DEFAULT.upstream_tls_verify, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub upstream_tls_verify: bool,
    /// Time to connect to a target (nginx `proxy_connect_timeout`); bare number: seconds.
    #[arg(long, env = "CERYX_UPSTREAM_CONNECT_TIMEOUT", default_value = shown!(in_seconds(DEFAULT.upstream_connect_timeout)), value_parser = seconds)]
    pub upstream_connect_timeout: Duration,
    /// Time for a target to send its response headers (nginx `proxy_read_timeout`).
    #[arg(long, env = "CERYX_UPSTREAM_RESPONSE_TIMEOUT", default_value = shown!(in_seconds(DEFAULT.upstream_response_timeout)), value_parser = seconds)]
    pub upstream_response_timeout: Duration,
    /// Time a client has to send its request headers (against slowloris).
    #[arg(long, env = "CERYX_CLIENT_HEADER_TIMEOUT", default_value = shown!(in_seconds(DEFAULT.client_header_timeout)), value_parser = seconds)]
    pub client_header_timeout: Duration,
    /// How long SIGTERM waits for in-flight requests before closing them.
    #[arg(long, env = "CERYX_SHUTDOWN_TIMEOUT", default_value = shown!(in_seconds(DEFAULT.shutdown_timeout)), value_parser = seconds)]
    pub shutdown_timeout: Duration,
    /// One JSON line per request on stdout.
    #[arg(long, env = "CERYX_ACCESS_LOG", default_value_t = DEFAULT.access_log, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub access_log: bool,
    /// Most client connections the proxy's HTTP and HTTPS listeners hold at once,
    /// together; more wait in the listen backlog. By default half of the open-file limit
    /// less 256 (each connection may hold an upstream one too); `0` is no limit.
    #[arg(long, env = "CERYX_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// HTML file browsers get while a route's backend wakes (wake strategy `page`),
    /// `{{host}}` standing for the host name; read at start. A built-in page by default.
    #[arg(long, env = "CERYX_WAKE_PAGE", value_parser = page_file)]
    pub wake_page: Option<String>,
    /// Threads serving the proxy's listeners, each with its own runtime, sockets
    /// (`SO_REUSEPORT`) and upstream connections. One per core by default.
    #[arg(long, env = "CERYX_WORKERS", default_value_t = DEFAULT.workers, value_parser = worker_count)]
    pub workers: usize,
    // Shared with the REST API's own command.
    #[command(flatten)]
    pub upstream: UpstreamArgs,
}

impl ProxyArgs {
    /// The proxy's runtime settings (listen addresses and the default certificate are
    /// the binary's own).
    pub fn config(&self) -> proxy::Config {
        proxy::Config {
            cache_ttl: self.cache_ttl,
            max_request_body_size: self.max_request_body_size,
            trusted_proxies: self.trusted_proxies.clone(),
            upstream_tls_verify: self.upstream_tls_verify,
            upstream_connect_timeout: self.upstream_connect_timeout,
            upstream_response_timeout: self.upstream_response_timeout,
            client_header_timeout: self.client_header_timeout,
            shutdown_timeout: self.shutdown_timeout,
            access_log: self.access_log,
            max_connections: self.max_connections,
            upstream_deny: self.upstream.upstream_deny.0.clone(),
            wake_page: self.wake_page.clone(),
            workers: self.workers,
        }
    }
}

/// A number of worker threads: at least one.
fn worker_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number of threads from 1 to 1024")),
    }
}

/// The content of a page template file: read at start, so a missing file stops it.
fn page_file(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// Which upstream addresses are off limits, read by the proxy (which never connects
/// there) and the REST API (which refuses such targets).
#[derive(Debug, Clone, Args)]
pub struct UpstreamArgs {
    /// Addresses (comma-separated CIDRs) the proxy never connects to, whatever a route
    /// says: by default the link-local ranges where cloud metadata services answer; empty
    /// allows every address.
    #[arg(long, env = "CERYX_UPSTREAM_DENY", default_value = shown!(cidrs_shown(&DEFAULT.upstream_deny)), value_parser = cidr_list)]
    pub upstream_deny: CidrList,
}

/// A comma-separated list of CIDR ranges, possibly empty.
#[derive(Debug, Clone, PartialEq)]
pub struct CidrList(pub Vec<IpNet>);

/// A duration as [`seconds`] reads it: a bare number of seconds when whole.
fn in_seconds(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => d.as_secs().to_string(),
        _ => format!("{}ms", d.as_millis()),
    }
}

/// A size as [`size`] reads it: with the largest suffix that keeps it exact.
fn in_nginx_size(bytes: u64) -> String {
    let unit = [(30, 'g'), (20, 'm'), (10, 'k')]
        .into_iter()
        .find(|(shift, _)| bytes != 0 && bytes.trailing_zeros() >= *shift);
    match unit {
        Some((shift, suffix)) => format!("{}{suffix}", bytes >> shift),
        None => bytes.to_string(),
    }
}

/// Parses a duration: `250ms`, `5s`, `2m`, or a bare number in `unit`.
fn duration(value: &str, unit: Duration) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration like 500ms, 5s or 2m"))?;
    let unit = match suffix {
        "" => unit,
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        _ => return Err(format!("{value:?}: unit must be ms, s or m")),
    };
    Ok(unit * u32::try_from(n).map_err(|_| format!("{value:?} is too large"))?)
}

fn seconds(value: &str) -> Result<Duration, String> {
    duration(value, Duration::from_secs(1))
}

fn millis(value: &str) -> Result<Duration, String> {
    duration(value, Duration::from_millis(1))
}

/// A size in nginx syntax ([`parse_size`]).
pub fn size(value: &str) -> Result<u64, String> {
    parse_size(value)
}

fn cidr(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{value:?} is not an IP address or CIDR range"))
}

/// CIDR ranges as [`cidr_list`] reads them.
fn cidrs_shown(nets: &[IpNet]) -> String {
    nets.iter()
        .map(IpNet::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Comma-separated CIDRs (or addresses); empty for none.
fn cidr_list(value: &str) -> Result<CidrList, String> {
    value
        .split(',')
        .filter(|v| !v.trim().is_empty())
        .map(cidr)
        .collect::<Result<_, _>>()
        .map(CidrList)
}

/// A listen address, or `None` for an empty value (the listener is off).
fn maybe_addr(value: &str) -> Result<Option<SocketAddr>, String> {
    match value.trim() {
        "" => Ok(None),
        addr => addr
            .parse()
            .map(Some)
            .map_err(|e| format!("{addr:?} is not an address (host:port): {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_nginx_syntax() {
        assert_eq!(size("100m"), Ok(100 << 20));
        assert_eq!(size("512K"), Ok(512 << 10));
        assert_eq!(size("0"), Ok(0));
        assert!(size("lots").is_err());
        assert!(size("99999999999g").is_err());
    }

    #[test]
    fn durations_take_units_or_a_default_unit() {
        assert_eq!(seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(millis("100"), Ok(Duration::from_millis(100)));
        assert_eq!(seconds("250ms"), Ok(Duration::from_millis(250)));
        assert!(seconds("5h").is_err());
    }

    #[test]
    fn sentinels_name_the_primary_and_writes_then_wait_for_a_replica() {
        #[derive(clap::Parser)]
        struct Store {
            #[command(flatten)]
            store: StoreArgs,
        }
        let parse = |args: &[&str]| {
            <Store as clap::Parser>::try_parse_from([&["ceryx"], args].concat())
                .unwrap()
                .store
                .redis()
        };
        let redis = parse(&[
            "--redis-sentinels",
            "s1:26379, s2:26379,",
            "--redis-sentinel-master",
            "routes",
        ])
        .unwrap();
        assert_eq!(redis.sentinels, ["s1:26379", "s2:26379"]);
        assert_eq!(redis.sentinel_master, "routes");
        assert_eq!(redis.wait_replicas, 1);
        let redis = parse(&["--redis-sentinels", "s1", "--redis-wait-replicas", "0"]).unwrap();
        assert_eq!(
            (redis.sentinel_master.as_str(), redis.wait_replicas),
            ("mymaster", 0)
        );
        assert_eq!(parse(&["--redis-host", "r"]).unwrap().wait_replicas, 0);
        assert!(parse(&[]).is_none());
    }

    #[test]
    fn trusted_proxies_match_by_cidr() {
        let config = proxy::Config {
            trusted_proxies: vec![cidr("10.0.0.0/8").unwrap(), cidr("::1").unwrap()],
            ..proxy::Config::default()
        };
        assert!(config.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(config.is_trusted("::1".parse().unwrap()));
        assert!(!config.is_trusted("127.0.0.1".parse().unwrap()));
    }

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        proxy: ProxyArgs,
    }

    #[test]
    fn no_flags_give_the_default_config() {
        use clap::{CommandFactory, FromArgMatches};
        // Flags, not the environment: this process's own CERYX_* variables do not count.
        let command = Flags::command().mut_args(|arg| arg.env(None::<&str>));
        let flags = Flags::from_arg_matches(&command.get_matches_from(["ceryx"])).unwrap();
        assert_eq!(flags.proxy.config(), proxy::Config::default());
        assert_eq!(
            flags.proxy.http_addr,
            SocketAddr::from(([0, 0, 0, 0], 8080))
        );
        assert_eq!(
            flags.proxy.https_addr,
            Some(SocketAddr::from(([0, 0, 0, 0], 8443)))
        );
    }

    #[test]
    fn the_deny_list_reads_cidrs_or_nothing() {
        let default = cidrs_shown(&DEFAULT.upstream_deny);
        assert_eq!(cidr_list(&default).unwrap().0, DEFAULT.upstream_deny);
        assert_eq!(cidr_list(" ").unwrap().0, vec![]);
        assert_eq!(
            cidr_list("10.0.0.0/8, 1.2.3.4").unwrap().0,
            vec![cidr("10.0.0.0/8").unwrap(), cidr("1.2.3.4/32").unwrap()]
        );
        assert!(cidr_list("10.0.0.0/8,nope").is_err());
    }

    #[test]
    fn defaults_are_shown_as_they_are_read() {
        assert_eq!(in_seconds(Duration::from_secs(5)), "5");
        assert_eq!(
            seconds(&in_seconds(Duration::from_millis(250))),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(in_nginx_size(100 << 20), "100m");
        assert_eq!(in_nginx_size(0), "0");
        assert_eq!(size(&in_nginx_size(1000)), Ok(1000));
    }
}
