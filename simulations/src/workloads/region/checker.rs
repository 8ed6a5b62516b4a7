//! Checkers of the region workload. They sit beside the nodes, never inside: the observer
//! sees what nodes hand their subscribers and what clients are told, and the final check
//! reads every member's log after the heal.
//!
//! What is checked (docs/design.md section 6, "durability" and "one order"; section 1,
//! "exactly once"):
//! - during the run: a position holds the same record on every member that applies it, a
//!   (client, sequence) pair is applied at one position only, and every acknowledgement of a
//!   pair names the same position;
//! - after the heal: every acknowledged record is in every member's log at its acknowledged
//!   position, every member's log is a prefix of the longest, no pair appears twice in any log,
//!   and all members hold the same log.

use std::collections::{BTreeMap, BTreeSet};

use dsss_region_node::{LogEntry, LogEntryKind, LogEvent, RegionLog};

use crate::network::NodeId;

/// The most violations kept with their text; later ones are only counted.
pub const VIOLATIONS_KEPT_MAX: usize = 20;

/// What the checkers saw during a run.
#[derive(Debug, Default)]
pub struct RegionObserver {
    /// Acknowledged (client, sequence) pairs and their positions.
    acknowledged: BTreeMap<(u64, u64), u64>,
    /// The entry first seen applied at each position, on any member.
    applied_at: BTreeMap<u64, LogEntry>,
    /// The position each pair was applied at.
    position_of: BTreeMap<(u64, u64), u64>,
    /// Members that restored a snapshot, with how many times.
    snapshots_restored: BTreeMap<NodeId, u64>,
    /// Records applied, summed over members.
    pub records_applied: u64,
    /// Acknowledgements received by clients (duplicates included).
    pub acknowledgements: u64,
    /// Calls retried by clients.
    pub retries: u64,
    /// Calls sent again after their acknowledgement, to check exactly-once.
    pub deliberate_duplicates: u64,
    /// Raft messages a node refused (decoding or stepping).
    pub raft_messages_refused: u64,
    /// Times a node fenced itself because its clock was beyond the bound from its peers'.
    pub clock_fences: u64,
    violation_count: u64,
    violations: Vec<String>,
}

impl RegionObserver {
    /// Records a broken guarantee.
    pub fn violation(&mut self, text: String) {
        self.violation_count += 1;
        if self.violations.len() < VIOLATIONS_KEPT_MAX {
            self.violations.push(text);
        }
    }

    /// How many guarantees were broken.
    pub fn violation_count(&self) -> u64 {
        self.violation_count
    }

    /// The first violations, described.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Every acknowledged pair and its position.
    pub fn acknowledged(&self) -> &BTreeMap<(u64, u64), u64> {
        &self.acknowledged
    }

    /// How many snapshots `node` restored.
    pub fn snapshots_restored(&self, node: NodeId) -> u64 {
        self.snapshots_restored.get(&node).copied().unwrap_or(0)
    }

    /// Snapshots restored by all members.
    pub fn snapshots_restored_total(&self) -> u64 {
        self.snapshots_restored.values().sum()
    }

    /// A member applied a record or restored a snapshot.
    pub fn observe_log_event(&mut self, node: NodeId, event: &LogEvent) {
        match event {
            LogEvent::Applied { position, entry } => {
                self.records_applied += 1;
                match self.applied_at.get(position) {
                    Some(first) if first != entry => self.violation(format!(
                        "node {node} applied {entry:?} at position {position}, where another \
                         member applied {first:?}"
                    )),
                    Some(_) => {}
                    None => {
                        self.applied_at.insert(*position, entry.clone());
                    }
                }
                // A call is applied once where it was proposed (regional or pending); a
                // sealed global call reappears once more, as a sequenced record.
                let Some(record) = proposed_record(entry) else {
                    return;
                };
                let pair = (record.client_id.get(), record.request_sequence.get());
                match self.position_of.get(&pair) {
                    Some(first) if first != position => self.violation(format!(
                        "node {node} applied c{} s{} at position {position}, but it was \
                         applied at {first} before (applied twice)",
                        pair.0, pair.1
                    )),
                    Some(_) => {}
                    None => {
                        self.position_of.insert(pair, *position);
                    }
                }
            }
            LogEvent::Restored { .. } => {
                *self.snapshots_restored.entry(node).or_default() += 1;
            }
        }
    }

