//! `dsss sim compare`: the same workload file and fault script run in the simulator and
//! against real processes, side by side, so that the simulator's figures stay honest.
//!
//! The simulated run is `dsss sim run`'s. The real one starts `dsss up --no-demo --insecure`
//! (nine node processes on RocksDB for the local topology, with the WAN delays of the topology
//! emulated by their transport) in a temporary directory, runs the workload's application
//! instances there as `dsss::Client`s holding the same registers and doing the same mix at the
//! same rate, and carries out the fault script with signals: a node crash is SIGKILL and a
//! restart by `dsss up` after the downtime, a pause is SIGSTOP then SIGCONT. The real histories
//! go through the same measures and the same order check as the simulated ones. The command
//! prints both tables and, per region and operation class, the simulated p50 and p99 over the
//! real ones, then availability and the longest stall side by side.
//!
//! What signals cannot do is refused, naming it: cuts between regions, clock steps, packet
//! faults and the seeded swarm need the simulator's network.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use dsss::region_client::RegionConnections;
use dsss_examples::Register;
use dsss_simulations::SimRng;
use dsss_simulations::scenario::results::RunResults;
use dsss_simulations::scenario::{Scenario, Workload, measure};
use dsss_simulations::time::SimTime;
use dsss_simulations::workloads::global::script::ScriptedFaultKind;
use dsss_simulations::workloads::session::instance::ARRIVALS_QUEUED_MAX;
use dsss_simulations::workloads::session::{
    InstanceHistory, SessionHistories, SessionOperation, check_histories,
};
use dsss_wire::proto;
use dsss_wire::tls::Security;

use crate::bench_command::BenchDirectory;
use crate::sim_command::{EXIT_BAD_INPUT, EXIT_CHECK_FAILED};
use crate::sim_run_command::{ScenarioArgs, scenario_of};
use crate::up_child::UpChild;
use crate::up_control;

/// The longest a real operation may take before the instance gives it up as failed.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the real instances may take to finish their last operations after the window.
const DRAIN_MAX: Duration = Duration::from_secs(60);

/// Options of `dsss sim compare`.
#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// The seed of the simulated run and of the real instances' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// A fault carried out with a signal, at a time after the window opens.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SignalFault {
    /// SIGKILL, then `dsss up` starts the node again after the downtime.
    Crash { target: Target, downtime: Duration },
    /// SIGSTOP, then SIGCONT after the length.
    Pause { target: Target, length: Duration },
}

/// The node a fault hits.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// This node.
    Node(u64),
    /// Whichever member leads the region when the fault happens (its Status says so).
    LeaderOf(String),
}

/// The faults of `scenario` as signals, or the first one that signals cannot give.
fn signal_faults(scenario: &Scenario) -> Result<Vec<(Duration, SignalFault)>, String> {
    if scenario.faults.standard_swarm {
        return Err("the seeded swarm ([swarm] preset) needs the simulator's network".to_owned());
    }
    if scenario.faults.script.network.is_some() {
        return Err("packet faults ([network]) need the simulator's network".to_owned());
    }
    let mut faults = Vec::new();
    for (index, fault) in scenario.faults.script.faults.iter().enumerate() {
        let signal = match fault.kind {
            ScriptedFaultKind::CrashNode { node, downtime } => SignalFault::Crash {
                target: Target::Node(node),
                downtime,
            },
            ScriptedFaultKind::PauseNode { node, length } => SignalFault::Pause {
                target: Target::Node(node),
                length,
            },
            ScriptedFaultKind::CrashRegionLeader {
                ref region,
                downtime,
            } => SignalFault::Crash {
                target: Target::LeaderOf(region.clone()),
                downtime,
            },
            ScriptedFaultKind::PauseRegionLeader { ref region, length } => SignalFault::Pause {
                target: Target::LeaderOf(region.clone()),
                length,
            },
            ref other => {
                return Err(format!(
                    "[[fault]] {index} ({other:?}) cannot be done with signals to real \
                     processes; `dsss sim compare` takes crash_node, pause_node, \
                     crash_region_leader and pause_region_leader"
                ));
            }
        };
        faults.push((fault.at, signal));
    }
    Ok(faults)
}

