//! The data plane: routes each request by host to its target, redirects, or answers
//! with a clean error. Never talks to Kubernetes; reads routes through [`RouteCache`].
//!
//! This file is the folder's face: [`Proxy`] and its phases (route, then forward, then
//! report); the leaves below it know nothing of it.

mod access_log;
mod body;
pub mod cache;
mod config;
mod connect;
mod endpoints;
mod error;
mod forward;
mod header_deadline;
mod headers;
mod health;
mod limit;
mod observe;
mod pool;
mod retry_budget;
mod routing;
mod scheme;
mod server;
pub mod tls;
mod wake;
mod worker;

pub use cache::RouteCache;
pub use config::Config;
pub use forward::ClientError;

use crate::route::{
    self, Mode, Route, Strategy, Upstream, Wake, normalize_host, redirect_location,
};
use crate::store::RouteStore;
use access_log::AccessLog;
use body::Body;
use endpoints::Outcome;
use error::ProxyError;
use forward::{Forward, Forwarded, Forwarder, Via};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use limit::Limit;
use observe::{Exchange, Observed};
use routing::{Decision, Destination};
use scheme::Scheme;
use server::{Handler, Peer, Timeouts};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls::Certificates;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const NO_HOST: &str = "The request has no valid Host header.";
const TWO_HOSTS: &str = "The request has more than one Host header.";

/// One proxy: its route cache, upstream client and settings, shared by all listeners.
pub struct Proxy {
    cache: Arc<RouteCache>,
    /// This process's `CDN-Loop` token: a request that already carries it came back.
    loop_marker: HeaderValue,
    /// The connection limit its HTTP and HTTPS listeners share.
    connections: Option<Arc<Limit>>,
    forwarder: Forwarder,
    /// Wakes the backends of routes with a wake setting.
    waker: Arc<wake::Waker>,
    log: AccessLog,
    config: Config,
}

/// Serves plain HTTP on `listener` until `shutdown` is cancelled, then stops accepting
/// and lets in-flight requests finish (bounded by the shutdown timeout).
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, shutdown: CancellationToken) {
    serve_on(listener, proxy, None, shutdown).await
}

/// Serves HTTPS on `listener`, each handshake with the certificate its SNI asks for, as
/// [`serve`] does HTTP.
pub async fn serve_tls(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    certificates: Arc<Certificates>,
    shutdown: CancellationToken,
) {
    serve_on(listener, proxy, Some(certificates), shutdown).await
}

/// Where the proxy listens: plain HTTP, and HTTPS with its certificates.
pub struct Listeners {
    /// The HTTP address.
    pub http: SocketAddr,
    /// The HTTPS address and the certificates it serves.
    pub https: Option<(SocketAddr, Arc<Certificates>)>,
    /// How many connections the kernel queues on each socket until they are accepted.
    pub backlog: u32,
}

/// Serves `listeners` on the proxy's worker threads (`CERYX_WORKERS`), each with its
/// own socket on every address, as [`serve`] and [`serve_tls`] do; fails as binding
/// fails. The future it gives ends when every worker has stopped after `shutdown`.
pub fn serve_workers(
    proxy: Arc<Proxy>,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> std::io::Result<impl Future<Output = ()>> {
    let n = proxy.config.workers;
    let listen = |addr: SocketAddr| {
        worker::listen(addr, n, listeners.backlog)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
    };
    let http = listen(listeners.http)?;
    let mut https = match &listeners.https {
        Some((addr, _)) => listen(*addr)?.into_iter().map(Some).collect(),
        None => Vec::new(),
    };
    https.resize_with(http.len(), || None);
    let certificates = listeners.https.map(|(_, certificates)| certificates);
    let sockets = http.into_iter().zip(https).collect();
    let threads = worker::spawn(sockets, move |(http, https)| {
        let (proxy, certificates, shutdown) =
            (proxy.clone(), certificates.clone(), shutdown.clone());
        async move {
            let serving = |socket| TcpListener::from_std(socket);
            let http = match serving(http) {
                Ok(http) => serve(http, proxy.clone(), shutdown.clone()),
                Err(e) => return tracing::error!(error = %e, "worker cannot serve HTTP"),
            };
            match (https.map(serving), certificates) {
                (Some(Ok(https)), Some(certificates)) => {
                    let https = serve_tls(https, proxy, certificates, shutdown);
                    tokio::join!(http, https);
                }
                (Some(Err(e)), _) => tracing::error!(error = %e, "worker cannot serve HTTPS"),
                _ => http.await,
            }
        }
    })?;
    Ok(async move {
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        });
        let _ = joined.await;
    })
}

