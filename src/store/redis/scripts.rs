//! The writes, each one atomic Lua script that checks ownership, changes the keys and
//! publishes the notice, so a reader never sees the notice without the data; and their
//! answers, read in one place.

use crate::store::error::StoreError;

/// A route's target, settings and owner (see `write.lua` for its keys and arguments).
pub(super) const WRITE: &str = include_str!("write.lua");

/// A route's delete (see `remove.lua`).
pub(super) const REMOVE: &str = include_str!("remove.lua");

/// A route's stored certificate, set or removed by its owner (see `certificate.lua`).
pub(super) const CERTIFICATE: &str = include_str!("certificate.lua");

/// Releases a lock if the caller still holds it. KEYS: the lock; ARGV: the holder.
pub(super) const UNLOCK: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// Moves a route's last-served time forward only, so replicas never set it back.
/// KEYS: the served key; ARGV: Unix milliseconds.
pub(super) const SERVED: &str = "local at = tonumber(redis.call('GET', KEYS[1]) or '0') \
    if tonumber(ARGV[1]) > at then redis.call('SET', KEYS[1], ARGV[1]) return 1 end return 0";

/// What a script did, when it was allowed to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Written.
    Written,
    /// Deleted; `false` if there was nothing to delete.
    Deleted(bool),
    /// Left alone: the route is not the deleting resource's.
    Kept,
}

/// Reads a script's answer: `ok`, `deleted:<n>`, `kept`, or a refusal (`unowned`,
/// `owned:<owner>`) as the error it stands for.
pub(super) fn outcome(answer: &str) -> Result<Outcome, StoreError> {
    match answer {
        "ok" => Ok(Outcome::Written),
        "kept" => Ok(Outcome::Kept),
        "unowned" => Err(StoreError::Unowned),
        other => match other.strip_prefix("deleted:") {
            Some(n) => Ok(Outcome::Deleted(n != "0")),
            None => Err(StoreError::Owned(
                other.trim_start_matches("owned:").to_owned(),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(outcome("ok").unwrap(), Outcome::Written);
        assert_eq!(outcome("kept").unwrap(), Outcome::Kept);
        assert_eq!(outcome("deleted:1").unwrap(), Outcome::Deleted(true));
        assert_eq!(outcome("deleted:0").unwrap(), Outcome::Deleted(false));
        assert!(matches!(outcome("unowned"), Err(StoreError::Unowned)));
        assert!(matches!(outcome("owned:shop/web"), Err(StoreError::Owned(o)) if o == "shop/web"));
    }
}
