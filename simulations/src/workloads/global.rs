//! The global workload: every region of a topology as a raft group of real [`RegionNode`]s,
//! the global coordinator as a raft group of real [`CoordinatorNode`]s on the topology's
//! replica nodes, and clients in every region that call one global object and their region's
//! own object (docs/design.md sections 2, 3 and 6).
//!
//! A run has two phases. During the fault window clients call, time out and retry with the
//! same request sequence; the seed draws region partitions (some longer than the suspicion
//! timeout, so regions leave the watermark and come back), crashes of the coordinator leader
//! and of other nodes, clock skew up to the topology's bound, and message loss, duplication
//! and reordering. Then everything heals and the run goes on until every region has appended
//! every epoch that holds a call (bounded); the final checks read every member's log (see
//! [`checker`]).
//!
//! Fault-free runs measure global-write latency per origin region, reported beside d_max,
//! the largest one-way delay of the topology (docs/design.md section 7).

pub mod checker;
pub mod process;
pub mod script;
pub mod stages;

use std::cell::{Ref, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use dsss_global_coordinator::{CoordinatorConfig, CoordinatorLimits, CoordinatorNode};
use dsss_region_node::{RegionLog, RegionNode, RegionNodeConfig, RegionStatus, region_node_config};
use dsss_topology::Topology;

pub use checker::{GlobalObserver, check_cluster};
pub use process::{
    Application, ClientProcess, ClientSettings, GlobalMessage, GlobalProcess,
    LOG_ENTRIES_PER_READ_MAX, LogEntries, NodeProcess, PrefixedStore, REGION_STORE_PREFIX,
    REGION_TICK_INTERVAL, ReadLogRequest, Routes,
};

use super::common::{election_seed, uniform_duration};
use crate::costs::NodeCosts;
use crate::network::{Link, NetworkConfig, NetworkFaults, NodeId};
use crate::simulation::Simulation;
use crate::time::SimTime;
use crate::workloads::region::SimDiskReader;
use script::{FaultScript, ScriptedFaultKind};

/// The id of the first client process; a region's clients are numbered from
/// `FIRST_CLIENT_ID + 100 * region index`.
pub const FIRST_CLIENT_ID: NodeId = 100_000;

/// The most clients per region.
pub const CLIENTS_PER_REGION_MAX: usize = 16;

/// The longest fault window a run accepts: a day and an hour, so that a region can be cut off
/// for a simulated day while the others keep calling.
pub const FAULT_WINDOW_MAX: Duration = Duration::from_secs(25 * 60 * 60);

/// The longest a run waits for the healed cluster to converge.
pub const CONVERGENCE_MAX: Duration = Duration::from_secs(600);

/// How often a run checks for convergence after the heal.
pub const CONVERGENCE_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The faults a run may draw: each count and setting is drawn uniformly from zero to the
/// value here, from the run's seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GlobalFaultPlan {
    /// The largest loss, duplication and reordering.
    pub network: NetworkFaults,
    /// The most crashes of nodes chosen at random (region members, replicas or not).
    pub crash_count_max: u32,
    /// The most crashes of whichever node leads the coordinator at that moment.
    pub coordinator_leader_crash_count_max: u32,
    /// The longest a crashed node stays down.
    pub downtime_max: Duration,
    /// The most region partitions (a whole region cut off from every other, one at a time).
    pub region_partition_count_max: u32,
    /// The longest a region partition lasts; longer than the suspicion timeout lets the
    /// coordinator take the region out of the watermark.
    pub region_partition_duration_max: Duration,
    /// Clock skew per node is drawn from plus or minus this share of the topology's
    /// maximum skew (1.0: any two nodes may differ by up to twice the bound).
    pub clock_skew_share_max: f64,
    /// The most pauses of region members chosen at random: a paused member handles nothing
    /// while its links stay up, then resumes with its state intact (SIGSTOP, then SIGCONT).
    pub pause_count_max: u32,
    /// The longest a pause lasts.
    pub pause_duration_max: Duration,
    /// Besides the drawn partitions: one region cut off from every other for a set stretch
    /// of the window (a scripted long absence).
    pub scripted_region_cut: Option<ScriptedCut>,
}

/// A region cut off from every other region, from `after` the start of the fault window for
/// `length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptedCut {
    /// The region, by its index in the topology's list of regions.
    pub region_index: usize,
    /// When the cut begins, after the window starts.
    pub after: Duration,
    /// How long it lasts.
    pub length: Duration,
}

impl GlobalFaultPlan {
    /// No faults at all.
    pub const NONE: GlobalFaultPlan = GlobalFaultPlan {
        network: NetworkFaults::NONE,
        crash_count_max: 0,
        coordinator_leader_crash_count_max: 0,
        downtime_max: Duration::ZERO,
        region_partition_count_max: 0,
        region_partition_duration_max: Duration::ZERO,
        clock_skew_share_max: 0.0,
        pause_count_max: 0,
        pause_duration_max: Duration::ZERO,
        scripted_region_cut: None,
    };

    /// Every kind of fault, at levels the cluster must survive, for a topology whose
    /// suspicion timeout is `suspicion_timeout`.
    pub fn standard(suspicion_timeout: Duration) -> Self {
        GlobalFaultPlan {
            network: NetworkFaults {
                loss_probability: 0.05,
                duplication_probability: 0.05,
                reorder_probability: 0.1,
                reorder_delay_max: Duration::from_millis(20),
            },
            crash_count_max: 3,
            coordinator_leader_crash_count_max: 2,
            downtime_max: Duration::from_millis(800),
            region_partition_count_max: 2,
            region_partition_duration_max: suspicion_timeout.saturating_mul(2),
            // Within the bound between any two nodes: half the bound either way.
            clock_skew_share_max: 0.5,
            pause_count_max: 0,
            pause_duration_max: Duration::ZERO,
            scripted_region_cut: None,
        }
    }

    /// These faults, plus up to `count` pauses of region members of up to `duration_max`
    /// each.
    pub fn with_pauses(self, count: u32, duration_max: Duration) -> Self {
        GlobalFaultPlan {
            pause_count_max: count,
            pause_duration_max: duration_max,
            ..self
        }
    }
}

/// What a run does.
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalRunSettings {
    /// Every random choice of the run comes from this seed.
    pub seed: u64,
    /// The cluster: regions, nodes, coordinator replicas, epoch, suspicion timeout, skew
    /// bound and latency matrix.
    pub topology: Topology,
    /// Clients per region (0 to [`CLIENTS_PER_REGION_MAX`]).
    pub clients_per_region: usize,
    /// How long clients call and faults happen.
    pub fault_window: Duration,
    /// The faults to draw from.
    pub faults: GlobalFaultPlan,
    /// How clients behave (`calls_until` is set to the end of the fault window).
    pub client: ClientSettings,
    /// Latency is measured for global calls that start after this much of the window, once
    /// leaders are elected and the first epochs are sealed.
    pub measure_after: Duration,
    /// How long the healed cluster may take to converge.
    pub convergence_max: Duration,
    /// Whether the trace keeps its lines (for a determinism check that shows the first
    /// difference); the hash covers every line either way.
    pub keep_trace_lines: bool,
    /// The coordinator's bounds. Lower retention makes the coordinator release epochs for a
    /// region out of the membership within a short run, as it would after hours of writes.
    pub coordinator_limits: CoordinatorLimits,
    /// Faults placed at set times, beside those drawn from `faults`.
    pub script: FaultScript,
    /// What the work of every region node and coordinator replica costs (application
    /// instances and clients cost nothing): [`NodeCosts::FREE`] unless set.
    pub node_costs: NodeCosts,
}

