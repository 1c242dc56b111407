//! The runtime of the merge: watches Ingresses, IngressClasses, Services,
//! EndpointSlices and Secrets; after any change translates every object of this class,
//! merges ([`super::hosts`]), writes to the store only what changed, and tells each
//! object how it fared (Events, and `status.loadBalancer` on Ingresses).

use super::claim::{Claim, Origin};
use super::gateway;
use super::hosts::{self, Merged, OWNER, Problem};
use super::ingress;
use super::reconcile::{Context, Error, secret_certificate};
use super::watches::watch;
use crate::route::Route;
use crate::store::{CertificatePem, Change, StoreError, Writer};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressLoadBalancerIngress};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::reflector::{self, Store};
use kube::{Resource, ResourceExt};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often everything is merged again without a change (a safety net: writes lost
/// to a store outage, Secrets changed in place).
const RESYNC: Duration = Duration::from_secs(60);

/// Wait before a failed sync is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The caches of this module's own watches.
struct Watched {
    ingresses: Store<Ingress>,
    classes: Store<IngressClass>,
    /// The Gateway API's, when the cluster serves it to us.
    gateway: Option<gateway::runtime::Watched>,
}

/// What this process last did, so a sync writes and reports only what changed.
#[derive(Default)]
struct Memory {
    /// Routes written, by host.
    written: HashMap<String, Route>,
    /// Certificates written, by host.
    certificates: HashMap<String, Option<CertificatePem>>,
    /// Problems already published as Events, per object.
    reported: HashMap<Origin, BTreeSet<Problem>>,
    /// Hosts each object was last told it is served on.
    served: HashMap<Origin, BTreeSet<String>>,
    /// Whether routes of this owner no object asks for were looked for since the
    /// store was last (re)synced.
    swept: bool,
}

/// Runs until `shutdown`: a sync after every change the watches see.
pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    // Services, EndpointSlices and Secrets are the reconciler's watches, which wake
    // `ctx.changed` too.
    let changed = ctx.changed.clone();
    let (ingresses, a) = watch::<Ingress>(&ctx.client, &changed);
    let (classes, b) = watch::<IngressClass>(&ctx.client, &changed);
    let (gateway, gateway_tasks) = match gateway::runtime::start(&ctx.client, &changed).await {
        Some((watched, tasks)) => (Some(watched), tasks),
        None => (None, Vec::new()),
    };
    let watched = Watched {
        ingresses,
        classes,
        gateway,
    };
    let mut memory = Memory::default();
    let mut notices = ctx.store.subscribe();
    // (The reconciler's stores are waited for through `listed`: a store wakes only one
    // of the tasks waiting for it.)
    let ready = watched.ingresses.wait_until_ready().await.is_ok()
        && watched.classes.wait_until_ready().await.is_ok();
    if !ready {
        return;
    }
    ctx.listed().await;
    if let Some(gateway) = &watched.gateway
        && !gateway.ready().await
    {
        return;
    }
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = changed.notified() => {}
            notice = notices.next() => match notice {
                // The store came back, perhaps empty: everything is written again.
                Some(Change::Resync) => memory = Memory::default(),
                Some(Change::Route { .. } | Change::Wake { .. }) => continue,
                None => break,
            },
            _ = tokio::time::sleep(RESYNC.max(wait)) => {}
        }
        if !wait.is_zero() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let started = std::time::Instant::now();
        match sync(&ctx, &watched, &mut memory).await {
            Ok(()) => wait = Duration::ZERO,
            Err(error) => {
                tracing::warn!(%error, "merging Ingresses into the store failed; retrying");
                wait = RETRY;
                changed.notify_one();
            }
        }
        crate::telemetry::reconcile(wait.is_zero(), started.elapsed());
    }
    for task in [a, b].into_iter().chain(gateway_tasks) {
        task.abort();
    }
}

/// The object's identity in claims.
fn origin_of<K: Resource>(obj: &K, kind: &'static str) -> Option<Origin> {
    let meta = obj.meta();
    Some(Origin {
        created: meta
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        kind,
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
    })
}

