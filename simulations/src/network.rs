//! The simulated network: regions, nodes, a latency matrix, packet faults and partitions.
//!
//! What this model does:
//! - A message from node `a` to node `b` takes the link of (region of `a`, region of `b`); the
//!   diagonal of the matrix is the link inside a region, also used for a node sending to
//!   itself. Its delay is drawn uniformly from `[delay - jitter, delay + jitter]`, the lower end
//!   clamped at zero (the draw is uniform over the clamped range, so no probability mass piles
//!   up at zero).
//! - Messages from one node to another arrive in the order they were sent, as on the TCP
//!   connections that production nodes and clients hold to each other (raft messages travel
//!   on one stream per peer): a message whose drawn delay would bring it before an earlier one
//!   of the same sender and receiver arrives right after it instead, so jitter spreads
//!   arrival times but never reorders. Only the reordering fault below and duplicates do.
//! - Loss drops a message at send time with a probability. Duplication delivers a second copy
//!   with its own independently drawn delay. Reordering adds, with a probability, an extra
//!   delay drawn uniformly from `[0, reorder_delay_max]`, so a later message can overtake an
//!   earlier one even on a link without jitter.
//! - Partitions are a set of cut one-way node pairs. A partition is checked when a message is
//!   SENT: a message sent across a cut is dropped, and a message already in flight when a cut
//!   is made still arrives (it already left the sender, as a packet on the wire would). Healing
//!   affects only messages sent afterwards, for the same reason.
//!
//! - A link between two regions can be changed for a while (a scripted fault): its delay and
//!   jitter replaced, and packet faults of its own (loss, duplication, reordering) added on
//!   top of the network-wide ones. Like a partition, a change acts on messages sent from then
//!   on. A message on a link without such a change draws exactly what it drew before link
//!   changes existed, so a run without them keeps its history; a changed link draws its own
//!   loss, duplication and reordering right after the network-wide ones.
//!
//! What it does not model: bandwidth and congestion, message sizes, and corruption of message
//! contents.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::random::SimRng;
use crate::time::duration_nanos_saturating;

/// The id of a simulated node. DSSS node ids are plain 64-bit numbers.
pub type NodeId = u64;

/// The sender id of a message injected by the test driver from outside the network (a
/// client). No node of a network may have this id.
pub const EXTERNAL_NODE_ID: NodeId = u64::MAX;

/// The most regions a network holds.
pub const REGION_COUNT_MAX: usize = 64;

/// The most nodes a network holds.
pub const NODE_COUNT_MAX: usize = 4_096;

/// The longest region name, in bytes.
pub const REGION_NAME_SIZE_BYTES_MAX: usize = 256;

/// The largest one-way delay of a link. Real links stay far below this; a larger value is a
/// unit mistake in the configuration.
pub const LINK_DELAY_MAX: Duration = Duration::from_secs(60);

/// The largest jitter of a link.
pub const LINK_JITTER_MAX: Duration = Duration::from_secs(60);

/// The largest extra delay reordering may add to a message.
pub const REORDER_DELAY_MAX: Duration = Duration::from_secs(60);

/// A region: its index in [`NetworkConfig::regions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionId(pub usize);

impl fmt::Display for RegionId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "r{}", self.0)
    }
}

/// A one-way link: its mean delay and the jitter around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The mean one-way delay.
    pub delay: Duration,
    /// Each delay is drawn uniformly from `[delay - jitter, delay + jitter]`, never below zero.
    pub jitter: Duration,
}

impl Link {
    /// A link with the given mean delay and jitter.
    pub const fn new(delay: Duration, jitter: Duration) -> Self {
        Link { delay, jitter }
    }

    /// The shortest and longest delay this link can produce.
    pub fn delay_bounds(&self) -> (Duration, Duration) {
        (
            self.delay.saturating_sub(self.jitter),
            self.delay.saturating_add(self.jitter),
        )
    }

