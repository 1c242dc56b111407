//! A host's routing rules, shaped like Gateway API HTTPRoute rules (matches, filters,
//! weighted backendRefs, timeouts, retry), so that the REST API, CeryxRoute and later
//! Ingress and HTTPRoute all come down to this one model. A host without rules behaves
//! exactly as in Ceryx; rules are stored under a key of their own.
//!
//! The types are flat, as the Gateway API's are (a filter's `type` says which of its
//! fields is set), which keeps the CRD schema structural; [`validate`] checks what the
//! types cannot say.

use super::{MAX_HOST_LEN, Upstream, is_host_name, validate_target};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Most rules one host may have.
pub(crate) const MAX_RULES: usize = 64;
/// Most entries in any one list of a rule (matches, filters, backends, headers).
const MAX_LIST: usize = 32;
/// Most endpoints one backend may list.
const MAX_ENDPOINTS: usize = 1024;
/// Largest weight, as in the Gateway API.
const MAX_WEIGHT: u32 = 1_000_000;
/// Largest compiled regular expression, so a rule cannot cost the proxy much memory.
const REGEX_SIZE_LIMIT: usize = 1 << 16;

/// One rule: which requests it takes, what is done to them, and where they go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Any of these takes the request; none means every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<Match>,
    /// Applied in order to the requests the rule takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    /// Where requests go, split by weight; none means the host's target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<BackendRef>,
    /// Time limits of the exchange and of each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    /// Retries of failed attempts, on another endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Limits on the requests the rule takes (the proxy's own when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

/// Limits on a rule's requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Largest request body, in nginx's syntax (`8m`, `512k`, bytes; `0` for no limit):
    /// larger ones are answered 413. `CERYX_MAX_REQUEST_BODY_SIZE` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub request_body: Option<String>,
}

impl Rule {
    /// Every backend the rule sends to: its `backendRefs`, then its mirrors'.
    pub fn backends(&self) -> impl Iterator<Item = &BackendRef> {
        let mirrors = self
            .filters
            .iter()
            .filter_map(|f| f.request_mirror.as_ref().map(|m| &m.backend_ref));
        self.backend_refs.iter().chain(mirrors)
    }

    /// [`Rule::backends`], to change them.
    pub fn backends_mut(&mut self) -> impl Iterator<Item = &mut BackendRef> {
        let mirrors = self
            .filters
            .iter_mut()
            .filter_map(|f| f.request_mirror.as_mut().map(|m| &mut m.backend_ref));
        self.backend_refs.iter_mut().chain(mirrors)
    }
}

/// Conditions a request must all meet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    /// The request path; `PathPrefix /` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Request headers (names case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    /// Query parameters (names exact).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatch>,
    /// The request method, in capitals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// A path condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMatch {
    /// How `value` is compared.
    #[serde(rename = "type", default)]
    pub kind: PathMatchType,
    /// An absolute path, or a regular expression for the whole path.
    #[serde(default = "root")]
    pub value: String,
}

fn root() -> String {
    "/".into()
}

/// How a path is compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PathMatchType {
    /// The whole path, exactly.
    Exact,
    /// A prefix ending on a segment boundary: `/api` takes `/api`, `/api/`, `/api/x`,
    /// not `/apix`.
    #[default]
    PathPrefix,
    /// A regular expression the whole path must match.
    RegularExpression,
}

/// A header or query parameter condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueMatch {
    /// How `value` is compared.
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,
    /// The header or parameter name.
    pub name: String,
    /// The value, or a regular expression the whole value must match.
    pub value: String,
}

/// How a header or query value is compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ValueMatchType {
    /// Exactly.
    #[default]
    Exact,
    /// A regular expression the whole value must match.
    RegularExpression,
}

/// What to do to a request (or its response); `type` names the one field that is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filter {
    /// Which filter this is.
    #[serde(rename = "type")]
    pub kind: FilterType,
    /// Headers set, added or removed on the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    /// Headers set, added or removed on the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    /// Answer with a redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RequestRedirect>,
    /// Change the host or path sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "urlRewrite")]
    pub url_rewrite: Option<UrlRewrite>,
    /// Send a copy of each request elsewhere, ignoring its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<RequestMirror>,
}

impl Filter {
    /// A filter of `kind` whose field is still to set.
    pub(crate) fn of(kind: FilterType) -> Filter {
        Filter {
            kind,
            request_header_modifier: None,
            response_header_modifier: None,
            request_redirect: None,
            url_rewrite: None,
            request_mirror: None,
        }
    }
}