/// `dsss sim compare`.
pub(crate) fn run(args: &CompareArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let prepared = scenario_of(&args.scenario, args.seed).and_then(|scenario| {
        if scenario.runs_examples() {
            return Err(
                "the workload holds example objects ([objects] examples); `dsss sim \
                        compare` runs workloads of registers (global_registers), whose \
                        instances real processes run as dsss::Client"
                    .to_owned(),
            );
        }
        scenario.session_settings()?;
        let faults = signal_faults(&scenario)?;
        Ok((scenario, faults))
    });
    let (scenario, faults) = match prepared {
        Ok(prepared) => prepared,
        Err(message) => {
            let _ = writeln!(stderr, "dsss sim compare: {message}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let _ = writeln!(stdout, "simulated (seed {}):", args.seed);
    let simulated = match scenario.run() {
        Ok(report) => {
            let _ = writeln!(stdout, "{}\n{}", report.session, report.results.table());
            if !report.passed() {
                let _ = writeln!(stdout, "the simulated run failed its checks");
                return ExitCode::from(EXIT_CHECK_FAILED);
            }
            report.results
        }
        Err(error) => {
            let _ = writeln!(stdout, "the simulated run failed: {error}");
            return ExitCode::from(EXIT_CHECK_FAILED);
        }
    };
    let _ = writeln!(
        stdout,
        "\nreal processes (dsss up --no-demo --insecure, {} fault(s) by signal):",
        faults.len()
    );
    let _ = stdout.flush();
    let (real, problems) = match real_run(&scenario, &faults, args.scenario.topology.as_deref()) {
        Ok(real) => real,
        Err(error) => {
            let _ = writeln!(stderr, "dsss sim compare: the real run failed: {error}");
            return ExitCode::from(EXIT_CHECK_FAILED);
        }
    };
    let _ = writeln!(stdout, "{}", real.table());
    let _ = writeln!(stdout, "\n{}", comparison(&simulated, &real));
    if problems.is_empty() {
        let _ = writeln!(
            stdout,
            "real histories: one order across objects, linearizable sync() reads: ok"
        );
        ExitCode::SUCCESS
    } else {
        for problem in &problems {
            let _ = writeln!(stdout, "PROBLEM in the real run: {problem}");
        }
        ExitCode::from(EXIT_CHECK_FAILED)
    }
}

/// The side-by-side table: per region and class, the simulated p50 and p99 beside the real
/// ones and their ratio; then per region availability and the longest stall.
fn comparison(simulated: &RunResults, real: &RunResults) -> String {
    let ratio = |sim: f64, real: f64| {
        if real > 0.0 {
            format!("{:>9.3}", sim / real)
        } else {
            format!("{:>9}", "-")
        }
    };
    let mut out = format!(
        "{:<16} {:<15} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "region", "operation", "sim p50", "real p50", "sim/real", "sim p99", "real p99", "sim/real"
    );
    for (region, sim_region) in &simulated.regions {
        let Some(real_region) = real.regions.get(region) else {
            continue;
        };
        for (class, sim_class) in &sim_region.operations {
            let (Some(sim), Some(real)) = (
                sim_class.latency_ms,
                real_region
                    .operations
                    .get(class)
                    .and_then(|class| class.latency_ms),
            ) else {
                continue;
            };
            if class == "local_read" {
                // No message: both are zero.
                continue;
            }
            out += &format!(
                "\n{region:<16} {class:<15} {:>9.2} {:>9.2} {} {:>9.2} {:>9.2} {}",
                sim.p50,
                real.p50,
                ratio(sim.p50, real.p50),
                sim.p99,
                real.p99,
                ratio(sim.p99, real.p99)
            );
        }
    }
    out += &format!(
        "\n\n{:<16} {:>10} {:>10} {:>12} {:>12} {:>9}",
        "region", "sim avail", "real avail", "sim stall", "real stall", "sim/real"
    );
    for (region, sim_region) in &simulated.regions {
        let Some(real_region) = real.regions.get(region) else {
            continue;
        };
        out += &format!(
            "\n{region:<16} {:>10.3} {:>10.3} {:>9.1} ms {:>9.1} ms {}",
            sim_region.availability,
            real_region.availability,
            sim_region.longest_stall_ms,
            real_region.longest_stall_ms,
            ratio(sim_region.longest_stall_ms, real_region.longest_stall_ms)
        );
    }
    out
}

/// Runs the workload against a `dsss up` cluster: its measures and the order check's
/// problems.
fn real_run(
    scenario: &Scenario,
    faults: &[(Duration, SignalFault)],
    topology_path: Option<&Path>,
) -> Result<(RunResults, Vec<String>), String> {
    let directory = BenchDirectory::create()?;
    let mut cluster = UpChild::start(topology_path, directory.path(), &["--insecure"])?;
    let outcome = cluster
        .wait_until_ready(&mut std::io::sink())
        .and_then(|()| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|error| format!("cannot start the async runtime: {error}"))?;
            runtime.block_on(drive(scenario, faults, directory.path()))
        });
    let stopped = cluster.stop();
    let histories = outcome?;
    stopped?;
    let problems = check_histories(&histories.instances);
    Ok((measure(&scenario.topology, &histories), problems))
}

/// One real application instance.
struct RealInstance {
    index: u64,
    region: String,
    client: dsss::Client,
    registers: BTreeMap<String, <Register as dsss::SharedObject>::Handle>,
}

/// Opens every instance, runs the window with the faults, and collects the histories.
async fn drive(
    scenario: &Scenario,
    faults: &[(Duration, SignalFault)],
    directory: &Path,
) -> Result<SessionHistories, String> {
    let workload = &scenario.workload;
    // The nodes run plaintext (`--insecure`): the [tls] files need not exist.
    let mut plain = scenario.topology.clone();
    plain.tls = None;
    let origin = Instant::now();
    let mut instances = Vec::new();
    for region in &plain.regions {
        for _ in 0..workload.instances_per_region {
            let index = instances.len() as u64 + 1;
            let config = dsss::Config::from_parsed_topology(&plain, &region.id)?;
            let client = dsss::Client::connect(config)
                .await
                .map_err(|error| format!("instance {index} in {}: {error}", region.id))?;
            let mut registers = BTreeMap::new();
            for global in 0..workload.global_registers {
                let name = format!("register/global-{global}");
                let handle = client
                    .open::<Register>(&name)
                    .await
                    .map_err(|error| format!("instance {index} opening {name}: {error}"))?;
                registers.insert(name, handle);
            }
            if workload.regional_register {
                let name = format!("register/{}", region.id);
                let handle = client
                    .open_regional::<Register>(&name)
                    .await
                    .map_err(|error| format!("instance {index} opening {name}: {error}"))?;
                registers.insert(name, handle);
            }
            instances.push(RealInstance {
                index,
                region: region.id.clone(),
                client,
                registers,
            });
        }
    }
    let from = Instant::now();
    let until = from + scenario.duration;
    let run_dir = directory.to_owned();
    let fault_tasks: Vec<_> = faults
        .iter()
        .map(|(at, fault)| {
            let (at, fault, run_dir) = (*at, fault.clone(), run_dir.clone());
            let topology = plain.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until((from + at).into()).await;
                signal(fault, &topology, &run_dir).await
            })
        })
        .collect();
    let total = instances.len();
    // The final round starts once every instance stopped operating, as in the simulator.
    let window_done = Arc::new(tokio::sync::Barrier::new(total));
    let tasks: Vec<_> = instances
        .into_iter()
        .map(|instance| {
            let workload = workload.clone();
            let seed = scenario.seed;
            let window_done = Arc::clone(&window_done);
            tokio::spawn(async move {
                let (instance, mut history) =
                    operate(instance, workload, total, seed, origin, from, until).await;
                window_done.wait().await;
                final_round(&instance, &mut history, origin).await;
                (instance.index, history)
            })
        })
        .collect();
    let mut histories = BTreeMap::new();
    for task in tasks {
        let (index, history) = tokio::time::timeout(scenario.duration + DRAIN_MAX, task)
            .await
            .map_err(|_| "an instance did not finish its last operation in time".to_owned())?
            .map_err(|error| format!("an instance stopped: {error}"))?;
        histories.insert(index, history);
    }
    for task in fault_tasks {
        task.await
            .map_err(|error| format!("a fault stopped: {error}"))??;
    }
    Ok(SessionHistories {
        instances: histories,
        operations_from: at(origin, from),
        operations_until: at(origin, until),
        global_call_stages: Vec::new(),
        node_busy_shares: BTreeMap::new(),
    })
}

