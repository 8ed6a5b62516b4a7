//! Partitions, named as in raft-rs's test harness. A partition is decided when a message is
//! sent: messages already in flight still arrive.

mod support;

use std::time::Duration;

use support::{AP, EU, US, delivers, recorders, send_probe};

#[test]
fn cut_drops_both_directions_and_nothing_else() {
    let mut simulation = recorders(1);
    simulation.cut(1, 3);
    assert!(!delivers(&mut simulation, 1, 3));
    assert!(!delivers(&mut simulation, 3, 1));
    assert!(delivers(&mut simulation, 1, 2));
    assert!(delivers(&mut simulation, 2, 3));
    assert!(delivers(&mut simulation, 4, 1));
    assert_eq!(simulation.statistics().dropped_partition, 2);
    assert!(
        simulation
            .trace()
            .lines()
            .iter()
            .any(|line| line.contains("drop 1->3") && line.ends_with("reason=partition"))
    );
}

#[test]
fn cut_one_way_drops_only_that_direction() {
    let mut simulation = recorders(2);
    simulation.cut_one_way(1, 3);
    assert!(!delivers(&mut simulation, 1, 3));
    assert!(delivers(&mut simulation, 3, 1));
}

#[test]
fn isolate_cuts_a_node_from_everyone() {
    let mut simulation = recorders(3);
    simulation.isolate(2);
    for other in [1, 3, 4, 5] {
        assert!(!delivers(&mut simulation, 2, other), "2 reached {other}");
        assert!(!delivers(&mut simulation, other, 2), "{other} reached 2");
    }
    assert!(delivers(&mut simulation, 1, 3));
    assert!(delivers(&mut simulation, 4, 5));
}

#[test]
fn cut_regions_drops_between_regions_and_keeps_each_region_connected() {
    let mut simulation = recorders(4);
    simulation.cut_regions(EU, US);
    for (from, to) in [(1, 3), (1, 4), (2, 3), (2, 4)] {
        assert!(!delivers(&mut simulation, from, to), "{from} reached {to}");
        assert!(!delivers(&mut simulation, to, from), "{to} reached {from}");
    }
    assert!(delivers(&mut simulation, 1, 2));
    assert!(delivers(&mut simulation, 3, 4));
    assert!(delivers(&mut simulation, 1, 5));
    assert!(delivers(&mut simulation, 5, 3));
}

#[test]
fn cut_regions_one_way_drops_only_that_direction() {
    let mut simulation = recorders(5);
    simulation.cut_regions_one_way(US, EU);
    assert!(!delivers(&mut simulation, 3, 1));
    assert!(!delivers(&mut simulation, 4, 2));
    assert!(delivers(&mut simulation, 1, 3));
    assert!(delivers(&mut simulation, 2, 4));
}

#[test]
fn isolate_region_cuts_it_from_every_other_region() {
    let mut simulation = recorders(6);
    simulation.isolate_region(US);
    for outside in [1, 2, 5] {
        assert!(!delivers(&mut simulation, 3, outside));
        assert!(!delivers(&mut simulation, outside, 4));
    }
    assert!(delivers(&mut simulation, 3, 4));
    assert!(delivers(&mut simulation, 1, 5));
    simulation.heal_regions(US, AP);
    assert!(delivers(&mut simulation, 3, 5));
    assert!(delivers(&mut simulation, 5, 4));
    assert!(!delivers(&mut simulation, 3, 1));
}

#[test]
fn heal_restores_delivery() {
    let mut simulation = recorders(7);
    simulation.cut(1, 3);
    simulation.cut(1, 2);
    assert!(!delivers(&mut simulation, 1, 3));
    simulation.heal(1, 3);
    assert!(delivers(&mut simulation, 1, 3));
    assert!(delivers(&mut simulation, 3, 1));
    assert!(
        !delivers(&mut simulation, 1, 2),
        "heal(1, 3) healed 1-2 too"
    );

    simulation.cut(4, 5);
    simulation.heal_one_way(4, 5);
    assert!(delivers(&mut simulation, 4, 5));
    assert!(!delivers(&mut simulation, 5, 4));

    simulation.isolate(3);
    simulation.cut_regions(EU, AP);
    simulation.heal_all();
    assert_eq!(simulation.network().cut_links().count(), 0);
    for (from, to) in [(1, 2), (5, 4), (3, 1), (2, 5)] {
        assert!(
            delivers(&mut simulation, from, to),
            "{from} cannot reach {to}"
        );
    }
}

#[test]
fn a_message_in_flight_when_the_cut_is_made_still_arrives() {
    let mut simulation = recorders(8);
    // eu -> us takes 35 to 45 ms.
    send_probe(&mut simulation, 1, 3, 0);
    simulation.run_for(Duration::from_millis(10));
    simulation.cut(1, 3);
    send_probe(&mut simulation, 1, 3, 1);
    simulation.run_for(Duration::from_secs(1));
    assert_eq!(simulation.process(3).unwrap().sequences_received(), [0]);

    // Likewise, healing does not resurrect a message dropped while the cut was in place.
    simulation.heal_all();
    simulation.run_for(Duration::from_secs(1));
    assert_eq!(simulation.process(3).unwrap().sequences_received(), [0]);
}

#[test]
fn partition_changes_are_traced() {
    let mut simulation = recorders(9);
    simulation.cut(1, 2);
    simulation.cut_one_way(3, 4);
    simulation.isolate_region(AP);
    simulation.heal_all();
    let lines = simulation.trace().lines();
    let changes: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.split_once(' ').map(|(_, text)| text))
        .filter(|text| {
            text.starts_with("cut") || text.starts_with("isolate") || text.starts_with("heal")
        })
        .collect();
    assert_eq!(
        changes,
        ["cut 1<->2", "cut 3->4", "isolate-region r2", "heal-all"]
    );
}
