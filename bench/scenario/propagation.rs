//! Time from a route change until two proxy processes both serve it, written through the
//! store and through the REST API.

use crate::process::{free_port, wait_listening};
use crate::rig::Rig;
use crate::scale::Scale;
use crate::store::route;
use ceryx::store::{RedisStore, RouteStore};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One way of writing, with how long each change took to reach both proxies.
pub struct Row {
    pub writer: &'static str,
    /// Sorted, shortest first.
    pub times: Vec<Duration>,
}

pub struct Propagation {
    /// Changes per writer.
    pub changes: usize,
    pub rows: Vec<Row>,
}

const API: &str = "REST API";

/// `first` is the HTTP port of a running proxy; a second proxy and the API are started
/// (and stopped) here.
pub async fn run(
    rig: &mut Rig,
    scale: &Scale,
    store: &Arc<RedisStore>,
    first: u16,
) -> Result<Propagation, Box<dyn Error>> {
    let (a, b) = (rig.a(), rig.b());
    let second = rig.start_ceryx("proxy-2", &[]).await?;
    let api_port = free_port();
    let api_addr = format!("127.0.0.1:{api_port}");
    rig.start_ceryx("api", &["run", "--api-addr", &api_addr])
        .await?;
    wait_listening(api_port).await;
    let mut rows = Vec::new();
    for writer in ["store (one atomic write + PUBLISH)", API] {
        store.put(&route("prop.bench.test", &a)).await?;
        for port in [first, second] {
            while rig.answer(port, "prop.bench.test").await.map(|r| r.1) != Some("a".into()) {}
        }
        let mut times = Vec::new();
        for change in 0..scale.changes {
            let (target, body) = if change % 2 == 0 {
                (&b, "b")
            } else {
                (&a, "a")
            };
            let start = Instant::now();
            if writer == API {
                let req =
                    http::Request::put(format!("http://{api_addr}/api/routes/prop.bench.test"))
                        .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                            r#"{{"target": "{target}"}}"#
                        ))))?;
                let client = Client::builder(TokioExecutor::new()).build_http();
                client.request(req).await?;
            } else {
                store.put(&route("prop.bench.test", target)).await?;
            }
            for port in [first, second] {
                loop {
                    let answer = rig.answer(port, "prop.bench.test").await;
                    if answer.as_ref().map(|r| r.1.as_str()) == Some(body) {
                        break;
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(10),
                        "change {change} ({writer}) never reached the proxy on port {port}: \
                         it still answers {answer:?}"
                    );
                }
            }
            times.push(start.elapsed());
        }
        times.sort();
        rows.push(Row { writer, times });
    }
    rig.procs.kill("proxy-2");
    rig.procs.kill("api");
    Ok(Propagation {
        changes: scale.changes,
        rows,
    })
}
