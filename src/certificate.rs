//! Certificates as the proxy serves them: PEM parsed and checked (the key must match the
//! certificate), a TLS server configuration per certificate, the self-signed default for
//! when none is configured, and the [`Slot`] in which a cached route keeps its own.

use crate::route::Settings;
use crate::store::CertificatePem;
use crate::sync::lock;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

/// Why a certificate cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// A file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(String, String),
    /// No certificate in the PEM, or a malformed one.
    #[error("no valid PEM certificate: {0}")]
    Certificate(String),
    /// No private key in the PEM, or a malformed one.
    #[error("no valid PEM private key: {0}")]
    Key(String),
    /// The key does not belong to the certificate, or its type is not supported.
    #[error("the key does not fit the certificate: {0}")]
    Mismatch(String),
    /// The self-signed default could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// The one crypto provider of the process (aws-lc-rs: its handshakes cost less than
/// ring's, see docs/benchmarks.md).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Parses a PEM chain (leaf first) and key, and checks they belong together.
pub fn parse(certificate: &[u8], key: &[u8]) -> Result<CertifiedKey, CertificateError> {
    let chain = CertificateDer::pem_slice_iter(certificate)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertificateError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertificateError::Certificate("none found".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key).map_err(|e| CertificateError::Key(e.to_string()))?;
    CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| CertificateError::Mismatch(e.to_string()))
}

/// [`parse`] of a stored pair.
pub fn parse_stored(pem: &CertificatePem) -> Result<CertifiedKey, CertificateError> {
    parse(pem.certificate.as_bytes(), pem.key.as_bytes())
}

/// [`parse`] of two files.
pub fn load(certificate: &Path, key: &Path) -> Result<CertifiedKey, CertificateError> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| CertificateError::Read(path.display().to_string(), e.to_string()))
    };
    parse(&read(certificate)?, &read(key)?)
}

/// A certificate for `localhost`, signed by its own key, made now.
pub fn self_signed() -> Result<CertifiedKey, CertificateError> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .map_err(|e| CertificateError::SelfSigned(e.to_string()))?;
    parse(
        made.cert.pem().as_bytes(),
        made.signing_key.serialize_pem().as_bytes(),
    )
}

/// A TLS 1.2 + 1.3 server configuration that presents `key`, offers HTTP/2 and
/// HTTP/1.1 by ALPN, and lets clients resume sessions with tickets.
pub fn server_config(key: CertifiedKey) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if let Some(ticketer) = TICKETER.as_ref() {
        config.ticketer = ticketer.clone();
    }
    config.session_storage = SESSIONS.clone();
    Arc::new(config)
}

/// One cache of TLS 1.2 session IDs for every certificate's configuration. rustls gives
/// each configuration its own, allocated in full up front: about 34 KB of the 39 KB each
/// host served with its own certificate cost (bench: certificates). Sized as nginx's
/// `ssl_session_cache shared:SSL:1m` (about 4,000 sessions).
static SESSIONS: LazyLock<Arc<dyn StoresServerSessions>> =
    LazyLock::new(|| ServerSessionMemoryCache::new(4096));

/// One ticket key (rotated by rustls every 6 hours) for every certificate's
/// configuration, so that a resumed handshake skips the key exchange and signature
/// whichever certificate the host has; none (full handshakes) if it cannot be made.
static TICKETER: LazyLock<Option<Arc<dyn ProducesTickets>>> =
    LazyLock::new(|| match rustls::crypto::aws_lc_rs::Ticketer::new() {
        Ok(ticketer) => Some(ticketer),
        Err(e) => {
            tracing::warn!(error = %e, "no TLS session tickets");
            None
        }
    });

/// A route's certificate, kept with the cached route: loaded by the first handshake that
/// needs it, from the stored PEM (the controller's, from a Secret) or else the files the
/// route's settings name. Files are loaded again once they change on disk.
#[derive(Debug, Default)]
pub struct Slot(Mutex<Option<Box<SlotState>>>);

#[derive(Debug, Default)]
struct SlotState {
    loaded: Option<Loaded>,
    /// The last reason logged for not serving this route's certificate, carried over
    /// from the slot this one replaced so that each new reason is logged once.
    reported: Option<CertificateError>,
}

#[derive(Debug)]
struct Loaded {
    config: Option<Arc<ServerConfig>>,
    /// For certificates from files: the files and how they looked when loaded.
    files: Option<Files>,
}

/// A route's certificate read and parsed (or found missing or broken), for a [`Slot`].
pub(crate) struct Prepared {
    /// `None` when the route has no certificate.
    result: Option<Result<Arc<ServerConfig>, CertificateError>>,
    /// For certificates from files: the files and how they looked when read.
    files: Option<Files>,
}