/// `instant` as time since `origin`, on the simulated runs' scale.
fn at(origin: Instant, instant: Instant) -> SimTime {
    SimTime::from_micros(u64::try_from(instant.duration_since(origin).as_micros()).unwrap_or(0))
}

/// The member that says it leads `region` now, asking each over its Status call.
async fn region_leader(topology: &dsss_topology::Topology, region: &str) -> Result<u64, String> {
    let members: Vec<(u64, String)> = topology
        .regions
        .iter()
        .find(|candidate| candidate.id == region)
        .ok_or_else(|| format!("no region {region} in the topology"))?
        .nodes
        .iter()
        .map(|node| (node.id, node.address.clone()))
        .collect();
    let connections = RegionConnections::with_security(&members, &Security::Plaintext)
        .map_err(|error| format!("connecting to {region}: {error}"))?;
    for (node_id, _) in &members {
        if let Ok(status) = connections.status(*node_id).await
            && status.role == proto::NodeRole::Leader as i32
        {
            return Ok(*node_id);
        }
    }
    Err(format!("no member of {region} says it leads"))
}

/// Carries out one fault on the cluster `dsss up` runs in `directory`.
async fn signal(
    fault: SignalFault,
    topology: &dsss_topology::Topology,
    directory: &Path,
) -> Result<(), String> {
    let pid_of = |node: u64| -> Result<u32, String> {
        let file = directory.join(up_control::node_pid_file(node));
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| format!("node {node} has no pid in {}", file.display()))
    };
    let node_of = async |target: Target| match target {
        Target::Node(node) => Ok(node),
        Target::LeaderOf(region) => region_leader(topology, &region).await,
    };
    match fault {
        SignalFault::Crash { target, downtime } => {
            let node = node_of(target).await?;
            up_control::signal(pid_of(node)?, "KILL");
            tokio::time::sleep(downtime).await;
            let request = directory.join(up_control::restart_request_file(node));
            std::fs::write(&request, b"")
                .map_err(|error| format!("cannot ask for node {node}'s restart: {error}"))?;
        }
        SignalFault::Pause { target, length } => {
            let node = node_of(target).await?;
            let pid = pid_of(node)?;
            up_control::signal(pid, "STOP");
            tokio::time::sleep(length).await;
            up_control::signal(pid, "CONT");
        }
    }
    Ok(())
}