/// The kinds of filter, as the Gateway API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FilterType {
    /// `requestHeaderModifier`.
    RequestHeaderModifier,
    /// `responseHeaderModifier`.
    ResponseHeaderModifier,
    /// `requestRedirect`.
    RequestRedirect,
    /// `urlRewrite`.
    #[serde(rename = "URLRewrite")]
    UrlRewrite,
    /// `requestMirror`.
    RequestMirror,
}

/// Header changes: `set` replaces, `add` appends, `remove` drops (by name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderModifier {
    /// Headers set, replacing any of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<Header>,
    /// Headers added beside any of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<Header>,
    /// Header names removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
}

/// A redirect answer; what is left out is kept from the request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestRedirect {
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The host name redirected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The port redirected to (left out of the URL when it is the scheme's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The path redirected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    /// 301, 302 (the default), 303, 307 or 308.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

/// A new host or path for the request sent upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UrlRewrite {
    /// The `Host` the upstream gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The path the upstream gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

/// A path replacement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathModifier {
    /// Which of the two fields applies.
    #[serde(rename = "type")]
    pub kind: PathModifierType,
    /// The whole new path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    /// What replaces the part the rule's `PathPrefix` matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

/// The kinds of path replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PathModifierType {
    /// `replaceFullPath`.
    ReplaceFullPath,
    /// `replacePrefixMatch`.
    ReplacePrefixMatch,
}

/// Where mirrored requests go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestMirror {
    /// The backend that gets the copies (its weight is ignored).
    pub backend_ref: BackendRef,
}

/// One backend: a URL, a list of endpoint URLs (one service run as several processes)
/// or, in a CeryxRoute, a Kubernetes Service; exactly one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendRef {
    /// One URL, as a route's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Several endpoint URLs, balanced over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// A Service in the CeryxRoute's namespace (Kubernetes only; the controller writes
    /// its URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
    /// Share of the rule's traffic, relative to the other backends' (default 1; 0 turns
    /// the backend off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Active HTTP health checks of the backend's endpoints (passive outlier detection
    /// runs always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

/// An active health check: `GET <path>` on each endpoint every `interval`; a 2xx or 3xx
/// answer within `timeout` passes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// The path asked for (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time between two checks of an endpoint (default `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Time a check may take (default `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Failed checks in a row that take an endpoint out (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// Passed checks in a row that bring it back (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
}

impl BackendRef {
    /// The URLs it names (`url` or `endpoints`; none for a `service`).
    pub fn urls(&self) -> impl Iterator<Item = &String> {
        self.url.iter().chain(&self.endpoints)
    }

    /// The weight, 1 when left out.
    pub fn weight(&self) -> u32 {
        self.weight.unwrap_or(1)
    }
}

/// A Service and port, in the resource's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceRef {
    /// The Service's name.
    pub name: String,
    /// The Service port.
    pub port: u16,
    /// The Service's namespace when it is not the resource's (set by the controller for
    /// Ingress and HTTPRoute backends; not part of the CeryxRoute schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub namespace: Option<String>,
}

/// A rule's time limits, in Gateway API duration syntax (`10s`, `1m30s`, `500ms`;
/// `0s` for none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// The whole exchange up to the response head, retries included (504 after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// One attempt at a backend, up to its response head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<String>,
}

/// Retries of a failed attempt, each on another endpoint when there is one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    /// Retries after the first attempt (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Response codes retried (for idempotent methods, or requests without a body);
    /// connection failures are always retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<u16>,
    /// Wait before each retry (default `25ms`), doubled each time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
}

/// A value in a rule that cannot be used: where (`rules[0].matches[1].path.value`) and
/// why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub(crate) struct RuleError {
    /// The field, as a JSON path from `rules`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// Methods a match may name.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Which kinds of backend a writer of rules may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backends {
    /// URLs only: the REST API.
    Urls,
    /// URLs or a Service by name: a CeryxRoute's spec.
    Services,
    /// URLs, or a Service with the endpoints the controller resolved it to (possibly
    /// none: the proxy answers 503): what the store holds.
    Stored,
}