    /// One delay, drawn uniformly from [`Link::delay_bounds`].
    pub fn sample_delay(&self, rng: &mut SimRng) -> Duration {
        let (low, high) = self.delay_bounds();
        Duration::from_nanos(rng.range_inclusive(
            duration_nanos_saturating(low),
            duration_nanos_saturating(high),
        ))
    }
}

/// One node of the network and the region it lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node's id, unique in the network.
    pub id: NodeId,
    /// The node's region.
    pub region: RegionId,
}

/// The network as plain data: regions, nodes and the latency matrix.
///
/// Build it field by field (a topology file maps onto it directly) or with the helper methods,
/// then hand it to [`Simulation::new`](crate::Simulation::new), which validates it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Region names; a region's [`RegionId`] is its index here.
    pub regions: Vec<String>,
    /// Every node and its region.
    pub nodes: Vec<NodeConfig>,
    /// `links[from][to]`: the one-way link from region `from` to region `to`; the diagonal is
    /// the link between two nodes of one region. Every entry must be present.
    pub links: Vec<Vec<Option<Link>>>,
}

impl NetworkConfig {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// A network of one region holding `nodes`, all connected by `link`.
    pub fn single_region(
        name: impl Into<String>,
        nodes: impl IntoIterator<Item = NodeId>,
        link: Link,
    ) -> Self {
        let mut config = Self::new();
        let region = config.add_region(name, link);
        for node in nodes {
            config.add_node(node, region);
        }
        config
    }

    /// Adds a region whose nodes reach each other through `intra_region`, and returns its id.
    /// Links to the other regions must be set with [`NetworkConfig::set_link`].
    pub fn add_region(&mut self, name: impl Into<String>, intra_region: Link) -> RegionId {
        let region = RegionId(self.regions.len());
        self.regions.push(name.into());
        self.set_link(region, region, intra_region);
        region
    }

    /// Sets the one-way link from region `from` to region `to`.
    pub fn set_link(&mut self, from: RegionId, to: RegionId, link: Link) {
        // The matrix grows as needed; `validate` reports a matrix larger than the region list.
        let size = self.links.len().max(from.0 + 1).max(to.0 + 1);
        self.links.resize_with(size, Vec::new);
        for row in &mut self.links {
            if row.len() < size {
                row.resize(size, None);
            }
        }
        self.links[from.0][to.0] = Some(link);
    }

    /// Sets the link between regions `a` and `b` in both directions.
    pub fn set_link_symmetric(&mut self, a: RegionId, b: RegionId, link: Link) {
        self.set_link(a, b, link);
        self.set_link(b, a, link);
    }

    /// Adds a node to a region.
    pub fn add_node(&mut self, id: NodeId, region: RegionId) {
        self.nodes.push(NodeConfig { id, region });
    }

    /// The region with the given name.
    pub fn region_named(&self, name: &str) -> Option<RegionId> {
        self.regions
            .iter()
            .position(|region| region == name)
            .map(RegionId)
    }

    /// Checks every rule a simulation relies on and names the first entry that breaks one.
    pub fn validate(&self) -> Result<(), NetworkConfigError> {
        self.validate_regions()?;
        self.validate_nodes()?;
        self.validate_links()
    }

