//! The simulation: nodes, network, clocks, disks and the event loop that drives them.
//!
//! One [`Simulation`] is one run. It owns every node's process, disk and clock, the network,
//! the one random number generator and the event queue. The test driver builds it from a seed,
//! a [`NetworkConfig`] and a factory that creates a node's process, then alternates between
//! running it ([`Simulation::step`], [`Simulation::run_until`], [`Simulation::run_for`],
//! [`Simulation::run_until_quiet`]) and acting on it: injecting client messages, changing
//! faults, crashing and restarting nodes, pausing and resuming them, stepping clocks, and
//! checking invariants on the processes.
//!
//! Driver methods act at the current virtual time. They panic on a node id that is not in the
//! network: that is a mistake in the test, not a behaviour of the system under test.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::{self, Write as _};
use std::time::Duration;

use crate::clock::NodeClock;
use crate::costs::{NodeCosts, WorkKind};
use crate::disk::SimDisk;
use crate::network::{
    EXTERNAL_NODE_ID, Network, NetworkConfig, NetworkConfigError, NodeId, RegionId,
};
use crate::process::{Action, Context, Process, RunPosition, TimerId};
use crate::queue::EventQueue;
use crate::random::SimRng;
use crate::time::SimTime;
use crate::trace::Trace;

mod faults;

/// The most events [`Simulation::run_until_quiet`] processes before it gives up.
pub const QUIET_STEP_COUNT_MAX: u64 = 10_000_000;

/// The most events that waited for a busy node it is handed in one run, at one time, before
/// its next run: as many as a production loop handles before its next raft round
/// (`dsss_raft_group::node_loop::EVENTS_PER_ITERATION_MAX`).
pub const EVENTS_PER_RUN_MAX: usize = 4_096;

/// The most messages to [`EXTERNAL_NODE_ID`] kept until the driver takes them.
pub const EXTERNAL_OUTBOX_LEN_MAX: usize = 100_000;

/// A message a node sent to [`EXTERNAL_NODE_ID`]: a reply to the test driver's client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalMessage<M> {
    /// When it was sent.
    pub sent_at: SimTime,
    /// The node that sent it.
    pub from: NodeId,
    /// The message.
    pub message: M,
}

/// Why a message was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// The receiver is not a node of the network.
    UnknownNode,
    /// A partition cut the link when the message was sent.
    Partition,
    /// The network lost it (the loss probability).
    Loss,
    /// The receiver was down when it arrived.
    NodeDown,
    /// It was addressed to [`EXTERNAL_NODE_ID`] while [`EXTERNAL_OUTBOX_LEN_MAX`] messages
    /// were already waiting for the driver.
    ExternalOutboxFull,
    /// Its sender crashed before the work it was sent after was done ([`crate::costs`]).
    SenderDown,
}

impl fmt::Display for DropReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            DropReason::UnknownNode => "unknown-node",
            DropReason::Partition => "partition",
            DropReason::Loss => "loss",
            DropReason::NodeDown => "node-down",
            DropReason::ExternalOutboxFull => "external-outbox-full",
            DropReason::SenderDown => "sender-down",
        })
    }
}

/// How much a run did: what sets its speed, since each event costs about the same whatever
/// the workload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunWork {
    /// Events recorded in the trace: messages sent and delivered, timers fired, and the
    /// rest.
    pub events: u64,
    /// Messages the processes sent.
    pub messages_sent: u64,
}

/// Message counts of a run so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageStatistics {
    /// Messages processes sent.
    pub sent: u64,
    /// Messages the test driver injected.
    pub injected: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Messages handed to a process (network and injected, duplicates included).
    pub delivered: u64,
    /// Messages sent to a node that is not in the network.
    pub dropped_unknown_node: u64,
    /// Messages dropped by a partition.
    pub dropped_partition: u64,
    /// Messages lost by the network.
    pub dropped_loss: u64,
    /// Messages that arrived at a node that was down.
    pub dropped_node_down: u64,
    /// Messages to [`EXTERNAL_NODE_ID`] dropped because the driver did not take earlier ones.
    pub dropped_external_outbox_full: u64,
    /// Messages whose sender crashed before they left ([`crate::costs`]).
    pub dropped_sender_down: u64,
}

