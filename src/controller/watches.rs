//! Watches that keep a cache of every object of a kind and wake the merge of
//! Ingresses and HTTPRoutes on each change.

use futures_util::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::Arc;
use tokio::sync::Notify;

/// A cache of every `K`, and the task that keeps it (waking `changed` on each change).
pub(crate) fn watch<K>(
    client: &kube::Client,
    changed: &Arc<Notify>,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let changed = changed.clone();
    let task = watcher(
        Api::<K>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(writer)
    .touched_objects()
    .for_each(move |_| {
        changed.notify_one();
        std::future::ready(())
    });
    (store, tokio::spawn(task))
}
