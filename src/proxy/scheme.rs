//! The scheme a request came in with, as the listener or a trusted proxy in front of us
//! saw it.

/// `http` or `https`: the listener's, or the client's as told by a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The scheme's name, as in a URL and `X-Forwarded-Proto`.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The scheme an `X-Forwarded-Proto` value names, if it is one of ours (exactly, as
    /// balancers send it).
    pub(crate) fn from_forwarded(value: &[u8]) -> Option<Scheme> {
        match value {
            b"https" => Some(Scheme::Https),
            b"http" => Some(Scheme::Http),
            _ => None,
        }
    }
}
