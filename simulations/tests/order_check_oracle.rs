//! The order checker against an exhaustive search: on small histories the graph criterion of
//! [`order_check::check`] must give the same verdict as trying every order, so that a violation
//! it reports is real and a history it passes has an order. Reference: docs/design.md section 6 (how
//! one order across objects is checked without trusting reported positions).
//!
//! The search implements the checker's model directly: one sequence of all operations that
//! keeps each instance's program order, in which every write returns the value it replaced and
//! every read the current value, and every `sync()` read comes after each write that completed
//! before its barrier began. A write whose outcome is unknown may take effect at any point, or
//! never.

use std::collections::{BTreeMap, HashSet};

use dsss_simulations::random::SimRng;
use dsss_simulations::workloads::order_check::{self, ClientHistory, Operation};

/// The most operations a history for the exhaustive search holds.
const SEARCH_OPERATIONS_MAX: usize = 16;

/// The most states the search visits before giving up, so that a test cannot hang.
const SEARCH_STATES_MAX: usize = 2_000_000;

/// The most unknown-outcome writes a searched history holds (a bit set tracks them).
const UNKNOWN_WRITES_MAX: usize = 8;

/// A state of the search: the next operation of every instance, which unknown-outcome writes
/// took effect, and the value of every register.
type State = (Vec<usize>, u32, Vec<u64>);

/// Whether some order explains `clients`, trying them all. `None` when the search gives up.
fn some_order_exists(clients: &[ClientHistory]) -> Option<bool> {
    let total: usize = clients.iter().map(|client| client.operations.len()).sum();
    assert!(
        total <= SEARCH_OPERATIONS_MAX,
        "{total} operations is too many to search"
    );
    let mut objects: Vec<&str> = Vec::new();
    for operation in clients.iter().flat_map(|client| &client.operations) {
        let (Operation::Write { object, .. } | Operation::Read { object, .. }) = operation;
        if !objects.contains(&object.as_str()) {
            objects.push(object);
        }
    }
    let object_index = |name: &str| objects.iter().position(|object| *object == name).unwrap();
    // Unknown-outcome writes leave program order: they form a pool that may apply any time.
    let mut unknown: Vec<(usize, u64)> = Vec::new();
    for operation in clients.iter().flat_map(|client| &client.operations) {
        if let Operation::Write {
            object,
            value,
            replaced: None,
            ..
        } = operation
        {
            unknown.push((object_index(object), *value));
        }
    }
    assert!(unknown.len() <= UNKNOWN_WRITES_MAX);
    let search = Search {
        clients,
        object_index: &object_index,
        unknown,
    };
    let start: State = (vec![0; clients.len()], 0, vec![0; objects.len()]);
    let mut failed: HashSet<State> = HashSet::new();
    search.explore(start, &mut failed)
}

struct Search<'a> {
    clients: &'a [ClientHistory],
    object_index: &'a dyn Fn(&str) -> usize,
    unknown: Vec<(usize, u64)>,
}

impl Search<'_> {
    /// The next operation of `client` at or after `index` that program order places (an
    /// unknown-outcome write is skipped: it lives in the pool).
    fn next_placed(&self, client: usize, mut index: usize) -> usize {
        let operations = &self.clients[client].operations;
        while index < operations.len()
            && matches!(operations[index], Operation::Write { replaced: None, .. })
        {
            index += 1;
        }
        index
    }

    /// Whether the known write at `(client, index)` has taken effect in state `next`.
    fn done(next: &[usize], client: usize, index: usize) -> bool {
        next[client] > index
    }

    fn explore(&self, state: State, failed: &mut HashSet<State>) -> Option<bool> {
        let (next, applied, values) = &state;
        let next: Vec<usize> = next
            .iter()
            .enumerate()
            .map(|(client, index)| self.next_placed(client, *index))
            .collect();
        if next
            .iter()
            .enumerate()
            .all(|(client, index)| *index == self.clients[client].operations.len())
        {
            return Some(true);
        }
        let state: State = (next.clone(), *applied, values.clone());
        if failed.contains(&state) {
            return Some(false);
        }
        if failed.len() >= SEARCH_STATES_MAX {
            return None;
        }
        for client in 0..self.clients.len() {
            let Some(operation) = self.clients[client].operations.get(next[client]) else {
                continue;
            };
            let mut values = values.clone();
            let allowed = match operation {
                Operation::Write {
                    object,
                    value,
                    replaced: Some(replaced),
                    ..
                } => {
                    let object = (self.object_index)(object);
                    let fits = values[object] == *replaced;
                    values[object] = *value;
                    fits
                }
                Operation::Read {
                    object,
                    value,
                    synced,
                    began_at,
                    ..
                } => {
                    values[(self.object_index)(object)] == *value
                        && (!synced || self.completed_writes_done(&next, *began_at))
                }
                Operation::Write { replaced: None, .. } => unreachable!("skipped above"),
            };
            if allowed {
                let mut advanced = next.clone();
                advanced[client] += 1;
                if self.explore((advanced, *applied, values), failed)? {
                    return Some(true);
                }
            }
        }
        for (position, (object, value)) in self.unknown.iter().enumerate() {
            if applied & (1 << position) != 0 {
                continue;
            }
            let mut values = values.clone();
            values[*object] = *value;
            if self.explore((next.clone(), applied | (1 << position), values), failed)? {
                return Some(true);
            }
        }
        failed.insert(state);
        Some(false)
    }

    /// Whether every known write that ended before `began_at` has taken effect.
    fn completed_writes_done(&self, next: &[usize], began_at: u64) -> bool {
        self.clients.iter().enumerate().all(|(client, history)| {
            history
                .operations
                .iter()
                .enumerate()
                .all(|(index, operation)| match operation {
                    Operation::Write {
                        replaced: Some(_),
                        ended_at,
                        ..
                    } if *ended_at < began_at => Self::done(next, client, index),
                    _ => true,
                })
        })
    }
}

