//! Test harness: a real `redis-server` on a free port (or a Sentinel-managed set of
//! them), real upstream servers and the proxy itself, all on 127.0.0.1. This file only
//! names the fixtures and re-exports them; each lives in its own module.

// Every tests/*.rs compiles this harness anew and uses only the fixtures it needs, so
// each item is unused in some binary (and used in another).
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the shared harness"
)]

pub mod cluster;
pub mod sentinel;
pub mod tls;
pub mod traffic;

mod api;
mod certs;
mod client;
mod poll;
mod port;
mod process;
mod proxy;
mod redis_calls;
mod redis_server;
mod routes;
mod upstream;

#[allow(
    unused_imports,
    reason = "each test binary uses a different part of the shared harness"
)]
pub use {
    api::RunningApi,
    certs::issue,
    client::{Reply, TestClient},
    poll::eventually,
    port::free_port,
    process::{Process, binary},
    proxy::{RunningProxy, test_args},
    redis_calls::{Lookups, RedisCalls},
    redis_server::{RedisServer, server_program},
    routes::{owned, route},
    upstream::Upstream,
};
