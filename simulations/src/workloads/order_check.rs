//! A position-free check that the histories of several clients over several registers fit one
//! sequentially consistent order, with linearizable `sync()` reads (docs/design.md section 6).
//!
//! The workload makes it decidable without trusting anything the system reports: every write
//! writes a value unique in the run and returns the value it replaced (every register starts
//! at 0), so each register's writes form one chain fixed by the results alone. With the write
//! order of every register known, a history is sequentially consistent exactly when this graph
//! over its operations has no cycle:
//! - program order: each client's operations in the order it made them;
//! - write order: the write of `p` before the write that replaced `p`;
//! - reads-from: the write of `v` before every read of `v`;
//! - anti-dependency: a read of `v` before the write that replaced `v`;
//! - real time, for reads after a `sync()` barrier: every write that completed before the
//!   barrier began comes before the read, whatever register it wrote.
//!
//! A write that failed (its outcome unknown) counts only when some read or some write shows
//! its value. It may have taken effect after its caller moved on, so program order does not
//! place it, and its place in its register's chain is known only from above: fewer edges
//! involve it (the check stays sound: every edge it adds holds in every correct execution).
//!
//! Used by the session workload's runs in the simulator and by the multi-process tests.

use std::collections::{BTreeMap, VecDeque};

/// The most operations one check takes; larger inputs are refused.
pub const OPERATIONS_MAX: usize = 500_000;

/// One operation of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A write of `value` to `object`; `replaced` is what it returned, `None` when the call
    /// failed and its effect is unknown.
    Write {
        /// The register.
        object: String,
        /// The value written (unique in the run, never 0).
        value: u64,
        /// The value it replaced.
        replaced: Option<u64>,
        /// When the call began, on a clock every client shares.
        began_at: u64,
        /// When it returned.
        ended_at: u64,
    },
    /// A read of `object` that returned `value`; `synced` when it followed a `sync()` barrier
    /// that began at `began_at`.
    Read {
        /// The register.
        object: String,
        /// The value read.
        value: u64,
        /// After a barrier (linearizable).
        synced: bool,
        /// When the read (with its barrier) began.
        began_at: u64,
        /// When it returned.
        ended_at: u64,
    },
}

/// One client's operations in program order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHistory {
    /// How the client is named in reports.
    pub client: String,
    /// Its operations, in the order it made them.
    pub operations: Vec<Operation>,
}

/// Where an operation sits: client index and index in its history.
type Place = (usize, usize);

