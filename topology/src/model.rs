//! The validated topology model. Every value here has passed the checks described in the crate
//! documentation; durations are integer microseconds.

use std::path::{Path, PathBuf};

/// A whole DSSS deployment, as described by one topology file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Cluster-wide settings from `[cluster]`.
    pub cluster: ClusterSettings,
    /// TLS material from `[tls]`, when the cluster uses mutual TLS.
    pub tls: Option<TlsSettings>,
    /// Where the global coordinator's replicas run, from `[coordinator]`.
    pub coordinator: CoordinatorSettings,
    /// The regions in file order; a region's index here is its index in [`Topology::latency`].
    pub regions: Vec<Region>,
    /// One-way delays between and within regions.
    pub latency: LatencyMatrix,
    /// What each client identity may do, from `[[grants]]`; empty: every client may do
    /// everything a client may.
    pub grants: Vec<Grant>,
    /// Bounds of every node's server (`[limits]`); each unset one keeps the server's default.
    pub limits: LimitsSettings,
    /// Bearer tokens that identify clients (`[[tokens]]`), for clients behind a gateway that
    /// ends their TLS.
    pub tokens: Vec<ClientToken>,
}

/// What one client identity may do with which objects (`[[grants]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The client's name, as its certificate gives it (`dsss://client/<name>`).
    pub client: String,
    /// Object-name prefixes; the empty prefix is every object.
    pub objects: Vec<String>,
    /// The rights granted over them.
    pub rights: Vec<GrantRight>,
}

/// A right a grant gives a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GrantRight {
    /// Open sessions and call methods.
    Call,
    /// Subscribe, fetch checkpoints, `sync()`.
    Read,
    /// Upload checkpoints.
    Upload,
}

impl GrantRight {
    /// The names a topology may use, in order.
    pub const NAMES: [&'static str; 3] = ["call", "read", "upload"];

    /// The right named `name`.
    pub fn from_name(name: &str) -> Option<GrantRight> {
        match name {
            "call" => Some(GrantRight::Call),
            "read" => Some(GrantRight::Read),
            "upload" => Some(GrantRight::Upload),
            _ => None,
        }
    }

    /// The right's name.
    pub fn name(self) -> &'static str {
        match self {
            GrantRight::Call => "call",
            GrantRight::Read => "read",
            GrantRight::Upload => "upload",
        }
    }
}

/// A bearer token that identifies a client (`[[tokens]]`): calls that carry the token are the
/// client's, with its grants. The file holds the token's SHA-256 digest, never the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientToken {
    /// The client the token stands for.
    pub client: String,
    /// The SHA-256 digest of the token.
    pub sha256: [u8; 32],
}

/// Bounds of every node's server (`[limits]`), in bytes, counts and time. `None` keeps the
/// default the server names (`dsss topology show` prints both).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitsSettings {
    /// Open connections per remote IP address.
    pub connections_per_address: Option<u64>,
    /// TLS handshakes in flight at once.
    pub handshakes_in_flight: Option<u64>,
    /// How long a TLS handshake may take.
    pub handshake_timeout_us: Option<u64>,
    /// The HTTP/2 keepalive ping interval.
    pub keepalive_interval_us: Option<u64>,
    /// How long a keepalive ping may go unanswered before the connection is closed.
    pub keepalive_timeout_us: Option<u64>,
    /// How long a connection may carry no request before it is closed.
    pub connection_idle_timeout_us: Option<u64>,
    /// Requests in flight at once on one connection.
    pub streams_per_connection: Option<u64>,
    /// Bytes of requests in flight on one connection.
    pub request_bytes_per_connection: Option<u64>,
    /// Bytes of requests in flight from one caller (an identity, or an address over
    /// plaintext).
    pub request_bytes_per_caller: Option<u64>,
    /// Bytes of requests in flight on one node.
    pub request_bytes_per_server: Option<u64>,
}

/// Cluster-wide settings (`[cluster]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The cluster's name.
    pub name: String,
    /// Length of a global epoch.
    pub epoch_us: u64,
    /// How long a region may stay silent before it leaves the watermark.
    pub suspicion_timeout_us: u64,
    /// Received hybrid logical clock timestamps further ahead than this are refused.
    pub max_clock_skew_us: u64,
    /// One-way delay between two nodes of the same region.
    pub intra_region_delay_us: u64,
    /// Jitter of the intra-region delay; at most `intra_region_delay_us`.
    pub intra_region_jitter_us: u64,
    /// The most bytes a region's log may hold above its truncation point before the region
    /// refuses new records (its disk quota).
    pub region_log_quota_bytes: u64,
    /// The share of the quota, in percent, past which the region releases records that no
    /// checkpoint covers; 0 never.
    pub region_log_release_share_percent: u8,
    /// The log age, in microseconds, past which the region releases records that no
    /// checkpoint covers; 0 never.
    pub region_log_release_age_us: u64,
}

