//! [`DriverConfig`]: what one production node needs to run, usually taken from a topology
//! file with [`DriverConfig::from_topology`].

use std::path::PathBuf;

use dsss_topology::LimitsSettings;
use dsss_topology::{GrantRight, Topology};
use dsss_wire::access::{AccessPolicy, ClientGrant, ClientRight};
use dsss_wire::limits::ServerLimits;
use dsss_wire::tls::Security;

use crate::RegionNodeConfig;
use crate::topology_config::TopologyConfigError;

pub use crate::topology_config::TICK_INTERVAL_US_DEFAULT;

/// The shortest tick interval a driver accepts, in microseconds: shorter ticks would spend the
/// node loop on timers rather than on requests.
pub const TICK_INTERVAL_US_MIN: u64 = 1_000;

/// The longest tick interval a driver accepts, in microseconds.
pub const TICK_INTERVAL_US_MAX: u64 = 10_000_000;

/// Another member of the region and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddress {
    /// Its node id.
    pub node_id: u64,
    /// `host:port` of its gRPC server.
    pub address: String,
}

/// The settings of one production node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// The sans-IO node's settings: node id, initial members, region, raft ticks.
    pub node: RegionNodeConfig,
    /// `host:port` the node's gRPC server binds.
    pub listen_address: String,
    /// `host:port` peers and clients reach the node at, which it names to others (in the
    /// leader hints of its answers): the topology's `address`, where `listen_address` is its
    /// `listen` (the two differ behind NAT and in containers).
    pub advertised_address: String,
    /// The directory of the node's RocksDB store; created when missing.
    pub data_dir: PathBuf,
    /// The other nodes of the region that this node may exchange raft messages with.
    pub peers: Vec<PeerAddress>,
    /// The interval between two raft ticks.
    pub tick_interval_us: u64,
    /// How the node's server and every connection it makes are secured: mutual TLS, or
    /// plaintext when its operator asked for it (`dsss node --insecure`).
    /// [`DriverConfig::from_topology`] leaves it plaintext; `dsss node` sets it from the
    /// topology's `[tls]` table.
    pub security: Security,
    /// Which identities may call which of the node's methods under mutual TLS: the
    /// topology's nodes and regions and the coordinator's replicas. Filled by
    /// [`DriverConfig::from_topology`]; plaintext admits every caller.
    pub access: AccessPolicy,
}

/// Why a topology does not give a configuration for a node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DriverConfigError {
    /// The node is not in the topology, or its region's id cannot name records.
    #[error(transparent)]
    Topology(#[from] TopologyConfigError),
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
}

impl DriverConfig {
    /// The configuration of node `node_id` of `topology`: its address and data directory as
    /// listed, the other nodes of its region as peers, and the region's nodes as the initial
    /// members of the raft group. With `join`, the node starts with no initial members and
    /// waits to be added to an existing group (as a learner first).
    pub fn from_topology(
        topology: &Topology,
        node_id: u64,
        join: bool,
    ) -> Result<DriverConfig, DriverConfigError> {
        let (region, node) = crate::topology_config::find_node(topology, node_id)?;
        let node_config = crate::topology_config::region_node_config(
            topology,
            node_id,
            join,
            TICK_INTERVAL_US_DEFAULT,
        )?;
        let peers = region
            .nodes
            .iter()
            .filter(|member| member.id != node_id)
            .map(|member| PeerAddress {
                node_id: member.id,
                address: member.address.clone(),
            })
            .collect();
        let mut config = DriverConfig {
            node: node_config,
            listen_address: node.listen_address().to_owned(),
            advertised_address: node.address.clone(),
            data_dir: node.data_dir.clone(),
            peers,
            tick_interval_us: TICK_INTERVAL_US_DEFAULT,
            security: Security::Plaintext,
            access: AccessPolicy::new(
                region.id.clone(),
                topology
                    .nodes()
                    .map(|(region, node)| (node.id, region.id.clone())),
                topology.coordinator.replicas.iter().copied(),
            )
            .with_limits(server_limits(&topology.limits))
            .with_tokens(
                topology
                    .tokens
                    .iter()
                    .map(|token| (token.client.clone(), token.sha256)),
            ),
        };
        if !topology.grants.is_empty() {
            config.access = config
                .access
                .with_grants(topology.grants.iter().map(|grant| {
                    let rights = grant
                        .rights
                        .iter()
                        .map(|right| match right {
                            GrantRight::Call => ClientRight::Call,
                            GrantRight::Read => ClientRight::Read,
                            GrantRight::Upload => ClientRight::Upload,
                        })
                        .collect();
                    (
                        grant.client.clone(),
                        vec![ClientGrant {
                            object_prefixes: grant.objects.clone(),
                            rights,
                        }],
                    )
                }));
        }
        config.validate()?;
        Ok(config)
    }

