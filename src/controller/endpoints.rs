//! Services resolved to the URLs of their endpoints, from `discovery.k8s.io/v1`
//! EndpointSlices: the proxy balances over pods itself (per request, readiness-aware)
//! instead of handing every request to kube-proxy through the Service's address.

use crate::route::rules::BackendRef;
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::ResourceExt;
use std::collections::HashMap;
use std::sync::Arc;

/// The label an EndpointSlice names its Service by.
pub(crate) const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Why a Service backend cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unresolved {
    /// No such Service.
    #[error("Service {0} not found")]
    NoService(String),
    /// The Service has no such port.
    #[error("Service {0} has no port {1}")]
    NoPort(String, u16),
}

/// Every Service and EndpointSlice, indexed for resolution (built once per sync).
pub(crate) struct Index {
    services: HashMap<(String, String), Arc<Service>>,
    slices: HashMap<(String, String), Vec<Arc<EndpointSlice>>>,
}

impl Index {
    /// Indexes the Services and slices the watches hold.
    pub(crate) fn new(services: Vec<Arc<Service>>, slices: Vec<Arc<EndpointSlice>>) -> Index {
        let services = services
            .into_iter()
            .filter_map(|s| Some(((s.namespace()?, s.name_any()), s)))
            .collect();
        let mut by_service: HashMap<_, Vec<_>> = HashMap::new();
        for slice in slices {
            let (Some(namespace), Some(service)) =
                (slice.namespace(), slice.labels().get(SERVICE_NAME).cloned())
            else {
                continue;
            };
            by_service
                .entry((namespace, service))
                .or_default()
                .push(slice);
        }
        Index {
            services,
            slices: by_service,
        }
    }

    /// Fills a Service backend with its Service's ready endpoints ([`Index::resolve`];
    /// none when it cannot be resolved), making its namespace explicit (`namespace`
    /// when it names none). `None` for a backend that names no Service.
    pub(crate) fn fill(
        &self,
        backend: &mut BackendRef,
        namespace: &str,
        https: bool,
    ) -> Option<Result<(), Unresolved>> {
        let service = backend.service.as_mut()?;
        let namespace = service
            .namespace
            .get_or_insert_with(|| namespace.to_owned());
        let resolved = self.resolve(namespace, &service.name, service.port, https);
        Some(resolved.map(|urls| backend.endpoints = urls))
    }

    /// The number of the port named `port` of Service `namespace/name`.
    pub(crate) fn port_number(&self, namespace: &str, name: &str, port: &str) -> Option<u16> {
        let service = self
            .services
            .get(&(namespace.to_owned(), name.to_owned()))?;
        let ports = service.spec.as_ref()?.ports.as_deref()?;
        let found = ports.iter().find(|p| p.name.as_deref() == Some(port))?;
        u16::try_from(found.port).ok()
    }

    /// The URLs of the endpoints behind `port` of Service `namespace/name`:
    /// `http(s)://<pod address>:<target port>`, ready endpoints only (or, when none is
    /// ready, those still serving while they terminate); `https` when the backend is
    /// known to speak TLS (its `appProtocol`, or what the resource says).
    pub(crate) fn resolve(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
        https: bool,
    ) -> Result<Vec<String>, Unresolved> {
        let key = (namespace.to_owned(), name.to_owned());
        let service = self
            .services
            .get(&key)
            .ok_or_else(|| Unresolved::NoService(format!("{namespace}/{name}")))?;
        let ports = service.spec.as_ref().and_then(|s| s.ports.as_deref());
        let wanted = ports
            .unwrap_or_default()
            .iter()
            .find(|p| p.port == i32::from(port));
        let Some(wanted) = wanted else {
            return Err(Unresolved::NoPort(format!("{namespace}/{name}"), port));
        };
        let slices = self.slices.get(&key).map(Vec::as_slice).unwrap_or_default();
        Ok(urls(slices, wanted, https))
    }
}

