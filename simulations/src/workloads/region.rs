//! The region workload: one region's raft group of real [`RegionNode`]s (3 or 5 members) and
//! its clients, under faults drawn from the seed, then healed (docs/design.md sections 2, 3, 6).
//!
//! A run has two phases. During the fault window, clients propose records with
//! (client id, sequence), retrying the SAME sequence after a timeout or an error, possibly
//! at another member; members crash and restart (losing what they had not synced), links are
//! partitioned, messages are lost, duplicated and reordered, and leadership is handed around.
//! The observer checks safety all along. Then everything heals: faults stop, every member
//! crashes and restarts (a whole-region restart must lose nothing acknowledged), and the run
//! goes on until the members converge (bounded), when the final checks read every member's
//! log (see [`checker`]).
//!
//! [`RegionCluster`] is the same region for scripted scenarios: a test drives it step by step
//! (propose at a chosen member, crash the leader, ...) and runs the same checks.

pub mod checker;
pub mod process;

use std::cell::{Ref, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use dsss_raft_group::LogRetention;
use dsss_region_node::{ProposeRequest, RegionLogRetention, RegionNode, RegionNodeConfig, Reply};
use dsss_wire::RegionId as WireRegionId;

pub use checker::{RegionObserver, check_logs};
pub use process::{
    ClientProcess, ClientSettings, NodeProcess, RegionMessage, RegionProcess, SimDiskReader,
    SimDiskStore, TICK_INTERVAL,
};

use super::common::{election_seed, uniform_duration};
use crate::network::{EXTERNAL_NODE_ID, Link, NetworkConfig, NetworkFaults, NodeId};
use crate::process::Context;
use crate::simulation::Simulation;
use crate::time::SimTime;

/// The name of the simulated region.
pub const REGION_NAME: &str = "sim-region";

/// The most members a simulated region has.
pub const MEMBER_COUNT_MAX: usize = 7;

/// The most spare nodes of a simulated region (nodes that may join it later).
pub const SPARE_COUNT_MAX: usize = 4;

/// The most clients of a simulated region.
pub const CLIENT_COUNT_MAX: usize = 32;

/// The id of the first client process; members are `1..=member_count`.
pub const FIRST_CLIENT_ID: NodeId = 1_000;

/// The longest fault window a run accepts.
pub const FAULT_WINDOW_MAX: Duration = Duration::from_secs(600);

/// The longest a run waits for the healed region to converge.
pub const CONVERGENCE_MAX: Duration = Duration::from_secs(600);

/// How often a run checks for convergence after the heal.
pub const CONVERGENCE_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The link between two processes of the region.
pub const INTRA_REGION_LINK: Link =
    Link::new(Duration::from_micros(500), Duration::from_micros(200));

/// The faults a run may draw: each count and setting is drawn uniformly from zero to the
/// value here, from the run's seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegionFaultPlan {
    /// The largest loss, duplication and reordering.
    pub network: NetworkFaults,
    /// The most member crashes.
    pub crash_count_max: u32,
    /// The longest a crashed member stays down.
    pub downtime_max: Duration,
    /// The most partitions (one at a time: a member isolated, or a minority cut off).
    pub partition_count_max: u32,
    /// The longest a partition lasts.
    pub partition_duration_max: Duration,
    /// The most leader transfers.
    pub leader_transfer_count_max: u32,
}

impl RegionFaultPlan {
    /// No faults at all.
    pub const NONE: RegionFaultPlan = RegionFaultPlan {
        network: NetworkFaults::NONE,
        crash_count_max: 0,
        downtime_max: Duration::ZERO,
        partition_count_max: 0,
        partition_duration_max: Duration::ZERO,
        leader_transfer_count_max: 0,
    };

    /// Every kind of fault, at levels a region must survive.
    pub fn standard() -> Self {
        RegionFaultPlan {
            network: NetworkFaults {
                loss_probability: 0.1,
                duplication_probability: 0.1,
                reorder_probability: 0.2,
                reorder_delay_max: Duration::from_millis(20),
            },
            crash_count_max: 4,
            downtime_max: Duration::from_millis(500),
            partition_count_max: 3,
            partition_duration_max: Duration::from_millis(400),
            leader_transfer_count_max: 3,
        }
    }
}

