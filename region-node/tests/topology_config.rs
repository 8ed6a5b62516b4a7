//! A node's settings taken from a topology file: the one derivation the production driver and
//! the simulator share (`region_node_config`), checked on the example topologies and at every
//! bound of its formulas.

use std::path::Path;

use dsss_region_node::node::PROPOSAL_TIMEOUT_TICKS_MAX;
use dsss_region_node::{
    TICK_INTERVAL_US_DEFAULT, TopologyConfigError, proposal_timeout_ticks, region_node_config,
};
use dsss_topology::Topology;

fn example(name: &str) -> Topology {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../topology/examples")
        .join(name);
    dsss_topology::load(&path).unwrap_or_else(|diagnostics| panic!("{name}: {diagnostics}"))
}

#[test]
fn the_local_topology_gives_the_settings_a_deployed_node_runs_with() {
    let topology = example("local.toml");
    let config = region_node_config(&topology, 12, false, TICK_INTERVAL_US_DEFAULT).unwrap();
    assert_eq!(config.group.node_id, 12);
    assert_eq!(config.group.initial_voters, vec![11, 12, 13]);
    assert_eq!(config.region.as_str(), "local-a");
    let catch_up: Vec<&str> = config
        .catch_up_regions
        .iter()
        .map(|region| region.as_str())
        .collect();
    assert_eq!(catch_up, ["local-b", "local-c"]);
    assert_eq!(config.epoch_interval_us, 10_000);
    assert_eq!(config.max_clock_skew_us, 250_000);
    // Three one-way delays across the widest link (35 ms) beat ten epochs (100 ms): a resend
    // never chases an answer still on its way.
    assert_eq!(config.batch_resend_interval_us, 105_000);
    // A quarter of the 2 s suspicion timeout.
    assert_eq!(config.idle_close_interval_us, 500_000);
    // The suspicion timeout, twenty widest delays and a second: 3.7 s in 20 ms ticks.
    assert_eq!(config.proposal_timeout_ticks, 185);
    config.validate().unwrap();

    let joining = region_node_config(&topology, 33, true, TICK_INTERVAL_US_DEFAULT).unwrap();
    assert!(joining.group.initial_voters.is_empty());
    assert_eq!(joining.region.as_str(), "local-c");
}

#[test]
fn the_global_topology_resends_no_sooner_than_its_widest_round_trip_allows() {
    let topology = example("global.toml");
    assert_eq!(topology.latency.d_max_us(), 162_000);
    assert_eq!(topology.resend_interval_us(), 486_000);
    let replica = topology.coordinator.replicas[0];
    let node = topology
        .nodes()
        .map(|(_, node)| node.id)
        .find(|&id| id == replica)
        .expect("the coordinator's replicas are nodes");
    let config = region_node_config(&topology, node, false, TICK_INTERVAL_US_DEFAULT).unwrap();
    assert_eq!(config.batch_resend_interval_us, 486_000);
}

#[test]
fn the_resend_interval_is_held_below_half_the_suspicion_timeout() {
    let mut topology = example("local.toml");
    topology.cluster.suspicion_timeout_us = 150_000;
    // 105 ms from the delays, but a region must be heard again before it is suspected.
    assert_eq!(topology.resend_interval_us(), 75_000);
    topology.cluster.suspicion_timeout_us = 2_000_000;
    topology.cluster.epoch_us = 50_000;
    // Ten epochs when they are longer than three delays.
    assert_eq!(topology.resend_interval_us(), 500_000);
}

#[test]
fn a_proposal_timeout_past_its_bound_is_held_at_the_bound() {
    let mut topology = example("local.toml");
    topology.cluster.suspicion_timeout_us = 600_000_000;
    assert_eq!(
        proposal_timeout_ticks(&topology, 1_000),
        PROPOSAL_TIMEOUT_TICKS_MAX
    );
    let config = region_node_config(&topology, 11, false, 1_000).unwrap();
    assert_eq!(config.proposal_timeout_ticks, PROPOSAL_TIMEOUT_TICKS_MAX);
    config.validate().unwrap();
    // Never zero, however long the tick.
    assert_eq!(proposal_timeout_ticks(&topology, u64::MAX), 1);
}

#[test]
fn a_node_missing_from_the_topology_is_refused_naming_the_ones_it_has() {
    let topology = example("local.toml");
    let error = region_node_config(&topology, 99, false, TICK_INTERVAL_US_DEFAULT).unwrap_err();
    assert_eq!(
        error,
        TopologyConfigError::UnknownNode {
            node_id: 99,
            known: vec![11, 12, 13, 21, 22, 23, 31, 32, 33],
        }
    );
    assert!(error.to_string().contains("node 99 is not in the topology"));
}
