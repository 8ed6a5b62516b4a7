//! Link delays, jitter and packet faults of the simulated network.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use dsss_simulations::{EXTERNAL_NODE_ID, NetworkConfig, SimTime};
use support::{Probe, recorders, recorders_on, send_probe};

const PROBE_COUNT: u64 = 2_000;

/// Probes sent further apart than a link's whole jitter range (the widest here is +- 10 ms), so
/// that a probe is never held behind the one before it (links are FIFO) and each delay is the
/// link's own draw.
const PROBE_SPACING: Duration = Duration::from_millis(21);

/// Sends `PROBE_COUNT` probes from `from` to `to`, [`PROBE_SPACING`] apart, and returns the
/// delay of each one that arrived, in microseconds.
fn probe_delays_us(seed: u64, from: u64, to: u64) -> Vec<u64> {
    let mut simulation = recorders(seed);
    for sequence in 0..PROBE_COUNT {
        send_probe(&mut simulation, from, to, sequence);
        simulation.run_for(PROBE_SPACING);
    }
    simulation.run_for(Duration::from_secs(1));
    let receiver = simulation.process(to).unwrap();
    assert_eq!(receiver.received.len() as u64, PROBE_COUNT);
    receiver
        .received
        .iter()
        .map(|received| (received.received_at - received.probe.sent_at).as_micros() as u64)
        .collect()
}

/// Asserts that every delay is within `[low_us, high_us]` and that jitter spread them over
/// most of that range.
fn assert_spread_within(delays_us: &[u64], low_us: u64, high_us: u64) {
    let min = *delays_us.iter().min().unwrap();
    let max = *delays_us.iter().max().unwrap();
    assert!(
        min >= low_us && max <= high_us,
        "delays from {min} to {max} us, outside [{low_us}, {high_us}]"
    );
    let distinct: BTreeSet<u64> = delays_us.iter().copied().collect();
    assert!(
        distinct.len() > 100,
        "only {} distinct delays",
        distinct.len()
    );
    // Two thousand uniform draws come within a few percent of both ends of the range.
    let width = high_us - low_us;
    assert!(
        min < low_us + width / 10 && max > high_us - width / 10,
        "delays from {min} to {max} us do not spread over [{low_us}, {high_us}]"
    );
}

#[test]
fn cross_region_delays_stay_within_delay_plus_or_minus_jitter() {
    // eu -> us is 40 ms +- 5 ms; us -> eu is 50 ms +- 5 ms.
    assert_spread_within(&probe_delays_us(1, 1, 3), 35_000, 45_000);
    assert_spread_within(&probe_delays_us(2, 4, 2), 45_000, 55_000);
}

#[test]
fn nodes_of_one_region_use_the_intra_region_link() {
    // eu internal is 1 ms +- 0.2 ms; us internal is 2 ms +- 0.5 ms.
    assert_spread_within(&probe_delays_us(3, 1, 2), 800, 1_200);
    assert_spread_within(&probe_delays_us(4, 3, 4), 1_500, 2_500);
}

#[test]
fn a_link_without_jitter_has_exactly_its_delay() {
    let config = NetworkConfig::single_region("ap", [1, 2], support::link_us(3_000, 0));
    let mut simulation = recorders_on(5, config);
    for sequence in 0..50 {
        send_probe(&mut simulation, 1, 2, sequence);
        simulation.run_for(Duration::from_micros(700));
    }
    simulation.run_for(Duration::from_secs(1));
    let received = &simulation.process(2).unwrap().received;
    assert_eq!(received.len(), 50);
    for message in received {
        assert_eq!(
            message.received_at - message.probe.sent_at,
            Duration::from_millis(3)
        );
    }
}