/// What a run does.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionRunSettings {
    /// Every random choice of the run comes from this seed.
    pub seed: u64,
    /// Members of the region's raft group (odd, 1 to [`MEMBER_COUNT_MAX`]).
    pub member_count: usize,
    /// Client processes (0 to [`CLIENT_COUNT_MAX`]; a scripted scenario may bring its own).
    pub client_count: usize,
    /// Nodes that start outside the group (no initial members) and wait to be added, ids
    /// `member_count + 1 ..` (0 to [`SPARE_COUNT_MAX`]).
    pub spare_count: usize,
    /// How long clients call and faults happen.
    pub fault_window: Duration,
    /// The faults to draw from.
    pub faults: RegionFaultPlan,
    /// How clients behave (their `calls_until` is set to the end of the fault window).
    pub client: ClientSettings,
    /// The raft log each member keeps below its applied index.
    pub raft_log_retention: LogRetention,
    /// The region log each member keeps.
    pub region_log_retention: RegionLogRetention,
    /// How long the healed region may take to converge.
    pub convergence_max: Duration,
    /// Whether the trace keeps its lines (for a determinism check that shows the first
    /// difference); the hash covers every line either way.
    pub keep_trace_lines: bool,
}

impl RegionRunSettings {
    /// A fault-free run of `member_count` members and four clients for two seconds.
    pub fn new(seed: u64, member_count: usize) -> Self {
        RegionRunSettings {
            seed,
            member_count,
            client_count: 4,
            spare_count: 0,
            fault_window: Duration::from_secs(2),
            faults: RegionFaultPlan::NONE,
            client: ClientSettings {
                think_time_min: Duration::from_millis(2),
                think_time_max: Duration::from_millis(12),
                request_timeout: Duration::from_millis(100),
                calls_until: SimTime::ZERO,
                duplicate_probability: 0.05,
            },
            // Small enough that members behind a partition or a crash catch up by snapshot.
            raft_log_retention: LogRetention {
                entries_max: 64,
                size_bytes_max: 4 * 1024 * 1024,
            },
            // Large enough that no record is dropped, so the final check sees every one.
            region_log_retention: RegionLogRetention::default(),
            convergence_max: Duration::from_secs(30),
            keep_trace_lines: false,
        }
    }

    /// Rejects settings the run cannot honour, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.member_count == 0
            || self.member_count > MEMBER_COUNT_MAX
            || self.member_count.is_multiple_of(2)
        {
            return Err(format!(
                "member_count: {} is not an odd number from 1 to {MEMBER_COUNT_MAX}",
                self.member_count
            ));
        }
        if self.spare_count > SPARE_COUNT_MAX {
            return Err(format!(
                "spare_count: {} is outside 0..={SPARE_COUNT_MAX}",
                self.spare_count
            ));
        }
        if self.client_count > CLIENT_COUNT_MAX {
            return Err(format!(
                "client_count: {} is outside 0..={CLIENT_COUNT_MAX}",
                self.client_count
            ));
        }
        if self.fault_window.is_zero() || self.fault_window > FAULT_WINDOW_MAX {
            return Err(format!(
                "fault_window: {:?} is outside 1 ns..={FAULT_WINDOW_MAX:?}",
                self.fault_window
            ));
        }
        if self.convergence_max.is_zero() || self.convergence_max > CONVERGENCE_MAX {
            return Err(format!(
                "convergence_max: {:?} is outside 1 ns..={CONVERGENCE_MAX:?}",
                self.convergence_max
            ));
        }
        self.faults
            .network
            .validate()
            .map_err(|error| format!("faults.network: {error}"))?;
        self.region_log_retention
            .validate()
            .map_err(|error| format!("region_log_retention: {error}"))?;
        if self.client.think_time_min > self.client.think_time_max
            || self.client.request_timeout.is_zero()
            || !(0.0..=1.0).contains(&self.client.duplicate_probability)
        {
            return Err(format!("client: {:?} is inconsistent", self.client));
        }
        Ok(())
    }
}

/// A simulated region: its members, its clients, the observer, and the simulation that runs
/// them. See the module documentation.
pub struct RegionCluster {
    simulation: Simulation<RegionProcess>,
    observer: Rc<RefCell<RegionObserver>>,
    members: Vec<NodeId>,
    spares: Vec<NodeId>,
    clients: Vec<NodeId>,
}

