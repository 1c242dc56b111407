//! A host's rules made ready to serve, once per route change: every (rule, match) pair
//! in Gateway API precedence order (exact path, then the longest prefix, then method,
//! then most headers, then most query parameters; rule order breaks ties), regular
//! expressions compiled, filters and backends resolved. Per request: the first pair
//! that matches picks the rule, whose filters and weighted backends apply.

use super::endpoints::{EndpointSet, OutlierConfig};
use super::health::HealthCheck;
use super::retry_budget::RetryBudget;
use super::scheme::Scheme;
use crate::route::Upstream;
use crate::route::rules::{
    self, BackendRef, FilterType, HeaderModifier, PathMatchType, PathModifier, PathModifierType,
    Rule, ValueMatchType, parse_duration,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use regex::Regex;
use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

/// Wait before a first retry when the rule names none.
const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);

/// A host's compiled rules.
#[derive(Debug)]
pub(crate) struct RuleTable {
    /// (rule, match) pairs, in precedence order.
    entries: Vec<Entry>,
    rules: Vec<CompiledRule>,
}

/// One match of one rule.
#[derive(Debug)]
struct Entry {
    rule: usize,
    path: PathCond,
    method: Option<Method>,
    headers: Vec<(HeaderName, Cond)>,
    query: Vec<(String, Cond)>,
}

#[derive(Debug)]
enum PathCond {
    Exact(String),
    /// Without its trailing `/` (`/` itself is the empty prefix: every path).
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
enum Cond {
    Exact(String),
    Regex(Regex),
}

impl Cond {
    fn new(kind: ValueMatchType, value: &str) -> Option<Cond> {
        Some(match kind {
            ValueMatchType::Exact => Cond::Exact(value.to_owned()),
            ValueMatchType::RegularExpression => Cond::Regex(rules::regex(value).ok()?),
        })
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Cond::Exact(expected) => value == expected,
            Cond::Regex(regex) => regex.is_match(value),
        }
    }
}

/// A rule ready to apply.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    request_headers: Vec<HeaderModifier>,
    response_headers: Vec<HeaderModifier>,
    redirect: Option<rules::RequestRedirect>,
    rewrite: Option<rules::UrlRewrite>,
    mirrors: Vec<Backend>,
    backends: Vec<Backend>,
    total_weight: u64,
    /// The whole exchange, up to the response head.
    pub(crate) request_timeout: Option<Duration>,
    /// One attempt, up to the response head.
    pub(crate) attempt_timeout: Option<Duration>,
    /// Largest request body (0: none), when the rule sets its own.
    pub(crate) max_body: Option<u64>,
    /// Retries of failed attempts.
    pub(crate) retry: Option<RetryPolicy>,
}

/// A rule's retries, compiled.
#[derive(Debug)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub(crate) attempts: u32,
    /// Statuses retried (for requests that can be sent again safely).
    pub(crate) codes: Vec<StatusCode>,
    /// Wait before the first retry, doubled for each next one.
    pub(crate) backoff: Duration,
    /// Retries allowed as a share of the rule's requests, so that retries cannot
    /// multiply an outage.
    pub(crate) budget: RetryBudget,
}

/// One backend's endpoints and share of the traffic.
#[derive(Debug)]
struct Backend {
    weight: u64,
    endpoints: Arc<EndpointSet>,
    /// The Kubernetes Service it was resolved from, when that has no ready endpoint
    /// (then `endpoints` is empty).
    unready: Option<String>,
}

impl Backend {
    /// The backend's endpoint set, with its health check running while the set lives.
    fn new(backend: &BackendRef) -> Backend {
        let endpoints =
            EndpointSet::new(rules::backend_upstreams(backend), OutlierConfig::default());
        if let Some(check) = &backend.health_check {
            let defaults = HealthCheck::default();
            let duration = |v: &Option<String>, default| {
                v.as_deref().and_then(parse_duration).unwrap_or(default)
            };
            let check = HealthCheck {
                path: check.path.clone().unwrap_or(defaults.path),
                interval: duration(&check.interval, defaults.interval),
                timeout: duration(&check.timeout, defaults.timeout),
                unhealthy_threshold: check
                    .unhealthy_threshold
                    .unwrap_or(defaults.unhealthy_threshold),
                healthy_threshold: check
                    .healthy_threshold
                    .unwrap_or(defaults.healthy_threshold),
            };
            if let Err(error) = check.spawn(&endpoints) {
                tracing::warn!(%error, "health check not started");
            }
        }
        let unready = backend
            .service
            .as_ref()
            .filter(|_| backend.endpoints.is_empty())
            .map(|s| match &s.namespace {
                Some(namespace) => format!("{namespace}/{}", s.name),
                None => s.name.clone(),
            });
        Backend {
            weight: u64::from(backend.weight()),
            endpoints,
            unready,
        }
    }
}

