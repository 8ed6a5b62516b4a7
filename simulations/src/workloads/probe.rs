//! The clock probe: a workload that exercises a topology's WAN and the hybrid logical clock
//! together, before any DSSS protocol runs on top of them.
//!
//! Every node stamps probes with its hybrid logical clock (HLC) and sends them to random peers;
//! every receiver updates its clock from the probe. Beside the nodes, a [`ProbeObserver`]
//! measures the one-way delay of each delivered probe per region pair and checks the clock
//! guarantees the global tier relies on (docs/design.md section 2, "HLC"):
//! - monotonicity: every timestamp a node issues is greater than every one it issued before,
//!   across clock steps backwards and across crashes and restarts;
//! - causality: a receive is later than its send;
//! - the skew bound: a probe is refused exactly when its timestamp is more than the configured
//!   maximum skew ahead of the receiver's physical clock, and a refused probe leaves the
//!   receiver's clock unchanged.
//!
//! A node makes each timestamp durable (written and synced) before it uses it, so a restarted
//! node resumes its clock above everything it issued before the crash.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use dsss_topology::Topology;
use dsss_wire::hlc::{HybridLogicalClock, Timestamp};

use crate::network::{NetworkConfig, NetworkFaults, NodeId, RegionId};
use crate::process::{Context, Process, TimerId};
use crate::simulation::Simulation;
use crate::time::SimTime;

/// The disk key under which a node keeps the last timestamp it issued.
const CLOCK_KEY: &[u8] = b"probe/hlc/last";

/// The most delay samples kept per ordered region pair; later probes are counted but not kept,
/// so a long run has bounded memory.
pub const DELAY_SAMPLES_PER_PAIR_MAX: usize = 100_000;

/// The most violations kept with their details; later ones are only counted.
pub const VIOLATIONS_KEPT_MAX: usize = 20;

/// The longest simulated run the probe accepts.
pub const PROBE_DURATION_MAX: Duration = Duration::from_secs(3_600);

/// The shortest interval between two probes of one node.
pub const PROBE_INTERVAL_MIN: Duration = Duration::from_micros(100);

/// What a probe run does: its length, its load, and the faults drawn from its seed.
#[derive(Clone, Debug)]
pub struct ProbeRunSettings {
    /// The seed every random choice of the run comes from.
    pub seed: u64,
    /// Simulated time during which nodes send probes (faults happen in this window).
    pub duration: Duration,
    /// The mean time between two probes of one node (each wait is drawn from `[0.5, 1.5]` of it).
    pub probe_interval: Duration,
    /// Packet faults during the probing window; healed for the final settling phase.
    pub faults: NetworkFaults,
    /// How many node crashes happen during the run; each node comes back after a random
    /// downtime of up to a tenth of the run.
    pub crash_count: u32,
    /// Whether one random region is cut off from all others for a while (and healed).
    pub region_partition: bool,
    /// Every node's clock gets a skew drawn from `[-clock_skew_us_max, clock_skew_us_max]`.
    pub clock_skew_us_max: i64,
    /// Every node's clock gets a drift drawn from `[-clock_drift_ppm_max, clock_drift_ppm_max]`.
    pub clock_drift_ppm_max: i64,
}

impl ProbeRunSettings {
    /// A fault-free run of `duration` with one probe per node every 5 ms.
    pub fn new(seed: u64, duration: Duration) -> Self {
        ProbeRunSettings {
            seed,
            duration,
            probe_interval: Duration::from_millis(5),
            faults: NetworkFaults::NONE,
            crash_count: 0,
            region_partition: false,
            clock_skew_us_max: 0,
            clock_drift_ppm_max: 0,
        }
    }

