//! An HTTPRoute, read against the Gateways of our class, turned into claims on hosts
//! (one per host name both a listener and the route serve) and a verdict per parent, in
//! the Gateway API's vocabulary. Pure: the cluster comes in as plain data and lookups,
//! so every rule of attachment is pinned by unit tests, and the controller only fetches
//! and writes.

use super::types::{
    BackendObjectRef, GROUP, Gateway, GatewayClass, HttpHeaderFilter, HttpPathModifier, HttpRoute,
    HttpRouteFilter, HttpRouteMatch, HttpRouteRule, Listener, ParentRef, ReferenceGrant,
    RouteGroupKind,
};
use crate::controller::claim::{Claim, Origin, SecretRef};
use crate::route::rules::{
    self, BackendRef, Backends, Filter, FilterType, Header, HeaderModifier, Match, PathMatch,
    PathMatchType, PathModifier, PathModifierType, RequestMirror, RequestRedirect, Retry, Rule,
    ServiceRef, Timeouts, UrlRewrite, ValueMatch, ValueMatchType,
};
use crate::route::{UNROUTED, WILDCARD, normalize_source};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One condition's outcome, before it gets its generation and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// `True` or `False`.
    pub ok: bool,
    /// A reason from the spec's vocabulary.
    pub reason: &'static str,
    /// What a person reading the status should know.
    pub message: String,
}

impl Verdict {
    pub(crate) fn yes(reason: &'static str, message: impl Into<String>) -> Verdict {
        Verdict {
            ok: true,
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn no(reason: &'static str, message: impl Into<String>) -> Verdict {
        Verdict {
            ok: false,
            reason,
            message: message.into(),
        }
    }
}

/// The `controllerName` of Ceryx's GatewayClasses.
pub(crate) const CONTROLLER_NAME: &str = "ceryx.dev/gateway-controller";

/// What the translation of a route reads besides the route.
pub(crate) struct Cluster<'a> {
    /// Our `controllerName`.
    pub controller: &'a str,
    /// Every GatewayClass.
    pub classes: &'a [Arc<GatewayClass>],
    /// Every Gateway (of any class: only ours are read).
    pub gateways: &'a [Arc<Gateway>],
    /// Every ReferenceGrant.
    pub grants: &'a [Arc<ReferenceGrant>],
    /// A namespace's labels, for listeners that admit routes by selector.
    pub namespace_labels: &'a dyn Fn(&str) -> Option<BTreeMap<String, String>>,
    /// Whether a Service exists (namespace, name).
    pub service_exists: &'a dyn Fn(&str, &str) -> bool,
    /// Whether a usable `kubernetes.io/tls` Secret exists (namespace, name).
    pub secret_exists: &'a dyn Fn(&str, &str) -> bool,
}

impl Cluster<'_> {
    /// Whether a Gateway is ours to serve: its class names our controller and is
    /// accepted (it asks for no parameters).
    pub(crate) fn is_ours(&self, gateway: &Gateway) -> bool {
        self.classes.iter().any(|class| {
            class.metadata.name.as_deref() == Some(gateway.spec.gateway_class_name.as_str())
                && class.spec.controller_name == self.controller
                && class.spec.parameters_ref.is_none()
        })
    }

    fn gateway(&self, namespace: &str, name: &str) -> Option<&Gateway> {
        self.gateways.iter().map(Arc::as_ref).find(|g| {
            g.metadata.namespace.as_deref() == Some(namespace)
                && g.metadata.name.as_deref() == Some(name)
        })
    }

    /// Whether a ReferenceGrant in `to_namespace` lets a `from_kind` in
    /// `from_namespace` refer to `to_group`/`to_kind` `to_name` there.
    fn granted(
        &self,
        from_kind: &str,
        from_namespace: &str,
        to_namespace: &str,
        to: (&str, &str, &str),
    ) -> bool {
        granted(self.grants, from_kind, from_namespace, to_namespace, to)
    }
}

fn granted(
    grants: &[Arc<ReferenceGrant>],
    from_kind: &str,
    from_namespace: &str,
    to_namespace: &str,
    (group, kind, name): (&str, &str, &str),
) -> bool {
    grants.iter().any(|grant| {
        grant.metadata.namespace.as_deref() == Some(to_namespace)
            && grant.permits(from_kind, from_namespace, group, kind, name)
    })
}

/// How one parent of a route fared: the conditions Ceryx writes for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParentOutcome {
    /// The parent, as the route wrote it.
    pub parent_ref: ParentRef,
    /// `Accepted`: attached to at least one listener, or why not.
    pub accepted: Verdict,
    /// `ResolvedRefs`: every backend usable, or the first that is not.
    pub resolved: Verdict,
}

/// A listener of a Gateway, for counting the routes attached to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ListenerKey {
    /// The Gateway's namespace.
    pub namespace: String,
    /// The Gateway's name.
    pub gateway: String,
    /// The listener's name.
    pub listener: String,
}

/// What an HTTPRoute comes to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RouteTranslation {
    /// One per host it is served on; none when no parent of ours accepted it.
    pub claims: Vec<Claim>,
    /// One per parent of ours; parents of other classes (or unknown Gateways, or
    /// other kinds) are left to whoever owns them.
    pub parents: Vec<ParentOutcome>,
    /// The listeners it is attached to (for their `attachedRoutes`).
    pub attached: BTreeSet<ListenerKey>,
}