/// Checks `clients`; the error names what breaks (a fork, a value nobody wrote, or a cycle of
/// operations that no single order can satisfy).
pub fn check(clients: &[ClientHistory]) -> Result<(), String> {
    let total: usize = clients.iter().map(|client| client.operations.len()).sum();
    if total > OPERATIONS_MAX {
        return Err(format!(
            "{total} operations are more than the check takes ({OPERATIONS_MAX})"
        ));
    }
    let describe = |(client, index): Place| {
        let history = &clients[client];
        format!(
            "{} op {index}: {}",
            history.client,
            describe_operation(&history.operations[index])
        )
    };

    // The writer of every value, per register.
    let mut writer: BTreeMap<(&str, u64), Place> = BTreeMap::new();
    for (client_index, client) in clients.iter().enumerate() {
        for (index, operation) in client.operations.iter().enumerate() {
            if let Operation::Write { object, value, .. } = operation {
                if *value == 0 {
                    return Err(format!(
                        "{} writes 0, the initial value",
                        describe((client_index, index))
                    ));
                }
                if let Some(earlier) =
                    writer.insert((object.as_str(), *value), (client_index, index))
                {
                    return Err(format!(
                        "value {value} is written twice: {} and {}",
                        describe(earlier),
                        describe((client_index, index))
                    ));
                }
            }
        }
    }
    // The successor of every value: the write that replaced it. Two are a fork.
    let mut successor: BTreeMap<(&str, u64), Place> = BTreeMap::new();
    for (client_index, client) in clients.iter().enumerate() {
        for (index, operation) in client.operations.iter().enumerate() {
            if let Operation::Write {
                object,
                replaced: Some(replaced),
                ..
            } = operation
            {
                if *replaced != 0 && !writer.contains_key(&(object.as_str(), *replaced)) {
                    return Err(format!(
                        "{} replaced {replaced}, which no write of {object} wrote",
                        describe((client_index, index))
                    ));
                }
                if let Some(other) =
                    successor.insert((object.as_str(), *replaced), (client_index, index))
                {
                    return Err(format!(
                        "fork in {object}: two writes replaced {replaced}: {} and {}",
                        describe(other),
                        describe((client_index, index))
                    ));
                }
            }
        }
    }
    // Failed writes count only when something shows their value.
    let mut shown: BTreeMap<(&str, u64), bool> = BTreeMap::new();
    for client in clients {
        for operation in &client.operations {
            match operation {
                Operation::Read { object, value, .. } => {
                    shown.insert((object.as_str(), *value), true);
                }
                Operation::Write {
                    object,
                    replaced: Some(replaced),
                    ..
                } => {
                    shown.insert((object.as_str(), *replaced), true);
                }
                Operation::Write { .. } => {}
            }
        }
    }
    let included = |operation: &Operation| match operation {
        Operation::Write {
            object,
            value,
            replaced: None,
            ..
        } => shown.contains_key(&(object.as_str(), *value)),
        _ => true,
    };

    // Nodes: the included operations, then one node per write in order of completion (the
    // real-time spine that synced reads hang from).
    let mut node_of: BTreeMap<Place, usize> = BTreeMap::new();
    let mut places: Vec<Option<Place>> = Vec::new();
    for (client_index, client) in clients.iter().enumerate() {
        for (index, operation) in client.operations.iter().enumerate() {
            if included(operation) {
                node_of.insert((client_index, index), places.len());
                places.push(Some((client_index, index)));
            }
        }
    }
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); places.len()];
    let add = |edges: &mut Vec<Vec<usize>>, from: usize, to: usize| edges[from].push(to);
    for (client_index, client) in clients.iter().enumerate() {
        let mut previous: Option<usize> = None;
        for (index, operation) in client.operations.iter().enumerate() {
            let Some(&node) = node_of.get(&(client_index, index)) else {
                continue;
            };
            // A failed write may take effect after the client moved on (an attempt still in
            // flight), so program order does not place it.
            let failed = matches!(operation, Operation::Write { replaced: None, .. });
            if !failed {
                if let Some(previous) = previous {
                    add(&mut edges, previous, node);
                }
                previous = Some(node);
            }
            match operation {
                Operation::Write {
                    object,
                    replaced: Some(replaced),
                    ..
                } => {
                    if let Some(earlier) = writer.get(&(object.as_str(), *replaced))
                        && let Some(&earlier) = node_of.get(earlier)
                    {
                        add(&mut edges, earlier, node);
                    }
                }
                Operation::Read { object, value, .. } => {
                    if *value != 0 {
                        let Some(source) = writer.get(&(object.as_str(), *value)) else {
                            return Err(format!(
                                "{} read {value}, which no write of {object} wrote",
                                describe((client_index, index))
                            ));
                        };
                        if let Some(&source) = node_of.get(source) {
                            add(&mut edges, source, node);
                        }
                    }
                    if let Some(next) = successor.get(&(object.as_str(), *value))
                        && let Some(&next) = node_of.get(next)
                    {
                        add(&mut edges, node, next);
                    }
                }
                Operation::Write { .. } => {}
            }
        }
    }
    // Real time: completed writes, by completion time, feed a spine of time nodes; a synced
    // read follows the spine node of the last write that completed before its barrier began.
    let mut completed: Vec<(u64, usize)> = Vec::new();
    let mut synced_reads: Vec<(u64, usize)> = Vec::new();
    for (&place, &node) in &node_of {
        match &clients[place.0].operations[place.1] {
            Operation::Write {
                replaced: Some(_),
                ended_at,
                ..
            } => completed.push((*ended_at, node)),
            Operation::Read {
                synced: true,
                began_at,
                ..
            } => synced_reads.push((*began_at, node)),
            _ => {}
        }
    }
    completed.sort_unstable();
    let spine_start = places.len();
    for (position, (_, write)) in completed.iter().enumerate() {
        places.push(None);
        edges.push(Vec::new());
        let spine = spine_start + position;
        add(&mut edges, *write, spine);
        if position > 0 {
            add(&mut edges, spine - 1, spine);
        }
    }
    for (began_at, read) in synced_reads {
        let before = completed.partition_point(|(ended_at, _)| *ended_at < began_at);
        if before > 0 {
            add(&mut edges, spine_start + before - 1, read);
        }
    }
    match find_cycle(&edges) {
        None => Ok(()),
        Some(cycle) => {
            let steps: Vec<String> = cycle
                .iter()
                .filter_map(|node| places[*node].map(describe))
                .collect();
            let real_time = cycle.iter().any(|node| places[*node].is_none());
            Err(format!(
                "no single order explains these {} operations{}: {}",
                steps.len(),
                if real_time {
                    " (with the real-time order of sync() reads)"
                } else {
                    ""
                },
                steps.join(" -> ")
            ))
        }
    }
}

