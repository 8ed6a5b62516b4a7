//! What a node's work costs in simulated time: a disk sync and the CPU time of handling one
//! event.
//!
//! With no costs (the default) a node handles every event in no time and its disk syncs at
//! once, so every latency the simulator reports is a floor set by the network alone. With
//! costs, the kernel charges each handler call [`NodeCosts::cpu_per_event`] plus
//! [`NodeCosts::disk_sync`] for every sync the handler made, in that order:
//!
//! - a message the handler sends leaves when the work before it is done: the CPU time, plus
//!   one disk sync for every sync made before the send. A raft leader's appends, sent before
//!   its own sync, leave after the CPU time; the answers it sends after the sync leave after
//!   both, as they do from a real process;
//! - the node is busy until all of it is done: an event that comes due meanwhile waits, in
//!   order, as it waits in a real process's queue. When the node is free, the events that
//!   waited are handed to it in one run at that time (up to
//!   [`crate::simulation::EVENTS_PER_RUN_MAX`]), each told whether another follows
//!   ([`crate::Context::more_waiting`]), so that a process can make one raft round for all of
//!   them, as a production loop takes every queued event before its next round.
//!
//! A crash ends the work: the messages sent after work that was not done by then never leave
//! (they count as dropped, `sender-down`), the events that waited are lost, and the restarted
//! node starts free, on new connections (its links' order starts afresh).
//!
//! One event's CPU time is [`NodeCosts::cpu_per_event`] unless [`NodeCosts::cpu_per_kind`]
//! names another for its [`WorkKind`]: a process says which kind each of its messages is
//! ([`crate::Process::work_kind`]). A real node spends far less on a client's call or a raft
//! acknowledgement than on a sealed epoch applied to its log, so one cost for every event
//! overcharges the short regional path.
//!
//! What it does not model: a crash in the middle of a handler's charged time still keeps what
//! the handler synced (the disk takes writes at once); a sync's latency does not depend on how
//! much it writes; cores are not shared: every node has a CPU of its own; and events of one
//! kind cost the same whatever they carry.

use std::fmt;
use std::time::Duration;

/// What kind of work handling an event is, for [`NodeCosts::cpu_per_kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkKind {
    /// An application instance's call, read, barrier or session, or the answer to one.
    Client,
    /// A raft message or clock probe between members of one group (a region or the
    /// coordinator).
    Raft,
    /// Traffic between the tiers: a region's batch, a sealed epoch, their acknowledgements,
    /// sealed-epoch reads.
    Global,
    /// A timer of the node's own, or its start.
    Timer,
    /// Anything a process does not classify: always [`NodeCosts::cpu_per_event`].
    Other,
}

impl WorkKind {
    /// The kinds a cost can be set for, in the order of [`NodeCosts::cpu_per_kind`].
    pub const SETTABLE: [WorkKind; 4] = [
        WorkKind::Client,
        WorkKind::Raft,
        WorkKind::Global,
        WorkKind::Timer,
    ];

    /// The kind's name in options and reports.
    pub fn name(self) -> &'static str {
        match self {
            WorkKind::Client => "client",
            WorkKind::Raft => "raft",
            WorkKind::Global => "global",
            WorkKind::Timer => "timer",
            WorkKind::Other => "other",
        }
    }

    /// The settable kind called `name`, or what names there are.
    pub fn parse(name: &str) -> Result<WorkKind, String> {
        WorkKind::SETTABLE
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                format!(
                    "no kind of work is called {name:?}; the kinds are {}",
                    WorkKind::SETTABLE.map(WorkKind::name).join(", ")
                )
            })
    }

    fn index(self) -> Option<usize> {
        WorkKind::SETTABLE.iter().position(|kind| *kind == self)
    }
}

impl fmt::Display for WorkKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// The most one disk sync or one event may cost: beyond it a setting is surely a mistake (a
/// unit typed wrong).
pub const NODE_COST_MAX: Duration = Duration::from_secs(1);

/// What one node's work costs; see the module documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCosts {
    /// How long one disk sync (fsync) takes.
    pub disk_sync: Duration,
    /// The CPU time of handling one event (a message, a timer, the start) of a kind
    /// [`NodeCosts::cpu_per_kind`] names no cost for.
    pub cpu_per_event: Duration,
    /// The CPU time of one event of each of [`WorkKind::SETTABLE`], where set.
    pub cpu_per_kind: [Option<Duration>; 4],
}

impl NodeCosts {
    /// No costs: the network alone sets every latency.
    pub const FREE: NodeCosts = NodeCosts {
        disk_sync: Duration::ZERO,
        cpu_per_event: Duration::ZERO,
        cpu_per_kind: [None; 4],
    };

    /// A disk sync of `disk_sync` and `cpu_per_event` of CPU time for every event.
    pub fn uniform(disk_sync: Duration, cpu_per_event: Duration) -> NodeCosts {
        NodeCosts {
            disk_sync,
            cpu_per_event,
            cpu_per_kind: [None; 4],
        }
    }

