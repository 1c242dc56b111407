//! Ceryx: a dynamic reverse proxy. Every public host name maps to a target, and a route
//! change is served at once, with no reload and no failed request.

pub mod api;
pub mod certificate;
pub mod config;
pub mod controller;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod ops;
pub mod proxy;
pub mod route;
pub mod store;
mod sync;
pub mod targets;
pub mod telemetry;
