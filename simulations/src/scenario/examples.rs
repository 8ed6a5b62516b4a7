//! A run of the example objects (`[objects] examples = [...]` in a workload file): the sdk
//! workload's application instances ([`crate::workloads::sdk`]), each holding the named
//! example objects at once through the SDK's own client session, on the same cluster of real
//! region nodes and coordinator replicas under the same faults, measured like a register run.
//!
//! Checked on every run, by the sdk checkers: copies agree on the state hash at equal record
//! counts; each object's own invariant holds in every read (the bank's money is never created
//! or destroyed, the lobby never seats more than its capacity); each object's history is
//! sequentially consistent with linearizable `sync()` reads; no acknowledged call is lost or
//! applied twice; the copies converge; and, on every history small enough, the exhaustive
//! search finds one order across all objects that explains every result and read with no
//! position the system reports.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use dsss_wire::Scope;

use super::Scenario;
use super::files::ExampleObject;
use crate::workloads::sdk::history::{JointHistory, Operation};
use crate::workloads::sdk::{
    AnyObjectWorkload, EXHAUSTIVE_OPERATIONS_MAX, ExhaustiveVerdict, JointRun, SdkRunSettings,
    bank, counter, erase, leaderboard, lobby, run_objects_with_progress,
};
use crate::workloads::session::{
    InstanceHistory, SessionHistories, SessionOperation, SessionReport,
};

/// The object workload of each example object, as `dsss sim sdk` runs it.
pub fn example_workloads(examples: &[ExampleObject]) -> Vec<Rc<dyn AnyObjectWorkload>> {
    examples
        .iter()
        .map(|example| match example {
            ExampleObject::Bank => erase(
                bank::bank_workload(bank::BANK_ACCOUNT_COUNT)
                    .expect("the standard account count is in bounds"),
            ),
            ExampleObject::Counter => erase(counter::counter_workload()),
            ExampleObject::Lobby => erase(lobby::lobby_workload()),
            ExampleObject::Leaderboard => erase(leaderboard::leaderboard_workload()),
        })
        .collect()
}

/// The sdk run `scenario` asks for, or why it cannot be run.
pub fn sdk_settings(scenario: &Scenario) -> Result<SdkRunSettings, String> {
    let workload = &scenario.workload;
    // The workload file refuses these with examples; a sweep's --set may still ask for them.
    if workload.rate_per_second.is_some() {
        return Err(
            "rate_per_second: the example objects' instances run a closed loop (think_time)"
                .to_owned(),
        );
    }
    if workload.payload_bytes != (0, 0) {
        return Err(
            "payload bytes: each example call carries its method's own arguments".to_owned(),
        );
    }
    let mut settings = SdkRunSettings::new(scenario.seed, scenario.topology.clone());
    scenario.set_cluster(&mut settings.cluster)?;
    let application = &mut settings.application;
    application.think_time_min = workload.think_time_min;
    application.think_time_max = workload.think_time_max;
    application.call_share = workload.write_share;
    application.sync_read_share = workload.sync_share_of_reads();
    application.operations_max = workload.operations_per_instance_max;
    // Every history small enough is searched; a larger one is reported as too large.
    settings.exhaustive_operations_max = EXHAUSTIVE_OPERATIONS_MAX;
    settings.validate()?;
    Ok(settings)
}

