//! The reconciler: a `CeryxRoute` becomes a route in the store, owned by the resource,
//! and its status says what happened. Deleting the resource removes the route (finalizer),
//! but only while the resource still owns it.

use super::crd::{CeryxRoute, CeryxRouteSpec, CeryxRouteStatus};
use super::endpoints::Index;
use super::hosts;
use super::leader::Leadership;
use crate::certificate;
use crate::route::{Field, Route, Settings, normalize_source, rules};
use crate::store::{CertificatePem, RouteStore, StoreError, Writer};
use crate::sync::lock;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::{Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Finalizer that keeps a resource of the default class until its route is out of
/// the store; other classes have their own ([`finalizer_of`]), so that installs of
/// different classes in one cluster never take each other's.
pub const FINALIZER: &str = "ceryx.dev/route-cleanup";

/// The finalizer of the controller of `class`.
pub fn finalizer_of(class: &str) -> String {
    if class == "ceryx" {
        FINALIZER.to_owned()
    } else {
        format!("{class}.ceryx.dev/route-cleanup")
    }
}

/// Annotation (`"true"`) that lets a resource take over a host created through the
/// REST API (or written into Redis directly).
pub const TAKE_OVER: &str = "ceryx.dev/take-over";

/// Field manager of the status the controller writes (server-side apply).
pub const MANAGER: &str = "ceryx-controller";

/// How long a resource that was programmed waits before it is checked again (routes
/// written or deleted in Redis by other tools are put back).
const RECHECK: Duration = Duration::from_secs(300);

/// First and longest wait before a failed reconcile is tried again (doubling between).
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// Consecutive failures per resource.
pub(super) type Failures = HashMap<ObjectRef<CeryxRoute>, u32>;

/// The status last written per resource, with the resourceVersion it was written over.
type Published = HashMap<ObjectRef<CeryxRoute>, (Option<String>, CeryxRouteStatus)>;

/// A Secret's resourceVersion and what it held, as last read.
type ReadCertificate = (String, Result<CertificatePem, String>);

/// Where this install's proxies are reachable, published on the objects it serves.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    /// IP addresses or host names (`CERYX_PUBLISH_ADDRESS`).
    pub addresses: Vec<String>,
    /// The proxies' Service, `<namespace>/<name>` (`CERYX_PUBLISH_SERVICE`): its load
    /// balancer's addresses, or its external IPs.
    pub service: Option<String>,
}

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
    /// The install recorded with every owner this controller writes.
    pub install: String,
    /// This class's finalizer.
    finalizer: String,
    /// Publishes Kubernetes Events on the resources.
    pub recorder: Recorder,
    /// Whether this replica leads (checked before every write).
    pub leadership: Leadership,
    /// Where the proxies are reachable, published on Ingresses and Gateways.
    pub publish: Publish,
    /// The `controllerName` of the GatewayClasses this controller serves.
    pub gateway_controller: String,
    /// Services, kept by the controller's watch.
    pub services: Store<Service>,
    /// EndpointSlices, kept by the controller's watch.
    pub slices: Store<EndpointSlice>,
    /// Services and slices indexed for resolution; dropped on every change of either.
    index: Mutex<Option<Arc<Index>>>,
    /// Woken on every change the merge of Ingresses and HTTPRoutes may depend on.
    pub(super) changed: Arc<tokio::sync::Notify>,
    /// Secrets' metadata, kept by the controller's watch.
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// Each Secret's certificate as last read, by `<namespace>/<name>` and
    /// resourceVersion: a Secret is read again only when it changed.
    certificates: Mutex<HashMap<String, ReadCertificate>>,
    /// Consecutive failures per resource, for the retry back-off.
    pub(super) failures: Arc<Mutex<Failures>>,
    /// What each resource's status was last patched to: a retry that runs before the
    /// watch brings the patched object back must not patch (and count) it again.
    published: Mutex<Published>,
    /// Set once both watches have listed. Reconciles wait on this, not each on the
    /// stores: a store's readiness wakes only the last of several tasks waiting on it
    /// (kube-runtime's `DelayedInit`), and a new leader starts many reconciles at once.
    watched: tokio::sync::OnceCell<()>,
}

