//! The reconciler: a `CeryxRoute` becomes a route in the store, owned by the resource,
//! and its status says what happened. Deleting the resource removes the route (finalizer),
//! but only while the resource still owns it.

use super::crd::{CeryxRoute, CeryxRouteSpec, CeryxRouteStatus};
use crate::certificate;
use crate::route::{Route, Settings};
use crate::store::{CertificatePem, RouteStore, StoreError, Writer};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// Finalizer that keeps a resource until its route is out of the store.
pub const FINALIZER: &str = "ceryx.dev/route-cleanup";

/// Annotation (`"true"`) that lets a resource take over a host created through the
/// REST API (or written into Redis directly).
pub const TAKE_OVER: &str = "ceryx.dev/take-over";

/// Field manager of the status the controller writes (server-side apply).
pub const MANAGER: &str = "ceryx-controller";

/// What the reconciler needs.
pub struct Context {
    /// Kubernetes API client.
    pub client: kube::Client,
    /// Where routes go.
    pub store: Arc<dyn RouteStore>,
    /// Cluster DNS domain for Service targets (`cluster.local`).
    pub cluster_domain: String,
    /// The class this controller takes (`CERYX_INGRESS_CLASS`, `ceryx`).
    pub class: String,
    /// Publishes Kubernetes Events on the resources.
    pub recorder: Recorder,
}

impl Context {
    /// A context whose events are reported as `ceryx-controller`.
    pub fn new(
        client: kube::Client,
        store: Arc<dyn RouteStore>,
        cluster_domain: String,
        class: String,
    ) -> Context {
        let recorder = Recorder::new(client.clone(), MANAGER.into());
        Context {
            client,
            store,
            cluster_domain,
            class,
            recorder,
        }
    }
}

/// Why a reconcile failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a call.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The route store failed; the route is retried.
    #[error("route store: {0}")]
    Store(#[from] StoreError),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The resource has no namespace or name (not from the API server).
    #[error("the resource has no namespace or name")]
    Unnamed,
}

/// Reconciles one resource (counted and timed in the controller's metrics).
pub async fn reconcile(obj: Arc<CeryxRoute>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_once(obj, ctx).await;
    crate::telemetry::reconcile(result.is_ok(), started.elapsed());
    result
}