/// Where a rule sends a request.
pub(crate) enum Destination<'a> {
    /// The host's own target (a rule without backends, or no rule matched).
    Target,
    /// One of the rule's backends: the forwarder picks its endpoint.
    Backend(&'a Arc<EndpointSet>),
    /// Every backend has weight 0, or none can be used: 500, as the Gateway API says.
    Unavailable,
    /// The backend is a Kubernetes Service with no ready endpoint (named): 503.
    NoEndpoints(&'a str),
}

/// What a matching rule decided for a request.
pub(crate) enum Decision<'a> {
    /// Answer with this redirect.
    Redirect(StatusCode, String),
    /// Forward, after the rule's request changes were made.
    Forward(&'a CompiledRule, Destination<'a>),
}

impl RuleTable {
    /// Compiles validated rules (anything that does not compile is left out, with a
    /// warning: the store only holds validated rules).
    pub(crate) fn new(source: &str, rules: &[Rule]) -> RuleTable {
        let mut entries = Vec::new();
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            compiled.push(CompiledRule::new(rule));
            let default = [rules::Match::default()];
            let matches = if rule.matches.is_empty() {
                &default[..]
            } else {
                &rule.matches
            };
            for matched in matches {
                match Entry::new(index, matched) {
                    Some(entry) => entries.push(entry),
                    None => {
                        tracing::warn!(%source, rule = index, "a match does not compile: left out")
                    }
                }
            }
        }
        // Stable: equal keys keep rule order.
        entries.sort_by_key(|e| {
            let (class, len) = match &e.path {
                PathCond::Exact(p) => (0, p.len()),
                PathCond::Prefix(p) => (1, p.len()),
                PathCond::Regex(r) => (2, r.as_str().len()),
            };
            (
                class,
                Reverse(len),
                e.method.is_none(),
                Reverse(e.headers.len()),
                Reverse(e.query.len()),
            )
        });
        RuleTable {
            entries,
            rules: compiled,
        }
    }

    /// The rule for `req`, and the path prefix its match took (for `ReplacePrefixMatch`).
    fn select<B>(&self, req: &Request<B>) -> Option<(&CompiledRule, &Entry)> {
        let path = req.uri().path();
        let query = req.uri().query().unwrap_or("");
        self.entries
            .iter()
            .find(|e| e.matches(req.method(), path, req.headers(), query))
            .map(|e| (&self.rules[e.rule], e))
    }

    /// Whether the rule `req` matches sends it to Kubernetes Services none of which has
    /// a ready endpoint (its backend sleeps): looked at before [`RuleTable::apply`]
    /// changes the request, so that a held request is routed afresh once woken.
    pub(crate) fn asleep<B>(&self, req: &Request<B>) -> bool {
        let Some((rule, _)) = self.select(req) else {
            return false;
        };
        rule.redirect.is_none()
            && rule.total_weight > 0
            && rule
                .backends
                .iter()
                .filter(|b| b.weight > 0)
                .all(|b| b.unready.is_some())
    }

    /// Applies the rule that matches `req`, if one does: its request header changes
    /// and rewrite are made on `req`; a redirect is answered; mirrors are returned for
    /// the caller to send. `None` when no rule matches (the host's target serves).
    pub(crate) fn apply<'a, B>(
        &'a self,
        req: &mut Request<B>,
        host: &str,
        proto: Scheme,
    ) -> Option<(Decision<'a>, Vec<Upstream>)> {
        let (rule, entry) = self.select(req)?;
        if let Some(redirect) = &rule.redirect {
            let (status, location) = redirect_location(redirect, entry, req, host, proto);
            return Some((Decision::Redirect(status, location), Vec::new()));
        }
        for modifier in &rule.request_headers {
            modify(req.headers_mut(), modifier);
        }
        if let Some(rewrite) = &rule.rewrite {
            rewrite_request(rewrite, entry, req);
        }
        let mirrors = rule
            .mirrors
            .iter()
            .filter_map(|m| Some(m.endpoints.pick(&[])?.upstream().clone()))
            .collect();
        Some((Decision::Forward(rule, rule.destination()), mirrors))
    }
}