#[test]
fn jitter_larger_than_the_delay_never_delivers_before_sending() {
    let config = NetworkConfig::single_region("lab", [1, 2], support::link_us(100, 5_000));
    let mut simulation = recorders_on(6, config);
    for sequence in 0..500 {
        send_probe(&mut simulation, 1, 2, sequence);
        simulation.run_for(Duration::from_millis(1));
    }
    simulation.run_for(Duration::from_secs(1));
    let received = &simulation.process(2).unwrap().received;
    assert_eq!(received.len(), 500);
    for message in received {
        assert!(message.received_at >= message.probe.sent_at);
        assert!(message.received_at - message.probe.sent_at <= Duration::from_micros(5_100));
    }
}

#[test]
fn loss_of_one_drops_every_message() {
    let mut simulation = recorders(7);
    simulation.set_loss_probability(1.0);
    for sequence in 0..100 {
        send_probe(&mut simulation, 1, 3, sequence);
        send_probe(&mut simulation, 2, 1, sequence);
    }
    simulation.run_for(Duration::from_secs(1));
    assert!(simulation.process(3).unwrap().received.is_empty());
    assert!(simulation.process(1).unwrap().received.is_empty());
    assert_eq!(simulation.statistics().sent, 200);
    assert_eq!(simulation.statistics().dropped_loss, 200);
    assert_eq!(simulation.statistics().delivered, 0);

    simulation.set_loss_probability(0.0);
    send_probe(&mut simulation, 1, 3, 100);
    simulation.run_for(Duration::from_secs(1));
    assert_eq!(simulation.process(3).unwrap().sequences_received(), [100]);
}

#[test]
fn partial_loss_drops_some_messages_and_delivers_the_rest() {
    let mut simulation = recorders(8);
    simulation.set_loss_probability(0.3);
    for sequence in 0..1_000 {
        send_probe(&mut simulation, 1, 2, sequence);
    }
    simulation.run_for(Duration::from_secs(1));
    let delivered = simulation.process(2).unwrap().received.len() as u64;
    assert_eq!(delivered + simulation.statistics().dropped_loss, 1_000);
    assert!((600..800).contains(&delivered), "{delivered} delivered");
}

#[test]
fn duplication_of_one_delivers_every_message_twice() {
    let mut simulation = recorders(9);
    simulation.set_duplication_probability(1.0);
    for sequence in 0..100 {
        send_probe(&mut simulation, 1, 3, sequence);
        simulation.run_for(Duration::from_millis(1));
    }
    simulation.run_for(Duration::from_secs(1));
    let mut sequences = simulation.process(3).unwrap().sequences_received();
    sequences.sort_unstable();
    let expected: Vec<u64> = (0..100).flat_map(|sequence| [sequence, sequence]).collect();
    assert_eq!(sequences, expected);
    assert_eq!(simulation.statistics().duplicated, 100);
    assert_eq!(simulation.statistics().delivered, 200);
}

/// Jitter spreads arrival times but never reorders the messages of one sender to one receiver:
/// production's nodes and clients talk over TCP connections (raft over one stream per peer),
/// which deliver in order. A message drawn to arrive before an earlier one arrives right
/// after it.
#[test]
fn jitter_never_reorders_the_messages_from_one_node_to_another() {
    let config = NetworkConfig::single_region("lab", [1, 2, 3], support::link_us(3_000, 2_000));
    let mut simulation = recorders_on(12, config);
    for sequence in 0..500 {
        send_probe(&mut simulation, 1, 2, sequence);
        send_probe(&mut simulation, 3, 2, 1_000 + sequence);
        simulation.run_for(Duration::from_micros(100));
    }
    simulation.run_for(Duration::from_secs(1));
    let received = &simulation.process(2).unwrap().received;
    assert_eq!(received.len(), 1_000);
    for sender in [1, 3] {
        let from_sender: Vec<_> = received
            .iter()
            .filter(|message| message.from == sender)
            .collect();
        let sequences: Vec<u64> = from_sender
            .iter()
            .map(|message| message.probe.sequence)
            .collect();
        let mut sorted = sequences.clone();
        sorted.sort_unstable();
        assert_eq!(
            sequences, sorted,
            "node {sender}'s messages arrived out of order"
        );
        for message in from_sender {
            let delay = message.received_at - message.probe.sent_at;
            assert!(delay >= Duration::from_millis(1) && delay <= Duration::from_millis(5));
        }
    }
    // The two senders' messages interleave: the order holds per sender, not across senders.
    let first_from_3 = received
        .iter()
        .position(|message| message.from == 3)
        .unwrap();
    assert!(
        first_from_3 < 10,
        "node 3's first message came {first_from_3}th"
    );
}

