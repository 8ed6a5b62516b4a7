//! Timers: they fire at their time, in order, and never after being cancelled.

mod support;

use std::time::Duration;

use dsss_simulations::SimTime;
use support::recorders;

#[test]
fn timers_fire_at_their_time_in_order() {
    let mut simulation = recorders(1);
    let (late, early, also_early) = simulation
        .with_process(1, |_, cx| {
            (
                cx.set_timer(Duration::from_millis(30)),
                cx.set_timer(Duration::from_millis(10)),
                cx.set_timer(Duration::from_millis(10)),
            )
        })
        .unwrap();
    simulation.run_until(SimTime::from_millis(10));
    assert_eq!(
        simulation.process(1).unwrap().timers_fired,
        [early, also_early]
    );
    simulation.run_until(SimTime::from_millis(29));
    assert_eq!(simulation.process(1).unwrap().timers_fired.len(), 2);
    simulation.run_until(SimTime::from_millis(30));
    assert_eq!(
        simulation.process(1).unwrap().timers_fired,
        [early, also_early, late]
    );
}

#[test]
fn a_cancelled_timer_never_fires() {
    let mut simulation = recorders(2);
    let (cancelled, kept) = simulation
        .with_process(1, |_, cx| {
            let cancelled = cx.set_timer(Duration::from_millis(10));
            let kept = cx.set_timer(Duration::from_millis(20));
            (cancelled, kept)
        })
        .unwrap();
    simulation
        .with_process(1, |_, cx| cx.cancel_timer(cancelled))
        .unwrap();
    // Set and cancelled within one handler call.
    simulation
        .with_process(1, |_, cx| {
            let timer = cx.set_timer(Duration::from_millis(5));
            cx.cancel_timer(timer);
        })
        .unwrap();
    assert_eq!(simulation.run_until_quiet(), Ok(1));
    assert_eq!(simulation.process(1).unwrap().timers_fired, [kept]);
    assert_eq!(simulation.now(), SimTime::from_millis(20));
}

#[test]
fn run_until_stops_at_its_time_even_past_cancelled_timers() {
    let mut simulation = recorders(3);
    simulation
        .with_process(1, |_, cx| {
            let timer = cx.set_timer(Duration::from_millis(5));
            cx.cancel_timer(timer);
            cx.set_timer(Duration::from_millis(50));
        })
        .unwrap();
    simulation.run_until(SimTime::from_millis(20));
    assert_eq!(simulation.now(), SimTime::from_millis(20));
    assert!(simulation.process(1).unwrap().timers_fired.is_empty());
}
