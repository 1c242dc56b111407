//! The REST API, compatible with every generation of Ceryx's (`/api/routes`, with or
//! without trailing slashes, and the legacy `/route` aliases). Writes go through the
//! route store, so every proxy serves them at once.

pub(crate) mod input;
mod openapi;
mod reply;

pub use reply::ApiError;

use crate::route::{Mode, Route, Upstream, normalize_source};
use crate::store::RouteStore;
use crate::targets::TargetRules;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Router, body::Bytes};
use reply::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest request body the API reads; a route is a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
struct Api {
    store: Arc<dyn RouteStore>,
    token: Option<Arc<str>>,
    targets: Arc<TargetRules>,
}

/// The API's routes over `store`; with `token`, every call but the probes needs
/// `Authorization: Bearer <token>`. Routes whose target `targets` refuses are refused.
pub fn router(store: Arc<dyn RouteStore>, token: Option<String>, targets: TargetRules) -> Router {
    let api = Api {
        store,
        token: token.filter(|t| !t.is_empty()).map(Arc::from),
        targets: Arc::new(targets),
    };
    let collection = get(list).post(create);
    let item = get(read).put(update).delete(remove);
    let routes = Router::new()
        .route("/api/routes", collection.clone())
        .route("/api/routes/", collection.clone())
        .route("/route", collection.clone())
        .route("/route/", collection)
        .route("/api/routes/{source}", item.clone())
        .route("/api/routes/{source}/", item)
        .route("/api/openapi.json", get(openapi::document))
        .route_layer(middleware::from_fn_with_state(api.clone(), authorize));
    let store = api.store.clone();
    Router::new()
        .merge(routes)
        .with_state(api)
        .merge(crate::ops::router(store))
        .fallback(|| async { ApiError::NoSuchPath })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then finishes the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn authorize(
    State(api): State<Api>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(token) = &api.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(next.run(request).await)
}

/// The token of `Bearer <token>` credentials. The scheme is case-insensitive (RFC 9110
/// §11.1) and one or more spaces follow it (§11.4).
fn bearer_token(credentials: &str) -> Option<&str> {
    let (scheme, token) = credentials.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

async fn list(State(api): State<Api>) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &api.store.list().await?))
}

async fn create(
    State(api): State<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let route = reply::route_from(body, None)?;
    check_target(&api, &route)?;
    api.store.put(&route).await.map_err(ApiError::write)?;
    Ok(json(StatusCode::CREATED, &route))
}

async fn read(State(api): State<Api>, Path(source): Path<String>) -> Result<Response, ApiError> {
    match find(&api, &source).await? {
        Some(route) => Ok(json(StatusCode::OK, &route)),
        None => Err(ApiError::NotFound(source)),
    }
}

async fn update(
    State(api): State<Api>,
    Path(source): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let route = reply::route_from(body, Some(&source))?;
    check_target(&api, &route)?;
    api.store.put(&route).await.map_err(ApiError::write)?;
    Ok(json(StatusCode::OK, &route))
}

async fn remove(State(api): State<Api>, Path(source): Path<String>) -> Result<Response, ApiError> {
    // Old tools may have stored a source verbatim (any case): remove that key too.
    if let Ok(normalized) = normalize_source(&source) {
        api.store
            .delete(&normalized)
            .await
            .map_err(ApiError::write)?;
    }
    if normalize_source(&source).ok().as_deref() != Some(source.as_str()) {
        api.store.delete(&source).await.map_err(ApiError::write)?;
    }
    Ok(reply::no_content())
}

/// Refuses a route whose upstreams the target rules refuse: its target (unless it only
/// redirects there) and every URL its rules send to (backends and mirrors).
fn check_target(api: &Api, route: &Route) -> Result<(), ApiError> {
    let refused = |url: &str| {
        Upstream::parse(url)
            .ok()
            .and_then(|upstream| api.targets.refusal(&upstream))
    };
    let invalid = |field: &str, why: String| {
        ApiError::Invalid([(field.to_owned(), why.into())].into_iter().collect())
    };
    if route.settings.mode != Mode::Redirect
        && let Some(why) = refused(&route.target)
    {
        return Err(invalid("target", why));
    }
    for (r, rule) in route.rules.iter().enumerate() {
        for url in rule.backends().flat_map(|backend| backend.urls()) {
            if let Some(why) = refused(url) {
                return Err(invalid("rules", format!("rules[{r}]: {url}: {why}")));
            }
        }
    }
    for (field, url) in route.wake.iter().flat_map(|wake| wake.urls()) {
        if let Some(why) = refused(url) {
            return Err(invalid("wake", format!("{field}: {url}: {why}")));
        }
    }
    Ok(())
}

/// The route for a source as normalised, else as stored verbatim by another tool.
async fn find(api: &Api, source: &str) -> Result<Option<Route>, ApiError> {
    if let Ok(normalized) = normalize_source(source)
        && let Some(route) = api.store.get(&normalized).await?
    {
        return Ok(Some(route));
    }
    Ok(api.store.get(source).await?)
}
