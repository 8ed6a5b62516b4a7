//! Application instances holding SDK replicas of one global `dsss_examples::Bank`, on a
//! simulated cluster of real region nodes and coordinator replicas, under faults drawn from
//! many seeds; and the checkers that judge them, including tests that the checkers catch a
//! corrupted history (DESIGN.md sections 1, 2 and 6). Replay a failing seed with `DSSS_SEED=S`.

use std::cell::Cell;
use std::collections::BTreeMap;

use dsss::{Codec, Postcard};
use dsss_examples::{Bank, BankError};
use dsss_simulations::workloads::global::{
    GlobalCluster, GlobalRunSettings, LOG_ENTRIES_PER_READ_MAX, LogEntries, ReadLogRequest,
};
use dsss_simulations::workloads::sdk::bank::{BankRead, BankValue, BankWorkload, bank_workload};
use dsss_simulations::workloads::sdk::checker::{self, check_all};
use dsss_simulations::workloads::sdk::history::{
    AppliedRecord, CallCompletion, CallEvent, CallSpec, ClientHistory, Operation, ReadEvent,
    ReplicaRecord, SdkHistory, SyncBarrier,
};
use dsss_simulations::workloads::sdk::{
    ExhaustiveVerdict, SdkReport, SdkRun, SdkRunSettings, find_sequential_order, run_bank,
    run_sdk_traced,
};
use dsss_simulations::{SimTime, assert_deterministic, run_seeds};
use dsss_topology::Topology;

type BankHistory = SdkHistory<BankRead, BankValue>;

fn local_topology() -> Topology {
    dsss_topology::parse("local.toml", dsss_topology::LOCAL_TOPOLOGY_TOML)
        .expect("the embedded topology is valid")
}

fn global_topology() -> Topology {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../topology/examples/global.toml"
    );
    dsss_topology::load(std::path::Path::new(path)).expect("the global example is valid")
}

fn bank() -> BankWorkload<Bank> {
    bank_workload(8).expect("a valid bank workload")
}

fn small_bank() -> BankWorkload<Bank> {
    bank_workload(3).expect("a valid bank workload")
}

/// Fails with the report when a run broke a guarantee or did not converge.
fn assert_passed(report: &SdkReport) {
    assert!(report.passed(), "{report}");
}

#[test]
fn a_fault_free_local_bank_keeps_its_money_and_one_order() {
    let report = run_bank(&SdkRunSettings::new(1, local_topology())).expect("valid settings");
    assert_passed(&report);
    assert_eq!(report.instances, 6, "{report}");
    assert!(report.calls_completed > 60, "{report}");
    assert!(
        report.calls_refused_by_object > 0,
        "no transfer overdrew: {report}"
    );
    assert!(report.reads > 20, "{report}");
    assert_eq!(report.calls, report.calls_completed, "{report}");
}

#[test]
fn a_fault_free_global_bank_keeps_its_money_and_one_order() {
    let report = run_bank(&SdkRunSettings::new(1, global_topology())).expect("valid settings");
    assert_passed(&report);
    assert!(report.calls_completed > 30, "{report}");
    assert!(report.reads > 10, "{report}");
}

