//! The checks of the global workload: what the observer verifies while the run goes on, and
//! what [`check_cluster`] verifies over every member's log at the end (docs/design.md section 6).
//!
//! - One order: every region appends the same sealed epochs, with the same records in the
//!   same order (checked on every applied entry, and again over the final logs).
//! - Epoch order: epoch numbers are dense, watermarks grow, and an epoch holds records with
//!   timestamps in (previous watermark, watermark], sorted by (timestamp, origin region,
//!   request sequence).
//! - Exactly once: a call is sealed in at most one place; every acknowledgement of a call
//!   names the same position.
//! - Durability: every acknowledged call is in its region's final log at its acknowledged
//!   position, and every acknowledged global call is in every region's log.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dsss_region_node::{LogEntry, LogEvent, RegionLog};
use dsss_wire::{ClientId, Record, RequestSequence, Scope, Timestamp};

use crate::network::NodeId;
use crate::time::SimTime;

/// The most violations an observer keeps (the count goes on).
pub const VIOLATIONS_KEPT_MAX: usize = 64;

/// The most refusal descriptions an observer keeps as examples (the count goes on).
pub const REFUSAL_EXAMPLES_MAX: usize = 8;

/// A call as the observer knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// The region of the client that made it.
    pub region: String,
    /// Its scope.
    pub scope: Scope,
    /// When the client first sent it.
    pub invoked_at: SimTime,
    /// The position its acknowledgement named, once acknowledged.
    pub position: Option<u64>,
    /// When the client got its first acknowledgement.
    pub acknowledged_at: Option<SimTime>,
}

/// The end of one sealed epoch, as a region appended it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EpochEnd {
    watermark: Timestamp,
    previous_watermark: Option<Timestamp>,
    record_count: u32,
}

/// Watches a run: every acknowledgement, every entry every member applies.
#[derive(Debug, Default)]
pub struct GlobalObserver {
    node_region: BTreeMap<NodeId, String>,
    violations: Vec<String>,
    violation_count: u64,
    calls: BTreeMap<(u64, u64), CallRecord>,
    /// Per region, what was applied at each position (by the first member to apply it).
    applied_at: BTreeMap<String, BTreeMap<u64, LogEntry>>,
    /// Every sealed record, by (epoch, index in epoch), as the first region appended it.
    sealed: BTreeMap<(u64, u32), Record>,
    /// Where each call was sealed.
    sealed_at: BTreeMap<(u64, u64), (u64, u32)>,
    epoch_ends: BTreeMap<u64, EpochEnd>,
    /// Global-call latencies per origin region, of calls started at `measure_from` or later.
    latencies: BTreeMap<String, Vec<Duration>>,
    measure_from: SimTime,
    refusal_examples: Vec<String>,
    /// Messages the coordinator or a region node refused (skew, bounds, stale input).
    pub refusals: u64,
    /// Raft messages the nodes refused.
    pub raft_messages_refused: u64,
    /// Times a region node or a coordinator replica fenced itself for its clock.
    pub clock_fences: u64,
    /// Calls retried by clients.
    pub retries: u64,
    /// Calls sent again after their acknowledgement.
    pub deliberate_duplicates: u64,
    /// Entries applied by every member of every region together.
    pub entries_applied: u64,
    /// Snapshots members restored.
    pub snapshots_restored: u64,
    /// Skips of epochs no log held that members applied.
    pub epoch_skips: u64,
    /// Where each global call's time went.
    pub stages: super::stages::StageTracker,
}

impl GlobalObserver {
    /// An observer of nodes whose regions `node_region` names, measuring the latency of
    /// global calls started at `measure_from` or later.
    pub fn new(node_region: BTreeMap<NodeId, String>, measure_from: SimTime) -> Self {
        GlobalObserver {
            node_region,
            measure_from,
            ..GlobalObserver::default()
        }
    }

    /// Records a broken guarantee.
    pub fn violation(&mut self, description: String) {
        self.violation_count += 1;
        if self.violations.len() < VIOLATIONS_KEPT_MAX {
            self.violations.push(description);
        }
    }

    /// The broken guarantees seen (at most [`VIOLATIONS_KEPT_MAX`], then a count).
    pub fn violations(&self) -> Vec<String> {
        let mut violations = self.violations.clone();
        if self.violation_count > self.violations.len() as u64 {
            violations.push(format!("... {} violations in all", self.violation_count));
        }
        violations
    }

    /// Counts a message a node refused, keeping a few as examples.
    pub fn note_refusal(&mut self, description: String) {
        self.refusals += 1;
        if self.refusal_examples.len() < REFUSAL_EXAMPLES_MAX {
            self.refusal_examples.push(description);
        }
    }