/// One pass: translate, merge, write, report.
async fn sync(ctx: &Context, watched: &Watched, memory: &mut Memory) -> Result<(), Error> {
    if !ctx.leadership.may_write() {
        return Err(Error::NotLeader);
    }
    let classes = watched.classes.state();
    let index = ctx.index();
    let ours: Vec<(Origin, Arc<Ingress>)> = watched
        .ingresses
        .state()
        .into_iter()
        .filter(|i| i.meta().deletion_timestamp.is_none())
        .filter(|i| ingress::is_ours(i, &classes, &ctx.class))
        .filter_map(|i| Some((origin_of(&*i, "Ingress")?, i)))
        .collect();
    let mut claims: Vec<Claim> = Vec::new();
    let mut translation = Vec::new();
    for (origin, obj) in &ours {
        let translated = ingress::translate(obj, origin, &index);
        claims.extend(translated.claims);
        translation.push((origin, translated.problems));
    }
    let routes = watched.gateway.as_ref().map(|g| {
        gateway::runtime::translate_all(&ctx.gateway_controller, g, &ctx.services, &ctx.secrets)
    });
    claims.extend(routes.iter().flat_map(|r| r.claims()));
    let mut merged = hosts::merge(claims, &index);
    tracing::debug!(
        ingresses = ours.len(),
        hosts = merged.hosts.len(),
        "Ingresses merged"
    );
    for (origin, problems) in translation {
        for problem in problems {
            merged.report(origin, problem.reason, problem.message);
        }
    }
    write(ctx, &mut merged, memory).await?;
    let addresses = addresses(ctx);
    for (origin, obj) in &ours {
        report(ctx, origin, &**obj, &merged, memory).await?;
        publish_status(ctx, obj, &addresses).await?;
    }
    if let (Some(gateway), Some(routes)) = (&watched.gateway, &routes) {
        for (origin, route, _) in &routes.routes {
            report(ctx, origin, &**route, &merged, memory).await?;
        }
        gateway::runtime::publish(ctx, gateway, routes, &ctx.secrets, &addresses).await?;
    }
    let routes = routes
        .iter()
        .flat_map(|r| r.routes.iter().map(|(o, _, _)| o));
    let live: BTreeSet<&Origin> = ours.iter().map(|(o, _)| o).chain(routes).collect();
    memory.reported.retain(|o, _| live.contains(o));
    memory.served.retain(|o, _| live.contains(o));
    Ok(())
}

/// The owner this install records on merged hosts.
fn owner(ctx: &Context) -> String {
    format!("{OWNER}@{}", ctx.install)
}

/// Writes the hosts that changed, removes those no object asks for any more, and keeps
/// their certificates in line. A host someone else holds is dropped from `merged`, and
/// each object claiming it is told whose it is.
async fn write(ctx: &Context, merged: &mut Merged, memory: &mut Memory) -> Result<(), Error> {
    let owner = owner(ctx);
    let by = Writer::Resource {
        owner: &owner,
        take_unowned: false,
    };
    let mut refused = Vec::new();
    for (source, host) in &merged.hosts {
        if memory.written.get(source) == Some(&host.route) {
            continue;
        }
        if !ctx.leadership.may_write() {
            return Err(Error::NotLeader);
        }
        match ctx.store.write(&host.route, by).await {
            Ok(()) => {
                tracing::debug!(%source, "merged host written");
                memory.written.insert(source.clone(), host.route.clone());
            }
            Err(StoreError::Owned(holder)) => {
                refused.push((source.clone(), super::reconcile::holder_words(&holder, ctx)))
            }
            Err(StoreError::Unowned) => refused.push((
                source.clone(),
                "a route created through the REST API".to_owned(),
            )),
            Err(e) => return Err(e.into()),
        }
    }
    for (source, holder) in refused {
        if let Some(host) = merged.hosts.remove(&source) {
            for origin in &host.origins {
                merged.report(
                    origin,
                    "HostConflict",
                    format!("Host {source} is held by {holder}"),
                );
            }
        }
    }
    let mut gone: BTreeSet<String> = memory
        .written
        .keys()
        .filter(|s| !merged.hosts.contains_key(*s))
        .cloned()
        .collect();
    if !memory.swept {
        // After a start or a store resync: routes this install wrote before and no object asks for.
        let owned = ctx.store.owners().await?;
        gone.extend(
            owned
                .into_iter()
                .filter(|(source, o)| *o == owner && !merged.hosts.contains_key(source))
                .map(|(source, _)| source),
        );
        memory.swept = true;
    }
    for source in gone {
        if !ctx.leadership.may_write() {
            return Err(Error::NotLeader);
        }
        ctx.store.remove(&source, by).await?;
        memory.written.remove(&source);
        memory.certificates.remove(&source);
        tracing::debug!(%source, "merged host removed");
    }
    let mut invalid = Vec::new();
    for (source, host) in &merged.hosts {
        let wanted = match &host.tls {
            None => None,
            Some(secret) => match secret_certificate(ctx, &secret.namespace, &secret.name).await? {
                Ok(pem) => Some(pem),
                Err(why) => {
                    invalid.push((host.origins.clone(), format!("Secret {}/{} for host {source}: {why}; the default certificate is served", secret.namespace, secret.name)));
                    None
                }
            },
        };
        if memory.certificates.get(source) != Some(&wanted) {
            if !ctx.leadership.may_write() {
                return Err(Error::NotLeader);
            }
            ctx.store
                .set_certificate(source, wanted.as_ref(), &owner)
                .await?;
            memory.certificates.insert(source.clone(), wanted);
        }
    }
    for (origins, message) in invalid {
        for origin in &origins {
            merged.report(origin, "InvalidCertificate", message.clone());
        }
    }
    Ok(())
}

