//! The Gateway API side of the merge's runtime (`sync.rs`): the
//! watches (only when the API server serves the Gateway API and lets us read it), every
//! HTTPRoute translated into claims for the merge, and the status of our GatewayClasses,
//! their Gateways and the routes attached to them, applied server-side.

use super::status::{self, GatewayContext};
use super::translate::{self, Cluster, ListenerKey, RouteTranslation};
use super::types::{GROUP, Gateway, GatewayClass, HttpRoute, ReferenceGrant, VERSION};
use crate::controller::claim::{Claim, Origin};
use crate::controller::reconcile::{Context, Error, MANAGER};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The CRDs whose bundle version the GatewayClass status reports.
const CRDS: [&str; 4] = [
    "gatewayclasses.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "referencegrants.gateway.networking.k8s.io",
];

/// The annotation that carries a Gateway API CRD's release.
const BUNDLE_VERSION: &str = "gateway.networking.k8s.io/bundle-version";

/// The caches of the Gateway API watches.
pub(crate) struct Watched {
    pub classes: Store<GatewayClass>,
    pub gateways: Store<Gateway>,
    pub routes: Store<HttpRoute>,
    pub grants: Store<ReferenceGrant>,
    pub namespaces: Store<Namespace>,
    /// The bundle version of each of [`CRDS`], read once at start.
    pub bundle_versions: Vec<Option<String>>,
}

/// Whether to serve the Gateway API: the API server must serve `v1` of every kind Ceryx
/// reads (CRDs of Gateway API v1.5 or later are installed) and let this controller read
/// them (the chart's `gatewayAPI.enabled`). Anything missing is logged once and the rest
/// of the controller runs on: a watch that cannot list would hold up the whole merge.
pub(crate) async fn available(client: &kube::Client) -> bool {
    let params = ListParams::default().limit(1);
    let probes = [
        ("GatewayClass", probe::<GatewayClass>(client, &params).await),
        ("Gateway", probe::<Gateway>(client, &params).await),
        ("HTTPRoute", probe::<HttpRoute>(client, &params).await),
        (
            "ReferenceGrant",
            probe::<ReferenceGrant>(client, &params).await,
        ),
        // Listeners may admit routes by namespace label.
        ("Namespace", probe::<Namespace>(client, &params).await),
    ];
    for (kind, probe) in probes {
        match probe {
            Ok(()) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {
                tracing::info!(
                    kind,
                    "the API server does not serve gateway.networking.k8s.io/v1 {kind} (Gateway API CRDs v1.5 or later are not installed): Gateways and HTTPRoutes are not served (restart the controller once they are)"
                );
                return false;
            }
            Err(kube::Error::Api(e)) if e.code == 403 => {
                tracing::warn!(kind, message = %e.message, "not allowed to read the Gateway API: Gateways and HTTPRoutes are not served (the chart grants it with gatewayAPI.enabled=true)");
                return false;
            }
            // Anything else passes: the watches retry with back-off.
            Err(error) => {
                tracing::warn!(kind, %error, "could not probe the Gateway API; watching it anyway");
            }
        }
    }
    true
}

async fn probe<K>(client: &kube::Client, params: &ListParams) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Api::<K>::all(client.clone())
        .list_metadata(params)
        .await
        .map(drop)
}

/// The bundle version of each CRD Ceryx uses (`None` where it cannot be read).
pub(crate) async fn bundle_versions(client: &kube::Client) -> Vec<Option<String>> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let mut versions = Vec::with_capacity(CRDS.len());
    for name in CRDS {
        let version = match api.get_opt(name).await {
            Ok(crd) => crd.and_then(|c| c.annotations().get(BUNDLE_VERSION).cloned()),
            Err(error) => {
                tracing::warn!(%error, crd = name, "could not read the Gateway API CRD's version");
                None
            }
        };
        versions.push(version);
    }
    versions
}

