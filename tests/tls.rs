//! HTTPS: certificates chosen by SNI (the route's own, a wildcard route's, the default),
//! HTTP/2 through ALPN, certificate files swapped under a running proxy, and broken
//! certificates that fall back to the default without taking anything down.

mod common;

use bytes::Bytes;
use ceryx::certificate;
use ceryx::proxy::tls::Certificates;
use ceryx::proxy::{self, Proxy};
use ceryx::route::{Route, Settings};
use ceryx::store::{CertificatePem, MemoryStore, RouteStore, Writer};
use common::tls::*;
use common::*;
use http::{Request, StatusCode, Version};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::HandshakeKind;
use rustls::client::Tls12Resumption;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

/// A proxy with its HTTPS listener, over a memory store.
struct Https {
    store: Arc<MemoryStore>,
    addr: SocketAddr,
    default: CertificateDer<'static>,
    stop: CancellationToken,
}

impl Https {
    async fn start() -> Https {
        let store = Arc::new(MemoryStore::default());
        let (addr, default, stop) = serve_https(store.clone(), Duration::from_secs(3600)).await;
        Https {
            store,
            addr,
            default,
            stop,
        }
    }

    /// A TLS connection naming `sni` (none for `None`), offering `alpn`.
    async fn connect(&self, sni: Option<&str>, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        connect(self.addr, sni, alpn).await
    }

    /// The leaf certificate served to a handshake naming `sni`.
    async fn served(&self, sni: Option<&str>) -> CertificateDer<'static> {
        leaf(&self.connect(sni, &[b"http/1.1"]).await)
    }
}

/// A proxy's HTTPS listener over `store`, trusting cached routes for `ttl`: its address,
/// its default certificate, and what stops it.
async fn serve_https(
    store: Arc<dyn RouteStore>,
    ttl: Duration,
) -> (SocketAddr, CertificateDer<'static>, CancellationToken) {
    let default = certificate::self_signed().unwrap();
    let default_der = default.cert[0].clone();
    let mut args = test_args();
    args.cache_ttl = ttl;
    let proxy = Proxy::new(store, args).unwrap();
    let certificates =
        Certificates::new(proxy.routes().clone(), certificate::server_config(default));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(proxy::serve_tls(
        listener,
        proxy,
        certificates,
        stop.clone(),
    ));
    (addr, default_der, stop)
}