/// The URLs of the endpoints behind Service port `wanted`: slice ports carry the Service
/// port's name (empty for a Service's single unnamed port) and the pods' port number.
fn urls(slices: &[Arc<EndpointSlice>], wanted: &ServicePort, https: bool) -> Vec<String> {
    let name = wanted.name.as_deref().unwrap_or_default();
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in slices {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or_default() == name)
        else {
            continue;
        };
        let Some(number) = port.port else { continue };
        let protocol = port
            .app_protocol
            .as_deref()
            .or(wanted.app_protocol.as_deref());
        let scheme = if https || protocol.is_some_and(is_tls) {
            "https"
        } else {
            "http"
        };
        for endpoint in &slice.endpoints {
            let into = match state(endpoint) {
                State::Ready => &mut ready,
                State::Draining => &mut terminating,
                State::Out => continue,
            };
            for address in &endpoint.addresses {
                let host = if address.contains(':') {
                    format!("[{address}]")
                } else {
                    address.clone()
                };
                into.push(format!("{scheme}://{host}:{number}"));
            }
        }
    }
    // As kube-proxy does: while any endpoint is ready, the terminating ones get no new
    // requests (their open exchanges finish); when none is, those still serving do.
    let mut urls = if ready.is_empty() { terminating } else { ready };
    urls.sort();
    urls.dedup();
    urls
}

enum State {
    Ready,
    Draining,
    Out,
}

/// An endpoint's conditions (unset `ready` means ready; unset `serving` means `ready`).
fn state(endpoint: &Endpoint) -> State {
    let conditions = endpoint.conditions.as_ref();
    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
    let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    match (ready && !terminating, serving) {
        (true, _) => State::Ready,
        (false, true) if terminating => State::Draining,
        _ => State::Out,
    }
}

/// Whether an `appProtocol` means TLS to the pod.
fn is_tls(protocol: &str) -> bool {
    matches!(
        protocol.to_ascii_lowercase().as_str(),
        "https" | "kubernetes.io/https" | "ssl" | "tls"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn index(services: serde_json::Value, slices: serde_json::Value) -> Index {
        let services = serde_json::from_value::<Vec<Service>>(services).unwrap();
        let slices = serde_json::from_value::<Vec<EndpointSlice>>(slices).unwrap();
        Index::new(
            services.into_iter().map(Arc::new).collect(),
            slices.into_iter().map(Arc::new).collect(),
        )
    }

    fn slice(
        name: &str,
        port_name: &str,
        port: u16,
        endpoints: serde_json::Value,
    ) -> serde_json::Value {
        json!({"metadata": {"name": name, "namespace": "ns", "labels": {SERVICE_NAME: "web"}},
               "addressType": "IPv4", "ports": [{"name": port_name, "port": port}],
               "endpoints": endpoints})
    }

    #[test]
    fn named_and_numbered_ports_reach_ready_endpoints_only() {
        let index = index(
            json!([{"metadata": {"name": "web", "namespace": "ns"},
                    "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080},
                                       {"name": "admin", "port": 9000, "appProtocol": "https"}]}}]),
            json!([
                slice(
                    "a",
                    "http",
                    8080,
                    json!([
                    {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                    {"addresses": ["10.0.0.3"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                    {"addresses": ["fd00::4"]}])
                ),
                slice("b", "admin", 9443, json!([{"addresses": ["10.0.0.1"]}])),
            ]),
        );
        let http = index.resolve("ns", "web", 80, false).unwrap();
        assert_eq!(http, ["http://10.0.0.1:8080", "http://[fd00::4]:8080"]);
        assert_eq!(index.port_number("ns", "web", "admin"), Some(9000));
        let admin = index.resolve("ns", "web", 9000, false).unwrap();
        assert_eq!(admin, ["https://10.0.0.1:9443"]);
        assert_eq!(
            index.resolve("ns", "web", 81, false),
            Err(Unresolved::NoPort("ns/web".into(), 81))
        );
        assert_eq!(
            index.resolve("ns", "api", 80, false),
            Err(Unresolved::NoService("ns/api".into()))
        );
    }

    #[test]
    fn terminating_endpoints_serve_only_when_none_is_ready() {
        let index = index(
            json!([{"metadata": {"name": "web", "namespace": "ns"}, "spec": {"ports": [{"port": 80}]}}]),
            json!([slice(
                "a",
                "",
                8080,
                json!([
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": false, "serving": false, "terminating": true}}])
            )]),
        );
        let resolved = index.resolve("ns", "web", 80, false).unwrap();
        assert_eq!(resolved, ["http://10.0.0.3:8080"]);
    }
}
