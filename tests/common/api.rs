//! The REST API served from the test's own process.

use ceryx::store::RouteStore;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The REST API running in this process.
pub struct RunningApi {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl RunningApi {
    pub async fn start(store: Arc<dyn RouteStore>, token: Option<&str>) -> RunningApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let router = ceryx::api::router(store, token.map(String::from), Default::default());
        tokio::spawn(ceryx::api::serve(listener, router, stop.clone()));
        RunningApi { addr, stop }
    }
}

impl Drop for RunningApi {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
