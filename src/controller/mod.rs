//! The Kubernetes side: the `CeryxRoute` custom resource and its reconciler.

pub mod crd;
pub mod reconcile;

pub use crd::{CeryxRoute, CeryxRouteSpec, CeryxRouteStatus};

/// The CRD as YAML, exactly as `crds/ceryxroute.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&CeryxRoute::crd())
}
