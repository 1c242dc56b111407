//! The route model: a public host name (`source`) mapped to a `target` URL, with Ceryx's
//! settings, plus the host normalisation the proxy and the stores share.

pub mod rules;
pub mod wake;

pub use rules::Rule;
use serde::{Deserialize, Serialize};
pub use wake::{Strategy, Wake};

/// Ceryx's catch-all source: the target for any host that has no route of its own.
pub const WILDCARD: &str = "$wildcard";

/// Longest host name DNS allows.
const MAX_HOST_LEN: usize = 253;

/// The target of a host served by its rules alone (the controller writes it for hosts
/// of Ingresses and HTTPRoutes): `.invalid` never resolves (RFC 6761), and the proxy
/// answers a request no rule takes with 404 instead of trying it.
pub const UNROUTED: &str = "http://unrouted.invalid";

/// Whether `target` is [`UNROUTED`].
pub(crate) fn is_unrouted(target: &str) -> bool {
    target == UNROUTED
}

/// One route, in the JSON shape of Ceryx 0.6+.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Public host name: an exact name, a `*.suffix` pattern or [`WILDCARD`].
    pub source: String,
    /// Where requests go (or are redirected to); always carries a scheme.
    pub target: String,
    /// Per-route behaviour.
    #[serde(default)]
    pub settings: Settings,
    /// Routing rules (ours; left out when empty, so old clients see what they saw).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// How to wake the backend when it is asleep (ours; left out when unset). Boxed:
    /// few routes have one, and every cached route carries the field (128 bytes inline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake: Option<Box<Wake>>,
}

/// Ceryx's per-route settings (the `<prefix>:settings:<source>` hash).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Answer plain-HTTP requests with a 301 to the same URL on `https://`.
    #[serde(default)]
    pub enforce_https: bool,
    /// Proxy to the target, or redirect to it.
    #[serde(default)]
    pub mode: Mode,
    /// PEM certificate file for this host's TLS, on the proxy's filesystem.
    #[serde(default)]
    pub certificate_path: Option<String>,
    /// PEM private key file matching `certificate_path`.
    #[serde(default)]
    pub key_path: Option<String>,
}

/// What the proxy does with a request for a route.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Forward the request to the target.
    #[default]
    Proxy,
    /// Answer 301 with the target plus the request URI.
    Redirect,
}

impl Mode {
    /// The value stored in Redis and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Proxy => "proxy",
            Mode::Redirect => "redirect",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = RouteError;

    /// The words [`Mode::as_str`] gives, exactly.
    fn from_str(s: &str) -> Result<Mode, RouteError> {
        match s {
            "proxy" => Ok(Mode::Proxy),
            "redirect" => Ok(Mode::Redirect),
            _ => Err(RouteError::InvalidMode(s.to_owned())),
        }
    }
}

/// Why a route (or one of its fields) was refused. The message describes the value;
/// [`RouteError::field`] says which field it was, so that each caller can name it in
/// its own terms (an API error key, a CeryxRoute's `spec.` path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The source is not a host name, `*.suffix` pattern or `$wildcard`.
    #[error("{0:?} is not a host name, a *.suffix pattern or $wildcard")]
    InvalidSource(String),
    /// The target (as normalised) is not an http(s) URL with a host and a valid port.
    #[error("{0:?} is not an http:// or https:// URL with a host and a port from 1 to 65535")]
    InvalidTarget(String),
    /// The mode is not one of [`Mode`]'s words.
    #[error("{0:?} is not a mode (proxy or redirect)")]
    InvalidMode(String),
}

/// A field of a route, as [`RouteError::field`] names it (an enum, so that a caller
/// mapping fields to its own names misses none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// [`Route::source`].
    Source,
    /// [`Route::target`].
    Target,
    /// [`Settings::mode`].
    Mode,
}

impl RouteError {
    /// The route field the error is about.
    pub fn field(&self) -> Field {
        match self {
            RouteError::InvalidSource(_) => Field::Source,
            RouteError::InvalidTarget(_) => Field::Target,
            RouteError::InvalidMode(_) => Field::Mode,
        }
    }
}

impl Route {
    /// Builds a validated route: the source is normalised like a request host, the
    /// target gets `http://` when it has no scheme. The REST API checks each field with
    /// the same functions ([`normalize_source`], [`validate_target`]), to report every
    /// bad one at once.
    pub fn new(source: &str, target: &str, settings: Settings) -> Result<Route, RouteError> {
        Ok(Route {
            source: normalize_source(source)?,
            target: validate_target(target)?,
            settings,
            rules: Vec::new(),
            wake: None,
        })
    }
}

