//! [`Object`]: an opened shared object, held by the application.

use std::sync::{Arc, RwLock};

use crate::client::driver::Shared;
use crate::error::CallError;
use crate::object::SharedObject;
use crate::replica::SharedReplica;

/// What the clones of one opened object share; the last one closes the object.
pub(crate) struct ObjectInner<T: SharedObject> {
    pub(crate) client: Arc<Shared>,
    pub(crate) name: String,
    pub(crate) copy: Arc<SharedReplica<T>>,
    pub(crate) view: Arc<RwLock<()>>,
}

impl<T: SharedObject> Drop for ObjectInner<T> {
    fn drop(&mut self) {
        let name = self.name.clone();
        self.client
            .command(|session, now_us, _| session.close(now_us, &name));
    }
}

/// An opened shared object: a local copy kept up to date from the region's log, the calls
/// that mutate it, reads of the local copy and the `sync` barrier. Cheap to clone; the copy
/// stops following the log when the last clone is dropped.
///
/// Every object a [`crate::Client`] opens follows the log through the client's one session,
/// so the copies of one client stand at one position: a read of any of them reflects every
/// call the client saw complete, and everything any earlier read of any of them showed.
///
/// Applications hold the typed handle that `#[dsss::shared_object]` generates, which derefs to
/// this type; its methods encode the arguments and call [`Object::call_raw`].
pub struct Object<T: SharedObject> {
    pub(crate) inner: Arc<ObjectInner<T>>,
}

impl<T: SharedObject> Clone for Object<T> {
    fn clone(&self) -> Self {
        Object {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: SharedObject> Object<T> {
    /// Orders one call of the mutating method `method_id` with encoded `arguments`, waits until
    /// the local copy has applied it, and returns the method's encoded result. Retries go to
    /// the region with the same request sequence, so the call is applied once.
    pub async fn call_raw(&self, method_id: u32, arguments: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let (sender, outcome) = tokio::sync::oneshot::channel();
        self.inner.client.command(|session, now_us, waits| {
            let call_id = session.call(now_us, &self.inner.name, method_id, arguments)?;
            waits.calls.insert(call_id, sender);
            Ok::<(), CallError>(())
        })?;
        outcome
            .await
            .unwrap_or_else(|_| Err(closed(&self.inner.name)))
    }

    /// Runs `read` on the local copy. Sequentially consistent: the copy reflects a prefix of
    /// the log that includes every call this client completed and everything earlier reads of
    /// this client's objects showed.
    pub fn read<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        let _view = self
            .inner
            .view
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.inner.copy.read(read)
    }

    /// A barrier for the whole client: once it returns, reads of any of its objects see every
    /// call that completed anywhere before it was called (a linearizable read follows).
    pub async fn sync(&self) -> Result<(), CallError> {
        sync(&self.inner.client).await
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The position the local copy has applied through and the SHA-256 of its checkpoint
    /// encoding there: copies at equal positions have equal hashes (docs/design.md section 6).
    pub fn state_hash(&self) -> (u64, [u8; 32]) {
        let _view = self
            .inner
            .view
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let replica = self.inner.copy.lock_read();
        (replica.position(), replica.state_hash())
    }

    /// The log position the local copy has applied through.
    pub fn position(&self) -> u64 {
        self.inner.copy.lock_read().position()
    }
}

/// A `sync()` barrier of the client behind `client`.
pub(crate) async fn sync(client: &Shared) -> Result<(), CallError> {
    let (sender, outcome) = tokio::sync::oneshot::channel();
    client.command(|session, now_us, waits| {
        let sync_id = session.sync(now_us)?;
        waits.syncs.insert(sync_id, sender);
        Ok::<(), CallError>(())
    })?;
    outcome
        .await
        .unwrap_or_else(|_| Err(closed(&client.region)))
}

fn closed(name: &str) -> CallError {
    CallError::Stopped {
        object: name.to_owned(),
        reason: "the client was closed".to_owned(),
    }
}