    fn validate_regions(&self) -> Result<(), NetworkConfigError> {
        if self.regions.is_empty() {
            return Err(NetworkConfigError::NoRegions);
        }
        if self.regions.len() > REGION_COUNT_MAX {
            return Err(NetworkConfigError::TooManyRegions {
                count: self.regions.len(),
            });
        }
        let mut first_index_of: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, name) in self.regions.iter().enumerate() {
            if name.is_empty() || name.len() > REGION_NAME_SIZE_BYTES_MAX {
                return Err(NetworkConfigError::BadRegionName {
                    index,
                    size_bytes: name.len(),
                });
            }
            if let Some(&first_index) = first_index_of.get(name.as_str()) {
                return Err(NetworkConfigError::DuplicateRegionName {
                    index,
                    first_index,
                    name: name.clone(),
                });
            }
            first_index_of.insert(name, index);
        }
        Ok(())
    }

    fn validate_nodes(&self) -> Result<(), NetworkConfigError> {
        if self.nodes.is_empty() {
            return Err(NetworkConfigError::NoNodes);
        }
        if self.nodes.len() > NODE_COUNT_MAX {
            return Err(NetworkConfigError::TooManyNodes {
                count: self.nodes.len(),
            });
        }
        let mut first_index_of: BTreeMap<NodeId, usize> = BTreeMap::new();
        for (index, node) in self.nodes.iter().enumerate() {
            if node.id == EXTERNAL_NODE_ID {
                return Err(NetworkConfigError::ReservedNodeId { index });
            }
            if let Some(&first_index) = first_index_of.get(&node.id) {
                return Err(NetworkConfigError::DuplicateNodeId {
                    index,
                    first_index,
                    id: node.id,
                });
            }
            first_index_of.insert(node.id, index);
            if node.region.0 >= self.regions.len() {
                return Err(NetworkConfigError::UnknownRegion {
                    index,
                    id: node.id,
                    region: node.region.0,
                    region_count: self.regions.len(),
                });
            }
        }
        Ok(())
    }

    fn validate_links(&self) -> Result<(), NetworkConfigError> {
        let region_count = self.regions.len();
        if self.links.len() != region_count {
            return Err(NetworkConfigError::LinkRowCount {
                rows: self.links.len(),
                region_count,
            });
        }
        for (from, row) in self.links.iter().enumerate() {
            if row.len() != region_count {
                return Err(NetworkConfigError::LinkColumnCount {
                    from,
                    columns: row.len(),
                    region_count,
                });
            }
            for (to, link) in row.iter().enumerate() {
                let place = || LinkPlace {
                    from,
                    to,
                    from_name: self.regions[from].clone(),
                    to_name: self.regions[to].clone(),
                };
                let Some(link) = link else {
                    return Err(NetworkConfigError::MissingLink { place: place() });
                };
                if link.delay > LINK_DELAY_MAX {
                    return Err(NetworkConfigError::DelayTooLarge {
                        place: place(),
                        delay: link.delay,
                    });
                }
                if link.jitter > LINK_JITTER_MAX {
                    return Err(NetworkConfigError::JitterTooLarge {
                        place: place(),
                        jitter: link.jitter,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Where in the latency matrix an error is: indexes and region names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkPlace {
    /// Row: the sending region.
    pub from: usize,
    /// Column: the receiving region.
    pub to: usize,
    /// The sending region's name.
    pub from_name: String,
    /// The receiving region's name.
    pub to_name: String,
}

impl fmt::Display for LinkPlace {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "links[{}][{}] ({} -> {})",
            self.from, self.to, self.from_name, self.to_name
        )
    }
}

/// A network configuration that breaks a rule, with the entry that breaks it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetworkConfigError {
    /// The region list is empty.
    #[error("regions: the network has no regions")]
    NoRegions,
    /// More than [`REGION_COUNT_MAX`] regions.
    #[error("regions: {count} regions, more than the maximum of {REGION_COUNT_MAX}")]
    TooManyRegions {
        /// The number of regions given.
        count: usize,
    },
    /// A region name is empty or longer than [`REGION_NAME_SIZE_BYTES_MAX`].
    #[error(
        "regions[{index}]: a region name must be 1 to {REGION_NAME_SIZE_BYTES_MAX} bytes long, \
         this one is {size_bytes}"
    )]
    BadRegionName {
        /// The index of the region.
        index: usize,
        /// The length of its name.
        size_bytes: usize,
    },
    /// Two regions share a name.
    #[error("regions[{index}]: region name {name:?} is already used by regions[{first_index}]")]
    DuplicateRegionName {
        /// The index of the second region.
        index: usize,
        /// The index of the first region with that name.
        first_index: usize,
        /// The shared name.
        name: String,
    },
    /// The node list is empty.
    #[error("nodes: the network has no nodes")]
    NoNodes,
    /// More than [`NODE_COUNT_MAX`] nodes.
    #[error("nodes: {count} nodes, more than the maximum of {NODE_COUNT_MAX}")]
    TooManyNodes {
        /// The number of nodes given.
        count: usize,
    },
    /// A node uses [`EXTERNAL_NODE_ID`].
    #[error(
        "nodes[{index}]: node id {EXTERNAL_NODE_ID} is reserved for messages injected from \
         outside the network"
    )]
    ReservedNodeId {
        /// The index of the node.
        index: usize,
    },
    /// Two nodes share an id.
    #[error("nodes[{index}]: node id {id} is already used by nodes[{first_index}]")]
    DuplicateNodeId {
        /// The index of the second node.
        index: usize,
        /// The index of the first node with that id.
        first_index: usize,
        /// The shared id.
        id: NodeId,
    },
    /// A node names a region that does not exist.
    #[error(
        "nodes[{index}]: node {id} is in region {region}, but there are only {region_count} \
         regions"
    )]
    UnknownRegion {
        /// The index of the node.
        index: usize,
        /// The node's id.
        id: NodeId,
        /// The region index it names.
        region: usize,
        /// The number of regions.
        region_count: usize,
    },
    /// The matrix does not have one row per region.
    #[error("links: {rows} rows, but there are {region_count} regions")]
    LinkRowCount {
        /// The number of rows.
        rows: usize,
        /// The number of regions.
        region_count: usize,
    },
    /// A row of the matrix does not have one entry per region.
    #[error("links[{from}]: {columns} entries, but there are {region_count} regions")]
    LinkColumnCount {
        /// The row.
        from: usize,
        /// The number of entries in it.
        columns: usize,
        /// The number of regions.
        region_count: usize,
    },
    /// A pair of regions has no link.
    #[error("{place}: the link is missing")]
    MissingLink {
        /// The missing entry.
        place: LinkPlace,
    },
    /// A link's delay is larger than [`LINK_DELAY_MAX`].
    #[error("{place}: delay {delay:?} is more than the maximum of {LINK_DELAY_MAX:?}")]
    DelayTooLarge {
        /// The entry.
        place: LinkPlace,
        /// Its delay.
        delay: Duration,
    },
    /// A link's jitter is larger than [`LINK_JITTER_MAX`].
    #[error("{place}: jitter {jitter:?} is more than the maximum of {LINK_JITTER_MAX:?}")]
    JitterTooLarge {
        /// The entry.
        place: LinkPlace,
        /// Its jitter.
        jitter: Duration,
    },
}