    /// A few refusals, for the report.
    pub fn refusal_examples(&self) -> &[String] {
        &self.refusal_examples
    }

    /// A client sent a new call.
    pub fn invoked(
        &mut self,
        client: ClientId,
        sequence: RequestSequence,
        scope: Scope,
        region: &str,
        at: SimTime,
    ) {
        self.calls.insert(
            (client.get(), sequence.get()),
            CallRecord {
                region: region.to_string(),
                scope,
                invoked_at: at,
                position: None,
                acknowledged_at: None,
            },
        );
    }

    /// A client got an acknowledgement naming `position` at `at`.
    pub fn acknowledged(
        &mut self,
        client: ClientId,
        sequence: RequestSequence,
        region: &str,
        position: u64,
        at: SimTime,
    ) {
        let key = (client.get(), sequence.get());
        let Some(call) = self.calls.get_mut(&key) else {
            self.violation(format!(
                "client {client} got an acknowledgement of sequence {sequence}, which it never \
                 sent"
            ));
            return;
        };
        match call.position {
            Some(first) if first != position => {
                let description = format!(
                    "client {client} sequence {sequence} ({region}) acknowledged at position \
                     {position} after {first} (applied twice)"
                );
                self.violation(description);
            }
            Some(_) => {}
            None => {
                call.position = Some(position);
                call.acknowledged_at = Some(at);
                if call.scope == Scope::Global && call.invoked_at >= self.measure_from {
                    let latency = at.saturating_duration_since(call.invoked_at);
                    self.latencies
                        .entry(region.to_string())
                        .or_default()
                        .push(latency);
                }
            }
        }
    }

    /// Every call made, by (client, sequence).
    pub fn calls(&self) -> &BTreeMap<(u64, u64), CallRecord> {
        &self.calls
    }

    /// How many calls were acknowledged.
    pub fn acknowledged_count(&self) -> usize {
        self.calls
            .values()
            .filter(|call| call.position.is_some())
            .count()
    }

    /// Global-call latencies per origin region.
    pub fn latencies(&self) -> &BTreeMap<String, Vec<Duration>> {
        &self.latencies
    }

    /// The newest epoch any region appended.
    pub fn newest_epoch(&self) -> u64 {
        self.epoch_ends.keys().next_back().copied().unwrap_or(0)
    }

    /// A member applied a log event.
    pub fn observe_log_event(&mut self, node: NodeId, event: &LogEvent) {
        let region = match self.node_region.get(&node) {
            Some(region) => region.clone(),
            None => {
                self.violation(format!("node {node}, of no region, applied {event:?}"));
                return;
            }
        };
        let (position, entry) = match event {
            LogEvent::Applied { position, entry } => (*position, entry),
            LogEvent::Restored { .. } => {
                self.snapshots_restored += 1;
                return;
            }
        };
        self.entries_applied += 1;
        let applied = self.applied_at.entry(region.clone()).or_default();
        match applied.get(&position) {
            Some(first) if first != entry => {
                let description = format!(
                    "node {node} ({region}) applied {entry:?} at position {position}, where \
                     another member applied {first:?}"
                );
                self.violation(description);
                return;
            }
            Some(_) => return,
            None => {
                applied.insert(position, entry.clone());
            }
        }
        match entry {
            LogEntry::SequencedGlobal {
                epoch_number,
                index_in_epoch,
                record,
            } => self.observe_sealed(&region, *epoch_number, *index_in_epoch, record),
            // A skip of epochs no log held (docs/global-protocol.md section 7): the region
            // holds none of their records; the epoch it skips to ends where it ended
            // everywhere.
            LogEntry::EpochSealed {
                epoch_number,
                watermark,
                skipped_from,
                ..
            } if *skipped_from > 0 => {
                self.epoch_skips += 1;
                if let Some(first) = self.epoch_ends.get(epoch_number)
                    && first.watermark != *watermark
                {
                    let description = format!(
                        "{region} skipped to the end of epoch {epoch_number} at {watermark:?}, \
                         another region ended it at {:?}",
                        first.watermark
                    );
                    self.violation(description);
                }
            }
            LogEntry::EpochSealed {
                epoch_number,
                watermark,
                previous_watermark,
                record_count,
                ..
            } => {
                let end = EpochEnd {
                    watermark: *watermark,
                    previous_watermark: *previous_watermark,
                    record_count: *record_count,
                };
                match self.epoch_ends.get(epoch_number) {
                    Some(first) if *first != end => {
                        let description = format!(
                            "{region} ended epoch {epoch_number} as {end:?}, another region as \
                             {first:?}"
                        );
                        self.violation(description);
                    }
                    Some(_) => {}
                    None => {
                        self.epoch_ends.insert(*epoch_number, end);
                    }
                }
            }
            LogEntry::Regional(_) | LogEntry::PendingGlobal(_) => {}
        }
    }