/// Checks what the types cannot: regular expressions compile, names and values are
/// valid in HTTP, each filter and backend sets exactly the field its kind needs, URLs
/// are targets, durations parse, codes are codes; backends are of the kinds `backends`
/// allows.
pub(crate) fn validate(rules: &[Rule], services: Backends) -> Result<(), RuleError> {
    let at = |path: String, message: &str| RuleError {
        path,
        message: message.to_owned(),
    };
    if rules.len() > MAX_RULES {
        return Err(at("rules".into(), "At most 64 rules."));
    }
    for (r, rule) in rules.iter().enumerate() {
        let here = format!("rules[{r}]");
        for (name, len) in [
            ("matches", rule.matches.len()),
            ("filters", rule.filters.len()),
            ("backendRefs", rule.backend_refs.len()),
        ] {
            if len > MAX_LIST {
                return Err(at(format!("{here}.{name}"), "At most 32 entries."));
            }
        }
        for (m, matched) in rule.matches.iter().enumerate() {
            validate_match(matched, &format!("{here}.matches[{m}]"))?;
        }
        for (f, filter) in rule.filters.iter().enumerate() {
            validate_filter(filter, rule, services, &format!("{here}.filters[{f}]"))?;
        }
        let kinds: Vec<FilterType> = rule.filters.iter().map(|f| f.kind).collect();
        if kinds.contains(&FilterType::RequestRedirect) && kinds.contains(&FilterType::UrlRewrite) {
            return Err(at(
                format!("{here}.filters"),
                "RequestRedirect and URLRewrite cannot be used together.",
            ));
        }
        for (b, backend) in rule.backend_refs.iter().enumerate() {
            validate_backend(backend, services, &format!("{here}.backendRefs[{b}]"))?;
        }
        if let Some(timeouts) = &rule.timeouts {
            let request =
                optional_duration(&timeouts.request, &format!("{here}.timeouts.request"))?;
            let attempt = optional_duration(
                &timeouts.backend_request,
                &format!("{here}.timeouts.backendRequest"),
            )?;
            if let (Some(request), Some(attempt)) = (request, attempt)
                && !request.is_zero()
                && (attempt.is_zero() || attempt > request)
            {
                return Err(at(
                    format!("{here}.timeouts.backendRequest"),
                    "Must not be longer than timeouts.request.",
                ));
            }
        }
        if let Some(retry) = &rule.retry {
            if retry.attempts.is_some_and(|a| a > 10) {
                return Err(at(format!("{here}.retry.attempts"), "At most 10."));
            }
            if let Some(c) = retry.codes.iter().position(|c| !(400..=599).contains(c)) {
                return Err(at(
                    format!("{here}.retry.codes[{c}]"),
                    "Must be a status code from 400 to 599.",
                ));
            }
            optional_duration(&retry.backoff, &format!("{here}.retry.backoff"))?;
        }
        if let Some(body) = rule.limits.as_ref().and_then(|l| l.request_body.as_deref())
            && parse_size(body).is_err()
        {
            return Err(at(
                format!("{here}.limits.requestBody"),
                "Must be a size like 8m, 512k or a number of bytes (0: no limit).",
            ));
        }
    }
    Ok(())
}

fn validate_match(matched: &Match, here: &str) -> Result<(), RuleError> {
    let at = |field: &str, message: &str| RuleError {
        path: format!("{here}.{field}"),
        message: message.to_owned(),
    };
    if let Some(path) = &matched.path {
        match path.kind {
            PathMatchType::RegularExpression => {
                regex(&path.value).map_err(|e| at("path.value", &e))?;
            }
            _ if !path.value.starts_with('/') || path.value.len() > 1024 => {
                return Err(at(
                    "path.value",
                    "Must be an absolute path (starting with /).",
                ));
            }
            _ => {}
        }
    }
    for (field, list) in [
        ("headers", &matched.headers),
        ("queryParams", &matched.query_params),
    ] {
        if list.len() > MAX_LIST {
            return Err(at(field, "At most 32 entries."));
        }
        for (i, value) in list.iter().enumerate() {
            let name_ok = match field {
                "headers" => http::HeaderName::from_bytes(value.name.as_bytes()).is_ok(),
                _ => !value.name.is_empty(),
            };
            if !name_ok {
                return Err(at(&format!("{field}[{i}].name"), "Must be a valid name."));
            }
            if value.kind == ValueMatchType::RegularExpression {
                regex(&value.value).map_err(|e| at(&format!("{field}[{i}].value"), &e))?;
            }
        }
    }
    if let Some(method) = &matched.method
        && !METHODS.contains(&method.as_str())
    {
        return Err(at(
            "method",
            "Must be one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH.",
        ));
    }
    Ok(())
}

