//! The Redis store on its own: auth, prefixes, listing, atomic writes and notices.

mod common;

use ceryx::route::{Mode, Route, Settings};
use ceryx::store::{Change, RedisStore, RouteStore, StoreError, Writer};
use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn password_prefix_list_and_delete() {
    let redis = RedisServer::start_with(Some("s3cret")).await;
    let store = redis.store();
    let mut other = redis.config();
    other.prefix = "other".into();
    let other = RedisStore::connect(&other).unwrap();

    assert!(
        store.list().await.unwrap().is_empty(),
        "an empty store lists nothing"
    );
    let redirect = Settings {
        mode: Mode::Redirect,
        ..Settings::default()
    };
    for source in ["b.test", "a.test", "*.wild.test", "$wildcard"] {
        store
            .put(&Route::new(source, "t:1", redirect.clone()).unwrap())
            .await
            .unwrap();
    }
    other.put(&route("only-other.test", "t:2")).await.unwrap();

    let listed: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.source)
        .collect();
    assert_eq!(listed, ["$wildcard", "*.wild.test", "a.test", "b.test"]);
    let a = store.get("a.test").await.unwrap().unwrap();
    assert_eq!(a, Route::new("a.test", "http://t:1", redirect).unwrap());
    assert_eq!(
        other.list().await.unwrap().len(),
        1,
        "prefixes must not mix"
    );

    assert!(store.delete("a.test").await.unwrap());
    assert!(
        !store.delete("a.test").await.unwrap(),
        "deleting twice is not an error"
    );
    assert_eq!(store.get("a.test").await.unwrap(), None);

    let mut wrong = redis.config();
    wrong.password = Some("wrong".into());
    assert!(RedisStore::connect(&wrong).unwrap().ping().await.is_err());

    // A URL without a password takes the one given apart (a Kubernetes Secret).
    let mut by_url = redis.config();
    by_url.url = Some(format!("redis://127.0.0.1:{}/0", redis.port));
    let by_url = RedisStore::connect(&by_url).unwrap();
    assert_eq!(by_url.list().await.unwrap().len(), 3);
}

#[tokio::test]
async fn every_store_on_the_same_redis_hears_every_write() {
    let redis = RedisServer::start().await;
    let writer = redis.store();
    let reader = redis.store();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = heard.clone();
    let mut notices = reader.subscribe();
    tokio::spawn(async move {
        while let Some(change) = notices.next().await {
            sink.lock().unwrap().push(change);
        }
    });
    // The reader subscribes in the background; wait for its first resync notice.
    eventually(
        Duration::from_secs(5),
        "the reader to subscribe",
        || async { heard.lock().unwrap().contains(&Change::Resync) },
    )
    .await;

    writer.put(&route("n.test", "t:1")).await.unwrap();
    writer.delete("n.test").await.unwrap();
    eventually(Duration::from_secs(5), "both notices", || async {
        heard
            .lock()
            .unwrap()
            .iter()
            .filter(|c| matches!(c, Change::Route { source, written_at: Some(_) } if source == "n.test"))
            .count()
            == 2
    })
    .await;
}

/// A proxy in the writer's process reads the write at once: the write's own notice has
/// arrived (once, not also as a local copy) by the time the write returns.
#[tokio::test]
async fn a_write_is_announced_once_and_before_it_returns() {
    use futures_util::FutureExt;
    let redis = RedisServer::start().await;
    let store = redis.store();
    let mut notices = store.subscribe();
    let progress = notices.progress();
    let first = tokio::time::timeout(Duration::from_secs(5), notices.next()).await;
    assert_eq!(first.unwrap(), Some(Change::Resync), "subscribed");
    // Asking for the next notice (none yet) marks the resync applied.
    assert_eq!(notices.next().now_or_never(), None);
    assert!(!progress.behind());

    store.put(&route("own.test", "t:1")).await.unwrap();
    assert!(
        progress.behind(),
        "the write returned before its notice arrived"
    );
    store.put(&route("next.test", "t:1")).await.unwrap();
    for expected in ["own.test", "next.test"] {
        match notices.next().await {
            Some(Change::Route {
                source,
                written_at: Some(_),
            }) => assert_eq!(source, expected),
            other => panic!("expected the notice of {expected}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unreachable_redis_is_an_error_not_an_empty_answer() {
    let mut config = ceryx::store::RedisConfig::new("127.0.0.1", free_port());
    config.timeout = Duration::from_millis(200);
    let store = RedisStore::connect(&config).unwrap();
    assert!(store.get("x.test").await.is_err());
    assert!(store.put(&route("x.test", "t:1")).await.is_err());
}

/// The ownership rules every store must follow, for the controller and the REST API.
async fn ownership_rules(store: &dyn RouteStore) {
    let mine = Writer::Resource {
        owner: "shop/web",
        take_unowned: false,
    };
    let other = Writer::Resource {
        owner: "shop/other",
        take_unowned: false,
    };
    let taker = Writer::Resource {
        owner: "shop/taker",
        take_unowned: true,
    };

    store
        .write(&route("owned.test", "t:1"), mine)
        .await
        .unwrap();
    store
        .write(&route("owned.test", "t:2"), mine)
        .await
        .unwrap();
    assert!(
        matches!(store.write(&route("owned.test", "t:3"), other).await, Err(StoreError::Owned(o)) if o == "shop/web")
    );
    assert!(matches!(
        store.put(&route("owned.test", "t:4")).await,
        Err(StoreError::Owned(_))
    ));
    assert!(matches!(
        store.delete("owned.test").await,
        Err(StoreError::Owned(_))
    ));
    assert!(
        !store.remove("owned.test", other).await.unwrap(),
        "another resource deleted it"
    );
    assert_eq!(
        store.get("owned.test").await.unwrap().unwrap().target,
        "http://t:2"
    );
    assert_eq!(
        store.owners().await.unwrap(),
        [("owned.test".to_string(), "shop/web".to_string())]
    );

    // A route the REST API made is not taken over unless the resource asks.
    store.put(&route("api.test", "t:1")).await.unwrap();
    assert!(matches!(
        store.write(&route("api.test", "t:9"), mine).await,
        Err(StoreError::Unowned)
    ));
    store.write(&route("api.test", "t:9"), taker).await.unwrap();
    assert!(
        matches!(store.put(&route("api.test", "t:1")).await, Err(StoreError::Owned(o)) if o == "shop/taker")
    );

    assert!(store.remove("owned.test", mine).await.unwrap());
    assert_eq!(store.get("owned.test").await.unwrap(), None);
    // Once its owner deleted it, the host is free for anyone.
    store.put(&route("owned.test", "t:5")).await.unwrap();
    assert_eq!(
        store.owners().await.unwrap(),
        [("api.test".to_string(), "shop/taker".to_string())]
    );
}

#[tokio::test]
async fn ownership_in_redis() {
    let redis = RedisServer::start().await;
    ownership_rules(redis.store().as_ref()).await;
    // Ours are new keys: old Ceryx still sees a plain route and a plain settings hash.
    let mut raw = redis.raw().await;
    let owner: String = redis::AsyncCommands::get(&mut raw, "ceryx:owners:api.test")
        .await
        .unwrap();
    assert_eq!(owner, "shop/taker");
    let hash: std::collections::HashMap<String, String> =
        redis::AsyncCommands::hgetall(&mut raw, "ceryx:settings:api.test")
            .await
            .unwrap();
    assert_eq!(hash.len(), 2, "{hash:?}");
}

#[tokio::test]
async fn ownership_in_memory() {
    ownership_rules(&ceryx::store::MemoryStore::default()).await;
}
