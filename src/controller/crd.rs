//! `CeryxRoute` (`ceryx.dev/v1alpha1`): one public host name routed to a URL or to a
//! Service in the resource's namespace. The CRD is generated from these types
//! (`ceryx crd`), with its validation in the schema so that `kubectl apply` rejects a bad
//! resource before the controller sees it. Every string is bounded (an enum or a
//! date-time is bounded by its shape) so that the apiserver can bound the cost of the
//! CEL rules.

use crate::route::Mode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A host name, a `*.suffix` pattern or `$wildcard`, lower case (as Kubernetes names are).
const SOURCE_PATTERN: &str = r"^(\$wildcard|(\*\.)?([a-z0-9]([-a-z0-9_]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9_]{0,61}[a-z0-9])?)$";

/// An http(s) URL with a host.
const URL_PATTERN: &str = r"^https?://[^/\s@]+(/\S*)?$";

/// A Service name (DNS-1035 label).
const SERVICE_PATTERN: &str = r"^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// A Secret or IngressClass name (DNS-1123 subdomain).
const SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Routes one public host name to a target.
// Each printcolumn repeats `type_`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ceryx.dev",
    version = "v1alpha1",
    kind = "CeryxRoute",
    doc = "A public host name routed by Ceryx to a URL or a Service.",
    namespaced,
    shortname = "cxr",
    category = "ceryx",
    status = "CeryxRouteStatus",
    printcolumn(name = "Host", type_ = "string", json_path = ".spec.source"),
    printcolumn(name = "Target", type_ = "string", json_path = ".status.target"),
    printcolumn(
        name = "Programmed",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Programmed\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Programmed\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
// `settings` and `mode` have defaults, but the rule must not fail where they were not
// applied (a client-side CEL check).
#[x_kube(validation = Rule::new(
    "!has(self.settings) || !has(self.settings.mode) || self.settings.mode != 'redirect' || has(self.target.url)"
).message("mode: redirect needs target.url"))]
#[serde(rename_all = "camelCase")]
pub struct CeryxRouteSpec {
    /// Public host name: `app.example.com`, `*.example.com` or `$wildcard` (Ceryx's
    /// catch-all).
    #[schemars(length(max = 253), regex(pattern = SOURCE_PATTERN))]
    pub source: String,
    /// Where the traffic goes: exactly one of `url` or `service`.
    pub target: RouteTarget,
    /// How the proxy treats requests for this host.
    #[serde(default)]
    pub settings: RouteSettings,
    /// The class of controller that takes this resource; unset means the default
    /// class (`ceryx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = SUBDOMAIN_PATTERN))]
    pub ingress_class_name: Option<String>,
    /// Routing rules, shaped like Gateway API HTTPRoute rules (matches, filters,
    /// weighted backendRefs naming a `url`, `endpoints` or a `service`, timeouts,
    /// retry); requests no rule matches go to `target`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "rules_schema")]
    pub rules: Vec<crate::route::Rule>,
    /// How a sleeping backend is woken (requests are held meanwhile) and put back to
    /// sleep: a Deployment or StatefulSet the controller scales from and to zero, or a
    /// webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake: Option<RouteWake>,
}

/// How to wake the backend: exactly one of `scaleTargetRef` or `webhook`.
// A CEL rule, not a oneOf, for the readable message (as for `target`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("has(self.scaleTargetRef) != has(self.webhook)")
    .message("spec.wake needs exactly one of scaleTargetRef or webhook"))]
#[x_kube(validation = Rule::new("!has(self.sleepWebhook) || has(self.webhook)")
    .message("spec.wake.sleepWebhook goes with webhook"))]
#[serde(rename_all = "camelCase")]
pub struct RouteWake {
    /// A Deployment or StatefulSet in the resource's namespace, scaled to one replica
    /// when a request arrives while the target Service has no ready endpoint, and to
    /// zero after `idleAfter` without requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_target_ref: Option<ScaleTargetRef>,
    /// Called with `POST {"host": ..., "route": ...}` when the backend refuses
    /// connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = URL_PATTERN))]
    pub webhook: Option<String>,
    /// How long requests are held for the backend, e.g. `60s` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub timeout: Option<String>,
    /// `hold` (default) holds every request; `page` answers a browser navigation at once
    /// with a page that refreshes itself.
    #[serde(default)]
    pub strategy: crate::route::Strategy,
    /// Time without requests after which the backend is put to sleep, e.g. `15m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub idle_after: Option<String>,
    /// With `webhook`: called the same way once the route is idle for `idleAfter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = URL_PATTERN))]
    pub sleep_webhook: Option<String>,
}

