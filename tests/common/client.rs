//! An HTTP client for the tests and the replies it reads whole.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {:?}", self.body))
    }

    /// The upstream's name, when the echo server answered.
    pub fn upstream(&self) -> Option<String> {
        serde_json::from_slice::<serde_json::Value>(&self.body).ok()?["name"]
            .as_str()
            .map(String::from)
    }

    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

/// An HTTP/1.1 client that sends whatever `Host` it is told.
pub struct TestClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for TestClient {
    fn default() -> Self {
        TestClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl TestClient {
    pub async fn send(
        &self,
        to: SocketAddr,
        req: http::request::Builder,
        body: impl Into<Bytes>,
    ) -> Reply {
        let req = req.body(Full::new(body.into())).unwrap();
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("http://{to}{path}").parse().unwrap();
        let response = self
            .client
            .request(Request::from_parts(parts, body))
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// The name of the echo upstream that answered `GET /` for `host`, if one did.
    pub async fn served_by(&self, to: SocketAddr, host: &str) -> Option<String> {
        self.get(to, host, "/").await.upstream()
    }

    /// Polls `GET path` on `host` (with `headers`) until it answers `status`, for up
    /// to 20 s; the failure message ends with `context()` (a process's log).
    pub async fn wait_for(
        &self,
        to: SocketAddr,
        (host, path, headers): (&str, &str, &[(&str, &str)]),
        status: StatusCode,
        context: impl Fn() -> String,
    ) -> Reply {
        let start = std::time::Instant::now();
        loop {
            let mut req = Request::get(path).header("host", host);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let reply = self.send(to, req, Bytes::new()).await;
            if reply.status == status {
                return reply;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "{host}{path} answered {} instead of {status}: {:?}\n{}",
                reply.status,
                reply.body,
                context()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn get(&self, to: SocketAddr, host: &str, path: &str) -> Reply {
        self.send(to, Request::get(path).header("host", host), Bytes::new())
            .await
    }
}
