//! The upload row's upstream: reads every request body to its end and drops it. nginx's
//! `return` answers before the body arrives, which would not show whether a proxy
//! streams the whole upload; this answers 200 only when all of it came through.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// The body each upload carries: 10 MiB.
pub const UPLOAD_BYTES: usize = 10 << 20;

/// Starts the sink on a free port of 127.0.0.1 and returns the port. It runs on a thread
/// of its own: the bench's runtime is blocked while wrk runs.
pub fn start() -> Result<u16, std::io::Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("sink listener");
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(drain)),
                );
            }
        })
    });
    Ok(port)
}

/// Counts the body's bytes as they arrive, keeping none of them.
async fn drain(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let mut body = request.into_body();
    let mut received = 0;
    while let Some(frame) = body.frame().await {
        received += frame?.data_ref().map_or(0, Bytes::len);
    }
    let status = if received == UPLOAD_BYTES {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
    *response.status_mut() = status;
    Ok(response)
}