impl GlobalRunSettings {
    /// A fault-free run on `topology` with two clients per region for three seconds.
    pub fn new(seed: u64, topology: Topology) -> Self {
        let d_max = Duration::from_micros(topology.latency.d_max_us());
        let suspicion = Duration::from_micros(topology.cluster.suspicion_timeout_us);
        GlobalRunSettings {
            seed,
            clients_per_region: 2,
            fault_window: Duration::from_secs(3),
            faults: GlobalFaultPlan::NONE,
            client: ClientSettings {
                think_time_min: Duration::from_millis(5),
                think_time_max: Duration::from_millis(30),
                // A global call waits for its epoch: allow several times the WAN delay.
                request_timeout: d_max.saturating_mul(8) + Duration::from_millis(500),
                calls_until: SimTime::ZERO,
                quiet: None,
                global_share: 0.7,
                duplicate_probability: 0.05,
            },
            measure_after: Duration::from_millis(500),
            convergence_max: suspicion.saturating_mul(4) + Duration::from_secs(20),
            keep_trace_lines: false,
            coordinator_limits: CoordinatorLimits::default(),
            script: FaultScript::none(),
            node_costs: NodeCosts::FREE,
            topology,
        }
    }

    /// Rejects settings the run cannot honour, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.clients_per_region > CLIENTS_PER_REGION_MAX {
            return Err(format!(
                "clients_per_region: {} is outside 0..={CLIENTS_PER_REGION_MAX}",
                self.clients_per_region
            ));
        }
        if self.fault_window.is_zero() || self.fault_window > FAULT_WINDOW_MAX {
            return Err(format!(
                "fault_window: {:?} is outside 1 ns..={FAULT_WINDOW_MAX:?}",
                self.fault_window
            ));
        }
        self.node_costs
            .validate()
            .map_err(|error| format!("node_costs: {error}"))?;
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
        if !(0.0..=10.0).contains(&self.faults.clock_skew_share_max) {
            return Err(format!(
                "faults.clock_skew_share_max: {} is outside 0..=10",
                self.faults.clock_skew_share_max
            ));
        }
        if let Some(cut) = self.faults.scripted_region_cut
            && cut.region_index >= self.topology.regions.len()
        {
            return Err(format!(
                "faults.scripted_region_cut.region_index: {} is not one of the topology's {} \
                 regions",
                cut.region_index,
                self.topology.regions.len()
            ));
        }
        self.script
            .validate(&self.topology, self.fault_window)
            .map_err(|error| format!("script: {error}"))?;
        if self.client.think_time_min > self.client.think_time_max
            || self.client.request_timeout.is_zero()
            || !(0.0..=1.0).contains(&self.client.duplicate_probability)
            || !(0.0..=1.0).contains(&self.client.global_share)
        {
            return Err(format!("client: {:?} is inconsistent", self.client));
        }
        Ok(())
    }
}

/// A simulated cluster: its nodes, clients, observer and simulation. See the module
/// documentation.
pub struct GlobalCluster {
    simulation: Simulation<GlobalProcess>,
    observer: Rc<RefCell<GlobalObserver>>,
    routes: Rc<Routes>,
}

/// Where an application instance runs, for the factory that makes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplicationPlace {
    /// Its node id.
    pub node: NodeId,
    /// Its region.
    pub region: String,
    /// The index of its region in the topology.
    pub region_index: usize,
    /// Its index among the instances of its region.
    pub index_in_region: usize,
    /// The members of its region.
    pub members: Vec<NodeId>,
}

/// Makes the application instance of a place.
pub type ApplicationFactory = Box<dyn FnMut(&ApplicationPlace) -> Box<dyn Application>>;

impl GlobalCluster {
    /// The cluster of `settings`, at time zero (nothing has run yet).
    pub fn new(settings: &GlobalRunSettings) -> Result<Self, String> {
        Self::build(settings, None)
    }

    /// The cluster of `settings` with application instances in place of the clients
    /// (`settings.clients_per_region` of them per region), each made by `make_application`.
    pub fn with_applications(
        settings: &GlobalRunSettings,
        make_application: ApplicationFactory,
    ) -> Result<Self, String> {
        Self::build(settings, Some(make_application))
    }

    fn build(
        settings: &GlobalRunSettings,
        make_application: Option<ApplicationFactory>,
    ) -> Result<Self, String> {
        settings.validate()?;
        let topology = &settings.topology;
        let mut network = NetworkConfig::from_topology(topology);
        let mut regions = Vec::new();
        let mut clients = Vec::new();
        let mut node_region = BTreeMap::new();
        let mut client_region: BTreeMap<NodeId, ApplicationPlace> = BTreeMap::new();
        for (index, region) in topology.regions.iter().enumerate() {
            let members: Vec<NodeId> = region.nodes.iter().map(|node| node.id).collect();
            for &member in &members {
                node_region.insert(member, region.id.clone());
            }
            let simulated_region = network
                .region_named(&region.id)
                .ok_or_else(|| format!("region {} is not in the simulated network", region.id))?;
            for offset in 0..settings.clients_per_region as NodeId {
                let client = FIRST_CLIENT_ID + 100 * index as NodeId + offset;
                network.add_node(client, simulated_region);
                clients.push(client);
                client_region.insert(
                    client,
                    ApplicationPlace {
                        node: client,
                        region: region.id.clone(),
                        region_index: index,
                        index_in_region: offset as usize,
                        members: members.clone(),
                    },
                );
            }
            regions.push((region.id.clone(), members));
        }
        let mut coordinator_replicas = topology.coordinator.replicas.clone();
        coordinator_replicas.sort_unstable();
        let routes = Rc::new(Routes {
            regions,
            coordinator_replicas,
            preferred_coordinator_leader: topology.coordinator.preferred_leader,
            clients,
        });
        let observer = Rc::new(RefCell::new(GlobalObserver::new(
            node_region,
            SimTime::ZERO.saturating_add(settings.measure_after),
        )));
        let factory = Self::factory(
            settings,
            &routes,
            client_region,
            &observer,
            make_application,
        )?;
        let mut simulation =
            Simulation::new(settings.seed, network, factory).map_err(|error| error.to_string())?;
        simulation.set_trace_lines_kept(settings.keep_trace_lines);
        if !settings.node_costs.is_free() {
            for region in &topology.regions {
                for node in &region.nodes {
                    simulation.set_costs(node.id, settings.node_costs);
                }
            }
        }
        Ok(GlobalCluster {
            simulation,
            observer,
            routes,
        })
    }

