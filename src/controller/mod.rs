//! The Kubernetes side: the `CeryxRoute` custom resource and its reconciler, and the
//! merge of Ingresses (and HTTPRoutes) into the store.

pub(crate) mod claim;
pub mod crd;
pub(crate) mod endpoints;
pub(crate) mod gateway;
pub(crate) mod hosts;
pub(crate) mod ingress;
pub mod leader;
pub mod reconcile;
pub(crate) mod scale;
pub mod sync;
pub(crate) mod watches;

pub use crd::{CeryxRoute, CeryxRouteSpec, CeryxRouteStatus};

use crate::route::normalize_source;
use crate::store::Change;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, Predicate, WatchStreamExt, controller, predicates, watcher};
use reconcile::{Context, error_policy, reconcile};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Reconciles at once, at most: after an outage every resource is reconciled again,
/// and this bounds the burst on Redis and the API server.
const CONCURRENCY: u16 = 64;

/// How often routes of deleted resources are looked for.
const GC_INTERVAL: Duration = Duration::from_secs(300);

/// Runs the controller until `shutdown`: every `CeryxRoute` of its class reconciled into
/// the store, all of them again whenever the store may have lost changes (it came back
/// from an outage), the losers of a host conflict again as soon as the host changes
/// hands, orphaned routes collected at start and periodically, and scale targets woken
/// and put to sleep (see [`scale`]).
pub async fn run(mut ctx: Context, shutdown: CancellationToken) -> Result<(), reconcile::Error> {
    let api: Api<CeryxRoute> = Api::all(ctx.client.clone());
    // Fails fast, with the API's own message, when the CRD is not installed.
    api.list(&ListParams::default().limit(1)).await?;

    // A resource is reconciled when its spec, annotations or finalizers change, not when
    // the controller's own status patch comes back through the watch (which would
    // double the work after every change and every outage).
    let (routes, routes_writer) = reflector::store();
    let changes = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(routes_writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::finalizers),
            Default::default(),
        );
    let controller = Controller::for_stream(changes, routes.clone());
    // Secrets are watched as metadata only: enough to know they exist and changed, and
    // no private key crosses a watch.
    let (services, services_stream) = objects::<Service>(&ctx.client);
    let (slices, slices_stream) = objects::<EndpointSlice>(&ctx.client);
    let (secrets, secrets_stream) = objects::<PartialObjectMeta<Secret>>(&ctx.client);
    ctx.services = services;
    ctx.slices = slices;
    ctx.secrets = secrets;

    let (replay_tx, mut replay_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (resync_tx, resync_rx) = tokio::sync::mpsc::unbounded_channel();
    let (contested_tx, contested_rx) = tokio::sync::mpsc::unbounded_channel();
    let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel();
    let failures = ctx.failures.clone();
    let mut notices = ctx.store.subscribe();
    let notices = tokio::spawn(async move {
        while let Some(change) = notices.next().await {
            match change {
                Change::Resync => {
                    // The store is back (or just left): a failure from now on is a new
                    // one, not worth the back-off the outage built up.
                    crate::sync::lock(&failures).clear();
                    let _ = replay_tx.send(());
                }
                Change::Route { source, .. } => drop(contested_tx.send(source)),
                Change::Wake { source } => drop(wake_tx.send(source)),
            }
        }
    });
    let contested = {
        let routes = routes.clone();
        futures_util::stream::unfold(contested_rx, |mut rx| async move {
            rx.recv().await.map(|source| (source, rx))
        })
        .flat_map(move |source| futures_util::stream::iter(waiting_for(&routes, &source)))
    };

    let ctx = Arc::new(ctx);
    // After a resync, what was programmed is written back first, then everything is
    // reconciled.
    let replay = tokio::spawn({
        let (ctx, routes) = (ctx.clone(), routes.clone());
        async move {
            while replay_rx.recv().await.is_some() {
                let written = reconcile::replay(&ctx, &routes.state()).await;
                tracing::info!(written, "routes written back after a store resync");
                if resync_tx.send(()).is_err() {
                    return;
                }
            }
        }
    });
    let gc = tokio::spawn({
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        async move {
            loop {
                if ctx.leadership.may_write() {
                    match reconcile::collect_garbage(&ctx).await {
                        Ok(removed) => tracing::debug!(removed, "garbage collection done"),
                        Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(GC_INTERVAL) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    });
    let merged = tokio::spawn(sync::run(ctx.clone(), shutdown.clone()));
    let scaled = tokio::spawn(scale::run(
        ctx.clone(),
        routes.clone(),
        wake_rx,
        shutdown.clone(),
    ));
    let (by_service, by_slice, by_secret) = (routes.clone(), routes.clone(), routes.clone());
    // Each change also wakes the merge of Ingresses (one watch per kind for both).
    fn changed<T>(ctx: &Arc<Context>) -> impl FnMut(&T) + use<T> {
        let ctx = ctx.clone();
        move |_| ctx.endpoints_changed()
    }
    let services_stream = services_stream.inspect_ok(changed(&ctx));
    let slices_stream = slices_stream.inspect_ok(changed(&ctx));
    let secrets_stream = secrets_stream.inspect_ok(changed(&ctx));
    controller
        .with_config(controller::Config::default().concurrency(CONCURRENCY))
        .watches_stream(services_stream, move |service| {
            naming(&by_service, &service, |route, name| {
                reconcile::services(&route.spec).any(|s| s == name)
            })
        })
        .watches_stream(slices_stream, move |slice: EndpointSlice| {
            let Some(service) = slice.labels().get(endpoints::SERVICE_NAME) else {
                return Vec::new();
            };
            let namespace = slice.namespace();
            by_slice
                .state()
                .into_iter()
                .filter(|route| route.namespace() == namespace)
                .filter(|route| reconcile::services(&route.spec).any(|s| s == service))
                .map(|route| ObjectRef::from_obj(&*route))
                .collect()
        })
        .watches_stream(secrets_stream, move |secret| {
            naming(&by_secret, &secret, |route, name| {
                route.spec.settings.tls.as_ref().map(|t| &t.secret_name) == Some(name)
            })
        })
        .reconcile_on(contested)
        .reconcile_all_on(futures_util::stream::unfold(
            resync_rx,
            |mut rx| async move { rx.recv().await.map(|()| ((), rx)) },
        ))
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile did not finish");
            }
        })
        .await;
    gc.abort();
    merged.abort();
    scaled.abort();
    replay.abort();
    notices.abort();
    Ok(())
}

/// A cache of every `K` in the cluster, and the watch that fills it (polled by the
/// controller, which reconciles what the changes name).
fn objects<K>(
    client: &kube::Client,
) -> (
    Store<K>,
    impl futures_util::Stream<Item = Result<K, watcher::Error>> + use<K>,
)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let changes = watcher(
        Api::<K>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(writer)
    .touched_objects();
    (store, changes)
}

/// The resources in the namespace of `object` that name it (by `names`).
fn naming<K: kube::Resource>(
    routes: &Store<CeryxRoute>,
    object: &K,
    names: impl Fn(&CeryxRoute, &String) -> bool,
) -> Vec<ObjectRef<CeryxRoute>> {
    let (namespace, name) = (object.meta().namespace.clone(), object.meta().name.clone());
    let Some(name) = name else { return Vec::new() };
    routes
        .state()
        .into_iter()
        .filter(|route| route.namespace() == namespace && names(route, &name))
        .map(|route| ObjectRef::from_obj(&*route))
        .collect()
}

/// The resources claiming `source` that lost it (to another resource, or to a REST API
/// route): a change of the host may let one of them take it.
fn waiting_for(routes: &Store<CeryxRoute>, source: &str) -> Vec<ObjectRef<CeryxRoute>> {
    routes
        .state()
        .into_iter()
        .filter(|route| normalize_source(&route.spec.source).is_ok_and(|s| s == source))
        .filter(|route| reconcile::lost_host(route))
        .map(|route| ObjectRef::from_obj(&*route))
        .collect()
}

/// The CRD as YAML, exactly as `crds/ceryxroute.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&CeryxRoute::crd())
}
