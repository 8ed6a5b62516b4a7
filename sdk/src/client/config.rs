//! [`Config`]: which region a client talks to, and its bounds.

use std::path::Path;
use std::time::Duration;

use dsss_wire::tls::{Security, TlsFiles};

use crate::replica::ReplicaConfig;
use crate::session::{
    CALLS_IN_FLIGHT_MAX, SessionConfig, TOPOLOGY_STREAM_STALL_TIMEOUT_US,
    attempt_timeout_us_for_d_max,
};

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
    /// How long one call may take, from the first attempt until this client's copy applied it
    /// (past it an acknowledged call fails with [`crate::CallError::NotApplied`]), and how long
    /// an open or a `sync()` may take.
    pub call_timeout: Duration,
    /// How long one request may go unanswered before the next member is tried.
    pub attempt_timeout: Duration,
    /// How long the log stream may make no progress while a call, an open or a `sync()` waits
    /// on it before the client follows the log from the next member.
    pub stream_stall_timeout: Duration,
    /// How connections to the region are secured. [`Config::new`] leaves them plaintext;
    /// [`Config::from_topology`] uses mutual TLS with the topology's client certificate when
    /// the topology has a `[tls]` table.
    pub security: Security,
    /// A bearer token the topology's `[[tokens]]` lists, sent with every request: the region
    /// takes the calls as the token's client (its grants, its session ids) whatever client
    /// certificate the connection presents. For deployments whose clients reach DSSS through
    /// a gateway that ends their TLS.
    pub bearer_token: Option<String>,
}

impl Config {
    /// A client of `region` with the nodes of that region in a topology file.
    pub fn from_topology(path: impl AsRef<Path>, region: &str) -> Result<Config, String> {
        let path = path.as_ref();
        let topology = dsss_topology::load(path).map_err(|diagnostics| diagnostics.to_string())?;
        Config::from_parsed_topology(&topology, region)
            .map_err(|reason| format!("{}: {reason}", path.display()))
    }

    /// A client of `region` with the nodes of that region in `topology`, over mutual TLS with
    /// the client certificate and key that the topology's `[tls]` table names (checked now,
    /// the error naming the file that cannot be used), or plaintext when it has none.
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
        let mut config = Config::new(
            region,
            found
                .nodes
                .iter()
                .map(|node| (node.id, node.address.clone()))
                .collect(),
        );
        // The waits follow the topology's delays, as the simulator's instances do.
        config.attempt_timeout =
            Duration::from_micros(attempt_timeout_us_for_d_max(topology.latency.d_max_us()));
        config.stream_stall_timeout = Duration::from_micros(TOPOLOGY_STREAM_STALL_TIMEOUT_US);
        if let Some(tls) = &topology.tls {
            config.security = Security::tls(TlsFiles {
                ca_cert: tls.ca_cert.clone(),
                cert: tls.client_cert.clone(),
                key: tls.client_key.clone(),
            })
            .map_err(|error| format!("[tls] client certificate: {error}"))?;
        }
        Ok(config)
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
            attempt_timeout: Duration::from_secs(2),
            stream_stall_timeout: Duration::from_secs(1),
            security: Security::Plaintext,
            bearer_token: None,
        }
    }

    /// The session this configuration describes, for `client_id`.
    pub(crate) fn session_config(&self, client_id: u64) -> SessionConfig {
        let mut session = SessionConfig::new(
            client_id,
            self.members.iter().map(|(node_id, _)| *node_id).collect(),
        );
        session.calls_in_flight_max = self.calls_in_flight_max;
        session.call_timeout_us = micros(self.call_timeout);
        session.attempt_timeout_us = micros(self.attempt_timeout);
        session.stream_stall_timeout_us = micros(self.stream_stall_timeout);
        session
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
        if let Some(token) = &self.bearer_token {
            dsss_wire::access::check_token(token)
                .map_err(|problem| format!("bearer_token: {problem}"))?;
        }
        if self.client_id == Some(0) {
            return Err("client id 0 is reserved".to_owned());
        }
        self.replica.validate()?;
        self.session_config(self.client_id.unwrap_or(1)).validate()
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_of_a_topology_waits_as_long_as_its_delays_ask() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topology/examples/local.toml");
        let mut topology = dsss_topology::load(&path).unwrap();
        // Plaintext: the example's certificates are made by `dsss up`.
        topology.tls = None;
        let config = Config::from_parsed_topology(&topology, "local-b").unwrap();
        // Four times the widest one-way delay (35 ms) and 200 ms.
        assert_eq!(config.attempt_timeout, Duration::from_millis(340));
        assert_eq!(config.stream_stall_timeout, Duration::from_millis(500));
        config.validate().unwrap();
        // Without a topology the waits stay the conservative defaults.
        let plain = Config::new("local-b", vec![(21, "127.0.0.1:7121".to_owned())]);
        assert_eq!(plain.attempt_timeout, Duration::from_secs(2));
        assert_eq!(plain.stream_stall_timeout, Duration::from_secs(1));
    }
}