/// Runs `seeds` seeds of the bank on `topology` under the standard faults; every run must
/// pass, and together they must have exercised every fault and every path of the instances.
fn faulty_bank_runs(name: &str, topology: &Topology, seeds: u64) {
    let coordinator_leader_crashes = Cell::new(0_u32);
    let long_partitions = Cell::new(0_u32);
    let crashes = Cell::new(0_u32);
    let failovers = Cell::new(0_u64);
    let retries = Cell::new(0_u64);
    let duplicates = Cell::new(0_u64);
    let refused = Cell::new(0_usize);
    let reads = Cell::new(0_usize);
    let sync_reads = Cell::new(0_usize);
    let fetches = Cell::new(0_u64);
    run_seeds(name, seeds, |seed| {
        let settings = SdkRunSettings::new(seed, topology.clone()).with_standard_faults();
        let report = run_bank(&settings).expect("valid settings");
        assert_passed(&report);
        coordinator_leader_crashes
            .set(coordinator_leader_crashes.get() + report.faults.coordinator_leader_crashes);
        long_partitions.set(long_partitions.get() + report.faults.long_region_partitions);
        crashes.set(crashes.get() + report.faults.crashes);
        failovers.set(failovers.get() + report.counters.failovers);
        retries.set(retries.get() + report.counters.retries);
        duplicates.set(duplicates.get() + report.counters.deliberate_duplicates);
        refused.set(refused.get() + report.calls_refused_by_object);
        reads.set(reads.get() + report.reads);
        sync_reads.set(sync_reads.get() + report.sync_reads);
        fetches.set(fetches.get() + report.counters.checkpoint_fetches);
    });
    // Coverage: with the default seed count, the faults and paths that matter did happen.
    if std::env::var("DSSS_SEED").is_err() {
        assert!(
            coordinator_leader_crashes.get() > 0,
            "no coordinator leader crashed"
        );
        assert!(
            long_partitions.get() > 0,
            "no partition outlasted the suspicion timeout"
        );
        assert!(crashes.get() > 0, "no node crashed");
        assert!(
            failovers.get() > 0,
            "no instance failed over to another member"
        );
        assert!(retries.get() > 0, "no call was retried");
        assert!(duplicates.get() > 0, "no call was sent twice");
        assert!(refused.get() > 0, "no transfer overdrew");
        assert!(reads.get() > 0, "nothing was read");
        assert!(sync_reads.get() > 0, "no read followed a sync()");
        assert!(fetches.get() > 0, "no instance met a truncated log");
    }
}

#[test]
fn local_banks_under_faults_keep_every_guarantee() {
    faulty_bank_runs(
        "local_banks_under_faults_keep_every_guarantee",
        &local_topology(),
        100,
    );
}

#[test]
fn global_banks_under_faults_keep_every_guarantee() {
    faulty_bank_runs(
        "global_banks_under_faults_keep_every_guarantee",
        &global_topology(),
        100,
    );
}

#[test]
fn a_seed_replays_the_same_bank_run() {
    assert_deterministic("a_seed_replays_the_same_bank_run", 11, |seed| {
        let mut settings = SdkRunSettings::new(seed, local_topology()).with_standard_faults();
        settings.cluster.keep_trace_lines = true;
        run_sdk_traced(&settings, bank())
            .expect("valid settings")
            .trace
    });
}

/// Three regions, one instance each, four random operations each after the setup: the
/// exhaustive search, which ignores every position the system names, must find an order that
/// explains every result and read.
#[test]
fn small_histories_are_explained_without_positions() {
    let searched = Cell::new(0_u64);
    run_seeds(
        "small_histories_are_explained_without_positions",
        100,
        |seed| {
            let settings = SdkRunSettings::small(seed, local_topology(), 4).with_standard_faults();
            let run = run_sdk_traced(&settings, small_bank()).expect("valid settings");
            assert_passed(&run.report);
            match &run.report.exhaustive {
                Some(ExhaustiveVerdict::Consistent { order, .. }) => {
                    assert_eq!(order.len(), run.history.operation_count(), "{}", run.report);
                    searched.set(searched.get() + 1);
                }
                other => panic!("seed {seed}: the search gave {other:?}\n{}", run.report),
            }
        },
    );
    assert!(searched.get() > 0);
}

