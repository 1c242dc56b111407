//! Upstream connections kept alive between requests: HTTP/1.1 connections per upstream
//! (scheme and authority), each request written by the connection's own task.
//!
//! Lean by design, since every proxied request passes here: a checkout is one lock and
//! one hash of the authority, and a connection goes back to the pool as its response
//! body ends, from the task that read it (no task per request to wait for that). Each
//! worker thread has its own idle connections, whose tasks run on its runtime: a
//! request never hands its bytes to another thread.

use super::body::Body;
use super::connect::GuardedConnector;
use super::worker;
use crate::sync::lock;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, header};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The most an upstream connection buffers, each way (nginx's `proxy_buffer_size` as
/// tuned for large bodies). hyper's default (about 400 KiB) let each connection read
/// and queue chunks that large: with 8 connections streaming 1 MiB responses, the
/// proxy's peak RSS was 88 MiB against nginx's 22.
const MAX_BUF_BYTES: usize = 64 * 1024;

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// The URI names no host to connect to.
    #[error("the upstream URI {0} has no authority")]
    NoAuthority(Uri),
    /// No connection: refused, unresolvable, timed out, denied. Nothing was sent.
    #[error("cannot connect to the upstream")]
    Connect(#[source] BoxError),
    /// The exchange failed once the connection was there.
    #[error(transparent)]
    Send(#[from] hyper::Error),
}

impl PoolError {
    /// Whether the request never went out because no connection could be made.
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, PoolError::Connect(_))
    }
}

/// The pool: idle connections by upstream, and the connector for new ones. Clones share
/// the connections.
#[derive(Clone)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    connector: HttpsConnector<GuardedConnector>,
    /// Idle connections by upstream, one set per worker thread.
    idle: Box<[Mutex<Connections>]>,
    /// How long an idle connection is kept.
    keep: Duration,
}

type Connections = HashMap<Key, Vec<Idle>>;

/// An idle connection, and since when.
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Idle {
    /// Whether it may still be used: open, and idle for less than `keep`.
    fn usable(&self, keep: Duration) -> bool {
        !self.sender.is_closed() && self.since.elapsed() < keep
    }
}

/// An upstream: its scheme and authority, compared and hashed as written (a name spelt
/// in two cases only gets two sets of connections).
#[derive(Clone)]
struct Key {
    https: bool,
    authority: Authority,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.https == other.https && self.authority.as_str() == other.authority.as_str()
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // One write: `Authority`'s own hash feeds its bytes one by one.
        self.https.hash(state);
        self.authority.as_str().hash(state);
    }
}

impl Pool {
    /// A pool for `workers` threads connecting with `connector`, keeping idle
    /// connections for `keep`; the expired are swept every `keep` when a runtime is
    /// there to do it.
    pub(crate) fn new(
        connector: HttpsConnector<GuardedConnector>,
        keep: Duration,
        workers: usize,
    ) -> Pool {
        let shared = Arc::new(Shared {
            connector,
            idle: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
            keep,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&shared)));
        }
        Pool { shared }
    }

    /// Sends `req` (an absolute URI) on an idle connection to its upstream, or on a new
    /// one; a request an idle connection closed on before taking it goes out on another.
    pub(crate) async fn request(
        &self,
        mut req: Request<Body>,
    ) -> Result<Response<PooledBody>, PoolError> {
        let key = match (req.uri().scheme(), req.uri().authority()) {
            (Some(scheme), Some(authority)) => Key {
                https: *scheme == Scheme::HTTPS,
                authority: authority.clone(),
            },
            _ => return Err(PoolError::NoAuthority(req.uri().clone())),
        };
        if !req.headers().contains_key(header::HOST)
            && let Ok(host) = HeaderValue::from_str(key.authority.as_str())
        {
            req.headers_mut().insert(header::HOST, host);
        }
        // HTTP/1.1 to an origin server: the request line carries the path alone.
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let target = std::mem::replace(req.uri_mut(), Uri::from(path));
        loop {
            let shard = worker::index() % self.shared.idle.len();
            let (mut sender, reused) = match self.shared.take(shard, &key) {
                Some(sender) => (sender, true),
                // Boxed: a connect's future (TLS included) would swell every request's.
                None => (Box::pin(self.connect(&target)).await?, false),
            };
            if reused && sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(self.pooled(response, shard, key, sender)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(PoolError::Send(error.into_error())),
                },
            }
        }
    }

    /// A new connection to the upstream of `target`, its task spawned.
    async fn connect(&self, target: &Uri) -> Result<SendRequest<Body>, PoolError> {
        let mut connector = self.shared.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(PoolError::Connect)?;
        let io = connector
            .call(target.clone())
            .await
            .map_err(PoolError::Connect)?;
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(MAX_BUF_BYTES)
            .handshake(io)
            .await
            .map_err(PoolError::Send)?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// The response, its body handing the connection back when it ends; a switch of
    /// protocols keeps it (the connection is the tunnel's now).
    fn pooled(
        &self,
        response: Response<Incoming>,
        shard: usize,
        key: Key,
        sender: SendRequest<Body>,
    ) -> Response<PooledBody> {
        let mut back =
            (response.status() != http::StatusCode::SWITCHING_PROTOCOLS).then(|| GiveBack {
                shared: self.shared.clone(),
                shard,
                key,
                sender,
            });
        if http_body::Body::is_end_stream(response.body())
            && let Some(back) = back.take()
        {
            back.give();
        }
        response.map(|inner| PooledBody { inner, back })
    }
}

impl Shared {
    /// The most recently used live idle connection of worker `shard` to `key`'s
    /// upstream.
    fn take(&self, shard: usize, key: &Key) -> Option<SendRequest<Body>> {
        let mut idle = lock(&self.idle[shard]);
        let list = idle.get_mut(key)?;
        while let Some(conn) = list.pop() {
            if conn.usable(self.keep) {
                return Some(conn.sender);
            }
        }
        None
    }
}

/// Drops closed and expired idle connections every `keep`, while the pool lives.
async fn sweep(shared: Weak<Shared>) {
    let Some(every) = shared.upgrade().map(|s| s.keep) else {
        return;
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        for idle in &shared.idle {
            lock(idle).retain(|_, list| {
                list.retain(|c| c.usable(shared.keep));
                !list.is_empty()
            });
        }
    }
}

/// A connection to hand back once its response is read.
struct GiveBack {
    shared: Arc<Shared>,
    shard: usize,
    key: Key,
    sender: SendRequest<Body>,
}

impl GiveBack {
    fn give(self) {
        let idle = Idle {
            sender: self.sender,
            since: Instant::now(),
        };
        lock(&self.shared.idle[self.shard])
            .entry(self.key)
            .or_default()
            .push(idle);
    }
}

/// An upstream's response body; its connection goes back to the pool when it ends (a
/// body dropped before its end takes the connection with it).
pub(crate) struct PooledBody {
    inner: Incoming,
    back: Option<GiveBack>,
}

impl http_body::Body for PooledBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        let ended = match &frame {
            None => true,
            Some(Ok(_)) => this.inner.is_end_stream(),
            Some(Err(_)) => {
                this.back = None;
                false
            }
        };
        if ended && let Some(back) = this.back.take() {
            back.give();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
