//! Crash and restart: what survives (synced writes), what does not (process state, unsynced
//! writes, pending timers), and messages that reach a node while it is down.

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use dsss_simulations::{Context, NodeId, Process, SimTime, Simulation, TimerId};
use support::{Probe, Recorder, delivers, recorders, send_probe, three_regions};

fn entry(key: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
    (key.as_bytes().to_vec(), value.as_bytes().to_vec())
}

#[test]
fn a_crash_loses_exactly_the_unsynced_writes() {
    let mut simulation = recorders(1);
    simulation
        .with_process(1, |_, cx| {
            let disk = cx.disk();
            disk.put(b"synced", b"1").unwrap();
            disk.put(b"deleted then synced", b"2").unwrap();
            disk.put(b"overwritten", b"old").unwrap();
            disk.sync();
            disk.delete(b"deleted then synced");
            disk.sync();
            disk.put(b"unsynced", b"3").unwrap();
            disk.put(b"overwritten", b"new").unwrap();
            disk.delete(b"synced");
        })
        .unwrap();
    simulation
        .with_process(2, |_, cx| cx.disk().put(b"other node", b"4").unwrap())
        .unwrap();

    // Before the crash the node sees its own unsynced writes.
    let disk = simulation.disk(1).unwrap();
    assert_eq!(disk.get(b"unsynced"), Some(&b"3"[..]));
    assert_eq!(disk.get(b"overwritten"), Some(&b"new"[..]));
    assert_eq!(disk.get(b"synced"), None);

    assert!(simulation.crash(1));
    let synced = vec![entry("overwritten", "old"), entry("synced", "1")];
    assert_eq!(simulation.disk(1).unwrap().scan_prefix(b""), synced);
    // Another node's unsynced write is untouched by this crash.
    assert_eq!(
        simulation.disk(2).unwrap().get(b"other node"),
        Some(&b"4"[..])
    );

    assert!(simulation.restart(1));
    let restarted = simulation.process(1).unwrap();
    assert_eq!(restarted.recovered, synced);
    assert_eq!(restarted.starts, 1);
}

#[test]
fn a_restarted_node_is_a_new_process_that_gets_handle_start() {
    let factory_calls = Rc::new(Cell::new(0));
    let calls = Rc::clone(&factory_calls);
    let mut simulation = Simulation::new(2, three_regions(), move |node, disk| {
        calls.set(calls.get() + 1);
        Recorder::new(node, disk)
    })
    .unwrap();
    assert_eq!(factory_calls.get(), 5);
    simulation.run_until(SimTime::ZERO);
    assert_eq!(simulation.process(1).unwrap().starts, 1);
    assert!(delivers(&mut simulation, 2, 1));

    assert!(simulation.crash(1));
    assert!(!simulation.is_up(1));
    assert!(simulation.process(1).is_none());
    assert!(!simulation.crash(1), "a down node cannot crash again");

    assert!(simulation.restart(1));
    assert_eq!(factory_calls.get(), 6);
    assert!(!simulation.restart(1), "an up node cannot restart");
    let restarted = simulation.process(1).unwrap();
    assert_eq!(restarted.starts, 1);
    assert!(
        restarted.received.is_empty(),
        "process state survived a crash"
    );
    let lines = simulation.trace().lines();
    assert!(lines.iter().any(|line| line.contains("crash 1")));
    assert!(lines.iter().any(|line| line.ends_with("restart 1")));
}

#[test]
fn pending_timers_of_a_crashed_node_never_fire() {
    let mut simulation = recorders(3);
    let lost = simulation
        .with_process(1, |_, cx| cx.set_timer(Duration::from_millis(100)))
        .unwrap();
    let kept = simulation
        .with_process(2, |_, cx| cx.set_timer(Duration::from_millis(100)))
        .unwrap();
    simulation.run_for(Duration::from_millis(50));
    simulation.crash(1);
    simulation.run_for(Duration::from_millis(100));
    assert_eq!(simulation.process(2).unwrap().timers_fired, [kept]);

    simulation.restart(1);
    let fresh = simulation
        .with_process(1, |_, cx| cx.set_timer(Duration::from_millis(10)))
        .unwrap();
    simulation.run_for(Duration::from_secs(1));
    assert_eq!(simulation.process(1).unwrap().timers_fired, [fresh]);
    let lost_fire = format!("fire 1 {lost}");
    assert!(
        !simulation
            .trace()
            .lines()
            .iter()
            .any(|line| line.ends_with(&lost_fire))
    );
}

#[test]
fn a_timer_lost_in_a_crash_does_not_fire_even_if_the_node_is_back_by_then() {
    let mut simulation = recorders(4);
    simulation
        .with_process(1, |_, cx| cx.set_timer(Duration::from_millis(100)))
        .unwrap();
    simulation.run_for(Duration::from_millis(10));
    simulation.crash(1);
    simulation.restart(1);
    simulation.run_for(Duration::from_secs(1));
    assert!(simulation.process(1).unwrap().timers_fired.is_empty());
}

