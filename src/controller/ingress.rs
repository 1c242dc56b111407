//! `networking.k8s.io/v1` Ingresses of Ceryx's IngressClass, translated into claims:
//! hosts (exact and `*.` wildcards; none is Ceryx's `$wildcard`), `Exact` and `Prefix`
//! paths (`ImplementationSpecific` is `Prefix`, or a regular expression under
//! `use-regex`), `defaultBackend`, `tls`, and the ingress-nginx annotations users rely
//! on most. Any other `nginx.ingress.kubernetes.io/*` annotation is reported, never
//! silently ignored.

use super::claim::{Claim, Origin, SecretRef};
use super::endpoints::Index;
use super::hosts::Problem;
use crate::route::rules::{
    BackendRef, Filter, FilterType, Limits, Match, PathMatch, PathMatchType, PathModifier,
    PathModifierType, RequestRedirect, Rule, ServiceRef, Timeouts, UrlRewrite,
};
use crate::route::{WILDCARD, normalize_source};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The `spec.controller` of Ceryx's IngressClasses.
pub(crate) const CONTROLLER: &str = "ceryx.dev/ingress-controller";

/// The annotation that makes an IngressClass the default.
const DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";

/// The class annotation that predates `spec.ingressClassName` (still common).
const LEGACY_CLASS: &str = "kubernetes.io/ingress.class";

/// ingress-nginx's annotation prefix.
const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// The ingress-nginx annotations translated (without the prefix).
pub(crate) const SUPPORTED: [&str; 11] = [
    "ssl-redirect",
    "force-ssl-redirect",
    "permanent-redirect",
    "permanent-redirect-code",
    "rewrite-target",
    "use-regex",
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "backend-protocol",
];

/// Whether `ingress` is for the controller of IngressClass `class`: it names that class
/// (whose controller must be Ceryx's), or names none while that class is the default.
pub(crate) fn is_ours(ingress: &Ingress, classes: &[Arc<IngressClass>], class: &str) -> bool {
    let ours = classes
        .iter()
        .find(|c| c.name_any() == class)
        .filter(|c| c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER));
    let named = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| ingress.annotations().get(LEGACY_CLASS).map(String::as_str));
    match named {
        Some(named) => named == class && ours.is_some(),
        None => ours.is_some_and(|c| {
            c.annotations()
                .get(DEFAULT_CLASS)
                .is_some_and(|v| v == "true")
        }),
    }
}

/// What one Ingress asks for.
#[derive(Debug, Default)]
pub(crate) struct Translated {
    /// One claim per host.
    pub claims: Vec<Claim>,
    /// What could not be translated (Warning Events).
    pub problems: Vec<Problem>,
}

/// The annotations, by name without the prefix.
struct Annotations<'a>(BTreeMap<&'a str, &'a str>);

impl Annotations<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).copied()
    }

    fn is_true(&self, name: &str) -> bool {
        self.get(name) == Some("true")
    }
}

/// Translates an Ingress of ours into claims.
pub(crate) fn translate(ingress: &Ingress, origin: &Origin, index: &Index) -> Translated {
    let mut out = Translated::default();
    let annotations = Annotations(
        ingress
            .annotations()
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(NGINX)?, v.as_str())))
            .collect(),
    );
    for name in annotations.0.keys().filter(|n| !SUPPORTED.contains(n)) {
        out.problems.push(Problem {
            reason: "UnsupportedAnnotation",
            message: format!("Annotation {NGINX}{name} is not supported by Ceryx and is ignored"),
        });
    }
    let Some(spec) = &ingress.spec else {
        return out;
    };
    let options = Options::read(&annotations, &mut out.problems);

    // Host → rules, in the order the Ingress lists them.
    let mut hosts: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
    for rule in spec.rules.iter().flatten() {
        let host = match rule.host.as_deref() {
            None | Some("") => WILDCARD.to_owned(),
            Some(host) => match normalize_source(host) {
                Ok(host) => host,
                Err(e) => {
                    out.problems.push(invalid(format!("rules: {e}")));
                    continue;
                }
            },
        };
        let rules = hosts.entry(host).or_default();
        for path in rule.http.iter().flat_map(|h| &h.paths) {
            let value = path.path.clone().unwrap_or_else(|| "/".into());
            let Some(backend) = backend(&path.backend, &origin.namespace, index, &mut out.problems)
            else {
                continue;
            };
            match options.rule(&path.path_type, &value, backend) {
                Ok(rule) => rules.push(rule),
                Err(why) => out.problems.push(invalid(format!("path {value}: {why}"))),
            }
        }
    }
    if let Some(default) = &spec.default_backend
        && let Some(backend) = backend(default, &origin.namespace, index, &mut out.problems)
    {
        // Takes what no path takes, on every host of the Ingress (and on hosts no route
        // names, unless an older object says otherwise).
        hosts.entry(WILDCARD.to_owned()).or_default();
        for rules in hosts.values_mut() {
            rules.push(options.catch_all(backend.clone()));
        }
    }

    let mut tls: BTreeMap<String, SecretRef> = BTreeMap::new();
    for entry in spec.tls.iter().flatten() {
        let Some(secret) = &entry.secret_name else {
            continue;
        };
        for host in entry.hosts.iter().flatten() {
            if let Ok(host) = normalize_source(host) {
                tls.entry(host).or_insert_with(|| SecretRef {
                    namespace: origin.namespace.clone(),
                    name: secret.clone(),
                });
            }
        }
    }
    for (host, rules) in hosts {
        if rules.is_empty() {
            continue;
        }
        let tls = tls.get(&host).cloned();
        out.claims.push(Claim {
            origin: origin.clone(),
            enforce_https: options.force_https || (tls.is_some() && options.ssl_redirect),
            backend_tls: options.backend_tls,
            host,
            rules,
            tls,
        });
    }
    out
}

