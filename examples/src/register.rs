//! [`Register`]: one value, written whole. Its write returns the value it replaced, so a
//! history of writes and reads fixes the order of the writes by their results alone: the
//! shape that consistency checks of many objects at once rely on. A write may carry a payload
//! kept beside the value, so that simulated and benchmarked writes can have a chosen size.

use serde::{Deserialize, Serialize};

/// A register shared by every instance of an application; 0 until the first write.
#[dsss::shared_object]
#[derive(Default, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    value: u64,
    /// The bytes the last write carried (empty after a plain `write`).
    payload: Vec<u8>,
}

#[dsss::methods]
impl Register {
    /// Writes `value` and returns the value it replaced.
    #[mutate(id = 1)]
    pub fn write(&mut self, value: u64) -> u64 {
        self.payload.clear();
        std::mem::replace(&mut self.value, value)
    }

    /// Writes `value` with `payload` kept beside it, and returns the value it replaced.
    #[mutate(id = 2)]
    pub fn write_with_payload(&mut self, value: u64, payload: Vec<u8>) -> u64 {
        self.payload = payload;
        std::mem::replace(&mut self.value, value)
    }

    /// The value.
    pub fn value(&self) -> u64 {
        self.value
    }

    /// The size of the payload the last write carried, in bytes.
    pub fn payload_len(&self) -> usize {
        self.payload.len()
    }
}
