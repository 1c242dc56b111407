//! The embedded store: routes in this process's memory, for running without Redis.

use super::{Change, RouteStore, StoreError, Watcher, Watchers};
use crate::route::Route;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::RwLock;

/// Routes kept in memory; lost when the process stops.
#[derive(Default)]
pub struct MemoryStore {
    routes: RwLock<HashMap<String, Route>>,
    watchers: Watchers,
}

impl MemoryStore {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Route>> {
        // A panic while holding the lock cannot leave a half-written map: every write
        // is a single insert or remove.
        self.routes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Route>> {
        self.routes.write().unwrap_or_else(|e| e.into_inner())
    }

    fn announce(&self, source: &str) {
        self.watchers.notify(&Change::Route(source.to_owned()));
    }
}

#[async_trait]
impl RouteStore for MemoryStore {
    async fn fetch(&self, sources: &[&str]) -> Result<Vec<Option<Route>>, StoreError> {
        let routes = self.read();
        Ok(sources.iter().map(|s| routes.get(*s).cloned()).collect())
    }

    async fn list(&self) -> Result<Vec<Route>, StoreError> {
        let mut routes: Vec<Route> = self.read().values().cloned().collect();
        routes.sort_by(|a, b| a.source.cmp(&b.source));
        Ok(routes)
    }

    async fn put(&self, route: &Route) -> Result<(), StoreError> {
        self.write().insert(route.source.clone(), route.clone());
        self.announce(&route.source);
        Ok(())
    }

    async fn delete(&self, source: &str) -> Result<bool, StoreError> {
        let existed = self.write().remove(source).is_some();
        self.announce(source);
        Ok(existed)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn watch(&self, watcher: Watcher) {
        self.watchers.add(watcher);
    }
}