    fn observe_sealed(&mut self, region: &str, epoch: u64, index: u32, record: &Record) {
        match self.sealed.get(&(epoch, index)) {
            Some(first) if first != record => {
                let description = format!(
                    "{region} holds c{} s{} at epoch {epoch} index {index}, another region \
                     holds c{} s{} there",
                    record.client_id,
                    record.request_sequence,
                    first.client_id,
                    first.request_sequence
                );
                self.violation(description);
            }
            Some(_) => {}
            None => {
                self.sealed.insert((epoch, index), record.clone());
                let call = (record.client_id.get(), record.request_sequence.get());
                if let Some(&(first_epoch, first_index)) = self.sealed_at.get(&call) {
                    self.violation(format!(
                        "c{} s{} sealed twice: epoch {first_epoch} index {first_index} and \
                         epoch {epoch} index {index}",
                        call.0, call.1
                    ));
                } else {
                    self.sealed_at.insert(call, (epoch, index));
                }
            }
        }
    }
}

/// One sealed epoch read from a log.
#[derive(Clone, Debug, PartialEq, Eq)]
struct EpochInLog {
    records: Vec<Record>,
    watermark: Timestamp,
    previous_watermark: Option<Timestamp>,
}

/// The sealed epochs of a log, in order, or a description of what is malformed. When the
/// entries held start past the log's first position (truncated, or beyond the cache), the
/// epoch they start in may have begun before them: its remaining entries are left out.
fn epochs_of(log: &RegionLog) -> Result<Vec<(u64, EpochInLog)>, String> {
    let mut epochs = Vec::new();
    let mut open: Vec<Record> = Vec::new();
    let mut open_epoch: Option<u64> = None;
    let mut stored_records = log.cached_records().peekable();
    let mut partial = stored_records
        .peek()
        .is_some_and(|first| first.position > 1);
    for stored in stored_records {
        if partial {
            match &stored.entry {
                // The first record of an epoch, or the end of an epoch without records: a
                // whole epoch starts here.
                LogEntry::SequencedGlobal {
                    index_in_epoch: 0, ..
                }
                | LogEntry::EpochSealed {
                    record_count: 0, ..
                } => partial = false,
                // The end of an epoch whose records lie before the entries held.
                LogEntry::EpochSealed { .. } => {
                    partial = false;
                    continue;
                }
                LogEntry::SequencedGlobal { .. }
                | LogEntry::Regional(_)
                | LogEntry::PendingGlobal(_) => continue,
            }
        }
        match &stored.entry {
            // The log skipped epochs no log held: what it holds starts again after them (an
            // epoch whose first parts it appended is abandoned).
            LogEntry::EpochSealed { skipped_from, .. } if *skipped_from > 0 => {
                epochs.clear();
                open.clear();
                open_epoch = None;
            }
            LogEntry::SequencedGlobal {
                epoch_number,
                index_in_epoch,
                record,
            } => {
                if open_epoch.is_some_and(|open| open != *epoch_number) {
                    return Err(format!(
                        "position {}: a record of epoch {epoch_number} inside epoch {:?}",
                        stored.position, open_epoch
                    ));
                }
                if *index_in_epoch as usize != open.len() {
                    return Err(format!(
                        "position {}: index {index_in_epoch} in epoch {epoch_number}, expected \
                         {}",
                        stored.position,
                        open.len()
                    ));
                }
                open_epoch = Some(*epoch_number);
                open.push(record.clone());
            }
            LogEntry::EpochSealed {
                epoch_number,
                watermark,
                previous_watermark,
                record_count,
                ..
            } => {
                if open_epoch.is_some_and(|open| open != *epoch_number) {
                    return Err(format!(
                        "position {}: epoch {epoch_number} ends inside epoch {:?}",
                        stored.position, open_epoch
                    ));
                }
                if *record_count as usize != open.len() {
                    return Err(format!(
                        "position {}: epoch {epoch_number} says {record_count} records, the log \
                         holds {}",
                        stored.position,
                        open.len()
                    ));
                }
                epochs.push((
                    *epoch_number,
                    EpochInLog {
                        records: std::mem::take(&mut open),
                        watermark: *watermark,
                        previous_watermark: *previous_watermark,
                    },
                ));
                open_epoch = None;
            }
            LogEntry::Regional(_) | LogEntry::PendingGlobal(_) => {}
        }
    }
    Ok(epochs)
}