#[test]
fn reordering_lets_a_later_message_overtake_an_earlier_one() {
    // Without jitter or reordering, messages on one link arrive in the order they were sent.
    let config = || NetworkConfig::single_region("ap", [1, 2], support::link_us(3_000, 0));
    let mut in_order = recorders_on(10, config());
    for sequence in 0..200 {
        send_probe(&mut in_order, 1, 2, sequence);
        in_order.run_for(Duration::from_micros(100));
    }
    in_order.run_for(Duration::from_secs(1));
    let sequences = in_order.process(2).unwrap().sequences_received();
    assert_eq!(sequences, (0..200).collect::<Vec<_>>());

    let mut reordered = recorders_on(10, config());
    reordered.set_reordering(0.5, Duration::from_millis(10));
    for sequence in 0..200 {
        send_probe(&mut reordered, 1, 2, sequence);
        reordered.run_for(Duration::from_micros(100));
    }
    reordered.run_for(Duration::from_secs(1));
    let sequences = reordered.process(2).unwrap().sequences_received();
    assert_eq!(sequences.len(), 200, "reordering must not lose messages");
    let overtaken = sequences
        .windows(2)
        .filter(|pair| pair[0] > pair[1])
        .count();
    assert!(
        overtaken > 10,
        "only {overtaken} messages arrived out of order"
    );
    for message in &reordered.process(2).unwrap().received {
        let delay = message.received_at - message.probe.sent_at;
        assert!(delay >= Duration::from_millis(3) && delay <= Duration::from_millis(13));
    }
}

#[test]
fn an_injected_message_arrives_at_its_time_from_outside() {
    let mut simulation = recorders(11);
    let probe = Probe {
        sequence: 1,
        sent_at: SimTime::from_millis(30),
    };
    simulation.inject(SimTime::from_millis(30), 4, probe.clone());
    // Partitions and loss do not apply to injections: they do not cross the network.
    simulation.isolate(4);
    simulation.set_loss_probability(1.0);
    simulation.run_until(SimTime::from_millis(29));
    assert!(simulation.process(4).unwrap().received.is_empty());
    simulation.run_until(SimTime::from_millis(30));
    let received = &simulation.process(4).unwrap().received;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].from, EXTERNAL_NODE_ID);
    assert_eq!(received[0].probe, probe);
    assert_eq!(received[0].received_at, SimTime::from_millis(30));
}

#[test]
fn a_message_to_an_unknown_node_is_dropped_and_traced() {
    let mut simulation = recorders(12);
    send_probe(&mut simulation, 1, 99, 0);
    simulation.run_for(Duration::from_secs(1));
    assert_eq!(simulation.statistics().dropped_unknown_node, 1);
    assert!(
        simulation
            .trace()
            .lines()
            .iter()
            .any(|line| line.ends_with("drop 1->99 #0 reason=unknown-node"))
    );
}

#[test]
fn a_node_reaches_itself_through_its_region_link() {
    let mut simulation = recorders(13);
    simulation.isolate(5);
    send_probe(&mut simulation, 5, 5, 0);
    simulation.run_for(Duration::from_secs(1));
    let received = &simulation.process(5).unwrap().received;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].received_at, SimTime::from_millis(3));
}

