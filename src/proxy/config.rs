//! The proxy's runtime settings: plain values, built from the command line in one place
//! (`crate::config::ProxyArgs::config`), whose defaults are these.

use ipnet::IpNet;
use std::net::IpAddr;
use std::time::Duration;

/// How the proxy forwards, caches, times out and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// How long a cached route is trusted without a change notice.
    pub cache_ttl: Duration,
    /// Largest request body in bytes, 0 for no limit.
    pub max_request_body_size: u64,
    /// Peers whose `X-Forwarded-Proto` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Verify the certificates of `https://` targets against the system roots.
    pub upstream_tls_verify: bool,
    /// Time to connect to a target.
    pub upstream_connect_timeout: Duration,
    /// Time for a target to send its response headers.
    pub upstream_response_timeout: Duration,
    /// Time a client has to send its request headers (or its TLS handshake).
    pub client_header_timeout: Duration,
    /// How long shutdown waits for in-flight requests and tunnels before closing them.
    pub shutdown_timeout: Duration,
    /// One JSON line per request on stdout.
    pub access_log: bool,
    /// Most client connections the proxy's listeners hold at once, together (more wait
    /// in the listen backlog); `None` derives it from the open-file limit, `Some(0)` is
    /// no limit.
    pub max_connections: Option<usize>,
    /// Addresses the proxy never connects to (`CERYX_UPSTREAM_DENY`).
    pub upstream_deny: Vec<IpNet>,
    /// The page browsers get while a route's backend wakes (strategy `page`), with
    /// `{{host}}` for the host; `None` for the built-in one (`CERYX_WAKE_PAGE`).
    pub wake_page: Option<String>,
    /// Threads serving the listeners, each with its own runtime, sockets and upstream
    /// connections (`CERYX_WORKERS`); one per core by default.
    pub workers: usize,
}

impl Default for Config {
    /// What the binary uses with no flags or environment (its `--help` shows these).
    fn default() -> Config {
        Config {
            cache_ttl: Duration::from_secs(5),
            max_request_body_size: 100 << 20,
            trusted_proxies: Vec::new(),
            upstream_tls_verify: true,
            upstream_connect_timeout: Duration::from_secs(60),
            upstream_response_timeout: Duration::from_secs(60),
            client_header_timeout: Duration::from_secs(15),
            shutdown_timeout: Duration::from_secs(30),
            access_log: true,
            max_connections: None,
            upstream_deny: crate::targets::DEFAULT_DENY.to_vec(),
            wake_page: None,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

impl Config {
    /// Whether `ip` is one of the trusted proxies.
    pub(crate) fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}
