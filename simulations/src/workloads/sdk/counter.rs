//! The counter workload: one global `dsss_examples::Counter`; instances in every region add
//! random amounts (negative ones too) and read the value. The counter has no invariant of its
//! own: what an application relies on is what the generic checkers verify, that every add
//! returns and every read shows what a replay of the one order gives at its place.

use dsss::{Codec, MethodError, Postcard};

use super::ObjectWorkload;
use super::history::CallSpec;
use crate::random::SimRng;

/// The object name of the counter in counter runs.
pub const COUNTER_OBJECT_ID: &str = "sim/counter";

/// The method id of `add(amount: i64) -> i64`.
pub const ADD_METHOD_ID: u32 = 1;

/// The largest amount, up or down, one add of a standard counter run moves the counter by.
pub const COUNTER_AMOUNT_MAX: i64 = 100;

/// The largest amount a counter workload may be asked to add: far from the ends of `i64`, so
/// that no run wraps the counter and a wrapped value stands out.
pub const AMOUNT_LIMIT_MAX: i64 = 1 << 40;

/// What a counter read asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterRead {
    /// `value()`.
    Value,
}

/// The counter workload. See the module documentation.
#[derive(Clone, Debug)]
pub struct CounterWorkload {
    object_id: String,
    amount_max: i64,
}

impl CounterWorkload {
    /// A counter named `object_id` whose adds move it by `-amount_max..=amount_max`
    /// (`amount_max` in 1..=[`AMOUNT_LIMIT_MAX`]).
    pub fn new(object_id: &str, amount_max: i64) -> Result<Self, String> {
        if !(1..=AMOUNT_LIMIT_MAX).contains(&amount_max) {
            return Err(format!(
                "amount_max {amount_max} is outside 1..={AMOUNT_LIMIT_MAX}"
            ));
        }
        Ok(CounterWorkload {
            object_id: object_id.to_string(),
            amount_max,
        })
    }

    /// The call `add(amount)`.
    pub fn add(amount: i64) -> CallSpec {
        CallSpec {
            method_id: ADD_METHOD_ID,
            arguments: Postcard::encode(&(amount,)).expect("an integer always encodes"),
        }
    }
}

impl ObjectWorkload for CounterWorkload {
    type Object = dsss_examples::Counter;
    type Read = CounterRead;
    type Value = i64;

    fn object_id(&self) -> &str {
        &self.object_id
    }

    fn setup_calls(&self) -> Vec<CallSpec> {
        // A new counter holds 0, which is a fine start.
        Vec::new()
    }

    fn is_set_up(&self, _object: &dsss_examples::Counter) -> bool {
        true
    }

    fn random_call(&self, rng: &mut SimRng) -> CallSpec {
        Self::add(rng.range_inclusive_i64(-self.amount_max, self.amount_max))
    }

    fn random_read(&self, _rng: &mut SimRng) -> CounterRead {
        CounterRead::Value
    }

    fn read(&self, object: &dsss_examples::Counter, read: &CounterRead) -> i64 {
        match read {
            CounterRead::Value => object.value(),
        }
    }

    fn check_read(&self, _read: &CounterRead, _value: &i64) -> Result<(), String> {
        // Any value can be right: only a replay of the order says which one is.
        Ok(())
    }

    fn is_refusal(&self, _call: &CallSpec, _outcome: &Result<Vec<u8>, MethodError>) -> bool {
        // An add never refuses.
        false
    }
}

/// The counter workload of a standard counter run.
pub fn counter_workload() -> CounterWorkload {
    CounterWorkload {
        object_id: COUNTER_OBJECT_ID.to_string(),
        amount_max: COUNTER_AMOUNT_MAX,
    }
}