async fn reconcile_once(obj: Arc<CeryxRoute>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = obj.namespace().ok_or(Error::Unnamed)?;
    let api: Api<CeryxRoute> = Api::namespaced(ctx.client.clone(), &namespace);
    if obj.spec.ingress_class_name.as_deref().unwrap_or("ceryx") != ctx.class {
        return release(&api, &obj, &ctx).await;
    }
    finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(obj) => apply(&api, &obj, &ctx).await,
            Event::Cleanup(obj) => cleanup(&obj, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// How long after a failure a resource is tried again.
pub fn error_policy(_obj: Arc<CeryxRoute>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// `<namespace>/<name>`, the owner recorded in the store.
pub fn owner_of(obj: &CeryxRoute) -> Result<String, Error> {
    Ok(format!(
        "{}/{}",
        obj.namespace().ok_or(Error::Unnamed)?,
        obj.meta().name.as_deref().ok_or(Error::Unnamed)?
    ))
}

/// The target URL a spec points at; a Service becomes its cluster DNS name.
pub fn target_url(spec: &CeryxRouteSpec, namespace: &str, cluster_domain: &str) -> Option<String> {
    match (&spec.target.url, &spec.target.service) {
        (Some(url), None) => Some(url.clone()),
        (None, Some(service)) => Some(format!(
            "http://{}.{namespace}.svc.{cluster_domain}:{}",
            service.name, service.port
        )),
        _ => None,
    }
}

async fn apply(api: &Api<CeryxRoute>, obj: &CeryxRoute, ctx: &Context) -> Result<Action, Error> {
    let owner = owner_of(obj)?;
    let namespace = obj.namespace().ok_or(Error::Unnamed)?;
    let spec = &obj.spec;
    let settings = Settings {
        enforce_https: spec.settings.enforce_https,
        mode: spec.settings.mode,
        ..Settings::default()
    };
    let target = target_url(spec, &namespace, &ctx.cluster_domain);
    let route = target
        .as_deref()
        .and_then(|t| Route::new(&spec.source, t, settings).ok());
    let Some(route) = route else {
        let invalid = || {
            Verdict::no(
                "InvalidSpec",
                "spec.target needs exactly one of url or service, and spec.source a host name"
                    .into(),
            )
        };
        patch_status(api, obj, None, invalid(), invalid()).await?;
        return Ok(Action::await_change());
    };
    let take_unowned = obj
        .annotations()
        .get(TAKE_OVER)
        .is_some_and(|v| v == "true");
    let mut written = ctx
        .store
        .write(
            &route,
            Writer::Resource {
                owner: &owner,
                take_unowned,
            },
        )
        .await;
    // The older resource keeps a contested host: take it from a newer holder, or from
    // one that no longer exists.
    if let Err(StoreError::Owned(holder)) = &written {
        let holder = holder.clone();
        if let Some(loser) = yields_to(obj, &holder, &ctx.client).await? {
            written = ctx
                .store
                .write(
                    &route,
                    Writer::TakeOver {
                        owner: &owner,
                        from: &holder,
                    },
                )
                .await;
            if let (Ok(()), Some(loser)) = (&written, loser) {
                let message = format!(
                    "Host {} is owned by CeryxRoute {owner}, which is older",
                    route.source
                );
                let loser_api = Api::namespaced(
                    ctx.client.clone(),
                    &loser.namespace().ok_or(Error::Unnamed)?,
                );
                let target = loser.status.as_ref().and_then(|s| s.target.clone());
                let lost = || Verdict::no("HostConflict", message.clone());
                patch_status(&loser_api, &loser, target.as_deref(), lost(), lost()).await?;
            }
        }
    }
    let owns = || Verdict::yes("Accepted", format!("Owns host {}", route.source));
    let conflict = |message: String| {
        (
            Verdict::no("HostConflict", message.clone()),
            Verdict::no("HostConflict", message),
        )
    };
    let (accepted, programmed) = match &written {
        Ok(()) => (
            owns(),
            match sync_certificate(obj, &route.source, &owner, ctx).await? {
                Ok(tls) => Verdict::yes(
                    "Programmed",
                    format!(
                        "Served by every proxy: {} -> {}{tls}",
                        route.source, route.target
                    ),
                ),
                Err(why) => Verdict::no("InvalidCertificate", why),
            },
        ),
        Err(StoreError::Owned(other)) => conflict(format!(
            "Host {} is owned by CeryxRoute {other}",
            route.source
        )),
        Err(StoreError::Unowned) => conflict(format!(
            "Host {} was created through the REST API; annotate {TAKE_OVER}=\"true\" to take it over",
            route.source
        )),
        Err(e) => (
            owns(),
            Verdict::no("StoreUnavailable", format!("The route store failed: {e}")),
        ),
    };
    let event = changed(obj, &programmed).then(|| KubeEvent {
        type_: if programmed.status == "True" {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: programmed.reason.into(),
        note: Some(programmed.message.clone()),
        action: "Reconcile".into(),
        secondary: None,
    });
    patch_status(api, obj, Some(&route.target), accepted, programmed).await?;
    if let Some(event) = event
        && let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await
    {
        tracing::warn!(error = %e, "could not publish an event");
    }
    match written {
        Ok(()) | Err(StoreError::Owned(_) | StoreError::Unowned) => {
            Ok(Action::requeue(Duration::from_secs(300)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Brings the certificate stored for `source` in line with `spec.settings.tls`: the
/// Secret's pair when it is a valid `kubernetes.io/tls` Secret, nothing otherwise. The
/// inner `Err` says why the Secret cannot be used (the route is served over plain HTTP
/// and HTTPS with the default certificate meanwhile); the inner `Ok` is a note for the
/// status message.
async fn sync_certificate(
    obj: &CeryxRoute,
    source: &str,
    owner: &str,
    ctx: &Context,
) -> Result<Result<String, String>, Error> {
    let (wanted, note) = match &obj.spec.settings.tls {
        None => (Ok(None), String::new()),
        Some(tls) => {
            let namespace = obj.namespace().ok_or(Error::Unnamed)?;
            let name = &tls.secret_name;
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
            let found = secrets.get_opt(name).await?;
            (
                certificate_of(found.as_ref())
                    .map(Some)
                    .map_err(|why| format!("Secret {namespace}/{name}: {why}")),
                format!(" (TLS from Secret {name})"),
            )
        }
    };
    let stored = ctx.store.certificates(&[source]).await?.pop().flatten();
    let keep = wanted.as_ref().ok().cloned().flatten();
    if stored != keep {
        ctx.store
            .set_certificate(source, keep.as_ref(), owner)
            .await?;
    }
    Ok(wanted.map(|_| note))
}

/// The certificate and key of a `kubernetes.io/tls` Secret, checked as the proxies
/// will load them.
fn certificate_of(secret: Option<&Secret>) -> Result<CertificatePem, String> {
    let secret = secret.ok_or("not found")?;
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    if type_ != "kubernetes.io/tls" {
        return Err(format!("type is {type_}, not kubernetes.io/tls"));
    }
    let field = |key: &str| {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or(format!("no {key}"))?;
        String::from_utf8(bytes.0.clone()).map_err(|_| format!("{key} is not PEM text"))
    };
    let pem = CertificatePem {
        certificate: field("tls.crt")?,
        key: field("tls.key")?,
    };
    certificate::parse_stored(&pem).map_err(|e| e.to_string())?;
    Ok(pem)
}

/// Whether `Programmed` would change status or reason (worth an Event).
fn changed(obj: &CeryxRoute, programmed: &Verdict) -> bool {
    let previous = obj
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Programmed"));
    previous.is_none_or(|c| c.status != programmed.status || c.reason != programmed.reason)
}

/// Whether `obj` may take its host from `holder` (`<namespace>/<name>`): `Some` with the
/// holder when it is newer, `Some(None)` when it no longer exists, `None` when it is older.
async fn yields_to(
    obj: &CeryxRoute,
    holder: &str,
    client: &kube::Client,
) -> Result<Option<Option<CeryxRoute>>, Error> {
    let Some((namespace, name)) = holder.split_once('/') else {
        return Ok(Some(None));
    };
    let api: Api<CeryxRoute> = Api::namespaced(client.clone(), namespace);
    let Some(other) = api.get_opt(name).await? else {
        return Ok(Some(None));
    };
    let age = |o: &CeryxRoute| (o.meta().creation_timestamp.clone(), owner_of(o).ok());
    Ok((age(obj) < age(&other)).then_some(Some(other)))
}

/// A resource of another class: if it was ours (it carries our finalizer, its class
/// changed), give its host and its finalizer back; otherwise leave it alone.
async fn release(api: &Api<CeryxRoute>, obj: &CeryxRoute, ctx: &Context) -> Result<Action, Error> {
    if !obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    cleanup(obj, ctx).await?;
    let remaining: Vec<&String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    // resourceVersion makes the merge patch fail instead of dropping a finalizer that
    // someone added meanwhile (the next reconcile tries again).
    let patch = serde_json::json!({"metadata": {
        "finalizers": remaining,
        "resourceVersion": obj.meta().resource_version,
    }});
    let name = obj.meta().name.as_deref().ok_or(Error::Unnamed)?;
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(Action::await_change())
}

async fn cleanup(obj: &CeryxRoute, ctx: &Context) -> Result<Action, Error> {
    let owner = owner_of(obj)?;
    let Ok(source) = crate::route::normalize_source(&obj.spec.source) else {
        return Ok(Action::await_change());
    };
    // Only the owner's delete removes anything: a host another resource or the REST
    // API holds is left alone.
    ctx.store
        .remove(
            &source,
            Writer::Resource {
                owner: &owner,
                take_unowned: false,
            },
        )
        .await?;
    Ok(Action::await_change())
}

/// One condition's status, reason and message.
struct Verdict {
    status: &'static str,
    reason: &'static str,
    message: String,
}

impl Verdict {
    fn yes(reason: &'static str, message: String) -> Verdict {
        Verdict {
            status: "True",
            reason,
            message,
        }
    }

    fn no(reason: &'static str, message: String) -> Verdict {
        Verdict {
            status: "False",
            reason,
            message,
        }
    }
}

/// Writes `Accepted` and `Programmed` with the generation they describe (server-side
/// apply), keeping each condition's transition time while its status stays the same.
async fn patch_status(
    api: &Api<CeryxRoute>,
    obj: &CeryxRoute,
    target: Option<&str>,
    accepted: Verdict,
    programmed: Verdict,
) -> Result<(), Error> {
    let generation = obj.meta().generation;
    let previous = obj
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let condition = |type_: &str, verdict: Verdict| {
        let unchanged = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == verdict.status);
        Condition {
            type_: type_.into(),
            status: verdict.status.into(),
            reason: verdict.reason.into(),
            message: verdict.message,
            observed_generation: generation,
            last_transition_time: unchanged
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now())),
        }
    };
    let status = CeryxRouteStatus {
        observed_generation: generation,
        target: target.map(String::from),
        conditions: vec![
            condition("Accepted", accepted),
            condition("Programmed", programmed),
        ],
    };
    let patch = serde_json::json!({
        "apiVersion": "ceryx.dev/v1alpha1",
        "kind": "CeryxRoute",
        "status": status,
    });
    let name = obj.meta().name.as_deref().ok_or(Error::Unnamed)?;
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    Ok(())
}

/// Removes routes whose owning resource no longer exists (deleted while no controller
/// ran, or its finalizer was removed by hand); returns how many.
pub async fn collect_garbage(ctx: &Context) -> Result<usize, Error> {
    // Owners first, resources second: a resource created in between is in the list, so
    // its fresh route is never taken for an orphan.
    let owned = ctx.store.owners().await?;
    let api: Api<CeryxRoute> = Api::all(ctx.client.clone());
    let existing: std::collections::HashSet<String> = api
        .list(&kube::api::ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|obj| owner_of(obj).ok())
        .collect();
    let mut removed = 0;
    for (source, owner) in owned {
        if existing.contains(&owner) {
            continue;
        }
        let by = Writer::Resource {
            owner: &owner,
            take_unowned: false,
        };
        if ctx.store.remove(&source, by).await? {
            tracing::info!(%source, %owner, "removed the route of a CeryxRoute that no longer exists");
            removed += 1;
        }
    }
    Ok(removed)
}
