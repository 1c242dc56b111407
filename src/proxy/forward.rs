//! Forwarding to upstreams: one pooled keep-alive client per process, streaming bodies
//! both ways, and upgraded connections (WebSocket and the like) tunnelled.

use super::Config;
use super::body::{BadBody, Body, Progress, RequestBody, ResponseBody, TooLarge, full};
use super::connect::GuardedConnector;
use super::error::ProxyError;
use super::headers;
use super::scheme::Scheme;
use crate::route::Upstream;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::error::Error as StdError;
use std::future::Future;
use std::net::IpAddr;
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

/// Per-request facts the forwarder needs besides the request itself.
pub(crate) struct Forward<'a> {
    /// Where the route points.
    pub(crate) upstream: &'a Upstream,
    /// The client's address.
    pub(crate) client_ip: IpAddr,
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

/// A request made ready for its upstream.
struct Prepared {
    request: Request<Body>,
    progress: Option<Progress>,
    /// The protocol asked for and the client's side of the upgrade, for upgrade requests.
    upgrade: Option<(HeaderValue, OnUpgrade)>,
}

/// Sends requests upstream and tunnels upgraded connections.
pub(crate) struct Forwarder {
    client: Client<HttpsConnector<GuardedConnector>, Body>,
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
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector);
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
        let prepared = match prepare(req, &to) {
            Ok(prepared) => prepared,
            Err(e) => {
                return Forwarded {
                    response: Err(e),
                    upstream: started.elapsed(),
                    uploaded: None,
                };
            }
        };
        let uploaded = prepared.progress.as_ref().map(|p| p.received.clone());
        let timeout = to.timeout.unwrap_or(self.response_timeout);
        let response = self.send(prepared, to.max_body, timeout).await;
        Forwarded {
            response,
            upstream: started.elapsed(),
            uploaded,
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
            upgrade,
        } = prepared;
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
            let Some((protocol, client_upgrade)) = upgrade else {
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
        client_ip: IpAddr,
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
        headers::set_forwarding(headers, client_ip, proto);
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

/// The request as its upstream gets it: hop-by-hop headers dropped, forwarding ones set,
/// the body held to the limit, and an upgrade's client side taken.
fn prepare(mut req: Request<Incoming>, to: &Forward<'_>) -> Result<Prepared, ProxyError> {
    let upgrade = match req.version() {
        Version::HTTP_11 => headers::upgrade_protocol(req.headers()),
        _ => None,
    };
    let upgrade = upgrade.map(|protocol| (protocol, hyper::upgrade::on(&mut req)));
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri = to
        .upstream
        .uri_for(path)
        .map_err(|_| ProxyError::BadRequest("The request URI cannot be forwarded."))?;

    let (mut parts, body) = req.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    if let Some((protocol, _)) = &upgrade {
        headers::set_upgrade(&mut parts.headers, protocol.clone());
    }
    headers::set_forwarding(&mut parts.headers, to.client_ip, to.proto);
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let (body, progress) = RequestBody::new(body, to.max_body);
    Ok(Prepared {
        request: Request::from_parts(parts, body.boxed()),
        progress,
        upgrade,
    })
}

/// Maps a client error to the status nginx would give: connect timeout 504, body over
/// the limit 413, a request body the client broke 400 (nginx: "client sent invalid
/// chunked body"), anything else (refused, unresolvable, reset) 502.
fn classify(error: &hyper_util::client::legacy::Error, max_body: u64) -> ProxyError {
    let mut detail = Vec::new();
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
        detail.push(e.to_string());
        source = e.source();
    }
    ProxyError::BadGateway(detail.join(": "))
}

/// TLS to upstreams with the ring provider only; `verify` against the system's roots.
fn tls_config(verify: bool) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
