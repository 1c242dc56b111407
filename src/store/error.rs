//! Why a store call failed.

/// Why a store call failed. A failure is never reported as "no route".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Redis did not answer within `CERYX_REDIS_TIMEOUT`.
    #[error("redis did not answer in time")]
    Timeout,
    /// The route belongs to a Kubernetes resource (`<namespace>/<name>`), and this
    /// writer is not it; nothing was changed.
    #[error("the route is owned by CeryxRoute {0}")]
    Owned(String),
    /// The route exists without an owner (written through the REST API or directly),
    /// and the resource did not ask to take it over; nothing was changed.
    #[error("the route exists and is not owned by a CeryxRoute")]
    Unowned,
    /// A recent call failed; the store is not asked again for a moment.
    #[error("route store unavailable")]
    Unavailable,
}
