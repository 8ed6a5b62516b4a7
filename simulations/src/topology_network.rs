//! The simulated network of a topology file: its regions, nodes and latency matrix.

use std::time::Duration;

use dsss_topology::Topology;

use crate::network::{Link, NetworkConfig, RegionId};

impl NetworkConfig {
    /// The network a topology describes: one simulated region per region of the file (same
    /// order, same names), every node in its region, and the file's one-way delays and jitter
    /// between and within regions.
    pub fn from_topology(topology: &Topology) -> NetworkConfig {
        let mut config = NetworkConfig::new();
        let region_ids: Vec<RegionId> = topology
            .regions
            .iter()
            .enumerate()
            .map(|(index, region)| {
                config.add_region(region.id.clone(), link(topology.latency.link(index, index)))
            })
            .collect();
        for (from_index, &from) in region_ids.iter().enumerate() {
            for (to_index, &to) in region_ids.iter().enumerate() {
                if from_index != to_index {
                    config.set_link(from, to, link(topology.latency.link(from_index, to_index)));
                }
            }
        }
        for (region_index, region) in topology.regions.iter().enumerate() {
            for node in &region.nodes {
                config.add_node(node.id, region_ids[region_index]);
            }
        }
        // A validated topology stays inside every bound of the simulated network (at most 64
        // regions of 9 nodes, delays of at most 5 s), so this holds for any file that loaded.
        debug_assert!(config.validate().is_ok(), "{:?}", config.validate());
        config
    }
}

fn link(link: dsss_topology::Link) -> Link {
    Link::new(
        Duration::from_micros(link.one_way_us),
        Duration::from_micros(link.jitter_us),
    )
}
