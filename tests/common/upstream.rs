//! Echo upstreams: they answer with what they received, so a test sees what the proxy
//! forwarded.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;

/// An upstream that answers with a JSON echo of what it received, tagged with its name.
/// `/slow` answers after two seconds; `/ws` is a WebSocket echo.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Requests received so far (counted when they arrive, before any answer).
    pub hits: Arc<AtomicUsize>,
    stop: CancellationToken,
    /// Cancelled by [`Upstream::kill`]: open connections close too.
    killed: CancellationToken,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        Upstream::start_at(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// [`Upstream::start`] on a given address (a backend a test starts late, at the
    /// address its route already names).
    pub async fn start_at(name: &'static str, addr: SocketAddr) -> Upstream {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let killed = CancellationToken::new();
        let kill = killed.clone();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted_count = connections.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap().0,
                    _ = token.cancelled() => return,
                };
                accepted_count.fetch_add(1, Ordering::SeqCst);
                let (counter, kill) = (counter.clone(), kill.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        echo(name, req)
                    });
                    let serving = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::select! {
                        _ = serving => {}
                        _ = kill.cancelled() => {}
                    }
                });
            }
        });
        Upstream {
            addr,
            connections,
            hits,
            stop,
            killed,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops as a killed process does: no more connections, and the open ones closed.
    pub fn kill(&self) {
        self.stop.cancel();
        self.killed.cancel();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn echo(
    name: &'static str,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/ws" {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .cloned()
            .unwrap_or(http::HeaderValue::from_static(""));
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                None,
            )
            .await;
            while let Some(Ok(message)) = ws.next().await {
                if message.is_close() || ws.send(message).await.is_err() {
                    break;
                }
            }
        });
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .body(Full::default())
            .unwrap());
    }
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let method = req.method().to_string();
    let path = req.uri().to_string();
    let (body_len, body) = match req.into_body().collect().await {
        Ok(body) => {
            let body = body.to_bytes();
            // Small bodies are echoed whole, for tests that check them intact.
            let echoed = match body.len() <= 64 << 10 {
                true => String::from_utf8_lossy(&body).into_owned(),
                false => String::new(),
            };
            (body.len() as i64, echoed)
        }
        Err(_) => (-1, String::new()),
    };
    let json = serde_json::json!({"name": name, "method": method, "path": path, "headers": headers, "body_len": body_len, "body": body});
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("connection", "keep-alive, x-upstream-private")
        .header("x-upstream-private", "not for clients")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap())
}