/// Events for what changed for one object: each new problem (Warning), and the hosts
/// it is served on when they change (Normal).
async fn report<K>(
    ctx: &Context,
    origin: &Origin,
    obj: &K,
    merged: &Merged,
    memory: &mut Memory,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>,
{
    let problems = merged.problems.get(origin).cloned().unwrap_or_default();
    let known = memory.reported.get(origin);
    let mut events: Vec<KubeEvent> = problems
        .iter()
        .filter(|p| known.is_none_or(|k| !k.contains(*p)))
        .map(|p| KubeEvent {
            type_: EventType::Warning,
            reason: p.reason.into(),
            note: Some(p.message.clone()),
            action: "Reconcile".into(),
            secondary: None,
        })
        .collect();
    let served: BTreeSet<String> = merged
        .hosts
        .iter()
        .filter(|(_, h)| h.origins.contains(origin))
        .map(|(s, _)| s.clone())
        .collect();
    if memory.served.get(origin) != Some(&served) && !served.is_empty() {
        let hosts: Vec<&str> = served.iter().map(String::as_str).collect();
        events.push(KubeEvent {
            type_: EventType::Normal,
            reason: "Programmed".into(),
            note: Some(format!("Served by every proxy on {}", hosts.join(", "))),
            action: "Reconcile".into(),
            secondary: None,
        });
    }
    for event in &events {
        if let Err(e) = ctx.recorder.publish(event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, "could not publish an event");
        }
    }
    memory.reported.insert(origin.clone(), problems);
    memory.served.insert(origin.clone(), served);
    Ok(())
}

/// The addresses published on the objects this install serves.
fn addresses(ctx: &Context) -> Vec<String> {
    let mut addresses = ctx.publish.addresses.clone();
    if let Some((namespace, name)) = ctx
        .publish
        .service
        .as_deref()
        .and_then(|s| s.split_once('/'))
        && let Some(service) = ctx
            .services
            .get(&reflector::ObjectRef::new(name).within(namespace))
    {
        let balancer = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        for entry in balancer.into_iter().flatten() {
            addresses.extend(entry.ip.clone().or_else(|| entry.hostname.clone()));
        }
        if balancer.is_none_or(Vec::is_empty) {
            addresses.extend(
                service
                    .spec
                    .as_ref()
                    .and_then(|s| s.external_ips.clone())
                    .unwrap_or_default(),
            );
        }
    }
    addresses
}

/// Sets `status.loadBalancer.ingress` to `addresses` (IPs as `ip`, names as
/// `hostname`), unless it says so already.
async fn publish_status(ctx: &Context, obj: &Ingress, addresses: &[String]) -> Result<(), Error> {
    let wanted: Vec<IngressLoadBalancerIngress> = addresses
        .iter()
        .map(|a| {
            if a.parse::<std::net::IpAddr>().is_ok() {
                IngressLoadBalancerIngress {
                    ip: Some(a.clone()),
                    ..Default::default()
                }
            } else {
                IngressLoadBalancerIngress {
                    hostname: Some(a.clone()),
                    ..Default::default()
                }
            }
        })
        .collect();
    let current = obj
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    if current == wanted {
        return Ok(());
    }
    if !ctx.leadership.may_write() {
        return Err(Error::NotLeader);
    }
    let (Some(namespace), Some(name)) = (obj.namespace(), obj.meta().name.as_deref()) else {
        return Err(Error::Unnamed);
    };
    let api: Api<Ingress> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": wanted}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}