impl Drop for Https {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A scratch directory for certificate files, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let dir = std::env::temp_dir().join(format!("ceryx-tls-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    /// Writes the pair as `<name>.crt` and `<name>.key`; their paths.
    fn write(&self, name: &str, pem: &CertificatePem) -> (String, String) {
        let (crt, key) = (
            self.0.join(format!("{name}.crt")),
            self.0.join(format!("{name}.key")),
        );
        // Replaced the way tools do it: a new file renamed over the old one.
        for (path, text) in [(&crt, &pem.certificate), (&key, &pem.key)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        (crt.display().to_string(), key.display().to_string())
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a route whose settings name certificate files.
async fn put_with_files(
    store: &MemoryStore,
    source: &str,
    target: &str,
    (crt, key): (String, String),
) {
    let settings = Settings {
        certificate_path: Some(crt),
        key_path: Some(key),
        ..Settings::default()
    };
    store
        .put(&Route::new(source, target, settings).unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn sni_picks_the_routes_certificate_then_a_wildcard_routes_then_the_default() {
    let https = Https::start().await;
    let upstream = Upstream::start("u").await;
    let dir = Dir::new();
    let (own, own_der) = issue(&["own.test"]);
    let (wild, wild_der) = issue(&["*.wild.test"]);
    let (stored, stored_der) = issue(&["stored.test"]);
    let store = &https.store;
    put_with_files(store, "own.test", &upstream.url(), dir.write("own", &own)).await;
    put_with_files(
        store,
        "*.wild.test",
        &upstream.url(),
        dir.write("wild", &wild),
    )
    .await;
    store
        .put(&route("plain.test", &upstream.url()))
        .await
        .unwrap();
    // A route that has no certificate of its own, under a wildcard route that has one.
    store
        .put(&route("exact.wild.test", &upstream.url()))
        .await
        .unwrap();
    // A certificate the controller stored from a Secret.
    owned(store.as_ref(), "stored.test", &upstream.url(), "shop/web").await;
    store
        .set_certificate("stored.test", Some(&stored), "shop/web")
        .await
        .unwrap();

    assert_eq!(https.served(Some("own.test")).await, own_der);
    assert_eq!(
        https.served(Some("OWN.Test")).await,
        own_der,
        "SNI is case-insensitive"
    );
    assert_eq!(https.served(Some("a.wild.test")).await, wild_der);
    assert_eq!(https.served(Some("exact.wild.test")).await, wild_der);
    assert_eq!(https.served(Some("stored.test")).await, stored_der);
    assert_eq!(https.served(Some("plain.test")).await, https.default);
    assert_eq!(https.served(Some("unknown.test")).await, https.default);
    assert_eq!(
        https.served(None).await,
        https.default,
        "no SNI: the default, not a failure"
    );

    // And the connection is proxied, as https for the upstream.
    let (status, _, echo) = get_over(
        https.connect(Some("own.test"), &[b"http/1.1"]).await,
        "own.test",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn_and_proxied() {
    let https = Https::start().await;
    let upstream = Upstream::start("h2").await;
    https
        .store
        .put(&route("h2.test", &upstream.url()))
        .await
        .unwrap();

    let stream = https.connect(Some("h2.test"), &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (status, version, echo) = get_over(stream, "h2.test").await;
    assert_eq!((status, version), (StatusCode::OK, Version::HTTP_2));
    assert_eq!(echo["name"], "h2");

    let stream = https.connect(Some("h2.test"), &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, version, _) = get_over(stream, "h2.test").await;
    assert_eq!((status, version), (StatusCode::OK, Version::HTTP_11));
}

#[tokio::test]
async fn a_replaced_certificate_file_is_served_on_the_next_handshake_and_old_connections_live_on() {
    let https = Https::start().await;
    let upstream = Upstream::start("swap").await;
    let dir = Dir::new();
    let (first, first_der) = issue(&["swap.test"]);
    let (second, second_der) = issue(&["swap.test"]);
    let files = dir.write("swap", &first);
    put_with_files(&https.store, "swap.test", &upstream.url(), files).await;

    let old = https.connect(Some("swap.test"), &[b"http/1.1"]).await;
    assert_eq!(leaf(&old), first_der);
    let io = TokioIo::new(old);
    let (mut old, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let get = || {
        Request::get("/")
            .header("host", "swap.test")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    assert_eq!(
        old.send_request(get()).await.unwrap().status(),
        StatusCode::OK
    );

    dir.write("swap", &second);
    assert_eq!(
        https.served(Some("swap.test")).await,
        second_der,
        "no notice, no restart"
    );
    // The connection made before the swap still works.
    let response = old.send_request(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_broken_certificate_falls_back_to_the_default_and_traffic_flows() {
    let https = Https::start().await;
    let upstream = Upstream::start("b").await;
    let dir = Dir::new();
    let garbage = CertificatePem {
        certificate: "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".into(),
        key: "no key here".into(),
    };
    let (a, _) = issue(&["mismatch.test"]);
    let (b, _) = issue(&["mismatch.test"]);
    let mismatched = CertificatePem {
        certificate: a.certificate,
        key: b.key,
    };
    let store = &https.store;
    put_with_files(
        store,
        "bad.test",
        &upstream.url(),
        dir.write("bad", &garbage),
    )
    .await;
    put_with_files(
        store,
        "mismatch.test",
        &upstream.url(),
        dir.write("mismatch", &mismatched),
    )
    .await;
    let missing = (
        "/nonexistent/c.pem".to_owned(),
        "/nonexistent/k.pem".to_owned(),
    );
    put_with_files(store, "missing.test", &upstream.url(), missing).await;
    owned(
        store.as_ref(),
        "stored-bad.test",
        &upstream.url(),
        "shop/web",
    )
    .await;
    store
        .set_certificate("stored-bad.test", Some(&garbage), "shop/web")
        .await
        .unwrap();

    for host in [
        "bad.test",
        "mismatch.test",
        "missing.test",
        "stored-bad.test",
    ] {
        assert_eq!(https.served(Some(host)).await, https.default, "{host}");
        let (status, _, echo) =
            get_over(https.connect(Some(host), &[b"http/1.1"]).await, host).await;
        assert_eq!(
            (status, echo["name"].as_str()),
            (StatusCode::OK, Some("b")),
            "{host}"
        );
    }

    // Fixed in place: the route's certificate is served from then on.
    let (good, good_der) = issue(&["bad.test"]);
    dir.write("bad", &good);
    assert_eq!(https.served(Some("bad.test")).await, good_der);
}

#[tokio::test]
async fn enforce_https_redirects_and_the_https_listener_serves_the_route() {
    let https = Https::start().await;
    let upstream = Upstream::start("secure").await;
    let settings = Settings {
        enforce_https: true,
        ..Settings::default()
    };
    let secure = Route::new("secure.test", &upstream.url(), settings).unwrap();
    https.store.put(&secure).await.unwrap();
    let plain = RunningProxy::start(https.store.clone(), test_args()).await;

    let reply = TestClient::default()
        .get(plain.addr, "secure.test", "/a?b=1")
        .await;
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(reply.location(), "https://secure.test/a?b=1");
    let (status, _, echo) = get_over(
        https.connect(Some("secure.test"), &[b"http/1.1"]).await,
        "secure.test",
    )
    .await;
    assert_eq!(
        (status, echo["name"].as_str()),
        (StatusCode::OK, Some("secure"))
    );
}

#[tokio::test]
async fn only_the_owner_may_store_a_certificate_and_removing_the_route_removes_it() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let (pem, _) = issue(&["kept.test"]);
    store.put(&route("api.test", "t:1")).await.unwrap();
    assert!(
        store
            .set_certificate("api.test", Some(&pem), "shop/web")
            .await
            .is_err()
    );
    owned(store.as_ref(), "kept.test", "t:1", "shop/web").await;
    assert!(
        store
            .set_certificate("kept.test", Some(&pem), "shop/other")
            .await
            .is_err()
    );
    store
        .set_certificate("kept.test", Some(&pem), "shop/web")
        .await
        .unwrap();
    assert_eq!(
        store
            .certificates(&["kept.test", "api.test"])
            .await
            .unwrap(),
        [Some(pem), None]
    );

    let by = Writer::Resource {
        owner: "shop/web",
        take_unowned: false,
    };
    store.remove("kept.test", by).await.unwrap();
    assert_eq!(store.certificates(&["kept.test"]).await.unwrap(), [None]);
}

/// Tests look at the certificate served; they do not trust it.
#[tokio::test]
async fn the_binary_serves_https_with_a_self_signed_default_and_refuses_a_broken_one() {
    let upstream = Upstream::start("bin").await;
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let ceryx = Process::start("run", &[("CERYX_HTTPS_ADDR", https.to_string())]).await;
    let client = TestClient::default();
    ceryx
        .create_route(&client, "bin.test", &upstream.url())
        .await;
    eventually(Duration::from_secs(10), "HTTPS to listen", || async {
        TcpStream::connect(https).await.is_ok()
    })
    .await;
    let tls = connect(https, Some("bin.test"), &[b"http/1.1"]).await;
    let served = leaf(&tls);
    assert!(
        served.windows(9).any(|w| w == b"localhost"),
        "the self-signed default, made for localhost"
    );
    let (status, _, echo) = get_over(tls, "bin.test").await;
    assert_eq!(
        (status, echo["name"].as_str()),
        (StatusCode::OK, Some("bin"))
    );

    // A default certificate that cannot be loaded stops the start with the reason.
    let dir = Dir::new();
    let (a, _) = issue(&["a.test"]);
    let (b, _) = issue(&["b.test"]);
    let (crt, _) = dir.write("a", &a);
    let (_, key) = dir.write("b", &b);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ceryx"))
        .arg("proxy")
        .env("CERYX_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("CERYX_HTTPS_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("CERYX_SSL_DEFAULT_CERTIFICATE", crt)
        .env("CERYX_SSL_DEFAULT_KEY", key)
        .env_remove("CERYX_REDIS_HOST")
        .env_remove("CERYX_REDIS_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CERYX_SSL_DEFAULT_CERTIFICATE"), "{stderr}");
    assert!(stderr.contains("does not fit"), "{stderr}");
}

#[tokio::test]
async fn a_returning_client_resumes_its_session_after_many_others() {
    let https = Https::start().await;
    let upstream = Upstream::start("again").await;
    https
        .store
        .put(&route("again.test", &upstream.url()))
        .await
        .unwrap();
    let config = Arc::new(client_config(&[b"http/1.1"]));
    let name = || ServerName::try_from("again.test").unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);

    let first = connector
        .connect(name(), TcpStream::connect(https.addr).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        first.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Full)
    );
    // TLS 1.3 tickets come after the handshake: a request reads them.
    let (status, _, _) = get_over(first, "again.test").await;
    assert_eq!(status, StatusCode::OK);

    // Many other clients in between: a server-side session cache would have forgotten
    // this one by now (rustls keeps 256 sessions); a ticket carries the session itself.
    for _ in 0..150 {
        let others = tokio_rustls::TlsConnector::from(Arc::new(client_config(&[b"http/1.1"])));
        let other = others
            .connect(name(), TcpStream::connect(https.addr).await.unwrap())
            .await
            .unwrap();
        get_over(other, "again.test").await;
    }
    let second = connector
        .connect(name(), TcpStream::connect(https.addr).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        second.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Resumed)
    );
    let (status, _, echo) = get_over(second, "again.test").await;
    assert_eq!(
        (status, echo["name"].as_str()),
        (StatusCode::OK, Some("again"))
    );
}

/// TLS 1.2 clients without tickets resume by session ID, from one cache shared by every
/// host's certificate (rustls would otherwise give each host a cache of its own).
#[tokio::test]
async fn a_tls12_client_without_tickets_resumes_by_session_id_on_every_host() {
    let https = Https::start().await;
    let upstream = Upstream::start("ids").await;
    let hosts = ["one.test", "two.test"];
    for host in hosts {
        owned(https.store.as_ref(), host, &upstream.url(), "shop/web").await;
        let (pem, _) = issue(&[host]);
        https
            .store
            .set_certificate(host, Some(&pem), "shop/web")
            .await
            .unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(certificate::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption =
        rustls::client::Resumption::default().tls12_resumption(Tls12Resumption::SessionIdOnly);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    for host in hosts {
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let name = ServerName::try_from(host.to_owned()).unwrap();
            let stream = connector
                .connect(name, TcpStream::connect(https.addr).await.unwrap())
                .await
                .unwrap();
            kinds.push(stream.get_ref().1.handshake_kind());
            let (status, _, _) = get_over(stream, host).await;
            assert_eq!(status, StatusCode::OK);
        }
        assert_eq!(
            kinds,
            [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)],
            "{host}"
        );
    }
}

/// Issue 13: the certificates live with the cached routes, so a store outage keeps every
/// host's own certificate (the last known good), however long ago the cache TTL ran out.
#[tokio::test]
async fn a_hosts_certificate_is_still_served_while_the_store_is_down() {
    let mut redis = RedisServer::start().await;
    let store = redis.store();
    let (addr, default, stop) = serve_https(store.clone(), Duration::from_millis(1)).await;
    let _stop = stop.drop_guard();
    owned(store.as_ref(), "shop.test", "t:1", "shop/web").await;
    owned(store.as_ref(), "*.shop.test", "t:1", "shop/web").await;
    let (own, own_der) = issue(&["shop.test"]);
    let (wildcard, wildcard_der) = issue(&["*.shop.test"]);
    store
        .set_certificate("shop.test", Some(&own), "shop/web")
        .await
        .unwrap();
    store
        .set_certificate("*.shop.test", Some(&wildcard), "shop/web")
        .await
        .unwrap();
    let served =
        |sni: &'static str| async move { leaf(&connect(addr, Some(sni), &[b"http/1.1"]).await) };
    assert_eq!(served("shop.test").await, own_der);
    assert_eq!(served("a.shop.test").await, wildcard_der);

    redis.kill();
    // The TTL is 1 ms: from here on every handshake finds its routes stale and the store
    // gone, and must still present the route's own certificate.
    for _ in 0..20 {
        assert_eq!(served("shop.test").await, own_der);
        assert_eq!(served("a.shop.test").await, wildcard_der);
    }
    assert_eq!(served("other.test").await, default);
}

/// Issue 17: the first handshake for a host the proxy has never seen costs one store
/// round trip, which brings the host's route and its own certificate together.
#[tokio::test]
async fn a_never_seen_hosts_first_handshake_costs_one_store_round_trip() {
    let redis = RedisServer::start().await;
    let store = redis.store();
    let hosts: Vec<String> = (0..10).map(|i| format!("h{i}.first.test")).collect();
    let mut own = Vec::new();
    for host in &hosts {
        owned(store.as_ref(), host, "t:1", "shop/web").await;
        let (pem, der) = issue(&[host]);
        store
            .set_certificate(host, Some(&pem), "shop/web")
            .await
            .unwrap();
        own.push(der);
    }
    // Its connection pings Redis too.
    drop(store);
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _ceryx = Process::start(
        "proxy",
        &[
            ("CERYX_REDIS_HOST", "127.0.0.1".into()),
            ("CERYX_REDIS_PORT", redis.port.to_string()),
            ("CERYX_HTTPS_ADDR", https.to_string()),
        ],
    )
    .await;
    eventually(Duration::from_secs(10), "HTTPS to listen", || async {
        TcpStream::connect(https).await.is_ok()
    })
    .await;

    // The proxy also pings Redis now and then: a handshake whose reading another command
    // shares is not counted (each host can be measured once only), the others must be.
    let mut conn = redis.raw().await;
    let mut measured = Vec::new();
    for (host, der) in hosts.iter().zip(&own) {
        let before = RedisCalls::read(&mut conn).await;
        let served = leaf(&connect(https, Some(host), &[b"http/1.1"]).await);
        let lookups = RedisCalls::read(&mut conn).await.since(&before);
        assert_eq!(&served, der, "{host} is served its own certificate");
        if lookups.others == 0 {
            measured.push(lookups.round_trips);
        }
    }
    assert!(
        measured.len() >= 5,
        "too few quiet handshakes: {measured:?}"
    );
    assert!(
        measured.iter().all(|&n| n == 1),
        "store round trips per first handshake: {measured:?}"
    );
}