#[test]
fn run_until_quiet_reports_a_workload_that_never_ends() {
    use dsss_simulations::{Context, NodeId, Process, Simulation, TimerId};

    struct Ticker;
    impl Process for Ticker {
        type Message = ();
        fn handle_start(&mut self, cx: &mut Context<'_, ()>) {
            cx.set_timer(Duration::from_millis(10));
        }
        fn handle_message(&mut self, _cx: &mut Context<'_, ()>, _from: NodeId, _message: ()) {}
        fn handle_timer(&mut self, cx: &mut Context<'_, ()>, _timer: TimerId) {
            cx.set_timer(Duration::from_millis(10));
        }
    }

    let config = NetworkConfig::single_region("lab", [1], support::link_us(1, 0));
    let mut simulation = Simulation::new(14, config, |_, _| Ticker).unwrap();
    let error = simulation.run_until_quiet_within(100).unwrap_err();
    assert_eq!(error.steps, 100);
    assert_eq!(error.events_pending, 1);
    // One start at time zero, then a timer every 10 ms.
    assert_eq!(error.now, SimTime::from_millis(990));
    assert!(error.to_string().contains("did not become quiet"));
}

#[test]
fn a_message_to_the_outside_reaches_the_driver_at_once() {
    let mut simulation = recorders(15);
    simulation.isolate(3);
    simulation.run_until(SimTime::from_millis(7));
    simulation
        .with_process(3, |_, cx| {
            for sequence in 0..2 {
                let probe = Probe {
                    sequence,
                    sent_at: cx.now(),
                };
                cx.send(EXTERNAL_NODE_ID, probe);
            }
        })
        .unwrap();
    let replies = simulation.take_external_messages();
    let sequences: Vec<u64> = replies.iter().map(|reply| reply.message.sequence).collect();
    assert_eq!(sequences, [0, 1]);
    assert!(replies.iter().all(|reply| reply.from == 3));
    assert!(
        replies
            .iter()
            .all(|reply| reply.sent_at == SimTime::from_millis(7))
    );
    assert!(simulation.take_external_messages().is_empty());
    assert!(
        simulation
            .trace()
            .lines()
            .iter()
            .any(|line| line.contains("deliver 3->external #0"))
    );
}

/// The delay of every probe `to` received from `from`, in microseconds.
fn delays_from_us(
    simulation: &dsss_simulations::Simulation<support::Recorder>,
    to: u64,
    from: u64,
) -> Vec<u64> {
    simulation
        .process(to)
        .unwrap()
        .received
        .iter()
        .filter(|received| received.from == from)
        .map(|received| (received.received_at - received.probe.sent_at).as_micros() as u64)
        .collect()
}

#[test]
fn a_changed_link_delay_holds_one_way_until_restored() {
    let mut simulation = recorders(20);
    // A probe already on its way keeps the delay it left with.
    send_probe(&mut simulation, 1, 3, 0);
    simulation.set_link_delay(support::EU, support::US, support::link_us(300_000, 10_000));
    for sequence in 1..=200 {
        send_probe(&mut simulation, 1, 3, sequence);
        send_probe(&mut simulation, 2, 4, sequence);
        send_probe(&mut simulation, 3, 1, sequence);
        simulation.run_for(PROBE_SPACING);
    }
    simulation.run_for(Duration::from_secs(1));
    let first = simulation.process(3).unwrap().received[0].clone();
    assert_eq!(first.probe.sequence, 0);
    let first_delay_us = (first.received_at - first.probe.sent_at).as_micros() as u64;
    assert!(
        (35_000..=45_000).contains(&first_delay_us),
        "{first_delay_us}"
    );
    // eu -> us now 300 ms +- 10 ms, for every node pair of the two regions; us -> eu unchanged.
    let changed = delays_from_us(&simulation, 3, 1);
    assert_eq!(changed.len(), 201);
    assert_spread_within(&changed[1..], 290_000, 310_000);
    assert_spread_within(&delays_from_us(&simulation, 4, 2), 290_000, 310_000);
    assert_spread_within(&delays_from_us(&simulation, 1, 3), 45_000, 55_000);

    simulation.restore_link_delay(support::EU, support::US);
    for sequence in 0..200 {
        send_probe(&mut simulation, 2, 3, sequence);
        simulation.run_for(PROBE_SPACING);
    }
    simulation.run_for(Duration::from_secs(1));
    assert_spread_within(&delays_from_us(&simulation, 3, 2), 35_000, 45_000);
    assert!(!simulation.restore_links(), "nothing left to restore");
}

#[test]
fn link_faults_act_on_their_link_only_on_top_of_the_network_faults() {
    let mut simulation = recorders(22);
    simulation.set_loss_probability(0.1);
    simulation.set_link_faults(
        support::EU,
        support::US,
        dsss_simulations::NetworkFaults {
            loss_probability: 0.5,
            ..dsss_simulations::NetworkFaults::NONE
        },
    );
    for sequence in 0..1_000 {
        send_probe(&mut simulation, 1, 3, sequence);
        send_probe(&mut simulation, 3, 1, sequence);
    }
    simulation.run_for(Duration::from_secs(1));
    // eu -> us keeps about 0.9 * 0.5 of its probes; us -> eu about 0.9.
    let lossy = simulation.process(3).unwrap().received.len();
    let plain = simulation.process(1).unwrap().received.len();
    assert!(
        (380..520).contains(&lossy),
        "{lossy} delivered on the lossy link"
    );
    assert!(
        (860..940).contains(&plain),
        "{plain} delivered on the other way"
    );

    // Duplication and reordering of the link alone.
    simulation.set_loss_probability(0.0);
    simulation.set_link_faults(
        support::US,
        support::EU,
        dsss_simulations::NetworkFaults {
            duplication_probability: 1.0,
            reorder_probability: 1.0,
            reorder_delay_max: Duration::from_millis(100),
            ..dsss_simulations::NetworkFaults::NONE
        },
    );
    let before = simulation.process(1).unwrap().received.len();
    for sequence in 0..100 {
        send_probe(&mut simulation, 3, 1, 10_000 + sequence);
    }
    simulation.run_for(Duration::from_secs(1));
    let received = &simulation.process(1).unwrap().received[before..];
    assert_eq!(received.len(), 200, "every probe twice");
    let held_back = received
        .iter()
        .filter(|received| {
            received.received_at - received.probe.sent_at > Duration::from_millis(55)
        })
        .count();
    assert!(held_back > 100, "only {held_back} copies held back");

    assert!(simulation.restore_links());
    let before = simulation.process(3).unwrap().received.len();
    for sequence in 0..100 {
        send_probe(&mut simulation, 1, 3, 20_000 + sequence);
    }
    simulation.run_for(Duration::from_secs(1));
    assert_eq!(simulation.process(3).unwrap().received.len(), before + 100);
}

/// A link change draws more only for the messages on that link: the probes of every other
/// link arrive when they would have without it.
#[test]
fn a_link_change_leaves_the_draws_of_other_links_alone() {
    let run = |changed: bool| {
        let mut simulation = recorders(23);
        simulation.set_loss_probability(0.2);
        simulation.set_duplication_probability(0.2);
        simulation.set_reordering(0.2, Duration::from_millis(5));
        if changed {
            // No probe crosses ap -> us.
            simulation.set_link_delay(support::AP, support::US, support::link_us(1_000, 0));
            simulation.set_link_faults(
                support::AP,
                support::US,
                dsss_simulations::NetworkFaults {
                    loss_probability: 0.9,
                    ..dsss_simulations::NetworkFaults::NONE
                },
            );
        }
        for sequence in 0..300 {
            send_probe(&mut simulation, 1, 3, sequence);
            send_probe(&mut simulation, 4, 5, sequence);
            simulation.run_for(Duration::from_millis(1));
        }
        simulation.run_for(Duration::from_secs(1));
        [3, 5].map(|node| simulation.process(node).unwrap().received.clone())
    };
    assert_eq!(run(true), run(false));
}
