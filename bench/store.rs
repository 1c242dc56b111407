//! Redis, the routes' store: the server, Ceryx's client to it, and routes written in bulk.

use crate::process::{Processes, wait_listening};
use ceryx::route::{Route, Settings};
use ceryx::store::{RedisConfig, RedisStore};
use std::error::Error;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Starts `redis-server` on `port` as process `redis`, its files in `dir`.
pub async fn start(dir: &Path, port: u16, procs: &mut Processes) -> Result<(), std::io::Error> {
    // Append-only file, so a restart keeps the routes (as a production Redis would).
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()?;
    procs.add("redis", child);
    wait_listening(port).await;
    Ok(())
}

/// Starts `redis-server` on `port` as process `name`, keeping nothing on disk (for
/// data a scenario writes afresh).
pub async fn start_volatile(
    port: u16,
    procs: &mut Processes,
    name: &str,
) -> Result<(), std::io::Error> {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()?;
    procs.add(name, child);
    wait_listening(port).await;
    Ok(())
}

/// Ceryx's store on the server at `port`.
pub fn connect(port: u16) -> Arc<RedisStore> {
    let mut config = RedisConfig::new("127.0.0.1", port);
    config.timeout = Duration::from_secs(5);
    Arc::new(RedisStore::connect(&config).expect("redis settings"))
}

/// Writes `count` routes `h<i>.bench.test` → `target` in Ceryx's layout, pipelined.
pub async fn load_routes(port: u16, count: usize, target: &str) -> Result<(), Box<dyn Error>> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    for chunk in (0..count).collect::<Vec<_>>().chunks(5_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let host = spread_host(*i);
            pipe.set(format!("ceryx:routes:{host}"), target).ignore();
            pipe.hset_multiple(
                format!("ceryx:settings:{host}"),
                &[("enforce_https", "0"), ("mode", "proxy")],
            )
            .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    Ok(())
}

/// The `i`th of the many hosts: `h<i>.bench.test` (wrk's Lua script names the same).
pub fn spread_host(i: usize) -> String {
    format!("h{i}.bench.test")
}

/// A route `source` → `target` with default settings.
pub fn route(source: &str, target: &str) -> Route {
    Route::new(source, target, Settings::default()).expect("valid bench route")
}

/// A route with ten rules: nine that `GET /` passes over (longer prefixes, each with a
/// header condition), and a last one that takes it to `target` with a request header set.
pub fn with_rules(source: &str, target: &str) -> Route {
    let mut rules: Vec<serde_json::Value> = (0..9)
        .map(|i| {
            serde_json::json!({
                "matches": [{"path": {"type": "PathPrefix", "value": format!("/api/v{i}")},
                             "headers": [{"name": "x-version", "value": i.to_string()}]}],
                "backendRefs": [{"url": target}]})
        })
        .collect();
    rules.push(serde_json::json!({
        "filters": [{"type": "RequestHeaderModifier",
                     "requestHeaderModifier": {"set": [{"name": "x-routed", "value": "rules"}]}}],
        "backendRefs": [{"url": target}]}));
    let mut route = route(source, target);
    route.rules =
        serde_json::from_value(serde_json::Value::Array(rules)).expect("valid bench rules");
    route
}