fn validate_filter(
    filter: &Filter,
    rule: &Rule,
    services: Backends,
    here: &str,
) -> Result<(), RuleError> {
    let at = |field: &str, message: &str| RuleError {
        path: format!("{here}.{field}"),
        message: message.to_owned(),
    };
    let set = [
        (
            FilterType::RequestHeaderModifier,
            filter.request_header_modifier.is_some(),
        ),
        (
            FilterType::ResponseHeaderModifier,
            filter.response_header_modifier.is_some(),
        ),
        (
            FilterType::RequestRedirect,
            filter.request_redirect.is_some(),
        ),
        (FilterType::UrlRewrite, filter.url_rewrite.is_some()),
        (FilterType::RequestMirror, filter.request_mirror.is_some()),
    ];
    if set
        .iter()
        .any(|(kind, is_set)| *is_set != (*kind == filter.kind))
    {
        return Err(at(
            "type",
            "Exactly the field its type names must be set (e.g. requestHeaderModifier for RequestHeaderModifier).",
        ));
    }
    // No match at all is `PathPrefix /`.
    let prefix_only = || {
        rule.matches.iter().all(|m| {
            m.path
                .as_ref()
                .is_none_or(|p| p.kind == PathMatchType::PathPrefix)
        })
    };
    let path_modifier = |path: &PathModifier, field: &str| -> Result<(), RuleError> {
        let value = match path.kind {
            PathModifierType::ReplaceFullPath => &path.replace_full_path,
            PathModifierType::ReplacePrefixMatch => {
                if !prefix_only() {
                    return Err(at(
                        field,
                        "ReplacePrefixMatch needs every match of the rule to be a PathPrefix.",
                    ));
                }
                &path.replace_prefix_match
            }
        };
        match value {
            Some(v)
                if v.starts_with('/') && http::uri::PathAndQuery::try_from(v.as_str()).is_ok() =>
            {
                Ok(())
            }
            _ => Err(at(
                field,
                "Needs the field its type names, an absolute path (starting with /).",
            )),
        }
    };
    let hostname = |host: &Option<String>, field: &str| match host {
        Some(h) if h.len() > MAX_HOST_LEN || !is_host_name(h) => {
            Err(at(field, "Must be a host name."))
        }
        _ => Ok(()),
    };
    if let Some(modifier) = filter
        .request_header_modifier
        .as_ref()
        .or(filter.response_header_modifier.as_ref())
    {
        let field = match filter.kind {
            FilterType::RequestHeaderModifier => "requestHeaderModifier",
            _ => "responseHeaderModifier",
        };
        for (list, headers) in [("set", &modifier.set), ("add", &modifier.add)] {
            for (i, header) in headers.iter().enumerate() {
                if http::HeaderName::from_bytes(header.name.as_bytes()).is_err()
                    || http::HeaderValue::from_str(&header.value).is_err()
                {
                    return Err(at(
                        &format!("{field}.{list}[{i}]"),
                        "Must be a valid header name and value.",
                    ));
                }
            }
        }
        for (i, name) in modifier.remove.iter().enumerate() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(at(
                    &format!("{field}.remove[{i}]"),
                    "Must be a valid header name.",
                ));
            }
        }
    }
    if let Some(redirect) = &filter.request_redirect {
        if let Some(scheme) = &redirect.scheme
            && scheme != "http"
            && scheme != "https"
        {
            return Err(at("requestRedirect.scheme", "Must be http or https."));
        }
        hostname(&redirect.hostname, "requestRedirect.hostname")?;
        if redirect.port == Some(0) {
            return Err(at("requestRedirect.port", "Must be from 1 to 65535."));
        }
        if let Some(code) = redirect.status_code
            && ![301, 302, 303, 307, 308].contains(&code)
        {
            return Err(at(
                "requestRedirect.statusCode",
                "Must be 301, 302, 303, 307 or 308.",
            ));
        }
        if let Some(path) = &redirect.path {
            path_modifier(path, "requestRedirect.path")?;
        }
    }
    if let Some(rewrite) = &filter.url_rewrite {
        hostname(&rewrite.hostname, "urlRewrite.hostname")?;
        if let Some(path) = &rewrite.path {
            path_modifier(path, "urlRewrite.path")?;
        }
    }
    if let Some(mirror) = &filter.request_mirror {
        validate_backend(
            &mirror.backend_ref,
            services,
            &format!("{here}.requestMirror.backendRef"),
        )?;
    }
    Ok(())
}