/// A history that one order explains: operations in one random sequence, each with a call
/// interval around its point in that sequence (calls of different instances overlap), some
/// reads after a barrier, some writes whose outcome the caller never learned (applied or lost).
fn valid_history(
    rng: &mut SimRng,
    clients: usize,
    objects: usize,
    operations: usize,
) -> Vec<ClientHistory> {
    let mut histories: Vec<ClientHistory> = (0..clients)
        .map(|index| ClientHistory {
            client: format!("c{index}"),
            operations: Vec::new(),
        })
        .collect();
    let mut values = vec![0u64; objects];
    let mut next_value = 1;
    let mut last_ended = vec![0u64; clients];
    for step in 0..operations as u64 {
        let who = rng.below(clients as u64) as usize;
        let object = rng.below(objects as u64) as usize;
        let name = format!("r{object}");
        // The operation takes effect at `point`; its call began up to 25 earlier (after the
        // instance's previous call ended) and ended up to 4 later, before the next point.
        let point = 10 * (step + 1);
        let began_at = point
            .saturating_sub(rng.below(26))
            .max(last_ended[who] + 1)
            .min(point);
        let ended_at = point + rng.below(5);
        last_ended[who] = ended_at;
        let operation = if rng.chance(0.45) {
            let value = next_value;
            next_value += 1;
            let outcome = rng.below(10);
            if outcome == 0 {
                // Lost: the call failed and never took effect.
                Operation::Write {
                    object: name,
                    value,
                    replaced: None,
                    began_at,
                    ended_at,
                }
            } else {
                let replaced = std::mem::replace(&mut values[object], value);
                Operation::Write {
                    object: name,
                    value,
                    // Applied, but the caller saw an error.
                    replaced: (outcome != 1).then_some(replaced),
                    began_at,
                    ended_at,
                }
            }
        } else {
            Operation::Read {
                object: name,
                value: values[object],
                synced: rng.chance(0.3),
                began_at,
                ended_at,
            }
        };
        histories[who].operations.push(operation);
    }
    histories
}

fn has_unknown_writes(clients: &[ClientHistory]) -> bool {
    clients
        .iter()
        .flat_map(|client| &client.operations)
        .any(|operation| matches!(operation, Operation::Write { replaced: None, .. }))
}

/// The values written to each register, in the order the writes took effect (from the
/// history's own `replaced` links, starting at 0).
fn chains(clients: &[ClientHistory]) -> BTreeMap<String, Vec<u64>> {
    let mut successor: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for operation in clients.iter().flat_map(|client| &client.operations) {
        if let Operation::Write {
            object,
            value,
            replaced: Some(replaced),
            ..
        } = operation
        {
            successor.insert((object.clone(), *replaced), *value);
        }
    }
    let mut chains: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let objects: Vec<String> = successor.keys().map(|(object, _)| object.clone()).collect();
    for object in objects {
        let mut chain = vec![0];
        while let Some(next) = successor.get(&(object.clone(), *chain.last().unwrap())) {
            chain.push(*next);
        }
        chains.insert(object, chain);
    }
    chains
}

/// One random change that may or may not break the history: a read returns an older value of
/// its register, a read returns a newer one, a read becomes a `sync()` read, or a write's call
/// ends earlier.
fn perturb(rng: &mut SimRng, clients: &mut [ClientHistory]) {
    let chains = chains(clients);
    let client = rng.below(clients.len() as u64) as usize;
    let operations = &mut clients[client].operations;
    if operations.is_empty() {
        return;
    }
    let index = rng.below(operations.len() as u64) as usize;
    match &mut operations[index] {
        Operation::Read {
            object,
            value,
            synced,
            ..
        } => {
            let chain = chains
                .get(object.as_str())
                .cloned()
                .unwrap_or_else(|| vec![0]);
            let Some(position) = chain.iter().position(|candidate| candidate == value) else {
                return;
            };
            match rng.below(3) {
                0 if position > 0 => *value = chain[rng.below(position as u64) as usize],
                1 if position + 1 < chain.len() => {
                    let newer =
                        position + 1 + rng.below((chain.len() - position - 1) as u64) as usize;
                    *value = chain[newer];
                }
                _ => *synced = true,
            }
        }
        Operation::Write {
            began_at, ended_at, ..
        } => {
            *ended_at = (*began_at).max(ended_at.saturating_sub(20));
        }
    }
}

