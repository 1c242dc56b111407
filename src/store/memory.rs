//! The embedded store: routes in this process's memory, for running without Redis.

use super::error::StoreError;
use super::notice::{Change, Notices, Subscription};
use super::route_store::{CertificatePem, Lock, RouteStore};
use super::writer::Writer;
use crate::route::Route;
use crate::sync::{lock, read, write};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// Routes kept in memory; lost when the process stops.
#[derive(Default)]
pub struct MemoryStore {
    routes: RwLock<HashMap<String, Stored>>,
    notices: Notices,
    /// Locks by kind and source: holder and expiry.
    locks: Mutex<HashMap<(Lock, String), (String, Instant)>>,
    /// When each source last served (Unix milliseconds).
    served: Mutex<HashMap<String, u64>>,
    /// Pending wake requests by source, until when they last.
    wake_requests: Mutex<HashMap<String, Instant>>,
}

#[derive(Clone)]
struct Stored {
    route: Route,
    owner: Option<String>,
    certificate: Option<CertificatePem>,
}

impl MemoryStore {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Stored>> {
        // A panic while holding the lock cannot leave a half-written map: every write
        // is a single insert or remove.
        read(&self.routes)
    }

    fn lock(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Stored>> {
        write(&self.routes)
    }

    fn locks(&self) -> std::sync::MutexGuard<'_, HashMap<(Lock, String), (String, Instant)>> {
        lock(&self.locks)
    }

    fn served_at(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        lock(&self.served)
    }

    fn wake_requests(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        lock(&self.wake_requests)
    }

    fn announce(&self, source: &str) {
        self.notices.send(Change::route(source));
    }
}

#[async_trait]
impl RouteStore for MemoryStore {
    async fn fetch(&self, sources: &[&str]) -> Result<Vec<Option<Route>>, StoreError> {
        let routes = self.read();
        Ok(sources
            .iter()
            .map(|s| routes.get(*s).map(|stored| stored.route.clone()))
            .collect())
    }

    async fn list(&self) -> Result<Vec<Route>, StoreError> {
        let mut routes: Vec<Route> = self.read().values().map(|s| s.route.clone()).collect();
        routes.sort_by(|a, b| a.source.cmp(&b.source));
        Ok(routes)
    }

    async fn write(&self, route: &Route, by: Writer<'_>) -> Result<(), StoreError> {
        {
            let mut routes = self.lock();
            let current = routes.get(&route.source);
            by.may_change(current.and_then(|s| s.owner.as_deref()), current.is_some())?;
            let owner = by.owner().map(String::from);
            let certificate = current.and_then(|s| s.certificate.clone());
            routes.insert(
                route.source.clone(),
                Stored {
                    route: route.clone(),
                    owner,
                    certificate,
                },
            );
        }
        self.announce(&route.source);
        Ok(())
    }

    async fn remove(&self, source: &str, by: Writer<'_>) -> Result<bool, StoreError> {
        let existed = {
            let mut routes = self.lock();
            let owner = routes.get(source).and_then(|s| s.owner.as_deref());
            if !by.may_remove(owner)? {
                return Ok(false);
            }
            routes.remove(source).is_some()
        };
        self.announce(source);
        Ok(existed)
    }

