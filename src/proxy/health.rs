//! Active HTTP health checks for a backend's endpoints, optional beside the passive
//! outlier detection in [`super::endpoints`].
//!
//! One task per [`EndpointSet`] with a check: every interval it GETs the check's path on
//! each endpoint at once; `unhealthy_threshold` failures in a row (a status other than
//! 2xx/3xx, a timeout, a refused connection) take the endpoint out of the choice,
//! `healthy_threshold` successes in a row put it back. The task holds the set weakly and
//! ends once the set is gone (its route changed or went away).
//!
//! The verdict is kept on the endpoint's shared state as a mark that expires unless the
//! check renews it, so an endpoint is never left out by a check that no longer runs, and
//! a route rebuilt with the same check starts from the verdict already reached instead of
//! sending traffic to a known-bad endpoint until it fails again.

use super::endpoints::{EndpointSet, EndpointState};
use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Uri, header};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The longest an unhealthy mark lasts unrenewed.
const MAX_MARK: Duration = Duration::from_secs(24 * 60 * 60);

/// An HTTP health check for one backend's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HealthCheck {
    /// Absolute path (and query) requested on each endpoint, whatever the target's own
    /// path prefix, as Envoy and Kubernetes probes do.
    pub path: String,
    /// Time between rounds of checks.
    pub interval: Duration,
    /// How long one check may take, connection included.
    pub timeout: Duration,
    /// Failures in a row that take an endpoint out.
    pub unhealthy_threshold: u32,
    /// Successes in a row that put it back.
    pub healthy_threshold: u32,
}

impl Default for HealthCheck {
    /// `/` every 5 s with a 1 s timeout, out after 3 failures, back after 2 successes
    /// (HAProxy's `fall 3 rise 2`).
    fn default() -> HealthCheck {
        HealthCheck {
            path: "/".to_owned(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 3,
            healthy_threshold: 2,
        }
    }
}

/// Why a health check could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HealthCheckError {
    /// The path is not an absolute path with an optional query.
    #[error("health check path {0:?} is not an absolute path")]
    InvalidPath(String),
    /// A zero interval would check in a busy loop; a zero timeout would fail every check.
    #[error("health check interval and timeout must be above zero")]
    ZeroDuration,
    /// Called outside a tokio runtime.
    #[error("health checks need a tokio runtime")]
    NoRuntime,
}

/// The client checks go through: plain HTTP, one connection per check (a pooled
/// connection would hide a listener that stopped accepting).
type CheckClient = Client<HttpConnector, Empty<Bytes>>;

/// One endpoint as the checker sees it.
struct Probe {
    how: How,
    /// For logs.
    endpoint: String,
    state: Arc<EndpointState>,
    healthy: bool,
    /// Results in a row contrary to `healthy`.
    streak: u32,
}

/// How an endpoint is checked.
enum How {
    /// GET this URI.
    Http(Uri),
    /// Connect to this host and port: an `https` endpoint is only checked for
    /// reachability, since its TLS settings are the forwarder's.
    Tcp(String, u16),
}

