//! [`Counter`]: the smallest shared object.

use serde::{Deserialize, Serialize};

/// A counter shared by every instance of an application.
#[dsss::shared_object]
#[derive(Default, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    value: i64,
}

#[dsss::methods]
impl Counter {
    /// Adds `amount` (which may be negative) and returns the new value.
    #[mutate(id = 1)]
    pub fn add(&mut self, amount: i64) -> i64 {
        self.value = self.value.wrapping_add(amount);
        self.value
    }

    /// The value.
    pub fn value(&self) -> i64 {
        self.value
    }
}
