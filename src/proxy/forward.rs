//! Forwarding to upstreams: one pooled keep-alive client per process, streaming bodies
//! both ways, and upgraded connections (WebSocket and the like) tunnelled.

use super::Config;
use super::body::{BadBody, Body, Progress, RequestBody, ResponseBody, TooLarge, Unsent, full};
use super::connect::GuardedConnector;
use super::endpoints::{EndpointSet, Outcome};
use super::error::ProxyError;
use super::headers;
use super::pool::{Pool, PoolError};
use super::routing::RetryPolicy;
use super::scheme::Scheme;
use crate::route::Upstream;
use crate::sync::lock;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Most mirrored requests in flight at once.
const MIRRORS_IN_FLIGHT: usize = 256;

/// Why the upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// rustls refused the configuration.
    #[error("upstream TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Where a request goes.
pub(crate) enum Via<'a> {
    /// One upstream: a route's target.
    Upstream(&'a Upstream),
    /// A rule's backend: an endpoint chosen per attempt, retried as the policy says.
    Endpoints(&'a Arc<EndpointSet>, Option<&'a RetryPolicy>),
}

/// Per-request facts the forwarder needs besides the request itself.
pub(crate) struct Forward<'a> {
    /// Where the request goes.
    pub(crate) via: Via<'a>,
    /// The client's IP, as the forwarding headers carry it.
    pub(crate) client: &'a HeaderValue,
    /// The scheme the client used.
    pub(crate) proto: Scheme,
    /// Largest request body allowed, 0 for no limit.
    pub(crate) max_body: u64,
    /// Time for the response head, instead of `CERYX_UPSTREAM_RESPONSE_TIMEOUT` (a
    /// rule's `backendRequest`).
    pub(crate) timeout: Option<Duration>,
}

/// What forwarding one request gave: the answer, and what was measured on the way, for
/// the exchange's report.
pub(crate) struct Forwarded {
    /// The upstream's response, or why there is none.
    pub(crate) response: Result<Response<Body>, ProxyError>,
    /// Time to the upstream's response head (or to the failure).
    pub(crate) upstream: Duration,
    /// Request body bytes received so far, for requests with a body; counted on while
    /// the body still streams after the response head.
    pub(crate) uploaded: Option<Arc<AtomicU64>>,
}

impl Forwarded {
    /// What forwarding gives when nothing was sent.
    pub(crate) fn failed(error: ProxyError) -> Forwarded {
        Forwarded {
            response: Err(error),
            upstream: Duration::ZERO,
            uploaded: None,
        }
    }
}

/// A request made ready for its upstream.
struct Prepared {
    request: Request<Body>,
    progress: Option<Progress>,
    /// The protocol asked for and the client's side of the upgrade, for upgrade requests.
    upgrade: Option<(HeaderValue, OnUpgrade)>,
}

/// A request its upstream refused before any of it went out (the backend is asleep),
/// kept whole, its body unread, to be sent again once the backend accepts.
pub(crate) struct Refused {
    replay: Replay,
    upgrade: Option<(HeaderValue, OnUpgrade)>,
}

impl Refused {
    /// Whether a browser is navigating: a GET that accepts `text/html`.
    pub(crate) fn is_navigation(&self) -> bool {
        is_navigation(&self.replay.method, &self.replay.headers)
    }
}

/// Whether a request is a browser's navigation: a GET that accepts `text/html`.
pub(crate) fn is_navigation(method: &Method, headers: &http::HeaderMap) -> bool {
    method == Method::GET
        && headers
            .get_all(header::ACCEPT)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("text/html")))
}

/// Sends requests upstream and tunnels upgraded connections.
pub(crate) struct Forwarder {
    client: Pool,
    response_timeout: Duration,
    tunnels: TaskTracker,
    close_tunnels: CancellationToken,
    mirrors: Arc<tokio::sync::Semaphore>,
}

impl Forwarder {
    /// A forwarder with its connection pool, with the upstream settings of `config`.
    pub(crate) fn new(config: &Config) -> Result<Forwarder, ClientError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(config.upstream_connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(config.upstream_tls_verify)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(GuardedConnector::new(http, &config.upstream_deny));
        let client = Pool::new(connector, POOL_IDLE, config.workers);
        Ok(Forwarder {
            client,
            response_timeout: config.upstream_response_timeout,
            tunnels: TaskTracker::new(),
            close_tunnels: CancellationToken::new(),
            mirrors: Arc::new(tokio::sync::Semaphore::new(MIRRORS_IN_FLIGHT)),
        })
    }