/// Packet faults of the whole network, changeable at any time during a run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NetworkFaults {
    /// The probability that a message is dropped when it is sent.
    pub loss_probability: f64,
    /// The probability that a message is delivered twice (each copy with its own delay).
    pub duplication_probability: f64,
    /// The probability that a message gets an extra delay, so that later ones may overtake it.
    pub reorder_probability: f64,
    /// The largest extra delay reordering adds.
    pub reorder_delay_max: Duration,
}

impl NetworkFaults {
    /// No faults: every message is delivered once, with its link's delay.
    pub const NONE: NetworkFaults = NetworkFaults {
        loss_probability: 0.0,
        duplication_probability: 0.0,
        reorder_probability: 0.0,
        reorder_delay_max: Duration::ZERO,
    };

    /// Faults drawn from `rng`, each uniformly between none and the value in `maxima`, so
    /// that a seed decides the fault settings of its run too.
    pub fn random(rng: &mut SimRng, maxima: &NetworkFaults) -> NetworkFaults {
        let reorder_delay_max_nanos = duration_nanos_saturating(maxima.reorder_delay_max);
        NetworkFaults {
            loss_probability: rng.next_f64() * maxima.loss_probability,
            duplication_probability: rng.next_f64() * maxima.duplication_probability,
            reorder_probability: rng.next_f64() * maxima.reorder_probability,
            reorder_delay_max: Duration::from_nanos(
                rng.range_inclusive(0, reorder_delay_max_nanos),
            ),
        }
    }