impl MessageStatistics {
    /// Every dropped message, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_unknown_node
            + self.dropped_partition
            + self.dropped_loss
            + self.dropped_node_down
            + self.dropped_external_outbox_full
            + self.dropped_sender_down
    }

    fn count_drop(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::UnknownNode => &mut self.dropped_unknown_node,
            DropReason::Partition => &mut self.dropped_partition,
            DropReason::Loss => &mut self.dropped_loss,
            DropReason::NodeDown => &mut self.dropped_node_down,
            DropReason::ExternalOutboxFull => &mut self.dropped_external_outbox_full,
            DropReason::SenderDown => &mut self.dropped_sender_down,
        };
        *counter += 1;
    }
}

/// [`Simulation::run_until_quiet`] processed its maximum number of events and the queue was
/// still not empty: some process keeps re-arming a timer or messages keep circulating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the simulation did not become quiet: {steps} events processed, {events_pending} still \
     pending at {now}"
)]
pub struct NotQuiet {
    /// Events processed by the call.
    pub steps: u64,
    /// Events still queued.
    pub events_pending: usize,
    /// Virtual time when it gave up.
    pub now: SimTime,
}

/// The kinds of the events the trace records by their fields ([`Trace::record_event`]).
mod trace_kind {
    /// A process sent a message: from, to, message id.
    pub const SEND: u8 = 1;
    /// A message was handed to a process: from, to, message id.
    pub const DELIVER: u8 = 2;
    /// A timer fired: node, timer id.
    pub const FIRE: u8 = 3;
    /// A message to the driver was taken out of the network: from, message id.
    pub const DELIVER_EXTERNAL: u8 = 4;
}

/// A node id as the trace shows it: [`EXTERNAL_NODE_ID`] reads `external`.
struct NodeLabel(NodeId);

impl fmt::Display for NodeLabel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == EXTERNAL_NODE_ID {
            formatter.write_str("external")
        } else {
            write!(formatter, "{}", self.0)
        }
    }
}

/// A pending event of the run.
enum Event<M> {
    /// Call `handle_start` of the node's given incarnation.
    Start { node: NodeId, incarnation: u64 },
    /// Hand a message to a node.
    Deliver {
        from: NodeId,
        to: NodeId,
        message_id: u64,
        message: M,
    },
    /// Fire a timer.
    Timer { node: NodeId, timer: TimerId },
    /// Tell `node` (of the given incarnation) that its message `message_id` to `to` found
    /// `to` down: the connection refusal a crashed process's host answers with
    /// ([`Process::notices_refusals`]).
    Refused {
        node: NodeId,
        incarnation: u64,
        to: NodeId,
        message_id: u64,
        message: M,
    },
    /// The node of the given incarnation finished its work ([`crate::costs`]): hand it the
    /// first event that waited in its inbox.
    Wake { node: NodeId, incarnation: u64 },
}

impl<M> Event<M> {
    /// The node the event happens at.
    fn node(&self) -> NodeId {
        match self {
            Event::Start { node, .. }
            | Event::Timer { node, .. }
            | Event::Wake { node, .. }
            | Event::Refused { node, .. } => *node,
            Event::Deliver { to, .. } => *to,
        }
    }
}

/// A message that leaves its sender after work the sender is still doing.
#[derive(Clone, Copy, Debug)]
struct Departure {
    message_id: u64,
    departs: SimTime,
    /// 2 when the network duplicated it.
    copies: u8,
}

/// Everything the simulation keeps about one node.
struct NodeSlot<P, M> {
    /// `None` while the node is down.
    process: Option<P>,
    disk: SimDisk,
    clock: NodeClock,
    /// Timers set and neither fired, cancelled nor lost in a crash.
    timers_pending: BTreeSet<TimerId>,
    /// Counts restarts, so that a stale start event is recognised.
    incarnation: u64,
    /// What the node's work costs ([`crate::costs`]).
    costs: NodeCosts,
    /// Until when the node is busy with the work of its last handler: what comes due before
    /// waits in `inbox` until then.
    busy_until: SimTime,
    /// Events that came due while the node was busy, in the order they came; bounded by
    /// [`crate::queue::EVENT_QUEUE_LEN_MAX`].
    inbox: VecDeque<Event<M>>,
    /// Whether an [`Event::Wake`] for the inbox is queued.
    wake_queued: bool,
    /// The messages the node sent that leave after its work is done, with when they leave;
    /// those that have left are pruned at its next handler. Bounded by the actions of one
    /// handler call plus those of the calls within its busy time.
    departures: Vec<Departure>,
    /// The work this node's handlers cost so far, over every incarnation.
    busy_total: Duration,
    /// Where the next handler call stands in a run of waiting events; reset after each.
    run: RunPosition,
}

/// Creates a node's process from its id and its disk (empty at the start of the run, the
/// synced contents after a crash).
type ProcessFactory<P> = Box<dyn FnMut(NodeId, &SimDisk) -> P>;