async fn serve_on(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<Arc<Certificates>>,
    shutdown: CancellationToken,
) {
    let timeouts = Timeouts {
        header: proxy.config.client_header_timeout,
        shutdown: proxy.config.shutdown_timeout,
    };
    let limit = proxy.connections.clone();
    server::serve(listener, proxy.clone(), tls, timeouts, limit, shutdown).await;
    proxy.close_tunnels().await;
}

impl Handler for Proxy {
    async fn handle(
        &self,
        mut req: Request<Incoming>,
        peer: &Peer,
        listener: Scheme,
    ) -> Response<Observed> {
        let mut exchange = Exchange::start(&mut req, peer.addr.ip());
        let response = self.answer(req, peer, listener, &mut exchange).await;
        // The last phase: the exchange reports itself when the response's body ends.
        exchange.finish(response, &self.log)
    }
}

impl Proxy {
    /// A proxy reading `store`, with its change-notice listener running.
    pub fn new(store: Arc<dyn RouteStore>, config: Config) -> Result<Arc<Proxy>, ClientError> {
        let notices = store.subscribe();
        let cache = RouteCache::new(store.clone(), notices, config.cache_ttl);
        let forwarder = Forwarder::new(&config)?;
        let waker = wake::Waker::new(store, forwarder.client(), config.wake_page.clone());
        Ok(Arc::new(Proxy {
            cache,
            loop_marker: headers::loop_marker(),
            connections: Limit::new(config.max_connections),
            forwarder,
            waker,
            log: AccessLog::new(config.access_log),
            config,
        }))
    }

    /// The routes this proxy serves, which also hold their certificates.
    pub fn routes(&self) -> &Arc<RouteCache> {
        &self.cache
    }

    async fn answer(
        &self,
        req: Request<Incoming>,
        peer: &Peer,
        listener: Scheme,
        exchange: &mut Exchange,
    ) -> Response<Body> {
        let json = error::wants_json(req.headers());
        match self.route(req, peer, listener, exchange).await {
            Ok(response) => response,
            Err(e) => {
                let (method, uri, peer) = (exchange.method(), exchange.uri(), peer.addr);
                match &e {
                    ProxyError::BadGateway(detail)
                    | ProxyError::Unreachable(detail)
                    | ProxyError::Refused(detail) => {
                        tracing::warn!(%peer, %method, %uri, %detail, "upstream failed")
                    }
                    other => {
                        tracing::debug!(%peer, %method, %uri, error = %other, "request refused")
                    }
                }
                e.into_response(json)
            }
        }
    }

    async fn route(
        &self,
        mut req: Request<Incoming>,
        peer: &Peer,
        listener: Scheme,
        exchange: &mut Exchange,
    ) -> Result<Response<Body>, ProxyError> {
        if req.method() == http::Method::CONNECT {
            return Err(ProxyError::BadRequest("CONNECT is not supported."));
        }
        // RFC 9112 §3.2: more than one Host is answered 400, as nginx does ("client sent
        // duplicate host header"): routed by one, an upstream could read the other.
        if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
            return Err(ProxyError::BadRequest(TWO_HOSTS));
        }
        // RFC 8586: a request that already passed through this proxy is in a loop
        // (a route that points back at us); each round would hold two more sockets.
        if headers::has_looped(req.headers(), &self.loop_marker) {
            return Err(ProxyError::LoopDetected);
        }
        // The upstream sees the host the request is routed by: an absolute-form request
        // line or HTTP/2's :authority replaces Host (RFC 9112 §3.2.2, RFC 9113 §8.3.1),
        // as nginx does.
        if let Some(authority) = req.uri().authority()
            && let Ok(value) = HeaderValue::from_str(without_userinfo(authority.as_str()))
        {
            req.headers_mut().insert(header::HOST, value);
        }
        let host = routing_host(&req)
            .and_then(normalize_host)
            .ok_or(ProxyError::BadRequest(NO_HOST))?;
        let proto = self.client_proto(&req, peer.addr, listener);

