//! [`Config`]: which region a client talks to, and its bounds.

use std::path::Path;
use std::time::Duration;

use crate::replica::ReplicaConfig;

/// The most objects one client may have open at once.
pub const OPEN_OBJECTS_MAX: usize = 1_024;
/// The most calls one client may have waiting at once (across its objects). It stays below what
/// a node accepts in flight per client, so the client waits instead of being refused.
pub const CALLS_IN_FLIGHT_MAX: usize = 16;

/// How a client reaches its region and how its replicas behave.
#[derive(Clone, Debug)]
pub struct Config {
    /// The region the client belongs to.
    pub region: String,
    /// The region's members: node id and `host:port` of its client API.
    pub members: Vec<(u64, String)>,
    /// The client's id; `None` draws a fresh one at connect.
    pub client_id: Option<u64>,
    /// How the replicas of opened objects checkpoint.
    pub replica: ReplicaConfig,
    /// The most calls in flight at once, 1 to [`CALLS_IN_FLIGHT_MAX`].
    pub calls_in_flight_max: usize,
    /// How long one call may take over all its retries.
    pub call_timeout: Duration,
}

impl Config {
    /// A client of `region` with the nodes of that region in a topology file.
    pub fn from_topology(path: impl AsRef<Path>, region: &str) -> Result<Config, String> {
        let path = path.as_ref();
        let topology = dsss_topology::load(path).map_err(|diagnostics| diagnostics.to_string())?;
        Config::from_parsed_topology(&topology, region)
            .map_err(|reason| format!("{}: {reason}", path.display()))
    }

    /// A client of `region` with the nodes of that region in `topology`.
    pub fn from_parsed_topology(
        topology: &dsss_topology::Topology,
        region: &str,
    ) -> Result<Config, String> {
        let Some(found) = topology
            .regions
            .iter()
            .find(|candidate| candidate.id == region)
        else {
            let known: Vec<&str> = topology.regions.iter().map(|r| r.id.as_str()).collect();
            return Err(format!(
                "no region {region:?} in the topology (regions: {})",
                known.join(", ")
            ));
        };
        Ok(Config::new(
            region,
            found
                .nodes
                .iter()
                .map(|node| (node.id, node.address.clone()))
                .collect(),
        ))
    }

    /// A client of `region` whose members are `members` (node id, `host:port`).
    pub fn new(region: &str, members: Vec<(u64, String)>) -> Config {
        Config {
            region: region.to_owned(),
            members,
            client_id: None,
            replica: ReplicaConfig::default(),
            calls_in_flight_max: CALLS_IN_FLIGHT_MAX,
            call_timeout: Duration::from_secs(30),
        }
    }

    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), String> {
        if self.members.is_empty() {
            return Err(format!("region {} has no members", self.region));
        }
        if !(1..=CALLS_IN_FLIGHT_MAX).contains(&self.calls_in_flight_max) {
            return Err(format!(
                "calls_in_flight_max {} is outside 1..={CALLS_IN_FLIGHT_MAX}",
                self.calls_in_flight_max
            ));
        }
        if self.client_id == Some(0) {
            return Err("client id 0 is reserved".to_owned());
        }
        self.replica.validate()
    }
}