impl Context {
    /// A context whose events are reported as `ceryx-controller`, writing as `install`.
    pub fn new(
        client: kube::Client,
        store: Arc<dyn RouteStore>,
        cluster_domain: String,
        class: String,
        install: String,
    ) -> Context {
        let recorder = Recorder::new(client.clone(), MANAGER.into());
        Context {
            client,
            store,
            cluster_domain,
            finalizer: finalizer_of(&class),
            class,
            install,
            recorder,
            leadership: Leadership::always(),
            publish: Publish::default(),
            gateway_controller: super::gateway::translate::CONTROLLER_NAME.to_owned(),
            services: reflector::store().0,
            slices: reflector::store().0,
            index: Mutex::default(),
            changed: Arc::default(),
            secrets: reflector::store().0,
            certificates: Mutex::default(),
            failures: Arc::default(),
            published: Mutex::default(),
            watched: tokio::sync::OnceCell::new(),
        }
    }
}

impl Context {
    /// Waits until the watches of Services, EndpointSlices and Secrets have listed.
    pub(super) async fn listed(&self) {
        self.watched
            .get_or_init(|| async {
                let _ = self.services.wait_until_ready().await;
                let _ = self.slices.wait_until_ready().await;
                let _ = self.secrets.wait_until_ready().await;
            })
            .await;
    }

    /// Services and their endpoints as the watches hold them now.
    pub(super) fn index(&self) -> Arc<Index> {
        lock(&self.index)
            .get_or_insert_with(|| Arc::new(Index::new(self.services.state(), self.slices.state())))
            .clone()
    }

