//! The listeners: accept connections (plain, or TLS with the certificate SNI asks for),
//! serve HTTP/1.1 (with upgrades) and HTTP/2 on the same port, within the connection
//! limit and the header timeout, and shut down gracefully.

use super::header_deadline::HeaderDeadline;
use super::limit::Limit;
use super::observe::Observed;
use super::scheme::Scheme;
use super::tls::Certificates;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::server::Acceptor;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Largest request head accepted; longer heads get 431 (nginx allows 4 × 8 KiB).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What a listener serves: each request, by the peer and scheme it came with.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Answers one request that arrived from `peer` on a listener of scheme `listener`.
    fn handle(
        &self,
        req: Request<Incoming>,
        peer: &Peer,
        listener: Scheme,
    ) -> impl Future<Output = Response<Observed>> + Send;
}

/// The client end of a connection.
#[derive(Clone)]
pub(crate) struct Peer {
    /// Its address.
    pub(crate) addr: SocketAddr,
    /// Its IP as the forwarding headers carry it, made once for all its requests.
    pub(crate) ip: HeaderValue,
}

/// How long a listener's connections may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// For a client's request headers, and for its first byte or TLS handshake.
    pub(crate) header: Duration,
    /// For in-flight requests once shutdown begins.
    pub(crate) shutdown: Duration,
}

/// Serves `listener` (HTTPS with `tls`) until `shutdown` is cancelled, then stops
/// accepting and lets in-flight requests finish, bounded by the shutdown timeout. At
/// most as many connections as `limit` allows (shared with the proxy's other listener)
/// are held at once; more wait in the listen backlog.
pub(crate) async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    tls: Option<Arc<Certificates>>,
    timeouts: Timeouts,
    limit: Option<Arc<Limit>>,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Over the limit, this connection waits for a permit and the next ones wait in
        // the kernel's queue: the listener accepts no more until it has one.
        let permit = match &limit {
            None => None,
            Some(limit) => tokio::select! {
                permit = limit.acquire() => permit,
                _ = shutdown.cancelled() => break,
            },
        };
        let _ = stream.set_nodelay(true);
        let scheme = if tls.is_some() {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let service = {
            let handler = handler.clone();
            let peer = Peer {
                addr: peer,
                ip: super::headers::client_ip(peer.ip()),
            };
            service_fn(move |req| {
                let (handler, peer) = (handler.clone(), peer.clone());
                async move { Ok::<_, Infallible>(handler.handle(req, &peer, scheme).await) }
            })
        };
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        let header_timeout = timeouts.header;
        tokio::spawn(async move {
            let _open = crate::telemetry::connection();
            // HTTP/1's header timeout starts once the protocol is detected, that is after
            // the first bytes: a client that sends nothing at all (or never finishes its
            // TLS handshake) is cut here instead.
            let served = match tls {
                None => {
                    let mut first = [0u8; 1];
                    if !matches!(
                        tokio::time::timeout(header_timeout, stream.peek(&mut first)).await,
                        Ok(Ok(1))
                    ) {
                        return;
                    }
                    // Protocol detection and HTTP/2 header blocks: hyper times neither.
                    let stream = HeaderDeadline::new(stream, header_timeout, permit);
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(connection.into_owned()).await
                }
                Some(certificates) => {
                    let handshake = handshake(stream, &certificates);
                    let stream = match tokio::time::timeout(header_timeout, handshake).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            return tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => return,
                    };
                    let stream = HeaderDeadline::new(stream, header_timeout, permit);
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(connection.into_owned()).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    if tokio::time::timeout(timeouts.shutdown, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown timeout reached; closing open connections");
    }
}

/// Reads the ClientHello, looks up the certificate its SNI asks for, and completes the
/// handshake with it.
async fn handshake(
    stream: TcpStream,
    certificates: &Certificates,
) -> std::io::Result<TlsStream<TcpStream>> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
    let sni = start.client_hello().server_name().map(str::to_owned);
    let config = certificates.config_for(sni.as_deref()).await;
    start.into_stream(config).await
}
