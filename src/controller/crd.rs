//! `CeryxRoute` (`ceryx.dev/v1alpha1`): one public host name routed to a URL or to a
//! Service in the resource's namespace. The CRD is generated from these types
//! (`ceryx crd`), with its validation in the schema so that `kubectl apply` rejects a bad
//! resource before the controller sees it.

use crate::route::Mode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A host name, a `*.suffix` pattern or `$wildcard`, lower case (as Kubernetes names are).
const SOURCE_PATTERN: &str = r"^(\$wildcard|(\*\.)?([a-z0-9]([-a-z0-9_]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9_]{0,61}[a-z0-9])?)$";

/// An http(s) URL with a host.
const URL_PATTERN: &str = r"^https?://[^/\s@]+(/\S*)?$";

/// A Service name (DNS-1035 label).
const SERVICE_PATTERN: &str = r"^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// Routes one public host name to a target.
// Each printcolumn repeats `type_`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ceryx.dev",
    version = "v1alpha1",
    kind = "CeryxRoute",
    doc = "A public host name routed by Ceryx to a URL or a Service.",
    namespaced,
    shortname = "cxr",
    status = "CeryxRouteStatus",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.source"),
    printcolumn(name = "Target", type_ = "string", json_path = ".status.target"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Programmed\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
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
    pub ingress_class_name: Option<String>,
}

/// Exactly one of a URL or a Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(extend("oneOf" = [{"required": ["url"]}, {"required": ["service"]}]))]
pub struct RouteTarget {
    /// An http(s) URL; its path is a prefix of every request's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = URL_PATTERN))]
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
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
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
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// What the controller did with the resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CeryxRouteStatus {
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The target URL the route was programmed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `Accepted` (the resource is valid and owns its host) and `Programmed` (the
    /// route is in the store, served by every proxy).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
