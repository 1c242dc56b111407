//! Entry points for the fuzz targets in `fuzz/` (a separate crate, so it needs public
//! paths): thin wrappers around the crate-private functions, compiled only with the
//! `fuzzing` feature. Not an API.

use crate::route::Route;
use std::collections::HashMap;

/// The `redis` and `serde_json` the wrappers take and give, so the fuzz targets build
/// their values with exactly these versions.
pub use redis;
pub use serde_json;

/// The proxy's host normalisation ([`crate::route::normalize_host`]).
pub fn normalize_host(raw: &str) -> Option<String> {
    crate::route::normalize_host(raw)
}

/// The route store's source check ([`crate::route::normalize_source`]).
pub fn normalize_source(source: &str) -> Option<String> {
    crate::route::normalize_source(source).ok()
}

/// The REST API's reading of a route body; `path_source` is the PUT URL's source.
pub fn api_route(
    body: &serde_json::Value,
    path_source: Option<&str>,
) -> Result<Route, serde_json::Map<String, serde_json::Value>> {
    crate::api::input::parse_route(body, path_source)
}

/// The Redis store's reading of a route from its `GET` (target), `HGETALL` (settings)
/// and `GET` (rules) replies, with no wake setting; `Ok(None)` when the target key is
/// missing.
pub fn redis_route(
    source: &str,
    target: redis::Value,
    settings: redis::Value,
    rules: redis::Value,
) -> Result<Option<Route>, String> {
    crate::store::redis::parse_route(source, target, settings, rules, redis::Value::Nil)
        .map_err(|e| e.to_string())
}

/// The replies Redis gives (RESP3: a bulk string, a map, a bulk string or nil) for a
/// route once the store's write script has stored it: the target as is, the settings
/// hash with the fields and words `RedisStore::write` passes to `HSET`, and the rules.
pub fn redis_written(route: &Route) -> (redis::Value, redis::Value, redis::Value) {
    let bulk = |s: &str| redis::Value::BulkString(s.as_bytes().to_vec());
    let settings = &route.settings;
    let mut hash: HashMap<&str, &str> = HashMap::new();
    hash.insert(
        "enforce_https",
        if settings.enforce_https { "1" } else { "0" },
    );
    hash.insert("mode", settings.mode.as_str());
    if let Some(path) = &settings.certificate_path {
        hash.insert("certificate_path", path);
    }
    if let Some(path) = &settings.key_path {
        hash.insert("key_path", path);
    }
    let pairs = hash.into_iter().map(|(k, v)| (bulk(k), bulk(v))).collect();
    let rules = match route.rules.is_empty() {
        true => redis::Value::Nil,
        false => bulk(&serde_json::to_string(&route.rules).unwrap_or_default()),
    };
    (bulk(&route.target), redis::Value::Map(pairs), rules)
}
