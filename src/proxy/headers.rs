//! Header rewriting between client and upstream: hop-by-hop removal (RFC 9110 §7.6.1),
//! upgrades, and the forwarding headers Ceryx sent.

use super::scheme::Scheme;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// Headers that describe one connection, never forwarded (besides those `Connection` names).
static HOP_BY_HOP: [HeaderName; 9] = [
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
static NEVER_NOMINATED: [HeaderName; 9] = [
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
    // One pass over the names, without hashing, finds which of the fixed set are there
    // (most requests carry none; most responses `Connection: keep-alive` alone).
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = hop_by_hop(name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    let mut named = Vec::new();
    for token in headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // Those of the fixed set go anyway.
        .filter(|t| {
            !HOP_BY_HOP
                .iter()
                .any(|h| t.eq_ignore_ascii_case(h.as_str()))
        })
    {
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes())
            && !NEVER_NOMINATED.contains(&name)
        {
            named.push(name);
        }
    }
    let trailers = headers
        .get_all(header::TE)
        .iter()
        .any(|v| has_token(v, "trailers"));
    let fixed = HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p);
    for name in named.iter().chain(fixed.map(|(name, _)| name)) {
        headers.remove(name);
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The place of `name` in [`HOP_BY_HOP`], if it is there: one `match` of its text.
fn hop_by_hop(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "te" => 3,
        "trailer" => 4,
        "transfer-encoding" => 5,
        "upgrade" => 6,
        "proxy-authorization" => 7,
        "proxy-authenticate" => 8,
        _ => return None,
    })
}

/// Marks a request or response as an upgrade to `protocol`, after hop-by-hop removal.
pub(crate) fn set_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Sets what Ceryx told upstreams about the client, whose address is `client` (see
/// [`client_ip`]): `X-Forwarded-For` (appended), `X-Real-IP` and `X-Forwarded-Proto`.
pub(crate) fn set_forwarding(headers: &mut HeaderMap, client: &HeaderValue, proto: Scheme) {
    // Consts, so that each name is checked once, at compile time.
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
    const PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    let mut earlier = headers.get_all(&XFF).iter().filter_map(|v| v.to_str().ok());
    let forwarded_for = match earlier.next() {
        None => client.clone(),
        Some(first) => {
            let mut joined = first.to_owned();
            for more in earlier {
                joined.push_str(", ");
                joined.push_str(more);
            }
            joined.push_str(", ");
            joined.push_str(client.to_str().unwrap_or_default());
            // Visible ASCII only, so a valid header value.
            HeaderValue::from_str(&joined).unwrap_or_else(|_| client.clone())
        }
    };
    headers.insert(XFF, forwarded_for);
    headers.insert(REAL_IP, client.clone());
    headers.insert(PROTO, HeaderValue::from_static(proto.as_str()));
}

/// A client's IP address as the forwarding headers carry it (an IPv4-mapped IPv6
/// address as IPv4): made once per connection, since every request on it carries it.
pub(crate) fn client_ip(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_canonical().to_string())
        .unwrap_or(HeaderValue::from_static("unknown"))
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
    fn the_match_follows_the_fixed_set() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop(name), Some(i), "{name}");
        }
        assert_eq!(hop_by_hop(&header::HOST), None);
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
        let client = client_ip("::ffff:10.0.0.1".parse().unwrap());
        set_forwarding(&mut h, &client, Scheme::Http);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.1");
        assert_eq!(h["x-real-ip"], "10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
    }
}
