//! Pause and resume (SIGSTOP and SIGCONT): a paused node handles nothing and sends nothing
//! while its links stay up; what reaches it and what comes due for it is held, and handled in
//! order when it resumes, with its state as it was.

mod support;

use std::time::Duration;

use dsss_simulations::SimTime;
use support::{Probe, delivers, recorders, send_probe};

#[test]
fn a_paused_node_handles_nothing_until_it_resumes_with_its_state_intact() {
    let mut simulation = recorders(11);
    assert!(delivers(&mut simulation, 1, 2));
    let timer = simulation
        .with_process(2, |_, cx| cx.set_timer(Duration::from_millis(100)))
        .unwrap();

    assert!(simulation.pause(2));
    assert!(simulation.is_paused(2));
    assert!(simulation.is_up(2), "a paused node is not down");
    assert!(!simulation.pause(2), "a paused node cannot pause again");
    send_probe(&mut simulation, 1, 2, 10);
    send_probe(&mut simulation, 3, 2, 11);
    simulation.run_for(Duration::from_secs(1));
    let paused = simulation.process(2).unwrap();
    assert_eq!(
        paused.sequences_received(),
        [0],
        "it handled a message while paused"
    );
    assert!(paused.timers_fired.is_empty(), "a timer fired while paused");
    // Its links stay up: the other nodes go on as before.
    assert!(delivers(&mut simulation, 1, 3));
    assert_eq!(simulation.statistics().dropped(), 0);

    let resumed_at = simulation.now();
    assert!(simulation.resume(2));
    assert!(!simulation.resume(2), "a running node cannot resume");
    simulation.run_for(Duration::from_millis(1));
    let resumed = simulation.process(2).unwrap();
    // Held in the order they arrived (eu -> eu is faster than us -> eu), handled at once.
    assert_eq!(resumed.sequences_received(), [0, 10, 11]);
    assert!(
        resumed.received[1..]
            .iter()
            .all(|received| received.received_at == resumed_at)
    );
    assert_eq!(resumed.timers_fired, [timer]);
    assert_eq!(resumed.starts, 1, "a resume is no restart");
    let lines = simulation.trace().lines();
    assert!(lines.iter().any(|line| line.ends_with("pause 2")));
    assert!(lines.iter().any(|line| line.ends_with("resume 2 held=3")));
}

#[test]
fn a_paused_node_that_crashes_loses_what_was_held_and_restarts_running() {
    let mut simulation = recorders(12);
    simulation
        .with_process(3, |_, cx| cx.set_timer(Duration::from_millis(10)))
        .unwrap();
    simulation.pause(3);
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
    assert!(simulation.crash(3));
    assert!(!simulation.is_paused(3));
    assert_eq!(simulation.statistics().dropped_node_down, 2);
    assert!(!simulation.resume(3));
    assert!(!simulation.pause(3), "a down node cannot pause");

    assert!(simulation.restart(3));
    simulation.run_for(Duration::from_secs(1));
    let restarted = simulation.process(3).unwrap();
    assert!(restarted.received.is_empty());
    assert!(restarted.timers_fired.is_empty());
    assert!(delivers(&mut simulation, 1, 3));
}

#[test]
fn a_run_with_pauses_replays_from_its_seed() {
    let run = |seed| {
        let mut simulation = recorders(seed);
        for round in 0..20 {
            send_probe(&mut simulation, 1, 2, round);
            send_probe(&mut simulation, 3, 2, round);
            if round % 5 == 0 {
                simulation.pause(2);
            }
            simulation.run_for(Duration::from_millis(30));
            if round % 5 == 3 {
                simulation.resume(2);
            }
        }
        simulation.resume(2);
        simulation.run_for(Duration::from_secs(1));
        (
            simulation.trace_hash(),
            simulation.process(2).unwrap().sequences_received(),
        )
    };
    let first = run(13);
    assert_eq!(first, run(13));
    assert_eq!(
        first.1.len(),
        40,
        "every held probe was handled: {:?}",
        first.1
    );
    assert_ne!(first.0, run(14).0);
}
