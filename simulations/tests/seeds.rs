//! The seed helpers: a failure names its seed and how to replay it, and a nondeterministic
//! run is caught with the first line where its two traces differ.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};

use dsss_simulations::seeds::SeedPlan;
use dsss_simulations::{Trace, assert_deterministic, run_seed_plan, run_seeds};

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .unwrap_or_default(),
    }
}

#[test]
fn a_failing_seed_is_reported_with_its_replay_command() {
    let seeds_run = RefCell::new(Vec::new());
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        run_seed_plan("flaky_workload", SeedPlan::First { count: 10 }, |seed| {
            seeds_run.borrow_mut().push(seed);
            assert!(seed != 3, "invariant broken at seed {seed}");
        });
    }));
    let text = panic_text(outcome.unwrap_err());
    assert!(
        text.starts_with(
            "simulation flaky_workload failed with seed 3; replay with DSSS_SEED=3 cargo test \
             flaky_workload"
        ),
        "{text}"
    );
    assert!(text.contains("invariant broken at seed 3"), "{text}");
    // The helper stops at the first failing seed.
    assert_eq!(*seeds_run.borrow(), [0, 1, 2, 3]);
}

#[test]
fn a_single_seed_plan_runs_only_that_seed() {
    let seeds_run = RefCell::new(Vec::new());
    run_seed_plan("replay", SeedPlan::Single(17), |seed| {
        seeds_run.borrow_mut().push(seed)
    });
    assert_eq!(*seeds_run.borrow(), [17]);
}

#[test]
fn run_seeds_reports_the_seed_the_environment_selected() {
    // DSSS_SEED or DSSS_SEEDS may be set for the whole test run; the first seed of whatever
    // plan they select is the one that must be reported.
    let first_seed = SeedPlan::from_environment(5)
        .unwrap()
        .seeds()
        .next()
        .unwrap();
    let outcome = catch_unwind(|| {
        run_seeds("always_fails", 5, |_| panic!("no seed passes"));
    });
    let text = panic_text(outcome.unwrap_err());
    assert!(
        text.starts_with(&format!(
            "simulation always_fails failed with seed {first_seed}; replay with \
             DSSS_SEED={first_seed}"
        )),
        "{text}"
    );
}

#[test]
fn run_seeds_passes_when_every_seed_passes() {
    let runs = Cell::new(0u64);
    run_seeds("always_passes", 3, |_| runs.set(runs.get() + 1));
    let expected = SeedPlan::from_environment(3).unwrap().seeds().count() as u64;
    assert_eq!(runs.get(), expected);
}

#[test]
fn assert_deterministic_shows_the_first_differing_line() {
    let runs = Cell::new(0u32);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        assert_deterministic("leaky_workload", 9, |seed| {
            runs.set(runs.get() + 1);
            let mut trace = Trace::new();
            trace.record(&format!("seed {seed}"));
            // State that leaks from one run into the next: the bug this check exists for.
            trace.record(&format!("run {}", runs.get()));
            trace.record("end");
            trace
        });
    }));
    let text = panic_text(outcome.unwrap_err());
    assert!(
        text.contains("leaky_workload is not deterministic with seed 9"),
        "{text}"
    );
    assert!(text.contains("trace line 1 differs"), "{text}");
    assert!(text.contains("run 1") && text.contains("run 2"), "{text}");
}

#[test]
fn assert_deterministic_accepts_a_deterministic_run() {
    assert_deterministic("steady", 4, |seed| {
        let mut trace = Trace::new();
        trace.record(&format!("seed {seed}"));
        trace
    });
}
