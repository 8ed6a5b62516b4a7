//! Property tests of the hybrid logical clock (docs/design.md section 2, "HLC": the clock must be
//! monotonic under every interleaving, and a maximum tolerated skew is enforced).
//!
//! Each case runs a few nodes, each with its own physical clock that advances, stalls, and
//! jumps backwards and forwards (within and beyond the skew bound), through a random sequence of
//! local events, sends, and receives of in-flight messages in random order. After every event
//! the test checks:
//! - monotonicity: each node's timestamps strictly increase;
//! - causality: an accepted receive returns a timestamp greater than the message's send
//!   timestamp and than the node's previous timestamp;
//! - the skew bound: a receive is rejected exactly when the message's physical part is more
//!   than the maximum skew ahead of the receiver's physical clock, and a rejection leaves the
//!   receiver's clock unchanged;
//! - boundedness: the logical counter never exceeds the number of clock events so far, and the
//!   physical part is never behind the node's physical clock.

use dsss_wire::{Clock, ManualClock, PhysicalClock, Timestamp};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// The most nodes in one case.
const NODES_MAX: usize = 5;
/// The most events in one case; small enough that 10,000 cases run in seconds.
const EVENTS_MAX: usize = 48;
/// The largest configured maximum skew, in microseconds.
const MAX_SKEW_US_MAX: u64 = 1_000;
/// Physical clocks start here plus a per-node offset, far enough from 0 that backward jumps
/// never saturate.
const START_US: u64 = 1_000_000_000;

#[derive(Debug, Clone)]
enum Event {
    /// The node's physical clock moves forwards by a small step, or stalls (step 0).
    Advance { node: usize, delta_us: u64 },
    /// The node's physical clock jumps, backwards or forwards, possibly beyond the skew bound.
    Jump { node: usize, offset_us: i64 },
    /// A local event.
    Local { node: usize },
    /// The node sends a message to another node.
    Send { from: usize, to: usize },
    /// One in-flight message, picked by index, is delivered.
    Receive { pick: usize },
}

#[derive(Debug, Clone)]
struct Scenario {
    node_count: usize,
    max_skew_us: u64,
    start_offsets_us: Vec<u64>,
    events: Vec<Event>,
}

fn event() -> impl Strategy<Value = Event> {
    let node = 0..NODES_MAX;
    let skew = MAX_SKEW_US_MAX as i64;
    prop_oneof![
        2 => (node.clone(), prop_oneof![Just(0u64), 1..=MAX_SKEW_US_MAX / 2])
            .prop_map(|(node, delta_us)| Event::Advance { node, delta_us }),
        1 => (node.clone(), -3 * skew..=3 * skew)
            .prop_map(|(node, offset_us)| Event::Jump { node, offset_us }),
        2 => node.clone().prop_map(|node| Event::Local { node }),
        3 => (node.clone(), node).prop_map(|(from, to)| Event::Send { from, to }),
        3 => any::<usize>().prop_map(|pick| Event::Receive { pick }),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        2..=NODES_MAX,
        1..=MAX_SKEW_US_MAX,
        prop::collection::vec(0..=2 * MAX_SKEW_US_MAX, NODES_MAX),
        prop::collection::vec(event(), 1..=EVENTS_MAX),
    )
        .prop_map(
            |(node_count, max_skew_us, start_offsets_us, events)| Scenario {
                node_count,
                max_skew_us,
                start_offsets_us,
                events,
            },
        )
}

struct Node {
    physical: ManualClock,
    clock: Clock<ManualClock>,
    /// The last timestamp this node's clock returned, kept apart from the clock itself so that
    /// the test does not trust the clock's own bookkeeping.
    previous: Option<Timestamp>,
}

struct Message {
    to: usize,
    sent: Timestamp,
}

/// What a scenario exercised, so that a separate test can check the generator reaches every
/// branch.
#[derive(Debug, Default)]
struct Outcome {
    accepted_receives: u64,
    rejected_receives: u64,
    backward_jumps: u64,
}

/// Checks a newly returned timestamp against the node's history and the global bounds.
fn check_new_timestamp(
    node: &mut Node,
    index: usize,
    timestamp: Timestamp,
    physical_now_us: u64,
    clock_events: u64,
) -> Result<(), TestCaseError> {
    if let Some(previous) = node.previous {
        prop_assert!(
            timestamp > previous,
            "node {index}: {timestamp} does not follow its previous timestamp {previous}"
        );
    }
    prop_assert!(
        timestamp.physical_us >= physical_now_us,
        "node {index}: {timestamp} is behind its physical clock {physical_now_us}us"
    );
    prop_assert!(
        u64::from(timestamp.logical) <= clock_events,
        "node {index}: logical counter of {timestamp} exceeds the {clock_events} clock events so far"
    );
    prop_assert_eq!(node.clock.last(), timestamp);
    node.previous = Some(timestamp);
    Ok(())
}

