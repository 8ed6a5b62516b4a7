//! [`Client`]: an application instance's connection to its region, and the objects it opens.
//!
//! A client talks to the nodes of one region (any member; it fails over between them). Every
//! object it opens gets a local replica ([`crate::replica::Replica`]) that starts from the
//! region's newest checkpoint of the object plus the log after it, then follows the log. A call
//! is proposed to the region with the client's id and a fresh request sequence (retries reuse
//! it, so the region applies it once) and completes when the local replica has applied it,
//! with the result the method returned there.

mod config;
pub mod error;
pub mod object;
pub(crate) mod opened;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use config::{Config, OPEN_OBJECTS_MAX};
pub use error::CallError;
pub use object::Object;

use crate::object::SharedObject;
use crate::region_client::RegionConnections;
use dsss_wire::Scope;

/// The part of a client its open objects share.
pub(crate) struct ClientShared {
    pub(crate) config: Config,
    pub(crate) connections: RegionConnections,
    pub(crate) client_id: u64,
    next_sequence: AtomicU64,
    pub(crate) calls_in_flight: tokio::sync::Semaphore,
    open_objects: std::sync::Mutex<usize>,
}

impl ClientShared {
    /// The next request sequence of this client.
    pub(crate) fn next_sequence(&self) -> u64 {
        self.next_sequence.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn object_closed(&self) {
        let mut open = self
            .open_objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *open = open.saturating_sub(1);
    }
}

/// An application instance's connection to its region. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    shared: Arc<ClientShared>,
}

impl Client {
    /// Prepares channels to the members of the configured region. Nothing is sent until the
    /// first object is opened; a region that cannot be reached then makes `open` fail.
    pub async fn connect(config: Config) -> Result<Client, CallError> {
        config.validate().map_err(CallError::Config)?;
        let connections = RegionConnections::new(&config.members)?;
        let client_id = config.client_id.unwrap_or_else(fresh_client_id);
        let calls_in_flight = tokio::sync::Semaphore::new(config.calls_in_flight_max);
        Ok(Client {
            shared: Arc::new(ClientShared {
                config,
                connections,
                client_id,
                next_sequence: AtomicU64::new(1),
                calls_in_flight,
                open_objects: std::sync::Mutex::new(0),
            }),
        })
    }

    /// The id this client's calls carry (unique per connected client).
    pub fn client_id(&self) -> u64 {
        self.shared.client_id
    }

    /// The region this client talks to.
    pub fn region(&self) -> &str {
        &self.shared.config.region
    }

    /// Opens the global object `name` (copies in every region): builds the local replica from
    /// the newest checkpoint and the log after it, then declares this type's schema in the
    /// object's log; an incompatible schema fails with the method that changed.
    pub async fn open<T: SharedObject>(&self, name: &str) -> Result<T::Handle, CallError> {
        self.open_with_scope::<T>(name, Scope::Global).await
    }

    /// Opens the regional object `name` of this client's region (copies in this region only,
    /// ordered by the region alone: one round trip inside the region per call).
    pub async fn open_regional<T: SharedObject>(&self, name: &str) -> Result<T::Handle, CallError> {
        self.open_with_scope::<T>(name, Scope::Regional).await
    }

    async fn open_with_scope<T: SharedObject>(
        &self,
        name: &str,
        scope: Scope,
    ) -> Result<T::Handle, CallError> {
        {
            let mut open = self
                .shared
                .open_objects
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if *open >= OPEN_OBJECTS_MAX {
                return Err(CallError::Config(format!(
                    "this client already has {OPEN_OBJECTS_MAX} objects open"
                )));
            }
            *open += 1;
        }
        match opened::OpenedObject::<T>::open(Arc::clone(&self.shared), name, scope).await {
            Ok(inner) => Ok(T::handle(Object { inner })),
            Err(error) => {
                self.shared.object_closed();
                Err(error)
            }
        }
    }
}

/// A client id unlikely to collide with any other client's: 64 bits from the standard
/// library's per-process random hasher keys, mixed with the time and the process id.
fn fresh_client_id() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    // Id 0 is never valid on the wire.
    hasher.finish().max(1)
}
