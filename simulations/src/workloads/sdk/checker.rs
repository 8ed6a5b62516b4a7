//! The checks of the sdk workload that use the positions the system names (docs/design.md
//! section 6). A regional object is one object per region, each checked on its own. They sit
//! beside the production code and read only what the instances recorded and the final region
//! logs; [`super::exhaustive`] checks small histories without positions.
//!
//! - One order: the object's records form one total order, by (epoch number, index in epoch)
//!   for a global object and by region log position for a regional one;
//!   every replica applied a prefix of it, in order, each record once; replicas that made a
//!   checkpoint after the same count of records hold the same state hash, and so does a
//!   reference replica fed the order.
//! - Sequential consistency: every client's calls stand in the order in program order; each
//!   call's result equals the result a reference replica (a fresh `Replica`, fed the order)
//!   gives at that place; every read equals the reference state at the prefix it saw; one
//!   client's reads never go back, see its own completed calls, and its later calls come after
//!   what it read.
//! - The workload's invariant on every read (for the bank: the total is the sum of the opened
//!   balances).
//! - Linearizable `sync()`-reads: a read after a barrier sees every call that completed, in
//!   simulated time, before the barrier began.
//! - Durability: every acknowledged or completed call is in the order; every replica applied
//!   the whole order by the end; every member's final log holds the object's records in that
//!   order.

use std::collections::BTreeMap;

use dsss::MethodError;
use dsss::replica::{RecordRef, Replica, ReplicaConfig};
use dsss_region_node::{LogEntry, RegionLog};
use dsss_wire::Scope;

use super::ObjectWorkload;
use super::history::{CallSpec, Operation, OrderKey, SdkHistory};
use crate::network::NodeId;

/// The most problems one check reports (the rest would repeat the first).
pub const PROBLEMS_PER_CHECK_MAX: usize = 16;

/// One record of the total order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderedRecord {
    /// Its place as the log names it.
    pub order: OrderKey,
    /// The caller.
    pub client_id: u64,
    /// The caller's sequence.
    pub request_sequence: u64,
    /// The call.
    pub call: CallSpec,
}

/// Problems found, bounded.
#[derive(Debug, Default)]
struct Problems {
    found: Vec<String>,
    count: usize,
}

impl Problems {
    fn push(&mut self, problem: String) {
        self.count += 1;
        if self.found.len() < PROBLEMS_PER_CHECK_MAX {
            self.found.push(problem);
        }
    }

    fn into_vec(mut self, check: &str) -> Vec<String> {
        if self.count > self.found.len() {
            self.found
                .push(format!("{check}: ... {} problems in all", self.count));
        }
        self.found
    }
}

/// The total order of the object's records: every record any replica applied, by its
/// (epoch, index). Returns the order and the problems: two replicas that applied different
/// records at one place, a replica that did not apply a prefix of the order in order, a call
/// that stands twice in the order.
pub fn total_order<R, V>(history: &SdkHistory<R, V>) -> (Vec<OrderedRecord>, Vec<String>) {
    let mut problems = Problems::default();
    let mut by_key: BTreeMap<OrderKey, (NodeId, OrderedRecord)> = BTreeMap::new();
    for (&client, replica) in &history.replicas {
        for applied in &replica.applied {
            let record = OrderedRecord {
                order: applied.order,
                client_id: applied.client_id,
                request_sequence: applied.request_sequence,
                call: applied.call.clone(),
            };
            match by_key.get(&applied.order) {
                Some((first_client, first)) if *first != record => problems.push(format!(
                    "one order: at epoch {} index {} the replica of client {client} applied c{} \
                     s{}, the replica of client {first_client} applied c{} s{}",
                    applied.order.0,
                    applied.order.1,
                    record.client_id,
                    record.request_sequence,
                    first.client_id,
                    first.request_sequence
                )),
                Some(_) => {}
                None => {
                    by_key.insert(applied.order, (client, record));
                }
            }
        }
    }
    let order: Vec<OrderedRecord> = by_key.into_values().map(|(_, record)| record).collect();
    let mut places: BTreeMap<(u64, u64), OrderKey> = BTreeMap::new();
    for record in &order {
        let call = (record.client_id, record.request_sequence);
        if let Some(first) = places.insert(call, record.order) {
            problems.push(format!(
                "exactly once: c{} s{} stands at {:?} and at {:?} in the order",
                call.0, call.1, first, record.order
            ));
        }
    }
    for (&client, replica) in &history.replicas {
        for (index, applied) in replica.applied.iter().enumerate() {
            let expected = order.get(index).map(|record| record.order);
            if expected != Some(applied.order) || applied.records_applied != index as u64 + 1 {
                problems.push(format!(
                    "one order: the replica of client {client} ({}) applied {:?} as its record \
                     {} (count {}), where the order holds {expected:?}: it skipped or repeated \
                     a record",
                    replica.region,
                    applied.order,
                    index + 1,
                    applied.records_applied
                ));
                break;
            }
        }
    }
    (order, problems.into_vec("one order"))
}