fn validate_backend(backend: &BackendRef, services: Backends, here: &str) -> Result<(), RuleError> {
    let at = |field: &str, message: String| RuleError {
        path: if field.is_empty() {
            here.to_owned()
        } else {
            format!("{here}.{field}")
        },
        message,
    };
    let (url, endpoints, service) = (
        backend.url.is_some(),
        !backend.endpoints.is_empty(),
        backend.service.is_some(),
    );
    let valid = match services {
        Backends::Urls => u8::from(url) + u8::from(endpoints) == 1 && !service,
        Backends::Services => u8::from(url) + u8::from(endpoints) + u8::from(service) == 1,
        // A resolved Service keeps its name beside its endpoints.
        Backends::Stored => (url && !endpoints && !service) || (!url && (endpoints || service)),
    };
    if !valid {
        if service && services == Backends::Urls {
            return Err(at(
                "service",
                "Only a CeryxRoute can name a Service.".into(),
            ));
        }
        let kinds = match services {
            Backends::Urls => "url or endpoints",
            _ => "url, endpoints or service",
        };
        return Err(at("", format!("Needs exactly one of {kinds}.")));
    }
    if backend.weight.is_some_and(|w| w > MAX_WEIGHT) {
        return Err(at("weight", "At most 1000000.".into()));
    }
    if backend.endpoints.len() > MAX_ENDPOINTS {
        return Err(at("endpoints", "At most 1024 endpoints.".into()));
    }
    let target = |url: &str, field: String| {
        validate_target(url).map(|_| ()).map_err(|_| {
            at(
                &field,
                "Must be an http:// or https:// URL with a host and, if given, a port from 1 to 65535.".into(),
            )
        })
    };
    if let Some(url) = &backend.url {
        target(url, "url".into())?;
    }
    for (i, url) in backend.endpoints.iter().enumerate() {
        target(url, format!("endpoints[{i}]"))?;
    }
    if let Some(service) = &backend.service
        && (service.port == 0 || !is_host_name(&service.name) || service.name.contains('.'))
    {
        return Err(at(
            "service",
            "Needs a Service name and a port from 1 to 65535.".into(),
        ));
    }
    if let Some(check) = &backend.health_check {
        let path_ok = check
            .path
            .as_deref()
            .is_none_or(|p| p.starts_with('/') && http::uri::PathAndQuery::try_from(p).is_ok());
        if !path_ok {
            return Err(at(
                "healthCheck.path",
                "Must be an absolute path (starting with /).".into(),
            ));
        }
        for (field, value) in [("interval", &check.interval), ("timeout", &check.timeout)] {
            let path = format!("{here}.healthCheck.{field}");
            if optional_duration(value, &path)?.is_some_and(|d| d.is_zero()) {
                return Err(RuleError {
                    path,
                    message: "Must be longer than 0s.".into(),
                });
            }
        }
        for (field, value) in [
            ("unhealthyThreshold", check.unhealthy_threshold),
            ("healthyThreshold", check.healthy_threshold),
        ] {
            if value.is_some_and(|n| !(1..=100).contains(&n)) {
                return Err(at(
                    &format!("healthCheck.{field}"),
                    "Must be from 1 to 100.".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Compiles a regular expression for the whole value (anchored), within the size limit.
pub(crate) fn regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("Not a valid regular expression: {e}"))
}

fn optional_duration(value: &Option<String>, path: &str) -> Result<Option<Duration>, RuleError> {
    value
        .as_deref()
        .map(|v| {
            parse_duration(v).ok_or_else(|| RuleError {
                path: path.to_owned(),
                message: "Must be a duration like 10s, 500ms or 1m30s.".into(),
            })
        })
        .transpose()
}

/// Parses a Gateway API duration (GEP-2257): one to four `<number><unit>` parts, the
/// number of up to five digits, the unit `h`, `m`, `s` or `ms`.
pub(crate) fn parse_duration(value: &str) -> Option<Duration> {
    let mut rest = value;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else {
            match rest.as_bytes().first()? {
                b'h' => (Duration::from_secs(3600), 1),
                b'm' => (Duration::from_secs(60), 1),
                b's' => (Duration::from_secs(1), 1),
                _ => return None,
            }
        };
        rest = &rest[len..];
        total += unit * u32::try_from(n).ok()?;
        parts += 1;
    }
    (1..=4).contains(&parts).then_some(total)
}

/// Parses a size in nginx syntax: bytes, or `k`/`m`/`g` (either case).
pub(crate) fn parse_size(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let (number, shift) = match value.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&value[..value.len() - 1], 10),
        Some('m') => (&value[..value.len() - 1], 20),
        Some('g') => (&value[..value.len() - 1], 30),
        _ => (value, 0),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a size like 100m, 512k or 1048576"))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| format!("{value:?} is too large"))
}

/// The upstreams of a backend given by URLs (as stored: `url` or `endpoints`).
pub(crate) fn backend_upstreams(backend: &BackendRef) -> Vec<Upstream> {
    backend
        .urls()
        .filter_map(|url| Upstream::parse(url).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(value: serde_json::Value) -> Vec<Rule> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_issue_example_reads_and_writes_back_unchanged() {
        let value = json!([
            {"matches": [{"path": {"type": "PathPrefix", "value": "/api"},
                          "headers": [{"name": "x-canary", "value": "1"}], "method": "GET"}],
             "filters": [{"type": "RequestHeaderModifier",
                          "requestHeaderModifier": {"set": [{"name": "x-env", "value": "prod"}]}}],
             "backendRefs": [{"url": "http://api-v1:8080", "weight": 90},
                             {"endpoints": ["http://api-v2a:8080", "http://api-v2b:8080"], "weight": 10}],
             "timeouts": {"request": "10s", "backendRequest": "2s"},
             "retry": {"attempts": 2, "codes": [502, 503, 504], "backoff": "100ms"}}]);
        let parsed = rules(value.clone());
        validate(&parsed, Backends::Urls).unwrap();
        let mut expected = value;
        // Left-out defaults are not written back.
        expected[0]["matches"][0]["headers"][0]
            .as_object_mut()
            .unwrap()
            .insert("type".into(), json!("Exact"));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), expected);
        assert_eq!(backend_upstreams(&parsed[0].backend_refs[1]).len(), 2);
    }

    #[test]
    fn each_mistake_is_named_by_its_path() {
        let cases = [
            (
                json!([{"matches": [{"path": {"type": "RegularExpression", "value": "("}}]}]),
                "rules[0].matches[0].path.value",
            ),
            (
                json!([{"limits": {"requestBody": "8 MB"}}]),
                "rules[0].limits.requestBody",
            ),
            (
                json!([{"matches": [{"path": {"value": "api"}}]}]),
                "rules[0].matches[0].path.value",
            ),
            (
                json!([{"matches": [{"method": "get"}]}]),
                "rules[0].matches[0].method",
            ),
            (
                json!([{"matches": [{"headers": [{"name": "bad name", "value": "x"}]}]}]),
                "rules[0].matches[0].headers[0].name",
            ),
            (
                json!([{"filters": [{"type": "RequestRedirect"}]}]),
                "rules[0].filters[0].type",
            ),
            (
                json!([{"filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 200}}]}]),
                "rules[0].filters[0].requestRedirect.statusCode",
            ),
            (
                json!([{"matches": [{"path": {"type": "Exact", "value": "/a"}}], "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}}}]}]),
                "rules[0].filters[0].urlRewrite.path",
            ),
            (
                json!([{"backendRefs": [{"url": "javascript:alert(1)"}]}]),
                "rules[0].backendRefs[0].url",
            ),
            (
                json!([{"backendRefs": [{"url": "http://a", "endpoints": ["http://b"]}]}]),
                "rules[0].backendRefs[0]",
            ),
            (
                json!([{"backendRefs": [{"service": {"name": "web", "port": 80}}]}]),
                "rules[0].backendRefs[0].service",
            ),
            (
                json!([{"timeouts": {"request": "10"}}]),
                "rules[0].timeouts.request",
            ),
            (
                json!([{"timeouts": {"request": "1s", "backendRequest": "2s"}}]),
                "rules[0].timeouts.backendRequest",
            ),
            (
                json!([{"retry": {"codes": [200]}}]),
                "rules[0].retry.codes[0]",
            ),
        ];
        for (value, path) in cases {
            let error = validate(&rules(value.clone()), Backends::Urls).unwrap_err();
            assert_eq!(error.path, path, "{value}: {error}");
        }
        let service = rules(json!([{"backendRefs": [{"service": {"name": "web", "port": 80}}]}]));
        assert_eq!(validate(&service, Backends::Services), Ok(()));
    }

    #[test]
    fn durations_follow_the_gateway_api() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in ["", "10", "1.5s", "123456s", "1h1h1h1h1h", "s", "-1s", "1d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