    /// Rejects settings the run cannot honour, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.duration.is_zero() || self.duration > PROBE_DURATION_MAX {
            return Err(format!(
                "duration: {:?} is outside 1 ns..={:?}",
                self.duration, PROBE_DURATION_MAX
            ));
        }
        if self.probe_interval < PROBE_INTERVAL_MIN || self.probe_interval > self.duration {
            return Err(format!(
                "probe interval: {:?} is outside {:?}..=duration ({:?})",
                self.probe_interval, PROBE_INTERVAL_MIN, self.duration
            ));
        }
        self.faults
            .validate()
            .map_err(|error| format!("network faults: {error}"))?;
        if self.clock_skew_us_max < 0 || self.clock_skew_us_max > crate::CLOCK_SKEW_US_MAX {
            return Err(format!(
                "clock skew: {} us is outside 0..={} us",
                self.clock_skew_us_max,
                crate::CLOCK_SKEW_US_MAX
            ));
        }
        if self.clock_drift_ppm_max < 0 || self.clock_drift_ppm_max > crate::CLOCK_DRIFT_PPM_MAX {
            return Err(format!(
                "clock drift: {} ppm is outside 0..={} ppm",
                self.clock_drift_ppm_max,
                crate::CLOCK_DRIFT_PPM_MAX
            ));
        }
        Ok(())
    }
}

/// A probe on the wire: when it left (virtual time, for the delay measurement only) and the
/// sender's HLC timestamp.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Virtual time at which the probe was sent.
    pub sent_at: SimTime,
    /// The sender's HLC timestamp for the send event.
    pub timestamp: Timestamp,
}

/// One simulated node of the probe workload.
pub struct ProbeNode {
    clock: HybridLogicalClock,
    peers: Vec<NodeId>,
    probe_interval: Duration,
    probing_until: SimTime,
    observer: Rc<RefCell<ProbeObserver>>,
}

impl ProbeNode {
    /// Issues a timestamp durably: written and synced before anyone sees it.
    fn persist(&self, cx: &mut Context<'_, Probe>, timestamp: Timestamp) {
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(&timestamp.physical_us.to_be_bytes());
        bytes[8..].copy_from_slice(&timestamp.logical.to_be_bytes());
        cx.disk()
            .put(CLOCK_KEY, &bytes)
            .expect("a 12-byte value fits any simulated disk");
        cx.disk().sync();
    }

    fn schedule_next_probe(&self, cx: &mut Context<'_, Probe>) {
        let interval_ns = u64::try_from(self.probe_interval.as_nanos()).unwrap_or(u64::MAX);
        let wait_ns = cx
            .rng()
            .range_inclusive(interval_ns / 2, interval_ns / 2 * 3);
        cx.set_timer(Duration::from_nanos(wait_ns));
    }
}

fn decode_timestamp(bytes: &[u8]) -> Option<Timestamp> {
    let physical: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let logical: [u8; 4] = bytes.get(8..12)?.try_into().ok()?;
    Some(Timestamp {
        physical_us: u64::from_be_bytes(physical),
        logical: u32::from_be_bytes(logical),
    })
}

impl Process for ProbeNode {
    type Message = Probe;

    fn handle_start(&mut self, cx: &mut Context<'_, Probe>) {
        if let Some(last) = cx.disk().get(CLOCK_KEY).and_then(decode_timestamp) {
            self.clock = HybridLogicalClock::resume(last, self.clock.max_skew_us())
                .expect("the node wrote this timestamp itself");
        }
        if cx.now() < self.probing_until {
            self.schedule_next_probe(cx);
        }
    }

    fn handle_message(&mut self, cx: &mut Context<'_, Probe>, from: NodeId, probe: Probe) {
        let node = cx.node();
        let physical_now_us = cx.now_us();
        let before = self.clock.last();
        let delay = cx.now().saturating_duration_since(probe.sent_at);
        let outcome = self.clock.update(probe.timestamp, physical_now_us);
        if let Ok(timestamp) = outcome {
            self.persist(cx, timestamp);
        }
        self.observer.borrow_mut().observe_receive(Receive {
            node,
            from,
            probe: &probe,
            delay,
            physical_now_us,
            before,
            after: self.clock.last(),
            outcome: outcome.map_err(|_| ()),
            max_skew_us: self.clock.max_skew_us(),
        });
    }

    fn handle_timer(&mut self, cx: &mut Context<'_, Probe>, _timer: TimerId) {
        if cx.now() >= self.probing_until || self.peers.is_empty() {
            return;
        }
        let before = self.clock.last();
        let timestamp = self.clock.now(cx.now_us());
        self.persist(cx, timestamp);
        self.observer
            .borrow_mut()
            .observe_issue(cx.node(), before, timestamp);
        let peer = self.peers[usize::try_from(cx.rng().below(self.peers.len() as u64))
            .expect("the index is below a usize length")];
        cx.send(
            peer,
            Probe {
                sent_at: cx.now(),
                timestamp,
            },
        );
        self.schedule_next_probe(cx);
    }
}

