//! The status Ceryx writes on Gateway API objects, as pure functions of what it knows:
//! GatewayClass (`Accepted`, `SupportedVersion`, features), Gateway (`Accepted`,
//! `Programmed`, addresses, one entry per listener) and HTTPRoute parents. Every
//! condition carries the object's `observedGeneration`, and keeps its
//! `lastTransitionTime` while its status stays the same, as the spec requires.

use super::translate::{self, ParentOutcome, Verdict};
use super::types::{
    GROUP, Gateway, GatewayAddress, GatewayClass, GatewayClassStatus, GatewayStatus,
    HttpRouteStatus, Listener, ListenerStatus, ReferenceGrant, RouteGroupKind, RouteParentStatus,
    SupportedFeature,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The Gateway API minor releases whose CRDs Ceryx knows (`v1.<minor>.*`): the pinned
/// one (`scripts/gateway-api-crds`) and the earlier ones that serve `v1` of every kind
/// it reads.
const SUPPORTED_MINORS: std::ops::RangeInclusive<u32> = 5..=7;

/// The conformance features Ceryx implements, in the spec's names (sorted).
const FEATURES: [&str; 20] = [
    "Gateway",
    "HTTPRoute",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendTimeout",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteSchemeRedirect",
    "ReferenceGrant",
    "GatewayPort8080",
];

/// The condition `type_` with `verdict`, keeping the transition time of the same
/// condition in `previous` when its status has not changed.
pub(crate) fn condition(
    type_: &str,
    verdict: &Verdict,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let status = if verdict.ok { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: verdict.reason.into(),
        message: verdict.message.clone(),
        observed_generation: generation,
        last_transition_time: since.unwrap_or_else(|| now.clone()),
    }
}

/// A class of ours: `Accepted` unless it asks for parameters (Ceryx takes none), and
/// `SupportedVersion` from the `gateway.networking.k8s.io/bundle-version` annotation of
/// each Gateway API CRD in the cluster (`None` for a CRD without it). An unknown version
/// is served as well as it can be (Accepted stays True), as the spec allows.
pub(crate) fn gateway_class_status(
    class: &GatewayClass,
    bundle_versions: &[Option<String>],
    now: &Time,
) -> GatewayClassStatus {
    let generation = class.metadata.generation;
    let previous = class
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let accepted = if class.spec.parameters_ref.is_some() {
        Verdict::no(
            "InvalidParameters",
            "Ceryx takes no parameters: remove spec.parametersRef.",
        )
    } else {
        Verdict::yes("Accepted", "Ceryx serves Gateways of this class.")
    };
    let unsupported: Vec<&str> = bundle_versions
        .iter()
        .map(|v| v.as_deref().unwrap_or("(none)"))
        .filter(|v| !supported_version(v))
        .collect();
    let versions = if unsupported.is_empty() {
        Verdict::yes(
            "SupportedVersion",
            "The Gateway API CRDs in the cluster are of a supported version.",
        )
    } else {
        let mut found = unsupported;
        found.sort_unstable();
        found.dedup();
        Verdict::no(
            "UnsupportedVersion",
            format!(
                "Gateway API CRDs of bundle version {} found; Ceryx supports v1.{}.x to v1.{}.x.",
                found.join(", "),
                SUPPORTED_MINORS.start(),
                SUPPORTED_MINORS.end()
            ),
        )
    };
    GatewayClassStatus {
        conditions: vec![
            condition("Accepted", &accepted, generation, previous, now),
            condition("SupportedVersion", &versions, generation, previous, now),
        ],
        supported_features: {
            let mut names = FEATURES.to_vec();
            names.sort_unstable();
            names
                .into_iter()
                .map(|name| SupportedFeature { name: name.into() })
                .collect()
        },
    }
}

fn supported_version(version: &str) -> bool {
    let minor = version
        .strip_prefix("v1.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|minor| minor.parse::<u32>().ok());
    minor.is_some_and(|m| SUPPORTED_MINORS.contains(&m))
}

/// What a Gateway's status depends on besides the Gateway.
pub(crate) struct GatewayContext<'a> {
    /// Where the proxy is reachable (the same addresses Ingresses get); none yet means
    /// not `Programmed`.
    pub addresses: &'a [String],
    /// Every ReferenceGrant, for certificates in other namespaces.
    pub grants: &'a [Arc<ReferenceGrant>],
    /// Whether a usable `kubernetes.io/tls` Secret exists (namespace, name).
    pub secret_exists: &'a dyn Fn(&str, &str) -> bool,
    /// Routes attached to each listener, by listener name (from the translation).
    pub attached: &'a BTreeMap<String, i32>,
}

/// The status of a Gateway of ours.
pub(crate) fn gateway_status(
    gateway: &Gateway,
    ctx: &GatewayContext<'_>,
    now: &Time,
) -> GatewayStatus {
    let generation = gateway.metadata.generation;
    let current = gateway.status.as_ref();
    let previous = current.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let conflicts = conflicts(&gateway.spec.listeners);
    let mut listeners = Vec::with_capacity(gateway.spec.listeners.len());
    let mut valid = 0;
    for (i, listener) in gateway.spec.listeners.iter().enumerate() {
        let before = current
            .and_then(|s| s.listeners.iter().find(|l| l.name == listener.name))
            .map(|l| l.conditions.as_slice())
            .unwrap_or_default();
        let outcome = listener_outcome(gateway, listener, ctx, conflicts[i]);
        if outcome.accepted.ok && outcome.programmed.ok {
            valid += 1;
        }
        let conflicted = match &outcome.conflicted {
            Some(reason) => Verdict::yes(
                reason,
                "Another listener has the same port and host name, or the same port and another protocol.",
            ),
            None => Verdict::no("NoConflicts", "No conflicts."),
        };
        listeners.push(ListenerStatus {
            name: listener.name.clone(),
            supported_kinds: outcome.kinds,
            attached_routes: ctx.attached.get(&listener.name).copied().unwrap_or(0),
            conditions: vec![
                condition("Accepted", &outcome.accepted, generation, before, now),
                condition("ResolvedRefs", &outcome.resolved, generation, before, now),
                condition("Programmed", &outcome.programmed, generation, before, now),
                condition("Conflicted", &conflicted, generation, before, now),
            ],
        });
    }

    let total = gateway.spec.listeners.len();
    let unsupported_type = gateway.spec.addresses.iter().find(|a| {
        a.kind
            .as_deref()
            .is_some_and(|k| k != "IPAddress" && k != "Hostname")
    });
    let unusable = gateway
        .spec
        .addresses
        .iter()
        .find(|a| !ctx.addresses.contains(&a.value));
    let accepted = if let Some(address) = unsupported_type {
        Verdict::no(
            "UnsupportedAddress",
            format!(
                "Address type {} is not supported: Ceryx serves on its proxy's addresses.",
                address.kind.as_deref().unwrap_or_default()
            ),
        )
    } else if total > 0 && valid == 0 {
        Verdict::no("ListenersNotValid", "No listener is valid.")
    } else if valid < total {
        Verdict::yes(
            "ListenersNotValid",
            format!("{} of {total} listeners are not valid.", total - valid),
        )
    } else {
        Verdict::yes("Accepted", "Ceryx serves this Gateway.")
    };
    let programmed = if !accepted.ok {
        Verdict::no("Invalid", "The Gateway is not accepted.")
    } else if let Some(address) = unusable {
        Verdict::no(
            "AddressNotUsable",
            format!(
                "{} is not an address of the Ceryx proxy ({}).",
                address.value,
                if ctx.addresses.is_empty() {
                    "none known yet".to_owned()
                } else {
                    ctx.addresses.join(", ")
                }
            ),
        )
    } else if ctx.addresses.is_empty() {
        Verdict::no(
            "AddressNotAssigned",
            "The address of the Ceryx proxy is not known yet (its Service has none, and none is configured).",
        )
    } else {
        Verdict::yes(
            "Programmed",
            "Routes of this Gateway are served by the proxy.",
        )
    };
    GatewayStatus {
        addresses: ctx
            .addresses
            .iter()
            .map(|value| GatewayAddress {
                kind: Some(
                    if value.parse::<std::net::IpAddr>().is_ok() {
                        "IPAddress"
                    } else {
                        "Hostname"
                    }
                    .into(),
                ),
                value: value.clone(),
            })
            .collect(),
        conditions: vec![
            condition("Accepted", &accepted, generation, previous, now),
            condition("Programmed", &programmed, generation, previous, now),
        ],
        listeners,
    }
}

/// What a listener's conditions say.
struct ListenerOutcome {
    kinds: Vec<RouteGroupKind>,
    accepted: Verdict,
    resolved: Verdict,
    programmed: Verdict,
    conflicted: Option<&'static str>,
}

fn listener_outcome(
    gateway: &Gateway,
    listener: &Listener,
    ctx: &GatewayContext<'_>,
    conflicted: Option<&'static str>,
) -> ListenerOutcome {
    let http = translate::serves_http(listener);
    let asked = listener
        .allowed_routes
        .as_ref()
        .map(|a| a.kinds.as_slice())
        .unwrap_or_default();
    let kinds: Vec<RouteGroupKind> = if !http {
        Vec::new()
    } else if asked.is_empty() {
        vec![http_route_kind()]
    } else {
        asked
            .iter()
            .filter(|k| translate::is_http_route_kind(k))
            .map(|_| http_route_kind())
            .take(1)
            .collect()
    };
    let accepted = if !http {
        Verdict::no(
            "UnsupportedProtocol",
            format!(
                "Ceryx serves HTTP and HTTPS listeners, not {}.",
                listener.protocol
            ),
        )
    } else if listener.protocol == "HTTPS"
        && listener
            .tls
            .as_ref()
            .and_then(|t| t.mode.as_deref())
            .is_some_and(|m| m != "Terminate")
    {
        Verdict::no(
            "UnsupportedValue",
            "HTTPS listeners terminate TLS (tls.mode Terminate).",
        )
    } else {
        Verdict::yes("Accepted", "The listener is served.")
    };
    let wrong_kinds = http && asked.iter().any(|k| !translate::is_http_route_kind(k));
    let certificate = if http && listener.protocol == "HTTPS" {
        translate::listener_certificate(gateway, listener, ctx.grants, ctx.secret_exists).err()
    } else {
        None
    };
    let resolved = if let Some(refused) = certificate {
        refused
    } else if wrong_kinds {
        Verdict::no(
            "InvalidRouteKinds",
            "Ceryx attaches HTTPRoutes (gateway.networking.k8s.io) only.",
        )
    } else {
        Verdict::yes("ResolvedRefs", "All references are resolved.")
    };
    let programmed = if !accepted.ok || !resolved.ok || conflicted.is_some() {
        Verdict::no(
            "Invalid",
            "The listener is not valid: see its other conditions.",
        )
    } else {
        Verdict::yes("Programmed", "The listener is served by the proxy.")
    };
    ListenerOutcome {
        kinds,
        accepted,
        resolved,
        programmed,
        conflicted,
    }
}

fn http_route_kind() -> RouteGroupKind {
    RouteGroupKind {
        group: Some(GROUP.into()),
        kind: "HTTPRoute".into(),
    }
}

/// For each listener, the reason it conflicts with another, if it does: same port and
/// another protocol (`ProtocolConflict`), or same port, protocol and host name
/// (`HostnameConflict`).
fn conflicts(listeners: &[Listener]) -> Vec<Option<&'static str>> {
    listeners
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let others = listeners
                .iter()
                .enumerate()
                .filter(|(j, b)| *j != i && b.port == a.port);
            let mut reason = None;
            for (_, b) in others {
                if b.protocol != a.protocol {
                    return Some("ProtocolConflict");
                }
                if b.hostname.as_deref().map(str::to_ascii_lowercase)
                    == a.hostname.as_deref().map(str::to_ascii_lowercase)
                {
                    reason = Some("HostnameConflict");
                }
            }
            reason
        })
        .collect()
}