    /// Forwards a request: drops hop-by-hop headers, sets the forwarding ones, streams
    /// the body up and the answer back, and tunnels an accepted upgrade.
    pub(crate) async fn forward(&self, req: Request<Incoming>, to: Forward<'_>) -> Forwarded {
        let started = Instant::now();
        let timeout = to.timeout.unwrap_or(self.response_timeout);
        let (response, uploaded) = match to.via {
            Via::Upstream(upstream) => match prepare(req, &to, upstream, None) {
                Ok(prepared) => {
                    let uploaded = prepared.progress.as_ref().map(|p| p.received.clone());
                    (self.send(prepared, to.max_body, timeout).await, uploaded)
                }
                Err(e) => (Err(e), None),
            },
            Via::Endpoints(set, retry) => self.balanced(req, &to, set, retry, timeout).await,
        };
        Forwarded {
            response,
            upstream: started.elapsed(),
            uploaded,
        }
    }

    /// A handle on the pooled client.
    pub(crate) fn client(&self) -> Pool {
        self.client.clone()
    }

    /// Forwards a request to `upstream` once, as [`Forwarder::forward`] does, except
    /// that a refused connection hands the request back whole instead of a 502, to be
    /// held and sent again with [`Forwarder::resend`].
    pub(crate) async fn forward_or_refused(
        &self,
        req: Request<Incoming>,
        to: &Forward<'_>,
        upstream: &Upstream,
    ) -> Result<Forwarded, Refused> {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let unsent: Unsent = Arc::default();
        let mut prepared = match prepare(req, to, upstream, Some(unsent.clone())) {
            Ok(prepared) => prepared,
            Err(e) => {
                return Ok(Forwarded::failed(e));
            }
        };
        let refused = Refused {
            replay: Replay {
                method: prepared.request.method().clone(),
                headers: prepared.request.headers().clone(),
                path,
                body: prepared.progress.is_some().then_some(unsent),
            },
            upgrade: prepared.upgrade.take(),
        };
        self.attempt(prepared, refused, to, true).await
    }

    /// Sends a refused request again, to `upstream`; refused again, it comes back again.
    pub(crate) async fn resend(
        &self,
        refused: Refused,
        to: &Forward<'_>,
        upstream: &Upstream,
    ) -> Result<Forwarded, Refused> {
        let Some(prepared) = refused.replay.prepare(upstream, to.max_body) else {
            return Ok(Forwarded::failed(ProxyError::BadGateway(
                "the held request could not be sent again".into(),
            )));
        };
        self.attempt(prepared, refused, to, false).await
    }

    /// One attempt for [`Forwarder::forward_or_refused`] and [`Forwarder::resend`]; the
    /// upgrade stays with the request until a 101 takes it. On the `first` attempt, a
    /// request whose connection broke before its body was read (a pooled connection
    /// the backend closed as it went to sleep) comes back as refused too, when sending
    /// it again is safe.
    async fn attempt(
        &self,
        prepared: Prepared,
        mut refused: Refused,
        to: &Forward<'_>,
        first: bool,
    ) -> Result<Forwarded, Refused> {
        let started = Instant::now();
        let timeout = to.timeout.unwrap_or(self.response_timeout);
        let uploaded = prepared.progress.as_ref().map(|p| p.received.clone());
        let Prepared {
            request, progress, ..
        } = prepared;
        let response = self
            .send_keeping(
                request,
                progress,
                &mut refused.upgrade,
                to.max_body,
                timeout,
            )
            .await;
        match response {
            Err(ProxyError::Refused(_)) if refused.replay.can_resend() => Err(refused),
            Err(ProxyError::BadGateway(_)) if first && refused.replay.may_resend_after_break() => {
                Err(refused)
            }
            response => Ok(Forwarded {
                response,
                upstream: started.elapsed(),
                uploaded,
            }),
        }
    }