/// Mutual TLS material (`[tls]`). Relative paths resolve against the working directory of the
/// process that reads the topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate authority that signs every node and client certificate.
    pub ca_cert: PathBuf,
    /// The directory holding `node-N.crt` and `node-N.key` for each node id N, and the
    /// operator's `admin.crt` and `admin.key`.
    pub cert_dir: PathBuf,
    /// The certificate applications (the SDK) present: `client_cert` when given, otherwise
    /// `cert_dir/client.crt`.
    pub client_cert: PathBuf,
    /// The private key of `client_cert`: `client_key` when given, otherwise
    /// `cert_dir/client.key`.
    pub client_key: PathBuf,
}

impl TlsSettings {
    /// The file name of the default client certificate in `cert_dir`.
    pub const CLIENT_CERT_FILE: &str = "client.crt";
    /// The file name of the default client key in `cert_dir`.
    pub const CLIENT_KEY_FILE: &str = "client.key";
    /// The file name of the operator's certificate in `cert_dir` (`dsss region ...`).
    pub const ADMIN_CERT_FILE: &str = "admin.crt";
    /// The file name of the operator's key in `cert_dir`.
    pub const ADMIN_KEY_FILE: &str = "admin.key";

    /// The certificate file of a node: `cert_dir/node-N.crt`.
    pub fn node_cert_path(&self, node_id: u64) -> PathBuf {
        self.cert_dir.join(format!("node-{node_id}.crt"))
    }

    /// The private key file of a node: `cert_dir/node-N.key`.
    pub fn node_key_path(&self, node_id: u64) -> PathBuf {
        self.cert_dir.join(format!("node-{node_id}.key"))
    }

    /// The operator's certificate, which `dsss region` commands present: `cert_dir/admin.crt`.
    pub fn admin_cert_path(&self) -> PathBuf {
        self.cert_dir.join(Self::ADMIN_CERT_FILE)
    }

    /// The operator's private key: `cert_dir/admin.key`.
    pub fn admin_key_path(&self) -> PathBuf {
        self.cert_dir.join(Self::ADMIN_KEY_FILE)
    }
}

/// Placement of the global coordinator (`[coordinator]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorSettings {
    /// Node ids that also host a coordinator replica: an odd count, each a node of the cluster.
    pub replicas: Vec<u64>,
    /// The replica that should lead when it can; one of `replicas`.
    pub preferred_leader: u64,
    /// The most sealed epochs the coordinator retains for regions that have not acknowledged
    /// them; beyond, it releases those only regions out of the membership still need (they
    /// catch up from another region's log when they return).
    pub retained_epochs: usize,
}

/// One region: an odd-sized raft group of nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// The region's id, such as `eu-west-1`.
    pub id: String,
    /// The region's nodes, in file order.
    pub nodes: Vec<NodeSettings>,
}

/// One node of a region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSettings {
    /// The node's id, unique in the cluster and at least 1.
    pub id: u64,
    /// `host:port` peers and clients dial: the node's advertised address.
    pub address: String,
    /// `host:port` the node binds, when it differs from `address` (behind NAT, in a
    /// container, or a Kubernetes pod behind its service): `0.0.0.0:7001`, say. `None`: the
    /// node binds `address`.
    pub listen: Option<String>,
    /// `host:port` where the node serves plain HTTP for monitoring: Prometheus metrics on
    /// `/metrics`, liveness on `/healthz`, readiness on `/readyz`. `None`: no such endpoint
    /// (`dsss node --metrics-listen` can still ask for one).
    pub metrics_listen: Option<String>,
    /// Where the node keeps its data. A relative path resolves against the working directory
    /// of the node's process.
    pub data_dir: PathBuf,
}

/// The delay a message takes over one link: `one_way_us` plus or minus up to `jitter_us`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Link {
    /// Typical one-way delay.
    pub one_way_us: u64,
    /// Largest deviation from `one_way_us`; never more than `one_way_us`.
    pub jitter_us: u64,
}

impl Link {
    /// The shortest delay a message can take over this link.
    pub fn delay_us_min(&self) -> u64 {
        self.one_way_us.saturating_sub(self.jitter_us)
    }

