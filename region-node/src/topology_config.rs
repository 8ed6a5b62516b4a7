//! A region node's settings derived from the topology file: one function that the production
//! driver and the simulator both call, so that a simulated node ticks, resends, closes idle
//! batches and times proposals out as a deployed one does, and what the simulator measures is
//! what a deployment gets.

use dsss_topology::{NodeSettings, Region, Topology};
use dsss_wire::RegionId;

use crate::node::{
    GLOBAL_INTERVAL_US_MAX, GLOBAL_INTERVAL_US_MIN, PROPOSAL_TIMEOUT_TICKS_MAX, RegionNodeConfig,
};

/// The default interval between two raft ticks, in microseconds. With the raft group's
/// default of 10 ticks per election timeout and a region's 4 per heartbeat
/// ([`crate::REGION_HEARTBEAT_TICKS`]), a leader that dies is replaced after 200 to 400
/// ms, and heartbeats go out every 80 ms. The simulator ticks its region nodes at this
/// interval too.
pub const TICK_INTERVAL_US_DEFAULT: u64 = 20_000;

/// Why a topology does not give a configuration for a node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopologyConfigError {
    /// The node id is not in the topology.
    #[error("node {node_id} is not in the topology (its nodes are {known:?})")]
    UnknownNode {
        /// The id asked for.
        node_id: u64,
        /// Every node id of the topology.
        known: Vec<u64>,
    },
    /// The node's region id is not a valid region id for records.
    #[error("region id {region:?}: {reason}")]
    InvalidRegion {
        /// The region id.
        region: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The sans-IO settings of node `node_id` of `topology`, ticking every `tick_interval_us`:
/// the region's nodes as the initial members of its raft group (none with `join`: the node
/// waits to be added as a learner), the other regions to catch up from, the log's quota and
/// release rules, and the global tier's timing (epoch, batch resend, idle close, how long a
/// proposal may wait for its record).
pub fn region_node_config(
    topology: &Topology,
    node_id: u64,
    join: bool,
    tick_interval_us: u64,
) -> Result<RegionNodeConfig, TopologyConfigError> {
    let (region, _) = find_node(topology, node_id)?;
    let region_id = |id: &str| {
        RegionId::new(id.to_owned()).map_err(|error| TopologyConfigError::InvalidRegion {
            region: id.to_owned(),
            reason: error.to_string(),
        })
    };
    let initial_members = if join {
        Vec::new()
    } else {
        region.nodes.iter().map(|member| member.id).collect()
    };
    let mut config = RegionNodeConfig::new(node_id, initial_members, region_id(&region.id)?);
    // A region that missed epochs the coordinator released reads them from the others.
    for other in topology
        .regions
        .iter()
        .filter(|other| other.id != region.id)
    {
        config.catch_up_regions.push(region_id(&other.id)?);
    }
    let cluster = &topology.cluster;
    config.max_clock_skew_us = cluster.max_clock_skew_us;
    config.log_retention.size_bytes_max = cluster.region_log_quota_bytes;
    config.log_retention.release_share_percent = cluster.region_log_release_share_percent;
    config.log_retention.release_age_us = cluster.region_log_release_age_us;
    config.epoch_interval_us = cluster.epoch_us.max(GLOBAL_INTERVAL_US_MIN);
    // The region resends unacknowledged batches at the coordinator's pace, waiting longer
    // while acknowledgements are slow.
    config.batch_resend_interval_us = topology
        .resend_interval_us()
        .clamp(GLOBAL_INTERVAL_US_MIN, GLOBAL_INTERVAL_US_MAX);
    config.batch_resend_interval_max_us = topology
        .resend_interval_max_us()
        .clamp(config.batch_resend_interval_us, GLOBAL_INTERVAL_US_MAX);
    // An idle region closes a batch four times per suspicion timeout, so that the
    // coordinator keeps hearing of it without a close every epoch.
    config.idle_close_interval_us = (cluster.suspicion_timeout_us / 4)
        .max(config.epoch_interval_us)
        .clamp(GLOBAL_INTERVAL_US_MIN, GLOBAL_INTERVAL_US_MAX);
    config.proposal_timeout_ticks = proposal_timeout_ticks(topology, tick_interval_us);
    Ok(config)
}

/// Node `node_id` of `topology` and its region, or an error naming the nodes it has.
pub fn find_node(
    topology: &Topology,
    node_id: u64,
) -> Result<(&Region, &NodeSettings), TopologyConfigError> {
    topology
        .nodes()
        .find(|(_, node)| node.id == node_id)
        .ok_or_else(|| TopologyConfigError::UnknownNode {
            node_id,
            known: topology.nodes().map(|(_, node)| node.id).collect(),
        })
}

/// How many ticks of `tick_interval_us` a proposal may wait for its record. A global call
/// waits for its epoch, which a cut region holds back for up to the suspicion timeout; it
/// gets that, twenty WAN delays and a second before the node gives up on it (and the client
/// retries it under the same sequence).
pub fn proposal_timeout_ticks(topology: &Topology, tick_interval_us: u64) -> u64 {
    let wait_us = topology
        .cluster
        .suspicion_timeout_us
        .saturating_add(topology.latency.d_max_us().saturating_mul(20))
        .saturating_add(1_000_000);
    wait_us
        .div_ceil(tick_interval_us.max(1))
        .clamp(1, PROPOSAL_TIMEOUT_TICKS_MAX)
}