impl RegionCluster {
    /// The region of `settings`, started at time zero (nothing has run yet).
    pub fn new(settings: &RegionRunSettings) -> Result<Self, String> {
        settings.validate()?;
        let members: Vec<NodeId> = (1..=settings.member_count as NodeId).collect();
        let spares: Vec<NodeId> = (1..=settings.spare_count as NodeId)
            .map(|offset| settings.member_count as NodeId + offset)
            .collect();
        let clients: Vec<NodeId> = (0..settings.client_count as NodeId)
            .map(|offset| FIRST_CLIENT_ID + offset)
            .collect();
        let config = NetworkConfig::single_region(
            REGION_NAME,
            members
                .iter()
                .chain(spares.iter())
                .chain(clients.iter())
                .copied(),
            INTRA_REGION_LINK,
        );
        let observer = Rc::new(RefCell::new(RegionObserver::default()));
        let factory = Self::factory(settings, &members, &clients, &observer);
        let mut simulation =
            Simulation::new(settings.seed, config, factory).map_err(|error| error.to_string())?;
        simulation.set_trace_lines_kept(settings.keep_trace_lines);
        Ok(RegionCluster {
            simulation,
            observer,
            members,
            spares,
            clients,
        })
    }

    fn factory(
        settings: &RegionRunSettings,
        members: &[NodeId],
        clients: &[NodeId],
        observer: &Rc<RefCell<RegionObserver>>,
    ) -> impl FnMut(NodeId, &crate::SimDisk) -> RegionProcess + 'static {
        let members = members.to_vec();
        let client_nodes = Rc::new(clients.iter().copied().collect::<BTreeSet<NodeId>>());
        let observer = Rc::clone(observer);
        let mut client_settings = settings.client;
        client_settings.calls_until = SimTime::ZERO.saturating_add(settings.fault_window);
        let seed = settings.seed;
        let raft_log_retention = settings.raft_log_retention;
        let region_log_retention = settings.region_log_retention;
        let mut incarnations: BTreeMap<NodeId, u64> = BTreeMap::new();
        move |node, _disk| {
            if client_nodes.contains(&node) {
                return RegionProcess::Client(ClientProcess::new(
                    members.clone(),
                    client_settings,
                    Rc::clone(&observer),
                ));
            }
            let incarnation = incarnations.entry(node).or_default();
            *incarnation += 1;
            let region = WireRegionId::new(REGION_NAME).expect("a valid region id");
            // A spare starts with no members: it joins when the group adds it.
            let initial_members = if members.contains(&node) {
                members.clone()
            } else {
                Vec::new()
            };
            let mut config = RegionNodeConfig::new(node, initial_members, region);
            config.group.election_seed = election_seed(seed, node, *incarnation, 0);
            config.group.log_retention = raft_log_retention;
            config.log_retention = region_log_retention;
            config.proposal_timeout_ticks = 50;
            RegionProcess::Node(NodeProcess::new(
                config,
                Rc::clone(&client_nodes),
                Rc::clone(&observer),
            ))
        }
    }

    // Getters.

    /// The simulation, to run it or inject faults.
    pub fn simulation(&mut self) -> &mut Simulation<RegionProcess> {
        &mut self.simulation
    }

    /// The member ids: those the heal restarts and the checks read.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// The spare node ids.
    pub fn spares(&self) -> &[NodeId] {
        &self.spares
    }

    /// Replaces the member ids after a membership change, so that the heal, the
    /// convergence and the checks follow the group.
    pub fn set_members(&mut self, mut members: Vec<NodeId>) {
        members.sort_unstable();
        self.members = members;
    }

    /// The client ids.
    pub fn clients(&self) -> &[NodeId] {
        &self.clients
    }

    /// The region node of `member` (or of a spare), if it is up.
    pub fn node(&self, member: NodeId) -> Option<&RegionNode> {
        self.simulation.process(member)?.node()
    }

    /// The observer.
    pub fn observer(&self) -> Ref<'_, RegionObserver> {
        self.observer.borrow()
    }

    /// The node that leads in the highest term among the members and spares that are up.
    pub fn leader(&self) -> Option<NodeId> {
        self.members
            .iter()
            .chain(self.spares.iter())
            .filter_map(|&member| {
                let node = self.node(member)?;
                node.is_leader().then(|| (node.status().term, member))
            })
            .max()
            .map(|(_, member)| member)
    }

    // Commands.

    /// Runs until some member leads, at most `within`; returns it.
    pub fn run_until_leader(&mut self, within: Duration) -> Option<NodeId> {
        let deadline = self.simulation.now().saturating_add(within);
        while self.simulation.now() < deadline {
            if let Some(leader) = self.leader() {
                return Some(leader);
            }
            self.simulation.run_for(TICK_INTERVAL);
        }
        self.leader()
    }

    /// Delivers a proposal to `member` now, from outside the network (a scripted client);
    /// its reply comes back through [`RegionCluster::take_external_replies`].
    pub fn propose_external(&mut self, member: NodeId, request: ProposeRequest) {
        let now = self.simulation.now();
        self.simulation
            .inject(now, member, RegionMessage::Propose(request));
    }

    /// Delivers a session open to `member` now, from outside the network (a scripted client
    /// opens its session before its first proposal); the answer is left out of
    /// [`RegionCluster::take_external_replies`].
    pub fn open_session_external(&mut self, member: NodeId, session_id: u64) {
        let now = self.simulation.now();
        self.simulation.inject(
            now,
            member,
            RegionMessage::OpenSession {
                open_id: session_id,
                session_id,
            },
        );
    }

    /// The replies members sent to scripted clients since the last call, with their sender.
    pub fn take_external_replies(&mut self) -> Vec<(NodeId, Reply)> {
        self.simulation
            .take_external_messages()
            .into_iter()
            .filter_map(|message| match message.message {
                RegionMessage::Reply(reply) => Some((message.from, reply)),
                RegionMessage::Raft(..)
                | RegionMessage::ClockProbe(_)
                | RegionMessage::Propose(_)
                | RegionMessage::OpenSession { .. }
                | RegionMessage::SessionReply(_)
                | RegionMessage::ReadLogRange(_)
                | RegionMessage::LogRange(_) => None,
            })
            .collect()
    }

    /// Runs `command` on the node of `member` (if up), followed by its round.
    pub fn command(&mut self, member: NodeId, command: impl FnOnce(&mut RegionNode)) -> bool {
        self.simulation
            .with_process(member, |process, cx: &mut Context<'_, RegionMessage>| {
                if let RegionProcess::Node(node_process) = process {
                    node_process.command(cx, command);
                }
            })
            .is_some()
    }

    /// Asks the current leader to hand leadership to `to`; false when no leader is known.
    pub fn transfer_leader(&mut self, to: NodeId) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        self.simulation
            .note(&format!("transfer leadership {leader} -> {to}"));
        self.command(leader, |node| node.transfer_leader(to))
    }

    /// Ends every fault (links, packet faults, crashed members), then runs until the region
    /// has converged: a leader that has committed an entry of its own term (so that its
    /// commit index covers whatever earlier leaders committed), every member applied through
    /// that commit index, the same region log everywhere, and no client waiting. Returns how
    /// long that took.
    pub fn heal_and_converge(&mut self, within: Duration) -> Result<Duration, String> {
        self.heal(false);
        self.converge(within)
    }

    /// Ends every fault: links heal, packet faults stop, crashed members restart. With
    /// `restart_every_member`, every member crashes and restarts first (a restart of the
    /// whole region, which must lose nothing acknowledged).
    pub fn heal(&mut self, restart_every_member: bool) {
        self.simulation.note("heal");
        self.simulation.heal_all();
        self.simulation.set_faults(NetworkFaults::NONE);
        for member in self.members.clone() {
            if restart_every_member {
                self.simulation.crash(member);
            }
            if !self.simulation.is_up(member) {
                self.simulation.restart(member);
            }
        }
    }

    /// Runs until the region has converged (see [`RegionCluster::heal_and_converge`]), at
    /// most `within`; returns how long that took.
    pub fn converge(&mut self, within: Duration) -> Result<Duration, String> {
        let start = self.simulation.now();
        let deadline = start.saturating_add(within);
        while self.simulation.now() < deadline {
            self.simulation.run_for(CONVERGENCE_CHECK_INTERVAL);
            if self.is_converged() {
                return Ok(self.simulation.now().saturating_duration_since(start));
            }
        }
        Err(format!(
            "the region did not converge within {within:?} after the heal: {}",
            self.describe()
        ))
    }

    /// True when the region has converged (see [`RegionCluster::heal_and_converge`]): the
    /// final checks may read the members' logs.
    pub fn is_converged(&self) -> bool {
        let Some(leader_node) = self.leader().and_then(|leader| self.node(leader)) else {
            return false;
        };
        let leader = leader_node.status();
        // A new leader's commit index may lag what earlier leaders committed and acknowledged
        // (after a restart of every member it is only what was persisted, and commit indexes
        // are persisted without a sync), until it commits an entry of its own term: the empty
        // entry it appends on election, or a later one. Every entry committed in an earlier
        // term precedes that entry in its log, so from then on its commit index covers every
        // acknowledged record.
        let committed_in_own_term =
            leader_node.group().storage().term_of(leader.commit_index) == Some(leader.term);
        if !committed_in_own_term {
            return false;
        }
        let members_caught_up = self.members.iter().all(|&member| {
            self.node(member).is_some_and(|node| {
                let status = node.status();
                status.applied_index == leader.commit_index
                    && status.next_position == leader.next_position
                    && status.log_digest == leader.log_digest
            })
        });
        let clients_idle = self.clients.iter().all(|&client| {
            self.simulation
                .process(client)
                .and_then(RegionProcess::client)
                .is_some_and(|client| !client.is_busy())
        });
        members_caught_up && clients_idle
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        for &member in &self.members {
            match self.node(member) {
                Some(node) => {
                    let status = node.status();
                    parts.push(format!(
                        "node {member}: {:?} term {} leader {:?} last {} commit {} applied {} \
                         next position {}",
                        status.role,
                        status.term,
                        status.leader_id,
                        status.last_raft_index,
                        status.commit_index,
                        status.applied_index,
                        status.next_position
                    ));
                }
                None => parts.push(format!("node {member}: down")),
            }
        }
        let busy = self
            .clients
            .iter()
            .filter(|&&client| {
                self.simulation
                    .process(client)
                    .and_then(RegionProcess::client)
                    .is_some_and(ClientProcess::is_busy)
            })
            .count();
        parts.push(format!("{busy} clients waiting"));
        parts.join("; ")
    }

    /// The log of `member` (when it is up) read whole from its store, as a reader would read
    /// it; an error names an entry the log retains but the store lacks.
    pub fn whole_log(
        &self,
        member: NodeId,
    ) -> Option<Result<dsss_region_node::RegionLog, dsss_raft_group::StoreError>> {
        let node = self.node(member)?;
        let disk = self.simulation.disk(member)?;
        Some(
            node.region_log()
                .with_every_entry_cached(&SimDiskReader::new(disk)),
        )
    }

    /// Every broken guarantee so far: the observer's, and the final checks over the logs of
    /// the members that are up, each read whole from its store as a reader would (a member
    /// missing an entry it retains is a lost entry).
    pub fn check(&self) -> Vec<String> {
        let observer = self.observer.borrow();
        let mut problems: Vec<String> = observer.violations().to_vec();
        let mut whole_logs = BTreeMap::new();
        for &member in &self.members {
            let Some(whole_log) = self.whole_log(member) else {
                continue;
            };
            match whole_log {
                Ok(log) => {
                    whole_logs.insert(member, log);
                }
                Err(error) => problems.push(format!(
                    "node {member}: its log cannot be read back whole: {error}"
                )),
            }
        }
        let logs: BTreeMap<NodeId, &dsss_region_node::RegionLog> = whole_logs
            .iter()
            .map(|(&member, log)| (member, log))
            .collect();
        problems.extend(check_logs(&logs, observer.acknowledged()));
        problems
    }
}

