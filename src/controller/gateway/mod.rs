//! Gateway API (standard channel): GatewayClass, Gateway, HTTPRoute and ReferenceGrant,
//! read into the same claims on hosts as Ingresses, with the status the spec asks of
//! an implementation.

pub(crate) mod runtime;
pub(crate) mod status;
pub(crate) mod translate;
pub(crate) mod types;