fn run(scenario: &Scenario) -> Result<Outcome, TestCaseError> {
    let mut nodes: Vec<Node> = scenario.start_offsets_us[..scenario.node_count]
        .iter()
        .map(|offset_us| {
            let physical = ManualClock::new(START_US + offset_us);
            Node {
                clock: Clock::new(physical.clone(), scenario.max_skew_us),
                physical,
                previous: None,
            }
        })
        .collect();
    let mut in_flight: Vec<Message> = Vec::new();
    let mut clock_events: u64 = 0;
    let mut outcome = Outcome::default();

    for event in &scenario.events {
        match *event {
            Event::Advance { node, delta_us } => {
                nodes[node % scenario.node_count]
                    .physical
                    .advance_us(delta_us);
            }
            Event::Jump { node, offset_us } => {
                let physical = &nodes[node % scenario.node_count].physical;
                physical.set_us(physical.now_us().saturating_add_signed(offset_us));
                if offset_us < 0 {
                    outcome.backward_jumps += 1;
                }
            }
            Event::Local { node } | Event::Send { from: node, .. } => {
                let index = node % scenario.node_count;
                let sender = &mut nodes[index];
                clock_events += 1;
                let physical_now_us = sender.physical.now_us();
                let timestamp = sender.clock.now();
                check_new_timestamp(sender, index, timestamp, physical_now_us, clock_events)?;
                if let Event::Send { to, .. } = *event {
                    in_flight.push(Message {
                        to: to % scenario.node_count,
                        sent: timestamp,
                    });
                }
            }
            Event::Receive { pick } => {
                if in_flight.is_empty() {
                    continue;
                }
                let message = in_flight.remove(pick % in_flight.len());
                let receiver = &mut nodes[message.to];
                let physical_now_us = receiver.physical.now_us();
                let before = receiver.clock.last();
                let beyond_bound =
                    message.sent.physical_us > physical_now_us + scenario.max_skew_us;
                match receiver.clock.update(message.sent) {
                    Ok(timestamp) => {
                        prop_assert!(
                            !beyond_bound,
                            "node {}: accepted {} at physical {}us beyond the skew bound {}us",
                            message.to,
                            message.sent,
                            physical_now_us,
                            scenario.max_skew_us
                        );
                        prop_assert!(
                            timestamp > message.sent,
                            "node {}: receive {timestamp} is not after the send {}",
                            message.to,
                            message.sent
                        );
                        clock_events += 1;
                        check_new_timestamp(
                            receiver,
                            message.to,
                            timestamp,
                            physical_now_us,
                            clock_events,
                        )?;
                        outcome.accepted_receives += 1;
                    }
                    Err(error) => {
                        prop_assert!(
                            beyond_bound,
                            "node {}: rejected {} within the skew bound: {error}",
                            message.to,
                            message.sent
                        );
                        prop_assert_eq!(
                            receiver.clock.last(),
                            before,
                            "rejection changed the clock"
                        );
                        prop_assert_eq!(error.received, message.sent);
                        outcome.rejected_receives += 1;
                    }
                }
            }
        }
    }
    Ok(outcome)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn clocks_stay_monotonic_causal_and_within_the_skew_bound(scenario in scenario()) {
        run(&scenario)?;
    }
}

/// Guards the property test against a generator that stops reaching the interesting branches:
/// over a fixed set of generated scenarios, receives must be both accepted and rejected, and
/// physical clocks must jump backwards.
#[test]
fn generated_scenarios_reach_acceptance_rejection_and_backward_jumps() {
    let mut runner = TestRunner::new_with_rng(
        Config::with_cases(500),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let mut total = Outcome::default();
    for _ in 0..500 {
        let scenario = scenario()
            .new_tree(&mut runner)
            .expect("the strategy always generates")
            .current();
        let outcome = run(&scenario).expect("the properties hold");
        total.accepted_receives += outcome.accepted_receives;
        total.rejected_receives += outcome.rejected_receives;
        total.backward_jumps += outcome.backward_jumps;
    }
    assert!(total.accepted_receives > 1_000, "{total:?}");
    assert!(total.rejected_receives > 50, "{total:?}");
    assert!(total.backward_jumps > 100, "{total:?}");
}
