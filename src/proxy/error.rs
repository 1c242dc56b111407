//! What the proxy answers when it cannot forward: a status and a small page, HTML or
//! JSON (for clients that ask for `application/json`).

use super::body::{Body, full};
use http::{Response, StatusCode, header};

/// Why a request was not forwarded; each maps to one status code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// Missing or malformed `Host`, or a request URI that cannot be forwarded.
    #[error("{0}")]
    BadRequest(&'static str),
    /// No route for the host (Ceryx's 503).
    #[error("no route for {0}")]
    NoRoute(String),
    /// The route store is unreachable and nothing is known about the host.
    #[error("the route store is unavailable")]
    StoreUnavailable,
    /// The request body exceeds `CERYX_MAX_REQUEST_BODY_SIZE`.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The client stopped sending its request body.
    #[error("the request body stalled")]
    ClientTimeout,
    /// The upstream broke the exchange.
    #[error("upstream unavailable: {0}")]
    BadGateway(String),
    /// No connection to the upstream: refused, unresolvable or denied. The request
    /// never went out.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// The upstream refused the connection (nothing listens: it may be asleep). The
    /// request never went out.
    #[error("upstream refused the connection: {0}")]
    Refused(String),
    /// The route's backend was woken but did not accept a connection in time.
    #[error("the service {0} did not start in time")]
    WakeTimeout(String),
    /// The upstream did not connect or answer in time.
    #[error("upstream timed out")]
    GatewayTimeout,
    /// The matching rule has no backend to send to (every weight 0, or no usable
    /// endpoint): 500, as the Gateway API says.
    #[error("no backend is available for this request")]
    NoBackend,
    /// The rule's backend is a Kubernetes Service with no ready endpoint.
    #[error("Service {0} has no ready endpoints")]
    NoEndpoints(String),
    /// The host is served by rules and none takes the request's path.
    #[error("no rule of this host takes the path")]
    NoRule,
    /// The request came back to this proxy: its route points at the proxy itself.
    #[error("the request looped back to this proxy")]
    LoopDetected,
}

impl ProxyError {
    /// The status code the client gets.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::StoreUnavailable => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::BadGateway(_) | ProxyError::Unreachable(_) | ProxyError::Refused(_) => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::GatewayTimeout | ProxyError::WakeTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::LoopDetected => StatusCode::LOOP_DETECTED,
            ProxyError::NoBackend => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::NoEndpoints(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::NoRule => StatusCode::NOT_FOUND,
        }
    }

    /// What the client is told; upstream error details stay in the log.
    fn public_message(&self) -> String {
        match self {
            ProxyError::BadGateway(_) | ProxyError::Unreachable(_) | ProxyError::Refused(_) => {
                "The upstream server could not be reached.".into()
            }
            other => {
                let mut message = other.to_string();
                if let Some(first) = message.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                message.push('.');
                message
            }
        }
    }

    /// The error page, JSON when `json` (the client accepts `application/json`).
    pub(crate) fn into_response(self, json: bool) -> Response<Body> {
        let status = self.status();
        let message = self.public_message();
        let (content_type, body) = if json {
            let body = serde_json::json!({"status": status.as_u16(), "error": message});
            ("application/json", body.to_string())
        } else {
            let title = format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
            let body = format!(
                "<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n<body><h1>{title}</h1>\n<p>{}</p>\n<hr><p>ceryx</p></body></html>\n",
                escape_html(&message)
            );
            ("text/html; charset=utf-8", body)
        };
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(content_type),
        );
        response
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether the client prefers a JSON error body.
pub(crate) fn wants_json(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"))
}
