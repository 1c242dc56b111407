//! Many hosts, each with its own certificate: full TLS handshakes to hosts the proxy has
//! never seen (latency, store round trips, the certificate served) and the proxy's memory
//! as it serves more of them. The routes and certificates are written the way the
//! controller writes them, into a Redis of the scenario's own (no other client talks to
//! it, so its counters are the proxy's).

use crate::process::{free_port, rss_kib};
use crate::redis_calls::RedisCalls;
use crate::rig::Rig;
use crate::scale::Scale;
use crate::store;
use ceryx::store::{CertificatePem, RouteStore, Writer};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SerialNumber};
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::HashMap;
use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// The resource that owns the routes, as a CeryxRoute's `<namespace>/<name>`.
const OWNER: &str = "bench/certificates";

pub struct Certificates {
    /// Routes in Redis, each with a certificate of its own.
    pub stored: usize,
    /// Time to each first handshake (TCP connect included), sorted.
    pub handshakes: Vec<Duration>,
    /// Handshakes that were served the host's own certificate (checked against the
    /// scenario's CA for the host's name, and byte for byte). The others got the default:
    /// the store did not answer within the proxy's Redis timeout (on an overloaded machine).
    pub own: usize,
    /// Store round trips and commands over all the handshakes.
    pub round_trips: u64,
    pub commands: u64,
    /// The proxy's RSS in KiB idle (no handshake yet), after the first half of the
    /// hosts, after all of them.
    pub rss_kib: [u64; 3],
}

/// The host of the `i`th route.
fn host(i: usize) -> String {
    format!("c{i}.certificates.bench.test")
}

pub async fn run(rig: &mut Rig, scale: &Scale) -> Result<Certificates, Box<dyn Error>> {
    let stored = scale.certificate_routes;
    let half = scale.certificate_hosts.min(stored / 2);
    // The hosts handshaken, spread at random over all routes (the same ones every run).
    let mut rng = fastrand::Rng::with_seed(17);
    let mut sample = rng.choose_multiple(0..stored, 2 * half);
    rng.shuffle(&mut sample);

    let redis = free_port();
    store::start_volatile(redis, &mut rig.procs, "redis-certificates").await?;
    let ca = Ca::new()?;
    let expected = write_routes(redis, stored, &sample, &ca, &rig.a()).await?;
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{redis}/"))?
        .get_multiplexed_async_connection()
        .await?;
    // The writer's store (subscribed too) is gone before the proxy comes.
    wait_for_subscribers(&mut conn, 0).await?;

    let name = "proxy-certificates";
    let (_, tls) = rig.start_https_proxy_on(name, redis).await?;
    let pid = rig.procs.pid(name);
    // Listening is not connected to Redis: wait for the proxy's subscription.
    wait_for_subscribers(&mut conn, 1).await?;

    let client = ca.client();
    let mut rss = [rss_kib(pid), 0, 0];
    let before = RedisCalls::read(&mut conn).await;
    let mut handshakes = Vec::with_capacity(sample.len());
    let mut own = 0;
    for (n, &i) in sample.iter().enumerate() {
        let host = host(i);
        let began = Instant::now();
        let tcp = TcpStream::connect(("127.0.0.1", tls)).await?;
        let served = client
            .connect(ServerName::try_from(host.clone())?, tcp)
            .await;
        handshakes.push(began.elapsed());
        let served = served
            .ok()
            .and_then(|s| s.get_ref().1.peer_certificates()?.first().cloned());
        own += (served.as_ref() == expected.get(&i)) as usize;
        if n + 1 == half {
            rss[1] = rss_kib(pid);
        }
    }
    let lookups = RedisCalls::read(&mut conn).await.since(&before);
    rss[2] = rss_kib(pid);
    rig.procs.kill(name);
    rig.procs.kill("redis-certificates");
    handshakes.sort();
    Ok(Certificates {
        stored,
        handshakes,
        own,
        round_trips: lookups.round_trips,
        commands: lookups.commands,
        rss_kib: rss,
    })
}

/// Returns once `n` connections are subscribed to the change notices; fails after 20 s.
async fn wait_for_subscribers(
    conn: &mut redis::aio::MultiplexedConnection,
    n: u64,
) -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    loop {
        let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("ceryx:events")
            .query_async(conn)
            .await?;
        if subscribers == n {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err(format!("{subscribers} subscribers to Redis, not {n}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `count` routes through Ceryx's store, each owned and given a certificate of its
/// own as the controller does (route, then certificate from the Secret); returns the
/// leaf certificates of the `sample`d ones.
async fn write_routes(
    redis: u16,
    count: usize,
    sample: &[usize],
    ca: &Ca,
    target: &str,
) -> Result<HashMap<usize, CertificateDer<'static>>, Box<dyn Error>> {
    let store = store::connect(redis);
    let by = Writer::Resource {
        owner: OWNER,
        take_unowned: false,
    };
    let mut expected: HashMap<usize, CertificateDer<'static>> = sample
        .iter()
        .map(|&i| (i, CertificateDer::from(vec![])))
        .collect();
    let indices: Vec<usize> = (0..count).collect();
    for chunk in indices.chunks(1_000) {
        let mut issued = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let (pem, der) = ca.issue(i, &host(i))?;
            if let Some(slot) = expected.get_mut(&i) {
                *slot = der;
            }
            issued.push((host(i), pem));
        }
        let writes = issued.iter().map(|(host, pem)| {
            let store = store.clone();
            async move {
                store.write(&store::route(host, target), by).await?;
                store.set_certificate(host, Some(pem), OWNER).await
            }
        });
        for written in futures_util::future::join_all(writes).await {
            written?;
        }
    }
    Ok(expected)
}

/// A certificate authority of the scenario's own, and the one key every leaf it issues
/// certifies (a key per host would cost a key generation per route, for nothing the
/// proxy does differently).
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    certificate: CertificateDer<'static>,
    pem: String,
    leaf_key: KeyPair,
}

impl Ca {
    fn new() -> Result<Ca, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Ceryx bench CA");
        let key = KeyPair::generate()?;
        let made = params.self_signed(&key)?;
        Ok(Ca {
            certificate: made.der().clone(),
            pem: made.pem(),
            issuer: Issuer::new(params, key),
            leaf_key: KeyPair::generate()?,
        })
    }

    /// The `serial`th leaf, naming `host`: its chain (leaf, then the CA) and key as a
    /// Secret holds them, and the leaf alone.
    fn issue(
        &self,
        serial: usize,
        host: &str,
    ) -> Result<(CertificatePem, CertificateDer<'static>), rcgen::Error> {
        let mut params = CertificateParams::new(vec![host.to_owned()])?;
        params.serial_number = Some(SerialNumber::from(serial as u64 + 1));
        let leaf = params.signed_by(&self.leaf_key, &self.issuer)?;
        let pem = CertificatePem {
            certificate: format!("{}{}", leaf.pem(), self.pem),
            key: self.leaf_key.serialize_pem(),
        };
        Ok((pem, leaf.der().clone()))
    }

    /// A client that trusts this CA alone, checks the name, and never resumes: each
    /// handshake is a full one.
    fn client(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.certificate.clone())
            .expect("the CA certificate is valid");
        let mut config =
            rustls::ClientConfig::builder_with_provider(ceryx::certificate::provider())
                .with_safe_default_protocol_versions()
                .expect("TLS 1.2 and 1.3")
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}