    fn factory(
        settings: &GlobalRunSettings,
        routes: &Rc<Routes>,
        client_region: BTreeMap<NodeId, ApplicationPlace>,
        observer: &Rc<RefCell<GlobalObserver>>,
        mut make_application: Option<ApplicationFactory>,
    ) -> Result<impl FnMut(NodeId, &crate::SimDisk) -> GlobalProcess + 'static, String> {
        let topology = settings.topology.clone();
        // The nodes take their settings from the topology as production nodes do, ticking at
        // the production interval.
        let region_tick_us = u64::try_from(REGION_TICK_INTERVAL.as_micros()).unwrap_or(1);
        let mut region_configs: BTreeMap<NodeId, RegionNodeConfig> = BTreeMap::new();
        for region in &topology.regions {
            for node in &region.nodes {
                let config = region_node_config(&topology, node.id, false, region_tick_us)
                    .map_err(|error| format!("region {}: {error}", region.id))?;
                region_configs.insert(node.id, config);
            }
        }
        let mut coordinator_configs: BTreeMap<NodeId, CoordinatorConfig> = BTreeMap::new();
        for &replica in &topology.coordinator.replicas {
            let mut config = CoordinatorConfig::from_topology(&topology, replica)
                .map_err(|error| format!("coordinator replica {replica}: {error}"))?;
            config.limits = settings.coordinator_limits;
            coordinator_configs.insert(replica, config);
        }
        let routes = Rc::clone(routes);
        let observer = Rc::clone(observer);
        let mut client_settings = settings.client;
        client_settings.calls_until = SimTime::ZERO.saturating_add(settings.fault_window);
        let seed = settings.seed;
        // As long as a production call to a coordinator replica waits for its answer: a
        // replica that crashed is passed over at once (its host refuses the connection,
        // `NodeProcess::handle_refused`), one that is paused, cut off or behind a slow link
        // only after this.
        let silence_max =
            Duration::from_micros(dsss_region_node::global::COORDINATOR_CALL_TIMEOUT_US);
        let mut incarnations: BTreeMap<NodeId, u64> = BTreeMap::new();
        Ok(move |node: NodeId, _disk: &crate::SimDisk| {
            if let Some(place) = client_region.get(&node) {
                if let Some(make_application) = make_application.as_mut() {
                    return GlobalProcess::Application(make_application(place));
                }
                return GlobalProcess::Client(ClientProcess::new(
                    place.region.clone(),
                    place.members.clone(),
                    client_settings,
                    Rc::clone(&observer),
                ));
            }
            let incarnation = incarnations.entry(node).or_default();
            *incarnation += 1;
            let mut region_config = region_configs
                .get(&node)
                .cloned()
                .expect("every node of the network is a client or a region member");
            region_config.group.election_seed = election_seed(seed, node, *incarnation, 1);
            let coordinator_config = coordinator_configs.get(&node).cloned().map(|mut config| {
                config.election_seed = election_seed(seed, node, *incarnation, 2);
                config
            });
            GlobalProcess::Node(Box::new(NodeProcess::new(
                region_config,
                coordinator_config,
                Rc::clone(&routes),
                silence_max,
                Rc::clone(&observer),
            )))
        })
    }

    // Getters.

    /// The simulation, to run it or inject faults.
    pub fn simulation(&mut self) -> &mut Simulation<GlobalProcess> {
        &mut self.simulation
    }

    /// Heals every fault, lets the cluster converge within `within`, and runs the final
    /// checks: every problem found, a failure to converge first.
    pub fn heal_and_check(&mut self, within: Duration) -> Vec<String> {
        self.heal();
        let mut problems = Vec::new();
        if let Err(problem) = self.converge(within) {
            problems.push(problem);
        }
        problems.extend(self.check());
        problems
    }

    /// The disk of `node`, to read its store (with a
    /// [`SimDiskReader`](crate::workloads::region::SimDiskReader)).
    pub fn disk(&self, node: NodeId) -> Option<&crate::disk::SimDisk> {
        self.simulation.disk(node)
    }

    /// The observer.
    pub fn observer(&self) -> Ref<'_, GlobalObserver> {
        self.observer.borrow()
    }

    /// Every region's name and member node ids.
    pub fn regions(&self) -> &[(String, Vec<NodeId>)] {
        &self.routes.regions
    }

    /// The member node ids of the region named `region` (none when there is no such region).
    pub fn members_of(&self, region: &str) -> Vec<NodeId> {
        self.routes
            .regions
            .iter()
            .find(|(name, _)| name == region)
            .map(|(_, members)| members.clone())
            .unwrap_or_default()
    }

    /// The status of each member of the region named `region` that is up.
    pub fn member_statuses(&self, region: &str) -> Vec<RegionStatus> {
        self.members_of(region)
            .into_iter()
            .filter_map(|member| self.region_node(member))
            .map(|node| node.status())
            .collect()
    }

    /// Skips of sealed epochs no log held any longer (docs/global-protocol.md section 7),
    /// summed over the regions: per region, the most any member that is up applied (every
    /// member applies each skip).
    pub fn epoch_skips(&self) -> u64 {
        self.routes
            .regions
            .iter()
            .map(|(region, _)| {
                self.member_statuses(region)
                    .iter()
                    .map(|status| status.counters.epoch_skips_applied)
                    .max()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// The region node of `node`, if it is up.
    pub fn region_node(&self, node: NodeId) -> Option<&RegionNode> {
        self.simulation.process(node)?.node()?.region_node()
    }

    /// What `node` did with the refusals its calls met since it last started, if it is up.
    pub fn refusal_counts(&self, node: NodeId) -> Option<process::RefusalCounts> {
        Some(self.simulation.process(node)?.node()?.refusal_counts())
    }

    /// The coordinator replica on `node`, if it hosts one and is up.
    pub fn coordinator(&self, node: NodeId) -> Option<&CoordinatorNode> {
        self.simulation.process(node)?.node()?.coordinator()
    }

    /// The replica that leads the coordinator in the highest term, among those up.
    pub fn coordinator_leader(&self) -> Option<NodeId> {
        self.routes
            .coordinator_replicas
            .iter()
            .filter_map(|&replica| {
                let coordinator = self.coordinator(replica)?;
                coordinator
                    .is_leader()
                    .then(|| (coordinator.group().term(), replica))
            })
            .max()
            .map(|(_, replica)| replica)
    }

    /// The member that leads `region` now (the highest term's, should two believe they
    /// lead), if any.
    pub fn region_leader(&self, region: &str) -> Option<NodeId> {
        let (_, members) = self
            .routes
            .regions
            .iter()
            .find(|(name, _)| name == region)?;
        members
            .iter()
            .filter_map(|&member| {
                let node = self.region_node(member)?;
                node.is_leader().then(|| (node.group().term(), member))
            })
            .max()
            .map(|(_, member)| member)
    }

    /// Every node that is a region member.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.routes
            .regions
            .iter()
            .flat_map(|(_, members)| members.iter().copied())
            .collect()
    }

    // Commands.

    /// Ends every fault: links heal, packet faults stop, changed links get their configured
    /// delay back and lose their own packet faults, clocks agree again, paused nodes resume,
    /// crashed nodes restart.
    pub fn heal(&mut self) {
        self.simulation.note("heal");
        self.simulation.heal_all();
        self.simulation.set_faults(NetworkFaults::NONE);
        // Writes nothing to the trace when no link was changed, so that runs without link
        // faults keep their traces.
        self.simulation.restore_links();
        for node in self.nodes() {
            self.simulation.set_clock_skew_us(node, 0);
            self.simulation.set_clock_drift_ppm(node, 0);
            self.simulation.resume(node);
            if !self.simulation.is_up(node) {
                self.simulation.restart(node);
            }
        }
    }

    /// Runs until the cluster has converged, at most `within`: no client waits, no region
    /// holds an unsealed call, and every member of every region has appended every epoch
    /// that was sealed when the rest had settled. Returns how long that took.
    pub fn converge(&mut self, within: Duration) -> Result<Duration, String> {
        let start = self.simulation.now();
        let deadline = start.saturating_add(within);
        let mut target: Option<(u64, Vec<u64>)> = None;
        while self.simulation.now() < deadline {
            self.simulation.run_for(CONVERGENCE_CHECK_INTERVAL);
            match &target {
                None => {
                    if self.settled()
                        && let Some(commits) = self.region_commit_targets()
                    {
                        target = Some((self.newest_sealed_epoch(), commits));
                    }
                }
                Some((epoch, commits)) => {
                    if self.settled()
                        && self.every_member_appended(*epoch)
                        && self.every_member_applied(commits)
                    {
                        return Ok(self.simulation.now().saturating_duration_since(start));
                    }
                }
            }
        }
        Err(format!(
            "the cluster did not converge within {within:?} after the heal: {}",
            self.describe()
        ))
    }

    /// No client waits and no region holds an unsealed call or an unacknowledged batch of
    /// calls, and every region is in the coordinator's membership.
    fn settled(&self) -> bool {
        let clients_idle = self.routes.clients.iter().all(|&client| {
            self.simulation
                .process(client)
                .is_some_and(|process| !process.is_busy())
        });
        let regions_settled = self.routes.regions.iter().all(|(_, members)| {
            members.iter().all(|&member| {
                self.region_node(member).is_some_and(|node| {
                    let global = node.status().global;
                    global.unsealed_records == 0 && global.member
                })
            })
        });
        clients_idle && regions_settled
    }

    /// The newest epoch any coordinator replica that is up has sealed.
    pub fn newest_sealed_epoch(&self) -> u64 {
        self.routes
            .coordinator_replicas
            .iter()
            .filter_map(|&replica| self.coordinator(replica))
            .map(|coordinator| coordinator.state().newest_epoch_number())
            .max()
            .unwrap_or(0)
    }

    /// The commit index of every region's leader, in region order, once each leader committed
    /// an entry of its own term; none before. Until a new leader commits in its own term its
    /// commit index may lag what earlier leaders committed and acknowledged (after a restart of
    /// every member it is what was persisted, unsynced), so a check that trusted it could read
    /// the logs before an acknowledged record is applied.
    fn region_commit_targets(&self) -> Option<Vec<u64>> {
        self.routes
            .regions
            .iter()
            .map(|(_, members)| {
                let leader = members.iter().find_map(|&member| {
                    let node = self.region_node(member)?;
                    node.is_leader().then_some(node)
                })?;
                let status = leader.status();
                (leader.group().storage().term_of(status.commit_index) == Some(status.term))
                    .then_some(status.commit_index)
            })
            .collect()
    }

    /// Every member of each region applied through that region's index in `commits`.
    fn every_member_applied(&self, commits: &[u64]) -> bool {
        self.routes
            .regions
            .iter()
            .zip(commits)
            .all(|((_, members), &commit)| {
                members.iter().all(|&member| {
                    self.region_node(member)
                        .is_some_and(|node| node.status().applied_index >= commit)
                })
            })
    }

    fn every_member_appended(&self, epoch: u64) -> bool {
        self.nodes().into_iter().all(|node| {
            self.region_node(node)
                .is_some_and(|region| region.status().global.epochs_applied_through >= epoch)
        })
    }

    /// Where every member stands (role, epochs, unsealed records), the coordinator leader,
    /// and how many clients wait: for reports of a run that did not converge.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (region, members) in &self.routes.regions {
            for &member in members {
                match self.region_node(member) {
                    Some(node) => {
                        let status = node.status();
                        parts.push(format!(
                            "{region} node {member}: {:?} term {} epochs through {} unsealed {} \
                             member {} incarnation {}",
                            status.role,
                            status.term,
                            status.global.epochs_applied_through,
                            status.global.unsealed_records,
                            status.global.member,
                            status.global.incarnation
                        ));
                    }
                    None => parts.push(format!("{region} node {member}: down")),
                }
            }
        }
        parts.push(format!(
            "coordinator leader {:?}, newest epoch {}",
            self.coordinator_leader(),
            self.newest_sealed_epoch()
        ));
        let busy = self
            .routes
            .clients
            .iter()
            .filter(|&&client| {
                self.simulation
                    .process(client)
                    .is_some_and(GlobalProcess::is_busy)
            })
            .count();
        parts.push(format!("{busy} clients waiting"));
        parts.join("; ")
    }

    /// The log of every member that is up, by region, each read whole from its store as a
    /// reader would; a member missing an entry it retains (a lost entry) is a problem.
    pub fn whole_logs(&self) -> (BTreeMap<String, BTreeMap<NodeId, RegionLog>>, Vec<String>) {
        let mut logs: BTreeMap<String, BTreeMap<NodeId, RegionLog>> = BTreeMap::new();
        let mut problems = Vec::new();
        for (region, members) in &self.routes.regions {
            let entry = logs.entry(region.clone()).or_default();
            for &member in members {
                let (Some(node), Some(disk)) = (self.region_node(member), self.disk(member)) else {
                    continue;
                };
                let mut reader = SimDiskReader::new(disk);
                let store = PrefixedStore::new(&mut reader, REGION_STORE_PREFIX);
                match node.region_log().with_every_entry_cached(&store) {
                    Ok(log) => {
                        entry.insert(member, log);
                    }
                    Err(error) => problems.push(format!(
                        "region node {member}: its log cannot be read back whole: {error}"
                    )),
                }
            }
        }
        (logs, problems)
    }

    /// Every broken guarantee so far: the observer's, and the final checks over the logs of
    /// every member that is up, read whole.
    pub fn check(&self) -> Vec<String> {
        let (whole_logs, mut problems) = self.whole_logs();
        let logs: BTreeMap<String, BTreeMap<NodeId, &RegionLog>> = whole_logs
            .iter()
            .map(|(region, logs)| {
                (
                    region.clone(),
                    logs.iter().map(|(&member, log)| (member, log)).collect(),
                )
            })
            .collect();
        problems.extend(check_cluster(&logs, &self.observer.borrow()));
        problems
    }
}

