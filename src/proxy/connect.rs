//! Connecting to upstreams: TCP, with `CERYX_UPSTREAM_DENY` applied to the address
//! actually connected to, so that neither a route written straight into the store nor
//! a name that resolves (or is rebound) to a denied address gets through.

use crate::targets::denied;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The upstream's address is in the deny list.
#[derive(Debug, thiserror::Error)]
#[error("{ip} is in CERYX_UPSTREAM_DENY ({net})")]
pub(crate) struct Denied {
    ip: IpAddr,
    net: IpNet,
}

/// [`HttpConnector`] that refuses denied addresses.
#[derive(Clone)]
pub(crate) struct GuardedConnector {
    inner: HttpConnector,
    deny: Arc<[IpNet]>,
}

impl GuardedConnector {
    /// Connects with `inner`, never to an address in `deny`.
    pub(crate) fn new(inner: HttpConnector, deny: &[IpNet]) -> GuardedConnector {
        GuardedConnector {
            inner,
            deny: deny.into(),
        }
    }

    fn check(deny: &[IpNet], ip: IpAddr) -> Result<(), Denied> {
        match denied(deny, ip) {
            Some(net) => Err(Denied { ip, net: *net }),
            None => Ok(()),
        }
    }
}

impl tower_service::Service<http::Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let deny = self.deny.clone();
        let uri = loopback_for_localhost(uri);
        // An address literal is judged before any packet is sent; a name after connecting,
        // on the address it resolved to.
        let literal = uri
            .host()
            .and_then(|h| crate::route::bare_host(h).parse().ok());
        if let Some(ip) = literal
            && let Err(e) = Self::check(&deny, ip)
        {
            return Box::pin(std::future::ready(Err(e.into())));
        }
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let stream = connecting.await?;
            if !deny.is_empty() {
                Self::check(&deny, stream.inner().peer_addr()?.ip())?;
            }
            Ok(stream)
        })
    }
}

/// RFC 6761 §6.3: `localhost` and names under it are the loopback address, answered
/// without asking DNS (as curl, browsers and systemd-resolved do).
fn loopback_for_localhost(uri: http::Uri) -> http::Uri {
    // Without allocating: this runs for every new upstream connection.
    let local = uri.host().is_some_and(|h| {
        let h = h.trim_end_matches('.').as_bytes();
        let tail = &h[h.len().saturating_sub(10)..];
        tail.eq_ignore_ascii_case(b".localhost")
            || (h.len() == 9 && h.eq_ignore_ascii_case(b"localhost"))
    });
    if !local {
        return uri;
    }
    let authority = match uri.port_u16() {
        Some(port) => format!("127.0.0.1:{port}"),
        None => "127.0.0.1".to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    match authority.parse() {
        Ok(authority) => {
            parts.authority = Some(authority);
            http::Uri::from_parts(parts).unwrap_or(uri)
        }
        Err(_) => uri,
    }
}

#[cfg(test)]
mod tests {
    use super::loopback_for_localhost;

    #[test]
    fn localhost_names_are_loopback_without_dns() {
        let at = |uri: &str| loopback_for_localhost(uri.parse().unwrap()).to_string();
        assert_eq!(at("http://pod-a.localhost:8080/"), "http://127.0.0.1:8080/");
        assert_eq!(at("https://LOCALHOST/"), "https://127.0.0.1/");
        assert_eq!(
            at("http://localhost.example:80/"),
            "http://localhost.example:80/"
        );
    }
}