fn describe_operation(operation: &Operation) -> String {
    match operation {
        Operation::Write {
            object,
            value,
            replaced: Some(replaced),
            ..
        } => format!("write {object} := {value} (replaced {replaced})"),
        Operation::Write { object, value, .. } => {
            format!("write {object} := {value} (failed, outcome unknown)")
        }
        Operation::Read {
            object,
            value,
            synced,
            ..
        } => format!(
            "{} {object} = {value}",
            if *synced { "sync() read" } else { "read" }
        ),
    }
}

/// A shortest cycle through some node that lies on a cycle, or `None` when the graph is
/// acyclic.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    // Kahn's algorithm: what cannot be removed lies on or behind a cycle.
    let mut incoming = vec![0usize; edges.len()];
    for targets in edges {
        for &target in targets {
            incoming[target] += 1;
        }
    }
    let mut ready: VecDeque<usize> = (0..edges.len())
        .filter(|node| incoming[*node] == 0)
        .collect();
    let mut removed = vec![false; edges.len()];
    while let Some(node) = ready.pop_front() {
        removed[node] = true;
        for &target in &edges[node] {
            incoming[target] -= 1;
            if incoming[target] == 0 {
                ready.push_back(target);
            }
        }
    }
    // Every node left has a predecessor left (its count never reached zero): walking back
    // along them must repeat a node, and that node lies on a cycle.
    let start = (0..edges.len()).find(|node| !removed[*node])?;
    let mut predecessor = vec![usize::MAX; edges.len()];
    for (from, targets) in edges.iter().enumerate() {
        if removed[from] {
            continue;
        }
        for &target in targets {
            if !removed[target] {
                predecessor[target] = from;
            }
        }
    }
    let mut seen = vec![false; edges.len()];
    let mut node = start;
    while !seen[node] {
        seen[node] = true;
        node = predecessor[node];
        assert!(
            node != usize::MAX,
            "a node left by Kahn's algorithm has a predecessor left"
        );
    }
    // The shortest cycle through `node`: breadth-first back to it.
    let on_cycle = node;
    let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([on_cycle]);
    while let Some(current) = queue.pop_front() {
        for &target in &edges[current] {
            if removed[target] {
                continue;
            }
            if target == on_cycle {
                let mut cycle = vec![current];
                let mut back = current;
                while back != on_cycle {
                    back = parent[&back];
                    cycle.push(back);
                }
                cycle.reverse();
                return Some(cycle);
            }
            if let std::collections::btree_map::Entry::Vacant(entry) = parent.entry(target) {
                entry.insert(current);
                queue.push_back(target);
            }
        }
    }
    Some(vec![on_cycle])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SimRng;

    fn write(object: &str, value: u64, replaced: u64, at: u64) -> Operation {
        Operation::Write {
            object: object.to_owned(),
            value,
            replaced: Some(replaced),
            began_at: at,
            ended_at: at + 1,
        }
    }

    fn read(object: &str, value: u64, synced: bool, at: u64) -> Operation {
        Operation::Read {
            object: object.to_owned(),
            value,
            synced,
            began_at: at,
            ended_at: at + 1,
        }
    }

    fn client(name: &str, operations: Vec<Operation>) -> ClientHistory {
        ClientHistory {
            client: name.to_owned(),
            operations,
        }
    }

    #[test]
    fn the_history_of_two_objects_seen_in_two_orders_is_refused() {
        // P wrote a := 2000719 (replacing 1000687) and then read b = 3000535; Q wrote
        // b := 3000536 (replacing 3000535) and then read a = 1000687.
        let setup = client(
            "setup",
            vec![write("a", 1_000_687, 0, 0), write("b", 3_000_535, 0, 2)],
        );
        let p = client(
            "P",
            vec![
                write("a", 2_000_719, 1_000_687, 10),
                read("b", 3_000_535, false, 12),
            ],
        );
        let q = client(
            "Q",
            vec![
                write("b", 3_000_536, 3_000_535, 10),
                read("a", 1_000_687, false, 12),
            ],
        );
        let error = check(&[setup, p, q]).expect_err("no single order");
        assert!(error.contains("no single order"), "{error}");
        assert!(error.contains("P op") && error.contains("Q op"), "{error}");
    }

    #[test]
    fn an_interleaving_that_one_order_explains_passes() {
        let setup = client("setup", vec![write("a", 1, 0, 0), write("b", 2, 0, 2)]);
        let p = client("P", vec![write("a", 3, 1, 10), read("b", 2, false, 12)]);
        let q = client(
            "Q",
            vec![
                read("a", 3, false, 13),
                write("b", 4, 2, 14),
                read("a", 3, true, 20),
            ],
        );
        check(&[setup, p, q]).expect("one order: setup, P, Q");
    }

    #[test]
    fn forks_and_values_nobody_wrote_are_refused() {
        let forked = [
            client("P", vec![write("a", 1, 0, 0)]),
            client("Q", vec![write("a", 2, 0, 0)]),
        ];
        assert!(check(&forked).expect_err("fork").contains("fork in a"));
        let invented = [client("P", vec![read("a", 9, false, 0)])];
        assert!(
            check(&invented)
                .expect_err("invented")
                .contains("no write of a wrote")
        );
        let duplicated = [client("P", vec![write("a", 1, 0, 0), write("a", 1, 1, 5)])];
        assert!(
            check(&duplicated)
                .expect_err("twice")
                .contains("written twice")
        );
    }

    #[test]
    fn a_synced_read_that_misses_a_completed_write_is_refused() {
        let p = client("P", vec![write("a", 1, 0, 0), write("b", 2, 0, 10)]);
        // Q's barrier began after both writes completed; it still sees b's old value.
        let q = client("Q", vec![read("a", 1, true, 20), read("b", 0, true, 20)]);
        let error = check(&[p.clone(), q]).expect_err("stale synced read");
        assert!(error.contains("real-time"), "{error}");
        // The same read without a barrier is fine: sequential consistency allows it.
        let q = client("Q", vec![read("b", 0, false, 20), read("a", 1, false, 21)]);
        check(&[p, q]).expect("a local read may lag");
    }

    #[test]
    fn a_failed_write_counts_only_when_something_shows_it() {
        let unknown = |value| Operation::Write {
            object: "a".to_owned(),
            value,
            replaced: None,
            began_at: 0,
            ended_at: 5,
        };
        // Never shown: as if it never happened, even though P's next write replaced 0.
        let p = client("P", vec![unknown(1), write("a", 2, 0, 10)]);
        check(std::slice::from_ref(&p)).expect("the failed write never happened");
        // Shown by a read: it took effect, later than P's next write (a call that failed may
        // still be applied after the caller moved on).
        let q = client("Q", vec![read("a", 1, false, 30)]);
        let r = client("R", vec![write("a", 3, 2, 20), read("a", 1, false, 31)]);
        check(&[p.clone(), q.clone(), r]).expect("0, 2, 3, then the failed write of 1");
        // But a value written by nobody stays an error, failed writes or not.
        let s = client("S", vec![read("a", 4, false, 40)]);
        assert!(check(&[p, q, s]).is_err());
    }

    /// Clients operating on one shared sequence of registers, in one random interleaving: the
    /// history one order explains.
    fn valid_history(
        rng: &mut SimRng,
        clients: usize,
        objects: usize,
        operations: usize,
    ) -> Vec<ClientHistory> {
        let mut histories: Vec<ClientHistory> = (0..clients)
            .map(|index| client(&format!("c{index}"), Vec::new()))
            .collect();
        let mut values = vec![0u64; objects];
        let mut next_value = 1;
        for time in 0..operations as u64 {
            let who = rng.below(clients as u64) as usize;
            let object = rng.below(objects as u64) as usize;
            let name = format!("r{object}");
            let operation = if rng.chance(0.5) {
                let replaced = std::mem::replace(&mut values[object], next_value);
                next_value += 1;
                write(&name, values[object], replaced, time * 10)
            } else {
                read(&name, values[object], rng.chance(0.3), time * 10)
            };
            histories[who].operations.push(operation);
        }
        histories
    }

    #[test]
    fn random_histories_from_one_order_pass_and_stale_reads_are_caught() {
        let mut caught = 0;
        for seed in 1..=20 {
            let mut rng = SimRng::new(seed);
            let histories = valid_history(&mut rng, 6, 4, 1_500);
            check(&histories).unwrap_or_else(|error| panic!("seed {seed}: {error}"));
            // Make one late read return an older value of its register.
            let mut corrupted = histories.clone();
            'corrupt: for history in corrupted.iter_mut().rev() {
                for operation in history.operations.iter_mut().rev() {
                    if let Operation::Read { value, .. } = operation
                        && *value > 1
                    {
                        // An older value of the same register: find one written before it.
                        let current = *value;
                        let older = histories
                            .iter()
                            .flat_map(|history| &history.operations)
                            .find_map(|candidate| match candidate {
                                Operation::Write {
                                    value: written,
                                    replaced: Some(_),
                                    object,
                                    ..
                                } if *written < current
                                    && Some(object)
                                        == histories
                                            .iter()
                                            .flat_map(|history| &history.operations)
                                            .find_map(|other| match other {
                                                Operation::Write { value, object, .. }
                                                    if *value == current =>
                                                {
                                                    Some(object)
                                                }
                                                _ => None,
                                            }) =>
                                {
                                    Some(*written)
                                }
                                _ => None,
                            });
                        if let Some(older) = older {
                            *value = older;
                            break 'corrupt;
                        }
                    }
                }
            }
            if check(&corrupted).is_err() {
                caught += 1;
            }
        }
        assert!(caught > 0, "no corrupted history was caught in 20 seeds");
    }

    #[test]
    fn inputs_beyond_the_bound_are_refused() {
        let operations = vec![read("a", 0, false, 0); OPERATIONS_MAX + 1];
        let error = check(&[client("P", operations)]).expect_err("too large");
        assert!(error.contains("more than the check takes"), "{error}");
    }
}