impl Entry {
    fn new(rule: usize, matched: &rules::Match) -> Option<Entry> {
        let path = match &matched.path {
            None => PathCond::Prefix(String::new()),
            Some(p) => match p.kind {
                PathMatchType::Exact => PathCond::Exact(p.value.clone()),
                PathMatchType::PathPrefix => {
                    PathCond::Prefix(p.value.trim_end_matches('/').to_owned())
                }
                PathMatchType::RegularExpression => PathCond::Regex(rules::regex(&p.value).ok()?),
            },
        };
        let headers = matched
            .headers
            .iter()
            .map(|h| {
                let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
                Some((name, Cond::new(h.kind, &h.value)?))
            })
            .collect::<Option<_>>()?;
        let query = matched
            .query_params
            .iter()
            .map(|q| Some((q.name.clone(), Cond::new(q.kind, &q.value)?)))
            .collect::<Option<_>>()?;
        let method = match &matched.method {
            Some(m) => Some(Method::from_bytes(m.as_bytes()).ok()?),
            None => None,
        };
        Some(Entry {
            rule,
            path,
            method,
            headers,
            query,
        })
    }

    fn matches(&self, method: &Method, path: &str, headers: &HeaderMap, query: &str) -> bool {
        let path_ok = match &self.path {
            PathCond::Exact(p) => path == p,
            PathCond::Prefix(p) => path
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            PathCond::Regex(r) => r.is_match(path),
        };
        path_ok
            && self.method.as_ref().is_none_or(|m| m == method)
            // The first value of a header or parameter counts, as the Gateway API says.
            && self.headers.iter().all(|(name, cond)| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| cond.matches(v))
            })
            && self.query.iter().all(|(name, cond)| {
                query
                    .split('&')
                    .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
                    .find(|(n, _)| n == name)
                    .is_some_and(|(_, v)| cond.matches(v))
            })
    }

    /// The part of `path` this entry's prefix took (empty for other kinds).
    fn prefix(&self) -> &str {
        match &self.path {
            PathCond::Prefix(p) => p,
            _ => "",
        }
    }
}

impl CompiledRule {
    fn new(rule: &Rule) -> CompiledRule {
        let mut compiled = CompiledRule {
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            redirect: None,
            rewrite: None,
            mirrors: Vec::new(),
            backends: rule.backend_refs.iter().map(Backend::new).collect(),
            total_weight: 0,
            request_timeout: None,
            attempt_timeout: None,
            max_body: rule
                .limits
                .as_ref()
                .and_then(|l| crate::route::rules::parse_size(l.request_body.as_deref()?).ok()),
            retry: rule.retry.as_ref().map(|retry| RetryPolicy {
                attempts: retry.attempts.unwrap_or(1),
                codes: retry
                    .codes
                    .iter()
                    .filter_map(|c| StatusCode::from_u16(*c).ok())
                    .collect(),
                backoff: retry
                    .backoff
                    .as_deref()
                    .and_then(parse_duration)
                    .unwrap_or(DEFAULT_BACKOFF),
                budget: RetryBudget::default(),
            }),
        };
        compiled.total_weight = compiled.backends.iter().map(|b| b.weight).sum();
        for filter in &rule.filters {
            match filter.kind {
                FilterType::RequestHeaderModifier => compiled
                    .request_headers
                    .extend(filter.request_header_modifier.clone()),
                FilterType::ResponseHeaderModifier => compiled
                    .response_headers
                    .extend(filter.response_header_modifier.clone()),
                FilterType::RequestRedirect => compiled.redirect = filter.request_redirect.clone(),
                FilterType::UrlRewrite => compiled.rewrite = filter.url_rewrite.clone(),
                FilterType::RequestMirror => compiled.mirrors.extend(
                    filter
                        .request_mirror
                        .as_ref()
                        .map(|m| Backend::new(&m.backend_ref)),
                ),
            }
        }
        // `0s` turns a timeout off.
        let duration = |value: &Option<String>| {
            value
                .as_deref()
                .and_then(parse_duration)
                .filter(|d| !d.is_zero())
        };
        if let Some(timeouts) = &rule.timeouts {
            compiled.request_timeout = duration(&timeouts.request);
            compiled.attempt_timeout = duration(&timeouts.backend_request);
        }
        compiled
    }

