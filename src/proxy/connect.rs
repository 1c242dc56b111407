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