/// One deterministic run over processes of type `P`.
pub struct Simulation<P: Process> {
    seed: u64,
    now: SimTime,
    rng: SimRng,
    queue: EventQueue<Event<P::Message>>,
    network: Network,
    nodes: BTreeMap<NodeId, NodeSlot<P, P::Message>>,
    factory: ProcessFactory<P>,
    trace: Trace,
    timer_id_next: u64,
    message_id_next: u64,
    statistics: MessageStatistics,
    external_outbox: Vec<ExternalMessage<P::Message>>,
    /// Paused nodes, each with the events held for it in the order they came due: they are
    /// processed when it resumes.
    paused: BTreeMap<NodeId, Vec<Event<P::Message>>>,
    /// For each sender and receiver that exchanged a message, when the newest message between
    /// them arrives before any reordering fault: a later one arrives no earlier (links are
    /// FIFO, see the network module). One entry per pair of nodes, so bounded by the topology.
    in_order_arrivals: BTreeMap<(NodeId, NodeId), SimTime>,
    /// Messages whose sender crashed before they left, with their copies still on the way:
    /// dropped when they come due.
    lost_departures: BTreeMap<u64, u8>,
}

impl<P: Process> Simulation<P> {
    /// A run of the network in `config`, every random choice drawn from `seed`. Each node's
    /// process is created now by `factory` with an empty disk; its `handle_start` runs at time
    /// zero, on the first step.
    pub fn new(
        seed: u64,
        config: NetworkConfig,
        factory: impl FnMut(NodeId, &SimDisk) -> P + 'static,
    ) -> Result<Self, NetworkConfigError> {
        let network = Network::new(config)?;
        let mut simulation = Simulation {
            seed,
            now: SimTime::ZERO,
            rng: SimRng::new(seed),
            queue: EventQueue::new(),
            network,
            nodes: BTreeMap::new(),
            factory: Box::new(factory),
            trace: Trace::new(),
            timer_id_next: 0,
            message_id_next: 0,
            statistics: MessageStatistics::default(),
            external_outbox: Vec::new(),
            paused: BTreeMap::new(),
            in_order_arrivals: BTreeMap::new(),
            lost_departures: BTreeMap::new(),
        };
        let node_ids: Vec<NodeId> = simulation.network.node_ids().collect();
        for node in node_ids {
            let disk = SimDisk::new();
            let process = (simulation.factory)(node, &disk);
            simulation.nodes.insert(
                node,
                NodeSlot {
                    process: Some(process),
                    disk,
                    clock: NodeClock::new(),
                    timers_pending: BTreeSet::new(),
                    incarnation: 0,
                    costs: NodeCosts::FREE,
                    busy_until: SimTime::ZERO,
                    inbox: VecDeque::new(),
                    wake_queued: false,
                    departures: Vec::new(),
                    busy_total: Duration::ZERO,
                    run: RunPosition::default(),
                },
            );
            simulation.schedule(
                SimTime::ZERO,
                Event::Start {
                    node,
                    incarnation: 0,
                },
            );
        }
        Ok(simulation)
    }

    // Getters.

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current virtual time.
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// The network: configuration, faults and partitions.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Every node id, in increasing order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The region of `node`, or `None` for an unknown node.
    pub fn region_of(&self, node: NodeId) -> Option<RegionId> {
        self.network.region_of(node)
    }

    /// True when `node` is paused ([`Simulation::pause`]).
    pub fn is_paused(&self, node: NodeId) -> bool {
        self.paused.contains_key(&node)
    }

    /// True when `node` is running (not crashed; a paused node counts as up).
    pub fn is_up(&self, node: NodeId) -> bool {
        self.nodes
            .get(&node)
            .is_some_and(|slot| slot.process.is_some())
    }

    /// The process of `node`, to check invariants; `None` if it is down or unknown.
    pub fn process(&self, node: NodeId) -> Option<&P> {
        self.nodes.get(&node)?.process.as_ref()
    }

    /// The disk of `node`, up or down; `None` if the node is unknown.
    pub fn disk(&self, node: NodeId) -> Option<&SimDisk> {
        self.nodes.get(&node).map(|slot| &slot.disk)
    }

    /// What the clock of `node` reads now, in microseconds since the Unix epoch.
    pub fn clock_now_us(&self, node: NodeId) -> u64 {
        self.slot(node).clock.now_us(self.now)
    }

    /// The clock of `node`.
    pub fn clock(&self, node: NodeId) -> &NodeClock {
        &self.slot(node).clock
    }