        let mut resolved = match self.cache.resolve(&host).await {
            Ok(Some(resolved)) => resolved,
            Ok(None) => return Err(ProxyError::NoRoute(host)),
            Err(_) => return Err(ProxyError::StoreUnavailable),
        };
        exchange.routed(resolved.clone());
        let settings = &resolved.route.settings;
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        if settings.enforce_https && proto == Scheme::Http {
            return Ok(redirect(MOVED, &format!("https://{host}{path}")));
        }
        if settings.mode == Mode::Redirect {
            return Ok(redirect(
                MOVED,
                &redirect_location(&resolved.route.target, path),
            ));
        }
        // A backend with a wake setting sleeps while its Service has no ready endpoint:
        // held (before the rules change the request) until the route has one.
        if asleep(&resolved, &req)
            && let Some(wake) = resolved.route.wake.clone()
        {
            let source = resolved.route.source.clone();
            if wake.strategy == Strategy::Page
                && forward::is_navigation(req.method(), req.headers())
            {
                self.waker.request(&host, &source, &wake);
                return Ok(self.waker.page(&host));
            }
            // Boxed, as the other wake path below: the futures of rare paths are kept
            // out of every request's future, which hyper moves whole (10 KiB with
            // them, 7 without).
            resolved = Box::pin(self.hold_asleep(&req, &host, &source, &wake)).await?;
        }
        let mut via = resolved.upstream.as_ref().map(Via::Upstream);
        let (mut rule, mut mirrors) = (None, Vec::new());
        if let Some(rules) = &resolved.rules
            && let Some((decision, copies)) = rules.apply(&mut req, &host, proto)
        {
            let (matched, destination) = match decision {
                Decision::Redirect(status, location) => return Ok(redirect(status, &location)),
                Decision::Forward(matched, destination) => (matched, destination),
            };
            match destination {
                Destination::Target => {}
                Destination::Backend(set) => {
                    via = Some(Via::Endpoints(set, matched.retry.as_ref()))
                }
                Destination::Unavailable => return Err(ProxyError::NoBackend),
                Destination::NoEndpoints(service) => {
                    return Err(ProxyError::NoEndpoints(service.to_owned()));
                }
            }
            rule = Some(matched);
            mirrors = copies;
        }
        let Some(via) = via else {
            if route::is_unrouted(&resolved.route.target) {
                return Err(ProxyError::NoRule);
            }
            return Err(ProxyError::BadGateway(format!(
                "route {} has an invalid target {:?}",
                resolved.route.source, resolved.route.target
            )));
        };