/// A member answers a log read from its applied log: dense, in order, at most
/// `LOG_ENTRIES_PER_READ_MAX` entries, nothing past what it applied, and a position it no
/// longer keeps is named rather than skipped.
#[test]
fn a_member_answers_log_reads_densely_and_in_bounded_pieces() {
    let settings = GlobalRunSettings::new(2, local_topology());
    let mut cluster = GlobalCluster::new(&settings).expect("valid settings");
    cluster.simulation().run_until(SimTime::from_secs(4));
    let log = cluster.region_node(11).expect("node 11 is up").region_log();
    let first = log.first_retained_position();
    let last = log.last_position();
    assert!(
        last - first + 1 > LOG_ENTRIES_PER_READ_MAX as u64,
        "the log must be longer than one answer ({first}..={last})"
    );
    let mut from = first;
    let mut pieces = 0;
    while from <= last {
        let answer = LogEntries::answer(
            log,
            ReadLogRequest {
                request_id: pieces,
                from_position: from,
            },
        );
        assert_eq!(answer.request_id, pieces);
        assert_eq!(answer.truncated_below, None);
        assert!(!answer.entries.is_empty());
        assert!(answer.entries.len() <= LOG_ENTRIES_PER_READ_MAX);
        for (offset, (position, entry)) in answer.entries.iter().enumerate() {
            assert_eq!(*position, from + offset as u64);
            assert_eq!(&log.record(*position).unwrap().entry, entry);
        }
        assert_eq!(
            answer.through_position,
            from + answer.entries.len() as u64 - 1
        );
        from = answer.through_position + 1;
        pieces += 1;
    }
    assert!(pieces >= 2);
    let beyond = LogEntries::answer(
        log,
        ReadLogRequest {
            request_id: 0,
            from_position: last + 1,
        },
    );
    assert!(beyond.entries.is_empty());
    assert_eq!(beyond.through_position, last);
    if first > 1 {
        let below = LogEntries::answer(
            log,
            ReadLogRequest {
                request_id: 0,
                from_position: first - 1,
            },
        );
        assert_eq!(below.truncated_below, Some(first));
        assert!(below.entries.is_empty());
    }
}

// Checker self-tests: a history from a real run passes, and each kind of corruption is caught.

/// A small faulty run, its history, and the settings it ran with.
fn small_run(seed: u64) -> (SdkRun<BankWorkload<Bank>>, SdkRunSettings) {
    let settings = SdkRunSettings::small(seed, local_topology(), 6).with_standard_faults();
    let run = run_sdk_traced(&settings, small_bank()).expect("valid settings");
    assert_passed(&run.report);
    (run, settings)
}

fn problems_of(history: &BankHistory, settings: &SdkRunSettings) -> Vec<String> {
    check_all(
        &small_bank(),
        history,
        settings.application.checkpoint_every_records,
        &BTreeMap::new(),
    )
}

fn exhaustive_of(history: &BankHistory) -> ExhaustiveVerdict {
    find_sequential_order(&small_bank(), &history.clients, 1_000_000)
}

/// The first completed transfer in `history`, as (client, index of the operation).
fn first_completed_transfer(history: &BankHistory) -> (u64, usize) {
    for (client, client_history) in &history.clients {
        for (index, operation) in client_history.operations.iter().enumerate() {
            if let Operation::Call(call) = operation
                && call.call.method_id == 2
                && call.completion.is_some()
            {
                return (*client, index);
            }
        }
    }
    panic!("the run completed no transfer");
}

fn call_at(history: &mut BankHistory, client: u64, index: usize) -> &mut CallEvent {
    match &mut history.clients.get_mut(&client).unwrap().operations[index] {
        Operation::Call(call) => call,
        Operation::Read(_) => panic!("not a call"),
    }
}

fn bank_result(result: Result<(), BankError>) -> Vec<u8> {
    Postcard::encode(&result).unwrap()
}

#[test]
fn the_checkers_pass_a_real_history_and_catch_a_wrong_result() {
    let (run, settings) = small_run(3);
    assert!(problems_of(&run.history, &settings).is_empty());
    assert!(exhaustive_of(&run.history).is_consistent());

    let mut corrupted = run.history.clone();
    let (client, index) = first_completed_transfer(&corrupted);
    let completion = call_at(&mut corrupted, client, index)
        .completion
        .as_mut()
        .unwrap();
    // A result no order can give: the workload never transfers from an account to itself.
    completion.outcome = Ok(bank_result(Err(BankError::SameAccount("account-0".into()))));
    let problems = problems_of(&corrupted, &settings);
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("a replay of the order returns")),
        "{problems:?}"
    );
    assert!(!exhaustive_of(&corrupted).is_consistent());
}

