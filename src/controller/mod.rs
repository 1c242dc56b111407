//! The Kubernetes side: the `CeryxRoute` custom resource and its reconciler.

pub mod crd;
pub mod leader;
pub mod reconcile;

pub use crd::{CeryxRoute, CeryxRouteSpec, CeryxRouteStatus};

use crate::store::Change;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use reconcile::{Context, error_policy, reconcile};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often routes of deleted resources are looked for.
const GC_INTERVAL: Duration = Duration::from_secs(300);

/// Runs the controller until `shutdown`: every `CeryxRoute` of its class reconciled into
/// the store, all of them again whenever the store may have lost changes (it came back
/// from an outage), and orphaned routes collected at start and periodically.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), reconcile::Error> {
    let api: Api<CeryxRoute> = Api::all(ctx.client.clone());
    // Fails fast, with the API's own message, when the CRD is not installed.
    api.list(&ListParams::default().limit(1)).await?;

    let (resync_tx, resync_rx) = tokio::sync::mpsc::unbounded_channel();
    ctx.store.watch(Arc::new(move |change| {
        if *change == Change::Resync {
            let _ = resync_tx.send(());
        }
    }));
    let ctx = Arc::new(ctx);
    let gc = tokio::spawn({
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        async move {
            loop {
                match reconcile::collect_garbage(&ctx).await {
                    Ok(removed) => tracing::debug!(removed, "garbage collection done"),
                    Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(GC_INTERVAL) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    });
    let controller = Controller::new(api, watcher::Config::default().any_semantic());
    // A changed TLS Secret reconciles the resources that name it.
    let routes = controller.store();
    let secrets: Api<Secret> = Api::all(ctx.client.clone());
    let tls_only = watcher::Config::default().fields("type=kubernetes.io/tls");
    controller
        .watches(secrets, tls_only, move |secret| {
            let (namespace, name) = (secret.namespace(), secret.name_any());
            routes
                .state()
                .into_iter()
                .filter(|route| {
                    route.namespace() == namespace
                        && route.spec.settings.tls.as_ref().map(|t| &t.secret_name) == Some(&name)
                })
                .map(|route| ObjectRef::from_obj(&*route))
                .collect::<Vec<_>>()
        })
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
    Ok(())
}

/// The CRD as YAML, exactly as `crds/ceryxroute.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&CeryxRoute::crd())
}