/// One fault of a run's schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FaultEvent {
    Crash(NodeId),
    Restart(NodeId),
    /// Cut `members` off from the other members (a single member is cut off from everyone,
    /// clients included).
    Partition(Vec<NodeId>),
    HealPartition,
    TransferLeader(NodeId),
}

/// What a run's schedule held, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultsDrawn {
    /// Packet faults in force during the window.
    pub network: NetworkFaults,
    /// Crashes that happened.
    pub crashes: u32,
    /// Partitions that happened.
    pub partitions: u32,
    /// Leader transfers asked for.
    pub leader_transfers: u32,
}

/// Draws the fault schedule of a run from its seed, sorted by time.
fn draw_schedule(
    cluster: &mut RegionCluster,
    settings: &RegionRunSettings,
) -> (NetworkFaults, Vec<(SimTime, FaultEvent)>) {
    let members = cluster.members.clone();
    let plan = settings.faults;
    let window = settings.fault_window;
    let rng = cluster.simulation.rng();
    let network = NetworkFaults::random(rng, &plan.network);
    let mut events = Vec::new();
    let at = |rng: &mut crate::SimRng| {
        SimTime::ZERO.saturating_add(uniform_duration(rng, Duration::ZERO, window))
    };
    for _ in 0..rng.range_inclusive(0, u64::from(plan.crash_count_max)) {
        let member = *rng.choose(&members).expect("members exist");
        let crash_at = at(rng);
        let downtime = uniform_duration(rng, Duration::from_millis(10), plan.downtime_max);
        events.push((crash_at, FaultEvent::Crash(member)));
        events.push((
            crash_at.saturating_add(downtime),
            FaultEvent::Restart(member),
        ));
    }
    let mut partition_free_from = SimTime::ZERO;
    for _ in 0..rng.range_inclusive(0, u64::from(plan.partition_count_max)) {
        let start = at(rng).max(partition_free_from);
        let duration =
            uniform_duration(rng, Duration::from_millis(20), plan.partition_duration_max);
        let mut shuffled = members.clone();
        rng.shuffle(&mut shuffled);
        let minority = rng.range_inclusive(1, ((members.len() - 1) / 2).max(1) as u64) as usize;
        shuffled.truncate(minority);
        shuffled.sort_unstable();
        let end = start.saturating_add(duration);
        events.push((start, FaultEvent::Partition(shuffled)));
        events.push((end, FaultEvent::HealPartition));
        partition_free_from = end;
    }
    for _ in 0..rng.range_inclusive(0, u64::from(plan.leader_transfer_count_max)) {
        let target = *rng.choose(&members).expect("members exist");
        events.push((at(rng), FaultEvent::TransferLeader(target)));
    }
    // A stable sort keeps the drawing order among equal times, so the seed alone decides.
    events.sort_by_key(|(time, _)| *time);
    (network, events)
}