    /// The backend for one request, chosen by weight.
    fn destination(&self) -> Destination<'_> {
        if self.backends.is_empty() {
            return Destination::Target;
        }
        if self.total_weight == 0 {
            return Destination::Unavailable;
        }
        let mut pick = fastrand::u64(..self.total_weight);
        let backend = self.backends.iter().find(|b| {
            if pick < b.weight {
                return true;
            }
            pick -= b.weight;
            false
        });
        match backend {
            Some(backend) if !backend.endpoints.is_empty() => {
                Destination::Backend(&backend.endpoints)
            }
            Some(Backend {
                unready: Some(service),
                ..
            }) => Destination::NoEndpoints(service),
            _ => Destination::Unavailable,
        }
    }

    /// Applies the rule's response header changes.
    pub(crate) fn modify_response(&self, headers: &mut HeaderMap) {
        for modifier in &self.response_headers {
            modify(headers, modifier);
        }
    }
}

/// `set` replaces, `add` appends, `remove` drops (validated names and values; anything
/// else is skipped).
fn modify(headers: &mut HeaderMap, modifier: &HeaderModifier) {
    let parse = |h: &rules::Header| {
        Some((
            HeaderName::from_bytes(h.name.as_bytes()).ok()?,
            HeaderValue::from_str(&h.value).ok()?,
        ))
    };
    for (name, value) in modifier.set.iter().filter_map(parse) {
        headers.insert(name, value);
    }
    for (name, value) in modifier.add.iter().filter_map(parse) {
        headers.append(name, value);
    }
    for name in &modifier.remove {
        headers.remove(name.as_str());
    }
}

/// The path after a path modifier; `prefix` is what the match's `PathPrefix` took.
fn modified_path(modifier: &PathModifier, prefix: &str, path: &str) -> String {
    match modifier.kind {
        PathModifierType::ReplaceFullPath => modifier.replace_full_path.clone().unwrap_or_default(),
        PathModifierType::ReplacePrefixMatch => {
            let replacement = modifier.replace_prefix_match.as_deref().unwrap_or("/");
            let rest = path.get(prefix.len()..).unwrap_or("");
            match (replacement.strip_suffix('/'), rest.is_empty()) {
                (_, true) => replacement.to_owned(),
                (Some(base), false) => format!("{base}{rest}"),
                (None, false) => format!("{replacement}{rest}"),
            }
        }
    }
}

