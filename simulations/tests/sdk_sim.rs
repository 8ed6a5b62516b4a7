//! Application instances running the SDK's own `ClientSession` with shared objects open (a
//! global `dsss_examples::Bank`, `Counter` and `Lobby` and a regional `Leaderboard` in every
//! region, alone or all at once, and an object whose method panics), on a simulated cluster of real region nodes and coordinator
//! replicas, under faults drawn from many seeds; and the checkers that judge them, including
//! tests that the checkers catch a corrupted history (docs/design.md sections 1, 2 and 6). Replay a
//! failing seed with `DSSS_SEED=S`.

use std::cell::Cell;
use std::collections::BTreeMap;

use dsss::{Codec, Postcard};
use dsss_examples::{Bank, BankError};
use dsss_simulations::workloads::global::{
    GlobalCluster, GlobalRunSettings, LOG_ENTRIES_PER_READ_MAX, LogEntries, ReadLogRequest,
};
use dsss_simulations::workloads::region::SimDiskReader;
use dsss_simulations::workloads::sdk::bank::{
    BANK_OBJECT_ID, BankRead, BankValue, BankWorkload, bank_workload,
};
use dsss_simulations::workloads::sdk::checker::{self, check_all};
use dsss_simulations::workloads::sdk::counter::{COUNTER_OBJECT_ID, CounterRead, counter_workload};
use dsss_simulations::workloads::sdk::history::{
    AppliedRecord, CallCompletion, CallEvent, CallSpec, ClientHistory, Operation, ReadEvent,
    ReplicaRecord, SdkHistory, SyncBarrier,
};
use dsss_simulations::workloads::sdk::leaderboard::{
    LeaderboardRead, LeaderboardValue, LeaderboardWorkload, leaderboard_workload,
};
use dsss_simulations::workloads::sdk::lobby::{LobbyRead, LobbyValue, lobby_workload};
use dsss_simulations::workloads::sdk::{
    DynValue, EXHAUSTIVE_OPERATIONS_MAX, ExhaustiveVerdict, JointHistory, ObjectWorkload,
    SdkReport, SdkRun, SdkRunSettings, erase, example_objects, find_joint_order,
    find_sequential_order, run_bank, run_counter, run_example_objects, run_lobby,
    run_objects_traced, run_sdk_traced,
};
use dsss_simulations::{SimRng, SimTime, assert_deterministic, run_seeds};
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
    let stream_moves = Cell::new(0_u64);
    let retries = Cell::new(0_u64);
    let refused = Cell::new(0_usize);
    let reads = Cell::new(0_usize);
    let sync_reads = Cell::new(0_usize);
    run_seeds(name, seeds, |seed| {
        let settings = SdkRunSettings::new(seed, topology.clone()).with_standard_faults();
        let report = run_bank(&settings).expect("valid settings");
        assert_passed(&report);
        coordinator_leader_crashes
            .set(coordinator_leader_crashes.get() + report.faults.coordinator_leader_crashes);
        long_partitions.set(long_partitions.get() + report.faults.long_region_partitions);
        crashes.set(crashes.get() + report.faults.crashes);
        stream_moves.set(stream_moves.get() + report.counters.sessions.stream_moves);
        retries.set(retries.get() + report.counters.sessions.call_retries);
        refused.set(refused.get() + report.calls_refused_by_object);
        reads.set(reads.get() + report.reads);
        sync_reads.set(sync_reads.get() + report.sync_reads);
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
            stream_moves.get() > 0,
            "no session moved its stream to another member"
        );
        assert!(retries.get() > 0, "no call was retried");
        assert!(refused.get() > 0, "no transfer overdrew");
        assert!(reads.get() > 0, "nothing was read");
        assert!(sync_reads.get() > 0, "no read followed a sync()");
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
    let store = SimDiskReader::new(cluster.disk(11).expect("node 11's disk"));
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
            &store,
            ReadLogRequest {
                request_id: pieces,
                from_position: from,
                wait_us: 0,
                answers_max: 1,
                stream_id: 0,
            },
        )
        .expect("the store holds the log");
        assert_eq!(answer.request_id, pieces);
        assert_eq!(answer.truncated_below, None);
        assert!(!answer.entries.is_empty());
        assert!(answer.entries.len() <= LOG_ENTRIES_PER_READ_MAX);
        for (offset, (position, entry)) in answer.entries.iter().enumerate() {
            assert_eq!(*position, from + offset as u64);
            assert_eq!(&log.cached_record(*position).unwrap().entry, entry);
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
        &store,
        ReadLogRequest {
            request_id: 0,
            from_position: last + 1,
            wait_us: 0,
            answers_max: 1,
            stream_id: 0,
        },
    )
    .expect("the store holds the log");
    assert!(beyond.entries.is_empty());
    assert_eq!(beyond.through_position, last);
    if first > 1 {
        let below = LogEntries::answer(
            log,
            &store,
            ReadLogRequest {
                request_id: 0,
                from_position: first - 1,
                wait_us: 0,
                answers_max: 1,
                stream_id: 0,
            },
        )
        .expect("the store holds the log");
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
            object: BANK_OBJECT_ID.into(),
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
                object: BANK_OBJECT_ID.into(),
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
        object: BANK_OBJECT_ID.into(),
        sequence: next_sequence,
        call: BankWorkload::<Bank>::transfer("account-0", "account-1", 1),
        invoked_at: SimTime::MAX,
        acknowledged: Some((SimTime::MAX, 1)),
        completion: None,
        gave_up_at: None,
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
                object: BANK_OBJECT_ID.into(),
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
        object: BANK_OBJECT_ID.into(),
        sequence,
        call: CallSpec {
            method_id: 0,
            arguments: <Bank as dsss::SharedObject>::schema().encode(),
        },
        invoked_at: SimTime::ZERO,
        acknowledged: None,
        completion: Some(completion(Ok(Vec::new()))),
        gave_up_at: None,
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
        object: BANK_OBJECT_ID.into(),
        sequence,
        call: spec,
        invoked_at: SimTime::ZERO,
        acknowledged: None,
        completion: Some(completion(Ok(bank_result(result)))),
        gave_up_at: None,
    })
}