fn invalid(message: String) -> Problem {
    Problem {
        reason: "InvalidIngress",
        message,
    }
}

/// A path's Service backend, with a named port resolved to its number.
fn backend(
    backend: &IngressBackend,
    namespace: &str,
    index: &Index,
    problems: &mut Vec<Problem>,
) -> Option<BackendRef> {
    let Some(service) = &backend.service else {
        problems.push(invalid(
            "a resource backend is not supported: only Services".into(),
        ));
        return None;
    };
    let port = service.port.as_ref();
    let number = match (
        port.and_then(|p| p.number),
        port.and_then(|p| p.name.as_deref()),
    ) {
        (Some(number), _) => u16::try_from(number).ok(),
        (None, Some(name)) => {
            let number = index.port_number(namespace, &service.name, name);
            if number.is_none() {
                problems.push(Problem {
                    reason: "BackendNotFound",
                    message: format!(
                        "Service {namespace}/{} has no port named {name}: its paths are not served",
                        service.name
                    ),
                });
                return None;
            }
            number
        }
        (None, None) => None,
    };
    let Some(port) = number.filter(|n| *n != 0) else {
        problems.push(invalid(format!("Service {} needs a port", service.name)));
        return None;
    };
    Some(BackendRef {
        service: Some(ServiceRef {
            name: service.name.clone(),
            port,
            namespace: Some(namespace.to_owned()),
        }),
        ..BackendRef::default()
    })
}

/// The annotations that shape every rule of the Ingress.
struct Options {
    ssl_redirect: bool,
    force_https: bool,
    backend_tls: bool,
    use_regex: bool,
    /// `permanent-redirect`: every path answers with this redirect.
    redirect: Option<RequestRedirect>,
    rewrite: Option<String>,
    timeouts: Option<Timeouts>,
    limits: Option<Limits>,
}

impl Options {
    fn read(annotations: &Annotations<'_>, problems: &mut Vec<Problem>) -> Options {
        let mut bad = |name: &str, why: &str| {
            problems.push(Problem {
                reason: "InvalidAnnotation",
                message: format!("Annotation {NGINX}{name}: {why}; ignored"),
            })
        };
        let redirect = annotations.get("permanent-redirect").and_then(|url| {
            let code = annotations
                .get("permanent-redirect-code")
                .map_or(Some(301), |c| {
                    c.parse()
                        .ok()
                        .filter(|c| [301, 302, 303, 307, 308].contains(c))
                });
            let redirect = code.and_then(|code| redirect_to(url, code));
            if redirect.is_none() {
                bad(
                    "permanent-redirect",
                    "needs an absolute http(s) URL and a redirect code",
                );
            }
            redirect
        });
        let backend_tls = match annotations
            .get("backend-protocol")
            .map(str::to_ascii_uppercase)
        {
            None => false,
            Some(p) if p == "HTTP" => false,
            Some(p) if p == "HTTPS" => true,
            Some(_) => {
                bad(
                    "backend-protocol",
                    "Ceryx speaks HTTP and HTTPS to backends",
                );
                false
            }
        };
        // ingress-nginx's read timeout bounds the wait for the response too; Ceryx's rule
        // timeout is the wait for the response head (CERYX_UPSTREAM_RESPONSE_TIMEOUT
        // bounds the body's pauses).
        let read = annotations.get("proxy-read-timeout").and_then(|t| {
            let seconds = t.parse::<u32>().ok().filter(|s| *s > 0);
            if seconds.is_none() {
                bad("proxy-read-timeout", "must be a number of seconds");
            }
            seconds
        });
        let body = annotations.get("proxy-body-size").and_then(|size| {
            let parsed = crate::route::rules::parse_size(size);
            if parsed.is_err() {
                bad("proxy-body-size", "must be a size like 8m, 512k or 0");
            }
            parsed.ok().map(|_| size.to_owned())
        });
        for name in ["proxy-connect-timeout", "proxy-send-timeout"] {
            if annotations.get(name).is_some() {
                problems.push(Problem {
                    reason: "UnsupportedAnnotation",
                    message: format!(
                        "Annotation {NGINX}{name} is not applied per Ingress: the proxy's own setting applies (see the README)"
                    ),
                });
            }
        }
        Options {
            ssl_redirect: annotations.get("ssl-redirect") != Some("false"),
            force_https: annotations.is_true("force-ssl-redirect"),
            backend_tls,
            use_regex: annotations.is_true("use-regex"),
            redirect,
            rewrite: annotations.get("rewrite-target").map(str::to_owned),
            timeouts: read.map(|s| Timeouts {
                request: None,
                backend_request: Some(format!("{s}s")),
            }),
            limits: body.map(|size| Limits {
                request_body: Some(size),
            }),
        }
    }

