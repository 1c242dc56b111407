//! The certificate for each TLS handshake, by SNI: the route's own (stored by the
//! controller, else the PEM files its settings name), else that of the most specific
//! `*.suffix` route that has one, else the default. Certificates live with the routes
//! in the [`RouteCache`], so a change notice, the cache TTL or a replaced file loads a
//! route's again; one that cannot be loaded is passed over for the next.

use super::cache::{Resolved, RouteCache};
use crate::certificate::Served;
use crate::route::normalize_host;
use rustls::ServerConfig;
use std::sync::Arc;

/// The TLS configurations served, by SNI.
pub struct Certificates {
    routes: Arc<RouteCache>,
    default: Arc<ServerConfig>,
}

impl Certificates {
    /// Certificates of the routes in `routes`, with `default` for every host without
    /// its own.
    pub fn new(routes: Arc<RouteCache>, default: Arc<ServerConfig>) -> Arc<Self> {
        Arc::new(Certificates { routes, default })
    }

    /// The configuration for a handshake that named `sni` (or none). Never fails: the
    /// default answers when nothing better is known or loadable.
    pub async fn config_for(&self, sni: Option<&str>) -> Arc<ServerConfig> {
        let Some(host) = sni.and_then(normalize_host) else {
            return self.default.clone();
        };
        // The routes whose certificate is not loaded yet (fetched for a request, not by a
        // handshake), and the first after them that has one: loaded and chosen from
        // without a second lookup.
        let mut kept: Vec<Arc<Resolved>> = Vec::new();
        for resolved in self.routes.routes_for(&host).await {
            match resolved.certificate().served(&resolved.route.source) {
                Served::Config(config) if kept.is_empty() => return config,
                Served::Config(_) => {
                    kept.push(resolved);
                    break;
                }
                Served::Unloaded => kept.push(resolved),
                Served::Nothing => {}
            }
        }
        if kept.is_empty() {
            return self.default.clone();
        }
        self.load(&kept).await;
        kept.iter()
            .find_map(|r| match r.certificate().served(&r.route.source) {
                Served::Config(config) => Some(config),
                _ => None,
            })
            .unwrap_or_else(|| self.default.clone())
    }

    /// Loads the certificates of those `routes` not loaded yet, in one store call; in an
    /// outage they stay unloaded (the next handshake tries again once the store is back).
    async fn load(&self, routes: &[Arc<Resolved>]) {
        let routes: Vec<&Arc<Resolved>> = routes
            .iter()
            .filter(|r| matches!(r.certificate().served(&r.route.source), Served::Unloaded))
            .collect();
        let sources: Vec<&str> = routes.iter().map(|r| r.route.source.as_str()).collect();
        match self.routes.certificates(&sources).await {
            Ok(stored) => {
                for (resolved, pem) in routes.iter().zip(stored) {
                    let (route, slot) = (&resolved.route, resolved.certificate());
                    slot.fill(&route.source, &route.settings, pem.as_ref());
                }
            }
            Err(e) => tracing::debug!(error = %e, "certificates not loaded: store unavailable"),
        }
    }
}
