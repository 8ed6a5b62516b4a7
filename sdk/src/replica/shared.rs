//! [`SharedReplica`]: a replica that one task applies the log to while any number of threads
//! read the object.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::object::SharedObject;
use crate::replica::Replica;

/// A [`Replica`] behind a read-write lock: reads of the object take the read side (many at
/// once, no allocation, no I/O), applying a batch of records takes the write side. This is the
/// whole path of `Object::read`.
pub struct SharedReplica<T: SharedObject> {
    replica: RwLock<Replica<T>>,
}

impl<T: SharedObject> SharedReplica<T> {
    /// Shares `replica`.
    pub fn new(replica: Replica<T>) -> Self {
        SharedReplica {
            replica: RwLock::new(replica),
        }
    }

    /// Runs `read` on the object.
    pub fn read<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        read(self.lock_read().object())
    }

    /// The replica, for reading its position, hash or schema.
    pub fn lock_read(&self) -> RwLockReadGuard<'_, Replica<T>> {
        // A panic while the lock was held happened in the replica's own code, never in a
        // method (those are caught), and left the replica consistent: go on.
        self.replica
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The replica, for applying records.
    pub fn lock_write(&self) -> RwLockWriteGuard<'_, Replica<T>> {
        self.replica
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