/// What a node saw when a probe arrived, handed to the observer.
struct Receive<'a> {
    node: NodeId,
    from: NodeId,
    probe: &'a Probe,
    delay: Duration,
    physical_now_us: u64,
    before: Timestamp,
    after: Timestamp,
    outcome: Result<Timestamp, ()>,
    max_skew_us: u64,
}

/// Checks the clock guarantees and collects delay samples, beside the nodes (never inside them).
#[derive(Default)]
pub struct ProbeObserver {
    region_of: BTreeMap<NodeId, RegionId>,
    /// The greatest timestamp each node ever issued, across restarts.
    issued_max: BTreeMap<NodeId, Timestamp>,
    delays_ns: BTreeMap<(RegionId, RegionId), Vec<u64>>,
    delivered: BTreeMap<(RegionId, RegionId), u64>,
    timestamps_issued: u64,
    receives_accepted: u64,
    receives_refused_for_skew: u64,
    logical_max: u32,
    violation_count: u64,
    violations: Vec<String>,
}

impl ProbeObserver {
    fn violation(&mut self, text: String) {
        self.violation_count += 1;
        if self.violations.len() < VIOLATIONS_KEPT_MAX {
            self.violations.push(text);
        }
    }

    fn observe_issue(&mut self, node: NodeId, before: Timestamp, issued: Timestamp) {
        self.timestamps_issued += 1;
        self.logical_max = self.logical_max.max(issued.logical);
        if issued <= before {
            self.violation(format!(
                "node {node}: clock issued {issued} after {before} (not monotonic)"
            ));
        }
        if let Some(&previous) = self.issued_max.get(&node)
            && issued <= previous
        {
            self.violation(format!(
                "node {node}: clock issued {issued} although it issued {previous} before \
                 (not monotonic across restarts)"
            ));
        }
        self.issued_max
            .entry(node)
            .and_modify(|max| *max = (*max).max(issued))
            .or_insert(issued);
    }

    fn observe_receive(&mut self, receive: Receive<'_>) {
        let Receive {
            node,
            from,
            probe,
            delay,
            physical_now_us,
            before,
            after,
            outcome,
            max_skew_us,
        } = receive;
        let pair = (self.region_of[&from], self.region_of[&node]);
        *self.delivered.entry(pair).or_default() += 1;
        let samples = self.delays_ns.entry(pair).or_default();
        if samples.len() < DELAY_SAMPLES_PER_PAIR_MAX {
            samples.push(u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX));
        }
        let beyond_bound =
            probe.timestamp.physical_us > physical_now_us.saturating_add(max_skew_us);
        match outcome {
            Ok(timestamp) => {
                self.receives_accepted += 1;
                if beyond_bound {
                    self.violation(format!(
                        "node {node}: adopted {} from node {from} although it is more than \
                         {max_skew_us} us ahead of local time {physical_now_us} us",
                        probe.timestamp
                    ));
                }
                if timestamp <= probe.timestamp {
                    self.violation(format!(
                        "node {node}: receive of {} from node {from} got {timestamp}, \
                         not later than the send (causality)",
                        probe.timestamp
                    ));
                }
                self.observe_issue(node, before, timestamp);
            }
            Err(()) => {
                self.receives_refused_for_skew += 1;
                if !beyond_bound {
                    self.violation(format!(
                        "node {node}: refused {} from node {from} although it is within \
                         {max_skew_us} us of local time {physical_now_us} us",
                        probe.timestamp
                    ));
                }
                if after != before {
                    self.violation(format!(
                        "node {node}: a refused receive moved the clock from {before} to {after}"
                    ));
                }
            }
        }
    }
}