/// What a reference replica fed the order gives.
pub struct Replay<W: ObjectWorkload> {
    /// The outcome of each call, by (client, sequence).
    pub outcomes: BTreeMap<(u64, u64), Result<Vec<u8>, MethodError>>,
    /// The state hash at each count of records where a checkpoint fell.
    pub checkpoint_hashes: BTreeMap<u64, [u8; 32]>,
    /// Problems of the reads: a value unlike the reference state at the read's prefix.
    pub read_problems: Vec<String>,
    /// The reference copy after the whole order.
    pub replica: Replica<W::Object>,
}

/// Feeds `order` to a fresh replica with checkpoints every `checkpoint_every_records`, and
/// evaluates every read of `history` at the prefix it saw.
pub fn replay<W: ObjectWorkload>(
    workload: &W,
    history: &SdkHistory<W::Read, W::Value>,
    order: &[OrderedRecord],
    checkpoint_every_records: u64,
) -> Replay<W> {
    let mut problems = Problems::default();
    let mut reads_at: BTreeMap<u64, Vec<(NodeId, usize)>> = BTreeMap::new();
    for (&client, client_history) in &history.clients {
        for (index, operation) in client_history.operations.iter().enumerate() {
            if let Operation::Read(read) = operation {
                reads_at
                    .entry(read.records_applied)
                    .or_default()
                    .push((client, index));
            }
        }
    }
    let config = ReplicaConfig {
        checkpoint_every_records,
        ..ReplicaConfig::default()
    };
    let mut replica = Replica::<W::Object>::new(workload.object_id(), config);
    let mut outcomes = BTreeMap::new();
    let mut checkpoint_hashes = BTreeMap::new();
    let check_reads_at = |count: u64, replica: &Replica<W::Object>, problems: &mut Problems| {
        for &(client, index) in reads_at.get(&count).into_iter().flatten() {
            let Some(Operation::Read(read)) = history
                .clients
                .get(&client)
                .and_then(|client_history| client_history.operations.get(index))
            else {
                continue;
            };
            let expected = workload.read(replica.object(), &read.read);
            if expected != read.value {
                problems.push(format!(
                    "sequential consistency: client {client} read {:?} = {:?} after {count} \
                     records, the order gives {expected:?} there",
                    read.read, read.value
                ));
            }
        }
    };
    check_reads_at(0, &replica, &mut problems);
    for (index, record) in order.iter().enumerate() {
        let applied = replica.handle_record(
            index as u64 + 1,
            RecordRef {
                client_id: record.client_id,
                request_sequence: record.request_sequence,
                method_id: record.call.method_id,
                arguments: &record.call.arguments,
            },
        );
        match applied {
            Ok(applied) => {
                outcomes.insert((record.client_id, record.request_sequence), applied.outcome);
            }
            Err(stopped) => {
                problems.push(format!("the reference replica stopped: {stopped}"));
                break;
            }
        }
        if let Some(checkpoint) = replica.poll_checkpoint() {
            checkpoint_hashes.insert(replica.records_applied(), checkpoint.state_hash);
        }
        check_reads_at(index as u64 + 1, &replica, &mut problems);
    }
    if let Some((&count, _)) = reads_at.range(order.len() as u64 + 1..).next() {
        problems.push(format!(
            "sequential consistency: a read saw {count} records, the order holds only {}",
            order.len()
        ));
    }
    Replay {
        outcomes,
        checkpoint_hashes,
        read_problems: problems.into_vec("reads"),
        replica,
    }
}