    /// The rule of one path.
    fn rule(&self, path_type: &str, path: &str, backend: BackendRef) -> Result<Rule, String> {
        let regex = self.use_regex || (self.rewrite.is_some() && path.contains(['(', '$', '^']));
        let mut filters = Vec::new();
        let kind = match path_type {
            "Exact" => PathMatchType::Exact,
            "Prefix" => PathMatchType::PathPrefix,
            _ if regex => PathMatchType::RegularExpression,
            _ => PathMatchType::PathPrefix,
        };
        let (kind, value) = match (&self.rewrite, kind) {
            (Some(target), PathMatchType::RegularExpression) => {
                let (prefix, replacement) = capture_rewrite(path, target).ok_or(
                    "rewrite-target: only the form `<prefix>(/|$)(.*)` → `<path>/$2` is supported",
                )?;
                filters.push(rewrite(replacement));
                (PathMatchType::PathPrefix, prefix)
            }
            (Some(target), PathMatchType::PathPrefix) => {
                filters.push(rewrite(target.clone()));
                (kind, path.to_owned())
            }
            // ingress-nginx regex locations are case-insensitive and anchored at the
            // start only.
            (_, PathMatchType::RegularExpression) => (kind, format!("(?i){path}.*")),
            _ => (kind, path.to_owned()),
        };
        let mut rule = Rule {
            matches: vec![Match {
                path: Some(PathMatch { kind, value }),
                ..Match::default()
            }],
            filters,
            backend_refs: vec![backend],
            timeouts: self.timeouts.clone(),
            limits: self.limits.clone(),
            ..Rule::default()
        };
        self.redirect_all(&mut rule);
        Ok(rule)
    }

    /// The rule of `defaultBackend`: every path no other rule takes.
    fn catch_all(&self, backend: BackendRef) -> Rule {
        let mut rule = Rule {
            backend_refs: vec![backend],
            timeouts: self.timeouts.clone(),
            limits: self.limits.clone(),
            ..Rule::default()
        };
        self.redirect_all(&mut rule);
        rule
    }

    fn redirect_all(&self, rule: &mut Rule) {
        if let Some(redirect) = &self.redirect {
            rule.filters = vec![Filter {
                request_redirect: Some(redirect.clone()),
                ..Filter::of(FilterType::RequestRedirect)
            }];
            rule.backend_refs.clear();
        }
    }
}

fn rewrite(path: String) -> Filter {
    Filter {
        url_rewrite: Some(UrlRewrite {
            hostname: None,
            path: Some(PathModifier {
                kind: PathModifierType::ReplacePrefixMatch,
                replace_full_path: None,
                replace_prefix_match: Some(path),
            }),
        }),
        ..Filter::of(FilterType::UrlRewrite)
    }
}

/// The common capture-group rewrite: path `/app(/|$)(.*)` with target `/$2` (or
/// `/base/$2`) strips (or replaces) the prefix `/app`. Returns the prefix and what
/// replaces it.
fn capture_rewrite(path: &str, target: &str) -> Option<(String, String)> {
    let prefix = path.strip_suffix("(/|$)(.*)")?;
    if prefix.is_empty()
        || !prefix.starts_with('/')
        || prefix.contains(['(', ')', '$', '*', '^', '[', '\\', '?', '+', '|'])
    {
        return None;
    }
    let base = target.strip_suffix("$2")?.trim_end_matches('/');
    Some((
        prefix.to_owned(),
        if base.is_empty() {
            "/".into()
        } else {
            base.to_owned()
        },
    ))
}

/// A `permanent-redirect` URL as a redirect filter.
fn redirect_to(url: &str, code: u16) -> Option<RequestRedirect> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str().filter(|s| *s == "http" || *s == "https")?;
    let path = uri.path_and_query().map(|p| p.as_str().to_owned());
    Some(RequestRedirect {
        scheme: Some(scheme.to_owned()),
        hostname: Some(uri.host()?.to_owned()),
        port: uri.port_u16(),
        path: path.map(|p| PathModifier {
            kind: PathModifierType::ReplaceFullPath,
            replace_full_path: Some(p),
            replace_prefix_match: None,
        }),
        status_code: Some(code),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_capture_rewrite_becomes_a_prefix_replacement() {
        assert_eq!(
            capture_rewrite("/app(/|$)(.*)", "/$2"),
            Some(("/app".into(), "/".into()))
        );
        assert_eq!(
            capture_rewrite("/app(/|$)(.*)", "/v2/$2"),
            Some(("/app".into(), "/v2".into()))
        );
        assert_eq!(capture_rewrite("/a(.*)/b(/|$)(.*)", "/$2"), None);
        assert_eq!(capture_rewrite("/app(/|$)(.*)", "/$1"), None);
    }
}
