//! The proxy served from the test's own process, with settings for tests.

use ceryx::proxy::{self, Config, Proxy};
use ceryx::store::RouteStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A proxy running in this process.
pub struct RunningProxy {
    pub addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    stop: CancellationToken,
}

impl RunningProxy {
    pub async fn start(store: Arc<dyn RouteStore>, args: Config) -> RunningProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Proxy::new(store, args).unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(proxy::serve(listener, proxy.clone(), stop.clone()));
        RunningProxy { addr, proxy, stop }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Settings for tests: short timeouts so failure paths answer quickly.
pub fn test_args() -> Config {
    Config {
        upstream_connect_timeout: Duration::from_secs(2),
        upstream_response_timeout: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(5),
        // Tests read the log from the processes they start (tests/observability.rs).
        access_log: false,
        ..Config::default()
    }
}