/// The delays measured on one ordered region pair.
#[derive(Clone, Debug, PartialEq)]
pub struct PairDelays {
    /// Sending region.
    pub from: String,
    /// Receiving region.
    pub to: String,
    /// The configured one-way delay of the link.
    pub configured_us: u64,
    /// The configured jitter of the link.
    pub jitter_us: u64,
    /// Probes delivered on this pair.
    pub delivered: u64,
    /// Smallest, median, 99th percentile and largest measured delay.
    pub min_us: f64,
    /// Median measured delay.
    pub p50_us: f64,
    /// 99th percentile of the measured delay.
    pub p99_us: f64,
    /// Largest measured delay.
    pub max_us: f64,
}

/// The result of a probe run.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    /// The topology's cluster name.
    pub cluster: String,
    /// The settings of the run.
    pub settings: ProbeRunSettings,
    /// Total simulated time, including the settling phase after the faults healed.
    pub simulated: Duration,
    /// Delays per ordered region pair, in region order.
    pub pairs: Vec<PairDelays>,
    /// Probe messages sent, delivered and dropped, as the kernel counted them.
    pub messages_sent: u64,
    /// Probe messages delivered (duplicates included).
    pub messages_delivered: u64,
    /// Probe messages dropped (loss, partitions, crashed receivers).
    pub messages_dropped: u64,
    /// Extra copies the network made.
    pub messages_duplicated: u64,
    /// Timestamps the nodes issued (sends and accepted receives).
    pub timestamps_issued: u64,
    /// Receives whose timestamp the receiver adopted.
    pub receives_accepted: u64,
    /// Receives refused because the sender's clock was too far ahead.
    pub receives_refused_for_skew: u64,
    /// The largest logical counter any node used.
    pub logical_max: u32,
    /// How many clock guarantees were broken (zero in a correct build).
    pub violation_count: u64,
    /// The first violations, described.
    pub violations: Vec<String>,
    /// Events in the run's trace.
    pub trace_events: u64,
    /// SHA-256 of the run's trace: equal for equal seeds, settings and topology.
    pub trace_hash: String,
}

impl ProbeReport {
    /// Whether every clock guarantee held and, when the network did not reorder probes, every
    /// measured delay stayed within its link's configured delay plus or minus jitter.
    pub fn passed(&self) -> bool {
        self.violation_count == 0 && self.delays_out_of_bounds().is_empty()
    }

    /// Region pairs whose measured delays left `[delay - jitter, delay + jitter]`; empty when
    /// reordering was on, since it adds delay on purpose.
    pub fn delays_out_of_bounds(&self) -> Vec<&PairDelays> {
        if self.settings.faults.reorder_probability > 0.0 {
            return Vec::new();
        }
        self.pairs
            .iter()
            .filter(|pair| {
                let low = pair.configured_us.saturating_sub(pair.jitter_us) as f64;
                let high = pair.configured_us.saturating_add(pair.jitter_us) as f64;
                pair.delivered > 0 && (pair.min_us < low || pair.max_us > high)
            })
            .collect()
    }
}

