//! [`Object`]: an opened shared object, held by the application.

use std::sync::Arc;

use crate::client::error::CallError;
use crate::object::SharedObject;

/// An opened shared object: a local replica kept up to date from the region's log, the calls
/// that mutate it, reads of the local copy and the `sync` barrier. Cheap to clone; the
/// replica stops following the log when the last clone is dropped.
///
/// Applications hold the typed handle that `#[dsss::shared_object]` generates, which derefs to
/// this type; its methods encode the arguments and call [`Object::call_raw`].
pub struct Object<T: SharedObject> {
    pub(crate) inner: Arc<crate::client::opened::OpenedObject<T>>,
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
    /// the local replica has applied it, and returns the method's encoded result. Retries go to
    /// the region with the same request sequence, so the call is applied once.
    pub async fn call_raw(&self, method_id: u32, arguments: Vec<u8>) -> Result<Vec<u8>, CallError> {
        self.inner.call(method_id, arguments).await
    }

    /// Runs `read` on the local copy. Sequentially consistent: the copy reflects a prefix of
    /// the log that includes every call this client completed.
    pub fn read<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        self.inner.read(read)
    }

    /// A barrier: once it returns, reads see every call that completed anywhere before it was
    /// called (a linearizable read follows).
    pub async fn sync(&self) -> Result<(), CallError> {
        self.inner.sync().await
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The position the local copy has applied through and the SHA-256 of its checkpoint
    /// encoding there: copies at equal positions have equal hashes (DESIGN.md section 6).
    pub fn state_hash(&self) -> (u64, [u8; 32]) {
        self.inner.state_hash()
    }

    /// The log position the local copy has applied through.
    pub fn position(&self) -> u64 {
        self.inner.position()
    }
}
