//! Leader election through a `coordination.k8s.io` Lease, so that of several controller
//! replicas exactly one writes routes and statuses. Proxies need no leader.

use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use std::future::Future;
use tokio_util::sync::CancellationToken;

/// Name of the Lease the controller replicas compete for.
pub const LEASE: &str = "ceryx-controller";

/// Why leading stopped.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be read or written.
    #[error("lease: {0}")]
    Lease(#[from] LeaseManagerError),
    /// Another replica took the Lease (this one stalled); restarting is the safe way back.
    #[error("lost the leader lease")]
    Lost,
}

/// Waits until this replica holds the Lease in `namespace`, then runs `work` until it
/// ends, `shutdown` fires or the Lease is lost (then `work`'s token is cancelled and
/// [`LeaderError::Lost`] returned). The Lease is released on the way out.
pub async fn lead<F, Fut, E>(
    client: kube::Client,
    namespace: &str,
    identity: &str,
    shutdown: CancellationToken,
    work: F,
) -> Result<Result<(), E>, LeaderError>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let manager = LeaseManagerBuilder::new(client, LEASE)
        .with_namespace(namespace)
        .with_identity(identity)
        .build()
        .await?;
    let (mut leading, lease_task) = manager.watch().await;
    while !*leading.borrow_and_update() {
        tracing::info!(%identity, "waiting for the leader lease");
        tokio::select! {
            changed = leading.changed() => if changed.is_err() {
                // The lease task ended: it failed to talk to the API.
                return match lease_task.await {
                    Ok(Err(e)) => Err(e.into()),
                    _ => Err(LeaderError::Lost),
                };
            },
            _ = shutdown.cancelled() => return Ok(Ok(())),
        }
    }
    tracing::info!(%identity, "leading");
    let stop = shutdown.child_token();
    let lost = tokio::spawn({
        let stop = stop.clone();
        async move {
            while leading.changed().await.is_ok() {
                if !*leading.borrow() {
                    stop.cancel();
                    return true;
                }
            }
            false
        }
    });
    let result = work(stop).await;
    lost.abort();
    let was_lost = matches!(lost.await, Ok(true));
    // Dropping the channel (inside the aborted task) makes the lease task release it.
    if let Ok(Err(e)) = lease_task.await {
        tracing::warn!(error = %e, "could not release the leader lease");
    }
    if was_lost {
        Err(LeaderError::Lost)
    } else {
        Ok(result)
    }
}