    /// The longest delay a message can take over this link.
    pub fn delay_us_max(&self) -> u64 {
        self.one_way_us.saturating_add(self.jitter_us)
    }
}

/// One-way delays between every two regions, symmetric, with the intra-region link on the
/// diagonal. Regions are addressed by their index in [`Topology::regions`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyMatrix {
    region_count: usize,
    /// Row-major `region_count * region_count` links.
    links: Vec<Link>,
}

impl LatencyMatrix {
    /// A matrix for `region_count` regions where every link, within and between regions, is
    /// `intra_region`. Set the links between regions with [`LatencyMatrix::set_link`].
    pub fn new(region_count: usize, intra_region: Link) -> Self {
        Self {
            region_count,
            links: vec![intra_region; region_count * region_count],
        }
    }

    /// Sets the link between two regions in both directions (DSSS models one-way delays as
    /// symmetric). Setting `a == b` changes only that region's intra-region link.
    ///
    /// # Panics
    ///
    /// If either index is not below [`LatencyMatrix::region_count`].
    pub fn set_link(&mut self, region_a_index: usize, region_b_index: usize, link: Link) {
        assert!(
            region_a_index < self.region_count && region_b_index < self.region_count,
            "region index out of range: ({region_a_index}, {region_b_index}) with {} regions",
            self.region_count
        );
        self.links[region_a_index * self.region_count + region_b_index] = link;
        self.links[region_b_index * self.region_count + region_a_index] = link;
    }

    /// How many regions the matrix covers.
    pub fn region_count(&self) -> usize {
        self.region_count
    }

    /// The link between two regions; the intra-region link when `region_a_index ==
    /// region_b_index`.
    ///
    /// # Panics
    ///
    /// If either index is not below [`LatencyMatrix::region_count`].
    pub fn link(&self, region_a_index: usize, region_b_index: usize) -> Link {
        assert!(
            region_a_index < self.region_count && region_b_index < self.region_count,
            "region index out of range: ({region_a_index}, {region_b_index}) with {} regions",
            self.region_count
        );
        self.links[region_a_index * self.region_count + region_b_index]
    }

    /// The two distinct regions (lower index first) with the largest one-way delay between
    /// them, the first such pair in index order; `None` with fewer than two regions.
    pub fn d_max_pair(&self) -> Option<(usize, usize)> {
        let mut best: Option<((usize, usize), u64)> = None;
        for region_a_index in 0..self.region_count {
            for region_b_index in region_a_index + 1..self.region_count {
                let one_way_us = self.link(region_a_index, region_b_index).one_way_us;
                if best.is_none_or(|(_, best_us)| one_way_us > best_us) {
                    best = Some(((region_a_index, region_b_index), one_way_us));
                }
            }
        }
        best.map(|(pair, _)| pair)
    }

    /// d: the largest one-way delay between two distinct regions, which bounds the latency of
    /// a sequentially consistent global write from below (docs/design.md section 7). With a single
    /// region it is the intra-region delay; with none it is 0.
    pub fn d_max_us(&self) -> u64 {
        match self.d_max_pair() {
            Some((region_a_index, region_b_index)) => {
                self.link(region_a_index, region_b_index).one_way_us
            }
            None if self.region_count == 1 => self.link(0, 0).one_way_us,
            None => 0,
        }
    }
}

impl NodeSettings {
    /// The address the node binds: `listen` when given, else `address`.
    pub fn listen_address(&self) -> &str {
        self.listen.as_deref().unwrap_or(&self.address)
    }
}

impl Topology {
    /// How long a region waits before it resends a batch the coordinator has not acknowledged,
    /// and the coordinator before it resends an epoch a region has not acknowledged: ten
    /// epochs, but never less than three one-way delays across the widest link (an answer
    /// cannot come back sooner than a round trip, and resending before it only doubles the
    /// traffic), and at most half the suspicion timeout (so that a region that resends is
    /// heard before it is suspected). The region node, the coordinator and the simulator all
    /// take it from here.
    pub fn resend_interval_us(&self) -> u64 {
        let cluster = &self.cluster;
        cluster
            .epoch_us
            .saturating_mul(10)
            .max(self.latency.d_max_us().saturating_mul(3))
            .min(cluster.suspicion_timeout_us / 2)
            .max(1)
    }