/// Runs the clock probe on `topology` with `settings`.
///
/// The run has three phases: probing with the configured faults, crashes and partition; a heal
/// of every fault; and a settling phase in which the last probes land.
pub fn run_probe(topology: &Topology, settings: &ProbeRunSettings) -> Result<ProbeReport, String> {
    settings.validate()?;
    let config = NetworkConfig::from_topology(topology);
    let observer = Rc::new(RefCell::new(ProbeObserver::default()));
    let node_ids: Vec<NodeId> = config.nodes.iter().map(|node| node.id).collect();
    for node in &config.nodes {
        observer.borrow_mut().region_of.insert(node.id, node.region);
    }
    let probing_until = SimTime::ZERO.saturating_add(settings.duration);
    let max_skew_us = topology.cluster.max_clock_skew_us;
    let factory_observer = Rc::clone(&observer);
    let probe_interval = settings.probe_interval;
    let factory = move |node: NodeId, _disk: &crate::SimDisk| ProbeNode {
        clock: HybridLogicalClock::new(max_skew_us),
        peers: node_ids.iter().copied().filter(|&id| id != node).collect(),
        probe_interval,
        probing_until,
        observer: Rc::clone(&factory_observer),
    };
    let mut simulation =
        Simulation::new(settings.seed, config, factory).map_err(|error| error.to_string())?;

    simulation.randomize_clocks(settings.clock_skew_us_max, settings.clock_drift_ppm_max);
    simulation.set_faults(settings.faults);
    schedule_faults(&mut simulation, settings);

    simulation.heal_all();
    simulation.set_faults(NetworkFaults::NONE);
    for node in simulation.node_ids() {
        if !simulation.is_up(node) {
            simulation.restart(node);
        }
    }
    // Every probe left before `probing_until`; the longest link delay plus jitter and
    // reordering is far below this settling window.
    let settle = topology_settle_time(topology, settings);
    simulation.run_for(settle);

    let observer = observer.borrow();
    let statistics = simulation.statistics();
    let mut pairs = Vec::new();
    for (from_index, from) in topology.regions.iter().enumerate() {
        for (to_index, to) in topology.regions.iter().enumerate() {
            let key = (RegionId(from_index), RegionId(to_index));
            let link = topology.latency.link(from_index, to_index);
            let mut samples = observer.delays_ns.get(&key).cloned().unwrap_or_default();
            samples.sort_unstable();
            let quantile = |q: f64| -> f64 {
                if samples.is_empty() {
                    return 0.0;
                }
                let index = ((samples.len() - 1) as f64 * q).round() as usize;
                samples[index] as f64 / 1_000.0
            };
            pairs.push(PairDelays {
                from: from.id.clone(),
                to: to.id.clone(),
                configured_us: link.one_way_us,
                jitter_us: link.jitter_us,
                delivered: observer.delivered.get(&key).copied().unwrap_or(0),
                min_us: quantile(0.0),
                p50_us: quantile(0.5),
                p99_us: quantile(0.99),
                max_us: quantile(1.0),
            });
        }
    }
    Ok(ProbeReport {
        cluster: topology.cluster.name.clone(),
        settings: settings.clone(),
        simulated: Duration::from_nanos(simulation.now().as_nanos()),
        pairs,
        messages_sent: statistics.sent,
        messages_delivered: statistics.delivered,
        messages_dropped: statistics.dropped(),
        messages_duplicated: statistics.duplicated,
        timestamps_issued: observer.timestamps_issued,
        receives_accepted: observer.receives_accepted,
        receives_refused_for_skew: observer.receives_refused_for_skew,
        logical_max: observer.logical_max,
        violation_count: observer.violation_count,
        violations: observer.violations.clone(),
        trace_events: simulation.trace().line_count(),
        trace_hash: simulation.trace_hash(),
    })
}

/// Runs the probing window in slices, crashing nodes and cutting a region at times drawn from
/// the run's seed.
fn schedule_faults(simulation: &mut Simulation<ProbeNode>, settings: &ProbeRunSettings) {
    let duration_ns = u64::try_from(settings.duration.as_nanos()).unwrap_or(u64::MAX);
    let nodes = simulation.node_ids();
    let region_count = simulation.network().config().regions.len();
    // Fault plan: (time, action), drawn up front from the one RNG and applied in time order.
    let mut plan: Vec<(u64, FaultAction)> = Vec::new();
    for _ in 0..settings.crash_count {
        let node = nodes[usize::try_from(simulation.rng().below(nodes.len() as u64))
            .expect("index below a usize length")];
        let at = simulation.rng().below(duration_ns);
        let downtime = simulation
            .rng()
            .range_inclusive(1, (duration_ns / 10).max(1));
        plan.push((at, FaultAction::Crash(node)));
        plan.push((at.saturating_add(downtime), FaultAction::Restart(node)));
    }
    if settings.region_partition && region_count > 1 {
        let region = RegionId(
            usize::try_from(simulation.rng().below(region_count as u64))
                .expect("index below a usize length"),
        );
        let at = simulation.rng().below(duration_ns / 2);
        let length = simulation
            .rng()
            .range_inclusive(duration_ns / 10, duration_ns / 2);
        plan.push((at, FaultAction::IsolateRegion(region)));
        plan.push((at.saturating_add(length), FaultAction::HealAll));
    }
    // A stable sort keeps the drawn order for equal times: deterministic.
    plan.sort_by_key(|(at, _)| *at);
    for (at, action) in plan {
        let at = at.min(duration_ns);
        simulation.run_until(SimTime::from_nanos(at));
        match action {
            FaultAction::Crash(node) => {
                simulation.crash(node);
            }
            FaultAction::Restart(node) => {
                simulation.restart(node);
            }
            FaultAction::IsolateRegion(region) => simulation.isolate_region(region),
            FaultAction::HealAll => simulation.heal_all(),
        }
    }
    simulation.run_until(SimTime::from_nanos(duration_ns));
}

