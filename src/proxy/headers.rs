//! Header rewriting between client and upstream: hop-by-hop removal (RFC 9110 §7.6.1),
//! upgrades, and the forwarding headers Ceryx sent.

use super::scheme::Scheme;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// Headers that describe one connection, never forwarded (besides those `Connection` names).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// End-to-end fields the proxy routes, frames or forwards by: a `Connection` header that
/// nominates one of them (which RFC 9110 §7.6.1 forbids a sender to do) does not remove
/// it. nginx ignores every nomination, and in Envoy `Host` is `:authority`, which no
/// nomination can reach; both pass these fields on. Without this, `Connection: Host`
/// sent the upstream the proxy's own address as its Host, and `Connection:
/// X-Forwarded-For` erased the chain of proxies in front of us.
const NEVER_NOMINATED: [HeaderName; 9] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::FORWARDED,
    header::VIA,
    HeaderName::from_static("cdn-loop"),
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-real-ip"),
];

/// RFC 8586's loop-detection field: every proxy a request passes appends its token.
pub(crate) const CDN_LOOP: HeaderName = HeaderName::from_static("cdn-loop");

/// This process's `CDN-Loop` token, `ceryx-` and 64 random bits: unique to the process,
/// so a route through another Ceryx is no loop, while one back to us is caught at the
/// first return (through other replicas, at the first return to any of them).
pub(crate) fn loop_marker() -> HeaderValue {
    use std::hash::{BuildHasher, Hasher};
    let random = std::hash::RandomState::new().build_hasher().finish();
    HeaderValue::from_str(&format!("ceryx-{random:016x}"))
        .unwrap_or(HeaderValue::from_static("ceryx"))
}

/// Whether `marker` is among the `CDN-Loop` tokens (RFC 8586: `cdn-id` then optional
/// parameters after `;`).
pub(crate) fn has_looped(headers: &HeaderMap, marker: &HeaderValue) -> bool {
    headers.get_all(CDN_LOOP).iter().any(|value| {
        value.as_bytes().split(|b| *b == b',').any(|info| {
            let id = info.split(|b| *b == b';').next().unwrap_or_default();
            id.trim_ascii() == marker.as_bytes()
        })
    })
}

/// Whether a header value's comma-separated token list holds `token` (any case).
fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

/// The protocol a client asks to upgrade to, if it asks (`Connection: upgrade` plus
/// `Upgrade: <protocol>`).
pub(crate) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| has_token(v, "upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Removes hop-by-hop headers: first those named in `Connection` (but the
/// [`NEVER_NOMINATED`] ones), then the fixed set. `TE: trailers` is kept, since it is
/// end-to-end in meaning (gRPC needs it).
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|name| !NEVER_NOMINATED.contains(name))
        .collect();
    let trailers = headers
        .get_all(header::TE)
        .iter()
        .any(|v| has_token(v, "trailers"));
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Marks a request or response as an upgrade to `protocol`, after hop-by-hop removal.
pub(crate) fn set_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Sets what Ceryx told upstreams about the client: `X-Forwarded-For` (appended),
/// `X-Real-IP` and `X-Forwarded-Proto`.
pub(crate) fn set_forwarding(headers: &mut HeaderMap, client: IpAddr, proto: Scheme) {
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    let client = client.to_canonical().to_string();
    let mut forwarded_for = String::new();
    for earlier in headers.get_all(&XFF).iter().filter_map(|v| v.to_str().ok()) {
        forwarded_for.push_str(earlier);
        forwarded_for.push_str(", ");
    }
    forwarded_for.push_str(&client);
    // Both are made of visible ASCII only, so they are valid header values.
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(XFF, value);
    }
    if let Ok(value) = HeaderValue::from_str(&client) {
        headers.insert(HeaderName::from_static("x-real-ip"), value);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(proto.as_str()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn connection_named_headers_go_first() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers, deflate"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn host_and_forwarding_headers_cannot_be_nominated() {
        let mut h = headers(&[
            ("connection", "Host, x-forwarded-for, content-length, X-Hop"),
            ("host", "a.test"),
            ("x-forwarded-for", "1.1.1.1"),
            ("content-length", "5"),
            ("x-hop", "1"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 3, "{h:?}");
        assert_eq!(h["host"], "a.test");
        assert!(h.get("x-hop").is_none());
    }

    #[test]
    fn upgrade_needs_the_connection_token() {
        let firefox = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(upgrade_protocol(&firefox).unwrap(), "websocket");
        assert!(upgrade_protocol(&headers(&[("upgrade", "websocket")])).is_none());
    }

    #[test]
    fn only_our_own_loop_token_is_a_loop() {
        let ours = loop_marker();
        assert_ne!(ours, loop_marker(), "one token per process start");
        let mut h = headers(&[("cdn-loop", "cdn-a, other-ceryx; v=1")]);
        assert!(!has_looped(&h, &ours));
        h.append(CDN_LOOP, ours.clone());
        assert!(has_looped(&h, &ours));
        let joined = format!("foo, {}; x=y", ours.to_str().unwrap());
        let h = HeaderMap::from_iter([(CDN_LOOP, HeaderValue::from_str(&joined).unwrap())]);
        assert!(has_looped(&h, &ours));
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        set_forwarding(&mut h, "::ffff:10.0.0.1".parse().unwrap(), Scheme::Http);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.1");
        assert_eq!(h["x-real-ip"], "10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
    }
}