/// Lower-cases a source and checks it is a host name, `*.suffix` or `$wildcard`.
pub fn normalize_source(source: &str) -> Result<String, RouteError> {
    let trimmed = source.trim();
    if trimmed == WILDCARD {
        return Ok(WILDCARD.to_owned());
    }
    let invalid = || RouteError::InvalidSource(source.to_owned());
    let lower = trimmed.trim_end_matches('.').to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    if lower.len() > MAX_HOST_LEN || !is_host_name(name) {
        return Err(invalid());
    }
    Ok(lower)
}

/// Ceryx's scheme rule: a target without `http://` or `https://` is taken as `http://`.
pub fn normalize_target(target: &str) -> String {
    let target = target.trim();
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    // `concat`, not `format!`: no spare capacity in a string every cached route keeps.
    if lower.starts_with("http://") {
        ["http://", &target[7..]].concat()
    } else if lower.starts_with("https://") {
        ["https://", &target[8..]].concat()
    } else {
        ["http://", target].concat()
    }
}

/// A target normalised by [`normalize_target`] and checked to be one the proxy can
/// forward to (or redirect to).
pub fn validate_target(target: &str) -> Result<String, RouteError> {
    let target = normalize_target(target);
    Upstream::parse(&target)?;
    Ok(target)
}

/// The host a request is for: lower-cased, without port or trailing dot.
///
/// Returns `None` for anything that is not a plausible host (empty, bad characters,
/// malformed port), so the proxy can answer 400 instead of looking it up.
pub fn normalize_host(raw: &str) -> Option<String> {
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: `[::1]` or `[::1]:8080`.
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        if !after.is_empty() && !is_port(after.strip_prefix(':')?) {
            return None;
        }
        let addr = &rest[..end];
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        return Some(format!("[{}]", addr.to_ascii_lowercase()));
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() > MAX_HOST_LEN || !is_host_name(host) {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Letters, digits, `-`, `_` in non-empty dot-separated labels. `_` is not valid DNS but
/// appears in real service names, and Ceryx accepted any string.
fn is_host_name(name: &str) -> bool {
    // One pass over the bytes: every request's Host goes through here.
    let mut label = 0;
    for b in name.bytes() {
        if b == b'.' {
            if label == 0 {
                return false;
            }
            label = 0;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            label += 1;
            if label > 63 {
                return false;
            }
        } else {
            return false;
        }
    }
    label > 0
}

/// A URI host without the brackets of an IPv6 literal (`[::1]` → `::1`), as sockets and
/// address parsers take it.
pub(crate) fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// A target's host: a host name (as [`is_host_name`] takes it, an optional trailing dot
/// allowed) or an IP address, IPv6 in brackets.
fn is_target_host(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            let name = host.strip_suffix('.').unwrap_or(host);
            name.len() <= MAX_HOST_LEN && is_host_name(name)
        }
    }
}

/// A target split for forwarding: `scheme://authority` and a path prefix without its
/// trailing `/`, so the request URI can be appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// Host and optional port of the upstream.
    pub authority: http::uri::Authority,
    /// Path of the target with one trailing `/` removed; empty for the root (a
    /// `Box<str>`: every cached route keeps one, most of them empty).
    pub prefix: Box<str>,
}

impl Upstream {
    /// Parses a target URL (normalised by [`normalize_target`] first); the error is
    /// [`RouteError::InvalidTarget`].
    pub fn parse(target: &str) -> Result<Upstream, RouteError> {
        let target = normalize_target(target);
        let invalid = || RouteError::InvalidTarget(target.clone());
        let uri: http::Uri = target.parse().map_err(|_| invalid())?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(invalid());
        };
        let a = authority.as_str();
        // Rejects user info, an empty port and `http://ftp://x` (a foreign scheme that
        // got `http://` prepended).
        if a.contains('@') || uri.path().starts_with("//") || !is_target_host(authority.host()) {
            return Err(invalid());
        }
        // A port, when given, is a number from 1 to 65535: `javascript:alert(1)` and
        // `data:text/plain,hi` (taken as `host:port`) fail here, as do 99999 and -1.
        if a.len() > authority.host().len() && authority.port_u16().is_none_or(|p| p == 0) {
            return Err(invalid());
        }
        let path = uri.path();
        let prefix = path.strip_suffix('/').unwrap_or(path).into();
        Ok(Upstream {
            scheme,
            authority,
            prefix,
        })
    }

    /// The port connected to: the target's, else its scheme's default.
    pub fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.scheme == http::uri::Scheme::HTTPS {
                443
            } else {
                80
            })
    }

    /// The absolute URI to send upstream for a request's path and query.
    pub fn uri_for(&self, path_and_query: &str) -> Result<http::Uri, http::Error> {
        let mut path = String::with_capacity(self.prefix.len() + path_and_query.len());
        path.push_str(&self.prefix);
        path.push_str(path_and_query);
        if path.is_empty() {
            path.push('/');
        }
        http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
    }
}

