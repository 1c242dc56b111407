//! API answers: JSON written with Python's separators (as Ceryx's `json.dumps`), and
//! every error as a status with a JSON `detail`.

use super::input::{FieldErrors, parse_route};
use crate::route::Route;
use crate::store::StoreError;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::ser::Formatter;
use std::io;

/// Why an API call failed; each maps to one status and a JSON body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No route for this source (Ceryx's 404 body).
    #[error("No route found for {0}.")]
    NotFound(String),
    /// The body is not valid JSON.
    #[error("The request body is not valid JSON: {0}")]
    BadJson(String),
    /// Fields failed validation.
    #[error("Invalid route.")]
    Invalid(FieldErrors),
    /// The body is larger than the API accepts.
    #[error("The request body is too large.")]
    TooLarge,
    /// The body could not be read.
    #[error("The request body could not be read.")]
    BadBody,
    /// Missing or wrong bearer token.
    #[error("Missing or invalid bearer token.")]
    Unauthorized,
    /// No such endpoint.
    #[error("Not found.")]
    NoSuchPath,
    /// The endpoint exists, the method does not.
    #[error("Method not allowed.")]
    MethodNotAllowed,
    /// The route belongs to a Kubernetes resource; nothing was changed.
    #[error("The route is managed by CeryxRoute {0}; change it through Kubernetes.")]
    Owned(String),
    /// The route store failed a read.
    #[error("The route store is unavailable: {0}")]
    Store(StoreError),
    /// A write the store refused or never received: nothing was changed.
    #[error("The route store is unavailable ({0}); nothing was changed.")]
    NotWritten(StoreError),
    /// A write the store did not confirm (its answer was lost, or too few replicas had
    /// it in time): it may or may not have been kept.
    #[error(
        "The route store did not confirm the write ({0}); it may or may not have been kept. Read the route back, or repeat the write."
    )]
    Unconfirmed(StoreError),
}

impl ApiError {
    /// The answer to a failed write: says whether the route may have changed.
    pub(crate) fn write(e: StoreError) -> ApiError {
        match e {
            StoreError::Owned(owner) => ApiError::Owned(owner),
            e if e.may_have_written() => ApiError::Unconfirmed(e),
            e => ApiError::NotWritten(e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Owned(owner) => ApiError::Owned(owner),
            other => ApiError::Store(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::NotFound(_) | ApiError::NoSuchPath => StatusCode::NOT_FOUND,
            ApiError::BadJson(_) | ApiError::Invalid(_) | ApiError::BadBody => {
                StatusCode::BAD_REQUEST
            }
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Owned(_) => StatusCode::CONFLICT,
            ApiError::Store(_) | ApiError::NotWritten(_) | ApiError::Unconfirmed(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        if let ApiError::Store(e) | ApiError::NotWritten(e) | ApiError::Unconfirmed(e) = &self {
            tracing::warn!(error = %e, "API call failed on the route store");
        }
        let mut body = serde_json::json!({"detail": self.to_string()});
        if let ApiError::Invalid(errors) = self {
            body["errors"] = errors.into();
        }
        let mut response = json(status, &body);
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Reads a route from a request body; `path_source` is the source in the URL, if any.
pub fn route_from(
    body: Result<Bytes, BytesRejection>,
    path_source: Option<&str>,
) -> Result<Route, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge,
        _ => ApiError::BadBody,
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(e.to_string()))?;
    parse_route(&value, path_source).map_err(ApiError::Invalid)
}

/// A JSON response written like Python's `json.dumps` (`", "` and `": "`).
pub fn json(status: StatusCode, value: &impl Serialize) -> Response {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    if value.serialize(&mut serializer).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = Response::new(Body::from(out));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// 204, no body.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}