/// A workload with a scale subresource, in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ScaleTargetRef {
    /// `Deployment` or `StatefulSet`.
    pub kind: ScaleKind,
    /// The workload's name.
    #[schemars(length(max = 253), regex(pattern = SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// The kinds of workload the controller scales (group `apps`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ScaleKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
}

impl ScaleKind {
    /// The kind's name, as in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleKind::Deployment => "Deployment",
            ScaleKind::StatefulSet => "StatefulSet",
        }
    }
}

/// The rules' schema, bounded (at most 64 rules; every string and list has a bound, so
/// the API server can cost CEL rules and caps what one object holds; the exact limits are
/// checked by the controller, which names the field), with the unsigned integer formats
/// left out: the API server knows `int32` and `int64` only, and warns of others.
fn rules_schema(generator: &mut SchemaGenerator) -> Schema {
    fn bound(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if map
                    .get("format")
                    .and_then(Value::as_str)
                    .is_some_and(|f| f.starts_with("uint"))
                {
                    map.remove("format");
                }
                // `Option<T>` is `"type": [T, "null"]` until kube makes it nullable.
                let is = |kind: &str| match map.get("type") {
                    Some(Value::String(t)) => t == kind,
                    Some(Value::Array(types)) => types.iter().any(|t| t == kind),
                    _ => false,
                };
                if is("string") && !map.contains_key("enum") {
                    map.entry("maxLength").or_insert(2048.into());
                } else if is("array") {
                    map.entry("maxItems").or_insert(1024.into());
                }
                map.values_mut().for_each(bound);
            }
            Value::Array(items) => items.iter_mut().for_each(bound),
            _ => {}
        }
    }
    let mut schema = Value::from(Vec::<crate::route::Rule>::json_schema(generator));
    bound(&mut schema);
    schema["maxItems"] = crate::route::rules::MAX_RULES.into();
    Schema::try_from(schema).unwrap_or_default()
}

/// Exactly one of a URL or a Service.
// A CEL rule, not a oneOf: the apiserver reports a oneOf as "spec.target.url: Required
// value" and then skips the CEL rules, so the readable message would be lost.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("has(self.url) != has(self.service)")
    .message("spec.target needs exactly one of url or service"))]
pub struct RouteTarget {
    /// An http(s) URL; its path is a prefix of every request's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = URL_PATTERN))]
    pub url: Option<String>,
    /// A Service in the resource's namespace, reached over plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceTarget>,
}

/// A Service port in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ServiceTarget {
    /// The Service's name.
    #[schemars(length(max = 63), regex(pattern = SERVICE_PATTERN))]
    pub name: String,
    /// The Service port number.
    // `i32` as in core/v1 (its schema format is `int32`; the apiserver warns on `uint16`).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// Ceryx's per-route settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteSettings {
    /// `proxy` (default) forwards requests; `redirect` answers 301 to the target.
    #[serde(default)]
    pub mode: Mode,
    /// Answer plain-HTTP requests with a 301 to HTTPS.
    #[serde(default)]
    pub enforce_https: bool,
    /// TLS for this host from a `kubernetes.io/tls` Secret in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,
}

/// Where this host's certificate comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteTls {
    /// A `kubernetes.io/tls` Secret in the resource's namespace.
    #[schemars(length(max = 253), regex(pattern = SUBDOMAIN_PATTERN))]
    pub secret_name: String,
}

/// What the controller did with the resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CeryxRouteStatus {
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The host the route was programmed for (normalised); after an edit of
    /// `spec.source` it tells the controller which host to give up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub source: Option<String>,
    /// The target URL the route was programmed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub target: Option<String>,
    /// `Accepted` (the resource is valid and owns its host), `ResolvedRefs` (its Service
    /// and Secret were found) and `Programmed` (the route is in the store, served by
    /// every proxy).
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// `Vec<Condition>` with the bounds upstream `metav1.Condition` declares, which
/// k8s-openapi's schema lacks, keyed by `type` so that server-side apply merges each
/// condition on its own.
fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = Vec::<Condition>::json_schema(generator);
    let bounds = json!({
        "type": {
            "maxLength": 316,
            "pattern": r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        },
        "status": {"enum": ["True", "False", "Unknown"]},
        "observedGeneration": {"minimum": 0},
        "reason": {
            "minLength": 1,
            "maxLength": 1024,
            "pattern": r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        },
        "message": {"maxLength": 32768},
    });
    if let (Some(Value::Object(properties)), Value::Object(bounds)) =
        (schema.pointer_mut("/items/properties"), bounds)
    {
        for (name, bound) in bounds {
            if let (Some(Value::Object(property)), Value::Object(bound)) =
                (properties.get_mut(&name), bound)
            {
                property.extend(bound);
            }
        }
    }
    schema.insert("maxItems".into(), 8.into());
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), json!(["type"]));
    schema
}
