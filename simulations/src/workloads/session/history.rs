//! What the instances of a session run record: every write, read and barrier of every
//! instance, in program order, with simulated times.

use std::collections::BTreeMap;

use dsss::session::SessionCounters;

use crate::time::SimTime;

/// One operation of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionOperation {
    /// A write of `value`; `replaced` is the value it replaced, `None` when the call failed
    /// (it may or may not have taken effect).
    Write {
        /// The register.
        object: String,
        /// The value written (unique in the run).
        value: u64,
        /// What the write returned.
        replaced: Option<u64>,
        /// When the call began.
        began_at: SimTime,
        /// When it returned.
        ended_at: SimTime,
    },
    /// A read of the local copy, after a `sync()` barrier when `synced`.
    Read {
        /// The register.
        object: String,
        /// The value read.
        value: u64,
        /// After a barrier (linearizable).
        synced: bool,
        /// The position the copy stood at (for diagnostics only: no check relies on it).
        position: u64,
        /// When the read (with its barrier) began.
        began_at: SimTime,
        /// When it returned.
        ended_at: SimTime,
    },
    /// A call of a method of an example object (a run of the example objects, whose
    /// results the sdk checkers judge); `outcome` is `None` when the call failed (it may or
    /// may not have taken effect).
    Call {
        /// The object.
        object: String,
        /// Whether the object is global (ordered by the coordinator) or regional.
        global: bool,
        /// The method, by its schema name.
        method: String,
        /// The arguments as the method's codec encoded them.
        arguments: Vec<u8>,
        /// What the method returned (its encoded result), or the error it raised.
        outcome: Option<Result<Vec<u8>, String>>,
        /// When the call began.
        began_at: SimTime,
        /// When it returned.
        ended_at: SimTime,
    },
    /// A read of an example object's local copy, after a `sync()` barrier when `synced`.
    Query {
        /// The object.
        object: String,
        /// What the read asked, as the object workload describes it.
        read: String,
        /// What it returned, described the same way.
        value: String,
        /// After a barrier (linearizable).
        synced: bool,
        /// How many records of the object the copy had applied.
        records_applied: u64,
        /// When the read (with its barrier) began.
        began_at: SimTime,
        /// When it returned.
        ended_at: SimTime,
    },
    /// A `sync()` barrier that gave up: no read follows it.
    SyncFailed {
        /// The register it was to read (`None`: every register, the final round).
        object: Option<String>,
        /// When the barrier began.
        began_at: SimTime,
        /// When it gave up.
        ended_at: SimTime,
    },
}

/// One instance's history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceHistory {
    /// The instance's region.
    pub region: String,
    /// Its operations in program order.
    pub operations: Vec<SessionOperation>,
    /// Open loop: operations that arrived in the operation window.
    pub arrivals: u64,
    /// Open loop: operations that arrived while the backlog was full, never run.
    pub arrivals_shed: u64,
}

impl InstanceHistory {
    /// An empty history of an instance in `region`.
    pub fn new(region: &str) -> InstanceHistory {
        InstanceHistory {
            region: region.to_owned(),
            operations: Vec::new(),
            arrivals: 0,
            arrivals_shed: 0,
        }
    }

    /// Records `operation`.
    pub fn push(&mut self, operation: SessionOperation) {
        self.operations.push(operation);
    }
}

/// What the instances of a run share with the harness.
#[derive(Debug, Default)]
pub struct SessionObserver {
    /// Every instance's history, by instance index.
    pub instances: BTreeMap<u64, InstanceHistory>,
    /// Instances that opened every register.
    pub opened: usize,
    /// Instances that finished the final round.
    pub finished: usize,
    /// Barriers that failed (they gave up: no read follows them).
    pub syncs_failed: usize,
    /// Proposal attempts that the session followed with another attempt of the same call
    /// before any answer came: its attempt timeout passed the member over.
    pub proposals_unanswered: usize,
    /// What the instances' sessions counted, summed as each instance finishes.
    pub counters: SessionCounters,
    violations: Vec<String>,
}

impl SessionObserver {
    /// Notes a broken expectation.
    pub fn violation(&mut self, problem: String) {
        const VIOLATIONS_KEPT_MAX: usize = 64;
        if self.violations.len() < VIOLATIONS_KEPT_MAX {
            self.violations.push(problem);
        }
    }

    /// The broken expectations noted.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }
}