fn total_operations(clients: &[ClientHistory]) -> usize {
    clients.iter().map(|client| client.operations.len()).sum()
}

#[test]
fn small_histories_get_the_verdict_of_an_exhaustive_search() {
    let (mut agreed_valid, mut agreed_invalid, mut unknown_histories) = (0, 0, 0);
    for seed in 1..=4_000u64 {
        let mut rng = SimRng::new(seed);
        let clients = 2 + rng.below(2) as usize;
        let objects = 1 + rng.below(3) as usize;
        let operations = 4 + rng.below(9) as usize;
        let mut history = valid_history(&mut rng, clients, objects, operations);
        for _ in 0..rng.below(3) {
            perturb(&mut rng, &mut history);
        }
        let checked = order_check::check(&history);
        let Some(exists) = some_order_exists(&history) else {
            continue;
        };
        if has_unknown_writes(&history) {
            // The checker places a write of unknown outcome by what shows it only, so it may
            // pass a history no order explains; what it refuses must be refused by the search.
            unknown_histories += 1;
            if let Err(violation) = &checked {
                assert!(
                    !exists,
                    "seed {seed}: the checker refused a history that an order explains: \
                     {violation}\n{history:#?}"
                );
            }
            continue;
        }
        match (&checked, exists) {
            (Ok(()), true) => agreed_valid += 1,
            (Err(_), false) => agreed_invalid += 1,
            (Ok(()), false) => panic!(
                "seed {seed}: the checker passed a history that no order explains\n{history:#?}"
            ),
            (Err(violation), true) => panic!(
                "seed {seed}: the checker refused a history that an order explains: \
                 {violation}\n{history:#?}"
            ),
        }
    }
    eprintln!(
        "agreed: {agreed_valid} explained, {agreed_invalid} refused; \
         {unknown_histories} with unknown writes checked for soundness"
    );
    // Both verdicts must have been exercised, or the agreement means little.
    assert!(agreed_valid >= 100, "{agreed_valid} valid histories agreed");
    assert!(
        agreed_invalid >= 100,
        "{agreed_invalid} broken histories agreed"
    );
    assert!(
        unknown_histories >= 50,
        "{unknown_histories} with unknown writes"
    );
}

#[test]
fn stale_reads_the_checker_reports_are_real_violations() {
    let mut caught = 0;
    for seed in 1..=20u64 {
        let mut rng = SimRng::new(1_000 + seed);
        let mut history = valid_history(&mut rng, 3, 2, SEARCH_OPERATIONS_MAX);
        order_check::check(&history)
            .unwrap_or_else(|violation| panic!("seed {seed}: a valid history: {violation}"));
        // The last read that can go back: it returns an older value of its register.
        let chains = chains(&history);
        let mut changed = false;
        'corrupt: for client in history.iter_mut().rev() {
            for operation in client.operations.iter_mut().rev() {
                if let Operation::Read { object, value, .. } = operation {
                    let chain = chains.get(object.as_str()).cloned().unwrap_or_default();
                    if let Some(position) = chain.iter().position(|candidate| candidate == value)
                        && position > 0
                    {
                        *value = chain[rng.below(position as u64) as usize];
                        changed = true;
                        break 'corrupt;
                    }
                }
            }
        }
        if !changed {
            continue;
        }
        let exists = some_order_exists(&history).expect("the search finishes");
        if let Err(violation) = order_check::check(&history) {
            assert!(
                !exists,
                "seed {seed}: reported, but an order explains it: {violation}\n{history:#?}"
            );
            caught += 1;
        } else if !has_unknown_writes(&history) {
            assert!(exists, "seed {seed}: missed a violation\n{history:#?}");
        }
    }
    eprintln!("{caught} of 20 stale reads caught");
    assert!(caught >= 1, "no stale read was caught in 20 seeds");
}

#[test]
fn long_histories_with_overlapping_calls_and_unknown_writes_pass() {
    for seed in 1..=10u64 {
        let mut rng = SimRng::new(5_000 + seed);
        let history = valid_history(&mut rng, 6, 4, 3_000);
        assert!(total_operations(&history) >= 3_000);
        order_check::check(&history).unwrap_or_else(|violation| panic!("seed {seed}: {violation}"));
    }
}