fn read(read: BankRead, value: BankValue) -> Operation<BankRead, BankValue> {
    Operation::Read(ReadEvent {
        object: BANK_OBJECT_ID.into(),
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
                    object: BANK_OBJECT_ID.into(),
                    sequence: 3,
                    call: CallSpec {
                        method_id: 0,
                        arguments: newer.encode(),
                    },
                    invoked_at: SimTime::ZERO,
                    acknowledged,
                    completion: None,
                    gave_up_at: None,
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

// More objects: a counter, a lobby, a regional leaderboard.

/// Runs `seeds` seeds of `run` on the local topology under the standard faults; every run must
/// pass. Returns the reports.
fn faulty_local_runs(
    name: &str,
    seeds: u64,
    run: impl Fn(&SdkRunSettings) -> Result<SdkReport, String>,
) -> Vec<SdkReport> {
    let mut reports = Vec::new();
    run_seeds(name, seeds, |seed| {
        let settings = SdkRunSettings::new(seed, local_topology()).with_standard_faults();
        let report = run(&settings).expect("valid settings");
        assert_passed(&report);
        reports.push(report);
    });
    reports
}

#[test]
fn a_fault_free_local_counter_keeps_one_order() {
    let report = run_counter(&SdkRunSettings::new(1, local_topology())).expect("valid settings");
    assert_passed(&report);
    assert!(report.calls_completed > 60, "{report}");
    assert!(report.reads > 20, "{report}");
    assert_eq!(report.calls, report.calls_completed, "{report}");
    assert_eq!(report.calls_refused_by_object, 0, "{report}");
}

/// Reference: docs/design.md section 6, "One order" and "Sequential consistency": every add returns,
/// and every read shows, what a replay of the one order gives.
#[test]
fn local_counters_under_faults_keep_every_guarantee() {
    let reports = faulty_local_runs(
        "local_counters_under_faults_keep_every_guarantee",
        20,
        run_counter,
    );
    let completed: usize = reports.iter().map(|report| report.calls_completed).sum();
    let sync_reads: usize = reports.iter().map(|report| report.sync_reads).sum();
    assert!(completed > 0, "no add completed");
    if std::env::var("DSSS_SEED").is_err() {
        assert!(sync_reads > 0, "no read followed a sync()");
        assert!(
            reports.iter().any(|report| report.faults.crashes > 0),
            "no node crashed"
        );
    }
}

#[test]
fn a_fault_free_local_lobby_never_seats_more_than_its_capacity() {
    let report = run_lobby(&SdkRunSettings::new(1, local_topology())).expect("valid settings");
    assert_passed(&report);
    assert!(report.calls_completed > 60, "{report}");
    assert!(report.reads > 20, "{report}");
    assert!(
        report.calls_refused_by_object > 0,
        "no join found the lobby full or the player seated: {report}"
    );
}

/// Reference: docs/design.md section 1: joins and leaves from every region, in one order, never seat
/// more players than seats, nor two in one seat, whatever the faults.
#[test]
fn local_lobbies_under_faults_keep_their_seats_consistent() {
    let reports = faulty_local_runs(
        "local_lobbies_under_faults_keep_their_seats_consistent",
        20,
        run_lobby,
    );
    let refused: usize = reports
        .iter()
        .map(|report| report.calls_refused_by_object)
        .sum();
    let reads: usize = reports.iter().map(|report| report.reads).sum();
    if std::env::var("DSSS_SEED").is_err() {
        assert!(refused > 0, "the lobby refused nothing");
        assert!(reads > 0, "nothing was read");
    }
}

/// The lobby's invariant catches a read that seats a fifth player or two in one seat.
#[test]
fn the_lobby_invariant_refuses_overbooked_seats() {
    let workload = lobby_workload();
    let check = |seats: Vec<Option<u32>>, free_seats: u32| {
        workload.check_read(&LobbyRead::Seats, &LobbyValue::Seats { seats, free_seats })
    };
    assert_eq!(
        check(vec![Some(0), None, Some(3), None, None, Some(1)], 1),
        Ok(())
    );
    assert!(check(vec![Some(0), Some(1), Some(2), Some(3), Some(4), None], 0).is_err());
    assert!(check(vec![Some(0), Some(0), None, None, None, None], 2).is_err());
    assert!(check(vec![Some(0), None, None, None, None, None], 2).is_err());
}

/// Every replica of a regional object applied only the records of its own region's instances,
/// in its region's log order.
fn assert_regional(run: &SdkRun<LeaderboardWorkload>) {
    for (client, replica) in &run.history.replicas {
        assert!(!replica.applied.is_empty(), "{}", run.report);
        for applied in &replica.applied {
            let caller_region = &run.history.clients[&applied.client_id].region;
            assert_eq!(
                caller_region, &replica.region,
                "the replica of client {client} applied a record of {caller_region}"
            );
            assert_eq!(applied.order, (applied.position, 0));
        }
    }
}

/// Reference: docs/design.md section 2, "Object scope": a regional object has copies in its region
/// only, ordered by that region's group alone.
#[test]
fn a_fault_free_local_leaderboard_stays_in_each_region() {
    let settings = SdkRunSettings::new(1, local_topology());
    let run = run_sdk_traced(&settings, leaderboard_workload()).expect("valid settings");
    assert_passed(&run.report);
    assert!(run.report.calls_completed > 60, "{}", run.report);
    assert!(run.report.reads > 20, "{}", run.report);
    assert_regional(&run);
    let regions: std::collections::BTreeSet<&str> = run
        .history
        .replicas
        .values()
        .map(|replica| replica.region.as_str())
        .collect();
    assert_eq!(regions.len(), 3);
}

#[test]
fn local_leaderboards_under_faults_keep_every_guarantee() {
    let completed = Cell::new(0_usize);
    run_seeds(
        "local_leaderboards_under_faults_keep_every_guarantee",
        20,
        |seed| {
            let settings = SdkRunSettings::new(seed, local_topology()).with_standard_faults();
            let run = run_sdk_traced(&settings, leaderboard_workload()).expect("valid settings");
            assert_passed(&run.report);
            assert_regional(&run);
            completed.set(completed.get() + run.report.calls_completed);
        },
    );
    assert!(completed.get() > 0, "no score was recorded");
}

/// The checkers judge each region's board on its own (the exhaustive search too: one order of
/// all regions' calls would explain no history), and name the region of a problem.
#[test]
fn the_checkers_name_the_region_of_a_regional_problem() {
    let mut settings = SdkRunSettings::small(3, local_topology(), 6).with_standard_faults();
    settings.cluster.clients_per_region = 2;
    let run = run_sdk_traced(&settings, leaderboard_workload()).expect("valid settings");
    assert_passed(&run.report);
    match &run.report.exhaustive {
        Some(ExhaustiveVerdict::Consistent { order, .. }) => {
            assert_eq!(order.len(), run.history.operation_count(), "{}", run.report);
        }
        other => panic!("the search gave {other:?}\n{}", run.report),
    }
    let check = |history: &SdkHistory<LeaderboardRead, LeaderboardValue>| {
        check_all(
            &leaderboard_workload(),
            history,
            settings.application.checkpoint_every_records,
            &BTreeMap::new(),
        )
    };
    assert_eq!(check(&run.history), Vec::<String>::new());
    let (&client, replica) = run
        .history
        .replicas
        .iter()
        .find(|(_, replica)| replica.applied.len() > 1)
        .unwrap();
    let region = replica.region.clone();
    let mut skipped = run.history.clone();
    skipped.replicas.get_mut(&client).unwrap().applied.remove(0);
    let problems = check(&skipped);
    assert!(
        problems
            .iter()
            .any(|problem| problem.starts_with(&format!("region {region}: one order"))),
        "{problems:?}"
    );
}

// A method that panics: a deterministic failure, skipped in every copy alike.

/// A counter whose `add` panics on multiples of 7, after it changed the state: the replica
/// must put the state back and skip the call in every copy.
#[dsss::shared_object]
#[derive(Default, Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FragileCounter {
    value: i64,
    adds: u64,
}

#[dsss::methods]
impl FragileCounter {
    /// Adds `amount` and returns the new value; panics when `amount` is a multiple of 7.
    #[mutate(id = 1)]
    pub fn add(&mut self, amount: i64) -> i64 {
        self.value += amount;
        self.adds += 1;
        if amount % 7 == 0 {
            panic!("FragileCounter refuses {amount}, a multiple of 7");
        }
        self.value
    }

    /// The value.
    pub fn value(&self) -> i64 {
        self.value
    }

    /// The adds applied.
    pub fn adds(&self) -> u64 {
        self.adds
    }
}

/// The largest amount one fragile add moves the counter by.
const FRAGILE_AMOUNT_MAX: i64 = 30;

/// What a read of the fragile counter asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FragileRead {
    Value,
    Adds,
}

/// Random adds, about one in five a multiple of 7, and reads of both getters.
struct FragileWorkload;

impl FragileWorkload {
    fn amount(call: &CallSpec) -> Option<i64> {
        (call.method_id == 1)
            .then(|| Postcard::decode::<(i64,)>(&call.arguments).ok())
            .flatten()
            .map(|(amount,)| amount)
    }
}

impl ObjectWorkload for FragileWorkload {
    type Object = FragileCounter;
    type Read = FragileRead;
    type Value = i64;

    fn object_id(&self) -> &str {
        "sim/fragile-counter"
    }

    fn setup_calls(&self) -> Vec<CallSpec> {
        Vec::new()
    }

    fn is_set_up(&self, _object: &FragileCounter) -> bool {
        true
    }

    fn random_call(&self, rng: &mut SimRng) -> CallSpec {
        let amount = rng.range_inclusive_i64(-FRAGILE_AMOUNT_MAX, FRAGILE_AMOUNT_MAX);
        CallSpec {
            method_id: 1,
            arguments: Postcard::encode(&(amount,)).unwrap(),
        }
    }

    fn random_read(&self, rng: &mut SimRng) -> FragileRead {
        if rng.chance(0.5) {
            FragileRead::Value
        } else {
            FragileRead::Adds
        }
    }

    fn read(&self, object: &FragileCounter, read: &FragileRead) -> i64 {
        match read {
            FragileRead::Value => object.value(),
            FragileRead::Adds => i64::try_from(object.adds()).unwrap(),
        }
    }

    fn check_read(&self, _read: &FragileRead, _value: &i64) -> Result<(), String> {
        Ok(())
    }

    fn is_refusal(&self, _call: &CallSpec, _outcome: &Result<Vec<u8>, dsss::MethodError>) -> bool {
        false
    }
}

/// The state after each prefix of `order`, applied to a plain `FragileCounter` (no replica)
/// with every multiple of 7 left out: index k holds the state after k records.
fn states_skipping_multiples_of_seven(order: &[checker::OrderedRecord]) -> Vec<FragileCounter> {
    let mut object = FragileCounter::default();
    let mut states = vec![object.clone()];
    for record in order {
        if let Some(amount) = FragileWorkload::amount(&record.call)
            && amount % 7 != 0
        {
            object.add(amount);
        }
        states.push(object.clone());
    }
    states
}

/// Reference: docs/design.md section 2, "Panics in a method are deterministic failures": the
/// caller gets an error that names the method, every copy skips the call alike (state hashes
/// agree), and the state is the one a log without those calls gives.
#[test]
fn panicking_calls_fail_alike_everywhere_and_leave_no_trace() {
    let panicked = Cell::new(0_usize);
    let succeeded = Cell::new(0_usize);
    run_seeds(
        "panicking_calls_fail_alike_everywhere_and_leave_no_trace",
        20,
        |seed| {
            let settings = SdkRunSettings::new(seed, local_topology()).with_standard_faults();
            let run = run_sdk_traced(&settings, FragileWorkload).expect("valid settings");
            assert_passed(&run.report);
            for (client, call) in run.history.calls() {
                let (Some(amount), Some(completion)) =
                    (FragileWorkload::amount(&call.call), &call.completion)
                else {
                    continue;
                };
                if amount % 7 == 0 {
                    match &completion.outcome {
                        Err(dsss::MethodError::Panicked {
                            type_name,
                            method,
                            message,
                        }) => {
                            assert_eq!(*method, "add");
                            assert!(type_name.ends_with("FragileCounter"), "{type_name}");
                            assert!(message.contains("a multiple of 7"), "{message}");
                        }
                        other => {
                            panic!("c{client} s{} add({amount}) gave {other:?}", call.sequence)
                        }
                    }
                    panicked.set(panicked.get() + 1);
                } else {
                    assert!(
                        completion.outcome.is_ok(),
                        "c{client} s{} add({amount}) gave {:?}",
                        call.sequence,
                        completion.outcome
                    );
                    succeeded.set(succeeded.get() + 1);
                }
            }
            let (order, problems) = checker::total_order(&run.history);
            assert!(problems.is_empty(), "{problems:?}");
            let states = states_skipping_multiples_of_seven(&order);
            for (client, read) in run.history.reads() {
                let state = &states[usize::try_from(read.records_applied).unwrap()];
                let expected = FragileWorkload.read(state, &read.read);
                assert_eq!(
                    read.value, expected,
                    "client {client} read {:?} after {} records",
                    read.read, read.records_applied
                );
            }
        },
    );
    assert!(panicked.get() > 0, "no add panicked");
    assert!(succeeded.get() > 0, "no add succeeded");
}

// Several objects in one instance, and one order across them.

/// A completed call of `object` with `outcome`, for hand-made joint histories.
fn joint_call(
    object: &str,
    sequence: u64,
    spec: CallSpec,
    outcome: Vec<u8>,
) -> Operation<DynValue, DynValue> {
    Operation::Call(CallEvent {
        object: object.into(),
        sequence,
        call: spec,
        invoked_at: SimTime::ZERO,
        acknowledged: None,
        completion: Some(completion(Ok(outcome))),
        gave_up_at: None,
    })
}

/// A read of `object`, for hand-made joint histories.
fn joint_read<R, V>(object: &str, read: R, value: V) -> Operation<DynValue, DynValue>
where
    R: std::any::Any + std::fmt::Debug + PartialEq,
    V: std::any::Any + std::fmt::Debug + PartialEq,
{
    Operation::Read(ReadEvent {
        object: object.into(),
        read: DynValue::new(read),
        value: DynValue::new(value),
        records_applied: 0,
        at: SimTime::ZERO,
        sync: None,
    })
}

/// Two clients, each holding the global counter and the global bank. P adds 5 to the counter
/// and then reads the bank, where it finds no account "x"; Q opens account "x" and then reads
/// the counter, finding `counter_seen_by_q`.
fn p_and_q(counter_seen_by_q: i64) -> JointHistory {
    let p = vec![
        joint_call(
            COUNTER_OBJECT_ID,
            1,
            dsss_simulations::workloads::sdk::counter::CounterWorkload::add(5),
            Postcard::encode(&5_i64).unwrap(),
        ),
        joint_read(
            BANK_OBJECT_ID,
            BankRead::Balance("x".into()),
            BankValue::Balance(None),
        ),
    ];
    let q = vec![
        joint_call(BANK_OBJECT_ID, 1, open("x", 10), bank_result(Ok(()))),
        joint_read(COUNTER_OBJECT_ID, CounterRead::Value, counter_seen_by_q),
    ];
    let mut history = JointHistory::default();
    for (client, operations) in [(1_u64, p), (2, q)] {
        history.clients.insert(
            client,
            ClientHistory {
                client,
                region: "hand".into(),
                operations,
            },
        );
    }
    history
}

#[test]
fn the_joint_search_refuses_two_objects_read_stale_crosswise_that_each_object_alone_accepts() {
    let states_max = 100_000;
    let workloads = vec![erase(bank()), erase(counter_workload())];
    // P: add to the counter, then the bank does not show Q's account; Q: open the account,
    // then the counter does not show P's add. Each object alone has an order (the stale read
    // first), but P's add precedes its read, which precedes Q's open, which precedes Q's read,
    // which precedes P's add: no one order explains both objects.
    let stale = p_and_q(0);
    let counter_alone = stale.object_history::<CounterRead, i64>(|name| name == COUNTER_OBJECT_ID);
    let bank_alone = stale.object_history::<BankRead, BankValue>(|name| name == BANK_OBJECT_ID);
    assert!(
        find_sequential_order(&counter_workload(), &counter_alone.clients, states_max)
            .is_consistent(),
        "the counter alone has an order"
    );
    assert!(
        find_sequential_order(&bank(), &bank_alone.clients, states_max).is_consistent(),
        "the bank alone has an order"
    );
    match find_joint_order(&workloads, &stale.clients, states_max) {
        ExhaustiveVerdict::Inconsistent { longest_prefix, .. } => {
            assert!(longest_prefix.len() < 4, "{longest_prefix:?}");
        }
        other => panic!("the joint search accepted a crosswise stale history: {other:?}"),
    }
    // Q sees P's add: P's add, P's read, Q's open, Q's read is one order.
    match find_joint_order(&workloads, &p_and_q(5).clients, states_max) {
        ExhaustiveVerdict::Consistent { order, .. } => {
            assert_eq!(order, vec![(1, 0), (1, 1), (2, 0), (2, 1)]);
        }
        other => panic!("the joint search refused a valid history: {other:?}"),
    }
    // An object no workload holds is a clear refusal to search, not a verdict.
    let mut unknown = p_and_q(5);
    if let Some(Operation::Read(read)) = unknown
        .clients
        .get_mut(&2)
        .and_then(|client| client.operations.get_mut(1))
    {
        read.object = "sim/nobody".into();
    }
    match find_joint_order(&workloads, &unknown.clients, states_max) {
        ExhaustiveVerdict::TooLarge { reason } => {
            assert!(reason.contains("sim/nobody"), "{reason}")
        }
        other => panic!("the search judged an object it cannot replay: {other:?}"),
    }
}

/// Instances holding every example object at once (a global bank, counter and lobby, a
/// regional leaderboard) under the standard faults.
fn example_objects_under_faults(seed: u64) -> SdkRunSettings {
    SdkRunSettings::new(seed, local_topology()).with_standard_faults()
}

#[test]
fn instances_holding_every_example_object_under_faults_keep_every_guarantee() {
    let calls = Cell::new(0_usize);
    let sync_reads = Cell::new(0_usize);
    let stream_moves = Cell::new(0_u64);
    run_seeds("sdk example objects", 6, |seed| {
        let report =
            run_example_objects(&example_objects_under_faults(seed)).expect("valid settings");
        assert_passed(&report);
        assert_eq!(report.objects.len(), 4, "{report}");
        calls.set(calls.get() + report.calls_completed);
        sync_reads.set(sync_reads.get() + report.sync_reads);
        stream_moves.set(stream_moves.get() + report.counters.sessions.stream_moves);
    });
    if std::env::var("DSSS_SEED").is_err() {
        assert!(calls.get() > 0, "no call completed");
        assert!(sync_reads.get() > 0, "no read followed a sync()");
        assert!(stream_moves.get() > 0, "no session moved its stream");
    }
}

#[test]
fn small_multi_object_histories_are_explained_by_one_order_without_positions() {
    run_seeds("sdk small example objects", 3, |seed| {
        let settings = SdkRunSettings::small(seed, global_topology(), 6).with_standard_faults();
        let run = run_objects_traced(&settings, example_objects()).expect("valid settings");
        assert_passed(&run.report);
        assert!(
            run.history.operation_count() <= EXHAUSTIVE_OPERATIONS_MAX,
            "{}",
            run.report
        );
        assert!(
            matches!(
                run.report.exhaustive,
                Some(ExhaustiveVerdict::Consistent { .. })
            ),
            "{}",
            run.report
        );
    });
}