        let max_body = rule
            .and_then(|r| r.max_body)
            .unwrap_or(self.config.max_request_body_size);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if max_body > 0 && declared.is_some_and(|len| len > max_body) {
            return Err(ProxyError::BodyTooLarge(max_body));
        }
        req.headers_mut()
            .append(headers::CDN_LOOP, self.loop_marker.clone());
        // After the loop marker: a mirror that points back at the proxy is refused (508)
        // instead of being mirrored again.
        for mirror in &mirrors {
            self.forwarder.mirror(&req, mirror, &peer.ip, proto);
        }
        let to = Forward {
            via,
            client: &peer.ip,
            proto,
            max_body,
            timeout: rule.and_then(|r| r.attempt_timeout),
        };
        let forwarding = async {
            match &resolved.route.wake {
                None => self.forwarder.forward(req, to).await,
                Some(wake) => {
                    Box::pin(self.forward_waking(req, to, &host, &resolved.route, wake)).await
                }
            }
        };
        let forwarded = match rule.and_then(|r| r.request_timeout) {
            None => forwarding.await,
            Some(limit) => match tokio::time::timeout(limit, forwarding).await {
                Ok(forwarded) => forwarded,
                Err(_) => {
                    exchange.forwarded(limit, None);
                    return Err(ProxyError::GatewayTimeout);
                }
            },
        };
        exchange.forwarded(forwarded.upstream, forwarded.uploaded);
        let mut response = forwarded.response?;
        if let Some(rule) = rule {
            rule.modify_response(response.headers_mut());
        }
        Ok(response)
    }

    /// Forwards a request of a route with a wake setting: a backend that refuses the
    /// connection is woken while the request (its body unread) is held until it accepts,
    /// up to the route's timeout; with strategy `page`, a browser navigation is answered
    /// at once with a page that refreshes itself. A rule's backend is held for the
    /// endpoint it picked (retries do not apply).
    async fn forward_waking(
        &self,
        req: Request<Incoming>,
        to: Forward<'_>,
        host: &str,
        route: &Route,
        wake: &Wake,
    ) -> Forwarded {
        let (upstream, picked) = match &to.via {
            Via::Upstream(upstream) => ((*upstream).clone(), None),
            Via::Endpoints(set, _) => match set.pick(&[]) {
                Some(picked) => (picked.upstream().clone(), Some(picked)),
                None => return Forwarded::failed(ProxyError::NoBackend),
            },
        };
        let forwarded = self
            .hold_and_forward(req, &to, host, route, wake, &upstream)
            .await;
        // The endpoint learns of answers; a wait for it to wake is no failure of its own.
        if let (Some(picked), Ok(response)) = (picked, &forwarded.response) {
            picked.finish(Outcome::response(response.status(), forwarded.upstream));
        }
        forwarded
    }

    /// [`Proxy::forward_waking`] to one upstream.
    async fn hold_and_forward(
        &self,
        req: Request<Incoming>,
        to: &Forward<'_>,
        host: &str,
        route: &Route,
        wake: &Wake,
        upstream: &Upstream,
    ) -> Forwarded {
        let mut refused = match self.forwarder.forward_or_refused(req, to, upstream).await {
            Ok(forwarded) => return self.served(forwarded, host, route, wake),
            Err(refused) => refused,
        };
        if wake.strategy == Strategy::Page && refused.is_navigation() {
            self.waker.start_only(host, route, wake, upstream);
            return Forwarded {
                response: Ok(self.waker.page(host)),
                upstream: Duration::ZERO,
                uploaded: None,
            };
        }
        let deadline = Instant::now() + wake.timeout();
        loop {
            let Some(woken) = self.waker.hold(host, route, wake, upstream, deadline).await else {
                return Forwarded::failed(ProxyError::WakeTimeout(host.to_owned()));
            };
            match self.forwarder.resend(refused, to, upstream).await {
                Ok(forwarded) => {
                    woken.answered();
                    return self.served(forwarded, host, route, wake);
                }
                // Refused again (the backend went back down): held again.
                Err(again) => refused = again,
            }
        }
    }

    /// Holds a request of a route with a wake setting while the Service its rule picks
    /// has no ready endpoint: wakes it (once per route, see [`wake::Waker::request`]) and
    /// waits for the route's change notices (the controller rewrites the route when an
    /// endpoint turns ready), up to the wake's timeout. The route as it is then.
    async fn hold_asleep(
        &self,
        req: &Request<Incoming>,
        host: &str,
        source: &str,
        wake: &Wake,
    ) -> Result<Arc<cache::Resolved>, ProxyError> {
        let _held = crate::telemetry::held();
        let deadline = Instant::now() + wake.timeout();
        // Subscribed before the first look, so that no change between goes unseen.
        let mut changes = self.cache.changes();
        self.waker.request(host, source, wake);
        loop {
            let resolved = match self.cache.resolve(host).await {
                Ok(Some(resolved)) => resolved,
                Ok(None) => return Err(ProxyError::NoRoute(host.to_owned())),
                Err(_) => return Err(ProxyError::StoreUnavailable),
            };
            if !asleep(&resolved, req) {
                self.waker.got_endpoints(source);
                return Ok(resolved);
            }
            match tokio::time::timeout_at(deadline.into(), changes.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    self.waker.no_endpoints(source, wake.timeout());
                    return Err(ProxyError::WakeTimeout(host.to_owned()));
                }
            }
        }
    }

    /// Notes a served request of a route with a wake setting (for putting it back to
    /// sleep when idle).
    fn served(&self, forwarded: Forwarded, host: &str, route: &Route, wake: &Wake) -> Forwarded {
        if forwarded.response.is_ok() {
            self.waker.served(host, route, wake);
        }
        forwarded
    }

    /// The scheme the client used: the listener's, or `X-Forwarded-Proto` when the peer
    /// is a trusted proxy (a TLS-terminating balancer in front of us).
    fn client_proto(&self, req: &Request<Incoming>, peer: SocketAddr, listener: Scheme) -> Scheme {
        if !self.config.is_trusted(peer.ip()) {
            return listener;
        }
        req.headers()
            .get("x-forwarded-proto")
            .and_then(|v| Scheme::from_forwarded(v.as_bytes()))
            .unwrap_or(listener)
    }

    /// Waits for open tunnels up to the shutdown timeout, then closes them, and writes
    /// out the access log.
    async fn close_tunnels(&self) {
        self.forwarder
            .close_tunnels(self.config.shutdown_timeout)
            .await;
        self.log.flush();
    }
}

/// Whether `req` is for a route with a wake setting whose rule sends it to Services
/// none of which has a ready endpoint (its backend sleeps).
fn asleep<B>(resolved: &cache::Resolved, req: &Request<B>) -> bool {
    resolved.route.wake.is_some() && resolved.rules.as_ref().is_some_and(|r| r.asleep(req))
}

/// The host a request is routed by: the authority of an absolute-form request line (or
/// HTTP/2's :authority) wins over the Host header, as in nginx.
fn routing_host<B>(req: &Request<B>) -> Option<&str> {
    match req.uri().authority() {
        Some(authority) => Some(without_userinfo(authority.as_str())),
        None => req.headers().get(header::HOST)?.to_str().ok(),
    }
}

fn without_userinfo(authority: &str) -> &str {
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

/// Ceryx redirects with 301 for every method.
const MOVED: StatusCode = StatusCode::MOVED_PERMANENTLY;

fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = Response::new(body::full(""));
    *response.status_mut() = status;
    match HeaderValue::from_str(location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => {
            ProxyError::BadRequest("The redirect target is not a valid URL.").into_response(false)
        }
    }
}