    /// A Service or EndpointSlice changed: the index is rebuilt when next asked for,
    /// and the merge runs again.
    pub(super) fn endpoints_changed(&self) {
        *lock(&self.index) = None;
        self.changed.notify_one();
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
    /// This replica does not lead (any more): it must not write.
    #[error("not the leader")]
    NotLeader,
}

/// Reconciles one resource (counted and timed in the controller's metrics).
pub async fn reconcile(obj: Arc<CeryxRoute>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leadership.may_write() {
        return Err(Error::NotLeader);
    }
    // Until the watches have listed once, a Service or Secret would look missing.
    ctx.listed().await;
    let started = std::time::Instant::now();
    let key = ObjectRef::from_obj(&*obj);
    let result = reconcile_once(obj, &ctx).await;
    crate::telemetry::reconcile(result.is_ok(), started.elapsed());
    if result.is_ok() {
        lock(&ctx.failures).remove(&key);
    }
    result
}

async fn reconcile_once(obj: Arc<CeryxRoute>, ctx: &Context) -> Result<Action, Error> {
    let namespace = obj.namespace().ok_or(Error::Unnamed)?;
    let api: Api<CeryxRoute> = Api::namespaced(ctx.client.clone(), &namespace);
    if obj.spec.ingress_class_name.as_deref().unwrap_or("ceryx") != ctx.class {
        return release(&api, &obj, ctx).await;
    }
    finalizer(&api, &ctx.finalizer, obj, |event| async {
        match event {
            Event::Apply(obj) => apply(&api, &obj, ctx).await,
            Event::Cleanup(obj) => cleanup(&obj, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// How long after a failure a resource is tried again: doubling per consecutive
/// failure of that resource, from 1 s up to 5 min, so an outage of the store costs the
/// API server a few requests per resource, not one every few seconds.
pub fn error_policy(obj: Arc<CeryxRoute>, error: &Error, ctx: Arc<Context>) -> Action {
    if matches!(error, Error::NotLeader) {
        return Action::await_change();
    }
    let failures = {
        let mut failures = lock(&ctx.failures);
        let n = failures.entry(ObjectRef::from_obj(&*obj)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = RETRY_FIRST
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(RETRY_MAX);
    tracing::warn!(%error, resource = %ObjectRef::from_obj(&*obj), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// `<namespace>/<name>@<install>`, the owner recorded in the store.
pub fn owner_of(obj: &CeryxRoute, install: &str) -> Result<String, Error> {
    Ok(format!("{}@{install}", resource_name(obj)?))
}

/// `<namespace>/<name>`.
fn resource_name(obj: &CeryxRoute) -> Result<String, Error> {
    Ok(format!(
        "{}/{}",
        obj.namespace().ok_or(Error::Unnamed)?,
        obj.meta().name.as_deref().ok_or(Error::Unnamed)?
    ))
}

/// An owner as recorded in the store: the resource and, except for owners written
/// before installs were recorded, the install that wrote it.
struct Holder<'a> {
    resource: &'a str,
    install: Option<&'a str>,
}

impl<'a> Holder<'a> {
    fn parse(owner: &'a str) -> Holder<'a> {
        match owner.split_once('@') {
            Some((resource, install)) => Holder {
                resource,
                install: Some(install),
            },
            None => Holder {
                resource: owner,
                install: None,
            },
        }
    }

    /// Whether this owner is a resource of `install` (or of no recorded install), that
    /// is, one this controller can look up.
    fn local_to(&self, install: &str) -> bool {
        self.install.is_none_or(|i| i == install)
    }
}

/// Whether the resource's status says it lost its host to another claim (a resource
/// or a REST API route), so that a change of that host's holder may let it in.
pub fn lost_host(obj: &CeryxRoute) -> bool {
    condition(obj, "Accepted").is_some_and(|c| c.status == "False" && c.reason == "HostConflict")
}

fn condition<'a>(obj: &'a CeryxRoute, type_: &str) -> Option<&'a Condition> {
    obj.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// The target URL a spec points at; a Service becomes its cluster DNS name.
pub fn target_url(spec: &CeryxRouteSpec, namespace: &str, cluster_domain: &str) -> Option<String> {
    match (&spec.target.url, &spec.target.service) {
        (Some(url), None) => Some(url.clone()),
        (None, Some(service)) => Some(service_url(
            &service.name,
            service.port,
            namespace,
            cluster_domain,
        )),
        _ => None,
    }
}

/// The route a resource asks for, or what is wrong with its spec.
fn route_of(obj: &CeryxRoute, namespace: &str, ctx: &Context) -> Result<Route, String> {
    let spec = &obj.spec;
    let settings = Settings {
        enforce_https: spec.settings.enforce_https,
        mode: spec.settings.mode,
        ..Settings::default()
    };
    let target = target_url(spec, namespace, &ctx.cluster_domain)
        .ok_or_else(|| "spec.target: needs exactly one of url or service".to_owned())?;
    let mut route = Route::new(&spec.source, &target, settings)
        .map_err(|e| format!("{}: {e}", spec_field(spec, e.field())))?;
    rules::validate(&spec.rules, rules::Backends::Services).map_err(|e| format!("spec.{e}"))?;
    route.rules = spec.rules.clone();
    // A Service target is served over the Service's endpoints (the target keeps its DNS
    // name, for the status and for readers of the store that know no rules).
    if let Some(service) = &spec.target.service {
        route.rules.push(rules::Rule {
            backend_refs: vec![rules::BackendRef {
                service: Some(rules::ServiceRef {
                    name: service.name.clone(),
                    port: u16::try_from(service.port).unwrap_or_default(),
                    namespace: None,
                }),
                ..rules::BackendRef::default()
            }],
            ..rules::Rule::default()
        });
    }
    // The stored wake names the scale target (`Kind/name`): the proxies hold requests
    // while it sleeps and ask this controller to wake it.
    if let Some(w) = &spec.wake {
        let scale = w.scale_target_ref.as_ref();
        let mut wake = crate::route::Wake {
            webhook: w.webhook.clone(),
            scale: scale.map(|t| format!("{}/{}", t.kind.as_str(), t.name)),
            timeout: w.timeout.clone(),
            strategy: w.strategy,
            sleep_webhook: w.sleep_webhook.clone(),
            idle_after: w.idle_after.clone(),
        };
        crate::route::wake::validate(&mut wake).map_err(|e| format!("spec.{e}"))?;
        route.wake = Some(Box::new(wake));
    }
    // The store holds a Service with its ready endpoints (none: the proxy answers 503,
    // or holds the request while a scale target wakes).
    let index = ctx.index();
    for rule in &mut route.rules {
        for backend in rule.backends_mut() {
            // A Service without the port is served as one without endpoints (503).
            let _ = index.fill(backend, namespace, false);
        }
    }
    Ok(route)
}

/// The Services of `route` with no ready endpoint, in words for the status.
fn unready(route: &Route) -> String {
    let names: Vec<String> = route
        .rules
        .iter()
        .flat_map(|rule| rule.backends())
        .filter(|b| b.endpoints.is_empty())
        .filter_map(|b| b.service.as_ref().map(|s| s.name.clone()))
        .collect();
    match names.is_empty() {
        true => String::new(),
        false => format!(
            "; no ready endpoints (answered 503): Service {}",
            names.join(", ")
        ),
    }
}

/// Every Service a spec names: its target's and its rules' backends' (mirrors included).
pub(crate) fn services(spec: &CeryxRouteSpec) -> impl Iterator<Item = &str> {
    let rules = spec.rules.iter().flat_map(|rule| rule.backends());
    let target = spec.target.service.as_ref().map(|s| s.name.as_str());
    target
        .into_iter()
        .chain(rules.filter_map(|b| Some(b.service.as_ref()?.name.as_str())))
}

/// A Service port's URL, by its cluster DNS name.
fn service_url(name: &str, port: i32, namespace: &str, cluster_domain: &str) -> String {
    format!("http://{name}.{namespace}.svc.{cluster_domain}:{port}")
}

/// Where in `spec` a route field comes from, so the status names what to fix.
fn spec_field(spec: &CeryxRouteSpec, field: Field) -> &'static str {
    match field {
        Field::Source => "spec.source",
        // A Service's DNS name is the target: its name (or port) is what to fix.
        Field::Target if spec.target.service.is_some() => "spec.target.service",
        Field::Target => "spec.target.url",
        Field::Mode => "spec.settings.mode",
    }
}

/// Writes back, without asking the API server, the route of every resource of this
/// class whose status says it was programmed as its spec stands: after Redis comes back
/// empty, the proxies serve again after a few hundred Redis writes instead of as many
/// reconciles (bound by the API server). The reconciles that follow check the rest.
/// Returns how many were written.
pub async fn replay(ctx: &Context, resources: &[Arc<CeryxRoute>]) -> usize {
    use futures_util::StreamExt;
    let routes: Vec<(Route, String)> = resources
        .iter()
        .filter(|obj| obj.spec.ingress_class_name.as_deref().unwrap_or("ceryx") == ctx.class)
        .filter(|obj| obj.meta().deletion_timestamp.is_none())
        .filter_map(|obj| {
            let status = obj.status.as_ref()?;
            let route = route_of(obj, obj.namespace().as_deref()?, ctx).ok()?;
            let programmed = status.observed_generation == obj.meta().generation
                && status.source.as_deref() == Some(route.source.as_str())
                && status.target.as_deref() == Some(route.target.as_str());
            programmed.then(|| Some((route, owner_of(obj, &ctx.install).ok()?)))?
        })
        .collect();
    futures_util::stream::iter(routes)
        .map(|(route, owner)| async move {
            if !ctx.leadership.may_write() {
                return false;
            }
            let by = Writer::Resource {
                owner: &owner,
                take_unowned: false,
            };
            ctx.store.write(&route, by).await.is_ok()
        })
        .buffer_unordered(64)
        .filter(|written| std::future::ready(*written))
        .count()
        .await
}

/// The status a reconcile arrives at.
struct Outcome {
    accepted: Verdict,
    resolved: Verdict,
    programmed: Verdict,
    /// The host and target programmed (or kept, while the store is away).
    source: Option<String>,
    target: Option<String>,
}

impl Outcome {
    /// The host is someone else's: nothing is programmed, and `message` says whose.
    fn conflict(message: String) -> Outcome {
        Outcome {
            accepted: Verdict::no("HostConflict", message.clone()),
            resolved: Verdict::resolved(),
            programmed: Verdict::no("HostConflict", message),
            source: None,
            target: None,
        }
    }
}

async fn apply(api: &Api<CeryxRoute>, obj: &CeryxRoute, ctx: &Context) -> Result<Action, Error> {
    let owner = owner_of(obj, &ctx.install)?;
    let namespace = obj.namespace().ok_or(Error::Unnamed)?;
    let spec = &obj.spec;
    let route = route_of(obj, &namespace, ctx);
    let route = match route {
        Ok(route) => route,
        Err(message) => {
            let invalid = || Verdict::no("InvalidSpec", message.clone());
            let outcome = Outcome {
                accepted: invalid(),
                resolved: invalid(),
                programmed: invalid(),
                source: None,
                target: None,
            };
            publish(api, obj, outcome, ctx).await?;
            return Ok(Action::await_change());
        }
    };
    // The host this resource held before an edit of spec.source is given up.
    let previous = obj
        .status
        .as_ref()
        .and_then(|s| s.source.as_deref())
        .filter(|s| *s != route.source);

    let missing = services(spec).find(|name| {
        ctx.services
            .get(&ObjectRef::new(name).within(&namespace))
            .is_none()
    });
    if let Some(missing) = missing {
        // Nothing is routed to a name that does not resolve: the host answers 503.
        remove_owned(ctx, &route.source, &owner).await?;
        if let Some(previous) = previous {
            remove_owned(ctx, previous, &owner).await?;
        }
        let message = format!("Service {namespace}/{missing} not found");
        let outcome = Outcome {
            accepted: Verdict::yes("Accepted", "The resource is valid".into()),
            resolved: Verdict::no("BackendNotFound", message.clone()),
            programmed: Verdict::no("BackendNotFound", message),
            source: None,
            target: None,
        };
        publish(api, obj, outcome, ctx).await?;
        return Ok(Action::await_change());
    }

    let written = write(obj, &route, &owner, ctx).await?;
    // Written or refused, the new host is what the resource asks for now: the old one
    // goes (unless the store is away, when nothing can be known).
    if let (Ok(()) | Err(StoreError::Owned(_) | StoreError::Unowned), Some(previous)) =
        (&written, previous)
    {
        remove_owned(ctx, previous, &owner).await?;
    }
    let outcome = match &written {
        Ok(()) => {
            let owns = Verdict::yes("Accepted", format!("Owns host {}", route.source));
            match sync_certificate(obj, &route.source, &owner, ctx).await? {
                Ok(tls) => Outcome {
                    accepted: owns,
                    resolved: Verdict::resolved(),
                    programmed: Verdict::yes(
                        "Programmed",
                        format!(
                            "Served by every proxy: {} -> {}{tls}{}",
                            route.source,
                            route.target,
                            unready(&route)
                        ),
                    ),
                    source: Some(route.source.clone()),
                    target: Some(route.target.clone()),
                },
                Err(why) => Outcome {
                    accepted: owns,
                    resolved: Verdict::no("InvalidCertificate", why.clone()),
                    programmed: Verdict::no("InvalidCertificate", why),
                    source: Some(route.source.clone()),
                    target: Some(route.target.clone()),
                },
            }
        }
        Err(StoreError::Owned(other)) => Outcome::conflict(owned_by(&route.source, other, ctx)),
        Err(StoreError::Unowned) => Outcome::conflict(format!(
            "Host {} was created through the REST API; annotate {TAKE_OVER}=\"true\" to take it over",
            route.source
        )),
        Err(_) => {
            let why = "The route store did not answer; retrying".to_owned();
            let status = obj.status.as_ref();
            Outcome {
                accepted: Verdict::unknown("StoreUnavailable", why.clone()),
                resolved: Verdict::resolved(),
                programmed: Verdict::no("StoreUnavailable", why),
                // What the proxies serve meanwhile is what was programmed before.
                source: status.and_then(|s| s.source.clone()),
                target: status.and_then(|s| s.target.clone()),
            }
        }
    };
    publish(api, obj, outcome, ctx).await?;
    match written {
        Ok(()) => Ok(Action::requeue(RECHECK)),
        // A change of the host's holder (a store notice) reconciles this one again.
        Err(StoreError::Owned(_) | StoreError::Unowned) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// Writes the route as `owner`; the older resource keeps a contested host: it takes
/// it from a newer holder, or from one that no longer exists. The outer `Err` is a
/// failure to ask the API server, the inner one the store's answer.
async fn write(
    obj: &CeryxRoute,
    route: &Route,
    owner: &str,
    ctx: &Context,
) -> Result<Result<(), StoreError>, Error> {
    if !ctx.leadership.may_write() {
        return Err(Error::NotLeader);
    }
    let take_unowned = obj
        .annotations()
        .get(TAKE_OVER)
        .is_some_and(|v| v == "true");
    let by = Writer::Resource {
        owner,
        take_unowned,
    };
    let written = ctx.store.write(route, by).await;
    if written.is_ok() {
        tracing::debug!(source = %route.source, %owner, "route written");
    }
    let Err(StoreError::Owned(holder)) = &written else {
        return Ok(written);
    };
    let holder = holder.clone();
    let Some(loser) = yields_to(obj, &holder, ctx).await? else {
        return Ok(written);
    };
    let by = Writer::TakeOver {
        owner,
        from: &holder,
    };
    let written = ctx.store.write(route, by).await;
    if let (Ok(()), Some(loser)) = (&written, loser) {
        // The newer resource learns at once that it lost, and why.
        // The same words the loser's own reconcile will find, so it has nothing to patch.
        let outcome = Outcome::conflict(owned_by(&route.source, owner, ctx));
        let loser_api = Api::namespaced(
            ctx.client.clone(),
            &loser.namespace().ok_or(Error::Unnamed)?,
        );
        publish(&loser_api, &loser, outcome, ctx).await?;
    }
    Ok(written)
}

/// Why a host is not this resource's: who holds it, in words for the status.
fn owned_by(source: &str, holder: &str, ctx: &Context) -> String {
    format!("Host {source} is owned by {}", holder_words(holder, ctx))
}

/// The holder of a host, as recorded in the store, in words for a status or an Event.
pub(super) fn holder_words(holder: &str, ctx: &Context) -> String {
    let holder = Holder::parse(holder);
    let what = if holder.resource == hosts::OWNER {
        "Ingress and HTTPRoute objects".to_owned()
    } else {
        format!("CeryxRoute {}", holder.resource)
    };
    match holder.install {
        Some(install) if install != ctx.install => format!("{what} of another install ({install})"),
        _ => what,
    }
}

/// Removes `source` if `owner` holds it, or the same resource as recorded before
/// installs were (a route of anyone else is left alone).
async fn remove_owned(ctx: &Context, source: &str, owner: &str) -> Result<(), Error> {
    if !ctx.leadership.may_write() {
        return Err(Error::NotLeader);
    }
    let legacy = Holder::parse(owner).resource;
    for owner in [owner, legacy] {
        let by = Writer::Resource {
            owner,
            take_unowned: false,
        };
        ctx.store.remove(source, by).await?;
    }
    Ok(())
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
            (
                secret_certificate(ctx, &namespace, name)
                    .await?
                    .map(Some)
                    .map_err(|why| format!("Secret {namespace}/{name}: {why}")),
                format!(" (TLS from Secret {name})"),
            )
        }
    };
    let stored = ctx.store.certificates(&[source]).await?.pop().flatten();
    let keep = wanted.as_ref().ok().cloned().flatten();
    if stored != keep {
        if !ctx.leadership.may_write() {
            return Err(Error::NotLeader);
        }
        ctx.store
            .set_certificate(source, keep.as_ref(), owner)
            .await?;
    }
    Ok(wanted.map(|_| note))
}

/// The certificate of Secret `namespace/name`, read from the API server only when the
/// watch saw a version not read yet.
pub(super) async fn secret_certificate(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Result<CertificatePem, String>, Error> {
    let key = format!("{namespace}/{name}");
    let Some(meta) = ctx.secrets.get(&ObjectRef::new(name).within(namespace)) else {
        lock(&ctx.certificates).remove(&key);
        return Ok(Err("not found".into()));
    };
    let version = meta.resource_version().unwrap_or_default();
    if let Some((read, certificate)) = lock(&ctx.certificates).get(&key)
        && *read == version
    {
        return Ok(certificate.clone());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = secrets.get_opt(name).await?;
    let certificate = certificate_of(secret.as_ref());
    let read = secret
        .as_ref()
        .and_then(|s| s.resource_version())
        .unwrap_or_default();
    lock(&ctx.certificates).insert(key, (read, certificate.clone()));
    Ok(certificate)
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

/// Whether `obj` may take its host from `holder`: `Some` with the holder when it is
/// newer, `Some(None)` when it no longer exists (or is this very resource, recorded
/// before installs were), `None` when it is older or another install's.
async fn yields_to(
    obj: &CeryxRoute,
    holder: &str,
    ctx: &Context,
) -> Result<Option<Option<CeryxRoute>>, Error> {
    let holder = Holder::parse(holder);
    // The merged hosts of Ingresses and HTTPRoutes are held as long as they are asked for.
    if !holder.local_to(&ctx.install) || holder.resource == hosts::OWNER {
        return Ok(None);
    }
    let Some((namespace, name)) = holder.resource.split_once('/') else {
        return Ok(Some(None));
    };
    if holder.resource == resource_name(obj)? {
        return Ok(Some(None));
    }
    let api: Api<CeryxRoute> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(other) = api.get_opt(name).await? else {
        return Ok(Some(None));
    };
    let age = |o: &CeryxRoute| (o.meta().creation_timestamp.clone(), resource_name(o).ok());
    Ok((age(obj) < age(&other)).then_some(Some(other)))
}

/// A resource of another class: if it was ours (it carries our finalizer, its class
/// changed), give its host and its finalizer back; otherwise leave it alone.
async fn release(api: &Api<CeryxRoute>, obj: &CeryxRoute, ctx: &Context) -> Result<Action, Error> {
    if !obj.finalizers().contains(&ctx.finalizer) {
        return Ok(Action::await_change());
    }
    cleanup(obj, ctx).await?;
    let remaining: Vec<&String> = obj
        .finalizers()
        .iter()
        .filter(|f| **f != ctx.finalizer)
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

/// Removes what the resource wrote: the host of its spec and the one its status says it
/// programmed (they differ right after an edit of `spec.source`).
async fn cleanup(obj: &CeryxRoute, ctx: &Context) -> Result<Action, Error> {
    let owner = owner_of(obj, &ctx.install)?;
    let programmed = obj.status.as_ref().and_then(|s| s.source.clone());
    let sources = normalize_source(&obj.spec.source)
        .ok()
        .into_iter()
        .chain(programmed);
    for source in sources {
        // Only the owner's delete removes anything: a host another resource or the REST
        // API holds is left alone.
        remove_owned(ctx, &source, &owner).await?;
    }
    lock(&ctx.published).remove(&ObjectRef::from_obj(obj));
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

    fn resolved() -> Verdict {
        Verdict::yes("ResolvedRefs", "All references resolved".into())
    }

    fn unknown(reason: &'static str, message: String) -> Verdict {
        Verdict {
            status: "Unknown",
            reason,
            message,
        }
    }
}

/// Writes the outcome as the resource's status (server-side apply) and publishes an
/// Event when `Programmed` changes; does nothing when the status would stay the same,
/// so a resource retried through an outage costs the API server nothing more.
async fn publish(
    api: &Api<CeryxRoute>,
    obj: &CeryxRoute,
    outcome: Outcome,
    ctx: &Context,
) -> Result<(), Error> {
    if !ctx.leadership.may_write() {
        return Err(Error::NotLeader);
    }
    let generation = obj.meta().generation;
    let key = ObjectRef::from_obj(obj);
    let seen = obj.meta().resource_version.clone();
    // A retry can run before the watch brings back what the last patch wrote over this
    // very version; then what it wrote is the status, and is not sent (or counted) again.
    let written = lock(&ctx.published)
        .get(&key)
        .filter(|(over, _)| over.is_some() && *over == seen)
        .map(|(_, status)| status.clone());
    let current = written.as_ref().or(obj.status.as_ref());
    let previous = current.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let event = programmed_changed(previous, &outcome.programmed).then(|| KubeEvent {
        type_: if outcome.programmed.status == "True" {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: outcome.programmed.reason.into(),
        note: Some(outcome.programmed.message.clone()),
        action: "Reconcile".into(),
        secondary: None,
    });
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
        source: outcome.source,
        target: outcome.target,
        conditions: vec![
            condition("Accepted", outcome.accepted),
            condition("ResolvedRefs", outcome.resolved),
            condition("Programmed", outcome.programmed),
        ],
    };
    if current == Some(&status) {
        return Ok(());
    }
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
    lock(&ctx.published).insert(key, (seen, status));
    if let Some(event) = event
        && let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await
    {
        tracing::warn!(error = %e, "could not publish an event");
    }
    Ok(())
}

/// Whether `Programmed` would change status or reason (worth an Event).
fn programmed_changed(previous: &[Condition], programmed: &Verdict) -> bool {
    let previous = previous.iter().find(|c| c.type_ == "Programmed");
    previous.is_none_or(|c| c.status != programmed.status || c.reason != programmed.reason)
}

/// Removes the routes of this install that no resource writes any more: the resource
/// is gone (deleted while no controller ran, or its finalizer removed by hand) or
/// names another host now. Returns how many.
pub async fn collect_garbage(ctx: &Context) -> Result<usize, Error> {
    // Owners first, resources second: a resource created in between is in the list, so
    // its fresh route is never taken for an orphan.
    let owned = ctx.store.owners().await?;
    let api: Api<CeryxRoute> = Api::all(ctx.client.clone());
    let wanted: std::collections::HashSet<(String, String)> = api
        .list(&kube::api::ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|obj| {
            let owner = owner_of(obj, &ctx.install).ok()?;
            let mut hosts = vec![normalize_source(&obj.spec.source).ok()?];
            hosts.extend(obj.status.as_ref().and_then(|s| s.source.clone()));
            Some(hosts.into_iter().map(move |h| (h, owner.clone())))
        })
        .flatten()
        .collect();
    let mut removed = 0;
    for (source, owner) in owned {
        // Another install's routes, and those recorded before installs were, are not
        // this controller's to judge.
        let holder = Holder::parse(&owner);
        if holder.install != Some(ctx.install.as_str())
            || holder.resource == hosts::OWNER
            || wanted.contains(&(source.clone(), owner.clone()))
        {
            continue;
        }
        if !ctx.leadership.may_write() {
            return Err(Error::NotLeader);
        }
        let by = Writer::Resource {
            owner: &owner,
            take_unowned: false,
        };
        if ctx.store.remove(&source, by).await? {
            tracing::info!(%source, %owner, "removed a route no CeryxRoute writes any more");
            removed += 1;
        }
    }
    Ok(removed)
}