/// Every HTTPRoute translated, with what its status needs.
pub(crate) struct Translated {
    /// Per route with at least one parent of ours: its identity, the object, and what
    /// it came to.
    pub routes: Vec<(Origin, Arc<HttpRoute>, RouteTranslation)>,
    /// Routes attached to each listener.
    pub attached: BTreeMap<ListenerKey, i32>,
}

impl Translated {
    /// The claims of every route, for the merge.
    pub(crate) fn claims(&self) -> impl Iterator<Item = Claim> + '_ {
        self.routes
            .iter()
            .flat_map(|(_, _, t)| t.claims.iter().cloned())
    }
}

/// Translates every HTTPRoute against the Gateways of our classes.
pub(crate) fn translate_all(
    controller: &str,
    watched: &Watched,
    services: &Store<Service>,
    secrets: &Store<PartialObjectMeta<Secret>>,
) -> Translated {
    let classes = watched.classes.state();
    let gateways: Vec<Arc<Gateway>> = watched
        .gateways
        .state()
        .into_iter()
        .filter(|g| g.meta().deletion_timestamp.is_none())
        .collect();
    let grants = watched.grants.state();
    let labels = |namespace: &str| {
        watched
            .namespaces
            .get(&ObjectRef::new(namespace))
            .map(|n| n.labels().clone())
    };
    let service_exists = |namespace: &str, name: &str| {
        services
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    };
    let secret_exists = |namespace: &str, name: &str| {
        secrets
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    };
    let cluster = Cluster {
        controller,
        classes: &classes,
        gateways: &gateways,
        grants: &grants,
        namespace_labels: &labels,
        service_exists: &service_exists,
        secret_exists: &secret_exists,
    };
    let mut translated = Translated {
        routes: Vec::new(),
        attached: BTreeMap::new(),
    };
    for route in watched.routes.state() {
        let meta = route.meta();
        if meta.deletion_timestamp.is_some() {
            continue;
        }
        let (Some(namespace), Some(name)) = (meta.namespace.clone(), meta.name.clone()) else {
            continue;
        };
        let translation = translate::translate(&route, &cluster);
        let stale = route
            .status
            .as_ref()
            .is_some_and(|s| s.parents.iter().any(|p| p.controller_name == controller));
        if translation.parents.is_empty() && !stale {
            continue;
        }
        for key in &translation.attached {
            *translated.attached.entry(key.clone()).or_default() += 1;
        }
        let origin = Origin {
            created: meta
                .creation_timestamp
                .as_ref()
                .map_or(0, |t| t.0.as_second()),
            kind: "HTTPRoute",
            namespace,
            name,
        };
        translated.routes.push((origin, route, translation));
    }
    translated
}