    /// Ticks raft every `tick_interval_us` instead, keeping how long a proposal may wait
    /// (its timeout, counted in ticks, is rescaled).
    pub fn set_tick_interval_us(&mut self, tick_interval_us: u64) {
        let proposal_wait_us = self
            .node
            .proposal_timeout_ticks
            .saturating_mul(self.tick_interval_us);
        self.tick_interval_us = tick_interval_us;
        self.node.proposal_timeout_ticks = proposal_wait_us
            .div_ceil(tick_interval_us.max(1))
            .clamp(1, crate::node::PROPOSAL_TIMEOUT_TICKS_MAX);
    }

    /// Checks every setting, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), DriverConfigError> {
        self.node.validate().map_err(DriverConfigError::Invalid)?;
        if !(TICK_INTERVAL_US_MIN..=TICK_INTERVAL_US_MAX).contains(&self.tick_interval_us) {
            return Err(DriverConfigError::Invalid(format!(
                "tick_interval_us {} is outside {TICK_INTERVAL_US_MIN}..={TICK_INTERVAL_US_MAX}",
                self.tick_interval_us
            )));
        }
        self.access
            .limits()
            .validate()
            .map_err(DriverConfigError::Invalid)?;
        let own_id = self.node.group.node_id;
        if let Some(peer) = self.peers.iter().find(|peer| peer.node_id == own_id) {
            return Err(DriverConfigError::Invalid(format!(
                "peer list names the node itself ({}, at {})",
                peer.node_id, peer.address
            )));
        }
        Ok(())
    }

    /// The address of `node_id`, this node or a peer.
    pub fn address_of(&self, node_id: u64) -> Option<&str> {
        if node_id == self.node.group.node_id {
            return Some(&self.advertised_address);
        }
        self.peers
            .iter()
            .find(|peer| peer.node_id == node_id)
            .map(|peer| peer.address.as_str())
    }
}

/// The server bounds a topology's `[limits]` set, the server's defaults for the rest.
pub fn server_limits(settings: &LimitsSettings) -> ServerLimits {
    let defaults = ServerLimits::default();
    let count = |value: Option<u64>, default: usize| {
        value.map_or(default, |value| {
            usize::try_from(value).unwrap_or(usize::MAX)
        })
    };
    ServerLimits {
        connections_per_address_max: count(
            settings.connections_per_address,
            defaults.connections_per_address_max,
        ),
        handshakes_in_flight_max: count(
            settings.handshakes_in_flight,
            defaults.handshakes_in_flight_max,
        ),
        handshake_timeout_us: settings
            .handshake_timeout_us
            .unwrap_or(defaults.handshake_timeout_us),
        keepalive_interval_us: settings
            .keepalive_interval_us
            .unwrap_or(defaults.keepalive_interval_us),
        keepalive_timeout_us: settings
            .keepalive_timeout_us
            .unwrap_or(defaults.keepalive_timeout_us),
        connection_idle_timeout_us: settings
            .connection_idle_timeout_us
            .unwrap_or(defaults.connection_idle_timeout_us),
        streams_per_connection_max: settings
            .streams_per_connection
            .map_or(defaults.streams_per_connection_max, |value| {
                u32::try_from(value).unwrap_or(u32::MAX)
            }),
        request_bytes_per_connection_max: settings
            .request_bytes_per_connection
            .unwrap_or(defaults.request_bytes_per_connection_max),
        request_bytes_per_caller_max: settings
            .request_bytes_per_caller
            .unwrap_or(defaults.request_bytes_per_caller_max),
        request_bytes_per_server_max: settings
            .request_bytes_per_server
            .unwrap_or(defaults.request_bytes_per_server_max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_tick_keeps_how_long_a_proposal_may_wait() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../topology/examples/local.toml");
        let topology = dsss_topology::load(&path).unwrap();
        let mut config = DriverConfig::from_topology(&topology, 21, false).unwrap();
        assert_eq!(config.tick_interval_us, TICK_INTERVAL_US_DEFAULT);
        // 3.7 s: the suspicion timeout, twenty widest delays and a second.
        assert_eq!(config.node.proposal_timeout_ticks, 185);
        config.set_tick_interval_us(5_000);
        assert_eq!(config.tick_interval_us, 5_000);
        assert_eq!(config.node.proposal_timeout_ticks, 740);
        config.validate().unwrap();
    }
}