#[test]
fn the_checkers_catch_a_read_of_a_total_that_lost_money() {
    let (run, settings) = small_run(5);
    let mut corrupted = run.history.clone();
    let (client, _) = first_completed_transfer(&corrupted);
    let records_applied = corrupted.replicas[&client].records_applied;
    corrupted
        .clients
        .get_mut(&client)
        .unwrap()
        .operations
        .push(Operation::Read(ReadEvent {
            read: BankRead::Total,
            value: BankValue::Total(small_bank().total() - 1),
            records_applied,
            at: SimTime::MAX,
            sync: None,
        }));
    let problems = problems_of(&corrupted, &settings);
    assert!(
        problems.iter().any(|problem| problem.contains("invariant")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("the order gives")),
        "{problems:?}"
    );
    assert!(!exhaustive_of(&corrupted).is_consistent());
}

#[test]
fn the_checkers_catch_a_replica_that_applied_a_record_twice_or_diverged() {
    let (run, settings) = small_run(7);
    let client = *run.history.replicas.keys().next().unwrap();

    let mut twice = run.history.clone();
    let replica = twice.replicas.get_mut(&client).unwrap();
    let repeated = replica.applied[replica.applied.len() / 2].clone();
    let at = replica.applied.len() / 2 + 1;
    replica.applied.insert(at, repeated);
    let problems = problems_of(&twice, &settings);
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("skipped or repeated")),
        "{problems:?}"
    );

    let mut diverged = run.history.clone();
    let replica = diverged.replicas.get_mut(&client).unwrap();
    let (&count, hash) = replica.checkpoint_hashes.iter_mut().next().unwrap();
    hash[0] ^= 1;
    let problems = problems_of(&diverged, &settings);
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains(&format!("after {count} records"))),
        "{problems:?}"
    );
}

#[test]
fn the_checkers_catch_a_read_that_goes_back_and_a_lost_acknowledged_call() {
    let (run, settings) = small_run(9);
    let (client, index) = first_completed_transfer(&run.history);

    let mut going_back = run.history.clone();
    let completed = call_at(&mut going_back, client, index)
        .completion
        .clone()
        .unwrap();
    // A read right after the call that does not see it.
    going_back
        .clients
        .get_mut(&client)
        .unwrap()
        .operations
        .insert(
            index + 1,
            Operation::Read(ReadEvent {
                read: BankRead::Total,
                value: BankValue::Total(small_bank().total()),
                records_applied: completed.records_applied - 1,
                at: completed.completed_at,
                sync: None,
            }),
        );
    let problems = problems_of(&going_back, &settings);
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("though it had seen")),
        "{problems:?}"
    );

    let mut lost = run.history.clone();
    let client_history = lost.clients.get_mut(&client).unwrap();
    let next_sequence = client_history.operations.len() as u64 + 100;
    client_history.operations.push(Operation::Call(CallEvent {
        sequence: next_sequence,
        call: BankWorkload::<Bank>::transfer("account-0", "account-1", 1),
        invoked_at: SimTime::MAX,
        acknowledged: Some((SimTime::MAX, 1)),
        completion: None,
    }));
    let problems = problems_of(&lost, &settings);
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("acknowledged but is not in the order")),
        "{problems:?}"
    );
    // The search must place an acknowledged call, and it can (at the end, where it changes no
    // read): only the position checker, which knows it never entered the log, sees the loss.
    assert!(exhaustive_of(&lost).is_consistent());
}