/// One fault of a run's schedule.
#[derive(Clone, Debug, PartialEq)]
enum FaultEvent {
    Crash(NodeId),
    CrashCoordinatorLeader {
        downtime: Duration,
    },
    /// Whichever member leads the region then crashes, back after the downtime.
    CrashRegionLeader {
        region: String,
        downtime: Duration,
    },
    /// Whichever member leads the region then pauses, resumed after the length.
    PauseRegionLeader {
        region: String,
        length: Duration,
    },
    Restart(NodeId),
    IsolateRegion(String),
    HealPartition,
    Pause(NodeId),
    Resume(NodeId),
    /// A scripted isolation's end: only that region's links heal.
    HealIsolation(String),
    CutRegions(String, String),
    HealRegions(String, String),
    CutOneWay(String, String),
    HealOneWay(String, String),
    ClockSkew(NodeId, i64),
    /// A scripted link delay: (sending region, receiving region, the link in force).
    LinkDelay(String, String, Link),
    RestoreLinkDelay(String, String),
    /// Scripted packet faults of one link: (sending region, receiving region, the faults).
    LinkFaults(String, String, NetworkFaults),
    RestoreLinkFaults(String, String),
}

/// What a run's schedule held, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultsDrawn {
    /// Packet faults in force during the window.
    pub network: NetworkFaults,
    /// Node crashes that happened (coordinator leader crashes included).
    pub crashes: u32,
    /// Crashes of the coordinator leader.
    pub coordinator_leader_crashes: u32,
    /// Faults aimed at a region's leader that found one and hit it (crashes and pauses).
    pub region_leader_faults: u32,
    /// Region partitions.
    pub region_partitions: u32,
    /// Region partitions longer than the suspicion timeout.
    pub long_region_partitions: u32,
    /// The largest clock skew drawn for a node, in microseconds (either direction).
    pub clock_skew_us_max: u64,
    /// Pauses of region members that happened.
    pub pauses: u32,
    /// Scripted changes of a one-way link (its delay, or its own packet faults) that
    /// happened; a change of both ways counts two.
    pub link_changes: u32,
}

