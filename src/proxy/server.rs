//! The listeners: accept connections (plain, or TLS with the certificate SNI asks for),
//! serve HTTP/1.1 (with upgrades) and HTTP/2 on the same port, and shut down gracefully.

use super::Proxy;
use super::tls::Certificates;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::server::Acceptor;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Largest request head accepted; longer heads get 431 (nginx allows 4 × 8 KiB).
const MAX_HEADER_BYTES: usize = 64 * 1024;

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

async fn serve_on(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<Arc<Certificates>>,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(proxy.args.client_header_timeout)
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
        let _ = stream.set_nodelay(true);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let service = {
            let proxy = proxy.clone();
            service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy.handle(req, peer, scheme).await) }
            })
        };
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        let header_timeout = proxy.args.client_header_timeout;
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
    let grace = proxy.args.shutdown_timeout;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown timeout reached; closing open connections");
    }
    proxy.close_tunnels().await;
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
