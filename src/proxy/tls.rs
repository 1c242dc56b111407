//! The certificate for each TLS handshake, by SNI: the route's own (stored by the
//! controller, else the PEM files its settings name), else that of the most specific
//! `*.suffix` route that has one, else the default. Loaded once and cached per source;
//! a change notice, the cache TTL or a replaced file loads it again. A certificate that
//! cannot be loaded falls back to the default, logged once per change.

use super::cache;
use crate::certificate::{self, CertificateError};
use crate::route::{WILDCARD, normalize_host};
use crate::store::{Change, RouteStore};
use rustls::ServerConfig;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Sources kept before the table is swept (bounds memory under random SNI names).
const MAX_ENTRIES: usize = 100_000;

/// The TLS configurations served, by SNI.
pub struct Certificates {
    store: Arc<dyn RouteStore>,
    ttl: Duration,
    default: Arc<ServerConfig>,
    entries: RwLock<HashMap<String, Entry>>,
    /// Bumped by every notice; a load that raced one is kept as stale.
    epoch: AtomicU64,
}

/// What one source offers.
#[derive(Clone)]
struct Entry {
    config: Option<Arc<ServerConfig>>,
    /// For certificates from files: the files and how they looked when loaded.
    files: Option<Files>,
    /// Why the source's certificate is not served, to log each new reason once.
    error: Option<CertificateError>,
    fresh_until: Instant,
}

#[derive(Clone, PartialEq)]
struct Files {
    paths: (PathBuf, PathBuf),
    stamp: Option<(Stamp, Stamp)>,
}

/// Enough of a file's metadata to see it was replaced or rewritten.
#[derive(Clone, Copy, PartialEq)]
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

    fn stamp(certificate: &PathBuf, key: &PathBuf) -> Option<(Stamp, Stamp)> {
        let one = |path: &PathBuf| {
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

    fn changed(&self) -> bool {
        Files::stamp(&self.paths.0, &self.paths.1) != self.stamp
    }
}

impl Certificates {
    /// Certificates over `store`, trusted for `ttl` without a notice, with `default`
    /// for every host without its own.
    pub fn new(store: Arc<dyn RouteStore>, ttl: Duration, default: Arc<ServerConfig>) -> Arc<Self> {
        let certificates = Arc::new(Certificates {
            store,
            ttl,
            default,
            entries: RwLock::default(),
            epoch: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&certificates);
        certificates.store.watch(Arc::new(move |change| {
            if let Some(certificates) = weak.upgrade() {
                certificates.apply(change);
            }
        }));
        certificates
    }

    fn apply(&self, change: &Change) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let now = Instant::now();
        let mut entries = self.write();
        match change {
            Change::Route { source, .. } => {
                if let Some(entry) = entries.get_mut(source) {
                    entry.fresh_until = now;
                }
            }
            Change::Resync => entries.values_mut().for_each(|e| e.fresh_until = now),
        }
    }

    /// The configuration for a handshake that named `sni` (or none). Never fails: the
    /// default answers when nothing better is known or loadable.
    pub async fn config_for(&self, sni: Option<&str>) -> Arc<ServerConfig> {
        let Some(host) = sni.and_then(normalize_host) else {
            return self.default.clone();
        };
        let sources = candidates(&host);
        let now = Instant::now();
        let stale: Vec<&str> = {
            let entries = self.read();
            let mut stale = Vec::new();
            for source in &sources {
                match entries.get(source) {
                    Some(e)
                        if e.fresh_until > now && !e.files.as_ref().is_some_and(Files::changed) =>
                    {
                        if let (Some(config), true) = (&e.config, stale.is_empty()) {
                            return config.clone();
                        }
                    }
                    _ => stale.push(source.as_str()),
                }
            }
            stale
        };
        if !stale.is_empty() {
            self.load(&stale).await;
        }
        // After a failed load, what was known before still answers.
        let entries = self.read();
        sources
            .iter()
            .find_map(|source| entries.get(source)?.config.clone())
            .unwrap_or_else(|| self.default.clone())
    }

    /// Loads the certificates of `sources` (stored ones first, then files).
    async fn load(&self, sources: &[&str]) {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let (routes, stored) = match tokio::try_join!(
            self.store.fetch(sources),
            self.store.certificates(sources)
        ) {
            Ok(found) => found,
            Err(e) => {
                return tracing::debug!(error = %e, "certificates not loaded: store unavailable");
            }
        };
        let fresh_until = if self.epoch.load(Ordering::SeqCst) == epoch {
            Instant::now() + self.ttl
        } else {
            Instant::now()
        };
        let mut loaded = Vec::with_capacity(sources.len());
        for ((source, route), pem) in sources.iter().zip(routes).zip(stored) {
            let files = route.and_then(|r| {
                Some(Files::new(
                    r.settings.certificate_path?.into(),
                    r.settings.key_path?.into(),
                ))
            });
            let result = match (&pem, &files) {
                (Some(pem), _) => Some(certificate::parse_stored(pem)),
                (None, Some(files)) => Some(certificate::load(&files.paths.0, &files.paths.1)),
                (None, None) => None,
            };
            let (config, error) = match result {
                Some(Ok(key)) => (Some(certificate::server_config(key)), None),
                Some(Err(e)) => (None, Some(e)),
                None => (None, None),
            };
            let files = files.filter(|_| pem.is_none());
            loaded.push((
                source.to_string(),
                Entry {
                    config,
                    files,
                    error,
                    fresh_until,
                },
            ));
        }
        let mut entries = self.write();
        if entries.len() + loaded.len() > MAX_ENTRIES {
            entries.clear();
        }
        for (source, entry) in loaded {
            let before = entries.get(&source).and_then(|e| e.error.clone());
            if let Some(error) = &entry.error
                && before.as_ref() != Some(error)
            {
                tracing::error!(%source, %error, "certificate not served; the default answers for this host");
            }
            entries.insert(source, entry);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sources whose certificate may serve `host`, most specific first: the route
/// cache's candidates but the catch-all `$wildcard` (it gets the default).
fn candidates(host: &str) -> Vec<String> {
    cache::candidates(host)
        .filter(|key| *key != WILDCARD)
        .map(cache::source_of)
        .collect()
}