#[test]
fn the_checkers_catch_a_sync_read_that_misses_a_completed_call() {
    let (run, settings) = small_run(13);
    let (client, index) = first_completed_transfer(&run.history);
    let completed = {
        let mut history = run.history.clone();
        call_at(&mut history, client, index)
            .completion
            .clone()
            .unwrap()
    };
    let reader = *run
        .history
        .clients
        .keys()
        .find(|&&other| other != client)
        .unwrap();
    let stale_read = |records_applied: u64| {
        let mut history = run.history.clone();
        history
            .clients
            .get_mut(&reader)
            .unwrap()
            .operations
            .push(Operation::Read(ReadEvent {
                read: BankRead::Total,
                value: BankValue::Total(small_bank().total()),
                records_applied,
                at: SimTime::MAX,
                sync: Some(SyncBarrier {
                    began_at: completed
                        .completed_at
                        .saturating_add(std::time::Duration::from_millis(1)),
                    apply_through_position: completed.position,
                }),
            }));
        problems_of(&history, &settings)
    };
    let replica_count = run.history.replicas[&reader].records_applied;
    assert!(
        stale_read(replica_count)
            .iter()
            .all(|problem| !problem.contains("linearizability")),
        "a sync-read that sees everything passes"
    );
    let problems = stale_read(completed.records_applied - 1);
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("linearizability")),
        "{problems:?}"
    );
}

// Hand-made histories for the exhaustive search.

fn schema_call(sequence: u64) -> CallEvent {
    CallEvent {
        sequence,
        call: CallSpec {
            method_id: 0,
            arguments: <Bank as dsss::SharedObject>::schema().encode(),
        },
        invoked_at: SimTime::ZERO,
        acknowledged: None,
        completion: Some(completion(Ok(Vec::new()))),
    }
}

/// A completion with placeholder positions: the exhaustive search reads only the outcome.
fn completion(outcome: Result<Vec<u8>, dsss::MethodError>) -> CallCompletion {
    CallCompletion {
        completed_at: SimTime::ZERO,
        position: 0,
        records_applied: 0,
        order: (0, 0),
        outcome,
    }
}

fn call(
    sequence: u64,
    spec: CallSpec,
    result: Result<(), BankError>,
) -> Operation<BankRead, BankValue> {
    Operation::Call(CallEvent {
        sequence,
        call: spec,
        invoked_at: SimTime::ZERO,
        acknowledged: None,
        completion: Some(completion(Ok(bank_result(result)))),
    })
}

fn read(read: BankRead, value: BankValue) -> Operation<BankRead, BankValue> {
    Operation::Read(ReadEvent {
        read,
        value,
        records_applied: 0,
        at: SimTime::ZERO,
        sync: None,
    })
}

fn hand_made(clients: Vec<Vec<Operation<BankRead, BankValue>>>) -> BankHistory {
    let mut history = BankHistory::default();
    for (index, operations) in clients.into_iter().enumerate() {
        let client = 1 + index as u64;
        history.clients.insert(
            client,
            ClientHistory {
                client,
                region: "hand".into(),
                operations,
            },
        );
        history.replicas.insert(client, ReplicaRecord::default());
    }
    history
}

fn open(name: &str, balance: u64) -> CallSpec {
    BankWorkload::<Bank>::open_account(name, balance)
}

fn transfer(from: &str, to: &str, amount: u64) -> CallSpec {
    BankWorkload::<Bank>::transfer(from, to, amount)
}