    /// These costs with `cpu` for every event of `kind` (which must be one of
    /// [`WorkKind::SETTABLE`]; setting [`WorkKind::Other`] changes nothing).
    pub fn with_kind(mut self, kind: WorkKind, cpu: Duration) -> NodeCosts {
        if let Some(index) = kind.index() {
            self.cpu_per_kind[index] = Some(cpu);
        }
        self
    }

    /// True when nothing costs time.
    pub fn is_free(&self) -> bool {
        self.disk_sync.is_zero()
            && WorkKind::SETTABLE
                .into_iter()
                .chain([WorkKind::Other])
                .all(|kind| self.cpu_for(kind).is_zero())
    }

    /// The CPU time of one event of `kind`.
    pub fn cpu_for(&self, kind: WorkKind) -> Duration {
        kind.index()
            .and_then(|index| self.cpu_per_kind[index])
            .unwrap_or(self.cpu_per_event)
    }

    /// How long a handler of an event of `kind` that made `syncs` disk syncs keeps its node
    /// busy.
    pub fn handler_time(&self, kind: WorkKind, syncs: u64) -> Duration {
        self.cpu_for(kind).saturating_add(
            self.disk_sync
                .saturating_mul(u32::try_from(syncs).unwrap_or(u32::MAX)),
        )
    }

    /// The kinds with a cost of their own, as `kind=cost` in microseconds, comma separated
    /// (empty when none has): how reports name them.
    pub fn kinds_text(&self) -> String {
        WorkKind::SETTABLE
            .into_iter()
            .filter_map(|kind| {
                let index = kind.index()?;
                let cost = self.cpu_per_kind[index]?;
                Some(format!("{kind}={}us", cost.as_nanos() as f64 / 1_000.0))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Rejects a cost beyond [`NODE_COST_MAX`], naming it.
    pub fn validate(&self) -> Result<(), String> {
        let kinds = WorkKind::SETTABLE
            .into_iter()
            .filter_map(|kind| Some((kind, self.cpu_per_kind[kind.index()?]?)));
        for (name, cost) in [
            ("disk sync".to_string(), self.disk_sync),
            ("CPU per event".to_string(), self.cpu_per_event),
        ]
        .into_iter()
        .chain(kinds.map(|(kind, cost)| (format!("CPU per {kind} event"), cost)))
        {
            if cost > NODE_COST_MAX {
                return Err(format!(
                    "the {name} cost of {cost:?} is beyond the bound of {NODE_COST_MAX:?}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handler_costs_its_cpu_time_and_one_sync_latency_per_sync() {
        let costs = NodeCosts::uniform(Duration::from_micros(200), Duration::from_micros(30));
        assert_eq!(
            costs.handler_time(WorkKind::Raft, 0),
            Duration::from_micros(30)
        );
        assert_eq!(
            costs.handler_time(WorkKind::Client, 2),
            Duration::from_micros(430)
        );
        assert!(NodeCosts::FREE.is_free());
        assert_eq!(
            NodeCosts::FREE.handler_time(WorkKind::Timer, 5),
            Duration::ZERO
        );
    }

    #[test]
    fn a_kind_with_a_cost_of_its_own_costs_that_and_the_others_the_cost_per_event() {
        let costs = NodeCosts::uniform(Duration::ZERO, Duration::from_micros(300))
            .with_kind(WorkKind::Client, Duration::from_micros(40))
            .with_kind(WorkKind::Timer, Duration::ZERO)
            .with_kind(WorkKind::Other, Duration::from_micros(1));
        assert_eq!(costs.cpu_for(WorkKind::Client), Duration::from_micros(40));
        assert_eq!(costs.cpu_for(WorkKind::Timer), Duration::ZERO);
        assert_eq!(costs.cpu_for(WorkKind::Raft), Duration::from_micros(300));
        assert_eq!(costs.cpu_for(WorkKind::Other), Duration::from_micros(300));
        assert_eq!(costs.kinds_text(), "client=40us,timer=0us");
        assert!(!costs.is_free());
        // Every kind free but one is not free.
        let one = NodeCosts::FREE.with_kind(WorkKind::Global, Duration::from_micros(5));
        assert!(!one.is_free());
        assert_eq!(WorkKind::parse("global"), Ok(WorkKind::Global));
        let unknown = WorkKind::parse("disk").unwrap_err();
        assert!(unknown.contains("client, raft, global, timer"), "{unknown}");
    }

    #[test]
    fn a_cost_beyond_the_bound_is_refused_by_name() {
        let costs = NodeCosts::uniform(Duration::from_secs(2), Duration::ZERO);
        let error = costs.validate().unwrap_err();
        assert!(error.contains("disk sync"), "{error}");
        assert!(NodeCosts::default().validate().is_ok());
        let kind = NodeCosts::FREE.with_kind(WorkKind::Raft, Duration::from_secs(3));
        let error = kind.validate().unwrap_err();
        assert!(error.contains("CPU per raft event"), "{error}");
    }
}