#[test]
fn messages_to_a_down_node_are_dropped() {
    let mut simulation = recorders(5);
    simulation.crash(3);
    send_probe(&mut simulation, 1, 3, 0);
    simulation.inject(
        SimTime::from_millis(1),
        3,
        Probe {
            sequence: 1,
            sent_at: SimTime::from_millis(1),
        },
    );
    simulation.run_for(Duration::from_secs(1));
    assert_eq!(simulation.statistics().dropped_node_down, 2);
    assert!(
        simulation
            .trace()
            .lines()
            .iter()
            .any(|line| line.contains("drop 1->3 #0") && line.ends_with("reason=node-down"))
    );

    simulation.restart(3);
    assert!(simulation.process(3).unwrap().received.is_empty());
    assert!(delivers(&mut simulation, 1, 3));
}

#[test]
fn a_message_arriving_while_down_is_dropped_and_one_arriving_after_restart_is_not() {
    let mut simulation = recorders(6);
    // eu -> us takes 35 to 45 ms.
    send_probe(&mut simulation, 1, 3, 0);
    simulation.crash(3);
    simulation.run_for(Duration::from_millis(50));
    simulation.restart(3);
    assert_eq!(simulation.statistics().dropped_node_down, 1);

    send_probe(&mut simulation, 1, 3, 1);
    simulation.crash(3);
    simulation.restart(3);
    simulation.run_for(Duration::from_secs(1));
    // The network does not know about restarts: the message reaches the new process.
    assert_eq!(simulation.process(3).unwrap().sequences_received(), [1]);
}

/// A process that notices refusals: it records each message of its that found its receiver
/// crashed, and when the refusal came.
#[derive(Debug, Default)]
struct RefusalNoticer {
    refusals: Vec<(NodeId, Probe, SimTime)>,
}

impl Process for RefusalNoticer {
    type Message = Probe;

    fn notices_refusals(&self) -> bool {
        true
    }

    fn handle_start(&mut self, _: &mut Context<'_, Probe>) {}

    fn handle_message(&mut self, _: &mut Context<'_, Probe>, _: NodeId, _: Probe) {}

    fn handle_timer(&mut self, _: &mut Context<'_, Probe>, _: TimerId) {}

    fn handle_refused(&mut self, cx: &mut Context<'_, Probe>, to: NodeId, probe: Probe) {
        self.refusals.push((to, probe, cx.now()));
    }
}

fn noticers() -> Simulation<RefusalNoticer> {
    let mut simulation =
        Simulation::new(4, three_regions(), |_, _| RefusalNoticer::default()).unwrap();
    simulation.run_until(SimTime::ZERO);
    simulation
}

/// A message to a crashed node comes back to its sender as a refusal, one mean one-way delay
/// of the link back after it reached the node's host (as a host refuses a connection to a
/// process that is gone); a paused node, a cut link back and a sender that restarted since
/// hear nothing, and a process that does not notice refusals is never told.
#[test]
fn a_message_to_a_crashed_node_is_refused_back_to_its_sender() {
    let mut simulation = noticers();
    assert!(simulation.crash(3));
    send_probe(&mut simulation, 1, 3, 1);
    simulation.run_for(Duration::from_secs(1));
    let refusals = &simulation.process(1).unwrap().refusals;
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    let (to, probe, at) = &refusals[0];
    assert_eq!((*to, probe.sequence), (3, 1));
    // eu -> us takes 40 ms +- 5 ms, the refusal us -> eu the mean 50 ms.
    let took = at.saturating_duration_since(probe.sent_at);
    assert!(
        (Duration::from_millis(85)..=Duration::from_millis(95)).contains(&took),
        "{took:?}"
    );

    // A paused node's host keeps its connections: silence.
    assert!(simulation.pause(4));
    send_probe(&mut simulation, 1, 4, 2);
    // A cut link back carries no refusal.
    simulation.cut_one_way(3, 2);
    send_probe(&mut simulation, 2, 3, 3);
    // A sender that restarts before the refusal arrives is a new process.
    send_probe(&mut simulation, 2, 5, 4);
    assert!(simulation.crash(5));
    simulation.run_for(Duration::from_millis(150));
    assert!(simulation.crash(2));
    assert!(simulation.restart(2));
    simulation.run_for(Duration::from_secs(1));
    assert_eq!(simulation.process(1).unwrap().refusals.len(), 1);
    assert!(simulation.process(2).unwrap().refusals.is_empty());

    // Recorders do not notice refusals: no refusal is even scheduled.
    let mut recorders = recorders(4);
    assert!(recorders.crash(3));
    send_probe(&mut recorders, 1, 3, 1);
    recorders.run_for(Duration::from_secs(1));
    assert!(
        !recorders
            .trace()
            .lines()
            .iter()
            .any(|line| line.contains("refused"))
    );
}