    /// The longest a sender waits before it resends what is unacknowledged, after resends
    /// that brought nothing (each doubles the wait): four resend intervals, at most half the
    /// suspicion timeout (so that a region that resends is still heard before it is
    /// suspected), never less than [`Topology::resend_interval_us`].
    pub fn resend_interval_max_us(&self) -> u64 {
        let interval_us = self.resend_interval_us();
        (self.cluster.suspicion_timeout_us / 2)
            .min(interval_us.saturating_mul(4))
            .max(interval_us)
    }

    /// The index of the region with this id.
    pub fn region_index(&self, region_id: &str) -> Option<usize> {
        self.regions
            .iter()
            .position(|region| region.id == region_id)
    }

    /// The region with this id.
    pub fn region(&self, region_id: &str) -> Option<&Region> {
        self.regions.iter().find(|region| region.id == region_id)
    }

    /// The index of the region a node belongs to.
    pub fn region_index_of(&self, node_id: u64) -> Option<usize> {
        self.regions
            .iter()
            .position(|region| region.nodes.iter().any(|node| node.id == node_id))
    }

    /// The region a node belongs to.
    pub fn region_of(&self, node_id: u64) -> Option<&Region> {
        self.region_index_of(node_id)
            .map(|region_index| &self.regions[region_index])
    }

    /// The settings of a node.
    pub fn node(&self, node_id: u64) -> Option<&NodeSettings> {
        self.nodes()
            .map(|(_, node)| node)
            .find(|node| node.id == node_id)
    }

    /// Every node with its region, regions in file order and nodes in file order within them.
    pub fn nodes(&self) -> impl Iterator<Item = (&Region, &NodeSettings)> {
        self.regions
            .iter()
            .flat_map(|region| region.nodes.iter().map(move |node| (region, node)))
    }

    /// How many nodes the cluster has.
    pub fn node_count(&self) -> usize {
        self.regions.iter().map(|region| region.nodes.len()).sum()
    }

    /// True when the node hosts a coordinator replica.
    pub fn is_coordinator_replica(&self, node_id: u64) -> bool {
        self.coordinator.replicas.contains(&node_id)
    }

    /// The link between two nodes: the intra-region link when they share a region, else the
    /// link between their regions. `None` when either node is unknown.
    pub fn link_between_nodes(&self, node_a_id: u64, node_b_id: u64) -> Option<Link> {
        let region_a_index = self.region_index_of(node_a_id)?;
        let region_b_index = self.region_index_of(node_b_id)?;
        Some(self.latency.link(region_a_index, region_b_index))
    }
}

/// Removes `.` components and trailing separators so that `data/a`, `./data/a` and `data/a/`
/// count as the same data directory.
pub(crate) fn normalized_path(path: &Path) -> PathBuf {
    path.components()
        .filter(|component| !matches!(component, std::path::Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(one_way_us: u64, jitter_us: u64) -> Link {
        Link {
            one_way_us,
            jitter_us,
        }
    }

    #[test]
    fn matrix_is_symmetric_and_has_the_intra_region_link_on_the_diagonal() {
        let mut matrix = LatencyMatrix::new(3, link(200, 50));
        matrix.set_link(0, 1, link(20_000, 2_000));
        matrix.set_link(2, 1, link(30_000, 0));
        assert_eq!(matrix.link(1, 0), link(20_000, 2_000));
        assert_eq!(matrix.link(1, 2), link(30_000, 0));
        assert_eq!(matrix.link(2, 2), link(200, 50));
        assert_eq!(matrix.d_max_pair(), Some((1, 2)));
        assert_eq!(matrix.d_max_us(), 30_000);
    }

    #[test]
    fn d_max_of_one_region_is_the_intra_region_delay() {
        let matrix = LatencyMatrix::new(1, link(500, 10));
        assert_eq!(matrix.d_max_pair(), None);
        assert_eq!(matrix.d_max_us(), 500);
        assert_eq!(LatencyMatrix::new(0, link(500, 10)).d_max_us(), 0);
    }

    #[test]
    fn link_bounds_never_go_below_zero() {
        assert_eq!(link(100, 100).delay_us_min(), 0);
        assert_eq!(link(100, 30).delay_us_min(), 70);
        assert_eq!(link(100, 30).delay_us_max(), 130);
    }

    #[test]
    fn normalized_paths_ignore_dot_components_and_trailing_separators() {
        assert_eq!(
            normalized_path(Path::new("./data/a/")),
            normalized_path(Path::new("data/./a"))
        );
        assert_ne!(
            normalized_path(Path::new("data/a")),
            normalized_path(Path::new("data/b"))
        );
    }
}