    /// Sends a request to an endpoint of `set`, each attempt's outcome teaching the set
    /// (latency, ejection), and retries on another endpoint what the policy allows and
    /// can be sent again: a connection that failed before the request went out always;
    /// a retried status for idempotent methods, or when the body came back unread. Each
    /// retry is taken from the rule's budget, and waits its backoff first.
    async fn balanced(
        &self,
        req: Request<Incoming>,
        to: &Forward<'_>,
        set: &Arc<EndpointSet>,
        retry: Option<&RetryPolicy>,
        timeout: Duration,
    ) -> (Result<Response<Body>, ProxyError>, Option<Arc<AtomicU64>>) {
        let Some(mut picked) = set.pick(&[]) else {
            return (Err(ProxyError::NoBackend), None);
        };
        let idempotent = idempotent(req.method());
        let path = retry.map(|_| {
            req.uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned()
        });
        let unsent: Option<Unsent> = retry.map(|_| Arc::default());
        let mut prepared = match prepare(req, to, picked.upstream(), unsent.clone()) {
            Ok(prepared) => prepared,
            Err(e) => return (Err(e), None),
        };
        let retry = retry.filter(|r| r.attempts > 0 && prepared.upgrade.is_none());
        if let Some(policy) = retry {
            policy.budget.deposit();
        }
        let replay = retry.map(|_| Replay {
            method: prepared.request.method().clone(),
            headers: prepared.request.headers().clone(),
            path: path.unwrap_or_default(),
            body: prepared
                .progress
                .is_some()
                .then(|| unsent.unwrap_or_default()),
        });
        let mut tried = Vec::new();
        let mut attempt = 0;
        loop {
            let uploaded = prepared.progress.as_ref().map(|p| p.received.clone());
            let index = picked.index();
            let sent_at = Instant::now();
            let result = self.send(prepared, to.max_body, timeout).await;
            let latency = sent_at.elapsed();
            match &result {
                Ok(response) => picked.finish(Outcome::response(response.status(), latency)),
                Err(ProxyError::Unreachable(_) | ProxyError::Refused(_)) => {
                    picked.finish(Outcome::ConnectFailure)
                }
                Err(ProxyError::BadGateway(_) | ProxyError::GatewayTimeout) => {
                    picked.finish(Outcome::Failure5xx { latency })
                }
                // The client's doing (a body too large or broken): not the endpoint's.
                Err(_) => drop(picked),
            }
            let (Some(policy), Some(replay)) = (retry, &replay) else {
                return (result, uploaded);
            };
            let status = match &result {
                Ok(response) => response.status(),
                Err(e) => e.status(),
            };
            let retryable = match &result {
                Err(ProxyError::Unreachable(_) | ProxyError::Refused(_)) => true,
                _ => policy.codes.contains(&status) && (idempotent || replay.body.is_some()),
            };
            if !retryable || attempt >= policy.attempts || !replay.can_resend() {
                return (result, uploaded);
            }
            if !policy.budget.withdraw() {
                tracing::debug!("retry budget spent: not retried");
                return (result, uploaded);
            }
            attempt += 1;
            tried.push(index);
            tokio::time::sleep(policy.backoff * 2u32.saturating_pow(attempt - 1)).await;
            let Some(next) = set.pick(&tried).or_else(|| set.pick(&[])) else {
                return (result, uploaded);
            };
            picked = next;
            prepared = match replay.prepare(picked.upstream(), to.max_body) {
                Some(prepared) => prepared,
                None => return (result, uploaded),
            };
        }
    }

    async fn send(
        &self,
        prepared: Prepared,
        max_body: u64,
        timeout: Duration,
    ) -> Result<Response<Body>, ProxyError> {
        let Prepared {
            request,
            progress,
            mut upgrade,
        } = prepared;
        self.send_keeping(request, progress, &mut upgrade, max_body, timeout)
            .await
    }

