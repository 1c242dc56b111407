//! Scale from and to zero for CeryxRoutes with `spec.wake.scaleTargetRef`: the proxies
//! never talk to Kubernetes, so they leave a wake request in the store (and a notice)
//! and record when each route last served; the leader scales the target to one replica
//! for a request, and to zero once the route has served nothing for `idleAfter`.

use super::crd::{CeryxRoute, ScaleKind, ScaleTargetRef};
use super::reconcile::{self, Context};
use crate::route::normalize_source;
use crate::route::rules::parse_duration;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

/// Longest time between two looks at the scale targets (shorter for short `idleAfter`s:
/// a quarter of it).
const MAX_TICK: Duration = Duration::from_secs(5);
/// Shortest time between two looks, however short an `idleAfter`.
const MIN_TICK: Duration = Duration::from_millis(100);

/// Why a look at one route's scale target failed (logged; looked at again next tick).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScaleError {
    /// The Kubernetes API refused or failed a call.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The route store failed.
    #[error("route store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Looks at every scale target each tick, and at once when a proxy asks for a wake
/// (`wakes` names the route), until `shutdown`. Only the leader acts.
pub(crate) async fn run(
    ctx: Arc<Context>,
    routes: Store<CeryxRoute>,
    mut wakes: UnboundedReceiver<String>,
    shutdown: CancellationToken,
) {
    loop {
        let tick = tick(&ctx, &routes.state());
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
            woken = wakes.recv() => if woken.is_none() { return },
        }
        if !ctx.leadership.may_write() {
            continue;
        }
        for route in routes.state() {
            if let Some(target) = scale_target(&ctx, &route)
                && let Err(error) = look(&ctx, &route, target).await
            {
                tracing::warn!(route = %route.name_any(), %error, "scale target not checked");
            }
        }
    }
}

/// The scale target of a route this controller acts for: of its class, and holding its
/// host (another class's route for the same host is another store's).
fn scale_target<'r>(ctx: &Context, route: &'r CeryxRoute) -> Option<&'r ScaleTargetRef> {
    let target = route.spec.wake.as_ref()?.scale_target_ref.as_ref()?;
    let class = route.spec.ingress_class_name.as_deref().unwrap_or("ceryx");
    (class == ctx.class && !reconcile::lost_host(route)).then_some(target)
}

/// The idle time of a route, if it goes back to sleep.
fn idle_after(route: &CeryxRoute) -> Option<Duration> {
    let idle = route.spec.wake.as_ref()?.idle_after.as_deref()?;
    parse_duration(idle).filter(|d| !d.is_zero())
}

/// How long to wait between two looks: a quarter of the shortest `idleAfter`, within
/// [`MIN_TICK`] and [`MAX_TICK`].
fn tick(ctx: &Context, routes: &[Arc<CeryxRoute>]) -> Duration {
    routes
        .iter()
        .filter(|r| scale_target(ctx, r).is_some())
        .filter_map(|r| idle_after(r))
        .map(|idle| idle / 4)
        .fold(MAX_TICK, Duration::min)
        .max(MIN_TICK)
}

/// One route: a pending wake request scales a target at zero to one; a target that
/// served nothing for `idleAfter` (plus the proxies' write interval, by which their
/// last-served time may lag) is scaled to zero.
async fn look(
    ctx: &Context,
    route: &CeryxRoute,
    target: &ScaleTargetRef,
) -> Result<(), ScaleError> {
    let Some(namespace) = route.namespace() else {
        return Ok(());
    };
    let Ok(source) = normalize_source(&route.spec.source) else {
        return Ok(());
    };
    let scaler = Scaler::new(ctx.client.clone(), &namespace, target);
    let replicas = scaler.replicas().await?;
    let store = &ctx.store;
    let now = unix_ms();
    if store.wake_requested(&source).await? {
        if replicas == 0 {
            scaler.set(1).await?;
            let note = format!(
                "Scaled {} {} to 1 replica for a waiting request",
                target.kind.as_str(),
                target.name
            );
            tracing::info!(%source, "{note}");
            event(ctx, route, "ScaledUp", note).await;
        }
        // Idle from the wake on, not from the last request before the last sleep.
        store.set_served(&source, now).await?;
        store.clear_wake_request(&source).await?;
        return Ok(());
    }
    let Some(idle_after) = idle_after(route) else {
        return Ok(());
    };
    if replicas == 0 {
        return Ok(());
    }
    let lag = (idle_after / 4).min(MAX_TICK);
    match store.served(&source).await? {
        // Up, and never served since it was seen: idle from now.
        None => store.set_served(&source, now).await?,
        Some(at) if now.saturating_sub(at) >= (idle_after + lag).as_millis() as u64 => {
            scaler.set(0).await?;
            store.clear_served(&source).await?;
            let idle = route
                .spec
                .wake
                .as_ref()
                .and_then(|w| w.idle_after.as_deref());
            let note = format!(
                "Scaled {} {} to 0 after {} idle",
                target.kind.as_str(),
                target.name,
                idle.unwrap_or_default()
            );
            tracing::info!(%source, "{note}");
            event(ctx, route, "ScaledDown", note).await;
        }
        Some(_) => {}
    }
    Ok(())
}

/// Publishes a Normal Event on the route.
async fn event(ctx: &Context, route: &CeryxRoute, reason: &str, note: String) {
    let event = Event {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(note),
        action: "Scale".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &route.object_ref(&())).await {
        tracing::warn!(%error, "could not publish an event");
    }
}

/// The scale subresource of one Deployment or StatefulSet.
enum Scaler {
    Deployment(Api<Deployment>, String),
    StatefulSet(Api<StatefulSet>, String),
}

impl Scaler {
    fn new(client: kube::Client, namespace: &str, target: &ScaleTargetRef) -> Scaler {
        let name = target.name.clone();
        match target.kind {
            ScaleKind::Deployment => Scaler::Deployment(Api::namespaced(client, namespace), name),
            ScaleKind::StatefulSet => Scaler::StatefulSet(Api::namespaced(client, namespace), name),
        }
    }

    /// The replicas the workload asks for.
    async fn replicas(&self) -> Result<i32, kube::Error> {
        let scale = match self {
            Scaler::Deployment(api, name) => api.get_scale(name).await?,
            Scaler::StatefulSet(api, name) => api.get_scale(name).await?,
        };
        Ok(scale.spec.and_then(|s| s.replicas).unwrap_or(0))
    }

    /// Sets the replicas the workload asks for.
    async fn set(&self, replicas: i32) -> Result<(), kube::Error> {
        let patch = Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}}));
        let params = PatchParams::default();
        match self {
            Scaler::Deployment(api, name) => api.patch_scale(name, &params, &patch).await?,
            Scaler::StatefulSet(api, name) => api.patch_scale(name, &params, &patch).await?,
        };
        Ok(())
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