    async fn owners(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .read()
            .iter()
            .filter_map(|(source, s)| Some((source.clone(), s.owner.clone()?)))
            .collect())
    }

    async fn certificates(
        &self,
        sources: &[&str],
    ) -> Result<Vec<Option<CertificatePem>>, StoreError> {
        let routes = self.read();
        Ok(sources
            .iter()
            .map(|s| routes.get(*s).and_then(|stored| stored.certificate.clone()))
            .collect())
    }

    async fn set_certificate(
        &self,
        source: &str,
        pem: Option<&CertificatePem>,
        owner: &str,
    ) -> Result<(), StoreError> {
        {
            let mut routes = self.lock();
            let stored = routes.get_mut(source);
            match stored.as_ref().and_then(|s| s.owner.as_deref()) {
                Some(current) if current == owner => {}
                Some(current) => return Err(StoreError::Owned(current.to_owned())),
                None => return Err(StoreError::Unowned),
            }
            if let Some(stored) = stored {
                stored.certificate = pem.cloned();
            }
        }
        self.announce(source);
        Ok(())
    }

    async fn try_lock(
        &self,
        lock: Lock,
        source: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut locks = self.locks();
        locks.retain(|_, (_, until)| *until > now);
        let key = (lock, source.to_owned());
        if locks.contains_key(&key) {
            return Ok(false);
        }
        locks.insert(key, (holder.to_owned(), now + ttl));
        Ok(true)
    }

    async fn unlock(&self, lock: Lock, source: &str, holder: &str) -> Result<(), StoreError> {
        let mut locks = self.locks();
        let key = (lock, source.to_owned());
        if locks.get(&key).is_some_and(|(h, _)| h == holder) {
            locks.remove(&key);
        }
        Ok(())
    }

    async fn set_served(&self, source: &str, at: u64) -> Result<(), StoreError> {
        let mut served = self.served_at();
        let entry = served.entry(source.to_owned()).or_default();
        *entry = (*entry).max(at);
        Ok(())
    }

    async fn served(&self, source: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.served_at().get(source).copied())
    }

    async fn clear_served(&self, source: &str) -> Result<(), StoreError> {
        self.served_at().remove(source);
        Ok(())
    }

    async fn request_wake(&self, source: &str, ttl: Duration) -> Result<(), StoreError> {
        self.wake_requests()
            .insert(source.to_owned(), Instant::now() + ttl);
        self.notices.send(Change::Wake {
            source: source.to_owned(),
        });
        Ok(())
    }

    async fn wake_requested(&self, source: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut requests = self.wake_requests();
        requests.retain(|_, until| *until > now);
        Ok(requests.contains_key(source))
    }

    async fn clear_wake_request(&self, source: &str) -> Result<(), StoreError> {
        self.wake_requests().remove(source);
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn subscribe(&self) -> Subscription {
        self.notices.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lock_has_one_holder_until_let_go_or_expired() {
        let store = MemoryStore::default();
        let long = Duration::from_secs(60);
        assert!(
            store
                .try_lock(Lock::Waking, "a", "one", long)
                .await
                .unwrap()
        );
        assert!(
            !store
                .try_lock(Lock::Waking, "a", "two", long)
                .await
                .unwrap()
        );
        // Another kind, another source: other locks.
        assert!(
            store
                .try_lock(Lock::Sleeping, "a", "two", long)
                .await
                .unwrap()
        );
        assert!(
            store
                .try_lock(Lock::Waking, "b", "two", long)
                .await
                .unwrap()
        );
        // Only the holder lets go.
        store.unlock(Lock::Waking, "a", "two").await.unwrap();
        assert!(
            !store
                .try_lock(Lock::Waking, "a", "two", long)
                .await
                .unwrap()
        );
        store.unlock(Lock::Waking, "a", "one").await.unwrap();
        assert!(
            store
                .try_lock(Lock::Waking, "a", "two", Duration::ZERO)
                .await
                .unwrap()
        );
        // Expired at once.
        assert!(
            store
                .try_lock(Lock::Waking, "a", "one", long)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn the_served_time_only_moves_forward() {
        let store = MemoryStore::default();
        assert_eq!(store.served("a").await.unwrap(), None);
        store.set_served("a", 20).await.unwrap();
        store.set_served("a", 10).await.unwrap();
        assert_eq!(store.served("a").await.unwrap(), Some(20));
        store.clear_served("a").await.unwrap();
        assert_eq!(store.served("a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_wake_request_is_announced_and_lasts_until_cleared_or_expired() {
        let store = MemoryStore::default();
        let mut notices = store.subscribe();
        store
            .request_wake("a", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            notices.next().await,
            Some(Change::Wake { source: "a".into() })
        );
        assert!(store.wake_requested("a").await.unwrap());
        assert!(!store.wake_requested("b").await.unwrap());
        store.clear_wake_request("a").await.unwrap();
        assert!(!store.wake_requested("a").await.unwrap());
        store.request_wake("a", Duration::ZERO).await.unwrap();
        assert!(!store.wake_requested("a").await.unwrap());
    }
}
