//! The proxy's bodies: the one type every response carries; the request body on its way
//! upstream, streamed, held to the size limit, and telling the forwarder when it has been
//! sent in full (the response timeout starts only then, so a long upload is not cut off
//! as a slow upstream); and the upstream's response body, cut when it stalls.

use crate::sync::lock;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::time::Sleep;

/// The body type of every response the proxy sends.
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Any error a body can carry.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A complete body.
pub(crate) fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// The body grew past `CERYX_MAX_REQUEST_BODY_SIZE`.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than the limit")]
pub(crate) struct TooLarge;

/// The client broke its request body: invalid chunked framing, or the connection cut
/// before the body's end. The client's error (400), not the upstream's.
#[derive(Debug, thiserror::Error)]
#[error("request body unreadable: {0}")]
pub(crate) struct BadBody(#[source] hyper::Error);

/// A client's request body, forwarded as it arrives.
pub(crate) struct RequestBody {
    /// `None` once given back.
    inner: Option<Incoming>,
    /// Bytes still allowed; `None` for no limit.
    remaining: Option<u64>,
    /// Set while the body is being followed: where to report.
    report: Option<(oneshot::Sender<()>, Arc<AtomicU64>)>,
    /// Where the body goes back if it is dropped before any of it was read (the
    /// upstream could not be reached), so that it can be sent to another.
    give_back: Option<Unsent>,
}

/// A request body given back unread by an attempt that never sent it.
pub(crate) type Unsent = Arc<std::sync::Mutex<Option<Incoming>>>;

/// How the forwarder follows a body's upload.
pub(crate) struct Progress {
    /// Completes once the body has been read to its end (or dropped).
    pub(crate) sent: oneshot::Receiver<()>,
    /// Bytes received from the client so far.
    pub(crate) received: Arc<AtomicU64>,
}

impl RequestBody {
    /// Wraps `inner`, allowing `limit` bytes (0: any number). The progress is `None`
    /// when there is no body at all (nothing to follow, and it may never be polled).
    pub(crate) fn new(inner: Incoming, limit: u64) -> (RequestBody, Option<Progress>) {
        let remaining = (limit > 0).then_some(limit);
        if inner.is_end_stream() {
            let body = RequestBody {
                inner: Some(inner),
                remaining,
                report: None,
                give_back: None,
            };
            return (body, None);
        }
        let (tx, rx) = oneshot::channel();
        let received = Arc::new(AtomicU64::new(0));
        let body = RequestBody {
            inner: Some(inner),
            remaining,
            report: Some((tx, received.clone())),
            give_back: None,
        };
        (body, Some(Progress { sent: rx, received }))
    }

    /// Gives the body back into `slot` if it is dropped before a byte of it was read.
    pub(crate) fn give_back_to(mut self, slot: Unsent) -> RequestBody {
        self.give_back = Some(slot);
        self
    }

    fn finish(&mut self) {
        if let Some((sent, _)) = self.report.take() {
            let _ = sent.send(());
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                this.finish();
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(BadBody(e).into()))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        // Read: it can no longer be sent anywhere else.
        this.give_back = None;
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if let Some((_, received)) = &this.report {
                received.fetch_add(len, Ordering::Relaxed);
            }
            if let Some(remaining) = &mut this.remaining {
                match remaining.checked_sub(len) {
                    Some(left) => *remaining = left,
                    None => return Poll::Ready(Some(Err(TooLarge.into()))),
                }
            }
        }
        if this.inner.as_ref().is_none_or(Incoming::is_end_stream) {
            this.finish();
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if let Some(slot) = self.give_back.take() {
            *lock(&slot) = self.inner.take();
        }
    }
}

/// The upstream sent nothing for the response timeout in the middle of its body.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for {0:?} in the middle of its response body")]
pub(crate) struct UpstreamStalled(Duration);

/// An upstream's response body, cut when no byte arrives for `idle` (nginx's
/// `proxy_read_timeout`, which runs between two reads). The error aborts the client's
/// response (HTTP/1: the connection closes before the body's end; HTTP/2: the stream is
/// reset), so it never looks complete, and dropping the upstream body mid-way drops its
/// connection.
pub(crate) struct ResponseBody<B> {
    inner: B,
    idle: Duration,
    /// Armed the first time a read finds nothing; a timer only for bodies that wait.
    deadline: Option<Pin<Box<Sleep>>>,
    /// A frame arrived since the deadline was last set.
    progressed: bool,
}

impl<B> ResponseBody<B> {
    /// Wraps an upstream's `inner` body, allowing `idle` between two of its frames.
    pub(crate) fn new(inner: B, idle: Duration) -> ResponseBody<B> {
        ResponseBody {
            inner,
            idle,
            deadline: None,
            progressed: false,
        }
    }
}

impl<B> http_body::Body for ResponseBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.progressed = true;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = match &mut this.deadline {
            Some(deadline) => {
                if this.progressed {
                    deadline.as_mut().reset((Instant::now() + this.idle).into());
                }
                deadline
            }
            None => this
                .deadline
                .insert(Box::pin(tokio::time::sleep(this.idle))),
        };
        this.progressed = false;
        if deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        tracing::warn!(idle = ?this.idle, "upstream stalled in its response body: response aborted");
        Poll::Ready(Some(Err(UpstreamStalled(this.idle).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