/// The route's new `status.parents`: the entries of other controllers as they were
/// (the list is atomic, so whoever writes it keeps them), then ours, one per parent
/// the translation judged.
pub(crate) fn route_parents(
    current: Option<&HttpRouteStatus>,
    controller: &str,
    ours: &[ParentOutcome],
    generation: Option<i64>,
    now: &Time,
) -> Vec<RouteParentStatus> {
    let current = current.map(|s| s.parents.as_slice()).unwrap_or_default();
    let mut parents: Vec<RouteParentStatus> = current
        .iter()
        .filter(|p| p.controller_name != controller)
        .cloned()
        .collect();
    for outcome in ours {
        let before = current
            .iter()
            .find(|p| p.controller_name == controller && p.parent_ref == outcome.parent_ref)
            .map(|p| p.conditions.as_slice())
            .unwrap_or_default();
        parents.push(RouteParentStatus {
            parent_ref: outcome.parent_ref.clone(),
            controller_name: controller.into(),
            conditions: vec![
                condition("Accepted", &outcome.accepted, generation, before, now),
                condition("ResolvedRefs", &outcome.resolved, generation, before, now),
            ],
        });
    }
    parents
}

#[cfg(test)]
mod tests {
    use super::super::types::{GatewayClassSpec, GatewaySpec, ListenerTls, ObjectRef};
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn find<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    fn listener(name: &str, protocol: &str, port: i32, hostname: Option<&str>) -> Listener {
        Listener {
            name: name.into(),
            hostname: hostname.map(Into::into),
            port,
            protocol: protocol.into(),
            ..Default::default()
        }
    }

