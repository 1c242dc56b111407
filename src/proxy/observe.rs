//! What the proxy tells about each request: its `X-Request-Id`, its metrics and its
//! access log line, both taken when the response's last byte is sent (or the client
//! goes away), so latency and byte counts are the whole exchange's.

use super::access_log::{AccessLog, Line};
use super::body::{Body, BoxError};
use super::cache::Resolved;
use crate::telemetry::{self, NO_ROUTE};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri, Version, header};
use http_body::{Frame, SizeHint};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The request id header, passed upstream and logged.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// One request on its way through the proxy: what the phases learn about it, written by
/// each as it ends ([`start`](Exchange::start), [`routed`](Exchange::routed),
/// [`forwarded`](Exchange::forwarded)) and read once, when the response's body ends.
pub(crate) struct Exchange {
    started: Instant,
    client: IpAddr,
    method: Method,
    uri: Uri,
    version: Version,
    host: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    request_id: HeaderValue,
    /// The route that answered, once resolved.
    route: Option<Arc<Resolved>>,
    /// Time to the upstream's response head, once forwarded.
    upstream: Option<Duration>,
    /// Request body bytes received, for forwarded requests with a body.
    uploaded: Option<Arc<AtomicU64>>,
}

impl Exchange {
    /// Starts following `req`, giving it an `X-Request-Id` unless it has a usable one.
    pub(crate) fn start<B>(req: &mut Request<B>, client: IpAddr) -> Exchange {
        let headers = req.headers_mut();
        let request_id = match headers.get(&REQUEST_ID) {
            Some(id) if usable(id) => id.clone(),
            _ => {
                let id = new_request_id();
                headers.insert(REQUEST_ID, id.clone());
                id
            }
        };
        Exchange {
            started: Instant::now(),
            client,
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            host: req.headers().get(header::HOST).cloned(),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            request_id,
            route: None,
            upstream: None,
            uploaded: None,
        }
    }

    /// The request's method, as received.
    pub(crate) fn method(&self) -> &Method {
        &self.method
    }

    /// The request's URI, as received.
    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The routing phase found `route` for the host.
    pub(crate) fn routed(&mut self, route: Arc<Resolved>) {
        self.route = Some(route);
    }

    /// The forwarding phase measured `upstream` to the response head, and counts the
    /// request body's bytes in `uploaded` (if it has one).
    pub(crate) fn forwarded(&mut self, upstream: Duration, uploaded: Option<Arc<AtomicU64>>) {
        self.upstream = Some(upstream);
        self.uploaded = uploaded;
    }

    /// The response, whose body reports the exchange when it ends.
    pub(crate) fn finish(self, response: Response<Body>, log: &AccessLog) -> Response<Observed> {
        let status = response.status();
        response.map(|inner| Observed {
            inner,
            sent: 0,
            report: Some((self, status, log.clone())),
        })
    }

    fn report(self, status: http::StatusCode, bytes_out: u64, log: &AccessLog) {
        let duration = self.started.elapsed();
        let bytes_in = self
            .uploaded
            .as_ref()
            .map_or(0, |n| n.load(Ordering::Relaxed));
        let route = self.route.as_deref().map(|r| r.route.source.as_str());
        let request = telemetry::Request {
            route: route.unwrap_or(NO_ROUTE),
            method: &self.method,
            status,
            duration,
            upstream: self.upstream,
            bytes_in,
            bytes_out,
        };
        match &self.route {
            Some(resolved) => resolved.metrics().record(&request),
            None => telemetry::request(&request),
        }
        if !log.enabled() {
            return;
        }
        let host = text(&self.host).or_else(|| self.uri.authority().map(|a| a.as_str()));
        log.write(&Line {
            time: jiff::Timestamp::now(),
            request_id: self.request_id.to_str().unwrap_or(""),
            client: self.client,
            host: host.unwrap_or(""),
            method: self.method.as_str(),
            path: self.uri.path_and_query().map_or("/", |p| p.as_str()),
            protocol: version_name(self.version),
            status: status.as_u16(),
            route,
            upstream: self.route.as_deref().map(|r| r.route.target.as_str()),
            upstream_latency_ms: self.upstream.map(millis),
            latency_ms: millis(duration),
            bytes_in,
            bytes_out,
            user_agent: text(&self.user_agent),
        });
    }
}

fn text(value: &Option<HeaderValue>) -> Option<&str> {
    value.as_ref().and_then(|v| v.to_str().ok())
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP",
    }
}

/// A client's id is kept if it is printable and not absurdly long.
fn usable(id: &HeaderValue) -> bool {
    (1..=200).contains(&id.len()) && id.as_bytes().iter().all(|b| b.is_ascii_graphic())
}

/// 32 hex digits, like nginx's `$request_id`: a random per-process half and a counter,
/// so ids are unique across replicas without a random draw per request.
fn new_request_id() -> HeaderValue {
    static SEED: LazyLock<u64> = LazyLock::new(|| RandomState::new().hash_one(std::process::id()));
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 32];
    for (i, digit) in id.iter_mut().enumerate() {
        let word = if i < 16 { *SEED } else { n };
        *digit = HEX[((word >> (60 - 4 * (i % 16))) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
}

/// The body of every response the proxy sends: the answer's own body, counted as it is
/// sent, reporting the exchange at its end (wrapped, not boxed again).
pub(crate) struct Observed {
    inner: Body,
    sent: u64,
    report: Option<(Exchange, http::StatusCode, AccessLog)>,
}

impl Observed {
    fn report(&mut self) {
        if let Some((exchange, status, log)) = self.report.take() {
            exchange.report(status, self.sent, &log);
        }
    }
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.report();
                }
            }
            Poll::Ready(None) => self.report(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    /// A client that left early, or a body never polled (HEAD, 304): report anyway.
    fn drop(&mut self) {
        self.report();
    }
}
