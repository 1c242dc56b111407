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
    /// The sentinels have named no reachable primary yet (at start, or during a
    /// failover); nothing was sent.
    #[error("no redis primary known yet (asking the sentinels)")]
    NoPrimary,
    /// A sentinel announced a failover: writes wait for the new primary (the old one
    /// could still take them, and lose them when it is demoted); nothing was sent.
    #[error("a failover of the redis primary is under way")]
    FailingOver,
    /// A sentinel address that is neither `host:port` nor a URL.
    #[error("not a sentinel address (host:port): {0:?}")]
    Sentinel(String),
    /// The primary applied the write, but fewer replicas than required confirmed it in
    /// time (`WAIT`): a failover now could lose it.
    #[error(
        "the redis primary applied the write but {confirmed} of {wanted} replicas confirmed it in time"
    )]
    NotReplicated {
        /// Replicas required.
        wanted: usize,
        /// Replicas that confirmed.
        confirmed: usize,
    },
}

impl StoreError {
    /// Whether a write that failed with this error may still have been applied (and be
    /// read back later): the command was sent and its answer lost or late, or the
    /// primary applied it without replicas confirming it. `false` when nothing was sent
    /// or Redis refused the command.
    pub(crate) fn may_have_written(&self) -> bool {
        match self {
            StoreError::Timeout | StoreError::NotReplicated { .. } => true,
            StoreError::Redis(e) => {
                !(e.is_connection_refusal()
                    || matches!(
                        e.kind(),
                        ::redis::ErrorKind::Server(_)
                            | ::redis::ErrorKind::AuthenticationFailed
                            | ::redis::ErrorKind::InvalidClientConfig
                    ))
            }
            StoreError::Owned(_)
            | StoreError::Unowned
            | StoreError::Unavailable
            | StoreError::NoPrimary
            | StoreError::FailingOver
            | StoreError::Sentinel(_) => false,
        }
    }
}