    /// [`Forwarder::send`], taking the client's side of an upgrade only when the
    /// upstream accepts it.
    async fn send_keeping(
        &self,
        request: Request<Body>,
        progress: Option<Progress>,
        upgrade: &mut Option<(HeaderValue, OnUpgrade)>,
        max_body: u64,
        timeout: Duration,
    ) -> Result<Response<Body>, ProxyError> {
        let sent = self.client.request(request);
        let result = match progress {
            // No body to wait for (GET and the like): only the response timeout applies.
            None => tokio::time::timeout(timeout, sent)
                .await
                .map_err(|_| ProxyError::GatewayTimeout)?,
            Some(progress) => after_upload(sent, progress, timeout).await?,
        };
        let mut response = result.map_err(|e| classify(&e, max_body))?;

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some((protocol, client_upgrade)) = upgrade.take() else {
                return Err(ProxyError::BadGateway(
                    "101 to a request that asked for no upgrade".into(),
                ));
            };
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            self.spawn_tunnel(client_upgrade, upstream_upgrade);
            headers::remove_hop_by_hop(response.headers_mut());
            headers::set_upgrade(response.headers_mut(), protocol);
            return Ok(response.map(|_| full("")));
        }
        // The body was framed by its Transfer-Encoding; a Content-Length beside it is
        // wrong by definition and must not be passed on (RFC 9112 §6.3), or the client
        // reads a complete-looking part.
        if response.headers().contains_key(header::TRANSFER_ENCODING) {
            response.headers_mut().remove(header::CONTENT_LENGTH);
        }
        headers::remove_hop_by_hop(response.headers_mut());
        let idle = self.response_timeout;
        Ok(response.map(|body| ResponseBody::new(body, idle).boxed()))
    }

    /// Sends a copy of a request's head (its body is not copied) to `to`, and forgets
    /// it: the answer is dropped, a failure only logged at debug level. At most
    /// [`MIRRORS_IN_FLIGHT`] at once; beyond that, copies are skipped, so a slow mirror
    /// never holds the proxy's memory or file descriptors.
    pub(crate) fn mirror<B>(
        &self,
        req: &Request<B>,
        to: &Upstream,
        client: &HeaderValue,
        proto: Scheme,
    ) {
        let Ok(permit) = self.mirrors.clone().try_acquire_owned() else {
            return tracing::debug!("mirror skipped: too many in flight");
        };
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let Ok(uri) = to.uri_for(path) else { return };
        let mut copy = Request::new(full(""));
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = uri;
        *copy.headers_mut() = req.headers().clone();
        let headers = copy.headers_mut();
        headers::remove_hop_by_hop(headers);
        headers.remove(header::CONTENT_LENGTH);
        headers::set_forwarding(headers, client, proto);
        let (client, timeout) = (self.client.clone(), self.response_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, client.request(copy)).await {
                Ok(Ok(response)) => drop(response.into_body().collect().await),
                Ok(Err(e)) => tracing::debug!(error = %e, "mirror failed"),
                Err(_) => tracing::debug!("mirror timed out"),
            }
        });
    }

    fn spawn_tunnel(&self, client: OnUpgrade, upstream: OnUpgrade) {
        let closed = self.close_tunnels.clone();
        self.tunnels.spawn(async move {
            let (client, upstream) = match tokio::try_join!(client, upstream) {
                Ok(pair) => pair,
                Err(e) => return tracing::debug!(error = %e, "upgrade failed"),
            };
            let _open = crate::telemetry::tunnel();
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            tokio::select! {
                result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "tunnel closed with an error");
                    }
                }
                _ = closed.cancelled() => {}
            }
        });
    }

    /// Waits up to `grace` for open tunnels to end, then closes the rest.
    pub(crate) async fn close_tunnels(&self, grace: Duration) {
        self.tunnels.close();
        if tokio::time::timeout(grace, self.tunnels.wait())
            .await
            .is_err()
        {
            self.close_tunnels.cancel();
            self.tunnels.wait().await;
        }
    }
}

/// Waits for the response of a request with a body. The response timeout runs from the
/// moment the whole body is sent (or the upstream answers early), so slow uploads are not
/// taken for slow upstreams; an upload that stalls for as long is cut (nginx
/// `client_body_timeout`).
async fn after_upload<F: Future>(
    sent: F,
    mut progress: Progress,
    timeout: Duration,
) -> Result<F::Output, ProxyError> {
    tokio::pin!(sent);
    let mut last_received = 0;
    loop {
        tokio::select! {
            response = &mut sent => return Ok(response),
            _ = &mut progress.sent => break,
            _ = tokio::time::sleep(timeout) => {
                let received = progress.received.load(Ordering::Relaxed);
                if received == last_received {
                    return Err(ProxyError::ClientTimeout);
                }
                last_received = received;
            }
        }
    }
    tokio::time::timeout(timeout, sent)
        .await
        .map_err(|_| ProxyError::GatewayTimeout)
}