/// One instance's loop, as the simulated instance does it: closed loop with think times, or
/// open loop with Poisson arrivals and a bounded backlog, each latency from the arrival.
async fn operate(
    instance: RealInstance,
    workload: Workload,
    instances: usize,
    seed: u64,
    origin: Instant,
    from: Instant,
    until: Instant,
) -> (RealInstance, InstanceHistory) {
    let mut rng = SimRng::new(seed ^ instance.index.rotate_left(32));
    let mut history = InstanceHistory::new(&instance.region);
    let mut next_value = 1;
    let rate_per_instance = workload
        .rate_per_second
        .map(|rate| rate / instances.max(1) as f64);
    let mut backlog: VecDeque<Instant> = VecDeque::new();
    let mut next_arrival = from;
    let mut operations = 0;
    loop {
        let began = match rate_per_instance {
            None => {
                let span = workload.think_time_max - workload.think_time_min;
                let draw = rng.next_f64();
                tokio::time::sleep(workload.think_time_min + span.mul_f64(draw)).await;
                Instant::now()
            }
            Some(rate) => {
                let now = Instant::now();
                while next_arrival <= now && next_arrival < until {
                    history.arrivals += 1;
                    if backlog.len() < ARRIVALS_QUEUED_MAX {
                        backlog.push_back(next_arrival);
                    } else {
                        history.arrivals_shed += 1;
                    }
                    let uniform = 1.0 - rng.next_f64();
                    next_arrival += Duration::from_secs_f64(-uniform.ln() / rate);
                }
                match backlog.pop_front() {
                    Some(arrived) => arrived,
                    None if next_arrival >= until => break,
                    None => {
                        tokio::time::sleep_until(next_arrival.into()).await;
                        continue;
                    }
                }
            }
        };
        if Instant::now() >= until || operations >= workload.operations_per_instance_max {
            break;
        }
        operations += 1;
        let names: Vec<&String> = instance.registers.keys().collect();
        let object = names[workload.popularity.pick(names.len(), rng.next_f64())].clone();
        let reads = workload.local_read_share + workload.sync_read_share;
        if rng.next_f64() < workload.write_share {
            let value = (instance.index << 32) | next_value;
            next_value += 1;
            let handle = &instance.registers[&object];
            let (smallest, largest) = workload.payload_bytes;
            let call = async {
                if largest == 0 {
                    handle.write(value).await
                } else {
                    let size =
                        smallest + (rng.next_u64() % (largest - smallest + 1) as u64) as usize;
                    handle.write_with_payload(value, vec![0; size]).await
                }
            };
            let replaced = tokio::time::timeout(OPERATION_TIMEOUT, call)
                .await
                .ok()
                .and_then(Result::ok);
            let ended = Instant::now();
            history.push(SessionOperation::Write {
                object,
                value,
                replaced,
                began_at: at(origin, began),
                ended_at: at(origin, ended),
            });
            for name in instance.registers.keys() {
                read(
                    &instance,
                    &mut history,
                    name,
                    false,
                    at(origin, ended),
                    ended,
                    origin,
                );
            }
        } else if reads > 0.0 && rng.next_f64() < workload.sync_read_share / reads {
            let synced = tokio::time::timeout(OPERATION_TIMEOUT, instance.client.sync()).await;
            let ended = Instant::now();
            if matches!(synced, Ok(Ok(()))) {
                read(
                    &instance,
                    &mut history,
                    &object,
                    true,
                    at(origin, began),
                    ended,
                    origin,
                );
            } else {
                history.push(SessionOperation::SyncFailed {
                    object: Some(object),
                    began_at: at(origin, began),
                    ended_at: at(origin, ended),
                });
            }
        } else {
            read(
                &instance,
                &mut history,
                &object,
                false,
                at(origin, began),
                Instant::now(),
                origin,
            );
        }
    }
    (instance, history)
}