    /// Checks that probabilities are within `[0, 1]` and the reorder delay within
    /// [`REORDER_DELAY_MAX`].
    pub fn validate(&self) -> Result<(), NetworkFaultsError> {
        let probabilities = [
            ("loss_probability", self.loss_probability),
            ("duplication_probability", self.duplication_probability),
            ("reorder_probability", self.reorder_probability),
        ];
        for (field, value) in probabilities {
            if !(0.0..=1.0).contains(&value) {
                return Err(NetworkFaultsError::ProbabilityOutOfRange { field, value });
            }
        }
        if self.reorder_delay_max > REORDER_DELAY_MAX {
            return Err(NetworkFaultsError::ReorderDelayTooLarge {
                delay: self.reorder_delay_max,
            });
        }
        Ok(())
    }
}

impl fmt::Display for NetworkFaults {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "loss={} duplication={} reorder={} reorder_delay_max={:?}",
            self.loss_probability,
            self.duplication_probability,
            self.reorder_probability,
            self.reorder_delay_max
        )
    }
}

/// Fault settings that cannot be applied.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NetworkFaultsError {
    /// A probability outside `[0, 1]` (or NaN).
    #[error("{field}: {value} is not a probability within [0, 1]")]
    ProbabilityOutOfRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// A reorder delay above [`REORDER_DELAY_MAX`].
    #[error("reorder_delay_max: {delay:?} is more than the maximum of {REORDER_DELAY_MAX:?}")]
    ReorderDelayTooLarge {
        /// The delay given.
        delay: Duration,
    },
}

/// A change to the link between two regions, one way, that stands until it is lifted: what a
/// scripted `link_delay` or `link_loss` fault sets. Either part may be absent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkOverride {
    /// The delay and jitter in force instead of the configured ones.
    pub link: Option<Link>,
    /// Packet faults of this link alone, on top of the network-wide ones.
    pub faults: Option<NetworkFaults>,
}

impl LinkOverride {
    fn is_empty(&self) -> bool {
        self.link.is_none() && self.faults.is_none()
    }
}

/// The network of a running simulation: its validated configuration, faults and partitions.
///
/// Read it through [`Simulation::network`](crate::Simulation::network); change it through the
/// simulation's fault methods, which also write the change to the trace.
#[derive(Clone, Debug)]
pub struct Network {
    config: NetworkConfig,
    region_of: BTreeMap<NodeId, RegionId>,
    faults: NetworkFaults,
    /// One-way (from, to) pairs whose messages are dropped at send time.
    cut_links: BTreeSet<(NodeId, NodeId)>,
    /// Changed links, by (sending region, receiving region); never an empty change.
    link_overrides: BTreeMap<(RegionId, RegionId), LinkOverride>,
}

impl Network {
    /// A network with no faults and no partitions.
    pub fn new(config: NetworkConfig) -> Result<Self, NetworkConfigError> {
        config.validate()?;
        let region_of = config
            .nodes
            .iter()
            .map(|node| (node.id, node.region))
            .collect();
        Ok(Network {
            config,
            region_of,
            faults: NetworkFaults::NONE,
            cut_links: BTreeSet::new(),
            link_overrides: BTreeMap::new(),
        })
    }