/// Checks one epoch's inner order: timestamps in (previous, watermark], sorted by
/// (timestamp, origin region, request sequence).
fn check_epoch_order(number: u64, epoch: &EpochInLog) -> Vec<String> {
    let mut problems = Vec::new();
    if epoch
        .previous_watermark
        .is_some_and(|previous| previous >= epoch.watermark)
    {
        problems.push(format!(
            "epoch {number}: watermark {:?} is not above the previous {:?}",
            epoch.watermark, epoch.previous_watermark
        ));
    }
    let key = |record: &Record| {
        (
            record.timestamp,
            record.origin_region.as_str().to_string(),
            record.request_sequence.get(),
        )
    };
    for record in &epoch.records {
        let above_previous = epoch
            .previous_watermark
            .is_none_or(|previous| record.timestamp > previous);
        if !above_previous || record.timestamp > epoch.watermark {
            problems.push(format!(
                "epoch {number}: c{} s{} has timestamp {:?}, outside ({:?}, {:?}]",
                record.client_id,
                record.request_sequence,
                record.timestamp,
                epoch.previous_watermark,
                epoch.watermark
            ));
        }
    }
    for pair in epoch.records.windows(2) {
        if key(&pair[0]) >= key(&pair[1]) {
            problems.push(format!(
                "epoch {number}: c{} s{} sorts after c{} s{}",
                pair[0].client_id,
                pair[0].request_sequence,
                pair[1].client_id,
                pair[1].request_sequence
            ));
        }
    }
    problems
}

