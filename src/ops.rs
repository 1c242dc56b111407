//! The ops endpoints of every process: health probes (`/healthz`, `/readyz`) and
//! Prometheus metrics (`/metrics`). The REST API serves them on its own listener;
//! `CERYX_METRICS_ADDR` serves them for processes without the API (proxy-only pods, the
//! controller). Their few error answers are their own, shaped as the API's.

use crate::store::{RouteStore, StoreError};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

/// The probes over `store` (`/healthz` answers while the process runs, `/readyz` while
/// the store answers too) and `/metrics`.
pub fn router(store: Arc<dyn RouteStore>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(store)
}

/// [`router`] alone, answering 404 elsewhere: the `CERYX_METRICS_ADDR` listener.
pub fn standalone(store: Arc<dyn RouteStore>) -> Router {
    router(store).fallback(|| async { detail(StatusCode::NOT_FOUND, "Not found.") })
}

async fn healthz() -> Response {
    status("ok")
}

async fn readyz(State(store): State<Arc<dyn RouteStore>>) -> Response {
    match store.ping().await {
        Ok(()) => status("ready"),
        Err(e) => unavailable(&e),
    }
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render(),
    )
        .into_response()
}

fn status(word: &str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"status\": \"{word}\"}}"),
    )
        .into_response()
}

/// Not ready: the store failed its ping (503, as the API answers a store failure).
fn unavailable(e: &StoreError) -> Response {
    tracing::warn!(error = %e, "readiness probe failed on the route store");
    detail(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("The route store is unavailable: {e}"),
    )
}

/// An error as the API writes one: `{"detail": "<message>"}`.
fn detail(status: StatusCode, message: &str) -> Response {
    let body = format!("{{\"detail\": {}}}", serde_json::Value::from(message));
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