/// Methods that may be sent twice (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// What a retry needs: the request head as prepared, and the body while it is unread.
struct Replay {
    method: Method,
    headers: http::HeaderMap,
    path: String,
    /// For a request with a body: where an attempt that did not read it gives it back.
    body: Option<Unsent>,
}

impl Replay {
    /// Whether the request can go out again: it has no body, or its body came back.
    fn can_resend(&self) -> bool {
        self.body.as_ref().is_none_or(|slot| lock(slot).is_some())
    }

    /// Whether the request may go out again after its connection broke: it is
    /// idempotent, or it has a body not one byte of which was read, so the upstream
    /// cannot have received it whole (and cannot have acted on it).
    fn may_resend_after_break(&self) -> bool {
        let unsent = |slot: &Unsent| lock(slot).is_some();
        match &self.body {
            Some(slot) => unsent(slot),
            None => idempotent(&self.method),
        }
    }

    /// The request again, for `upstream`; `None` when its body was read after all.
    fn prepare(&self, upstream: &Upstream, max_body: u64) -> Option<Prepared> {
        let mut request = Request::new(full(""));
        let mut progress = None;
        if let Some(slot) = &self.body {
            let body = lock(slot).take()?;
            let (body, followed) = RequestBody::new(body, max_body);
            *request.body_mut() = body.give_back_to(slot.clone()).boxed();
            progress = followed;
        }
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = upstream.uri_for(&self.path).ok()?;
        *request.headers_mut() = self.headers.clone();
        Some(Prepared {
            request,
            progress,
            upgrade: None,
        })
    }
}

/// The request as its upstream gets it: hop-by-hop headers dropped, forwarding ones set,
/// the body held to the limit, and an upgrade's client side taken.
fn prepare(
    mut req: Request<Incoming>,
    to: &Forward<'_>,
    upstream: &Upstream,
    unsent: Option<Unsent>,
) -> Result<Prepared, ProxyError> {
    let upgrade = match req.version() {
        Version::HTTP_11 => headers::upgrade_protocol(req.headers()),
        _ => None,
    };
    let upgrade = upgrade.map(|protocol| (protocol, hyper::upgrade::on(&mut req)));
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri = upstream
        .uri_for(path)
        .map_err(|_| ProxyError::BadRequest("The request URI cannot be forwarded."))?;

    let (mut parts, body) = req.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    if let Some((protocol, _)) = &upgrade {
        headers::set_upgrade(&mut parts.headers, protocol.clone());
    }
    headers::set_forwarding(&mut parts.headers, to.client, to.proto);
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let (mut body, progress) = RequestBody::new(body, to.max_body);
    if let Some(slot) = unsent {
        body = body.give_back_to(slot);
    }
    Ok(Prepared {
        request: Request::from_parts(parts, body.boxed()),
        progress,
        upgrade,
    })
}

/// Maps a client error to the status nginx would give: connect timeout 504, body over
/// the limit 413, a request body the client broke 400 (nginx: "client sent invalid
/// chunked body"), anything else (refused, unresolvable, reset) 502. A refused
/// connection is told apart: that is how a sleeping backend shows.
fn classify(error: &PoolError, max_body: u64) -> ProxyError {
    let mut detail = Vec::new();
    let mut refused = false;
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<TooLarge>() {
            return ProxyError::BodyTooLarge(max_body);
        }
        if e.is::<BadBody>() {
            return ProxyError::BadRequest("The request body is malformed or incomplete.");
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return ProxyError::GatewayTimeout;
        }
        refused |= e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        detail.push(e.to_string());
        source = e.source();
    }
    // Refused, unresolvable, denied: the request never went out, so it may be retried.
    if error.is_connect() {
        return match refused {
            true => ProxyError::Refused(detail.join(": ")),
            false => ProxyError::Unreachable(detail.join(": ")),
        };
    }
    ProxyError::BadGateway(detail.join(": "))
}

/// TLS to upstreams with the process's one provider (aws-lc-rs); `verify` against the system's roots.
fn tls_config(verify: bool) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    if !verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth());
    }
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "could not load a system root certificate");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system root certificates for https targets");
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Accepts any upstream certificate (`CERYX_UPSTREAM_TLS_VERIFY=false`), as Ceryx did;
/// handshake signatures are still checked.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