/// Ceryx's redirect target: the target (normalised, as stored) with one trailing `/`
/// dropped, plus the request URI.
pub fn redirect_location(target: &str, path_and_query: &str) -> String {
    let base = target.strip_suffix('/').unwrap_or(target);
    format!("{base}{path_and_query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_lower_cased_without_port_or_trailing_dot() {
        assert_eq!(
            normalize_host("Example.COM:8080").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            normalize_host("example.com.").as_deref(),
            Some("example.com")
        );
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("a_b.svc").as_deref(), Some("a_b.svc"));
        for bad in [
            "",
            ":80",
            "a..b",
            "a b",
            "a:b",
            "exa/mple",
            "[::1",
            "[zz]",
            "a.com:99999x",
        ] {
            assert_eq!(normalize_host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn targets_get_http_when_they_have_no_scheme() {
        assert_eq!(normalize_target("api:5555"), "http://api:5555");
        assert_eq!(normalize_target(" https://x/ "), "https://x/");
        assert_eq!(normalize_target("HTTP://x"), "http://x");
    }

    #[test]
    fn target_path_is_a_prefix_of_the_request_uri() {
        let up = Upstream::parse("http://b:1/x/").unwrap();
        assert_eq!(up.uri_for("/y?z").unwrap(), "http://b:1/x/y?z");
        let root = Upstream::parse("b:1").unwrap();
        assert_eq!(root.uri_for("/").unwrap(), "http://b:1/");
        assert_eq!(
            redirect_location("http://api:5555/api/routes", "/some/path/?some=args"),
            "http://api:5555/api/routes/some/path/?some=args"
        );
    }

    #[test]
    fn sources_are_validated() {
        assert_eq!(normalize_source("*.Example.com").unwrap(), "*.example.com");
        assert_eq!(normalize_source("$wildcard").unwrap(), "$wildcard");
        assert!(normalize_source("a*.example.com").is_err());
        assert!(normalize_source("").is_err());
        assert!(Route::new("a.com", "ftp://x", Settings::default()).is_err());
        assert!(Route::new("a.com", "http://", Settings::default()).is_err());
    }

    #[test]
    fn each_refusal_names_its_field_and_value() {
        let source = Route::new("a b", "x", Settings::default()).unwrap_err();
        assert_eq!(source, RouteError::InvalidSource("a b".into()));
        assert_eq!(source.field(), Field::Source);
        let target = Route::new("a.com", "ftp://x", Settings::default()).unwrap_err();
        // The value as normalised: what the proxy would have been given.
        assert_eq!(target, RouteError::InvalidTarget("http://ftp://x".into()));
        assert_eq!(target.field(), Field::Target);
        assert_eq!(
            Upstream::parse("http://u@x"),
            Err(RouteError::InvalidTarget("http://u@x".into()))
        );
        assert_eq!(validate_target(" b:1 ").unwrap(), "http://b:1");
        // Issue 18, item 14: what was stored as `http://javascript:alert(1)` and so on.
        for not_a_target in [
            "javascript:alert(1)",
            "data:text/plain,hi",
            "http://b:99999",
            "http://b:-1",
            "http://b:0",
            "http://b:",
            "http://a b",
            "http://[zz]:80",
            "http://%41:80",
        ] {
            assert!(validate_target(not_a_target).is_err(), "{not_a_target}");
        }
        for target in [
            "http://[::1]:8080/x",
            "10.0.0.1:65535",
            "https://svc.ns.svc.",
            "a_b:1",
        ] {
            assert!(validate_target(target).is_ok(), "{target}");
        }
        assert_eq!(Upstream::parse("https://x").unwrap().port(), 443);
        assert_eq!(Upstream::parse("x").unwrap().port(), 80);
        assert_eq!(Upstream::parse("x:81").unwrap().port(), 81);
        assert_eq!("redirect".parse(), Ok(Mode::Redirect));
        let mode = "Proxy".parse::<Mode>().unwrap_err();
        assert_eq!(mode.field(), Field::Mode);
        assert_eq!(
            mode.to_string(),
            r#""Proxy" is not a mode (proxy or redirect)"#
        );
    }
}