/// Draws the fault schedule of a run from its seed, sorted by time, and sets the clocks.
fn draw_schedule(
    cluster: &mut GlobalCluster,
    settings: &GlobalRunSettings,
    start: SimTime,
    drawn: &mut FaultsDrawn,
) -> Vec<(SimTime, FaultEvent)> {
    let nodes = cluster.nodes();
    let regions: Vec<String> = cluster
        .routes
        .regions
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let plan = settings.faults;
    let window = settings.fault_window;
    let suspicion = Duration::from_micros(settings.topology.cluster.suspicion_timeout_us);
    let skew_max =
        (settings.topology.cluster.max_clock_skew_us as f64 * plan.clock_skew_share_max) as i64;
    let simulation = &mut cluster.simulation;
    let network = NetworkFaults::random(simulation.rng(), &plan.network);
    drawn.network = network;
    if skew_max > 0 {
        for &node in &nodes {
            let skew = simulation.rng().range_inclusive_i64(-skew_max, skew_max);
            drawn.clock_skew_us_max = drawn.clock_skew_us_max.max(skew.unsigned_abs());
            simulation.set_clock_skew_us(node, skew);
        }
    }
    let rng = simulation.rng();
    let mut events = Vec::new();
    let at = |rng: &mut crate::SimRng| {
        start.saturating_add(uniform_duration(rng, Duration::ZERO, window))
    };
    for _ in 0..rng.range_inclusive(0, u64::from(plan.crash_count_max)) {
        let node = *rng.choose(&nodes).expect("nodes exist");
        let crash_at = at(rng);
        let downtime = uniform_duration(rng, Duration::from_millis(10), plan.downtime_max);
        events.push((crash_at, FaultEvent::Crash(node)));
        events.push((crash_at.saturating_add(downtime), FaultEvent::Restart(node)));
    }
    for _ in 0..rng.range_inclusive(0, u64::from(plan.coordinator_leader_crash_count_max)) {
        let crash_at = at(rng);
        let downtime = uniform_duration(rng, Duration::from_millis(10), plan.downtime_max);
        events.push((crash_at, FaultEvent::CrashCoordinatorLeader { downtime }));
    }
    let mut partition_free_from = start;
    for _ in 0..rng.range_inclusive(0, u64::from(plan.region_partition_count_max)) {
        let start = at(rng).max(partition_free_from);
        let duration = uniform_duration(
            rng,
            Duration::from_millis(50),
            plan.region_partition_duration_max
                .max(Duration::from_millis(50)),
        );
        let region = rng.choose(&regions).expect("regions exist").clone();
        if duration > suspicion {
            drawn.long_region_partitions += 1;
        }
        let end = start.saturating_add(duration);
        events.push((start, FaultEvent::IsolateRegion(region)));
        events.push((end, FaultEvent::HealPartition));
        partition_free_from = end;
    }
    // Drawn last, and only when the plan has pauses, so that the other faults a seed draws
    // are the same with pauses or without.
    if plan.pause_count_max > 0 {
        for _ in 0..rng.range_inclusive(0, u64::from(plan.pause_count_max)) {
            let node = *rng.choose(&nodes).expect("nodes exist");
            let pause_at = at(rng);
            let duration = uniform_duration(
                rng,
                Duration::from_millis(10),
                plan.pause_duration_max.max(Duration::from_millis(10)),
            );
            events.push((pause_at, FaultEvent::Pause(node)));
            events.push((pause_at.saturating_add(duration), FaultEvent::Resume(node)));
        }
    }
    // Drawn last too, so that the other faults a seed draws are the same with it or without.
    if let Some(cut) = plan.scripted_region_cut
        && let Some(region) = settings.topology.regions.get(cut.region_index)
    {
        if cut.length > suspicion {
            drawn.long_region_partitions += 1;
        }
        let cut_at = start.saturating_add(cut.after);
        events.push((cut_at, FaultEvent::IsolateRegion(region.id.clone())));
        events.push((cut_at.saturating_add(cut.length), FaultEvent::HealPartition));
    }
    // Placed last, and drawing nothing, so that the faults a seed draws are the same with a
    // script or without.
    if let Some(network) = settings.script.network {
        drawn.network = network;
    }
    for fault in &settings.script.faults {
        let begin = start.saturating_add(fault.at);
        let end = fault
            .kind
            .length()
            .map(|length| begin.saturating_add(length));
        match &fault.kind {
            ScriptedFaultKind::IsolateRegion { region, length } => {
                if *length > suspicion {
                    drawn.long_region_partitions += 1;
                }
                events.push((begin, FaultEvent::IsolateRegion(region.clone())));
                events.extend(end.map(|end| (end, FaultEvent::HealIsolation(region.clone()))));
            }
            ScriptedFaultKind::CutRegions { a, b, .. } => {
                events.push((begin, FaultEvent::CutRegions(a.clone(), b.clone())));
                events.extend(end.map(|end| (end, FaultEvent::HealRegions(a.clone(), b.clone()))));
            }
            ScriptedFaultKind::CutOneWay { from, to, .. } => {
                events.push((begin, FaultEvent::CutOneWay(from.clone(), to.clone())));
                events
                    .extend(end.map(|end| (end, FaultEvent::HealOneWay(from.clone(), to.clone()))));
            }
            ScriptedFaultKind::CrashNode { node, .. } => {
                events.push((begin, FaultEvent::Crash(*node)));
                events.extend(end.map(|end| (end, FaultEvent::Restart(*node))));
            }
            ScriptedFaultKind::CrashCoordinatorLeader { downtime } => {
                events.push((
                    begin,
                    FaultEvent::CrashCoordinatorLeader {
                        downtime: *downtime,
                    },
                ));
            }
            ScriptedFaultKind::PauseNode { node, .. } => {
                events.push((begin, FaultEvent::Pause(*node)));
                events.extend(end.map(|end| (end, FaultEvent::Resume(*node))));
            }
            ScriptedFaultKind::CrashRegionLeader { region, downtime } => {
                events.push((
                    begin,
                    FaultEvent::CrashRegionLeader {
                        region: region.clone(),
                        downtime: *downtime,
                    },
                ));
            }
            ScriptedFaultKind::PauseRegionLeader { region, length } => {
                events.push((
                    begin,
                    FaultEvent::PauseRegionLeader {
                        region: region.clone(),
                        length: *length,
                    },
                ));
            }
            ScriptedFaultKind::ClockSkew { node, skew_us } => {
                events.push((begin, FaultEvent::ClockSkew(*node, *skew_us)));
            }
            ScriptedFaultKind::LinkDelay {
                from,
                to,
                both_ways,
                delay,
                jitter,
                ..
            } => {
                for (from, to) in one_way_links(from, to, *both_ways) {
                    let link = Link::new(*delay, *jitter);
                    events.push((begin, FaultEvent::LinkDelay(from.clone(), to.clone(), link)));
                    events.extend(end.map(|end| (end, FaultEvent::RestoreLinkDelay(from, to))));
                }
            }
            ScriptedFaultKind::LinkLoss {
                from,
                to,
                both_ways,
                faults,
                ..
            } => {
                for (from, to) in one_way_links(from, to, *both_ways) {
                    let event = FaultEvent::LinkFaults(from.clone(), to.clone(), *faults);
                    events.push((begin, event));
                    events.extend(end.map(|end| (end, FaultEvent::RestoreLinkFaults(from, to))));
                }
            }
        }
    }
    // A stable sort keeps the drawing order among equal times, so the seed alone decides.
    // The end of a link change goes first among equal times, so that a change of the same
    // link beginning as another ends stands (such changes may touch, not overlap).
    events.sort_by_key(|(time, event)| {
        let link_restore = matches!(
            event,
            FaultEvent::RestoreLinkDelay(..) | FaultEvent::RestoreLinkFaults(..)
        );
        (*time, !link_restore)
    });
    events
}

