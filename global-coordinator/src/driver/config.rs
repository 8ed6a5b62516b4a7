//! [`CoordinatorDriverConfig`]: what one production coordinator replica needs to run, taken
//! from a topology file with [`CoordinatorDriverConfig::from_topology`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use dsss_raft_group::transport::{OneWayDelay, PeerDelays};
use dsss_topology::Topology;
use dsss_wire::RegionId;
use dsss_wire::tls::Security;

use crate::{ConfigError, CoordinatorConfig};

/// The name of the coordinator's RocksDB directory inside its node's data directory.
pub const COORDINATOR_DATA_DIR_NAME: &str = "coordinator";

/// A node and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    /// Its node id.
    pub node_id: u64,
    /// `host:port` of its gRPC server.
    pub address: String,
}

/// The settings of one production coordinator replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorDriverConfig {
    /// The sans-IO replica's settings.
    pub coordinator: CoordinatorConfig,
    /// The replica's RocksDB directory: `<node data_dir>/coordinator`.
    pub data_dir: PathBuf,
    /// Every replica of the coordinator group, this one included.
    pub replicas: Vec<NodeAddress>,
    /// Every region and its nodes, where sealed epochs go.
    pub regions: BTreeMap<RegionId, Vec<NodeAddress>>,
    /// The WAN delay of raft messages to the other replicas (empty: none).
    pub peer_delays: PeerDelays,
    /// The WAN delay of sealed epochs to each region (empty: none).
    pub region_delays: BTreeMap<RegionId, OneWayDelay>,
    /// How connections to the other replicas and to the regions are secured.
    /// [`CoordinatorDriverConfig::from_topology`] leaves it plaintext; `dsss node` sets it
    /// from the topology's `[tls]` table.
    pub security: Security,
}

impl CoordinatorDriverConfig {
    /// The configuration of the coordinator replica on node `node_id` of `topology`. With
    /// `emulate_wan`, messages to other regions wait for the latency matrix's one-way delay
    /// (with jitter) from this node's region.
    pub fn from_topology(
        topology: &Topology,
        node_id: u64,
        emulate_wan: bool,
    ) -> Result<CoordinatorDriverConfig, ConfigError> {
        let coordinator = CoordinatorConfig::from_topology(topology, node_id)?;
        let node = topology.node(node_id).ok_or_else(|| ConfigError {
            field: "node_id",
            reason: format!("node {node_id} is not in the topology"),
        })?;
        let own_region_index = topology.region_index_of(node_id).unwrap_or(0);
        let replicas = topology
            .coordinator
            .replicas
            .iter()
            .filter_map(|&replica| {
                topology.node(replica).map(|settings| NodeAddress {
                    node_id: replica,
                    address: settings.address.clone(),
                })
            })
            .collect();
        let mut regions = BTreeMap::new();
        let mut region_delays = BTreeMap::new();
        let mut peer_delays = PeerDelays::none();
        for (index, region) in topology.regions.iter().enumerate() {
            let region_id = RegionId::new(region.id.clone()).map_err(|error| ConfigError {
                field: "regions",
                reason: error.to_string(),
            })?;
            let link = topology.latency.link(own_region_index, index);
            let delay = OneWayDelay {
                one_way_us: link.one_way_us,
                jitter_us: link.jitter_us,
            };
            if emulate_wan {
                region_delays.insert(region_id.clone(), delay);
                for member in &region.nodes {
                    if topology.is_coordinator_replica(member.id) && member.id != node_id {
                        peer_delays.by_peer.insert(member.id, delay);
                    }
                }
            }
            let nodes = region
                .nodes
                .iter()
                .map(|member| NodeAddress {
                    node_id: member.id,
                    address: member.address.clone(),
                })
                .collect();
            regions.insert(region_id, nodes);
        }
        Ok(CoordinatorDriverConfig {
            coordinator,
            data_dir: node.data_dir.join(COORDINATOR_DATA_DIR_NAME),
            replicas,
            regions,
            peer_delays,
            region_delays,
            security: Security::Plaintext,
        })
    }

    /// The address of replica `node_id`, if it is one.
    pub fn replica_address(&self, node_id: u64) -> Option<&str> {
        self.replicas
            .iter()
            .find(|replica| replica.node_id == node_id)
            .map(|replica| replica.address.as_str())
    }
}