    fn gateway(listeners: Vec<Listener>) -> Gateway {
        Gateway {
            metadata: ObjectMeta {
                name: Some("gw".into()),
                namespace: Some("infra".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: GatewaySpec {
                gateway_class_name: "ceryx".into(),
                listeners,
                addresses: Vec::new(),
            },
            status: None,
        }
    }

    #[test]
    fn a_class_of_ours_is_accepted_with_its_version_checked() {
        let mut class = GatewayClass {
            metadata: ObjectMeta {
                name: Some("ceryx".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: GatewayClassSpec {
                controller_name: "ceryx.dev/gateway-controller".into(),
                parameters_ref: None,
            },
            status: None,
        };
        let status = gateway_class_status(&class, &[Some("v1.7.0".into())], &at(10));
        let accepted = find(&status.conditions, "Accepted");
        assert_eq!(
            (accepted.status.as_str(), accepted.reason.as_str()),
            ("True", "Accepted")
        );
        assert_eq!(accepted.observed_generation, Some(2));
        let version = find(&status.conditions, "SupportedVersion");
        assert_eq!(version.status, "True");
        assert!(
            status
                .supported_features
                .iter()
                .any(|f| f.name == "HTTPRoute")
        );
        let names: Vec<&str> = status
            .supported_features
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);

        // The time of a condition that did not change is kept.
        class.status = Some(status);
        let again = gateway_class_status(&class, &[Some("v1.9.1".into()), None], &at(20));
        assert_eq!(
            find(&again.conditions, "Accepted").last_transition_time,
            at(10)
        );
        let version = find(&again.conditions, "SupportedVersion");
        assert_eq!(
            (version.status.as_str(), version.reason.as_str()),
            ("False", "UnsupportedVersion")
        );
        assert!(version.message.contains("v1.9.1"), "{}", version.message);
        assert_eq!(version.last_transition_time, at(20));

        class.spec.parameters_ref =
            Some(serde_json::json!({"group": "x", "kind": "Y", "name": "z"}));
        let refused = gateway_class_status(&class, &[], &at(30));
        assert_eq!(
            find(&refused.conditions, "Accepted").reason,
            "InvalidParameters"
        );
    }

    #[test]
    fn a_gateway_reports_addresses_listeners_and_their_attached_routes() {
        let mut https = listener("https", "HTTPS", 443, Some("*.example.com"));
        https.tls = Some(ListenerTls {
            mode: None,
            certificate_refs: vec![ObjectRef {
                name: "wildcard".into(),
                ..Default::default()
            }],
        });
        let gw = gateway(vec![listener("http", "HTTP", 80, None), https]);
        let attached = BTreeMap::from([("http".to_owned(), 2)]);
        let secret_exists = |ns: &str, name: &str| ns == "infra" && name == "wildcard";
        let ctx = GatewayContext {
            addresses: &["192.0.2.10".into(), "proxy.example.net".into()],
            grants: &[],
            secret_exists: &secret_exists,
            attached: &attached,
        };
        let status = gateway_status(&gw, &ctx, &at(5));
        assert_eq!(
            status.addresses,
            vec![
                GatewayAddress {
                    kind: Some("IPAddress".into()),
                    value: "192.0.2.10".into()
                },
                GatewayAddress {
                    kind: Some("Hostname".into()),
                    value: "proxy.example.net".into()
                },
            ]
        );
        for type_ in ["Accepted", "Programmed"] {
            let c = find(&status.conditions, type_);
            assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", type_));
            assert_eq!(c.observed_generation, Some(3));
        }
        assert_eq!(status.listeners.len(), 2);
        let http = &status.listeners[0];
        assert_eq!(http.attached_routes, 2);
        assert_eq!(http.supported_kinds, vec![http_route_kind()]);
        let https = &status.listeners[1];
        assert_eq!(https.attached_routes, 0);
        for (type_, status, reason) in [
            ("Accepted", "True", "Accepted"),
            ("ResolvedRefs", "True", "ResolvedRefs"),
            ("Programmed", "True", "Programmed"),
            ("Conflicted", "False", "NoConflicts"),
        ] {
            let c = find(&https.conditions, type_);
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                (status, reason),
                "{type_}"
            );
            assert_eq!(c.observed_generation, Some(3));
        }

        // Without an address, the Gateway is accepted but not programmed.
        let none = GatewayContext {
            addresses: &[],
            ..ctx
        };
        let status = gateway_status(&gw, &none, &at(5));
        let c = find(&status.conditions, "Programmed");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "AddressNotAssigned")
        );
        assert!(status.addresses.is_empty());
    }