/// The one-way links (sending region, receiving region) of a scripted link fault.
fn one_way_links(from: &str, to: &str, both_ways: bool) -> Vec<(String, String)> {
    let mut links = vec![(from.to_owned(), to.to_owned())];
    if both_ways {
        links.push((to.to_owned(), from.to_owned()));
    }
    links
}

fn apply_fault(
    cluster: &mut GlobalCluster,
    event: &FaultEvent,
    drawn: &mut FaultsDrawn,
    restarts: &mut Vec<(SimTime, FollowUp)>,
) {
    match event {
        FaultEvent::Crash(node) => {
            if cluster.simulation.crash(*node) {
                drawn.crashes += 1;
            }
        }
        FaultEvent::CrashCoordinatorLeader { downtime } => {
            if let Some(leader) = cluster.coordinator_leader() {
                cluster
                    .simulation
                    .note(&format!("crash the coordinator leader {leader}"));
                if crash_for(cluster, leader, *downtime, restarts) {
                    drawn.crashes += 1;
                    drawn.coordinator_leader_crashes += 1;
                }
            }
        }
        FaultEvent::CrashRegionLeader { region, downtime } => {
            if let Some(leader) = cluster.region_leader(region) {
                cluster
                    .simulation
                    .note(&format!("crash {region}'s leader {leader}"));
                if crash_for(cluster, leader, *downtime, restarts) {
                    drawn.crashes += 1;
                    drawn.region_leader_faults += 1;
                }
            }
        }
        FaultEvent::PauseRegionLeader { region, length } => {
            if let Some(leader) = cluster.region_leader(region) {
                cluster
                    .simulation
                    .note(&format!("pause {region}'s leader {leader}"));
                if cluster.simulation.pause(leader) {
                    drawn.pauses += 1;
                    drawn.region_leader_faults += 1;
                    let back = cluster.simulation.now().saturating_add(*length);
                    restarts.push((back, FollowUp::Resume(leader)));
                }
            }
        }
        FaultEvent::Restart(node) => {
            cluster.simulation.restart(*node);
        }
        FaultEvent::IsolateRegion(region) => {
            if let Some(simulated) = cluster.simulation.network().config().region_named(region) {
                drawn.region_partitions += 1;
                cluster.simulation.isolate_region(simulated);
            }
        }
        FaultEvent::HealPartition => cluster.simulation.heal_all(),
        FaultEvent::Pause(node) => {
            if cluster.simulation.pause(*node) {
                drawn.pauses += 1;
            }
        }
        FaultEvent::Resume(node) => {
            cluster.simulation.resume(*node);
        }
        FaultEvent::HealIsolation(region) => {
            let regions = cluster.simulation.network().config().regions.len();
            if let Some(simulated) = cluster.simulation.network().config().region_named(region) {
                for other in (0..regions).map(crate::network::RegionId) {
                    if other != simulated {
                        cluster.simulation.heal_regions(simulated, other);
                    }
                }
            }
        }
        FaultEvent::CutRegions(a, b) | FaultEvent::CutOneWay(a, b) => {
            let config = cluster.simulation.network().config();
            if let (Some(a_id), Some(b_id)) = (config.region_named(a), config.region_named(b)) {
                drawn.region_partitions += 1;
                if matches!(event, FaultEvent::CutRegions(..)) {
                    cluster.simulation.cut_regions(a_id, b_id);
                } else {
                    cluster.simulation.cut_regions_one_way(a_id, b_id);
                }
            }
        }
        FaultEvent::HealRegions(a, b) => {
            let config = cluster.simulation.network().config();
            if let (Some(a_id), Some(b_id)) = (config.region_named(a), config.region_named(b)) {
                cluster.simulation.heal_regions(a_id, b_id);
            }
        }
        FaultEvent::HealOneWay(from, to) => {
            let network = cluster.simulation.network();
            let config = network.config();
            if let (Some(from_id), Some(to_id)) =
                (config.region_named(from), config.region_named(to))
            {
                let senders = network.nodes_in_region(from_id);
                let receivers = network.nodes_in_region(to_id);
                for &sender in &senders {
                    for &receiver in &receivers {
                        cluster.simulation.heal_one_way(sender, receiver);
                    }
                }
            }
        }
        FaultEvent::ClockSkew(node, skew_us) => {
            drawn.clock_skew_us_max = drawn.clock_skew_us_max.max(skew_us.unsigned_abs());
            cluster.simulation.set_clock_skew_us(*node, *skew_us);
        }
        FaultEvent::LinkDelay(from, to, _)
        | FaultEvent::RestoreLinkDelay(from, to)
        | FaultEvent::LinkFaults(from, to, _)
        | FaultEvent::RestoreLinkFaults(from, to) => {
            let config = cluster.simulation.network().config();
            let (Some(from), Some(to)) = (config.region_named(from), config.region_named(to))
            else {
                return;
            };
            let simulation = &mut cluster.simulation;
            match event {
                FaultEvent::LinkDelay(_, _, link) => {
                    drawn.link_changes += 1;
                    simulation.set_link_delay(from, to, *link);
                }
                FaultEvent::LinkFaults(_, _, faults) => {
                    drawn.link_changes += 1;
                    simulation.set_link_faults(from, to, *faults);
                }
                FaultEvent::RestoreLinkDelay(..) => simulation.restore_link_delay(from, to),
                _ => simulation.restore_link_faults(from, to),
            }
        }
    }
}