    /// A client was told that its call is at `position`.
    pub fn observe_ack(&mut self, client: u64, sequence: u64, position: u64) {
        self.acknowledgements += 1;
        match self.acknowledged.get(&(client, sequence)) {
            Some(&first) if first != position => self.violation(format!(
                "client {client} sequence {sequence} acknowledged at position {position}, \
                 and at {first} before"
            )),
            Some(_) => {}
            None => {
                self.acknowledged.insert((client, sequence), position);
            }
        }
    }
}

/// The final check over every member's log: returns each broken guarantee, described.
pub fn check_logs(
    logs: &BTreeMap<NodeId, &RegionLog>,
    acknowledged: &BTreeMap<(u64, u64), u64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let Some((&longest_node, longest)) = logs
        .iter()
        .max_by_key(|(node, log)| (log.next_position(), std::cmp::Reverse(**node)))
    else {
        return vec!["no member to check".to_owned()];
    };
    for (&node, log) in logs {
        check_one_log(node, log, &mut problems);
        // A prefix of the longest: equal records wherever both hold a position.
        for log_record in log.cached_records() {
            if let Some(other) = longest.cached_record(log_record.position)
                && other.entry != log_record.entry
            {
                problems.push(format!(
                    "node {node} position {} differs from node {longest_node}",
                    log_record.position
                ));
                break;
            }
        }
        if log.next_position() == longest.next_position() && log.digest() != longest.digest() {
            problems.push(format!(
                "node {node} and node {longest_node} reach position {} with different \
                 histories (digests differ)",
                log.next_position()
            ));
        }
        for (&(client, sequence), &position) in acknowledged {
            if position >= log.next_position() {
                problems.push(format!(
                    "node {node}: acknowledged c{client} s{sequence} at position {position} is \
                     beyond its log (next position {})",
                    log.next_position()
                ));
                continue;
            }
            let Some(stored) = log.cached_record(position) else {
                continue;
            };
            let held = stored
                .entry
                .record()
                .map(|record| (record.client_id.get(), record.request_sequence.get()));
            if held != Some((client, sequence)) {
                problems.push(format!(
                    "node {node}: position {position} holds {held:?} (client, sequence), but \
                     c{client} s{sequence} was acknowledged there"
                ));
            }
        }
    }
    let first = logs.values().next().expect("checked non-empty above");
    for (&node, log) in logs {
        if log.next_position() != first.next_position() || log.digest() != first.digest() {
            problems.push(format!(
                "after the heal node {node} holds positions up to {} (digest {:016x}), others \
                 up to {} (digest {:016x})",
                log.last_position(),
                log.digest(),
                first.last_position(),
                first.digest()
            ));
        }
    }
    problems
}

/// Dense positions and no pair twice, in one member's log.
fn check_one_log(node: NodeId, log: &RegionLog, problems: &mut Vec<String>) {
    let mut pairs = BTreeSet::new();
    let mut expected = log.first_retained_position();
    for log_record in log.cached_records() {
        if log_record.position != expected {
            problems.push(format!(
                "node {node}: position {} follows {} (not dense)",
                log_record.position,
                expected - 1
            ));
        }
        expected = log_record.position + 1;
        let Some(record) = proposed_record(&log_record.entry) else {
            continue;
        };
        let pair = (record.client_id.get(), record.request_sequence.get());
        if !pairs.insert(pair) {
            problems.push(format!(
                "node {node}: c{} s{} appears twice in the log",
                pair.0, pair.1
            ));
        }
    }
    if expected != log.next_position() {
        problems.push(format!(
            "node {node}: the log ends at {} but the next position is {}",
            expected - 1,
            log.next_position()
        ));
    }
}

/// The record of an entry made by a proposal in this region (regional or pending global).
fn proposed_record(entry: &LogEntry) -> Option<&dsss_wire::Record> {
    match entry.kind() {
        LogEntryKind::Regional | LogEntryKind::PendingGlobal => entry.record(),
        LogEntryKind::SequencedGlobal | LogEntryKind::EpochSealed => None,
    }
}
