//! [`Register`]: one value, written whole. Its write returns the value it replaced, so a
//! history of writes and reads fixes the order of the writes by their results alone: the
//! shape that consistency checks of many objects at once rely on.

use serde::{Deserialize, Serialize};

/// A register shared by every instance of an application; 0 until the first write.
#[dsss::shared_object]
#[derive(Default, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    value: u64,
}

#[dsss::methods]
impl Register {
    /// Writes `value` and returns the value it replaced.
    #[mutate(id = 1)]
    pub fn write(&mut self, value: u64) -> u64 {
        std::mem::replace(&mut self.value, value)
    }

    /// The value.
    pub fn value(&self) -> u64 {
        self.value
    }
}