/// Percentiles of a latency sample, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencySummary {
    /// Calls measured.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl LatencySummary {
    /// The summary of `sample` (none when it is empty).
    pub fn of(sample: &[Duration]) -> Option<LatencySummary> {
        if sample.is_empty() {
            return None;
        }
        let mut sorted = sample.to_vec();
        sorted.sort_unstable();
        let at = |quantile: f64| {
            let index = ((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len());
            sorted[index - 1].as_secs_f64() * 1_000.0
        };
        Some(LatencySummary {
            count: sorted.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: sorted[sorted.len() - 1].as_secs_f64() * 1_000.0,
        })
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct GlobalReport {
    /// The settings of the run.
    pub settings: GlobalRunSettings,
    /// The faults the seed drew.
    pub faults: FaultsDrawn,
    /// Total simulated time.
    pub simulated: Duration,
    /// How long the cluster took to converge after the heal (`None` if it did not).
    pub converged_after: Option<Duration>,
    /// Calls acknowledged to clients, global and regional.
    pub acknowledged_global: usize,
    /// Regional calls acknowledged.
    pub acknowledged_regional: usize,
    /// Epochs sealed.
    pub epochs: u64,
    /// Calls retried by clients.
    pub retries: u64,
    /// Calls sent again after their acknowledgement.
    pub deliberate_duplicates: u64,
    /// Messages refused by a node (skew, bounds, stale input).
    pub refusals: u64,
    /// A few of the refusals, described.
    pub refusal_examples: Vec<String>,
    /// Times a region node or a coordinator replica fenced itself for its clock (each clock
    /// judged against its group's peers by the probes their raft messages carry).
    pub clock_fences: u64,
    /// Regions taken out of the watermark and admitted again, over all replicas' view.
    pub incarnations_max: u64,
    /// Global-call latency per origin region.
    pub latency: BTreeMap<String, LatencySummary>,
    /// d_max of the topology, in milliseconds.
    pub d_max_ms: f64,
    /// Messages sent, delivered and dropped, as the kernel counted them.
    pub messages_sent: u64,
    /// Messages delivered (duplicates included).
    pub messages_delivered: u64,
    /// Messages dropped.
    pub messages_dropped: u64,
    /// Broken guarantees, described (empty in a correct build).
    pub problems: Vec<String>,
    /// SHA-256 of the run's trace.
    pub trace_hash: String,
}

impl GlobalReport {
    /// True when the cluster converged and no guarantee was broken.
    pub fn passed(&self) -> bool {
        self.converged_after.is_some() && self.problems.is_empty()
    }
}

impl fmt::Display for GlobalReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topology = &self.settings.topology;
        writeln!(
            formatter,
            "global run on cluster \"{}\": seed {}, {} regions, {} clients per region, {:?} of \
             calls and faults, epoch {} ms",
            topology.cluster.name,
            self.settings.seed,
            topology.regions.len(),
            self.settings.clients_per_region,
            self.settings.fault_window,
            topology.cluster.epoch_us as f64 / 1_000.0
        )?;
        writeln!(
            formatter,
            "  faults drawn: {}; {} crashes ({} of the coordinator leader), {} region partitions \
             ({} longer than the suspicion timeout), clock skew up to {:.1} ms",
            self.faults.network,
            self.faults.crashes,
            self.faults.coordinator_leader_crashes,
            self.faults.region_partitions,
            self.faults.long_region_partitions,
            self.faults.clock_skew_us_max as f64 / 1_000.0
        )?;
        writeln!(
            formatter,
            "  {} global and {} regional calls acknowledged, {} epochs sealed, {} retries, {} \
             deliberate duplicates, {} refused messages, highest region incarnation {}, {} \
             clock fences",
            self.acknowledged_global,
            self.acknowledged_regional,
            self.epochs,
            self.retries,
            self.deliberate_duplicates,
            self.refusals,
            self.incarnations_max,
            self.clock_fences
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
        writeln!(
            formatter,
            "  global-write latency per origin region, calls started after {:?} (d_max = {:.1} \
             ms):",
            self.settings.measure_after, self.d_max_ms
        )?;
        writeln!(
            formatter,
            "    {:<18} {:>7} {:>9} {:>9} {:>9} {:>11} {:>11}",
            "region", "calls", "p50 ms", "p99 ms", "max ms", "p50/d_max", "p99/d_max"
        )?;
        for (region, summary) in &self.latency {
            writeln!(
                formatter,
                "    {:<18} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>11.2} {:>11.2}",
                region,
                summary.count,
                summary.p50_ms,
                summary.p99_ms,
                summary.max_ms,
                summary.p50_ms / self.d_max_ms,
                summary.p99_ms / self.d_max_ms
            )?;
        }
        for example in self.refusal_examples.iter().take(3) {
            writeln!(formatter, "  refused, for example: {example}")?;
        }
        for problem in &self.problems {
            writeln!(formatter, "  PROBLEM: {problem}")?;
        }
        write!(formatter, "  trace {}", self.trace_hash)
    }
}

/// Runs the cluster under the faults its seed draws, heals it, and checks it. Returns the
/// report and the run's trace.
pub fn run_global_traced(
    settings: &GlobalRunSettings,
) -> Result<(GlobalReport, crate::Trace), String> {
    let mut cluster = GlobalCluster::new(settings)?;
    let drawn = run_fault_window(&mut cluster, settings);
    cluster.heal();
    let converged = cluster.converge(settings.convergence_max);
    let mut problems = cluster.check();
    // Skews are drawn within the topology's bound, so no clock is ever surely beyond it; a
    // node may still fence itself for a step (the heal sets every clock right) that it could
    // not yet compare with a majority. With no skew drawn, no clock moves at all.
    let clock_fences = cluster.observer.borrow().clock_fences;
    if clock_fences > 0 && drawn.clock_skew_us_max == 0 {
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
    let incarnations_max = cluster
        .nodes()
        .into_iter()
        .filter_map(|node| cluster.region_node(node))
        .map(|node| node.status().global.incarnation)
        .max()
        .unwrap_or(0);
    let epochs = cluster.newest_sealed_epoch();
    let observer = cluster.observer.borrow();
    let statistics = *cluster.simulation.statistics();
    let by_scope = checker::acknowledged_by_scope(&observer);
    let latency = observer
        .latencies()
        .iter()
        .filter_map(|(region, sample)| Some((region.clone(), LatencySummary::of(sample)?)))
        .collect();
    let report = GlobalReport {
        settings: settings.clone(),
        faults: drawn,
        simulated: cluster.simulation.now().since_start(),
        converged_after,
        acknowledged_global: by_scope.get("global").copied().unwrap_or(0),
        acknowledged_regional: by_scope.get("regional").copied().unwrap_or(0),
        epochs,
        retries: observer.retries,
        deliberate_duplicates: observer.deliberate_duplicates,
        refusals: observer.refusals,
        refusal_examples: observer.refusal_examples().to_vec(),
        clock_fences,
        incarnations_max,
        latency,
        d_max_ms: settings.topology.latency.d_max_us() as f64 / 1_000.0,
        messages_sent: statistics.sent,
        messages_delivered: statistics.delivered,
        messages_dropped: statistics.dropped(),
        problems,
        trace_hash: cluster.simulation.trace_hash(),
    };
    drop(observer);
    Ok((report, cluster.simulation.trace().clone()))
}

/// Runs `cluster` from time zero to the end of the fault window of `settings`, under the
/// faults its seed draws (packet faults, clock skew, crashes and restarts, coordinator leader
/// crashes, region partitions). Returns what was drawn. Faults still in force at the end stay
/// in force: [`GlobalCluster::heal`] ends them.
pub fn run_fault_window(cluster: &mut GlobalCluster, settings: &GlobalRunSettings) -> FaultsDrawn {
    run_fault_window_from(cluster, settings, SimTime::ZERO)
}

/// As [`run_fault_window`], with the window starting at `start` (at or after the present):
/// the run goes on without faults until then, for a workload that sets things up first.
pub fn run_fault_window_from(
    cluster: &mut GlobalCluster,
    settings: &GlobalRunSettings,
    start: SimTime,
) -> FaultsDrawn {
    run_fault_window_observed(cluster, settings, start, Duration::MAX, &mut |_| {})
}

/// As [`run_fault_window_from`], handing the cluster to `observe` every `every` of simulated
/// time through the window (a workload that samples its cluster as it runs).
pub fn run_fault_window_observed(
    cluster: &mut GlobalCluster,
    settings: &GlobalRunSettings,
    start: SimTime,
    every: Duration,
    observe: &mut dyn FnMut(&mut GlobalCluster),
) -> FaultsDrawn {
    let mut observed = Observed {
        every,
        next: cluster.simulation.now().saturating_add(every),
        observe,
    };
    observed.run_until(cluster, start);
    let mut drawn = FaultsDrawn::default();
    let schedule = draw_schedule(cluster, settings, start, &mut drawn);
    cluster.simulation.set_faults(drawn.network);
    let mut restarts: Vec<(SimTime, FollowUp)> = Vec::new();
    for (time, event) in &schedule {
        run_until_with_restarts(cluster, *time, &mut restarts, &mut observed);
        apply_fault(cluster, event, &mut drawn, &mut restarts);
    }
    let window_end = start.saturating_add(settings.fault_window);
    run_until_with_restarts(cluster, window_end, &mut restarts, &mut observed);
    drawn
}

/// Runs a cluster forward, handing it to an observer at a fixed interval of simulated time.
struct Observed<'a> {
    every: Duration,
    next: SimTime,
    observe: &'a mut dyn FnMut(&mut GlobalCluster),
}

impl Observed<'_> {
    fn run_until(&mut self, cluster: &mut GlobalCluster, until: SimTime) {
        while self.next <= until {
            if self.next > cluster.simulation.now() {
                cluster.simulation.run_until(self.next);
            }
            (self.observe)(cluster);
            self.next = self.next.saturating_add(self.every);
        }
        if until > cluster.simulation.now() {
            cluster.simulation.run_until(until);
        }
    }
}