fn with_query(path: String, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

fn rewrite_request<B>(rewrite: &rules::UrlRewrite, entry: &Entry, req: &mut Request<B>) {
    if let Some(hostname) = &rewrite.hostname
        && let Ok(value) = HeaderValue::from_str(hostname)
    {
        req.headers_mut().insert(http::header::HOST, value);
    }
    if let Some(modifier) = &rewrite.path {
        let path = modified_path(modifier, entry.prefix(), req.uri().path());
        let path = with_query(path, req.uri().query());
        let mut parts = req.uri().clone().into_parts();
        if let Ok(path) = path.parse() {
            parts.path_and_query = Some(path);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
}

/// A redirect's status and `Location`: what the filter leaves out is the request's
/// own; the port is kept only when neither scheme nor port is set, and left out when
/// it is the scheme's default.
fn redirect_location<B>(
    redirect: &rules::RequestRedirect,
    entry: &Entry,
    req: &Request<B>,
    host: &str,
    proto: Scheme,
) -> (StatusCode, String) {
    let scheme = redirect.scheme.as_deref().unwrap_or(match proto {
        Scheme::Https => "https",
        Scheme::Http => "http",
    });
    let hostname = redirect.hostname.as_deref().unwrap_or(host);
    let request_port = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.rsplit_once(':'))
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let port = match (redirect.port, &redirect.scheme) {
        (Some(port), _) => Some(port),
        (None, None) => request_port,
        (None, Some(_)) => None,
    };
    let default = if scheme == "https" { 443 } else { 80 };
    let authority = match port.filter(|p| *p != default) {
        Some(port) => format!("{hostname}:{port}"),
        None => hostname.to_owned(),
    };
    let path = match &redirect.path {
        Some(modifier) => modified_path(modifier, entry.prefix(), req.uri().path()),
        None => req.uri().path().to_owned(),
    };
    let status = redirect
        .status_code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::FOUND);
    let location = format!(
        "{scheme}://{authority}{}",
        with_query(path, req.uri().query())
    );
    (status, location)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(rules: serde_json::Value) -> RuleTable {
        let rules: Vec<Rule> = serde_json::from_value(rules).unwrap();
        rules::validate(&rules, rules::Backends::Urls).unwrap();
        RuleTable::new("t.test", &rules)
    }

    fn chosen(
        table: &RuleTable,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Option<usize> {
        let mut req = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        table.select(&req.body(()).unwrap()).map(|(_, e)| e.rule)
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let t = table(json!([{"matches": [{"path": {"value": "/api"}}]}]));
        for path in ["/api", "/api/", "/api/x"] {
            assert_eq!(chosen(&t, "GET", path, &[]), Some(0), "{path}");
        }
        assert_eq!(chosen(&t, "GET", "/apix", &[]), None);
        let slash = table(json!([{"matches": [{"path": {"value": "/api/"}}]}]));
        assert_eq!(chosen(&slash, "GET", "/api", &[]), Some(0));
    }

    #[test]
    fn precedence_is_the_gateway_apis() {
        let t = table(json!([
            {"matches": [{"path": {"value": "/"}}]},
            {"matches": [{"path": {"value": "/a"}}]},
            {"matches": [{"path": {"value": "/a/b"}}]},
            {"matches": [{"path": {"type": "Exact", "value": "/a/b"}}]},
            {"matches": [{"path": {"value": "/a"}, "method": "POST"}]},
            {"matches": [{"path": {"value": "/a"}, "headers": [{"name": "x", "value": "1"}]}]},
            {"matches": [{"path": {"value": "/a"}, "headers": [{"name": "x", "value": "1"}, {"name": "y", "type": "RegularExpression", "value": "[0-9]+"}]}]},
            {"matches": [{"path": {"value": "/a"}, "queryParams": [{"name": "q", "value": "1"}]}]},
        ]));
        assert_eq!(chosen(&t, "GET", "/a/b", &[]), Some(3), "exact first");
        assert_eq!(chosen(&t, "GET", "/a/b/c", &[]), Some(2), "longest prefix");
        assert_eq!(
            chosen(&t, "POST", "/a", &[("x", "1"), ("y", "2")]),
            Some(4),
            "method before headers"
        );
        assert_eq!(
            chosen(&t, "GET", "/a", &[("x", "1"), ("y", "2")]),
            Some(6),
            "most headers"
        );
        assert_eq!(chosen(&t, "GET", "/a", &[("x", "1"), ("y", "z")]), Some(5));
        assert_eq!(chosen(&t, "GET", "/a?q=1", &[]), Some(7), "query");
        assert_eq!(chosen(&t, "GET", "/a?q=2", &[]), Some(1));
        assert_eq!(chosen(&t, "GET", "/other", &[]), Some(0));
    }

    #[test]
    fn rewrites_and_redirects_replace_what_they_name() {
        let prefix = |replacement: &str, path: &str| {
            let modifier = PathModifier {
                kind: PathModifierType::ReplacePrefixMatch,
                replace_full_path: None,
                replace_prefix_match: Some(replacement.into()),
            };
            modified_path(&modifier, "/foo", path)
        };
        assert_eq!(prefix("/xyz", "/foo/bar"), "/xyz/bar");
        assert_eq!(prefix("/xyz/", "/foo/bar"), "/xyz/bar");
        assert_eq!(prefix("/", "/foo/bar"), "/bar");
        assert_eq!(prefix("/xyz", "/foo"), "/xyz");
        let t = table(json!([{"matches": [{"path": {"value": "/old"}}],
            "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "hostname": "new.test",
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}, "statusCode": 301}}]}]));
        let mut req = Request::get("/old/page?x=1")
            .header("host", "t.test:8080")
            .body(())
            .unwrap();
        let Some((Decision::Redirect(status, location), _)) =
            t.apply(&mut req, "t.test", Scheme::Http)
        else {
            panic!("no redirect");
        };
        assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(location, "https://new.test/new/page?x=1");
    }
}
