//! [`DriverConfig`]: what one production node needs to run, usually taken from a topology
//! file with [`DriverConfig::from_topology`].

use std::path::PathBuf;

use dsss_topology::LimitsSettings;
use dsss_topology::{GrantRight, Topology};
use dsss_wire::RegionId;
use dsss_wire::access::{AccessPolicy, ClientGrant, ClientRight};
use dsss_wire::limits::ServerLimits;
use dsss_wire::tls::Security;

use crate::RegionNodeConfig;

/// The default interval between two raft ticks, in microseconds. With the raft group's
/// default of 10 ticks per election timeout and a region's 4 per heartbeat
/// ([`crate::REGION_HEARTBEAT_TICKS`]), a leader that dies is replaced after 200 to 400
/// ms, and heartbeats go out every 80 ms.
pub const TICK_INTERVAL_US_DEFAULT: u64 = 20_000;

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
        let (region, node) = topology
            .nodes()
            .find(|(_, node)| node.id == node_id)
            .ok_or_else(|| DriverConfigError::UnknownNode {
                node_id,
                known: topology.nodes().map(|(_, node)| node.id).collect(),
            })?;
        let region_id =
            RegionId::new(region.id.clone()).map_err(|error| DriverConfigError::InvalidRegion {
                region: region.id.clone(),
                reason: error.to_string(),
            })?;
        let initial_members = if join {
            Vec::new()
        } else {
            region.nodes.iter().map(|member| member.id).collect()
        };
        let mut node_config = RegionNodeConfig::new(node_id, initial_members, region_id);
        // A region that missed epochs the coordinator released reads them from the others.
        for other in topology
            .regions
            .iter()
            .filter(|other| other.id != region.id)
        {
            let other_id = RegionId::new(other.id.clone()).map_err(|error| {
                DriverConfigError::InvalidRegion {
                    region: other.id.clone(),
                    reason: error.to_string(),
                }
            })?;
            node_config.catch_up_regions.push(other_id);
        }
        node_config.max_clock_skew_us = topology.cluster.max_clock_skew_us;
        node_config.log_retention.size_bytes_max = topology.cluster.region_log_quota_bytes;
        node_config.log_retention.release_share_percent =
            topology.cluster.region_log_release_share_percent;
        node_config.log_retention.release_age_us = topology.cluster.region_log_release_age_us;
        node_config.epoch_interval_us = topology
            .cluster
            .epoch_us
            .max(crate::node::GLOBAL_INTERVAL_US_MIN);
        // The coordinator resends epochs every ten epochs (at most half the suspicion
        // timeout); the region resends unacknowledged batches at the same pace.
        node_config.batch_resend_interval_us = (topology.cluster.epoch_us * 10)
            .min(topology.cluster.suspicion_timeout_us / 2)
            .clamp(
                crate::node::GLOBAL_INTERVAL_US_MIN,
                crate::node::GLOBAL_INTERVAL_US_MAX,
            );
        // An idle region closes a batch four times per suspicion timeout, so that the
        // coordinator keeps hearing of it without a close every epoch.
        node_config.idle_close_interval_us = (topology.cluster.suspicion_timeout_us / 4)
            .max(node_config.epoch_interval_us)
            .clamp(
                crate::node::GLOBAL_INTERVAL_US_MIN,
                crate::node::GLOBAL_INTERVAL_US_MAX,
            );
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
