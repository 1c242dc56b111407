//! The data plane: routes each request by host to its target, redirects, or answers
//! with a clean error. Never talks to Kubernetes; reads routes through [`RouteCache`].

mod access_log;
mod body;
pub mod cache;
pub mod error;
pub mod forward;
pub mod headers;
mod observe;
mod server;
pub mod tls;

pub use cache::RouteCache;
pub use error::ProxyError;
pub use server::{serve, serve_tls};

use crate::config::ProxyArgs;
use crate::route::{Mode, normalize_host, redirect_location};
use crate::store::RouteStore;
use access_log::AccessLog;
use bytes::Bytes;
use forward::{ClientError, Forward, Forwarder};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use observe::Exchange;
pub use observe::Observed;
use std::net::SocketAddr;
use std::sync::Arc;

const NO_HOST: &str = "The request has no valid Host header.";
const TWO_HOSTS: &str = "The request has more than one Host header.";

/// The body type of every response the proxy sends.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Any error a body can carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One proxy: its route cache, upstream client and settings, shared by all listeners.
pub struct Proxy {
    cache: Arc<RouteCache>,
    forwarder: Forwarder,
    log: AccessLog,
    args: ProxyArgs,
}

impl Proxy {
    /// A proxy reading `store`, with its change-notice listener running.
    pub fn new(store: Arc<dyn RouteStore>, args: ProxyArgs) -> Result<Arc<Proxy>, ClientError> {
        let notices = store.subscribe();
        let cache = RouteCache::new(store, notices, args.cache_ttl);
        let forwarder = Forwarder::new(
            args.upstream_connect_timeout,
            args.upstream_response_timeout,
            args.upstream_tls_verify,
        )?;
        Ok(Arc::new(Proxy {
            cache,
            forwarder,
            log: AccessLog::new(args.access_log),
            args,
        }))
    }

    /// The routes this proxy serves, which also hold their certificates.
    pub fn routes(&self) -> &Arc<RouteCache> {
        &self.cache
    }

    /// Answers one request that arrived from `peer` on a listener of scheme `listener`.
    pub async fn handle(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        listener: &'static str,
    ) -> Response<Observed> {
        let mut exchange = Exchange::start(&mut req, peer.ip());
        let response = self.answer(req, peer, listener, &mut exchange).await;
        exchange.finish(response, &self.log)
    }

    async fn answer(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        listener: &'static str,
        exchange: &mut Exchange,
    ) -> Response<Body> {
        let json = error::wants_json(req.headers());
        match self.route(req, peer, listener, exchange).await {
            Ok(response) => response,
            Err(e) => {
                let (method, uri) = (&exchange.method, &exchange.uri);
                match &e {
                    ProxyError::BadGateway(detail) => {
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
        peer: SocketAddr,
        listener: &'static str,
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
        // The upstream sees the client's own Host (HTTP/2 clients send :authority only).
        if !req.headers().contains_key(header::HOST)
            && let Some(authority) = req.uri().authority()
            && let Ok(value) = HeaderValue::from_str(without_userinfo(authority.as_str()))
        {
            req.headers_mut().insert(header::HOST, value);
        }
        let host = routing_host(&req)
            .and_then(normalize_host)
            .ok_or(ProxyError::BadRequest(NO_HOST))?;
        let proto = self.client_proto(&req, peer, listener);

        let resolved = match self.cache.resolve(&host).await {
            Ok(Some(resolved)) => resolved,
            Ok(None) => return Err(ProxyError::NoRoute(host)),
            Err(_) => return Err(ProxyError::StoreUnavailable),
        };
        exchange.route = Some(resolved.clone());
        let settings = &resolved.route.settings;
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        if settings.enforce_https && proto == "http" {
            return Ok(redirect(&format!("https://{host}{path}")));
        }
        if settings.mode == Mode::Redirect {
            return Ok(redirect(&redirect_location(&resolved.route.target, path)));
        }
        let Some(upstream) = &resolved.upstream else {
            return Err(ProxyError::BadGateway(format!(
                "route {} has an invalid target {:?}",
                resolved.route.source, resolved.route.target
            )));
        };

        let max_body = self.args.max_request_body_size;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if max_body > 0 && declared.is_some_and(|len| len > max_body) {
            return Err(ProxyError::BodyTooLarge(max_body));
        }
        let to = Forward {
            upstream,
            client_ip: peer.ip(),
            proto,
            max_body,
            uploaded: &mut exchange.uploaded,
        };
        let sent = std::time::Instant::now();
        let response = self.forwarder.forward(req, to).await;
        exchange.upstream = Some(sent.elapsed());
        response
    }

    /// The scheme the client used: the listener's, or `X-Forwarded-Proto` when the peer
    /// is a trusted proxy (a TLS-terminating balancer in front of us).
    fn client_proto(
        &self,
        req: &Request<Incoming>,
        peer: SocketAddr,
        listener: &'static str,
    ) -> &'static str {
        if !self.args.is_trusted(peer.ip()) {
            return listener;
        }
        match req.headers().get("x-forwarded-proto").map(|v| v.as_bytes()) {
            Some(b"https") => "https",
            Some(b"http") => "http",
            _ => listener,
        }
    }

    /// Stops after `grace`: waits for open tunnels, then closes them, and writes out the
    /// access log.
    pub async fn close_tunnels(&self) {
        self.forwarder
            .close_tunnels(self.args.shutdown_timeout)
            .await;
        self.log.flush();
    }
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
fn redirect(location: &str) -> Response<Body> {
    let mut response = Response::new(error::full(""));
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
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