    #[test]
    fn bad_listeners_say_why_with_the_standard_reasons() {
        let mut missing = listener("missing-cert", "HTTPS", 443, Some("a.example.com"));
        missing.tls = Some(ListenerTls {
            mode: None,
            certificate_refs: vec![ObjectRef {
                name: "nope".into(),
                ..Default::default()
            }],
        });
        let mut foreign = listener("foreign-cert", "HTTPS", 443, Some("b.example.com"));
        foreign.tls = Some(ListenerTls {
            mode: None,
            certificate_refs: vec![ObjectRef {
                name: "cert".into(),
                namespace: Some("certs".into()),
                ..Default::default()
            }],
        });
        let mut kinds = listener("kinds", "HTTP", 8080, Some("c.example.com"));
        kinds.allowed_routes = Some(super::super::types::AllowedRoutes {
            namespaces: None,
            kinds: vec![RouteGroupKind {
                group: None,
                kind: "TCPRoute".into(),
            }],
        });
        let gw = gateway(vec![
            missing,
            foreign,
            kinds,
            listener("tcp", "TCP", 9000, None),
            listener("dup-a", "HTTP", 80, Some("d.example.com")),
            listener("dup-b", "HTTP", 80, Some("d.example.com")),
            listener("proto", "HTTPS", 80, Some("e.example.com")),
        ]);
        let attached = BTreeMap::new();
        let ctx = GatewayContext {
            addresses: &["192.0.2.10".into()],
            grants: &[],
            secret_exists: &|_, name| name == "cert",
            attached: &attached,
        };
        let status = gateway_status(&gw, &ctx, &at(1));
        let reason = |listener: usize, type_: &str| {
            let c = find(&status.listeners[listener].conditions, type_);
            (c.status.clone(), c.reason.clone())
        };
        let f = |r: &str| ("False".to_owned(), r.to_owned());
        let t = |r: &str| ("True".to_owned(), r.to_owned());
        assert_eq!(reason(0, "ResolvedRefs"), f("InvalidCertificateRef"));
        assert_eq!(reason(0, "Programmed"), f("Invalid"));
        assert_eq!(reason(1, "ResolvedRefs"), f("RefNotPermitted"));
        assert_eq!(reason(2, "ResolvedRefs"), f("InvalidRouteKinds"));
        assert!(status.listeners[2].supported_kinds.is_empty());
        assert_eq!(reason(3, "Accepted"), f("UnsupportedProtocol"));
        assert!(status.listeners[3].supported_kinds.is_empty());
        assert_eq!(reason(4, "Conflicted"), t("ProtocolConflict"));
        assert_eq!(reason(5, "Conflicted"), t("ProtocolConflict"));
        assert_eq!(reason(6, "Conflicted"), t("ProtocolConflict"));
        // No listener is valid: neither is the Gateway.
        let c = find(&status.conditions, "Accepted");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "ListenersNotValid")
        );

        let gw = gateway(vec![
            listener("a", "HTTP", 80, Some("d.example.com")),
            listener("b", "HTTP", 80, Some("D.example.com")),
            listener("c", "HTTP", 80, None),
        ]);
        let status = gateway_status(&gw, &ctx, &at(1));
        let reason = |listener: usize| {
            let c = find(&status.listeners[listener].conditions, "Conflicted");
            (c.status.clone(), c.reason.clone())
        };
        assert_eq!(reason(0), t("HostnameConflict"));
        assert_eq!(reason(1), t("HostnameConflict"));
        assert_eq!(reason(2), f("NoConflicts"));
        let c = find(&status.conditions, "Accepted");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "ListenersNotValid")
        );
    }

    #[test]
    fn a_requested_address_must_be_one_of_the_proxy() {
        let mut gw = gateway(vec![listener("http", "HTTP", 80, None)]);
        gw.spec.addresses = vec![GatewayAddress {
            kind: None,
            value: "198.51.100.1".into(),
        }];
        let attached = BTreeMap::new();
        let ctx = GatewayContext {
            addresses: &["192.0.2.10".into()],
            grants: &[],
            secret_exists: &|_, _| false,
            attached: &attached,
        };
        let status = gateway_status(&gw, &ctx, &at(1));
        assert_eq!(
            find(&status.conditions, "Programmed").reason,
            "AddressNotUsable"
        );
        gw.spec.addresses[0].kind = Some("example.com/Custom".into());
        let status = gateway_status(&gw, &ctx, &at(1));
        assert_eq!(
            find(&status.conditions, "Accepted").reason,
            "UnsupportedAddress"
        );
    }

    #[test]
    fn route_parents_keep_other_controllers_and_transition_times() {
        let ours = super::super::types::ParentRef {
            name: "gw".into(),
            ..Default::default()
        };
        let theirs = RouteParentStatus {
            parent_ref: super::super::types::ParentRef {
                name: "other".into(),
                ..Default::default()
            },
            controller_name: "example.com/other".into(),
            conditions: Vec::new(),
        };
        let outcome = ParentOutcome {
            parent_ref: ours.clone(),
            accepted: Verdict::yes("Accepted", "ok"),
            resolved: Verdict::no("RefNotPermitted", "no grant"),
        };
        let first = route_parents(
            Some(&HttpRouteStatus {
                parents: vec![theirs.clone()],
            }),
            "ceryx.dev/gateway-controller",
            std::slice::from_ref(&outcome),
            Some(4),
            &at(1),
        );
        assert_eq!(first.len(), 2);
        assert_eq!(first[0], theirs);
        assert_eq!(first[1].controller_name, "ceryx.dev/gateway-controller");
        assert_eq!(
            find(&first[1].conditions, "ResolvedRefs").observed_generation,
            Some(4)
        );

        let resolved = ParentOutcome {
            resolved: Verdict::yes("ResolvedRefs", "ok"),
            ..outcome
        };
        let second = route_parents(
            Some(&HttpRouteStatus { parents: first }),
            "ceryx.dev/gateway-controller",
            &[resolved],
            Some(5),
            &at(2),
        );
        assert_eq!(second.len(), 2);
        assert_eq!(
            find(&second[1].conditions, "Accepted").last_transition_time,
            at(1)
        );
        assert_eq!(
            find(&second[1].conditions, "ResolvedRefs").last_transition_time,
            at(2)
        );
        // A parent no longer judged by us loses our entry, never theirs.
        let third = route_parents(
            Some(&HttpRouteStatus { parents: second }),
            "ceryx.dev/gateway-controller",
            &[],
            Some(6),
            &at(3),
        );
        assert_eq!(third, vec![theirs]);
    }
}