/// Translates `route` against the Gateways of our class.
pub(crate) fn translate(route: &HttpRoute, cluster: &Cluster<'_>) -> RouteTranslation {
    let namespace = route.metadata.namespace.clone().unwrap_or_default();
    let rules = translate_rules(route, &namespace, cluster);
    let resolved = rules
        .problems
        .unresolved
        .clone()
        .unwrap_or_else(|| Verdict::yes("ResolvedRefs", "Every backend is resolved."));
    let route_hosts: Vec<String> = route
        .spec
        .hostnames
        .iter()
        .filter_map(|h| normalize_source(h).ok())
        .collect();

    let mut parents = Vec::new();
    let mut attached = BTreeSet::new();
    // Host → certificate, in the order found.
    let mut hosts: Vec<(String, Option<SecretRef>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for parent in &route.spec.parent_refs {
        if !seen.insert(parent.clone())
            || parent.group.as_deref().unwrap_or(GROUP) != GROUP
            || parent.kind.as_deref().unwrap_or("Gateway") != "Gateway"
        {
            continue;
        }
        let gateway_namespace = parent.namespace.as_deref().unwrap_or(&namespace);
        let Some(gateway) = cluster.gateway(gateway_namespace, &parent.name) else {
            continue;
        };
        if !cluster.is_ours(gateway) {
            continue;
        }
        let accepted = match &rules.problems.unsupported {
            Some(unsupported) => unsupported.clone(),
            None => attach(
                route,
                parent,
                gateway,
                &route_hosts,
                cluster,
                &mut attached,
                &mut hosts,
            ),
        };
        parents.push(ParentOutcome {
            parent_ref: parent.clone(),
            accepted,
            resolved: resolved.clone(),
        });
    }

    let origin = Origin {
        created: route
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        kind: "HTTPRoute",
        namespace,
        name: route.metadata.name.clone().unwrap_or_default(),
    };
    let claims = hosts
        .into_iter()
        .map(|(host, tls)| Claim {
            origin: origin.clone(),
            host,
            rules: rules.rules.clone(),
            enforce_https: false,
            backend_tls: false,
            tls,
        })
        .collect();
    RouteTranslation {
        claims,
        parents,
        attached,
    }
}

/// Attaches `route` to the listeners of `gateway` that `parent` selects and that admit
/// it, adding the hosts they serve together to `hosts`; the `Accepted` verdict.
fn attach(
    route: &HttpRoute,
    parent: &ParentRef,
    gateway: &Gateway,
    route_hosts: &[String],
    cluster: &Cluster<'_>,
    attached: &mut BTreeSet<ListenerKey>,
    hosts: &mut Vec<(String, Option<SecretRef>)>,
) -> Verdict {
    let route_namespace = route.metadata.namespace.as_deref().unwrap_or_default();
    let gateway_namespace = gateway.metadata.namespace.as_deref().unwrap_or_default();
    let selected: Vec<&Listener> = gateway
        .spec
        .listeners
        .iter()
        .filter(|l| parent.section_name.as_ref().is_none_or(|s| *s == l.name))
        .filter(|l| parent.port.is_none_or(|p| p == l.port))
        .collect();
    if selected.is_empty() {
        return Verdict::no(
            "NoMatchingParent",
            match (&parent.section_name, parent.port) {
                (Some(section), _) => {
                    format!("The Gateway has no listener {section} on that port.")
                }
                (None, Some(port)) => format!("The Gateway has no listener on port {port}."),
                (None, None) => "The Gateway has no listeners.".to_owned(),
            },
        );
    }
    let admitting: Vec<&Listener> = selected
        .into_iter()
        .filter(|l| {
            serves_http(l)
                && admits_kind(l)
                && admits_namespace(l, gateway_namespace, route_namespace, cluster)
        })
        .collect();
    if admitting.is_empty() {
        return Verdict::no(
            "NotAllowedByListeners",
            "No listener it names admits HTTPRoutes from this namespace.",
        );
    }
    let mut any = false;
    for listener in admitting {
        let served = hostnames(listener.hostname.as_deref(), route_hosts);
        if served.is_empty() {
            continue;
        }
        any = true;
        attached.insert(ListenerKey {
            namespace: gateway_namespace.to_owned(),
            gateway: gateway.metadata.name.clone().unwrap_or_default(),
            listener: listener.name.clone(),
        });
        let tls = if listener.protocol == "HTTPS" {
            listener_certificate(gateway, listener, cluster.grants, cluster.secret_exists)
                .ok()
                .flatten()
        } else {
            None
        };
        for host in served {
            match hosts.iter_mut().find(|(h, _)| *h == host) {
                Some((_, existing)) => {
                    if existing.is_none() {
                        *existing = tls.clone();
                    }
                }
                None => hosts.push((host, tls.clone())),
            }
        }
    }
    if any {
        Verdict::yes("Accepted", "The route is attached.")
    } else {
        Verdict::no(
            "NoMatchingListenerHostname",
            "No host name of the route is served by a listener it names.",
        )
    }
}

/// Whether a listener is one Ceryx serves HTTPRoutes on.
pub(crate) fn serves_http(listener: &Listener) -> bool {
    listener.protocol == "HTTP" || listener.protocol == "HTTPS"
}

/// Whether a route kind names HTTPRoute.
pub(crate) fn is_http_route_kind(kind: &RouteGroupKind) -> bool {
    kind.group.as_deref().unwrap_or(GROUP) == GROUP && kind.kind == "HTTPRoute"
}

fn admits_kind(listener: &Listener) -> bool {
    let kinds = listener
        .allowed_routes
        .as_ref()
        .map(|a| a.kinds.as_slice())
        .unwrap_or_default();
    kinds.is_empty() || kinds.iter().any(is_http_route_kind)
}

fn admits_namespace(
    listener: &Listener,
    gateway_namespace: &str,
    route_namespace: &str,
    cluster: &Cluster<'_>,
) -> bool {
    let namespaces = listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match namespaces.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Same" => gateway_namespace == route_namespace,
        "Selector" => {
            let selector = namespaces.and_then(|n| n.selector.as_ref());
            match (selector, (cluster.namespace_labels)(route_namespace)) {
                (Some(selector), Some(labels)) => selects(selector, &labels),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether a label selector selects an object with `labels` (Kubernetes semantics: an
/// empty selector selects everything).
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let exact = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    exact && expressions
}

/// The host names a listener and a route both serve (Gateway API hostname
/// intersection): with neither restricting, every host (`$wildcard`); otherwise each
/// route host name the listener's covers, or the listener's where it is the narrower of
/// the two. A wildcard `*.example.com` covers any name ending in `.example.com`.
pub(crate) fn hostnames(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let listener = listener.and_then(|l| normalize_source(l).ok());
    let mut served = Vec::new();
    match (listener, route.is_empty()) {
        (None, true) => served.push(WILDCARD.to_owned()),
        (None, false) => served.extend(route.iter().cloned()),
        (Some(listener), true) => served.push(listener),
        (Some(listener), false) => {
            for host in route {
                let narrower = if covers(&listener, host) {
                    host
                } else if covers(host, &listener) {
                    &listener
                } else {
                    continue;
                };
                if !served.contains(narrower) {
                    served.push(narrower.clone());
                }
            }
        }
    }
    served
}

/// Whether `pattern` (a name or `*.` wildcard) serves every name `name` does.
fn covers(pattern: &str, name: &str) -> bool {
    if pattern == name {
        return true;
    }
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    // `suffix` is `.example.com`: the name needs at least one label before it (a
    // narrower wildcard, `*.a.example.com`, is compared as `.a.example.com`).
    let name = name.strip_prefix('*').unwrap_or(name);
    name.len() > suffix.len() && name.ends_with(suffix)
}

/// The certificate an HTTPS listener serves: its first `certificateRefs` entry, a
/// Secret in the Gateway's namespace or one a ReferenceGrant lets the Gateway use; or
/// the `ResolvedRefs` verdict saying why not. `None` for a listener without TLS.
pub(crate) fn listener_certificate(
    gateway: &Gateway,
    listener: &Listener,
    grants: &[Arc<ReferenceGrant>],
    secret_exists: &dyn Fn(&str, &str) -> bool,
) -> Result<Option<SecretRef>, Verdict> {
    if listener.protocol != "HTTPS" {
        return Ok(None);
    }
    let gateway_namespace = gateway.metadata.namespace.as_deref().unwrap_or_default();
    let refs = listener
        .tls
        .as_ref()
        .map(|t| t.certificate_refs.as_slice())
        .unwrap_or_default();
    let Some(first) = refs.first() else {
        return Err(Verdict::no(
            "InvalidCertificateRef",
            "An HTTPS listener needs tls.certificateRefs.",
        ));
    };
    for reference in refs {
        let namespace = reference.namespace.as_deref().unwrap_or(gateway_namespace);
        let group = reference.group.as_deref().unwrap_or_default();
        let kind = reference.kind.as_deref().unwrap_or("Secret");
        if !group.is_empty() || kind != "Secret" {
            return Err(Verdict::no(
                "InvalidCertificateRef",
                format!("{kind} {} is not a Secret.", reference.name),
            ));
        }
        if namespace != gateway_namespace
            && !granted(
                grants,
                "Gateway",
                gateway_namespace,
                namespace,
                ("", "Secret", &reference.name),
            )
        {
            return Err(Verdict::no(
                "RefNotPermitted",
                format!(
                    "Secret {namespace}/{} is in another namespace and no ReferenceGrant there allows it.",
                    reference.name
                ),
            ));
        }
        if !secret_exists(namespace, &reference.name) {
            return Err(Verdict::no(
                "InvalidCertificateRef",
                format!(
                    "Secret {namespace}/{} does not exist or is not a kubernetes.io/tls Secret.",
                    reference.name
                ),
            ));
        }
    }
    Ok(Some(SecretRef {
        namespace: first
            .namespace
            .clone()
            .unwrap_or_else(|| gateway_namespace.to_owned()),
        name: first.name.clone(),
    }))
}

/// What went wrong in the rules: the first unsupported value (the route is not
/// accepted) and the first unresolved reference (`ResolvedRefs=False`).
#[derive(Debug, Default)]
struct Problems {
    unsupported: Option<Verdict>,
    unresolved: Option<Verdict>,
}

impl Problems {
    fn unsupported(&mut self, at: &str, message: impl std::fmt::Display) {
        self.unsupported
            .get_or_insert_with(|| Verdict::no("UnsupportedValue", format!("{at}: {message}")));
    }

    fn unresolved(&mut self, reason: &'static str, at: &str, message: impl std::fmt::Display) {
        self.unresolved
            .get_or_insert_with(|| Verdict::no(reason, format!("{at}: {message}")));
    }
}

struct Rules {
    rules: Vec<Rule>,
    problems: Problems,
}

fn translate_rules(route: &HttpRoute, namespace: &str, cluster: &Cluster<'_>) -> Rules {
    let mut problems = Problems::default();
    let rules: Vec<Rule> = route
        .spec
        .rules
        .iter()
        .enumerate()
        .map(|(r, rule)| {
            translate_rule(
                rule,
                &format!("spec.rules[{r}]"),
                namespace,
                cluster,
                &mut problems,
            )
        })
        .collect();
    if let Err(e) = rules::validate(&rules, Backends::Services) {
        problems.unsupported(&format!("spec.{}", e.path), e.message);
    }
    Rules { rules, problems }
}

fn translate_rule(
    rule: &HttpRouteRule,
    here: &str,
    namespace: &str,
    cluster: &Cluster<'_>,
    problems: &mut Problems,
) -> Rule {
    if rule.session_persistence.is_some() {
        problems.unsupported(
            &format!("{here}.sessionPersistence"),
            "Ceryx does not keep sessions on one backend.",
        );
    }
    let matches = rule
        .matches
        .iter()
        .enumerate()
        .map(|(m, matched)| translate_match(matched, &format!("{here}.matches[{m}]"), problems))
        .collect();
    let filters = rule
        .filters
        .iter()
        .enumerate()
        .filter_map(|(f, filter)| {
            translate_filter(
                filter,
                &format!("{here}.filters[{f}]"),
                namespace,
                cluster,
                problems,
            )
        })
        .collect();
    let mut backend_refs = rule
        .backend_refs
        .iter()
        .enumerate()
        .map(|(b, backend)| {
            let at = format!("{here}.backendRefs[{b}]");
            if !backend.filters.is_empty() {
                problems.unsupported(
                    &format!("{at}.filters"),
                    "Ceryx does not support filters on one backend.",
                );
            }
            let mut translated =
                service_backend(&backend.backend, &at, namespace, cluster, problems)
                    .unwrap_or_else(refused);
            if translated.weight != Some(0) {
                translated.weight = backend.weight.map(|w| u32::try_from(w).unwrap_or(0));
            }
            translated
        })
        .collect::<Vec<_>>();
    let redirects = rule.filters.iter().any(|f| f.kind == "RequestRedirect");
    if backend_refs.is_empty() && !redirects {
        // Nothing to forward to: 500, as the Gateway API says.
        backend_refs.push(refused());
    }
    Rule {
        matches,
        filters,
        backend_refs,
        timeouts: rule.timeouts.as_ref().map(|t| Timeouts {
            request: t.request.clone(),
            backend_request: t.backend_request.clone(),
        }),
        retry: rule.retry.as_ref().map(|r| Retry {
            attempts: r.attempts.map(|a| u32::try_from(a).unwrap_or(0)),
            codes: r
                .codes
                .iter()
                .map(|c| u16::try_from(*c).unwrap_or(0))
                .collect(),
            backoff: r.backoff.clone(),
        }),
        limits: None,
    }
}

fn translate_match(matched: &HttpRouteMatch, here: &str, problems: &mut Problems) -> Match {
    let path = matched.path.as_ref().map(|p| PathMatch {
        kind: match p.kind.as_deref().unwrap_or("PathPrefix") {
            "Exact" => PathMatchType::Exact,
            "PathPrefix" => PathMatchType::PathPrefix,
            "RegularExpression" => PathMatchType::RegularExpression,
            other => {
                problems.unsupported(
                    &format!("{here}.path.type"),
                    format!("{other} is not supported."),
                );
                PathMatchType::PathPrefix
            }
        },
        value: p.value.clone().unwrap_or_else(|| "/".to_owned()),
    });
    let mut values = |list: &[super::types::HttpValueMatch], field: &str| -> Vec<ValueMatch> {
        list.iter()
            .enumerate()
            .map(|(i, v)| ValueMatch {
                kind: match v.kind.as_deref().unwrap_or("Exact") {
                    "Exact" => ValueMatchType::Exact,
                    "RegularExpression" => ValueMatchType::RegularExpression,
                    other => {
                        problems.unsupported(
                            &format!("{here}.{field}[{i}].type"),
                            format!("{other} is not supported."),
                        );
                        ValueMatchType::Exact
                    }
                },
                name: v.name.clone(),
                value: v.value.clone(),
            })
            .collect()
    };
    let headers = values(&matched.headers, "headers");
    let query_params = values(&matched.query_params, "queryParams");
    Match {
        path,
        headers,
        query_params,
        method: matched.method.clone(),
    }
}

fn translate_filter(
    filter: &HttpRouteFilter,
    here: &str,
    namespace: &str,
    cluster: &Cluster<'_>,
    problems: &mut Problems,
) -> Option<Filter> {
    let modifier = |m: &HttpHeaderFilter| HeaderModifier {
        set: m
            .set
            .iter()
            .map(|h| Header {
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect(),
        add: m
            .add
            .iter()
            .map(|h| Header {
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect(),
        remove: m.remove.clone(),
    };
    let mut missing = |field: &str| {
        problems.unsupported(
            &format!("{here}.{field}"),
            format!("{} needs {field}.", filter.kind),
        );
    };
    match filter.kind.as_str() {
        "RequestHeaderModifier" => {
            let Some(m) = &filter.request_header_modifier else {
                missing("requestHeaderModifier");
                return None;
            };
            Some(Filter {
                request_header_modifier: Some(modifier(m)),
                ..Filter::of(FilterType::RequestHeaderModifier)
            })
        }
        "ResponseHeaderModifier" => {
            let Some(m) = &filter.response_header_modifier else {
                missing("responseHeaderModifier");
                return None;
            };
            Some(Filter {
                response_header_modifier: Some(modifier(m)),
                ..Filter::of(FilterType::ResponseHeaderModifier)
            })
        }
        "RequestRedirect" => {
            let Some(r) = &filter.request_redirect else {
                missing("requestRedirect");
                return None;
            };
            let path = r
                .path
                .as_ref()
                .and_then(|p| path_modifier(p, &format!("{here}.requestRedirect.path"), problems));
            Some(Filter {
                request_redirect: Some(RequestRedirect {
                    scheme: r.scheme.clone(),
                    hostname: r.hostname.clone(),
                    port: r.port.map(|p| u16::try_from(p).unwrap_or(0)),
                    path,
                    status_code: r.status_code.map(|c| u16::try_from(c).unwrap_or(0)),
                }),
                ..Filter::of(FilterType::RequestRedirect)
            })
        }
        "URLRewrite" => {
            let Some(r) = &filter.url_rewrite else {
                missing("urlRewrite");
                return None;
            };
            let path = r
                .path
                .as_ref()
                .and_then(|p| path_modifier(p, &format!("{here}.urlRewrite.path"), problems));
            Some(Filter {
                url_rewrite: Some(UrlRewrite {
                    hostname: r.hostname.clone(),
                    path,
                }),
                ..Filter::of(FilterType::UrlRewrite)
            })
        }
        "RequestMirror" => {
            let Some(m) = &filter.request_mirror else {
                missing("requestMirror");
                return None;
            };
            let whole = m.percent.is_none_or(|p| p == 100)
                && m.fraction
                    .as_ref()
                    .is_none_or(|f| f.numerator == f.denominator.unwrap_or(100));
            if !whole {
                problems.unsupported(
                    &format!("{here}.requestMirror"),
                    "Ceryx mirrors every request: a percent or fraction below the whole is not supported.",
                );
            }
            let backend = service_backend(
                &m.backend_ref,
                &format!("{here}.requestMirror.backendRef"),
                namespace,
                cluster,
                problems,
            )?;
            Some(Filter {
                request_mirror: Some(RequestMirror {
                    backend_ref: backend,
                }),
                ..Filter::of(FilterType::RequestMirror)
            })
        }
        other => {
            problems.unsupported(
                &format!("{here}.type"),
                format!("Ceryx does not support the {other} filter."),
            );
            None
        }
    }
}

fn path_modifier(
    path: &HttpPathModifier,
    here: &str,
    problems: &mut Problems,
) -> Option<PathModifier> {
    let kind = match path.kind.as_str() {
        "ReplaceFullPath" => PathModifierType::ReplaceFullPath,
        "ReplacePrefixMatch" => PathModifierType::ReplacePrefixMatch,
        other => {
            problems.unsupported(
                &format!("{here}.type"),
                format!("{other} is not supported."),
            );
            return None;
        }
    };
    Some(PathModifier {
        kind,
        replace_full_path: path.replace_full_path.clone(),
        replace_prefix_match: path.replace_prefix_match.clone(),
    })
}

/// A backend that is never chosen, in place of one that cannot be used: its share of
/// requests goes to the others, and a rule left with no other is answered 500 (the
/// Gateway API's answer for a rule with no usable backend).
fn refused() -> BackendRef {
    BackendRef {
        url: Some(UNROUTED.to_owned()),
        weight: Some(0),
        ..Default::default()
    }
}

/// A Service backend in the route model, or `None` when it cannot be used (another
/// kind, or another namespace without a ReferenceGrant): the problem is recorded. A
/// Service that does not exist is kept (it resolves to no endpoints) and reported.
fn service_backend(
    reference: &BackendObjectRef,
    here: &str,
    route_namespace: &str,
    cluster: &Cluster<'_>,
    problems: &mut Problems,
) -> Option<BackendRef> {
    let group = reference.group.as_deref().unwrap_or_default();
    let kind = reference.kind.as_deref().unwrap_or("Service");
    if !(group.is_empty() || group == "core") || kind != "Service" {
        problems.unresolved(
            "InvalidKind",
            here,
            format!("Ceryx sends to Services only, not {kind}."),
        );
        return None;
    }
    let namespace = reference.namespace.as_deref().unwrap_or(route_namespace);
    if namespace != route_namespace
        && !cluster.granted(
            "HTTPRoute",
            route_namespace,
            namespace,
            ("", "Service", &reference.name),
        )
    {
        problems.unresolved(
            "RefNotPermitted",
            here,
            format!(
                "Service {namespace}/{} is in another namespace and no ReferenceGrant there allows it.",
                reference.name
            ),
        );
        return None;
    }
    let Some(port) = reference
        .port
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
    else {
        problems.unsupported(&format!("{here}.port"), "A Service backend needs a port.");
        return None;
    };
    if !(cluster.service_exists)(namespace, &reference.name) {
        problems.unresolved(
            "BackendNotFound",
            here,
            format!("Service {namespace}/{} does not exist.", reference.name),
        );
    }
    Some(BackendRef {
        service: Some(ServiceRef {
            name: reference.name.clone(),
            port,
            namespace: Some(namespace.to_owned()),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn object<T: serde::de::DeserializeOwned>(value: Value) -> Arc<T> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn classes() -> Vec<Arc<GatewayClass>> {
        vec![
            object(json!({"metadata": {"name": "ceryx"},
                          "spec": {"controllerName": CONTROLLER_NAME}})),
            object(json!({"metadata": {"name": "other"},
                          "spec": {"controllerName": "example.com/other"}})),
        ]
    }

    /// `infra/gw` (ours): `http` on 80 for `*.example.com` admitting every namespace,
    /// `https` on 443 for `secure.example.com` (same namespace only) with the Secret
    /// `infra/secure`, and `team` on 8080 admitting namespaces labelled `team=a`.
    /// `infra/foreign` is of another class.
    fn gateways() -> Vec<Arc<Gateway>> {
        vec![
            object(json!({
                "metadata": {"name": "gw", "namespace": "infra"},
                "spec": {"gatewayClassName": "ceryx", "listeners": [
                    {"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.com",
                     "allowedRoutes": {"namespaces": {"from": "All"}}},
                    {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "secure.example.com",
                     "tls": {"certificateRefs": [{"name": "secure"}]}},
                    {"name": "team", "port": 8080, "protocol": "HTTP",
                     "allowedRoutes": {"namespaces": {"from": "Selector",
                        "selector": {"matchLabels": {"team": "a"}}}}}]}})),
            object(json!({
                "metadata": {"name": "foreign", "namespace": "infra"},
                "spec": {"gatewayClassName": "other", "listeners": [
                    {"name": "http", "port": 80, "protocol": "HTTP"}]}})),
        ]
    }

    fn route(namespace: &str, spec: Value) -> HttpRoute {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": namespace, "generation": 1,
                         "creationTimestamp": "2026-01-02T03:04:05Z"},
            "spec": spec,
        }))
        .unwrap()
    }

    struct World {
        classes: Vec<Arc<GatewayClass>>,
        gateways: Vec<Arc<Gateway>>,
        grants: Vec<Arc<ReferenceGrant>>,
    }

    impl World {
        fn new() -> World {
            World {
                classes: classes(),
                gateways: gateways(),
                grants: Vec::new(),
            }
        }

        fn translate(&self, route: &HttpRoute) -> RouteTranslation {
            let labels = |ns: &str| {
                Some(BTreeMap::from([(
                    "team".to_owned(),
                    if ns == "team-a" { "a" } else { "b" }.to_owned(),
                )]))
            };
            let services = |ns: &str, name: &str| name != "missing" && ns != "nowhere";
            let secrets = |ns: &str, name: &str| (ns, name) == ("infra", "secure") || ns == "certs";
            translate(
                route,
                &Cluster {
                    controller: CONTROLLER_NAME,
                    classes: &self.classes,
                    gateways: &self.gateways,
                    grants: &self.grants,
                    namespace_labels: &labels,
                    service_exists: &services,
                    secret_exists: &secrets,
                },
            )
        }
    }

    fn verdict(v: &Verdict) -> (bool, &'static str) {
        (v.ok, v.reason)
    }

    fn hosts(t: &RouteTranslation) -> Vec<&str> {
        t.claims.iter().map(|c| c.host.as_str()).collect()
    }

    #[test]
    fn hostnames_intersect_as_the_gateway_api_says() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: [(Option<&str>, &[&str], &[&str]); 9] = [
            (None, &[], &["$wildcard"]),
            (None, &["a.example.com"], &["a.example.com"]),
            (Some("a.example.com"), &[], &["a.example.com"]),
            (
                Some("a.example.com"),
                &["a.example.com", "b.example.com"],
                &["a.example.com"],
            ),
            (
                Some("*.example.com"),
                &["a.example.com", "a.b.example.com", "example.com", "x.org"],
                &["a.example.com", "a.b.example.com"],
            ),
            (
                Some("a.example.com"),
                &["*.example.com"],
                &["a.example.com"],
            ),
            (
                Some("*.example.com"),
                &["*.a.example.com"],
                &["*.a.example.com"],
            ),
            (
                Some("*.a.example.com"),
                &["*.example.com"],
                &["*.a.example.com"],
            ),
            (
                Some("*.example.com"),
                &["*.example.org", "example.com"],
                &[],
            ),
        ];
        for (listener, route, expected) in cases {
            assert_eq!(
                hostnames(listener, &names(route)),
                names(expected),
                "{listener:?} {route:?}"
            );
        }
    }

    #[test]
    fn a_route_becomes_one_claim_per_served_host_with_its_rules() {
        let world = World::new();
        let route = route(
            "apps",
            json!({
            "parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "http"}],
            "hostnames": ["shop.example.com", "shop.example.org"],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/api"},
                              "headers": [{"name": "x-canary", "value": "1"}],
                              "queryParams": [{"type": "RegularExpression", "name": "v", "value": "[0-9]+"}],
                              "method": "GET"}],
                 "filters": [{"type": "RequestHeaderModifier",
                              "requestHeaderModifier": {"set": [{"name": "x-env", "value": "prod"}], "remove": ["x-debug"]}},
                             {"type": "URLRewrite", "urlRewrite": {"hostname": "internal",
                              "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}}],
                 "backendRefs": [{"name": "api-v1", "port": 8080, "weight": 90},
                                 {"name": "api-v2", "port": 8080, "weight": 10}],
                 "timeouts": {"request": "10s", "backendRequest": "2s"}},
                {"matches": [{"path": {"type": "Exact", "value": "/old"}}],
                 "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https",
                              "hostname": "new.example.com", "statusCode": 301,
                              "path": {"type": "ReplaceFullPath", "replaceFullPath": "/new"}}}]},
                {"backendRefs": [{"name": "web", "port": 80}],
                 "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shadow", "port": 80}}},
                             {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "x-served-by", "value": "ceryx"}]}}]}
            ]}),
        );
        let t = world.translate(&route);
        assert_eq!(t.parents.len(), 1);
        assert_eq!(verdict(&t.parents[0].accepted), (true, "Accepted"));
        assert_eq!(verdict(&t.parents[0].resolved), (true, "ResolvedRefs"));
        assert_eq!(hosts(&t), ["shop.example.com"]);
        assert_eq!(
            t.attached
                .iter()
                .map(|k| k.listener.as_str())
                .collect::<Vec<_>>(),
            ["http"]
        );
        let claim = &t.claims[0];
        assert_eq!(claim.origin.kind, "HTTPRoute");
        assert_eq!(
            (claim.origin.namespace.as_str(), claim.origin.name.as_str()),
            ("apps", "web")
        );
        assert_eq!(claim.origin.created, 1_767_323_045);
        assert_eq!(claim.tls, None);
        assert!(!claim.enforce_https);
        let expected: Vec<Rule> = serde_json::from_value(json!([
            {"matches": [{"path": {"type": "PathPrefix", "value": "/api"},
                          "headers": [{"type": "Exact", "name": "x-canary", "value": "1"}],
                          "queryParams": [{"type": "RegularExpression", "name": "v", "value": "[0-9]+"}],
                          "method": "GET"}],
             "filters": [{"type": "RequestHeaderModifier",
                          "requestHeaderModifier": {"set": [{"name": "x-env", "value": "prod"}], "remove": ["x-debug"]}},
                         {"type": "URLRewrite", "urlRewrite": {"hostname": "internal",
                          "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}}],
             "backendRefs": [{"service": {"name": "api-v1", "port": 8080}, "weight": 90},
                             {"service": {"name": "api-v2", "port": 8080}, "weight": 10}],
             "timeouts": {"request": "10s", "backendRequest": "2s"}},
            {"matches": [{"path": {"type": "Exact", "value": "/old"}}],
             "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https",
                          "hostname": "new.example.com", "statusCode": 301,
                          "path": {"type": "ReplaceFullPath", "replaceFullPath": "/new"}}}]},
            {"backendRefs": [{"service": {"name": "web", "port": 80}}],
             "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"service": {"name": "shadow", "port": 80}}}},
                         {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "x-served-by", "value": "ceryx"}]}}]}
        ]))
        .unwrap();
        // Service backends carry their namespace, which the CRD schema does not show.
        let mut expected = expected;
        for rule in &mut expected {
            for backend in rule.backends_mut() {
                backend.service.as_mut().unwrap().namespace = Some("apps".into());
            }
        }
        assert_eq!(claim.rules, expected);
    }

    #[test]
    fn listeners_admit_routes_by_namespace_kind_section_and_port() {
        let world = World::new();
        let attach = |namespace: &str, parent: Value, hostnames: Value| {
            let t = world.translate(&route(
                namespace,
                json!({
                "parentRefs": [parent], "hostnames": hostnames,
                "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}),
            ));
            (
                verdict(&t.parents[0].accepted),
                hosts(&t).iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            )
        };
        let gw = |extra: Value| {
            let mut parent = json!({"name": "gw", "namespace": "infra"});
            parent
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            parent
        };
        // `https` admits its own namespace only; `team` a selected one.
        assert_eq!(
            attach("apps", gw(json!({"sectionName": "https"})), json!([])),
            ((false, "NotAllowedByListeners"), vec![])
        );
        assert_eq!(
            attach("infra", gw(json!({"sectionName": "https"})), json!([])),
            ((true, "Accepted"), vec!["secure.example.com".into()])
        );
        assert_eq!(
            attach(
                "team-a",
                gw(json!({"sectionName": "team"})),
                json!(["t.example.net"])
            ),
            ((true, "Accepted"), vec!["t.example.net".into()])
        );
        assert_eq!(
            attach(
                "team-b",
                gw(json!({"sectionName": "team"})),
                json!(["t.example.net"])
            ),
            ((false, "NotAllowedByListeners"), vec![])
        );
        // By port, and a section or port the Gateway lacks.
        assert_eq!(
            attach(
                "team-a",
                gw(json!({"port": 8080})),
                json!(["t.example.net"])
            ),
            ((true, "Accepted"), vec!["t.example.net".into()])
        );
        assert_eq!(
            attach(
                "team-a",
                gw(json!({"sectionName": "team", "port": 80})),
                json!([])
            )
            .0,
            (false, "NoMatchingParent")
        );
        assert_eq!(
            attach("team-a", gw(json!({"sectionName": "nope"})), json!([])).0,
            (false, "NoMatchingParent")
        );
        // The whole Gateway: `http` (all namespaces) takes what `*.example.com` covers.
        assert_eq!(
            attach(
                "apps",
                gw(json!({})),
                json!(["a.example.com", "b.example.org"])
            ),
            ((true, "Accepted"), vec!["a.example.com".into()])
        );
        assert_eq!(
            attach(
                "apps",
                gw(json!({"sectionName": "http"})),
                json!(["b.example.org"])
            )
            .0,
            (false, "NoMatchingListenerHostname")
        );
        // A listener that admits other kinds only.
        let mut world = World::new();
        world.gateways = vec![object(json!({
            "metadata": {"name": "gw", "namespace": "apps"},
            "spec": {"gatewayClassName": "ceryx", "listeners": [
                {"name": "grpc", "port": 80, "protocol": "HTTP",
                 "allowedRoutes": {"kinds": [{"kind": "GRPCRoute"}]}}]}}))];
        let t = world.translate(&route("apps", json!({"parentRefs": [{"name": "gw"}]})));
        assert_eq!(
            verdict(&t.parents[0].accepted),
            (false, "NotAllowedByListeners")
        );
    }

    #[test]
    fn parents_of_other_classes_unknown_gateways_and_other_kinds_are_left_alone() {
        let world = World::new();
        let t = world.translate(&route(
            "infra",
            json!({
            "parentRefs": [{"name": "foreign"}, {"name": "absent"},
                           {"group": "", "kind": "Service", "name": "mesh"}],
            "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}),
        ));
        assert!(t.parents.is_empty());
        assert!(t.claims.is_empty());
        assert!(t.attached.is_empty());

        // Beside a parent of ours, only ours is judged.
        let t = world.translate(&route(
            "infra",
            json!({
            "parentRefs": [{"name": "foreign"}, {"name": "gw", "sectionName": "http"}],
            "hostnames": ["a.example.com"],
            "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}),
        ));
        assert_eq!(t.parents.len(), 1);
        assert_eq!(t.parents[0].parent_ref.name, "gw");
        assert_eq!(hosts(&t), ["a.example.com"]);
    }

    #[test]
    fn a_backend_in_another_namespace_needs_a_reference_grant() {
        let mut world = World::new();
        let spec = json!({
            "parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "http"}],
            "hostnames": ["a.example.com"],
            "rules": [{"backendRefs": [{"name": "web", "port": 80},
                                        {"name": "shared", "namespace": "backends", "port": 80, "weight": 3}]}]});
        let t = world.translate(&route("apps", spec.clone()));
        assert_eq!(verdict(&t.parents[0].accepted), (true, "Accepted"));
        assert_eq!(verdict(&t.parents[0].resolved), (false, "RefNotPermitted"));
        assert!(
            t.parents[0].resolved.message.contains("backends/shared"),
            "{}",
            t.parents[0].resolved.message
        );
        // The refused backend is never chosen; the other still serves.
        let backends = &t.claims[0].rules[0].backend_refs;
        assert_eq!(backends.len(), 2);
        assert_eq!(backends[0].service.as_ref().unwrap().name, "web");
        assert_eq!(backends[1], refused());

        // A grant for another name, or from another namespace, is not enough.
        world.grants = vec![
            object(json!({"metadata": {"name": "g1", "namespace": "backends"},
                          "spec": {"from": [{"group": GROUP, "kind": "HTTPRoute", "namespace": "apps"}],
                                   "to": [{"group": "", "kind": "Service", "name": "other"}]}})),
            object(json!({"metadata": {"name": "g2", "namespace": "backends"},
                          "spec": {"from": [{"group": GROUP, "kind": "HTTPRoute", "namespace": "elsewhere"}],
                                   "to": [{"group": "", "kind": "Service"}]}})),
        ];
        let t = world.translate(&route("apps", spec.clone()));
        assert_eq!(verdict(&t.parents[0].resolved), (false, "RefNotPermitted"));

        world.grants.push(object(
            json!({"metadata": {"name": "g3", "namespace": "backends"},
            "spec": {"from": [{"group": GROUP, "kind": "HTTPRoute", "namespace": "apps"}],
                     "to": [{"group": "", "kind": "Service", "name": "shared"}]}}),
        ));
        let t = world.translate(&route("apps", spec));
        assert_eq!(verdict(&t.parents[0].resolved), (true, "ResolvedRefs"));
        let backends = &t.claims[0].rules[0].backend_refs;
        assert_eq!(backends.len(), 2);
        assert_eq!(
            backends[1].service,
            Some(ServiceRef {
                name: "shared".into(),
                port: 80,
                namespace: Some("backends".into())
            })
        );
        assert_eq!(backends[1].weight, Some(3));
    }

    #[test]
    fn other_backend_kinds_and_missing_services_are_reported() {
        let world = World::new();
        let resolved = |backends: Value| {
            let t = world.translate(&route(
                "apps",
                json!({
                "parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "http"}],
                "hostnames": ["a.example.com"], "rules": [{"backendRefs": backends}]}),
            ));
            (
                verdict(&t.parents[0].resolved),
                t.claims[0].rules[0].backend_refs.clone(),
            )
        };
        // Another kind is never chosen: with no other backend, the rule answers 500.
        assert_eq!(
            resolved(json!([{"group": "example.com", "kind": "Bucket", "name": "b"}])),
            ((false, "InvalidKind"), vec![refused()])
        );
        // A missing Service is kept: it resolves to no endpoints until it exists.
        let (verdict, backends) = resolved(json!([{"name": "missing", "port": 80}]));
        assert_eq!(verdict, (false, "BackendNotFound"));
        assert_eq!(backends[0].service.as_ref().unwrap().name, "missing");
        // A rule with no backend at all answers 500 too, unless it redirects.
        assert_eq!(
            resolved(json!([])),
            ((true, "ResolvedRefs"), vec![refused()])
        );
    }

    #[test]
    fn what_ceryx_cannot_do_is_not_accepted() {
        let world = World::new();
        let accepted = |rule: Value| {
            let t = world.translate(&route(
                "apps",
                json!({
                "parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "http"}],
                "hostnames": ["a.example.com"], "rules": [rule]}),
            ));
            (
                verdict(&t.parents[0].accepted),
                t.parents[0].accepted.message.clone(),
                t.claims.len(),
            )
        };
        for (rule, at) in [
            (
                json!({"filters": [{"type": "CORS", "cors": {"allowOrigins": ["https://a"]}}]}),
                "spec.rules[0].filters[0].type",
            ),
            (
                json!({"filters": [{"type": "ExtensionRef", "extensionRef": {"group": "x", "kind": "Y", "name": "z"}}]}),
                "spec.rules[0].filters[0].type",
            ),
            (
                json!({"backendRefs": [{"name": "web", "port": 80, "filters": [{"type": "RequestHeaderModifier"}]}]}),
                "spec.rules[0].backendRefs[0].filters",
            ),
            (
                json!({"filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m", "port": 80}, "percent": 10}}]}),
                "spec.rules[0].filters[0].requestMirror",
            ),
            (
                json!({"matches": [{"headers": [{"name": "bad name", "value": "x"}]}]}),
                "spec.rules[0].matches[0].headers[0].name",
            ),
        ] {
            let (verdict, message, claims) = accepted(rule.clone());
            assert_eq!(verdict, (false, "UnsupportedValue"), "{rule}");
            assert!(message.starts_with(at), "{rule}: {message}");
            assert_eq!(claims, 0, "{rule}");
        }
    }

    #[test]
    fn an_https_listener_brings_its_certificate_and_a_grant_lets_it_live_elsewhere() {
        let mut world = World::new();
        let spec = json!({
            "parentRefs": [{"name": "gw", "sectionName": "https"}, {"name": "gw", "sectionName": "http"}],
            "hostnames": ["secure.example.com"],
            "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]});
        let t = world.translate(&route("infra", spec.clone()));
        assert_eq!(hosts(&t), ["secure.example.com"]);
        assert_eq!(
            t.claims[0].tls,
            Some(SecretRef {
                namespace: "infra".into(),
                name: "secure".into()
            })
        );
        assert_eq!(t.attached.len(), 2);

        let foreign = |world: &mut World| {
            world.gateways = vec![object(json!({
                "metadata": {"name": "gw", "namespace": "infra"},
                "spec": {"gatewayClassName": "ceryx", "listeners": [
                    {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "secure.example.com",
                     "tls": {"certificateRefs": [{"name": "shared", "namespace": "certs"}]}}]}}))];
        };
        foreign(&mut world);
        let t = world.translate(&route("infra", spec.clone()));
        // The route attaches (listener status tells of the certificate); no TLS for it.
        assert_eq!(verdict(&t.parents[0].accepted), (true, "Accepted"));
        assert_eq!(t.claims[0].tls, None);
        let refused = listener_certificate(
            &world.gateways[0],
            &world.gateways[0].spec.listeners[0],
            &world.grants,
            &|_, _| true,
        );
        assert_eq!(refused.unwrap_err().reason, "RefNotPermitted");

        world.grants = vec![object(
            json!({"metadata": {"name": "g", "namespace": "certs"},
            "spec": {"from": [{"group": GROUP, "kind": "Gateway", "namespace": "infra"}],
                     "to": [{"group": "", "kind": "Secret"}]}}),
        )];
        let t = world.translate(&route("infra", spec));
        assert_eq!(
            t.claims[0].tls,
            Some(SecretRef {
                namespace: "certs".into(),
                name: "shared".into()
            })
        );
    }
}