fn apply_fault(cluster: &mut RegionCluster, event: &FaultEvent, drawn: &mut FaultsDrawn) {
    let members = cluster.members.clone();
    let simulation = &mut cluster.simulation;
    match event {
        FaultEvent::Crash(member) => {
            if simulation.crash(*member) {
                drawn.crashes += 1;
            }
        }
        FaultEvent::Restart(member) => {
            simulation.restart(*member);
        }
        FaultEvent::Partition(cut) => {
            drawn.partitions += 1;
            if let [single] = cut.as_slice() {
                simulation.isolate(*single);
            } else {
                for &inside in cut {
                    for &outside in members.iter().filter(|member| !cut.contains(member)) {
                        simulation.cut(inside, outside);
                    }
                }
            }
        }
        FaultEvent::HealPartition => simulation.heal_all(),
        FaultEvent::TransferLeader(target) => {
            drawn.leader_transfers += 1;
            cluster.transfer_leader(*target);
        }
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct RegionReport {
    /// The settings of the run.
    pub settings: RegionRunSettings,
    /// The faults the seed drew.
    pub faults: FaultsDrawn,
    /// Total simulated time.
    pub simulated: Duration,
    /// How long the region took to converge after the heal (`None` if it did not).
    pub converged_after: Option<Duration>,
    /// Distinct calls acknowledged to clients.
    pub acknowledged: usize,
    /// Positions in the final log (of the first member).
    pub records: u64,
    /// Calls retried by clients.
    pub retries: u64,
    /// Calls sent again after their acknowledgement.
    pub deliberate_duplicates: u64,
    /// Snapshots restored by members.
    pub snapshots_restored: u64,
    /// Messages sent, delivered and dropped, as the kernel counted them.
    pub messages_sent: u64,
    /// Messages delivered (duplicates included).
    pub messages_delivered: u64,
    /// Messages dropped.
    pub messages_dropped: u64,
    /// Broken guarantees, described (empty in a correct build).
    pub problems: Vec<String>,
    /// The first member's truncation point at the end (the same on every member once they
    /// converged).
    pub truncated_through: u64,
    /// How many times the first member's region released an object without a checkpoint.
    pub releases: u64,
    /// Times a node fenced itself for clock skew (every clock is exact in these runs).
    pub clock_fences: u64,
    /// SHA-256 of the run's trace.
    pub trace_hash: String,
}

impl RegionReport {
    /// True when the region converged and no guarantee was broken.
    pub fn passed(&self) -> bool {
        self.converged_after.is_some() && self.problems.is_empty()
    }
}

impl fmt::Display for RegionReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            formatter,
            "region run: seed {} with {} members and {} clients, {:?} of faults",
            self.settings.seed,
            self.settings.member_count,
            self.settings.client_count,
            self.settings.fault_window
        )?;
        writeln!(
            formatter,
            "  faults drawn: {}; {} crashes, {} partitions, {} leader transfers",
            self.faults.network,
            self.faults.crashes,
            self.faults.partitions,
            self.faults.leader_transfers
        )?;
        writeln!(
            formatter,
            "  {} calls acknowledged, {} positions, {} retries, {} deliberate duplicates, {} \
             snapshots restored",
            self.acknowledged,
            self.records,
            self.retries,
            self.deliberate_duplicates,
            self.snapshots_restored
        )?;
        writeln!(
            formatter,
            "  messages: {} sent, {} delivered, {} dropped; simulated {:?}, {}",
            self.messages_sent,
            self.messages_delivered,
            self.messages_dropped,
            self.simulated,
            match self.converged_after {
                Some(after) => format!("converged {after:?} after the heal"),
                None => "DID NOT CONVERGE".to_string(),
            }
        )?;
        for problem in &self.problems {
            writeln!(formatter, "  PROBLEM: {problem}")?;
        }
        write!(formatter, "  trace {}", self.trace_hash)
    }
}

