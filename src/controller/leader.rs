//! Leader election through a `coordination.k8s.io` Lease, so that of several controller
//! replicas exactly one writes routes and statuses. Proxies need no leader.
//!
//! The Lease is taken and renewed with optimistic concurrency (a replace carrying the
//! `resourceVersion` read), as client-go's leader election does. A replica counts as
//! leader only while its last renewal is younger than the renew deadline, measured on
//! its own monotonic clock from before the renewal was sent: a replica that was frozen
//! (SIGSTOP, a paused VM) or cut off from the API server stops writing the moment it
//! runs again, before it has even looked at the Lease.

use crate::sync::lock;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Why leading stopped.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be read or written.
    #[error("lease: {0}")]
    Lease(#[from] kube::Error),
    /// Another replica holds the Lease (this one stalled or was cut off for longer than
    /// the Lease lasts): restarting, as a follower, is the safe way back.
    #[error("lost the leader lease")]
    Lost,
}

/// Whether this replica may write now; cheap to clone and to ask.
#[derive(Clone, Default)]
pub struct Leadership(Option<Arc<Held>>);

struct Held {
    /// When the last renewal that succeeded was sent; `None` once leadership is lost.
    renewed: Mutex<Option<Instant>>,
    deadline: Duration,
}

impl Leadership {
    /// Leadership without election: always may write (a single replica).
    pub fn always() -> Leadership {
        Leadership(None)
    }

    /// True while this replica holds a Lease renewed within the renew deadline.
    pub fn may_write(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|held| lock(&held.renewed).is_some_and(|at| at.elapsed() < held.deadline))
    }

    fn renewed(&self, at: Option<Instant>) {
        if let Some(held) = &self.0 {
            *lock(&held.renewed) = at;
        }
    }
}

/// The Lease's timing: held for `duration`, renewed every `duration / 5`, given up
/// when not renewed for two thirds of `duration` (client-go's 15 s / 2 s / 10 s).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    duration: Duration,
}

impl Timing {
    /// Timing for a Lease of `duration` (at least 2 s).
    pub fn new(duration: Duration) -> Timing {
        Timing {
            duration: duration.max(Duration::from_secs(2)),
        }
    }

    fn retry(self) -> Duration {
        self.duration / 5
    }

    fn deadline(self) -> Duration {
        self.duration * 2 / 3
    }
}

/// One replica's claim on a Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// The holder and renew time last seen, and when this replica first saw them: a
    /// Lease is expired once it has not changed for its duration on our own clock, so
    /// clock skew between replicas does not matter.
    observed: Option<(Option<String>, Option<MicroTime>, Instant)>,
}

impl Elector {
    /// An elector for Lease `name` in `namespace`, as `identity`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            timing,
            observed: None,
        }
    }

    /// One attempt to take or renew the Lease; `true` if this replica holds it now.
    async fn try_acquire(&mut self) -> Result<bool, kube::Error> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let seconds = self.timing.duration.as_secs() as i32;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = (holder.clone(), spec.renew_time.clone());
        let since = match &self.observed {
            Some((h, r, at)) if (h, r) == (&record.0, &record.1) => *at,
            _ => Instant::now(),
        };
        self.observed = Some((record.0, record.1, since));
        let held_for = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let ours = holder.as_deref() == Some(self.identity.as_str());
        if !ours && holder.is_some() && since.elapsed() < held_for {
            return Ok(false);
        }
        if !ours {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(MicroTime(now));
        // Carries the resourceVersion read: a replica that wrote meanwhile wins.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (holder cleared), so that another replica takes it at once.
    async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }
}

/// Waits until this replica holds the Lease, then runs `work` with a [`Leadership`] to
/// check before each write, until `work` ends, `shutdown` fires or another replica
/// holds the Lease (then `work`'s token is cancelled and [`LeaderError::Lost`]
/// returned). The Lease is released on the way out.
pub async fn lead<F, Fut, E>(
    mut elector: Elector,
    shutdown: CancellationToken,
    work: F,
) -> Result<Result<(), E>, LeaderError>
where
    F: FnOnce(Leadership, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let timing = elector.timing;
    tracing::info!(identity = %elector.identity, lease = %elector.name, "waiting for the leader lease");
    let attempt_started = loop {
        let attempt = Instant::now();
        match elector.try_acquire().await {
            Ok(true) => break attempt,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not read or take the leader lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep_until((attempt + timing.retry()).into()) => {}
            _ = shutdown.cancelled() => return Ok(Ok(())),
        }
    };
    tracing::info!(identity = %elector.identity, "leading");
    let leadership = Leadership(Some(Arc::new(Held {
        renewed: Mutex::new(Some(attempt_started)),
        deadline: timing.deadline(),
    })));
    let stop = shutdown.child_token();
    let renewing = tokio::spawn({
        let (leadership, stop) = (leadership.clone(), stop.clone());
        async move {
            let mut next = attempt_started + timing.retry();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    _ = stop.cancelled() => return elector,
                }
                let attempt = Instant::now();
                next = attempt + timing.retry();
                // A renewal that succeeds, however late, proves nobody else took the
                // Lease meanwhile (the replace carries the version read); while it is
                // overdue, `may_write` is false anyway.
                match elector.try_acquire().await {
                    Ok(true) => leadership.renewed(Some(attempt)),
                    Ok(false) => {
                        tracing::error!("another replica holds the leader lease");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not renew the leader lease; retrying")
                    }
                }
            }
            leadership.renewed(None);
            stop.cancel();
            elector
        }
    });
    let result = work(leadership.clone(), stop.clone()).await;
    let lost = !leadership.may_write() && !shutdown.is_cancelled();
    stop.cancel();
    if let Ok(mut elector) = renewing.await
        && !lost
        && let Err(e) = elector.release().await
    {
        tracing::warn!(error = %e, "could not release the leader lease");
    }
    if lost {
        Err(LeaderError::Lost)
    } else {
        Ok(result)
    }
}