/// Runs the example objects of `scenario` and checks them; the report and histories in the
/// form of a register run's, so that one measure and one export serve both.
pub fn run_examples(
    scenario: &Scenario,
    progress: &mut dyn FnMut(Duration),
) -> Result<(SessionReport, SessionHistories), String> {
    let settings = sdk_settings(scenario)?;
    let workloads = example_workloads(&scenario.workload.examples);
    let run = run_objects_with_progress(&settings, workloads.clone(), progress)?;
    let histories = histories_of(&run, &workloads);
    let sdk = &run.report;
    let mut checked = "state hashes of copies, each object's invariant, sequential consistency \
                       per object with linearizable sync() reads, exactly once, convergence"
        .to_owned();
    let mut remarks = Vec::new();
    match &sdk.exhaustive {
        Some(ExhaustiveVerdict::Consistent {
            order,
            states_explored,
        }) => {
            checked += ", one order across objects";
            remarks.push(format!(
                "exhaustive search: one order of {} operations across the objects explains \
                 the history ({states_explored} states)",
                order.len()
            ));
        }
        Some(ExhaustiveVerdict::TooLarge { reason }) => {
            remarks.push(format!("exhaustive search: not made, {reason}"));
        }
        // An inconsistent history is among the problems.
        Some(ExhaustiveVerdict::Inconsistent { .. }) | None => {}
    }
    let mut report = SessionReport {
        seed: sdk.seed,
        instances: sdk.instances,
        faults: sdk.faults,
        simulated: sdk.simulated,
        writes: 0,
        writes_failed: 0,
        reads: 0,
        sync_reads: 0,
        syncs_failed: usize::try_from(sdk.counters.syncs_failed).unwrap_or(usize::MAX),
        proposals_unanswered: usize::try_from(sdk.counters.proposals_unanswered)
            .unwrap_or(usize::MAX),
        counters: sdk.counters.sessions,
        epoch_skips: run.epoch_skips,
        checked,
        remarks,
        // A run that did not converge says so among them.
        problems: sdk.problems.clone(),
        trace_hash: sdk.trace_hash.clone(),
        work: sdk.work,
        replay: format!("the same sdk run settings with seed {}", sdk.seed),
    };
    report.count_operations(&histories.instances);
    Ok((report, histories))
}

/// The operations of `run` as instance histories: a call with its method's name and its
/// encoded arguments and result, a read described by the object workload's own types, and
/// every barrier given up.
fn histories_of(run: &JointRun, workloads: &[Rc<dyn AnyObjectWorkload>]) -> SessionHistories {
    let JointHistory {
        clients,
        syncs_given_up,
        ..
    } = &run.history;
    let workload_of = |object: &str| {
        workloads
            .iter()
            .find(|workload| workload.holds(object))
            .cloned()
    };
    let mut instances = BTreeMap::new();
    for (&client, history) in clients {
        let mut instance = InstanceHistory::new(&history.region);
        for operation in &history.operations {
            match operation {
                Operation::Call(call) => {
                    let workload = workload_of(&call.object);
                    let completed = call.completion.as_ref();
                    instance.push(SessionOperation::Call {
                        object: call.object.clone(),
                        global: workload
                            .as_ref()
                            .is_none_or(|workload| workload.scope() == Scope::Global),
                        method: workload.as_ref().map_or_else(
                            || format!("method {}", call.call.method_id),
                            |workload| workload.method_name(call.call.method_id),
                        ),
                        arguments: call.call.arguments.clone(),
                        outcome: completed.map(|completion| {
                            completion
                                .outcome
                                .clone()
                                .map_err(|error| error.to_string())
                        }),
                        began_at: call.invoked_at,
                        ended_at: completed.map_or_else(
                            || call.gave_up_at.unwrap_or(run.operations_until),
                            |completion| completion.completed_at,
                        ),
                    });
                }
                Operation::Read(read) => instance.push(SessionOperation::Query {
                    object: read.object.clone(),
                    read: format!("{:?}", read.read),
                    value: format!("{:?}", read.value),
                    synced: read.sync.is_some(),
                    records_applied: read.records_applied,
                    began_at: read.sync.map_or(read.at, |barrier| barrier.began_at),
                    ended_at: read.at,
                }),
            }
        }
        for given_up in syncs_given_up.get(&client).into_iter().flatten() {
            instance.push(SessionOperation::SyncFailed {
                object: Some(given_up.object.clone()),
                began_at: given_up.began_at,
                ended_at: given_up.ended_at,
            });
        }
        instances.insert(client, instance);
    }
    SessionHistories {
        instances,
        operations_from: run.operations_from,
        operations_until: run.operations_until,
        global_call_stages: run.global_call_stages.clone(),
        node_busy_shares: run.node_busy_shares.clone(),
    }
}