/// What a [`Slot`] can serve now.
pub enum Served {
    /// Nothing is loaded yet: the stored certificate must be fetched first.
    Unloaded,
    /// The route's own certificate.
    Config(Arc<ServerConfig>),
    /// The route has no certificate that can be served.
    Nothing,
}

impl Slot {
    /// An empty slot for a route that replaces the one holding `previous`.
    pub fn after(previous: Option<&Slot>) -> Slot {
        // Boxed, and only once there is something to keep: most routes never serve TLS.
        let reported = previous.and_then(|p| p.lock().as_ref()?.reported.clone());
        Slot(Mutex::new(reported.map(|reported| {
            Box::new(SlotState {
                loaded: None,
                reported: Some(reported),
            })
        })))
    }

    /// What the slot serves; files that changed since they were loaded are loaded again
    /// (outside the lock: the route table takes it while it holds its own).
    pub fn served(&self, source: &str) -> Served {
        let files = self.state(|state| match &state.loaded {
            Some(Loaded {
                files: Some(files), ..
            }) => Some((files.paths.clone(), files.stamp)),
            _ => None,
        });
        if let Some(((certificate, key), stamp)) = files {
            let now = Files::new(certificate, key);
            if now.stamp != stamp {
                let result = load(&now.paths.0, &now.paths.1).map(server_config);
                self.state(|state| state.keep(source, result, Some(now)));
            }
        }
        self.state(|state| match &state.loaded {
            None => Served::Unloaded,
            Some(Loaded {
                config: Some(config),
                ..
            }) => Served::Config(config.clone()),
            Some(_) => Served::Nothing,
        })
    }

    /// Loads the route's certificate: `stored` if there is one, else its files.
    pub fn fill(&self, source: &str, settings: &Settings, stored: Option<&CertificatePem>) {
        self.put(source, Slot::prepare(settings, stored));
    }

    /// Reads and parses the certificate [`Slot::fill`] would load, without a slot: done
    /// before the route table is locked, the slot filled under it with [`Slot::put`].
    pub(crate) fn prepare(settings: &Settings, stored: Option<&CertificatePem>) -> Prepared {
        let files = match (&settings.certificate_path, &settings.key_path) {
            (Some(certificate), Some(key)) if stored.is_none() => {
                Some(Files::new(certificate.into(), key.into()))
            }
            _ => None,
        };
        let result = match (stored, &files) {
            (Some(pem), _) => Some(parse_stored(pem)),
            (None, Some(files)) => Some(load(&files.paths.0, &files.paths.1)),
            (None, None) => None,
        };
        Prepared {
            result: result.map(|r| r.map(server_config)),
            files,
        }
    }

    /// Keeps a certificate [`Slot::prepare`] read for the route `source`.
    pub(crate) fn put(&self, source: &str, prepared: Prepared) {
        let Prepared { result, files } = prepared;
        self.state(|state| match result {
            Some(result) => state.keep(source, result, files),
            None => {
                state.reported = None;
                state.loaded = Some(Loaded {
                    config: None,
                    files: None,
                })
            }
        })
    }

    fn state<R>(&self, f: impl FnOnce(&mut SlotState) -> R) -> R {
        f(self.lock().get_or_insert_with(Box::default))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Box<SlotState>>> {
        lock(&self.0)
    }
}

impl SlotState {
    fn keep(
        &mut self,
        source: &str,
        result: Result<Arc<ServerConfig>, CertificateError>,
        files: Option<Files>,
    ) {
        let config = match result {
            Ok(config) => {
                self.reported = None;
                Some(config)
            }
            Err(error) => {
                if self.reported.as_ref() != Some(&error) {
                    tracing::error!(%source, %error, "certificate not served; the default answers for this host");
                    self.reported = Some(error);
                }
                None
            }
        };
        self.loaded = Some(Loaded { config, files });
    }
}

#[derive(Debug, PartialEq)]
struct Files {
    paths: (PathBuf, PathBuf),
    stamp: Option<(Stamp, Stamp)>,
}

/// Enough of a file's metadata to see it was replaced or rewritten.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Files {
    fn new(certificate: PathBuf, key: PathBuf) -> Files {
        let stamp = Files::stamp(&certificate, &key);
        Files {
            paths: (certificate, key),
            stamp,
        }
    }

    fn stamp(certificate: &Path, key: &Path) -> Option<(Stamp, Stamp)> {
        let one = |path: &Path| {
            let meta = std::fs::metadata(path).ok()?;
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&meta);
            #[cfg(not(unix))]
            let inode = 0;
            Some(Stamp {
                modified: meta.modified().ok(),
                len: meta.len(),
                inode,
            })
        };
        Some((one(certificate)?, one(key)?))
    }
}