impl HealthCheck {
    /// Starts checking `set`'s endpoints; the task ends when the set is dropped.
    pub(crate) fn spawn(&self, set: &Arc<EndpointSet>) -> Result<JoinHandle<()>, HealthCheckError> {
        let path: PathAndQuery = self
            .path
            .parse()
            .ok()
            .filter(|_| self.path.starts_with('/'))
            .ok_or_else(|| HealthCheckError::InvalidPath(self.path.clone()))?;
        if self.interval.is_zero() || self.timeout.is_zero() {
            return Err(HealthCheckError::ZeroDuration);
        }
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| HealthCheckError::NoRuntime)?;
        let now = Instant::now();
        let probes = set
            .states()
            .map(|(upstream, state)| {
                let how = if upstream.scheme == Scheme::HTTPS {
                    let host = upstream.authority.host();
                    let host = crate::route::bare_host(host);
                    How::Tcp(host.to_owned(), upstream.port())
                } else {
                    let uri = Uri::builder()
                        .scheme(Scheme::HTTP)
                        .authority(upstream.authority.clone())
                        .path_and_query(path.clone())
                        .build();
                    match uri {
                        Ok(uri) => How::Http(uri),
                        // Both parts were parsed already; connect at least.
                        Err(_) => How::Tcp(upstream.authority.host().to_owned(), upstream.port()),
                    }
                };
                Probe {
                    how,
                    endpoint: upstream.authority.to_string(),
                    state: state.clone(),
                    healthy: state.is_healthy(now),
                    streak: 0,
                }
            })
            .collect();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        let check = self.clone();
        Ok(runtime.spawn(check.run(Arc::downgrade(set), probes, client)))
    }

    async fn run(self, set: Weak<EndpointSet>, mut probes: Vec<Probe>, client: CheckClient) {
        loop {
            if set.strong_count() == 0 {
                return;
            }
            let results = futures_util::future::join_all(
                probes
                    .iter()
                    .map(|probe| probe.how.check(&client, self.timeout)),
            )
            .await;
            let now = Instant::now();
            for (probe, ok) in probes.iter_mut().zip(results) {
                probe.record(ok, &self, now);
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// How long an unhealthy mark outlives its last renewal: three rounds.
    fn mark_ttl(&self) -> Duration {
        self.interval
            .saturating_add(self.timeout)
            .saturating_mul(3)
            .min(MAX_MARK)
    }
}

impl How {
    async fn check(&self, client: &CheckClient, timeout: Duration) -> bool {
        match self {
            How::Http(uri) => {
                let Ok(request) = Request::get(uri.clone())
                    .header(header::USER_AGENT, "ceryx-health-check")
                    .body(Empty::new())
                else {
                    return false;
                };
                matches!(
                    tokio::time::timeout(timeout, client.request(request)).await,
                    Ok(Ok(response))
                        if response.status().is_success() || response.status().is_redirection()
                )
            }
            How::Tcp(host, port) => matches!(
                tokio::time::timeout(
                    timeout,
                    tokio::net::TcpStream::connect((host.as_str(), *port))
                )
                .await,
                Ok(Ok(_))
            ),
        }
    }
}

impl Probe {
    fn record(&mut self, ok: bool, check: &HealthCheck, now: Instant) {
        if ok == self.healthy {
            self.streak = 0;
        } else {
            self.streak = self.streak.saturating_add(1);
            let needed = if self.healthy {
                check.unhealthy_threshold
            } else {
                check.healthy_threshold
            };
            if self.streak >= needed.max(1) {
                self.healthy = ok;
                self.streak = 0;
                if ok {
                    self.state.mark_healthy();
                    tracing::info!(endpoint = %self.endpoint, "endpoint passes its health check again");
                } else {
                    tracing::warn!(endpoint = %self.endpoint, "endpoint fails its health check; taken out");
                }
            }
        }
        if !self.healthy {
            self.state
                .mark_unhealthy(now.checked_add(check.mark_ttl()).unwrap_or(now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::endpoints::OutlierConfig;
    use crate::route::Upstream;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU16, Ordering::Relaxed};
    use tokio::net::{TcpListener, TcpSocket};

    /// A server answering `/healthz` with the status `status` holds at the time, and
    /// anything else with 404.
    async fn server(status: Arc<AtomicU16>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((io, _)) = listener.accept().await {
                let status = status.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let code = match req.uri().path() {
                            "/healthz" => status.load(Relaxed),
                            _ => 404,
                        };
                        let response = http::Response::builder()
                            .status(code)
                            .body(Empty::<Bytes>::new());
                        async move { Ok::<_, Infallible>(response.unwrap()) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(io), service)
                        .await;
                });
            }
        });
        addr
    }

    /// A port that refuses connections: bound (so no other test gets it) but not
    /// listening.
    fn refusing() -> (TcpSocket, SocketAddr) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        (socket, addr)
    }

    fn endpoints(addrs: &[SocketAddr]) -> Arc<EndpointSet> {
        let upstreams = addrs
            .iter()
            .map(|addr| Upstream::parse(&format!("http://{addr}/prefix")).unwrap())
            .collect();
        EndpointSet::new(upstreams, OutlierConfig::default())
    }

    fn quick() -> HealthCheck {
        HealthCheck {
            path: "/healthz".to_owned(),
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
            unhealthy_threshold: 2,
            healthy_threshold: 2,
        }
    }

    /// Polls `condition` until it holds or 10 s have passed.
    async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if condition() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        condition()
    }

    #[tokio::test]
    async fn endpoints_failing_the_check_are_taken_out() {
        let ok = server(Arc::new(AtomicU16::new(200))).await;
        let failing = server(Arc::new(AtomicU16::new(500))).await;
        let (_socket, refused) = refusing();
        let set = endpoints(&[ok, failing, refused]);
        let _task = quick().spawn(&set).unwrap();

        assert!(eventually(|| !set.is_available(1) && !set.is_available(2)).await);
        assert!(set.is_available(0));
        for _ in 0..100 {
            assert_eq!(set.pick(&[]).unwrap().index(), 0);
        }
    }

    #[tokio::test]
    async fn https_endpoints_are_checked_for_reachability() {
        let listening = server(Arc::new(AtomicU16::new(500))).await;
        let (_socket, refused) = refusing();
        let upstreams = [listening, refused]
            .iter()
            .map(|addr| Upstream::parse(&format!("https://{addr}")).unwrap())
            .collect();
        let set = EndpointSet::new(upstreams, OutlierConfig::default());
        let _task = quick().spawn(&set).unwrap();
        assert!(eventually(|| !set.is_available(1)).await);
        assert!(set.is_available(0));
    }

    #[tokio::test]
    async fn an_endpoint_that_recovers_is_put_back() {
        let status = Arc::new(AtomicU16::new(503));
        let flaky = server(status.clone()).await;
        let ok = server(Arc::new(AtomicU16::new(204))).await;
        let set = endpoints(&[flaky, ok]);
        let _task = quick().spawn(&set).unwrap();
        assert!(eventually(|| !set.is_available(0)).await);
        status.store(302, Relaxed);
        assert!(eventually(|| set.is_available(0)).await);
    }

    #[tokio::test]
    async fn a_rebuilt_route_keeps_the_verdict() {
        let failing = server(Arc::new(AtomicU16::new(500))).await;
        let ok = server(Arc::new(AtomicU16::new(200))).await;
        let old = endpoints(&[failing, ok]);
        let task = quick().spawn(&old).unwrap();
        assert!(eventually(|| !old.is_available(0)).await);

        let new = endpoints(&[failing, ok]);
        drop(old);
        let _new_task = quick().spawn(&new).unwrap();
        assert!(!new.is_available(0), "out at once, not after failing again");
        // The old check ends with its set; the new one keeps the endpoint out.
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        for _ in 0..5 {
            tokio::time::sleep(quick().interval).await;
            assert!(!new.is_available(0));
        }
    }

    #[tokio::test]
    async fn an_unhealthy_mark_outlives_no_check() {
        let failing = server(Arc::new(AtomicU16::new(500))).await;
        let set = endpoints(&[failing]);
        let check = HealthCheck {
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(50),
            ..quick()
        };
        let task = check.spawn(&set).unwrap();
        assert!(eventually(|| !set.is_available(0)).await);
        task.abort();
        // Three rounds after the last renewal the endpoint is back in the choice.
        assert!(eventually(|| set.is_available(0)).await);
    }

    #[test]
    fn bad_settings_are_refused() {
        let set = endpoints(&[]);
        let path = HealthCheck {
            path: "healthz".to_owned(),
            ..quick()
        };
        assert_eq!(
            path.spawn(&set).unwrap_err(),
            HealthCheckError::InvalidPath("healthz".to_owned())
        );
        let zero = HealthCheck {
            interval: Duration::ZERO,
            ..quick()
        };
        assert_eq!(
            zero.spawn(&set).unwrap_err(),
            HealthCheckError::ZeroDuration
        );
        assert_eq!(
            quick().spawn(&set).unwrap_err(),
            HealthCheckError::NoRuntime
        );
    }
}
