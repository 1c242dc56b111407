//! Where routes live. The proxy reads through a [`RouteStore`]; writers (REST API,
//! controller) write through it, so every write also raises a change notice.

mod error;
mod memory;
mod notice;
pub(crate) mod redis;
mod route_store;
mod writer;

pub use self::error::StoreError;
pub use self::memory::MemoryStore;
pub use self::notice::{Change, Progress, Subscription};
pub use self::redis::{RedisConfig, RedisStore};
pub use self::route_store::{CertificatePem, Lock, RouteStore};
pub use self::writer::Writer;
