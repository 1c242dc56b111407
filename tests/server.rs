//! The listeners of the `ceryx` binary under adversarial clients (issue 18): HTTP/2
//! header blocks bounded by the client header timeout (item 10), and the connection
//! limit that keeps a flood of connections from starving the REST API and the ops
//! listener.

mod common;

use bytes::Bytes;
use common::{Process, TestClient, Upstream, binary, free_port};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// Beyond the header timeout, for a loaded machine; hyper's own bound (a keep-alive
/// ping unanswered) would take 50 s.
const MARGIN: Duration = Duration::from_secs(4);

/// An HTTP/2 frame: 24-bit length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// How long the proxy kept a connection that sent `bytes` and then nothing, reading
/// (and discarding) what the proxy sends until it closes; `None` if it still held the
/// connection after `limit`.
async fn held_for(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    bytes: &[u8],
    limit: Duration,
) -> Option<Duration> {
    stream.write_all(bytes).await.unwrap();
    let start = Instant::now();
    let closed = async {
        let mut buf = [0u8; 1024];
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::time::timeout(limit, closed)
        .await
        .ok()
        .map(|()| start.elapsed())
}

/// Issue 18, item 10: a client that leaves an HTTP/2 header block (or the preface)
/// unfinished is cut after CERYX_CLIENT_HEADER_TIMEOUT, as an HTTP/1 client that leaves
/// its head unfinished is. Before, hyper held it until an unanswered keep-alive ping
/// (50 s).
#[tokio::test]
async fn unfinished_http2_header_blocks_are_cut_after_the_header_timeout() {
    let timeout = HEADER_TIMEOUT.as_secs().to_string();
    let proxy = Process::start("run", &[("CERYX_CLIENT_HEADER_TIMEOUT", timeout)]).await;
    let settings = frame(0x4, 0, 0, &[]);
    // :method GET, :scheme http, :path / (HPACK static table), END_STREAM, no
    // END_HEADERS: a CONTINUATION must follow, and never does.
    let headers = frame(0x1, 0x1, 1, &[0x82, 0x86, 0x84]);
    let awaiting_continuation = [PREFACE, &settings, &headers].concat();
    // A HEADERS frame whose payload stops short of its length.
    let mut cut_short = frame(0x1, 0x5, 1, &[0x82, 0x86, 0x84, 0x41, 20]);
    cut_short[2] = 25;
    let cut_short = [PREFACE, &settings, &cut_short].concat();
    let cases = [
        (
            "a HEADERS frame awaiting its CONTINUATION",
            awaiting_continuation,
        ),
        ("a HEADERS frame cut short", cut_short),
        ("half the preface", PREFACE[..12].to_vec()),
    ];
    let held = futures_util::future::join_all(cases.iter().map(|(_, bytes)| async {
        let stream = TcpStream::connect(proxy.addr).await.unwrap();
        held_for(stream, bytes, HEADER_TIMEOUT + MARGIN).await
    }))
    .await;
    for ((what, _), held) in cases.iter().zip(held) {
        let held = held
            .unwrap_or_else(|| panic!("{what}: still open after {:?}", HEADER_TIMEOUT + MARGIN));
        println!("{what}: closed after {held:?}");
        assert!(
            held >= HEADER_TIMEOUT - Duration::from_millis(100),
            "{what}: closed after {held:?}, before the header timeout"
        );
    }
}

/// The same over HTTPS (HTTP/2 by ALPN): the timeout bounds the decrypted stream, and
/// an HTTP/2 request over TLS is still served.
#[tokio::test]
async fn unfinished_http2_header_blocks_over_tls_are_cut_too() {
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let env = [
        (
            "CERYX_CLIENT_HEADER_TIMEOUT",
            HEADER_TIMEOUT.as_secs().to_string(),
        ),
        ("CERYX_HTTPS_ADDR", https.to_string()),
    ];
    let proxy = Process::start("run", &env).await;
    let upstream = Upstream::start("tls").await;
    let client = TestClient::default();
    proxy
        .create_route(&client, "tls.test", &upstream.url())
        .await;
    common::eventually(Duration::from_secs(10), "HTTPS to listen", || async {
        TcpStream::connect(https).await.is_ok()
    })
    .await;

    let stream = common::tls::connect(https, Some("tls.test"), &[b"h2"]).await;
    let (status, version, echo) = common::tls::get_over(stream, "tls.test").await;
    assert_eq!((status, version), (StatusCode::OK, http::Version::HTTP_2));
    assert_eq!(echo["name"], "tls");

    let stream = common::tls::connect(https, Some("tls.test"), &[b"h2"]).await;
    let headers = frame(0x1, 0x1, 1, &[0x82, 0x87, 0x84]);
    let bytes = [PREFACE, &frame(0x4, 0, 0, &[]), &headers].concat();
    let held = held_for(stream, &bytes, HEADER_TIMEOUT + MARGIN).await;
    let held = held.expect("an unfinished header block over TLS is cut");
    assert!(
        held >= HEADER_TIMEOUT - Duration::from_millis(100),
        "{held:?}"
    );
}

/// The header timeout bounds a header block, not the connection: a request whose
/// headers span HEADERS and CONTINUATION frames (a 30 kB header) is served, and the
/// same connection serves another request after the timeout has passed.
#[tokio::test]
async fn http2_requests_with_continuation_frames_are_served() {
    let timeout = HEADER_TIMEOUT.as_secs().to_string();
    let proxy = Process::start("run", &[("CERYX_CLIENT_HEADER_TIMEOUT", timeout)]).await;
    let upstream = Upstream::start("h2").await;
    let client = TestClient::default();
    proxy
        .create_route(&client, "h2.test", &upstream.url())
        .await;

    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    // 'X' takes 8 bits in HPACK's Huffman code, so the block is at least 30 kB: more
    // than the 16 kB frame size, so the client sends CONTINUATION frames.
    let big = "X".repeat(30_000);
    for (round, header) in [big.as_str(), "small"].into_iter().enumerate() {
        if round > 0 {
            // Time passing is what is tested: no header block is open meanwhile.
            tokio::time::sleep(HEADER_TIMEOUT + Duration::from_millis(500)).await;
        }
        let request = Request::get("http://h2.test/")
            .header("x-filler", header)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
            .await
            .expect("answered in time")
            .unwrap_or_else(|e| panic!("request {round}: {e}"));
        assert_eq!(response.status(), StatusCode::OK, "request {round}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["name"], "h2", "request {round}");
    }
}

/// An HTTP/1.1 connection to `proxy` that completed one request for `host`, kept
/// alive: its sender and the task that drives it.
async fn kept_alive(
    proxy: SocketAddr,
    host: &str,
) -> (
    http1::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = TcpStream::connect(proxy).await.unwrap();
    let (mut sender, connection) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender.send_request(get(host)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    (sender, task)
}

fn get(host: &str) -> Request<Empty<Bytes>> {
    Request::get("/")
        .header("host", host)
        .body(Empty::new())
        .unwrap()
}

/// A proxy (`ceryx run`, with an ops listener) routing `limit.test` to an upstream,
/// with `env`.
async fn proxy_with(env: &[(&str, String)]) -> (Process, Upstream, Listeners) {
    let ops: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut env = env.to_vec();
    env.push(("CERYX_METRICS_ADDR", ops.to_string()));
    env.push(("CERYX_HTTPS_ADDR", https.to_string()));
    let proxy = Process::start("run", &env).await;
    let upstream = Upstream::start("limited").await;
    let client = TestClient::default();
    proxy
        .create_route(&client, "limit.test", &upstream.url())
        .await;
    common::eventually(
        Duration::from_secs(10),
        "the ops and HTTPS listeners",
        || async {
            TcpStream::connect(ops).await.is_ok() && TcpStream::connect(https).await.is_ok()
        },
    )
    .await;
    (proxy, upstream, Listeners { ops, https })
}

/// The listeners of [`proxy_with`] beside the proxy's HTTP and the REST API.
struct Listeners {
    ops: SocketAddr,
    https: SocketAddr,
}

/// A sixth connection's request, sent while five connections are held; it is answered
/// once it is accepted.
async fn sixth_request(
    proxy: SocketAddr,
) -> tokio::task::JoinHandle<hyper::Result<http::Response<hyper::body::Incoming>>> {
    // The kernel completes the handshake while the connection waits in the backlog.
    let tcp = TcpStream::connect(proxy).await.unwrap();
    tokio::spawn(async move {
        let (mut sender, connection) = http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        sender.send_request(get("limit.test")).await
    })
}

/// Issue 18: CERYX_MAX_CONNECTIONS=5 holds a sixth connection (HTTP, or HTTPS: the
/// listeners share the limit) in the listen backlog while five are open (each served
/// one request and is kept alive), the REST API and the ops listener answer meanwhile,
/// and closing connections lets the waiting ones be served.
#[tokio::test]
async fn over_the_connection_limit_new_connections_wait_and_the_api_answers() {
    let limit = [("CERYX_MAX_CONNECTIONS", "5".into())];
    let (proxy, _upstream, Listeners { ops, https }) = proxy_with(&limit).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(kept_alive(proxy.addr, "limit.test").await);
    }
    let mut sixth = sixth_request(proxy.addr).await;
    let waited = tokio::time::timeout(Duration::from_millis(500), &mut sixth).await;
    if let Ok(served) = waited {
        panic!("the sixth connection was served over the limit: {served:?}");
    }
    let mut over_tls = tokio::spawn(async move {
        let stream = common::tls::connect(https, Some("limit.test"), &[b"http/1.1"]).await;
        common::tls::get_over(stream, "limit.test").await.0
    });
    let waited = tokio::time::timeout(Duration::from_millis(500), &mut over_tls).await;
    assert!(
        waited.is_err(),
        "an HTTPS connection was served over the limit"
    );

    let client = TestClient::default();
    let routes = client
        .send(proxy.api, Request::get("/api/routes"), Bytes::new())
        .await;
    assert_eq!(routes.status, StatusCode::OK, "the REST API answers");
    let health = client.get(ops, "ops", "/healthz").await;
    assert_eq!(health.status, StatusCode::OK, "the ops listener answers");
    assert!(
        !sixth.is_finished() && !over_tls.is_finished(),
        "still waiting"
    );

    for (sender, task) in held.drain(..2) {
        drop(sender);
        task.await.unwrap();
    }
    let response = tokio::time::timeout(Duration::from_secs(5), sixth)
        .await
        .expect("the sixth connection served once one closed")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let status = tokio::time::timeout(Duration::from_secs(5), over_tls)
        .await
        .expect("the HTTPS connection served once another closed")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

/// The same six connections without CERYX_MAX_CONNECTIONS: the default limit (from the
/// open-file limit) is far above six, so the sixth is served at once; the test above
/// holds it because the setting is read.
#[tokio::test]
async fn without_the_setting_a_sixth_connection_is_served() {
    let (proxy, _upstream, _listeners) = proxy_with(&[]).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(kept_alive(proxy.addr, "limit.test").await);
    }
    let sixth = sixth_request(proxy.addr).await;
    let response = tokio::time::timeout(Duration::from_secs(5), sixth)
        .await
        .expect("the sixth connection served")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    drop(held);
}

/// A tunnel counts against the limit until it closes: with CERYX_MAX_CONNECTIONS=1, an
/// open WebSocket keeps the next connection waiting, and closing it lets that one in.
#[tokio::test]
async fn an_open_tunnel_holds_its_connection_permit() {
    let limit = [("CERYX_MAX_CONNECTIONS", "1".into())];
    let (proxy, _upstream, _listeners) = proxy_with(&limit).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async("ws://limit.test/ws", stream)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);

    let mut next = sixth_request(proxy.addr).await;
    let waited = tokio::time::timeout(Duration::from_millis(500), &mut next).await;
    if let Ok(served) = waited {
        panic!("served while the tunnel held the only permit: {served:?}");
    }
    ws.close(None).await.unwrap();
    drop(ws);
    let response = tokio::time::timeout(Duration::from_secs(5), next)
        .await
        .expect("served once the tunnel closed")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// Issue 17: `CERYX_WORKERS=3` serves the proxy on three threads of its own, each with its
/// own socket on the address: connections spread over them are all served, and a second
/// process asking for the same address is refused instead of silently sharing it.
#[tokio::test]
async fn workers_share_the_address_and_a_second_process_is_refused() {
    let (proxy, _upstream, _) = proxy_with(&[("CERYX_WORKERS", "3".into())]).await;
    let threads = std::fs::read_dir(format!("/proc/{}/task", proxy.child.id()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("ceryx-proxy-"))
        .count();
    assert_eq!(threads, 3, "one thread per worker");
    let mut open = Vec::new();
    for _ in 0..24 {
        open.push(kept_alive(proxy.addr, "limit.test").await);
    }

    let second = std::process::Command::new(binary())
        .arg("proxy")
        .env("CERYX_HTTP_ADDR", proxy.addr.to_string())
        .env("CERYX_HTTPS_ADDR", "")
        .env_remove("CERYX_REDIS_HOST")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "a second proxy started on {}",
        proxy.addr
    );
    assert!(
        stderr.contains(&format!("cannot listen on {}", proxy.addr)),
        "{stderr}"
    );
    // Still served, by the first process alone.
    for (mut sender, _task) in open {
        let response = sender.send_request(get("limit.test")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
