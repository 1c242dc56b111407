//! What a reference proxy (nginx, HAProxy) is set up with: the ports it listens on and
//! what it routes, shared by the rig that starts them and the modules that configure them.

use crate::process::{free_port, wait_listening};

/// The ports a proxy under test listens on, one per kind of load.
#[derive(Clone, Copy)]
pub struct Front {
    /// HTTP/1.1 for one host.
    pub http: u16,
    /// HTTP/1.1 routed by `Host` over the spread hosts.
    pub spread: u16,
    /// HTTP/2 cleartext with prior knowledge.
    pub h2c: u16,
    /// HTTPS: HTTP/1.1, or h2 by ALPN.
    pub tls: u16,
}

impl Front {
    /// Four free ports, for nginx and HAProxy (Ceryx serves all but HTTPS on one port).
    pub fn free() -> Front {
        Front {
            http: free_port(),
            spread: free_port(),
            h2c: free_port(),
            tls: free_port(),
        }
    }

    /// Returns once every port listens.
    pub async fn wait(&self) {
        for port in [self.http, self.spread, self.h2c, self.tls] {
            wait_listening(port).await;
        }
    }
}

/// What nginx and HAProxy route to, as Ceryx's store does: every spread host to upstream
/// "a", `/upload` to the sink.
pub struct Routing {
    pub upstream: u16,
    pub sink: u16,
    pub hosts: Vec<String>,
}
