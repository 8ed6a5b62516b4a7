//! [`Client`]: an application instance's connection to its region, and the objects it opens
//! (feature `client`, on by default).
//!
//! A client talks to the members of one region and fails over between them. All that it
//! decides (which member, when to retry, how copies are opened and fed) is the sans-IO
//! [`crate::session::ClientSession`]; this module is its tokio and gRPC driver. Every object a
//! client opens gets a local copy ([`crate::replica::Replica`]) that starts from the region's
//! newest checkpoint of the object, is brought to the client's position, and from then on is
//! fed from the client's one ordered stream of the region log together with every other copy
//! of the client. A call is proposed with the client's id and a fresh request sequence
//! (retries reuse it, so the region applies the call once) and completes when the local copy
//! has applied it, with the result the method returned there.
//!
//! # Two clients in one process
//! Each `Client` has its own session and position: each is sequentially consistent, but one
//! may stand behind the other. Open every object that must be read consistently with another
//! through the same `Client` (clones share it).

mod config;
mod driver;
pub mod object;

use std::sync::Arc;

pub use config::Config;
pub use object::Object;

use crate::error::CallError;
use crate::object::SharedObject;
use crate::region_client::RegionConnections;
use crate::session::{ClientSession, new_copy};
use driver::Shared;
use dsss_wire::Scope;

pub use crate::session::{CALLS_IN_FLIGHT_MAX, OPEN_OBJECTS_MAX};

/// An application instance's connection to its region. Cheap to clone: clones share one
/// session.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    config: Arc<Config>,
    client_id: u64,
}

impl Client {
    /// Prepares channels to the members of the configured region and starts the client's
    /// session. Nothing is sent until the first object is opened; a region that cannot be
    /// reached then makes `open` fail.
    pub async fn connect(config: Config) -> Result<Client, CallError> {
        config.validate().map_err(CallError::Config)?;
        let connections = RegionConnections::with_security_and_token(
            &config.members,
            &config.security,
            config.bearer_token.as_deref(),
        )
        .map_err(|error| CallError::Config(error.to_string()))?;
        let client_id = config.client_id.unwrap_or_else(fresh_client_id);
        // The session id is fresh even when the client id is configured: a restarted
        // process's calls are never taken for its predecessor's.
        let session = ClientSession::new(config.session_config(client_id), fresh_client_id())?;
        let shared = Shared::start(session, connections, config.region.clone());
        Ok(Client {
            shared,
            config: Arc::new(config),
            client_id,
        })
    }

    /// The id that names this client to the region (configured, or unique per connected
    /// client). Its calls carry a session id, fresh for every connected client.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The region this client talks to.
    pub fn region(&self) -> &str {
        &self.config.region
    }

    /// The log position every copy of this client has applied through.
    pub fn position(&self) -> u64 {
        driver::lock(&self.shared.session).position()
    }

    /// Ends this client: waits for its calls still waiting for the region's acknowledgement to
    /// be acknowledged or give up (each within `call_timeout`), then closes its session in the
    /// region, so the region refuses the session's calls from then on and frees its room among
    /// the region's live sessions at once rather than after the idle timeout. Bounded: it
    /// returns within twice `call_timeout` and a bit, with the reason when the close could not
    /// be confirmed (the region then ends the session after its idle timeout). Calls and opens
    /// through this client or any clone fail from now on; reads of open objects still work.
    /// Dropping the last handle of a client closes the session too, without waiting.
    pub async fn close(&self) -> Result<(), CallError> {
        let (sender, closed) = tokio::sync::oneshot::channel();
        let done = self.shared.command(|session, now_us, waits| {
            if let Some(outcome) = &waits.closed {
                return Some(outcome.clone());
            }
            waits.closes.push(sender);
            session.close_session(now_us);
            None
        });
        if let Some(outcome) = done {
            return outcome;
        }
        let bound = 2 * self.config.call_timeout + self.config.attempt_timeout;
        match tokio::time::timeout(bound, closed).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(CallError::Config("the client's driver stopped".to_owned())),
            Err(_) => Err(CallError::GaveUp {
                attempts: 0,
                elapsed_ms: bound.as_millis() as u64,
                last_error: "the session close got no answer in time".to_owned(),
            }),
        }
    }

    /// A barrier for the whole client: once it returns, reads of any of its objects see every
    /// call that completed anywhere before it was called.
    pub async fn sync(&self) -> Result<(), CallError> {
        object::sync(&self.shared).await
    }

    /// Opens the global object `name` (copies in every region): builds the local copy from
    /// the newest checkpoint and the log after it, brings it to the client's position, then
    /// declares this type's schema in the object's log; an incompatible schema fails with the
    /// method that changed.
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
        T::schema().validate().map_err(|error| CallError::Schema {
            object: name.to_owned(),
            reason: error.to_string(),
        })?;
        let copy = Arc::new(new_copy::<T>(name, self.config.replica));
        let (sender, opened) = tokio::sync::oneshot::channel();
        let view = self.shared.command(|session, now_us, waits| {
            let open_id = session.open(now_us, name, scope, Arc::clone(&copy) as _)?;
            waits.opens.insert(open_id, sender);
            Ok::<_, CallError>(session.view())
        })?;
        let outcome = opened.await.unwrap_or_else(|_| {
            Err(CallError::Stopped {
                object: name.to_owned(),
                reason: "the client was closed".to_owned(),
            })
        });
        outcome?;
        Ok(T::handle(Object {
            inner: Arc::new(object::ObjectInner {
                client: Arc::clone(&self.shared),
                name: name.to_owned(),
                copy,
                view,
            }),
        }))
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
