//! Every claim of every Ingress and HTTPRoute merged into the routes the store holds:
//! claims on one host are merged (paths of several objects served side by side, as
//! ingress-nginx does), a host and match claimed twice goes to the older object, and
//! each Service backend is resolved to its ready endpoints. Pure: the runtime that
//! watches, writes and reports is in [`super::sync`].

use super::claim::{Claim, Origin, SecretRef};
use super::endpoints::Index;
use crate::route::rules::{self, Backends, Match, PathMatch, PathMatchType, Rule, ServiceRef};
use crate::route::{Route, Settings, UNROUTED};
use std::collections::{BTreeMap, BTreeSet};

/// The owner recorded in the store for merged hosts (with `@<install>`): one owner per
/// install, whichever objects contribute, so a host never changes hands between them.
pub(crate) const OWNER: &str = "hosts";

/// A problem an object is told about (an Event; a condition where its kind has them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Problem {
    /// `HostConflict`, `BackendNotFound`, `NoReadyEndpoints`, `InvalidRules`.
    pub reason: &'static str,
    /// What happened, in words.
    pub message: String,
}

/// A merged host.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Host {
    /// The route written for it.
    pub route: Route,
    /// Its certificate's Secret (the oldest object's that names one).
    pub tls: Option<SecretRef>,
    /// The objects whose rules it serves.
    pub origins: BTreeSet<Origin>,
}

/// What the merge arrived at.
#[derive(Debug, Default)]
pub(crate) struct Merged {
    /// Route per host.
    pub hosts: BTreeMap<String, Host>,
    /// Per object, what went wrong (objects without problems are absent).
    pub problems: BTreeMap<Origin, BTreeSet<Problem>>,
}

impl Merged {
    /// Records a problem of `origin`.
    pub(crate) fn report(&mut self, origin: &Origin, reason: &'static str, message: String) {
        self.problems
            .entry(origin.clone())
            .or_default()
            .insert(Problem { reason, message });
    }
}

/// Merges `claims`, resolving Service backends through `index`.
pub(crate) fn merge(mut claims: Vec<Claim>, index: &Index) -> Merged {
    claims.sort_by(|a, b| a.origin.cmp(&b.origin));
    let mut by_host: BTreeMap<String, Vec<Claim>> = BTreeMap::new();
    for claim in claims {
        by_host.entry(claim.host.clone()).or_default().push(claim);
    }
    let mut merged = Merged::default();
    for (host, claims) in by_host {
        if let Some(built) = merge_host(&host, claims, index, &mut merged) {
            merged.hosts.insert(host, built);
        }
    }
    merged
}

/// One host's claims, oldest first, into its route.
fn merge_host(host: &str, claims: Vec<Claim>, index: &Index, merged: &mut Merged) -> Option<Host> {
    // Which object holds each match, by its canonical form.
    let mut taken: BTreeMap<String, Origin> = BTreeMap::new();
    let mut rules = Vec::new();
    let mut origins = BTreeSet::new();
    let (mut enforce_https, mut tls) = (false, None);
    for claim in claims {
        let mut contributed = false;
        for mut rule in claim.rules {
            let matches = if rule.matches.is_empty() {
                vec![Match::default()]
            } else {
                std::mem::take(&mut rule.matches)
            };
            let mut kept = Vec::new();
            for matched in matches {
                let key = match_key(&matched);
                match taken.get(&key) {
                    Some(holder) if *holder != claim.origin => merged.report(
                        &claim.origin,
                        "HostConflict",
                        format!(
                            "{} on host {host} is served by {holder}, which is older",
                            describe(&matched)
                        ),
                    ),
                    _ => {
                        taken.insert(key, claim.origin.clone());
                        kept.push(matched);
                    }
                }
            }
            if kept.is_empty() {
                continue;
            }
            rule.matches = kept;
            resolve(&mut rule, claim.backend_tls, index, &claim.origin, merged);
            rules.push(rule);
            contributed = true;
        }
        if contributed {
            enforce_https |= claim.enforce_https;
            if tls.is_none() {
                tls = claim.tls.clone();
            }
            origins.insert(claim.origin);
        }
    }
    if rules.is_empty() {
        return None;
    }
    if rules.len() > rules::MAX_RULES {
        for origin in &origins {
            merged.report(
                origin,
                "InvalidRules",
                format!(
                    "Host {host} has {} rules from all its objects; the first {} (oldest objects first) are served",
                    rules.len(),
                    rules::MAX_RULES
                ),
            );
        }
        rules.truncate(rules::MAX_RULES);
    }
    let settings = Settings {
        enforce_https,
        ..Settings::default()
    };
    let checked = Route::new(host, UNROUTED, settings).map_err(|e| e.to_string());
    let checked = checked.and_then(|mut route| {
        rules::validate(&rules, Backends::Stored).map_err(|e| e.to_string())?;
        route.rules = rules;
        Ok(route)
    });
    match checked {
        Ok(route) => Some(Host {
            route,
            tls,
            origins,
        }),
        Err(why) => {
            for origin in &origins {
                merged.report(origin, "InvalidRules", format!("Host {host}: {why}"));
            }
            None
        }
    }
}

/// Resolves the rule's Service backends (mirrors included) to their endpoints: a
/// Service that is missing or has no ready endpoint stays named with none, and the
/// proxy answers its share of requests with 503.
fn resolve(rule: &mut Rule, tls: bool, index: &Index, origin: &Origin, merged: &mut Merged) {
    for backend in rule.backends_mut() {
        match index.fill(backend, &origin.namespace, tls) {
            None => {}
            Some(Err(e)) => merged.report(origin, "BackendNotFound", e.to_string()),
            Some(Ok(())) if backend.endpoints.is_empty() => {
                let service = backend
                    .service
                    .as_ref()
                    .map(service_name)
                    .unwrap_or_default();
                merged.report(
                    origin,
                    "NoReadyEndpoints",
                    format!(
                        "Service {service} has no ready endpoints: its requests are answered 503"
                    ),
                );
            }
            Some(Ok(())) => {}
        }
    }
}

/// `<namespace>/<name>` of a Service reference whose namespace is set.
fn service_name(service: &ServiceRef) -> String {
    format!(
        "{}/{}",
        service.namespace.as_deref().unwrap_or_default(),
        service.name
    )
}

/// A match in canonical form: two objects asking for the same requests collide.
fn match_key(matched: &Match) -> String {
    let mut matched = matched.clone();
    if matched.path.is_none() {
        matched.path = Some(PathMatch {
            kind: PathMatchType::PathPrefix,
            value: "/".into(),
        });
    }
    if let Some(path) = &mut matched.path
        && path.kind == PathMatchType::PathPrefix
        && path.value.len() > 1
    {
        path.value = path.value.trim_end_matches('/').to_owned();
    }
    matched.headers.sort_by(|a, b| {
        a.name
            .to_ascii_lowercase()
            .cmp(&b.name.to_ascii_lowercase())
    });
    matched.query_params.sort_by(|a, b| a.name.cmp(&b.name));
    serde_json::to_string(&matched).unwrap_or_default()
}

/// A match in words, for a conflict message.
fn describe(matched: &Match) -> String {
    match &matched.path {
        Some(path) => format!("Path {} {:?}", path.value, path.kind),
        None => "Path / PathPrefix".into(),
    }
}