enum FaultAction {
    Crash(NodeId),
    Restart(NodeId),
    IsolateRegion(RegionId),
    HealAll,
}

fn topology_settle_time(topology: &Topology, settings: &ProbeRunSettings) -> Duration {
    let slowest_us = (0..topology.regions.len())
        .flat_map(|a| (0..topology.regions.len()).map(move |b| (a, b)))
        .map(|(a, b)| topology.latency.link(a, b).delay_us_max())
        .max()
        .unwrap_or(0);
    Duration::from_micros(slowest_us) * 2
        + settings.faults.reorder_delay_max
        + settings.probe_interval
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.settings;
        writeln!(
            out,
            "clock probe on cluster \"{}\": seed {}, {:.3} s of probing, {:.3} s simulated",
            self.cluster,
            settings.seed,
            settings.duration.as_secs_f64(),
            self.simulated.as_secs_f64()
        )?;
        writeln!(
            out,
            "faults: loss {:.3}, duplication {:.3}, reordering {:.3} (up to {:.1} ms), {} crashes, \
             region partition {}, clock skew up to {:.1} ms, drift up to {} ppm",
            settings.faults.loss_probability,
            settings.faults.duplication_probability,
            settings.faults.reorder_probability,
            settings.faults.reorder_delay_max.as_secs_f64() * 1_000.0,
            settings.crash_count,
            if settings.region_partition {
                "yes"
            } else {
                "no"
            },
            settings.clock_skew_us_max as f64 / 1_000.0,
            settings.clock_drift_ppm_max
        )?;
        writeln!(
            out,
            "messages: {} sent, {} delivered, {} dropped, {} duplicated",
            self.messages_sent,
            self.messages_delivered,
            self.messages_dropped,
            self.messages_duplicated
        )?;
        writeln!(out)?;
        writeln!(out, "one-way delay per region pair (ms)")?;
        let width = self
            .pairs
            .iter()
            .map(|pair| pair.from.len() + pair.to.len() + 4)
            .max()
            .unwrap_or(10)
            .max(10);
        writeln!(
            out,
            "{:<width$} {:>18} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "from -> to", "configured", "min", "p50", "p99", "max", "probes"
        )?;
        for pair in &self.pairs {
            let configured = format!(
                "{:.2} +- {:.2}",
                pair.configured_us as f64 / 1_000.0,
                pair.jitter_us as f64 / 1_000.0
            );
            writeln!(
                out,
                "{:<width$} {:>18} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9}",
                format!("{} -> {}", pair.from, pair.to),
                configured,
                pair.min_us / 1_000.0,
                pair.p50_us / 1_000.0,
                pair.p99_us / 1_000.0,
                pair.max_us / 1_000.0,
                pair.delivered
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "hybrid logical clocks: {} timestamps issued, {} receives adopted, {} refused for \
             skew beyond the bound, largest logical counter {}",
            self.timestamps_issued,
            self.receives_accepted,
            self.receives_refused_for_skew,
            self.logical_max
        )?;
        writeln!(
            out,
            "checks: monotonic, causal and skew-bounded clocks: {}; delays within delay +- jitter: {}",
            if self.violation_count == 0 {
                "ok".to_string()
            } else {
                format!("{} VIOLATIONS", self.violation_count)
            },
            if settings.faults.reorder_probability > 0.0 {
                "not checked (reordering adds delay)".to_string()
            } else if self.delays_out_of_bounds().is_empty() {
                "ok".to_string()
            } else {
                format!("{} pairs OUT OF BOUNDS", self.delays_out_of_bounds().len())
            }
        )?;
        for violation in &self.violations {
            writeln!(out, "  violation: {violation}")?;
        }
        write!(
            out,
            "trace: {} events, sha256 {}",
            self.trace_events, self.trace_hash
        )
    }
}