    /// Sets what the work of `node` costs from now on ([`crate::costs`]); every node starts
    /// with [`NodeCosts::FREE`].
    ///
    /// # Panics
    ///
    /// If `node` is unknown, or a cost is beyond [`crate::costs::NODE_COST_MAX`].
    pub fn set_costs(&mut self, node: NodeId, costs: NodeCosts) {
        if let Err(error) = costs.validate() {
            panic!("costs of node {node}: {error}");
        }
        self.slot_mut(node).costs = costs;
    }

    /// How long the handlers of `node` worked so far, by its costs ([`crate::costs`]): zero
    /// for a node without costs.
    ///
    /// # Panics
    ///
    /// If `node` is unknown.
    pub fn busy_time(&self, node: NodeId) -> Duration {
        self.slot(node).busy_total
    }

    /// Message counts so far.
    pub fn statistics(&self) -> &MessageStatistics {
        &self.statistics
    }

    /// The work the run has done so far: the events it recorded and the messages its
    /// processes sent.
    pub fn work(&self) -> RunWork {
        RunWork {
            events: self.trace.line_count(),
            messages_sent: self.statistics.sent,
        }
    }

    /// The number of queued events (cancelled timers included until their time comes).
    pub fn events_pending(&self) -> usize {
        self.queue.len()
    }

    /// The trace of the run so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The SHA-256 of the trace so far, as hex: equal for two runs exactly when they did the
    /// same things in the same order.
    pub fn trace_hash(&self) -> String {
        self.trace.hash_hex()
    }

    /// Stops or resumes keeping trace lines in memory; the hash covers every line either way.
    pub fn set_trace_lines_kept(&mut self, keep_lines: bool) {
        self.trace.set_keep_lines(keep_lines);
    }