/// Replicas that made a checkpoint after the same count of records hold the same state hash,
/// and the reference replica holds it too.
pub fn check_checkpoint_hashes<R, V>(
    history: &SdkHistory<R, V>,
    reference: &BTreeMap<u64, [u8; 32]>,
) -> Vec<String> {
    let mut problems = Problems::default();
    for (&client, replica) in &history.replicas {
        for (count, hash) in &replica.checkpoint_hashes {
            match reference.get(count) {
                Some(expected) if expected == hash => {}
                Some(_) => problems.push(format!(
                    "one order: the replica of client {client} ({}) hashes {} after {count} \
                     records, the reference replica {}",
                    replica.region,
                    short_hash(hash),
                    short_hash(&reference[count])
                )),
                None => problems.push(format!(
                    "one order: the replica of client {client} made a checkpoint after {count} \
                     records, the reference replica did not get that far or made none there"
                )),
            }
        }
    }
    problems.into_vec("checkpoint hashes")
}

fn short_hash(hash: &[u8; 32]) -> String {
    hash[..6].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Program order, results, the workload's invariant and real-time order of `sync()`-reads,
/// against the order and its replay.
pub fn check_clients<W: ObjectWorkload>(
    workload: &W,
    history: &SdkHistory<W::Read, W::Value>,
    order: &[OrderedRecord],
    replay: &Replay<W>,
) -> Vec<String> {
    let mut problems = Problems::default();
    let place: BTreeMap<(u64, u64), usize> = order
        .iter()
        .enumerate()
        .map(|(index, record)| ((record.client_id, record.request_sequence), index))
        .collect();
    for (&client, client_history) in &history.clients {
        // The longest prefix of the order this client has seen (its completed calls and its
        // reads), and the place of its last call.
        let mut seen: u64 = 0;
        let mut last_call: Option<usize> = None;
        for operation in &client_history.operations {
            match operation {
                Operation::Call(call) => {
                    let key = (client, call.sequence);
                    let Some(&index) = place.get(&key) else {
                        if call.completion.is_some() || call.acknowledged.is_some() {
                            problems.push(format!(
                                "durability: c{client} s{} was acknowledged but is not in the \
                                 order",
                                call.sequence
                            ));
                        }
                        continue;
                    };
                    if order[index].call != call.call {
                        problems.push(format!(
                            "c{client} s{} stands in the order as method {} ({} bytes), the \
                             client called method {} ({} bytes)",
                            call.sequence,
                            order[index].call.method_id,
                            order[index].call.arguments.len(),
                            call.call.method_id,
                            call.call.arguments.len()
                        ));
                    }
                    if last_call.is_some_and(|last| index <= last) {
                        problems.push(format!(
                            "program order: c{client} s{} stands at place {} of the order, \
                             before the client's earlier call at place {}",
                            call.sequence,
                            index + 1,
                            last_call.unwrap_or(0) + 1
                        ));
                    }
                    if (index as u64) < seen {
                        problems.push(format!(
                            "program order: c{client} s{} stands at place {} of the order, \
                             though the client had already seen {seen} records",
                            call.sequence,
                            index + 1
                        ));
                    }
                    last_call = Some(index);
                    let Some(completion) = &call.completion else {
                        continue;
                    };
                    if completion.records_applied != index as u64 + 1
                        || completion.order != order[index].order
                    {
                        problems.push(format!(
                            "c{client} s{} completed as record {} at {:?}, the order holds it \
                             at place {} {:?}",
                            call.sequence,
                            completion.records_applied,
                            completion.order,
                            index + 1,
                            order[index].order
                        ));
                    }
                    let expected = replay.outcomes.get(&key);
                    if expected != Some(&completion.outcome) {
                        problems.push(format!(
                            "sequential consistency: c{client} s{} (method {}) returned {}, a \
                             replay of the order returns {}",
                            call.sequence,
                            call.call.method_id,
                            describe_outcome(&completion.outcome),
                            expected.map_or("nothing".to_string(), describe_outcome)
                        ));
                    }
                    seen = seen.max(completion.records_applied);
                }
                Operation::Read(read) => {
                    if read.records_applied < seen {
                        problems.push(format!(
                            "sequential consistency: client {client} read {:?} after {} \
                             records, though it had seen {seen} before",
                            read.read, read.records_applied
                        ));
                    }
                    seen = seen.max(read.records_applied);
                    if let Err(problem) = workload.check_read(&read.read, &read.value) {
                        problems.push(format!(
                            "invariant: client {client} read {:?} = {:?} after {} records: \
                             {problem}",
                            read.read, read.value, read.records_applied
                        ));
                    }
                }
            }
        }
    }
    for problem in check_sync_reads(history, &place) {
        problems.push(problem);
    }
    problems.into_vec("clients")
}

/// A `sync()`-read sees every call that completed (was applied by its caller's replica or
/// acknowledged to it) before the barrier began.
fn check_sync_reads<R: std::fmt::Debug, V>(
    history: &SdkHistory<R, V>,
    place: &BTreeMap<(u64, u64), usize>,
) -> Vec<String> {
    let mut completed: Vec<(crate::time::SimTime, u64, (u64, u64))> = Vec::new();
    for (client, call) in history.calls() {
        let finished_at = match (&call.completion, call.acknowledged) {
            (Some(completion), Some((acknowledged_at, _))) => {
                Some(completion.completed_at.min(acknowledged_at))
            }
            (Some(completion), None) => Some(completion.completed_at),
            (None, Some((acknowledged_at, _))) => Some(acknowledged_at),
            (None, None) => None,
        };
        let key = (client, call.sequence);
        if let (Some(at), Some(&index)) = (finished_at, place.get(&key)) {
            completed.push((at, index as u64 + 1, key));
        }
    }
    completed.sort();
    // The longest prefix that the calls completed strictly before each time require.
    let mut required: Vec<(crate::time::SimTime, u64, (u64, u64))> = Vec::new();
    let mut longest = (0, (0, 0));
    for (at, needed, key) in completed {
        if needed > longest.0 {
            longest = (needed, key);
        }
        required.push((at, longest.0, longest.1));
    }
    let mut problems = Vec::new();
    for (client, read) in history.reads() {
        let Some(barrier) = read.sync else {
            continue;
        };
        let before = required.partition_point(|(at, _, _)| *at < barrier.began_at);
        if before == 0 {
            continue;
        }
        let (at, needed, key) = required[before - 1];
        if read.records_applied < needed {
            problems.push(format!(
                "linearizability: client {client} read {:?} after a sync() begun at {}, seeing \
                 {} records, but c{} s{} completed at {at} as record {needed}",
                read.read, barrier.began_at, read.records_applied, key.0, key.1
            ));
        }
    }
    problems
}

fn describe_outcome(outcome: &Result<Vec<u8>, MethodError>) -> String {
    match outcome {
        Ok(bytes) => format!("Ok({bytes:?})"),
        Err(error) => format!("Err({error})"),
    }
}

/// Every replica applied the whole order by the end.
pub fn check_replicas_complete<R, V>(
    history: &SdkHistory<R, V>,
    order: &[OrderedRecord],
) -> Vec<String> {
    let mut problems = Problems::default();
    for (&client, replica) in &history.replicas {
        if replica.records_applied != order.len() as u64 {
            problems.push(format!(
                "durability: the replica of client {client} ({}) applied {} of the {} records \
                 of the order",
                replica.region,
                replica.records_applied,
                order.len()
            ));
        }
    }
    problems.into_vec("replicas")
}

/// Every member's final log holds the object's records of `scope` in the order (sequenced
/// records of a global object, records of a regional one), and no record of the object of the
/// other scope. A member that no longer keeps the start of its log must hold the end of the
/// order. For a regional object, `logs` holds its region's members only.
pub fn check_final_logs(
    object_id: &str,
    scope: Scope,
    order: &[OrderedRecord],
    logs: &BTreeMap<String, BTreeMap<NodeId, &RegionLog>>,
) -> Vec<String> {
    let mut problems = Problems::default();
    let place: BTreeMap<OrderKey, usize> = order
        .iter()
        .enumerate()
        .map(|(index, record)| (record.order, index))
        .collect();
    for (region, members) in logs {
        for (&node, log) in members {
            let mut held: Vec<(u64, OrderKey, u64, u64)> = Vec::new();
            for stored in log.cached_records() {
                let (key, record, record_scope) = match &stored.entry {
                    LogEntry::SequencedGlobal {
                        epoch_number,
                        index_in_epoch,
                        record,
                    } => ((*epoch_number, *index_in_epoch), record, Scope::Global),
                    LogEntry::Regional(record) => ((stored.position, 0), record, Scope::Regional),
                    _ => continue,
                };
                if record.object_id.as_str() != object_id {
                    continue;
                }
                if record_scope != scope {
                    problems.push(format!(
                        "{region} node {node}: position {} holds a {record_scope:?} record of \
                         the {scope:?} object",
                        stored.position
                    ));
                    continue;
                }
                held.push((
                    stored.position,
                    key,
                    record.client_id.get(),
                    record.request_sequence.get(),
                ));
            }
            let offset = if log.first_retained_position() == 1 {
                0
            } else {
                match held.first() {
                    Some((_, key, _, _)) => place.get(key).copied().unwrap_or(order.len()),
                    None => order.len(),
                }
            };
            for (index, &(position, key, client, sequence)) in held.iter().enumerate() {
                let expected = order.get(offset + index);
                let matches = expected.is_some_and(|expected| {
                    expected.order == key
                        && expected.client_id == client
                        && expected.request_sequence == sequence
                });
                if !matches {
                    problems.push(format!(
                        "{region} node {node}: position {position} holds c{client} s{sequence} \
                         at {key:?} as the object's record {}, the order holds {:?} there",
                        offset + index + 1,
                        expected.map(|expected| (
                            expected.order,
                            expected.client_id,
                            expected.request_sequence
                        ))
                    ));
                    break;
                }
            }
            if offset + held.len() != order.len() {
                problems.push(format!(
                    "durability: {region} node {node} holds the object's records {}..={} of \
                     the {} of the order",
                    offset + 1,
                    offset + held.len(),
                    order.len()
                ));
            }
        }
    }
    problems.into_vec("final logs")
}

/// Every check of this module, in one list. A regional object is one object per region: each
/// region's clients, replicas and logs are checked on their own, and the problems name the
/// region.
pub fn check_all<W: ObjectWorkload>(
    workload: &W,
    history: &SdkHistory<W::Read, W::Value>,
    checkpoint_every_records: u64,
    logs: &BTreeMap<String, BTreeMap<NodeId, &RegionLog>>,
) -> Vec<String> {
    match workload.scope() {
        Scope::Global => check_object(
            workload,
            workload.object_id(),
            history,
            checkpoint_every_records,
            logs,
        ),
        Scope::Regional => {
            let mut problems = Vec::new();
            for region in history.regions() {
                let region_logs: BTreeMap<String, BTreeMap<NodeId, &RegionLog>> = logs
                    .get(region)
                    .map(|members| (region.to_string(), members.clone()))
                    .into_iter()
                    .collect();
                let found = check_object(
                    workload,
                    &workload.object_id_in(region),
                    &history.in_region(region),
                    checkpoint_every_records,
                    &region_logs,
                );
                problems.extend(
                    found
                        .into_iter()
                        .map(|problem| format!("region {region}: {problem}")),
                );
            }
            problems
        }
    }
}

/// Every check of this module on the history of one object, named `object_id` in the logs.
fn check_object<W: ObjectWorkload>(
    workload: &W,
    object_id: &str,
    history: &SdkHistory<W::Read, W::Value>,
    checkpoint_every_records: u64,
    logs: &BTreeMap<String, BTreeMap<NodeId, &RegionLog>>,
) -> Vec<String> {
    let (order, mut problems) = total_order(history);
    let replay = replay(workload, history, &order, checkpoint_every_records);
    problems.extend(replay.read_problems.iter().cloned());
    problems.extend(check_checkpoint_hashes(history, &replay.checkpoint_hashes));
    problems.extend(check_clients(workload, history, &order, &replay));
    problems.extend(check_replicas_complete(history, &order));
    problems.extend(check_final_logs(object_id, workload.scope(), &order, logs));
    problems
}
