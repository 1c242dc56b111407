//! Who may change which route: the ownership rules every store applies in the same
//! atomic step as the write.

use super::error::StoreError;

/// Who writes a route, which decides whether the write may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer<'a> {
    /// The REST API (or a test, or a tool): may change any route no resource owns.
    Api,
    /// A `CeryxRoute` (`<namespace>/<name>`): may change the routes it owns, claim
    /// hosts nobody has, and take over an unowned route only when it says so.
    Resource {
        /// `<namespace>/<name>` of the resource.
        owner: &'a str,
        /// Take over a route that exists without an owner.
        take_unowned: bool,
    },
    /// A `CeryxRoute` taking a host from the resource that holds it (a newer one, or
    /// one that no longer exists): succeeds only while `from` still holds it.
    TakeOver {
        /// `<namespace>/<name>` of the new owner.
        owner: &'a str,
        /// `<namespace>/<name>` of the owner it replaces.
        from: &'a str,
    },
}

impl Writer<'_> {
    /// Decides a write or delete, given the route's current owner and whether it exists.
    pub fn may_change(&self, owner: Option<&str>, exists: bool) -> Result<(), StoreError> {
        match (self, owner) {
            (Writer::TakeOver { from, .. }, Some(current)) if current == *from => Ok(()),
            (_, Some(current)) if Some(current) != self.owner() => {
                Err(StoreError::Owned(current.to_owned()))
            }
            (
                Writer::Resource {
                    take_unowned: false,
                    ..
                },
                None,
            ) if exists => Err(StoreError::Unowned),
            _ => Ok(()),
        }
    }

    /// Decides a delete: `Ok(true)` to delete, `Ok(false)` to leave a route that is not
    /// this resource's alone, `Err` when the REST API touches an owned route.
    pub fn may_remove(&self, owner: Option<&str>) -> Result<bool, StoreError> {
        match (self, owner) {
            (Writer::Api, None) => Ok(true),
            (Writer::Api, Some(current)) => Err(StoreError::Owned(current.to_owned())),
            (Writer::Resource { owner: me, .. } | Writer::TakeOver { owner: me, .. }, current) => {
                Ok(current == Some(*me))
            }
        }
    }

    /// The owner recorded by this writer, if any.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Writer::Api => None,
            Writer::Resource { owner, .. } | Writer::TakeOver { owner, .. } => Some(owner),
        }
    }

    /// The owner a take-over replaces, if this is one.
    pub fn replaces(&self) -> Option<&str> {
        match self {
            Writer::TakeOver { from, .. } => Some(from),
            _ => None,
        }
    }
}