    /// The run's random number generator. A driver draws its fault decisions from it, so that
    /// the seed decides them too.
    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.rng
    }

    /// Appends a line of the driver's own to the trace, such as the phase of a workload.
    pub fn note(&mut self, text: &str) {
        self.record(format_args!("note {text}"));
    }

    // Running.

    /// Processes the next event, advancing virtual time to it. Returns false when no event is
    /// left. Cancelled timers are skipped without counting as a step.
    pub fn step(&mut self) -> bool {
        while let Some(processed) = self.process_next() {
            if processed {
                return true;
            }
        }
        false
    }

    /// Processes every event due at or before `until`, then sets the time to `until`.
    ///
    /// # Panics
    ///
    /// If `until` is earlier than now.
    pub fn run_until(&mut self, until: SimTime) {
        assert!(
            until >= self.now,
            "run_until({until}) is earlier than the current time {}",
            self.now
        );
        // One queue entry at a time, so that skipping a cancelled timer never carries the run
        // past `until`.
        while self.queue.peek_time().is_some_and(|time| time <= until) {
            self.process_next();
        }
        self.now = until;
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(self.now + duration);
    }

    /// Runs until no event is left, and returns the number of events processed; gives up after
    /// [`QUIET_STEP_COUNT_MAX`] events.
    pub fn run_until_quiet(&mut self) -> Result<u64, NotQuiet> {
        self.run_until_quiet_within(QUIET_STEP_COUNT_MAX)
    }

    /// Runs until no event is left, and returns the number of events processed; gives up after
    /// `step_count_max` events (at most [`QUIET_STEP_COUNT_MAX`]).
    pub fn run_until_quiet_within(&mut self, step_count_max: u64) -> Result<u64, NotQuiet> {
        let step_count_max = step_count_max.min(QUIET_STEP_COUNT_MAX);
        let mut steps = 0;
        while steps < step_count_max {
            if !self.step() {
                return Ok(steps);
            }
            steps += 1;
        }
        // Cancelled timers may be all that is left; they are not work still to do.
        while self
            .queue
            .peek()
            .is_some_and(|(_, event)| self.is_stale(event))
        {
            self.queue.pop();
        }
        if self.queue.is_empty() {
            return Ok(steps);
        }
        Err(NotQuiet {
            steps,
            events_pending: self.queue.len(),
            now: self.now,
        })
    }

    // Commands.

    /// Delivers `message` to `to` at time `at`, from [`EXTERNAL_NODE_ID`], as a client outside
    /// the simulated network would. It bypasses network faults and partitions, but is dropped
    /// if `to` is down when it arrives.
    ///
    /// # Panics
    ///
    /// If `at` is earlier than now, or `to` is unknown.
    pub fn inject(&mut self, at: SimTime, to: NodeId, message: P::Message) {
        assert!(
            at >= self.now,
            "inject at {at} is earlier than the current time {}",
            self.now
        );
        self.slot(to);
        let message_id = self.message_id();
        self.statistics.injected += 1;
        self.record(format_args!(
            "inject external->{to} #{message_id} at={at} {message:?}"
        ));
        self.schedule(
            at,
            Event::Deliver {
                from: EXTERNAL_NODE_ID,
                to,
                message_id,
                message,
            },
        );
    }

    /// Takes the messages nodes sent to [`EXTERNAL_NODE_ID`] since the last call, in the order
    /// they were sent. They skip the network (like [`Simulation::inject`]): the driver's client
    /// sees a reply the moment it is sent.
    pub fn take_external_messages(&mut self) -> Vec<ExternalMessage<P::Message>> {
        std::mem::take(&mut self.external_outbox)
    }

    /// Runs `action` on the process of `node` now, with a context, as if the node handled an
    /// event: the way a driver calls a command of the state machine (such as a proposal)
    /// directly. Returns `None` if the node is down.
    ///
    /// # Panics
    ///
    /// If `node` is unknown.
    pub fn with_process<R>(
        &mut self,
        node: NodeId,
        action: impl FnOnce(&mut P, &mut Context<'_, P::Message>) -> R,
    ) -> Option<R> {
        self.slot(node).process.as_ref()?;
        self.record(format_args!("call {node}"));
        self.invoke(node, WorkKind::Other, action)
    }

    // Internals.

    fn slot(&self, node: NodeId) -> &NodeSlot<P, P::Message> {
        match self.nodes.get(&node) {
            Some(slot) => slot,
            None => panic!("node {node} is not in the simulated network"),
        }
    }

    fn slot_mut(&mut self, node: NodeId) -> &mut NodeSlot<P, P::Message> {
        match self.nodes.get_mut(&node) {
            Some(slot) => slot,
            None => panic!("node {node} is not in the simulated network"),
        }
    }

    fn record(&mut self, text: fmt::Arguments<'_>) {
        self.trace.record_fmt(format_args!("{} {text}", self.now));
    }

    fn message_id(&mut self) -> u64 {
        let message_id = self.message_id_next;
        self.message_id_next += 1;
        message_id
    }

    fn schedule(&mut self, time: SimTime, event: Event<P::Message>) {
        if let Err(error) = self.queue.push(time, event) {
            panic!(
                "simulation with seed {} at {}: {error}",
                self.seed, self.now
            );
        }
    }

    /// Takes the earliest queue entry: `None` when the queue is empty, otherwise whether the
    /// entry did anything. A stale entry is dropped without moving time, so that a cancelled
    /// timer far in the future does not drag the clock of a quiet run forward.
    fn process_next(&mut self) -> Option<bool> {
        let (time, event) = self.queue.pop()?;
        if self.is_stale(&event) {
            return Some(false);
        }
        assert!(
            time >= self.now,
            "event at {time} is earlier than the current time {}",
            self.now
        );
        self.now = time;
        let node = event.node();
        let event = match event {
            Event::Wake { .. } => {
                self.slot_mut(node).wake_queued = false;
                return Some(self.hand_waiting_run(node));
            }
            Event::Start { .. } => event,
            Event::Deliver { .. } | Event::Timer { .. } | Event::Refused { .. } => {
                let slot = self.slot(node);
                if slot.busy_until > time || !slot.inbox.is_empty() {
                    // The node is still at the work of an earlier event: this one waits, behind
                    // any that waited before it.
                    self.put_in_inbox(node, event);
                    return Some(false);
                }
                event
            }
        };
        let processed = self.process_ready(node, event);
        self.queue_wake(node);
        Some(processed)
    }

    /// Hands `node` the events that waited for its work, one handler call each, all at the
    /// current time, up to [`EVENTS_PER_RUN_MAX`]: each call is told whether another follows
    /// ([`Context::more_waiting`]) and its work adds to the run's. Returns whether it handled
    /// any.
    fn hand_waiting_run(&mut self, node: NodeId) -> bool {
        let mut handled = 0;
        let mut work_before = Duration::ZERO;
        let mut told_more = false;
        while let Some(event) = self.take_from_inbox(node) {
            handled += 1;
            self.drop_stale_from_inbox(node);
            let more_waiting = handled < EVENTS_PER_RUN_MAX && !self.slot(node).inbox.is_empty();
            self.slot_mut(node).run = RunPosition {
                work_before,
                more_waiting,
            };
            self.process_ready(node, event);
            let slot = self.slot_mut(node);
            slot.run = RunPosition::default();
            work_before = slot.busy_until.saturating_duration_since(self.now);
            told_more = more_waiting;
            if !more_waiting {
                break;
            }
        }
        if told_more && self.slot(node).process.is_some() && !self.is_paused(node) {
            // The event that was to follow was a timer its predecessor cancelled.
            let slot = self.slot_mut(node);
            let costs = slot.costs;
            slot.costs = NodeCosts::uniform(costs.disk_sync, Duration::ZERO);
            slot.run = RunPosition {
                work_before,
                more_waiting: false,
            };
            self.invoke(node, WorkKind::Other, |process, cx| {
                process.handle_run_end(cx)
            });
            let slot = self.slot_mut(node);
            slot.costs = costs;
            slot.run = RunPosition::default();
        }
        self.queue_wake(node);
        handled > 0
    }

    /// Drops the events at the front of the inbox of `node` that no longer do anything.
    fn drop_stale_from_inbox(&mut self, node: NodeId) {
        while let Some(event) = self.slot(node).inbox.front() {
            if !self.is_stale(event) {
                return;
            }
            self.slot_mut(node).inbox.pop_front();
        }
    }

    /// The first event of the inbox of `node` that still does something.
    fn take_from_inbox(&mut self, node: NodeId) -> Option<Event<P::Message>> {
        loop {
            let event = self.slot_mut(node).inbox.pop_front()?;
            if !self.is_stale(&event) {
                return Some(event);
            }
        }
    }

    /// Makes `event` wait in the inbox of `node` until the node is free.
    fn put_in_inbox(&mut self, node: NodeId, event: Event<P::Message>) {
        let (seed, now) = (self.seed, self.now);
        let slot = self.slot_mut(node);
        assert!(
            slot.inbox.len() < crate::queue::EVENT_QUEUE_LEN_MAX,
            "simulation with seed {seed} at {now}: node {node} has {} events waiting for it to \
             finish its work: its costs let it handle less than the workload gives it",
            slot.inbox.len()
        );
        slot.inbox.push_back(event);
        self.queue_wake(node);
    }

    /// Queues the wake of `node` for when it is free, if events wait for it and none is queued.
    fn queue_wake(&mut self, node: NodeId) {
        let now = self.now;
        let slot = self.slot_mut(node);
        if slot.inbox.is_empty() || slot.wake_queued {
            return;
        }
        slot.wake_queued = true;
        let wake = Event::Wake {
            node,
            incarnation: slot.incarnation,
        };
        let at = slot.busy_until.max(now);
        self.schedule(at, wake);
    }

    /// Handles an event whose node is free now (or holds it for a paused node); returns
    /// whether it did anything.
    fn process_ready(&mut self, node: NodeId, event: Event<P::Message>) -> bool {
        if let Some(held) = self.paused.get_mut(&node) {
            // A paused node handles nothing: what comes due waits for it to resume.
            let line = match &event {
                Event::Start { .. } => format!("hold {node} start"),
                Event::Deliver {
                    from, message_id, ..
                } => format!("hold {}->{node} #{message_id}", NodeLabel(*from)),
                Event::Timer { timer, .. } => format!("hold {node} {timer}"),
                Event::Refused { to, message_id, .. } => {
                    format!("hold {node} refusal {node}->{to} #{message_id}")
                }
                // A wake is taken apart before it gets here; holding it holds nothing.
                Event::Wake { .. } => return false,
            };
            held.push(event);
            self.record(format_args!("{line}"));
            return true;
        }
        self.process_event(event);
        true
    }

    /// True for an event that no longer does anything: a cancelled or crashed timer, or the
    /// start of an incarnation that is gone.
    fn is_stale(&self, event: &Event<P::Message>) -> bool {
        match event {
            Event::Start { node, incarnation }
            | Event::Wake { node, incarnation }
            | Event::Refused {
                node, incarnation, ..
            } => {
                let slot = self.slot(*node);
                slot.incarnation != *incarnation || slot.process.is_none()
            }
            Event::Deliver { .. } => false,
            Event::Timer { node, timer } => !self.slot(*node).timers_pending.contains(timer),
        }
    }

    /// Processes one event that is not stale.
    fn process_event(&mut self, event: Event<P::Message>) {
        match event {
            Event::Start { node, .. } => {
                self.record(format_args!("start {node}"));
                self.invoke(node, WorkKind::Timer, |process, cx| {
                    process.handle_start(cx)
                });
            }
            Event::Deliver {
                from,
                to,
                message_id,
                message,
            } => {
                if let Some(copies) = self.lost_departures.get_mut(&message_id) {
                    *copies -= 1;
                    if *copies == 0 {
                        self.lost_departures.remove(&message_id);
                    }
                    self.drop_message(from, to, message_id, DropReason::SenderDown);
                    return;
                }
                if self.slot(to).process.is_none() {
                    self.drop_message(from, to, message_id, DropReason::NodeDown);
                    self.refuse(from, to, message_id, message);
                    return;
                }
                self.statistics.delivered += 1;
                let now = self.now;
                // The message is not hashed again: it is the one whose text the send (or
                // inject) record under this id hashed, so the id stands for it.
                self.trace.record_event(
                    trace_kind::DELIVER,
                    now.as_nanos(),
                    &[from, to, message_id],
                    None,
                    |line| {
                        let _ = write!(
                            line,
                            "{now} deliver {}->{to} #{message_id} {message:?}",
                            NodeLabel(from)
                        );
                    },
                );
                let kind = P::work_kind(&message);
                self.invoke(to, kind, |process, cx| {
                    process.handle_message(cx, from, message)
                });
            }
            Event::Refused {
                node,
                to,
                message_id,
                message,
                ..
            } => {
                self.record(format_args!("refused {node}->{to} #{message_id}"));
                let kind = P::work_kind(&message);
                self.invoke(node, kind, |process, cx| {
                    process.handle_refused(cx, to, message)
                });
            }
            Event::Timer { node, timer } => {
                self.slot_mut(node).timers_pending.remove(&timer);
                let now = self.now;
                self.trace.record_event(
                    trace_kind::FIRE,
                    now.as_nanos(),
                    &[node, timer.get()],
                    None,
                    |line| {
                        let _ = write!(line, "{now} fire {node} {timer}");
                    },
                );
                self.invoke(node, WorkKind::Timer, |process, cx| {
                    process.handle_timer(cx, timer)
                });
            }
            // Taken apart in `process_next`: it hands on the event that waited.
            Event::Wake { .. } => {}
        }
    }

    /// Runs `handler` on the process of `node` (which must be up), charging it the CPU time of
    /// an event of `kind`, then applies the actions it requested, in order.
    fn invoke<R>(
        &mut self,
        node: NodeId,
        kind: WorkKind,
        handler: impl FnOnce(&mut P, &mut Context<'_, P::Message>) -> R,
    ) -> Option<R> {
        let slot = self.nodes.get_mut(&node)?;
        let process = slot.process.as_mut()?;
        let now = self.now;
        slot.departures.retain(|departure| departure.departs > now);
        let now_us = slot.clock.now_us(self.now);
        let run = slot.run;
        let mut cx = Context::new(
            node,
            self.now,
            now_us,
            &mut self.rng,
            &mut slot.disk,
            &mut self.timer_id_next,
            (slot.costs, kind, run),
        );
        let result = handler(process, &mut cx);
        let (actions, own_work) = cx.into_actions();
        let busy = run.work_before + own_work;
        if !busy.is_zero() {
            slot.busy_until = self.now + busy;
            slot.busy_total += own_work;
        }
        for action in actions {
            self.apply(node, action);
        }
        Some(result)
    }

    fn apply(&mut self, node: NodeId, action: Action<P::Message>) {
        match action {
            Action::Send { to, message, after } => self.send(node, to, message, after),
            Action::SetTimer { timer, after } => {
                self.slot_mut(node).timers_pending.insert(timer);
                self.schedule(self.now + after, Event::Timer { node, timer });
            }
            Action::CancelTimer { timer } => {
                self.slot_mut(node).timers_pending.remove(&timer);
            }
        }
    }

    /// Sends one message through the network: partition, loss, delay, reordering and
    /// duplication are decided now, in that order, each from the run's generator. On a link
    /// with packet faults of its own, its loss, reordering and duplication are drawn right
    /// after the network-wide ones (and only there, so other messages draw as before).
    fn send(&mut self, from: NodeId, to: NodeId, message: P::Message, after: Duration) {
        let message_id = self.message_id();
        self.statistics.sent += 1;
        let now = self.now;
        self.trace.record_event(
            trace_kind::SEND,
            now.as_nanos(),
            &[from, to, message_id],
            Some(&message),
            |line| {
                let _ = write!(line, "{now} send {from}->{} #{message_id}", NodeLabel(to));
            },
        );
        if to == EXTERNAL_NODE_ID {
            self.send_external(from, message_id, message);
            return;
        }
        if !self.nodes.contains_key(&to) {
            self.drop_message(from, to, message_id, DropReason::UnknownNode);
            return;
        }
        if self.network.is_cut(from, to) {
            self.drop_message(from, to, message_id, DropReason::Partition);
            return;
        }
        if self.rng.chance(self.network.faults().loss_probability) {
            self.drop_message(from, to, message_id, DropReason::Loss);
            return;
        }
        let link_faults = self.network.link_faults(from, to);
        if let Some(faults) = link_faults
            && self.rng.chance(faults.loss_probability)
        {
            self.drop_message(from, to, message_id, DropReason::Loss);
            return;
        }
        let (delay, reorder) = self.sample_delay(from, to);
        let departs = self.now + after;
        let in_order_at = self
            .in_order_arrivals
            .get(&(from, to))
            .map_or(departs + delay, |&previous| previous.max(departs + delay));
        self.in_order_arrivals.insert((from, to), in_order_at);
        let mut duplicated = self
            .rng
            .chance(self.network.faults().duplication_probability);
        if let Some(faults) = link_faults {
            // Drawn whatever the network-wide draw gave, so that the draws of a message do not
            // depend on the outcome of an earlier one.
            duplicated |= self.rng.chance(faults.duplication_probability);
        }
        let duplicate = duplicated.then(|| {
            let (delay, reorder) = self.sample_delay(from, to);
            (after + delay + reorder, message.clone())
        });
        if !after.is_zero() {
            self.slot_mut(from).departures.push(Departure {
                message_id,
                departs,
                copies: 1 + u8::from(duplicate.is_some()),
            });
        }
        self.schedule(
            in_order_at + reorder,
            Event::Deliver {
                from,
                to,
                message_id,
                message,
            },
        );
        if let Some((duplicate_delay, duplicate_message)) = duplicate {
            self.statistics.duplicated += 1;
            self.record(format_args!("duplicate {from}->{to} #{message_id}"));
            self.schedule(
                self.now + duplicate_delay,
                Event::Deliver {
                    from,
                    to,
                    message_id,
                    message: duplicate_message,
                },
            );
        }
    }

    fn send_external(&mut self, from: NodeId, message_id: u64, message: P::Message) {
        if self.external_outbox.len() >= EXTERNAL_OUTBOX_LEN_MAX {
            self.drop_message(
                from,
                EXTERNAL_NODE_ID,
                message_id,
                DropReason::ExternalOutboxFull,
            );
            return;
        }
        self.statistics.delivered += 1;
        let now = self.now;
        // As for a delivery between nodes, the send record just hashed the message.
        self.trace.record_event(
            trace_kind::DELIVER_EXTERNAL,
            now.as_nanos(),
            &[from, message_id],
            None,
            |line| {
                let _ = write!(
                    line,
                    "{now} deliver {from}->external #{message_id} {message:?}"
                );
            },
        );
        self.external_outbox.push(ExternalMessage {
            sent_at: self.now,
            from,
            message,
        });
    }

    /// A message from `from` found `to` down: when processes notice refusals and the link
    /// back is not cut, the sender learns of it one mean one-way delay later, as a crashed
    /// process's host refuses the connection (a paused process, or a cut link, stays silent).
    /// The delay is the link's mean, drawn from no generator, so that runs draw as they would
    /// without refusals.
    fn refuse(&mut self, from: NodeId, to: NodeId, message_id: u64, message: P::Message) {
        if from == EXTERNAL_NODE_ID || self.network.is_cut(to, from) {
            return;
        }
        let Some(sender) = self.nodes.get(&from) else {
            return;
        };
        if !sender
            .process
            .as_ref()
            .is_some_and(Process::notices_refusals)
        {
            return;
        }
        let incarnation = sender.incarnation;
        let Some(link) = self.network.link(to, from) else {
            return;
        };
        self.schedule(
            self.now + link.delay,
            Event::Refused {
                node: from,
                incarnation,
                to,
                message_id,
                message,
            },
        );
    }

    fn sample_delay(&mut self, from: NodeId, to: NodeId) -> (Duration, Duration) {
        match self.network.sample_delay(&mut self.rng, from, to) {
            Some(delay) => delay,
            None => panic!("no link from node {from} to node {to}, though both exist"),
        }
    }

    fn drop_message(&mut self, from: NodeId, to: NodeId, message_id: u64, reason: DropReason) {
        self.statistics.count_drop(reason);
        self.record(format_args!(
            "drop {}->{} #{message_id} reason={reason}",
            NodeLabel(from),
            NodeLabel(to)
        ));
    }
}