/// Runs one region under the faults its seed draws, heals it, and checks it. Returns the
/// report and the run's trace.
pub fn run_region_traced(
    settings: &RegionRunSettings,
) -> Result<(RegionReport, crate::Trace), String> {
    let mut cluster = RegionCluster::new(settings)?;
    let (network, schedule) = draw_schedule(&mut cluster, settings);
    let mut drawn = FaultsDrawn {
        network,
        ..FaultsDrawn::default()
    };
    cluster.simulation.set_faults(network);
    for (time, event) in &schedule {
        if *time > cluster.simulation.now() {
            cluster.simulation.run_until(*time);
        }
        apply_fault(&mut cluster, event, &mut drawn);
    }
    let window_end = SimTime::ZERO.saturating_add(settings.fault_window);
    if window_end > cluster.simulation.now() {
        cluster.simulation.run_until(window_end);
    }
    cluster.heal(true);
    let converged = cluster.converge(settings.convergence_max);
    let mut problems = cluster.check();
    // These runs never skew a clock: a node that fenced itself misjudged its peers' clocks
    // from the delays, losses and crashes of the run.
    let clock_fences = cluster.observer.borrow().clock_fences;
    if clock_fences > 0 {
        problems.push(format!(
            "nodes fenced themselves {clock_fences} times for clock skew, with every clock exact"
        ));
    }
    let converged_after = match converged {
        Ok(after) => Some(after),
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    let observer = cluster.observer.borrow();
    let statistics = *cluster.simulation.statistics();
    let first_log = cluster
        .members
        .first()
        .and_then(|&member| cluster.node(member))
        .map(|node| node.region_log());
    let records = first_log.map_or(0, |log| log.last_position());
    let truncated_through = first_log.map_or(0, |log| log.truncated_through());
    let releases = first_log.map_or(0, |log| log.checkpoints().releases());
    let report = RegionReport {
        settings: settings.clone(),
        faults: drawn,
        simulated: cluster.simulation.now().since_start(),
        converged_after,
        acknowledged: observer.acknowledged().len(),
        records,
        retries: observer.retries,
        deliberate_duplicates: observer.deliberate_duplicates,
        snapshots_restored: observer.snapshots_restored_total(),
        messages_sent: statistics.sent,
        messages_delivered: statistics.delivered,
        messages_dropped: statistics.dropped(),
        problems,
        truncated_through,
        releases,
        clock_fences,
        trace_hash: cluster.simulation.trace_hash(),
    };
    drop(observer);
    Ok((report, cluster.simulation.trace().clone()))
}

/// Runs one region under the faults its seed draws, heals it, and checks it.
pub fn run_region(settings: &RegionRunSettings) -> Result<RegionReport, String> {
    run_region_traced(settings).map(|(report, _)| report)
}

// The scripted client of a test reaches a member from outside the network.
const _: () = assert!(FIRST_CLIENT_ID < EXTERNAL_NODE_ID);