/// The final checks over the logs of every member that is up, grouped by region, against the
/// observer's calls. Returns every broken guarantee, described.
pub fn check_cluster(
    logs: &BTreeMap<String, BTreeMap<NodeId, &RegionLog>>,
    observer: &GlobalObserver,
) -> Vec<String> {
    let mut problems = observer.violations();
    let mut reference: Option<(NodeId, Vec<(u64, EpochInLog)>)> = None;
    for (region, members) in logs {
        if members.is_empty() {
            problems.push(format!("{region}: no member is up to check"));
            continue;
        }
        // Members of one region agree at every position they both hold.
        let mut positions: BTreeMap<u64, (NodeId, &LogEntry)> = BTreeMap::new();
        for (&node, log) in members {
            for stored in log.cached_records() {
                match positions.get(&stored.position) {
                    Some((first_node, first)) if *first != &stored.entry => problems.push(format!(
                        "{region}: node {node} holds {:?} at position {}, node {first_node} \
                             holds {first:?}",
                        stored.entry, stored.position
                    )),
                    Some(_) => {}
                    None => {
                        positions.insert(stored.position, (node, &stored.entry));
                    }
                }
            }
        }
        // Every member's epochs are dense, ordered, and one sequence with every other
        // region's.
        for (&node, log) in members {
            let epochs = match epochs_of(log) {
                Ok(epochs) => epochs,
                Err(problem) => {
                    problems.push(format!("{region}: node {node}: {problem}"));
                    continue;
                }
            };
            for pair in epochs.windows(2) {
                if pair[1].0 != pair[0].0 + 1 {
                    problems.push(format!(
                        "{region}: node {node} holds epoch {} after epoch {}",
                        pair[1].0, pair[0].0
                    ));
                }
                if pair[1].1.previous_watermark != Some(pair[0].1.watermark) {
                    problems.push(format!(
                        "{region}: node {node}: epoch {} starts at {:?}, epoch {} ended at {:?}",
                        pair[1].0, pair[1].1.previous_watermark, pair[0].0, pair[0].1.watermark
                    ));
                }
            }
            for (number, epoch) in &epochs {
                problems.extend(
                    check_epoch_order(*number, epoch)
                        .into_iter()
                        .map(|problem| format!("{region}: node {node}: {problem}")),
                );
            }
            match &reference {
                None => reference = Some((node, epochs)),
                Some((reference_node, reference_epochs)) => {
                    let by_number: BTreeMap<u64, &EpochInLog> = reference_epochs
                        .iter()
                        .map(|(number, epoch)| (*number, epoch))
                        .collect();
                    for (number, epoch) in &epochs {
                        if let Some(other) = by_number.get(number)
                            && *other != epoch
                        {
                            problems.push(format!(
                                "{region}: node {node} holds epoch {number} unlike node \
                                 {reference_node}"
                            ));
                        }
                    }
                }
            }
        }
    }
    // Every acknowledged call is at its acknowledged position in its region's log (while the
    // log retains it), as the kind of entry its scope makes; every acknowledged global call is
    // sealed, and in the log of every member of every region that holds its epoch whole.
    let held: Vec<(String, NodeId, SealedInLog)> = logs
        .iter()
        .flat_map(|(region, members)| {
            members
                .iter()
                .map(|(&node, log)| (region.clone(), node, sealed_in_log(log)))
        })
        .collect();
    let mut skipped_calls: BTreeSet<(u64, u64)> = BTreeSet::new();
    for (&(client, sequence), call) in observer.calls() {
        let Some(position) = call.position else {
            continue;
        };
        let Some(members) = logs.get(&call.region) else {
            problems.push(format!(
                "c{client} s{sequence}: its region {} is not in the final logs",
                call.region
            ));
            continue;
        };
        for (&node, log) in members {
            if position < log.first_retained_position() {
                // Truncated below a checkpoint or released: nothing left to compare.
                continue;
            }
            let Some(stored) = log.cached_record(position) else {
                problems.push(format!(
                    "c{client} s{sequence} ({}) acknowledged at position {position}, which node \
                     {node} does not hold (next position {})",
                    call.region,
                    log.next_position()
                ));
                continue;
            };
            let matches = match (&stored.entry, call.scope) {
                (LogEntry::Regional(record), Scope::Regional)
                | (LogEntry::SequencedGlobal { record, .. }, Scope::Global) => {
                    record.client_id.get() == client && record.request_sequence.get() == sequence
                }
                // Sealed in epochs the region skipped (no log held them any longer): answered
                // at the skip, and sealed in the other regions' logs.
                (LogEntry::EpochSealed { skipped_from, .. }, Scope::Global)
                    if *skipped_from > 0 =>
                {
                    skipped_calls.insert((client, sequence));
                    observer.sealed_at.contains_key(&(client, sequence))
                }
                _ => false,
            };
            if !matches {
                problems.push(format!(
                    "c{client} s{sequence} ({}, {:?}) acknowledged at position {position}, where \
                     node {node} holds {:?} (acknowledged call lost)",
                    call.region, call.scope, stored.entry
                ));
            }
        }
        if call.scope != Scope::Global {
            continue;
        }
        let Some(&(epoch, _)) = observer.sealed_at.get(&(client, sequence)) else {
            problems.push(format!(
                "c{client} s{sequence} ({}) acknowledged, but no region appended it sealed",
                call.region
            ));
            continue;
        };
        for (region, node, sealed) in &held {
            let missing = match sealed.epochs {
                // Not appended yet: every region must have appended the epoch by the end.
                Some((_, last)) if epoch > last => true,
                Some((first, _)) if epoch >= first => !sealed.calls.contains(&(client, sequence)),
                // Before the epochs the log holds whole (truncated or skipped), or none held.
                Some(_) => false,
                None => sealed.next_epoch <= epoch,
            };
            if missing {
                problems.push(format!(
                    "c{client} s{sequence} ({}) acknowledged and sealed in epoch {epoch}, but not \
                     in the log of node {node} ({region}), which holds epochs {:?} whole",
                    call.region, sealed.epochs
                ));
            }
        }
    }
    problems
}

/// The sealed calls of one log and the epochs it holds whole.
struct SealedInLog {
    /// The calls sealed in the epochs the log holds whole.
    calls: BTreeSet<(u64, u64)>,
    /// The first and last epoch the log holds whole, none when it holds none.
    epochs: Option<(u64, u64)>,
    /// The epoch the log appends next.
    next_epoch: u64,
}

fn sealed_in_log(log: &RegionLog) -> SealedInLog {
    let epochs = epochs_of(log).unwrap_or_default();
    SealedInLog {
        calls: epochs
            .iter()
            .flat_map(|(_, epoch)| epoch.records.iter())
            .map(|record| (record.client_id.get(), record.request_sequence.get()))
            .collect(),
        epochs: epochs
            .first()
            .zip(epochs.last())
            .map(|((first, _), (last, _))| (*first, *last)),
        next_epoch: log.global().epochs_applied_through() + 1,
    }
}

/// The calls of `observer` that were acknowledged, per scope, for coverage checks.
pub fn acknowledged_by_scope(observer: &GlobalObserver) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for call in observer.calls().values() {
        if call.position.is_some() {
            let scope = match call.scope {
                Scope::Global => "global",
                Scope::Regional => "regional",
            };
            *counts.entry(scope).or_insert(0) += 1;
        }
    }
    counts
}