/// Crashes `node` and schedules its restart after `downtime`: true when it was up.
fn crash_for(
    cluster: &mut GlobalCluster,
    node: NodeId,
    downtime: Duration,
    restarts: &mut Vec<(SimTime, FollowUp)>,
) -> bool {
    let crashed = cluster.simulation.crash(node);
    if crashed {
        let back = cluster.simulation.now().saturating_add(downtime);
        restarts.push((back, FollowUp::Restart(node)));
    }
    crashed
}

/// What a fault aimed at a role leaves to do once its length is over: the node it hit is only
/// known when it happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FollowUp {
    Restart(NodeId),
    Resume(NodeId),
}

/// Runs to `until`, restarting the crashed leaders and resuming the paused ones whose time
/// comes on the way.
fn run_until_with_restarts(
    cluster: &mut GlobalCluster,
    until: SimTime,
    restarts: &mut Vec<(SimTime, FollowUp)>,
    observed: &mut Observed<'_>,
) {
    restarts.sort_by_key(|(time, follow_up)| (*time, *follow_up));
    while let Some(&(time, follow_up)) = restarts.first() {
        if time > until {
            break;
        }
        observed.run_until(cluster, time);
        match follow_up {
            FollowUp::Restart(node) => {
                cluster.simulation.restart(node);
            }
            FollowUp::Resume(node) => {
                cluster.simulation.resume(node);
            }
        }
        restarts.remove(0);
    }
    observed.run_until(cluster, until);
}

/// Runs the cluster under the faults its seed draws, heals it, and checks it.
pub fn run_global(settings: &GlobalRunSettings) -> Result<GlobalReport, String> {
    run_global_traced(settings).map(|(report, _)| report)
}