    /// The configuration the network was built from.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Every node id, in increasing order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.region_of.keys().copied()
    }

    /// The region of `node`, or `None` for an unknown node.
    pub fn region_of(&self, node: NodeId) -> Option<RegionId> {
        self.region_of.get(&node).copied()
    }

    /// The nodes of `region`, in increasing id order.
    pub fn nodes_in_region(&self, region: RegionId) -> Vec<NodeId> {
        self.region_of
            .iter()
            .filter(|&(_, &node_region)| node_region == region)
            .map(|(&node, _)| node)
            .collect()
    }

    /// The link a message from `from` to `to` takes now (a changed delay included), or `None`
    /// if either node is unknown.
    pub fn link(&self, from: NodeId, to: NodeId) -> Option<Link> {
        let from_region = self.region_of(from)?;
        let to_region = self.region_of(to)?;
        self.region_link(from_region, to_region)
    }

    /// The link from region `from` to region `to` now: the configured one, or the delay a
    /// change put in its place. `None` for an unknown region.
    pub fn region_link(&self, from: RegionId, to: RegionId) -> Option<Link> {
        if let Some(link) = self
            .link_overrides
            .get(&(from, to))
            .and_then(|change| change.link)
        {
            return Some(link);
        }
        // Validation guarantees a full matrix, so the entry of two known regions exists.
        *self.config.links.get(from.0)?.get(to.0)?
    }

    /// The change standing on the link from region `from` to region `to`, if any.
    pub fn link_override(&self, from: RegionId, to: RegionId) -> Option<&LinkOverride> {
        self.link_overrides.get(&(from, to))
    }

    /// Every changed link, in (sending region, receiving region) order.
    pub fn link_overrides(&self) -> impl Iterator<Item = ((RegionId, RegionId), &LinkOverride)> {
        self.link_overrides
            .iter()
            .map(|(&pair, change)| (pair, change))
    }

    /// The current packet faults.
    pub fn faults(&self) -> &NetworkFaults {
        &self.faults
    }

    /// True when messages sent from `from` to `to` are currently dropped by a partition.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut_links.contains(&(from, to))
    }

    /// Every cut one-way pair, in order.
    pub fn cut_links(&self) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        self.cut_links.iter().copied()
    }

    pub(crate) fn set_faults(&mut self, faults: NetworkFaults) {
        self.faults = faults;
    }

    /// Cuts `from -> to`. A node is never cut from itself: a process always reaches itself.
    pub(crate) fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        if from != to {
            self.cut_links.insert((from, to));
        }
    }

    pub(crate) fn heal_one_way(&mut self, from: NodeId, to: NodeId) {
        self.cut_links.remove(&(from, to));
    }

    pub(crate) fn heal_all(&mut self) {
        self.cut_links.clear();
    }

    /// Sets (`Some`) or lifts (`None`) the delay of the link `from -> to`. The caller checks
    /// the regions and the bounds.
    pub(crate) fn set_link_delay(&mut self, from: RegionId, to: RegionId, link: Option<Link>) {
        self.change_link(from, to, |change| change.link = link);
    }

    /// Sets (`Some`) or lifts (`None`) the packet faults of the link `from -> to`. The caller
    /// checks the regions and the values.
    pub(crate) fn set_link_faults(
        &mut self,
        from: RegionId,
        to: RegionId,
        faults: Option<NetworkFaults>,
    ) {
        self.change_link(from, to, |change| change.faults = faults);
    }

    /// Lifts every link change; false when there was none.
    pub(crate) fn restore_links(&mut self) -> bool {
        let changed = !self.link_overrides.is_empty();
        self.link_overrides.clear();
        changed
    }

    fn change_link(
        &mut self,
        from: RegionId,
        to: RegionId,
        change: impl FnOnce(&mut LinkOverride),
    ) {
        let entry = self.link_overrides.entry((from, to)).or_default();
        change(entry);
        if entry.is_empty() {
            self.link_overrides.remove(&(from, to));
        }
    }

    /// The packet faults of the link a message from `from` to `to` takes, when it has its own.
    pub(crate) fn link_faults(&self, from: NodeId, to: NodeId) -> Option<NetworkFaults> {
        if self.link_overrides.is_empty() {
            return None;
        }
        let from_region = self.region_of(from)?;
        let to_region = self.region_of(to)?;
        self.link_overrides
            .get(&(from_region, to_region))
            .and_then(|change| change.faults)
    }

    /// The delay of one message from `from` to `to`, in two parts: the link's delay, and,
    /// with the reorder probability, an extra reorder delay plus, on a link with packet faults
    /// of its own, with its reorder probability, an extra delay of its own. `None` if either
    /// node is unknown.
    pub(crate) fn sample_delay(
        &self,
        rng: &mut SimRng,
        from: NodeId,
        to: NodeId,
    ) -> Option<(Duration, Duration)> {
        let delay = self.link(from, to)?.sample_delay(rng);
        let mut reorder = reorder_delay(rng, &self.faults);
        if let Some(faults) = self.link_faults(from, to) {
            reorder += reorder_delay(rng, &faults);
        }
        Some((delay, reorder))
    }
}

