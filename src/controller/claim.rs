//! What one Kubernetes object asks of one host, in the route model. Ingresses and
//! HTTPRoutes both translate into claims; one merge turns every claim on a host into the
//! route the store holds (oldest object first), and tells each object how it fared.

use crate::route::rules::Rule;

/// The object a claim comes from. Orders oldest first (then by kind, namespace, name),
/// which is the conflict rule: the older object keeps a contested host and path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Origin {
    /// `metadata.creationTimestamp`, seconds since the epoch.
    pub created: i64,
    /// `Ingress` or `HTTPRoute`.
    pub kind: &'static str,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A Secret, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SecretRef {
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
}

/// What `origin` asks of `host`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Claim {
    /// Who asks.
    pub origin: Origin,
    /// The host, normalized as a route source (`app.example.com`, `*.example.com`).
    pub host: String,
    /// Rules in the route model. A Service backend is a `service` reference with its
    /// namespace set; the merge resolves it to the Service's ready endpoints.
    pub rules: Vec<Rule>,
    /// Plain HTTP is answered with a redirect to HTTPS.
    pub enforce_https: bool,
    /// The Service backends speak TLS whatever their `appProtocol` says (ingress-nginx's
    /// `backend-protocol: HTTPS`).
    pub backend_tls: bool,
    /// The certificate for `host`, from a `kubernetes.io/tls` Secret.
    pub tls: Option<SecretRef>,
}
