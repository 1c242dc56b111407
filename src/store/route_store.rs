//! What every store offers: the [`RouteStore`] trait, and the stored form of a
//! certificate.

use super::error::StoreError;
use super::notice::Subscription;
use super::writer::Writer;
use crate::route::Route;
use async_trait::async_trait;
use std::time::Duration;

/// A certificate chain and its private key, PEM-encoded, as a `kubernetes.io/tls`
/// Secret holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePem {
    /// The certificate chain, leaf first.
    pub certificate: String,
    /// The private key.
    pub key: String,
}

/// A short-lived lock on one route, which one process holds at a time across every
/// replica sharing the store: it makes one replica, not each, call a route's webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lock {
    /// Waking the route's backend (`<prefix>:waking:<source>`).
    Waking,
    /// Putting the route's backend to sleep (`<prefix>:sleeping:<source>`).
    Sleeping,
}

impl Lock {
    /// The lock's name, as its key says it.
    pub fn name(self) -> &'static str {
        match self {
            Lock::Waking => "waking",
            Lock::Sleeping => "sleeping",
        }
    }
}

/// A route store: the route table shared by every proxy and writer.
#[async_trait]
pub trait RouteStore: Send + Sync + 'static {
    /// Fetches several sources in one round trip; the answer is in the same order.
    async fn fetch(&self, sources: &[&str]) -> Result<Vec<Option<Route>>, StoreError>;

    /// Every route in the store.
    async fn list(&self) -> Result<Vec<Route>, StoreError>;

    /// The sources of every wildcard route (`*.suffix`): what lets a proxy look an
    /// unknown host up under the wildcards that exist instead of under every suffix.
    async fn wildcards(&self) -> Result<Vec<String>, StoreError> {
        let routes = self.list().await?;
        Ok(routes
            .into_iter()
            .map(|route| route.source)
            .filter(|source| source.starts_with("*."))
            .collect())
    }

    /// Writes a route (target, settings and owner together, atomically) and announces
    /// it, if `by` may: see [`Writer`].
    async fn write(&self, route: &Route, by: Writer<'_>) -> Result<(), StoreError>;

    /// Deletes a route and announces it, if `by` may; `true` if it existed.
    async fn remove(&self, source: &str, by: Writer<'_>) -> Result<bool, StoreError>;

    /// The resource (`<namespace>/<name>`) that owns each owned route, by source.
    async fn owners(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// The certificates stored for `sources` (by the controller, from Kubernetes
    /// Secrets), in one round trip; the answer is in the same order.
    async fn certificates(
        &self,
        sources: &[&str],
    ) -> Result<Vec<Option<CertificatePem>>, StoreError>;

    /// [`fetch`](Self::fetch), with each route found its stored certificate: what the
    /// first TLS handshake for a host needs. One round trip where the store can (Redis);
    /// here a fetch, then the certificates of the routes found.
    async fn fetch_with_certificates(
        &self,
        sources: &[&str],
    ) -> Result<Vec<Option<(Route, Option<CertificatePem>)>>, StoreError> {
        let routes = self.fetch(sources).await?;
        let found: Vec<&str> = sources
            .iter()
            .zip(&routes)
            .filter_map(|(source, route)| route.as_ref().map(|_| *source))
            .collect();
        let mut certificates = match found.is_empty() {
            true => Vec::new(),
            false => self.certificates(&found).await?,
        }
        .into_iter();
        Ok(routes
            .into_iter()
            .map(|route| Some((route?, certificates.next().flatten())))
            .collect())
    }

    /// Stores the certificate of a route `owner` owns (`None` removes it) and announces
    /// the source; refused for routes of anyone else.
    async fn set_certificate(
        &self,
        source: &str,
        pem: Option<&CertificatePem>,
        owner: &str,
    ) -> Result<(), StoreError>;

    /// Takes `lock` on `source` for `holder` until `ttl` has passed (or it is released);
    /// `false` if someone holds it already.
    async fn try_lock(
        &self,
        lock: Lock,
        source: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Releases `lock` on `source` if `holder` still holds it.
    async fn unlock(&self, lock: Lock, source: &str, holder: &str) -> Result<(), StoreError>;

    /// Records that `source` served a request at `at` (Unix milliseconds), if that is
    /// later than what is recorded.
    async fn set_served(&self, source: &str, at: u64) -> Result<(), StoreError>;

    /// When `source` last served a request (Unix milliseconds), if recorded.
    async fn served(&self, source: &str) -> Result<Option<u64>, StoreError>;

    /// Forgets when `source` last served (its backend was put to sleep).
    async fn clear_served(&self, source: &str) -> Result<(), StoreError>;

    /// Asks the Kubernetes controller to wake `source`'s scale target: a request that
    /// lasts `ttl` (for a controller that missed the notice) and a [`Change::Wake`]
    /// notice.
    ///
    /// [`Change::Wake`]: super::Change::Wake
    async fn request_wake(&self, source: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Whether a wake request for `source` is pending.
    async fn wake_requested(&self, source: &str) -> Result<bool, StoreError>;

    /// Drops the wake request for `source` (the controller acted on it).
    async fn clear_wake_request(&self, source: &str) -> Result<(), StoreError>;

    /// Checks the store answers (for readiness probes).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Every change notice from now on: one per write, from this process's writers (sent
    /// before the write returns: by Redis on the store's own subscription, or by the
    /// store itself while that is down) and from other processes (as soon as Redis
    /// delivers it).
    fn subscribe(&self) -> Subscription;

    /// One route, if it exists.
    async fn get(&self, source: &str) -> Result<Option<Route>, StoreError> {
        Ok(self.fetch(&[source]).await?.pop().flatten())
    }

    /// Writes a route as the REST API does.
    async fn put(&self, route: &Route) -> Result<(), StoreError> {
        self.write(route, Writer::Api).await
    }

    /// Deletes a route as the REST API does.
    async fn delete(&self, source: &str) -> Result<bool, StoreError> {
        self.remove(source, Writer::Api).await
    }
}
