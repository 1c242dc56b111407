//! The key layout, key for key compatible with Ceryx: `<prefix>:routes:<source>`
//! (string, the target) and `<prefix>:settings:<source>` (hash: `enforce_https`
//! "1"/"0", `mode`, optional `certificate_path` / `key_path`). Ours are new keys and a
//! channel: `<prefix>:owners:<source>` (the owning resource), `<prefix>:certs:<source>`
//! (hash: `certificate`, `key`, from a Kubernetes Secret), `<prefix>:rules:<source>`
//! (string: the routing rules as JSON, absent for none), `<prefix>:wake:<source>`
//! (string: how to wake the backend, as JSON, absent for none) and `<prefix>:events`, on
//! which every write is announced. Short-lived, beside the routes: `<prefix>:waking:<source>`
//! and `<prefix>:sleeping:<source>` (locks: which replica wakes, or puts to sleep, the
//! backend), `<prefix>:served:<source>` (when a woken route last served a request,
//! Unix milliseconds) and `<prefix>:wake-request:<source>` (a proxy asks the Kubernetes
//! controller to scale the route's target up; announced on `<prefix>:events` as
//! `!wake <source>`).

/// The keys of one store, under its prefix.
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The target of `source` (all routes: `route("")`, to scan).
    pub(super) fn route(&self, source: &str) -> String {
        format!("{}:routes:{source}", self.prefix)
    }

    pub(super) fn settings(&self, source: &str) -> String {
        format!("{}:settings:{source}", self.prefix)
    }

    pub(super) fn owner(&self, source: &str) -> String {
        format!("{}:owners:{source}", self.prefix)
    }

    pub(super) fn rules(&self, source: &str) -> String {
        format!("{}:rules:{source}", self.prefix)
    }

    pub(super) fn wake(&self, source: &str) -> String {
        format!("{}:wake:{source}", self.prefix)
    }

    /// A short-lived lock on `source` (`waking`, `sleeping`).
    pub(super) fn lock(&self, name: &str, source: &str) -> String {
        format!("{}:{name}:{source}", self.prefix)
    }

    pub(super) fn served(&self, source: &str) -> String {
        format!("{}:served:{source}", self.prefix)
    }

    pub(super) fn wake_request(&self, source: &str) -> String {
        format!("{}:wake-request:{source}", self.prefix)
    }

    pub(super) fn certificate(&self, source: &str) -> String {
        format!("{}:certs:{source}", self.prefix)
    }

    /// The channel change notices are published on.
    pub(super) fn channel(&self) -> String {
        format!("{}:events", self.prefix)
    }
}
