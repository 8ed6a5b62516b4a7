//! Running a simulated test over many seeds, and replaying one.
//!
//! Every seeded test goes through [`run_seeds`]. It runs the test once per seed and, when one
//! panics, fails with a message that names the seed and the command that replays it:
//!
//! ```text
//! simulation ping_pong failed with seed 17; replay with DSSS_SEED=17 cargo test ping_pong
//! ```
//!
//! Two environment variables steer it: `DSSS_SEED=S` runs only seed `S` (to replay a failure),
//! and `DSSS_SEEDS=N` runs seeds `0..N` instead of the test's default count (to search harder
//! in a long CI job, or less hard on a laptop).

use std::any::Any;
use std::iter::Take;
use std::ops::RangeInclusive;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::trace::Trace;

/// The environment variable that selects one seed.
pub const SEED_VARIABLE: &str = "DSSS_SEED";

/// The environment variable that overrides the number of seeds.
pub const SEED_COUNT_VARIABLE: &str = "DSSS_SEEDS";

/// The most seeds one test runs.
pub const SEED_COUNT_MAX: u64 = 1_000_000;

/// Which seeds a test runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedPlan {
    /// Only this seed: replaying a failure.
    Single(u64),
    /// Seeds `0..count`.
    First {
        /// How many seeds, at least one and at most [`SEED_COUNT_MAX`].
        count: u64,
    },
}

/// An environment variable that does not describe seeds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeedPlanError {
    /// `DSSS_SEED` is not an unsigned 64-bit number.
    #[error("{SEED_VARIABLE}={value:?} is not a seed (an unsigned 64-bit number)")]
    InvalidSeed {
        /// The value found.
        value: String,
    },
    /// `DSSS_SEEDS` is not a number from 1 to [`SEED_COUNT_MAX`].
    #[error("{SEED_COUNT_VARIABLE}={value:?} is not a seed count from 1 to {SEED_COUNT_MAX}")]
    InvalidSeedCount {
        /// The value found.
        value: String,
    },
    /// A variable is not valid Unicode.
    #[error("{variable} is not valid Unicode")]
    NotUnicode {
        /// The variable.
        variable: &'static str,
    },
}

impl SeedPlan {
    /// The plan the environment asks for: `DSSS_SEED` wins over `DSSS_SEEDS`, which wins over
    /// `seed_count_default`.
    pub fn from_environment(seed_count_default: u64) -> Result<SeedPlan, SeedPlanError> {
        let seed = environment_variable(SEED_VARIABLE)?;
        let seed_count = environment_variable(SEED_COUNT_VARIABLE)?;
        SeedPlan::parse(seed.as_deref(), seed_count.as_deref(), seed_count_default)
    }

    /// The plan for the given variable values (`None` when unset).
    pub fn parse(
        seed: Option<&str>,
        seed_count: Option<&str>,
        seed_count_default: u64,
    ) -> Result<SeedPlan, SeedPlanError> {
        if let Some(value) = seed {
            return value.trim().parse().map(SeedPlan::Single).map_err(|_| {
                SeedPlanError::InvalidSeed {
                    value: value.to_owned(),
                }
            });
        }
        let count = match seed_count {
            None => seed_count_default,
            Some(value) => value
                .trim()
                .parse()
                .map_err(|_| SeedPlanError::InvalidSeedCount {
                    value: value.to_owned(),
                })?,
        };
        if !(1..=SEED_COUNT_MAX).contains(&count) {
            return Err(SeedPlanError::InvalidSeedCount {
                value: count.to_string(),
            });
        }
        Ok(SeedPlan::First { count })
    }

    /// The seeds to run, in order.
    pub fn seeds(&self) -> Take<RangeInclusive<u64>> {
        match *self {
            SeedPlan::Single(seed) => (seed..=seed).take(1),
            SeedPlan::First { count } => {
                (0..=u64::MAX).take(usize::try_from(count).unwrap_or(usize::MAX))
            }
        }
    }
}

fn environment_variable(variable: &'static str) -> Result<Option<String>, SeedPlanError> {
    match std::env::var(variable) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(SeedPlanError::NotUnicode { variable }),
    }
}

/// Runs `test` once per seed of the plan the environment selects (by default seeds
/// `0..seed_count_default`). `name` should be the test function's name, so that the replay
/// command printed on failure selects it.
///
/// # Panics
///
/// When `test` panics for a seed (with a message naming the seed and how to replay it), or
/// when `DSSS_SEED` or `DSSS_SEEDS` is malformed.
pub fn run_seeds(name: &str, seed_count_default: u64, test: impl FnMut(u64)) {
    let plan = match SeedPlan::from_environment(seed_count_default) {
        Ok(plan) => plan,
        Err(error) => panic!("simulation {name}: {error}"),
    };
    run_seed_plan(name, plan, test);
}

/// Runs `test` once per seed of `plan`, stopping at the first seed that panics.
///
/// # Panics
///
/// When `test` panics for a seed, with the message
/// `simulation NAME failed with seed S; replay with DSSS_SEED=S cargo test NAME` followed by
/// the original panic message.
pub fn run_seed_plan(name: &str, plan: SeedPlan, mut test: impl FnMut(u64)) {
    for seed in plan.seeds() {
        let outcome = catch_unwind(AssertUnwindSafe(|| test(seed)));
        if let Err(payload) = outcome {
            let report = format!(
                "simulation {name} failed with seed {seed}; replay with {SEED_VARIABLE}={seed} \
                 cargo test {name}\ncause: {}",
                panic_message(payload.as_ref())
            );
            // Printed as well as raised, so the seed shows even when a harness swallows the
            // panic message.
            eprintln!("{report}");
            panic!("{report}");
        }
    }
}

/// Runs `run` twice with `seed` and checks that both traces hash alike.
///
/// # Panics
///
/// When the traces differ, showing the first line that differs and the seed.
pub fn assert_deterministic(name: &str, seed: u64, mut run: impl FnMut(u64) -> Trace) {
    let first = run(seed);
    let second = run(seed);
    if let Some(difference) = first.first_difference(&second) {
        panic!(
            "simulation {name} is not deterministic with seed {seed} (replay with \
             {SEED_VARIABLE}={seed} cargo test {name}): {difference}"
        );
    }
}

/// The text of a panic payload, when it is a string.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(a panic without a text message)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_count_applies_without_variables() {
        let plan = SeedPlan::parse(None, None, 5).unwrap();
        assert_eq!(plan, SeedPlan::First { count: 5 });
        assert_eq!(plan.seeds().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn one_seed_wins_over_a_count() {
        let plan = SeedPlan::parse(Some("42"), Some("9"), 5).unwrap();
        assert_eq!(plan, SeedPlan::Single(42));
        assert_eq!(plan.seeds().collect::<Vec<_>>(), [42]);
        assert_eq!(
            SeedPlan::Single(u64::MAX).seeds().collect::<Vec<_>>(),
            [u64::MAX]
        );
    }

    #[test]
    fn the_count_variable_overrides_the_default() {
        let plan = SeedPlan::parse(None, Some("3"), 100).unwrap();
        assert_eq!(plan.seeds().collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        assert_eq!(
            SeedPlan::parse(Some("seven"), None, 5),
            Err(SeedPlanError::InvalidSeed {
                value: "seven".into()
            })
        );
        assert!(SeedPlan::parse(None, Some("-1"), 5).is_err());
        assert!(SeedPlan::parse(None, Some("0"), 5).is_err());
        assert!(SeedPlan::parse(None, None, SEED_COUNT_MAX + 1).is_err());
        assert_eq!(SeedPlan::First { count: 0 }.seeds().count(), 0);
    }
}
