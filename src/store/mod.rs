//! Where routes live. The proxy reads through a [`RouteStore`]; writers (REST API,
//! controller) write through it, so every write also raises a change notice.

mod memory;
mod notice;
mod redis;

pub use self::memory::MemoryStore;
pub use self::notice::{Change, Progress, Subscription};
pub use self::redis::{RedisConfig, RedisStore};

use crate::route::Route;
use async_trait::async_trait;

/// A certificate chain and its private key, PEM-encoded, as a `kubernetes.io/tls`
/// Secret holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePem {
    /// The certificate chain, leaf first.
    pub certificate: String,
    /// The private key.
    pub key: String,
}

/// Why a store call failed. A failure is never reported as "no route".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Redis did not answer within `CERYX_REDIS_TIMEOUT`.
    #[error("redis did not answer in time")]
    Timeout,
    /// The route belongs to a Kubernetes resource (`<namespace>/<name>`), and this
    /// writer is not it; nothing was changed.
    #[error("the route is owned by CeryxRoute {0}")]
    Owned(String),
    /// The route exists without an owner (written through the REST API or directly),
    /// and the resource did not ask to take it over; nothing was changed.
    #[error("the route exists and is not owned by a CeryxRoute")]
    Unowned,
    /// A recent call failed; the store is not asked again for a moment.
    #[error("route store unavailable")]
    Unavailable,
}

/// A route store: the route table shared by every proxy and writer.
#[async_trait]
pub trait RouteStore: Send + Sync + 'static {
    /// Fetches several sources in one round trip; the answer is in the same order.
    async fn fetch(&self, sources: &[&str]) -> Result<Vec<Option<Route>>, StoreError>;

    /// Every route in the store.
    async fn list(&self) -> Result<Vec<Route>, StoreError>;

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

    /// Stores the certificate of a route `owner` owns (`None` removes it) and announces
    /// the source; refused for routes of anyone else.
    async fn set_certificate(
        &self,
        source: &str,
        pem: Option<&CertificatePem>,
        owner: &str,
    ) -> Result<(), StoreError>;

    /// Checks the store answers (for readiness probes).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Every change notice from now on: one per write, from this process's writers (sent
    /// before the write returns) and from other processes (as soon as Redis delivers it).
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

/// Who writes a route, which decides whether the write may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer<'a> {
    /// The REST API (or a test, or a tool): may change any route no resource owns.
    Api,
    /// A `CeryxRoute` (`<namespace>/<name>`): may change the routes it owns, claim
    /// hosts nobody has, and take over an unowned route only when it says so.
    Resource {
        /// `<namespace>/<name>` of the resource.
        owner: &'a str,
        /// Take over a route that exists without an owner.
        take_unowned: bool,
    },
    /// A `CeryxRoute` taking a host from the resource that holds it (a newer one, or
    /// one that no longer exists): succeeds only while `from` still holds it.
    TakeOver {
        /// `<namespace>/<name>` of the new owner.
        owner: &'a str,
        /// `<namespace>/<name>` of the owner it replaces.
        from: &'a str,
    },
}

impl Writer<'_> {
    /// Decides a write or delete, given the route's current owner and whether it exists.
    pub fn may_change(&self, owner: Option<&str>, exists: bool) -> Result<(), StoreError> {
        match (self, owner) {
            (Writer::TakeOver { from, .. }, Some(current)) if current == *from => Ok(()),
            (_, Some(current)) if Some(current) != self.owner() => {
                Err(StoreError::Owned(current.to_owned()))
            }
            (
                Writer::Resource {
                    take_unowned: false,
                    ..
                },
                None,
            ) if exists => Err(StoreError::Unowned),
            _ => Ok(()),
        }
    }

    /// Decides a delete: `Ok(true)` to delete, `Ok(false)` to leave a route that is not
    /// this resource's alone, `Err` when the REST API touches an owned route.
    pub fn may_remove(&self, owner: Option<&str>) -> Result<bool, StoreError> {
        match (self, owner) {
            (Writer::Api, None) => Ok(true),
            (Writer::Api, Some(current)) => Err(StoreError::Owned(current.to_owned())),
            (Writer::Resource { owner: me, .. } | Writer::TakeOver { owner: me, .. }, current) => {
                Ok(current == Some(*me))
            }
        }
    }

    /// The owner recorded by this writer, if any.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Writer::Api => None,
            Writer::Resource { owner, .. } | Writer::TakeOver { owner, .. } => Some(owner),
        }
    }

    /// The owner a take-over replaces, if this is one.
    pub fn replaces(&self) -> Option<&str> {
        match self {
            Writer::TakeOver { from, .. } => Some(from),
            _ => None,
        }
    }
}