#[test]
fn the_search_orders_concurrent_transfers_that_only_one_order_explains() {
    // b's transfer succeeds only if a's deposit into y came first, and a's read of y = 0
    // only before it: one interleaving explains all.
    let history = hand_made(vec![
        vec![
            Operation::Call(schema_call(1)),
            call(2, open("x", 10), Ok(())),
            call(3, open("y", 0), Ok(())),
            read(BankRead::Balance("y".into()), BankValue::Balance(Some(0))),
            call(4, transfer("x", "y", 10), Ok(())),
        ],
        vec![
            Operation::Call(schema_call(1)),
            call(2, transfer("y", "x", 5), Ok(())),
            read(BankRead::Balance("y".into()), BankValue::Balance(Some(5))),
        ],
    ]);
    match find_sequential_order(&small_bank(), &history.clients, 10_000) {
        ExhaustiveVerdict::Consistent { order, .. } => {
            let position = |step: (u64, usize)| order.iter().position(|&s| s == step).unwrap();
            assert!(position((1, 4)) < position((2, 1)), "{order:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_search_refuses_a_history_that_no_order_explains() {
    // Two clients each see their own transfer succeed from an account that can pay only one
    // of them: no order gives both results.
    let history = hand_made(vec![
        vec![
            Operation::Call(schema_call(1)),
            call(2, open("x", 10), Ok(())),
            call(3, open("y", 0), Ok(())),
            call(4, transfer("x", "y", 8), Ok(())),
        ],
        vec![
            Operation::Call(schema_call(1)),
            read(BankRead::Balance("x".into()), BankValue::Balance(Some(10))),
            call(2, transfer("x", "y", 8), Ok(())),
        ],
    ]);
    match find_sequential_order(&small_bank(), &history.clients, 10_000) {
        ExhaustiveVerdict::Inconsistent { longest_prefix, .. } => {
            assert!(longest_prefix.len() < history.operation_count());
        }
        other => panic!("{other:?}"),
    }
    // Program order matters too: a client cannot read its own transfer undone.
    let history = hand_made(vec![vec![
        Operation::Call(schema_call(1)),
        call(2, open("x", 10), Ok(())),
        call(3, open("y", 0), Ok(())),
        call(4, transfer("x", "y", 4), Ok(())),
        read(BankRead::Balance("x".into()), BankValue::Balance(Some(10))),
    ]]);
    assert!(!find_sequential_order(&small_bank(), &history.clients, 10_000).is_consistent());
}

#[test]
fn a_call_never_seen_to_complete_may_stand_nowhere_unless_acknowledged() {
    // A declaration of a newer schema, with a method this build of the bank lacks, stops every
    // copy that applies it: no order can hold it, so only leaving it out explains the rest.
    let mut newer = <Bank as dsss::SharedObject>::schema().clone();
    newer.methods.push(dsss::MethodSchema {
        id: 7,
        name: "close_account".into(),
        arguments: "name: String".into(),
        result: "Result<(), BankError>".into(),
        codec: "postcard".into(),
    });
    let pending = |acknowledged: Option<(SimTime, u64)>| {
        hand_made(vec![
            vec![
                Operation::Call(schema_call(1)),
                call(2, open("x", 10), Ok(())),
                Operation::Call(CallEvent {
                    sequence: 3,
                    call: CallSpec {
                        method_id: 0,
                        arguments: newer.encode(),
                    },
                    invoked_at: SimTime::ZERO,
                    acknowledged,
                    completion: None,
                }),
            ],
            vec![
                Operation::Call(schema_call(1)),
                read(BankRead::Balance("x".into()), BankValue::Balance(Some(10))),
            ],
        ])
    };
    assert!(find_sequential_order(&small_bank(), &pending(None).clients, 10_000).is_consistent());
    let acknowledged = pending(Some((SimTime::ZERO, 9)));
    assert!(!find_sequential_order(&small_bank(), &acknowledged.clients, 10_000).is_consistent());
}

#[test]
fn the_order_checker_names_two_replicas_that_disagree() {
    let record = |client: u64, order: (u64, u32), count: u64| AppliedRecord {
        position: count,
        records_applied: count,
        order,
        client_id: client,
        request_sequence: 1,
        call: CallSpec {
            method_id: 0,
            arguments: <Bank as dsss::SharedObject>::schema().encode(),
        },
    };
    let mut history = BankHistory::default();
    history.replicas.insert(
        1,
        ReplicaRecord {
            region: "a".into(),
            applied: vec![record(1, (1, 0), 1), record(2, (1, 1), 2)],
            ..ReplicaRecord::default()
        },
    );
    history.replicas.insert(
        2,
        ReplicaRecord {
            region: "b".into(),
            applied: vec![record(2, (1, 0), 1), record(1, (1, 1), 2)],
            ..ReplicaRecord::default()
        },
    );
    let (_, problems) = checker::total_order(&history);
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("the replica of client 2 applied c2 s1")),
        "{problems:?}"
    );
}