/// Applies the status of our GatewayClasses, their Gateways and the translated routes,
/// each only when it changed. `addresses` are where the proxies are reachable.
pub(crate) async fn publish(
    ctx: &Context,
    watched: &Watched,
    translated: &Translated,
    secrets: &Store<PartialObjectMeta<Secret>>,
    addresses: &[String],
) -> Result<(), Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let controller = ctx.gateway_controller.as_str();
    let ours: Vec<Arc<GatewayClass>> = watched
        .classes
        .state()
        .into_iter()
        .filter(|c| c.spec.controller_name == controller)
        .collect();
    for class in &ours {
        let wanted = status::gateway_class_status(class, &watched.bundle_versions, &now);
        let current = class.status.clone().unwrap_or_default();
        if !holds(&current.conditions, &wanted.conditions)
            || current.supported_features != wanted.supported_features
        {
            let api = Api::<GatewayClass>::all(ctx.client.clone());
            apply_status(ctx, &api, &**class, "GatewayClass", &wanted).await?;
        }
    }

    let grants = watched.grants.state();
    let secret_exists = |namespace: &str, name: &str| {
        secrets
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    };
    let classes = watched.classes.state();
    for gateway in watched.gateways.state() {
        let accepted_class = classes.iter().any(|c| {
            c.metadata.name.as_deref() == Some(gateway.spec.gateway_class_name.as_str())
                && c.spec.controller_name == controller
                && c.spec.parameters_ref.is_none()
        });
        if !accepted_class || gateway.meta().deletion_timestamp.is_some() {
            continue;
        }
        let (Some(namespace), Some(name)) = (gateway.namespace(), gateway.meta().name.clone())
        else {
            continue;
        };
        let attached: BTreeMap<String, i32> = translated
            .attached
            .iter()
            .filter(|(k, _)| k.namespace == namespace && k.gateway == name)
            .map(|(k, n)| (k.listener.clone(), *n))
            .collect();
        // Built and dropped before any await: its lookups are not `Sync`.
        let wanted = {
            let gateway_ctx = GatewayContext {
                addresses,
                grants: &grants,
                secret_exists: &secret_exists,
                attached: &attached,
            };
            status::gateway_status(&gateway, &gateway_ctx, &now)
        };
        let current = gateway.status.clone().unwrap_or_default();
        if !holds(&current.conditions, &wanted.conditions)
            || current.addresses != wanted.addresses
            || current.listeners != wanted.listeners
        {
            let api = Api::<Gateway>::namespaced(ctx.client.clone(), &namespace);
            apply_status(ctx, &api, &*gateway, "Gateway", &wanted).await?;
        }
    }

    for (origin, route, translation) in &translated.routes {
        let parents = status::route_parents(
            route.status.as_ref(),
            controller,
            &translation.parents,
            route.meta().generation,
            &now,
        );
        let current = route
            .status
            .as_ref()
            .map(|s| s.parents.as_slice())
            .unwrap_or_default();
        if current != parents.as_slice() {
            let api = Api::<HttpRoute>::namespaced(ctx.client.clone(), &origin.namespace);
            let status = serde_json::json!({ "parents": parents });
            apply_status(ctx, &api, &**route, "HTTPRoute", &status).await?;
        }
    }
    Ok(())
}

/// Whether every condition in `wanted` is in `current` as it is: conditions of other
/// types (another controller's) do not count, so they never cause a patch.
fn holds(current: &[Condition], wanted: &[Condition]) -> bool {
    wanted.iter().all(|w| current.contains(w))
}

/// Applies `status` to `obj` server-side, as the controller's field manager.
async fn apply_status<K>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    kind: &str,
    status: &impl serde::Serialize,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if !ctx.leadership.may_write() {
        return Err(Error::NotLeader);
    }
    let name = obj.meta().name.as_deref().ok_or(Error::Unnamed)?;
    let patch = serde_json::json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": kind,
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    Ok(())
}

/// Starts the Gateway API watches (waking `changed` on each change), unless the cluster
/// does not serve the Gateway API to us ([`available`]).
pub(crate) async fn start(
    client: &kube::Client,
    changed: &Arc<tokio::sync::Notify>,
) -> Option<(Watched, Vec<tokio::task::JoinHandle<()>>)> {
    use crate::controller::watches::watch;
    if !available(client).await {
        return None;
    }
    let (classes, a) = watch::<GatewayClass>(client, changed);
    let (gateways, b) = watch::<Gateway>(client, changed);
    let (routes, c) = watch::<HttpRoute>(client, changed);
    let (grants, d) = watch::<ReferenceGrant>(client, changed);
    let (namespaces, e) = watch::<Namespace>(client, changed);
    let watched = Watched {
        classes,
        gateways,
        routes,
        grants,
        namespaces,
        bundle_versions: bundle_versions(client).await,
    };
    tracing::info!("serving the Gateway API");
    Some((watched, vec![a, b, c, d, e]))
}

impl Watched {
    /// Waits until every watch has listed once; false if one cannot.
    pub(crate) async fn ready(&self) -> bool {
        self.classes.wait_until_ready().await.is_ok()
            && self.gateways.wait_until_ready().await.is_ok()
            && self.routes.wait_until_ready().await.is_ok()
            && self.grants.wait_until_ready().await.is_ok()
            && self.namespaces.wait_until_ready().await.is_ok()
    }
}