/// After the window: a `sync()`, then a read of every register, for the convergence check.
async fn final_round(instance: &RealInstance, history: &mut InstanceHistory, origin: Instant) {
    let began = Instant::now();
    match tokio::time::timeout(OPERATION_TIMEOUT, instance.client.sync()).await {
        Ok(Ok(())) => {
            let ended = Instant::now();
            for name in instance.registers.keys() {
                read(
                    instance,
                    history,
                    name,
                    true,
                    at(origin, began),
                    ended,
                    origin,
                );
            }
        }
        _ => history.push(SessionOperation::SyncFailed {
            object: None,
            began_at: at(origin, began),
            ended_at: at(origin, Instant::now()),
        }),
    }
}

/// Records a read of `name`'s local copy.
fn read(
    instance: &RealInstance,
    history: &mut InstanceHistory,
    name: &str,
    synced: bool,
    began_at: SimTime,
    ended: Instant,
    origin: Instant,
) {
    let handle = &instance.registers[name];
    history.push(SessionOperation::Read {
        object: name.to_owned(),
        value: handle.read(Register::value),
        synced,
        position: handle.position(),
        began_at,
        ended_at: at(origin, ended),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsss_simulations::scenario::{parse_faults, parse_workload};

    fn scenario(faults: &str) -> Scenario {
        let workload = "instances_per_region = 1\n[objects]\nglobal_registers = 1\n[mix]\n\
                        write = 1.0\nlocal_read = 0.0\nsync_read = 0.0\n[arrival]\n\
                        think_time = [\"1ms\", \"2ms\"]\n";
        Scenario {
            topology: dsss_topology::local_default(),
            workload: parse_workload(workload).unwrap(),
            faults: parse_faults(faults).unwrap(),
            seed: 1,
            duration: Duration::from_secs(5),
            node_costs: dsss_simulations::NodeCosts::FREE,
            planted_seal_without_a_region: false,
        }
    }

    #[test]
    fn crashes_and_pauses_become_signals_and_the_rest_is_refused_by_name() {
        let faults = signal_faults(&scenario(
            "[[fault]]\nat = \"1s\"\nkind = \"crash_node\"\nnode = 12\nfor = \"500ms\"\n\
             [[fault]]\nat = \"2s\"\nkind = \"pause_node\"\nnode = 21\nfor = \"1s\"\n\
             [[fault]]\nat = \"3s\"\nkind = \"pause_region_leader\"\nregion = \"local-b\"\n\
             for = \"1s\"\n",
        ))
        .unwrap();
        assert_eq!(
            faults,
            [
                (
                    Duration::from_secs(1),
                    SignalFault::Crash {
                        target: Target::Node(12),
                        downtime: Duration::from_millis(500)
                    }
                ),
                (
                    Duration::from_secs(2),
                    SignalFault::Pause {
                        target: Target::Node(21),
                        length: Duration::from_secs(1)
                    }
                ),
                (
                    Duration::from_secs(3),
                    SignalFault::Pause {
                        target: Target::LeaderOf("local-b".to_owned()),
                        length: Duration::from_secs(1)
                    }
                ),
            ]
        );
        let refused = [
            (
                "[[fault]]\nat = \"1s\"\nkind = \"isolate_region\"\nregion = \"local-a\"\n\
                 for = \"1s\"\n",
                "[[fault]] 0 (IsolateRegion",
            ),
            ("[swarm]\npreset = \"standard\"\n", "the seeded swarm"),
            ("[network]\nloss = 0.1\n", "packet faults"),
        ];
        for (text, expected) in refused {
            let error = signal_faults(&scenario(text)).unwrap_err();
            assert!(error.contains(expected), "{expected:?} not in {error}");
        }
    }
}