/// With the reorder probability of `faults`, an extra delay drawn from
/// `[0, reorder_delay_max]`; otherwise none. Draws one value, and one more when it reorders.
fn reorder_delay(rng: &mut SimRng, faults: &NetworkFaults) -> Duration {
    if !rng.chance(faults.reorder_probability) {
        return Duration::ZERO;
    }
    Duration::from_nanos(
        rng.range_inclusive(0, duration_nanos_saturating(faults.reorder_delay_max)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link_ms(delay: u64, jitter: u64) -> Link {
        Link::new(Duration::from_millis(delay), Duration::from_millis(jitter))
    }

    fn two_regions() -> NetworkConfig {
        let mut config = NetworkConfig::new();
        let eu = config.add_region("eu", link_ms(1, 0));
        let us = config.add_region("us", link_ms(2, 0));
        config.set_link(eu, us, link_ms(40, 5));
        config.set_link(us, eu, link_ms(45, 5));
        config.add_node(1, eu);
        config.add_node(2, us);
        config
    }

    #[test]
    fn a_complete_configuration_validates() {
        let network = Network::new(two_regions()).unwrap();
        assert_eq!(network.link(1, 2), Some(link_ms(40, 5)));
        assert_eq!(network.link(2, 1), Some(link_ms(45, 5)));
        assert_eq!(network.link(2, 2), Some(link_ms(2, 0)));
        assert_eq!(network.link(1, 3), None);
        assert_eq!(network.nodes_in_region(RegionId(1)), vec![2]);
    }

    #[test]
    fn validation_names_the_broken_entry() {
        let mut missing = two_regions();
        missing.links[1][0] = None;
        assert_eq!(
            missing.validate().unwrap_err().to_string(),
            "links[1][0] (us -> eu): the link is missing"
        );

        let mut duplicate = two_regions();
        duplicate.add_node(2, RegionId(0));
        assert_eq!(
            duplicate.validate().unwrap_err().to_string(),
            "nodes[2]: node id 2 is already used by nodes[1]"
        );

        let mut unknown_region = two_regions();
        unknown_region.add_node(3, RegionId(9));
        assert!(matches!(
            unknown_region.validate(),
            Err(NetworkConfigError::UnknownRegion { index: 2, .. })
        ));

        let mut reserved = two_regions();
        reserved.add_node(EXTERNAL_NODE_ID, RegionId(0));
        assert!(matches!(
            reserved.validate(),
            Err(NetworkConfigError::ReservedNodeId { index: 2 })
        ));

        let mut slow = two_regions();
        slow.set_link(RegionId(0), RegionId(1), link_ms(61_000, 0));
        assert!(matches!(
            slow.validate(),
            Err(NetworkConfigError::DelayTooLarge { .. })
        ));

        let mut same_name = two_regions();
        same_name.regions[1] = "eu".into();
        assert!(matches!(
            same_name.validate(),
            Err(NetworkConfigError::DuplicateRegionName {
                index: 1,
                first_index: 0,
                ..
            })
        ));

        let mut ragged = two_regions();
        ragged.links[0].pop();
        assert!(matches!(
            ragged.validate(),
            Err(NetworkConfigError::LinkColumnCount { from: 0, .. })
        ));

        let mut extra_row = two_regions();
        extra_row.set_link(RegionId(2), RegionId(2), link_ms(1, 0));
        assert!(matches!(
            extra_row.validate(),
            Err(NetworkConfigError::LinkRowCount {
                rows: 3,
                region_count: 2
            })
        ));

        assert_eq!(
            NetworkConfig::new().validate(),
            Err(NetworkConfigError::NoRegions)
        );
    }

    #[test]
    fn link_delays_stay_within_bounds_and_never_go_negative() {
        let mut rng = SimRng::new(9);
        let wide = link_ms(1, 5);
        assert_eq!(
            wide.delay_bounds(),
            (Duration::ZERO, Duration::from_millis(6))
        );
        for _ in 0..1_000 {
            assert!(wide.sample_delay(&mut rng) <= Duration::from_millis(6));
        }
    }

    #[test]
    fn fault_validation_rejects_bad_values() {
        let mut faults = NetworkFaults::NONE;
        assert_eq!(faults.validate(), Ok(()));
        faults.duplication_probability = -0.1;
        assert_eq!(
            faults.validate().unwrap_err().to_string(),
            "duplication_probability: -0.1 is not a probability within [0, 1]"
        );
        faults.duplication_probability = f64::NAN;
        assert!(faults.validate().is_err());
        faults.duplication_probability = 0.0;
        faults.reorder_delay_max = Duration::from_secs(61);
        assert!(faults.validate().is_err());
    }

    #[test]
    fn a_changed_link_takes_its_own_delay_and_faults_until_restored() {
        let mut network = Network::new(two_regions()).unwrap();
        let (eu, us) = (RegionId(0), RegionId(1));
        assert!(!network.restore_links(), "nothing to restore");
        network.set_link_delay(eu, us, Some(link_ms(300, 0)));
        assert_eq!(network.link(1, 2), Some(link_ms(300, 0)));
        assert_eq!(network.link(2, 1), Some(link_ms(45, 5)), "one way only");
        assert_eq!(network.link_faults(1, 2), None);
        let lossy = NetworkFaults {
            loss_probability: 0.5,
            ..NetworkFaults::NONE
        };
        network.set_link_faults(us, eu, Some(lossy));
        assert_eq!(network.link_faults(2, 1), Some(lossy));
        assert_eq!(network.link_faults(1, 2), None);
        // Lifting one part keeps the other.
        network.set_link_delay(eu, us, None);
        assert_eq!(network.link(1, 2), Some(link_ms(40, 5)));
        assert_eq!(network.link_overrides().count(), 1);
        assert!(network.restore_links());
        assert_eq!(network.link_overrides().count(), 0);
        assert_eq!(network.link_faults(2, 1), None);
    }

    #[test]
    fn a_link_without_a_change_draws_as_before() {
        // The draws of an unchanged link: the link's delay, then the reorder chance (and the
        // extra delay when it reorders), from the same generator as before link changes.
        let mut network = Network::new(two_regions()).unwrap();
        network.set_faults(NetworkFaults {
            reorder_probability: 0.5,
            reorder_delay_max: Duration::from_millis(10),
            ..NetworkFaults::NONE
        });
        network.set_link_delay(RegionId(1), RegionId(0), Some(link_ms(500, 0)));
        let (mut changed, mut expected) = (SimRng::new(3), SimRng::new(3));
        for _ in 0..100 {
            let delay = network.sample_delay(&mut changed, 1, 2).unwrap();
            let link_delay = link_ms(40, 5).sample_delay(&mut expected);
            let mut reorder = Duration::ZERO;
            if expected.chance(0.5) {
                reorder = Duration::from_nanos(expected.range_inclusive(0, 10_000_000));
            }
            assert_eq!(delay, (link_delay, reorder));
        }
        assert_eq!(changed.next_u64(), expected.next_u64());
    }

    #[test]
    fn random_faults_stay_below_their_maxima() {
        let maxima = NetworkFaults {
            loss_probability: 0.1,
            duplication_probability: 0.2,
            reorder_probability: 0.3,
            reorder_delay_max: Duration::from_millis(10),
        };
        let mut rng = SimRng::new(5);
        for _ in 0..100 {
            let faults = NetworkFaults::random(&mut rng, &maxima);
            assert_eq!(faults.validate(), Ok(()));
            assert!(faults.loss_probability <= 0.1);
            assert!(faults.duplication_probability <= 0.2);
            assert!(faults.reorder_probability <= 0.3);
            assert!(faults.reorder_delay_max <= Duration::from_millis(10));
        }
    }
}
