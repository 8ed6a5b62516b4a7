//! The files a researcher writes for `dsss sim run`: a workload file (who calls what, how
//! often) and a fault file (what breaks, when), both TOML, read into the settings of a session
//! run. Every mistake is refused with the file's own words: the table and key, the value, and
//! what would be accepted. docs/simulator.md documents both formats.

use std::time::Duration;

use serde::Deserialize;

use crate::network::NetworkFaults;
use crate::workloads::global::script::{
    FaultScript, ScriptedFault, ScriptedFaultKind, check_link_delay, check_link_faults,
};
use crate::workloads::session::instance::PAYLOAD_BYTES_MAX;
use crate::workloads::session::{GLOBAL_OBJECTS_MAX, Popularity};

/// The most application instances per region a workload file may ask for.
pub const INSTANCES_PER_REGION_MAX: usize = crate::workloads::global::CLIENTS_PER_REGION_MAX;

/// The largest file `dsss sim run` reads, in bytes.
pub const SCENARIO_FILE_BYTES_MAX: usize = 1 << 20;

/// A workload, as read from its file.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Application instances in every region.
    pub instances_per_region: usize,
    /// Global registers every instance holds.
    pub global_registers: usize,
    /// Whether every instance also holds its region's regional register.
    pub regional_register: bool,
    /// The share of operations that are writes.
    pub write_share: f64,
    /// The share that are local reads.
    pub local_read_share: f64,
    /// The share that are reads after a `sync()` barrier.
    pub sync_read_share: f64,
    /// How an instance picks the register of each operation.
    pub popularity: Popularity,
    /// The shortest wait between two operations of an instance (closed loop).
    pub think_time_min: Duration,
    /// The longest.
    pub think_time_max: Duration,
    /// When set, operations arrive in a Poisson process at this mean rate per second, summed
    /// over every instance of the run (open loop), and the think times are not used.
    pub rate_per_second: Option<f64>,
    /// The smallest and largest payload of a write, in bytes (`(0, 0)`: none).
    pub payload_bytes: (usize, usize),
    /// The most operations one instance makes.
    pub operations_per_instance_max: usize,
    /// The example objects every instance holds instead of registers (empty: registers).
    pub examples: Vec<ExampleObject>,
}

impl Workload {
    /// The share of reads that follow a `sync()` barrier (0 when the mix has no reads).
    pub fn sync_share_of_reads(&self) -> f64 {
        let reads = self.local_read_share + self.sync_read_share;
        if reads > 0.0 {
            self.sync_read_share / reads
        } else {
            0.0
        }
    }
}

/// An example shared object a workload file may name (`examples/src/`), checked by the sdk
/// checkers (`crate::workloads::sdk`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExampleObject {
    /// One global `Bank`: transfers between its accounts; money is never created or destroyed.
    Bank,
    /// One global `Counter`: adds.
    Counter,
    /// One global game `Lobby`: players join and leave its seats, never past its capacity.
    Lobby,
    /// One regional `Leaderboard` in every region: scores.
    Leaderboard,
}

impl ExampleObject {
    /// Every example object, in the order a workload file lists them.
    pub const ALL: [ExampleObject; 4] = [
        ExampleObject::Bank,
        ExampleObject::Counter,
        ExampleObject::Lobby,
        ExampleObject::Leaderboard,
    ];

    /// The name a workload file gives it.
    pub fn name(self) -> &'static str {
        match self {
            ExampleObject::Bank => "bank",
            ExampleObject::Counter => "counter",
            ExampleObject::Lobby => "lobby",
            ExampleObject::Leaderboard => "leaderboard",
        }
    }

    /// The example object a workload file names `name`.
    pub fn from_name(name: &str) -> Result<ExampleObject, String> {
        ExampleObject::ALL
            .into_iter()
            .find(|example| example.name() == name)
            .ok_or_else(|| {
                format!(
                    "{name:?} is not an example object; they are {}",
                    ExampleObject::ALL
                        .map(|example| format!("{:?}", example.name()))
                        .join(", ")
                )
            })
    }
}

/// What a fault file asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Faults at set times, and exact packet faults.
    pub script: FaultScript,
    /// Whether the seed also draws the standard swarm of faults (crashes, coordinator leader
    /// crashes, pauses, region partitions, clock skew, loss, duplication and reordering).
    pub standard_swarm: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadFile {
    instances_per_region: usize,
    objects: ObjectsTable,
    mix: MixTable,
    #[serde(default)]
    popularity: Option<PopularityTable>,
    arrival: ArrivalTable,
    #[serde(default)]
    payload: Option<PayloadTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PayloadTable {
    bytes: PayloadBytes,
}

/// One size, or the smallest and the largest.
#[derive(Deserialize)]
#[serde(untagged)]
enum PayloadBytes {
    Exactly(usize),
    Between([usize; 2]),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectsTable {
    #[serde(default)]
    global_registers: Option<usize>,
    #[serde(default)]
    regional_register: Option<bool>,
    #[serde(default)]
    examples: Option<Vec<String>>,
}

/// The registers, or the example objects, an `[objects]` table asks for.
fn read_objects(table: &ObjectsTable) -> Result<(usize, bool, Vec<ExampleObject>), String> {
    match (&table.examples, table.global_registers) {
        (None, Some(global_registers)) => {
            if !(1..=GLOBAL_OBJECTS_MAX).contains(&global_registers) {
                return Err(format!(
                    "[objects] global_registers = {global_registers} is outside \
                     1..={GLOBAL_OBJECTS_MAX}"
                ));
            }
            Ok((
                global_registers,
                table.regional_register.unwrap_or(true),
                Vec::new(),
            ))
        }
        (Some(names), None) => {
            if table.regional_register.is_some() {
                return Err(
                    "[objects] regional_register is a register setting; with examples, \
                            name \"leaderboard\" for a regional object"
                        .to_owned(),
                );
            }
            if names.is_empty() {
                return Err("[objects] examples = []: name at least one of \"bank\", \
                            \"counter\", \"lobby\", \"leaderboard\""
                    .to_owned());
            }
            let mut examples = Vec::with_capacity(names.len());
            for name in names {
                let example = ExampleObject::from_name(name)
                    .map_err(|error| format!("[objects] examples: {error}"))?;
                if examples.contains(&example) {
                    return Err(format!("[objects] examples names {name:?} twice"));
                }
                examples.push(example);
            }
            Ok((0, false, examples))
        }
        (Some(_), Some(_)) => Err("[objects] takes global_registers (registers) or examples \
                                   (the example objects), not both"
            .to_owned()),
        (None, None) => Err(
            "[objects] needs global_registers = 3 (registers) or examples = \
                             [\"bank\", \"counter\", \"lobby\", \"leaderboard\"]"
                .to_owned(),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MixTable {
    write: f64,
    local_read: f64,
    sync_read: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PopularityTable {
    law: String,
    #[serde(default)]
    exponent: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArrivalTable {
    #[serde(default)]
    think_time: Option<[String; 2]>,
    #[serde(default)]
    rate_per_second: Option<f64>,
    #[serde(default = "operations_default")]
    operations_per_instance_max: usize,
}

fn operations_default() -> usize {
    100_000
}

/// The most operations per instance a workload file may ask for.
pub const OPERATIONS_PER_INSTANCE_MAX: usize = 1_000_000;

/// The highest open-loop arrival rate a workload file may ask for, per second over the run.
pub const RATE_PER_SECOND_MAX: f64 = 100_000.0;

fn check_size(text: &str, what: &str) -> Result<(), String> {
    if text.len() > SCENARIO_FILE_BYTES_MAX {
        return Err(format!(
            "the {what} file holds {} bytes; at most {SCENARIO_FILE_BYTES_MAX} are read",
            text.len()
        ));
    }
    Ok(())
}

/// Reads a workload file's text.
pub fn parse_workload(text: &str) -> Result<Workload, String> {
    check_size(text, "workload")?;
    let file: WorkloadFile = toml::from_str(text).map_err(|error| error.to_string())?;
    if !(1..=INSTANCES_PER_REGION_MAX).contains(&file.instances_per_region) {
        return Err(format!(
            "instances_per_region = {} is outside 1..={INSTANCES_PER_REGION_MAX}",
            file.instances_per_region
        ));
    }
    let (global_registers, regional_register, examples) = read_objects(&file.objects)?;
    let mix = &file.mix;
    for (name, share) in [
        ("write", mix.write),
        ("local_read", mix.local_read),
        ("sync_read", mix.sync_read),
    ] {
        if !(0.0..=1.0).contains(&share) {
            return Err(format!("[mix] {name} = {share} is outside 0..=1"));
        }
    }
    let total = mix.write + mix.local_read + mix.sync_read;
    if (total - 1.0).abs() > 1e-9 {
        return Err(format!(
            "[mix] write + local_read + sync_read = {total}; the shares sum to 1"
        ));
    }
    let popularity = match &file.popularity {
        None => Popularity::Uniform,
        Some(table) => match (table.law.as_str(), table.exponent) {
            ("uniform", None) => Popularity::Uniform,
            ("uniform", Some(_)) => {
                return Err("[popularity] a uniform law takes no exponent".to_owned());
            }
            ("zipf", Some(exponent)) => Popularity::Zipf { exponent },
            ("zipf", None) => {
                return Err("[popularity] a zipf law needs an exponent, e.g. 1.1".to_owned());
            }
            (other, _) => {
                return Err(format!(
                    "[popularity] law = {other:?}; it is \"uniform\" or \"zipf\""
                ));
            }
        },
    };
    let (think_time_min, think_time_max, rate_per_second) =
        match (&file.arrival.think_time, file.arrival.rate_per_second) {
            (Some(think_time), None) => {
                let (min, max) = read_think_time(think_time)?;
                (min, max, None)
            }
            (None, Some(rate)) => {
                if !(rate > 0.0 && rate <= RATE_PER_SECOND_MAX) {
                    return Err(format!(
                        "[arrival] rate_per_second = {rate} is outside (0, {RATE_PER_SECOND_MAX}]"
                    ));
                }
                (Duration::ZERO, Duration::ZERO, Some(rate))
            }
            (Some(_), Some(_)) => {
                return Err(
                    "[arrival] takes think_time (closed loop) or rate_per_second (open \
                            loop), not both"
                        .to_owned(),
                );
            }
            (None, None) => {
                return Err(
                    "[arrival] needs think_time = [\"2ms\", \"30ms\"] (closed loop) or \
                            rate_per_second = 1000 (open loop)"
                        .to_owned(),
                );
            }
        };
    let payload_bytes = match &file.payload {
        None => (0, 0),
        Some(PayloadTable {
            bytes: PayloadBytes::Exactly(size),
        }) => (*size, *size),
        Some(PayloadTable {
            bytes: PayloadBytes::Between([smallest, largest]),
        }) => (*smallest, *largest),
    };
    if payload_bytes.0 > payload_bytes.1 || payload_bytes.1 > PAYLOAD_BYTES_MAX {
        return Err(format!(
            "[payload] bytes = [{}, {}]: the smallest then the largest, at most \
             {PAYLOAD_BYTES_MAX}",
            payload_bytes.0, payload_bytes.1
        ));
    }
    if !(1..=OPERATIONS_PER_INSTANCE_MAX).contains(&file.arrival.operations_per_instance_max) {
        return Err(format!(
            "[arrival] operations_per_instance_max = {} is outside \
             1..={OPERATIONS_PER_INSTANCE_MAX}",
            file.arrival.operations_per_instance_max
        ));
    }
    if !examples.is_empty() {
        // The example objects' instances pick objects uniformly, one operation after a think
        // time, and their calls carry what each method takes.
        if popularity != Popularity::Uniform {
            return Err(
                "[popularity] with examples, instances pick objects uniformly; the \
                        zipf law is for registers"
                    .to_owned(),
            );
        }
        if rate_per_second.is_some() {
            return Err(
                "[arrival] with examples, instances run a closed loop: give \
                        think_time, not rate_per_second"
                    .to_owned(),
            );
        }
        if file.payload.is_some() {
            return Err(
                "[payload] with examples, each call carries its method's own \
                        arguments; payload sizes are for registers"
                    .to_owned(),
            );
        }
    }
    Ok(Workload {
        instances_per_region: file.instances_per_region,
        global_registers,
        regional_register,
        examples,
        write_share: mix.write,
        local_read_share: mix.local_read,
        sync_read_share: mix.sync_read,
        popularity,
        think_time_min,
        think_time_max,
        rate_per_second,
        payload_bytes,
        operations_per_instance_max: file.arrival.operations_per_instance_max,
    })
}

/// The closed loop's shortest and longest think time.
fn read_think_time(think_time: &[String; 2]) -> Result<(Duration, Duration), String> {
    let min = parse_duration(&think_time[0])
        .map_err(|error| format!("[arrival] think_time[0]: {error}"))?;
    let max = parse_duration(&think_time[1])
        .map_err(|error| format!("[arrival] think_time[1]: {error}"))?;
    if min > max {
        return Err(format!(
            "[arrival] think_time = [{:?}, {:?}]: the first is the shortest wait, the second \
             the longest",
            think_time[0], think_time[1]
        ));
    }
    if max > Duration::from_secs(3_600) {
        return Err(format!(
            "[arrival] think_time[1] = {:?} is longer than an hour",
            think_time[1]
        ));
    }
    Ok((min, max))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultFile {
    #[serde(default)]
    network: Option<NetworkTable>,
    #[serde(default)]
    swarm: Option<SwarmTable>,
    #[serde(default)]
    fault: Vec<FaultTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkTable {
    #[serde(default)]
    loss: f64,
    #[serde(default)]
    duplicate: f64,
    #[serde(default)]
    reorder: f64,
    #[serde(default)]
    reorder_delay_max: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwarmTable {
    preset: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultTable {
    at: String,
    kind: String,
    #[serde(default, rename = "for")]
    length: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    regions: Option<[String; 2]>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    node: Option<u64>,
    #[serde(default)]
    skew: Option<String>,
    #[serde(default)]
    delay: Option<String>,
    #[serde(default)]
    jitter: Option<String>,
    #[serde(default)]
    loss: Option<f64>,
    #[serde(default)]
    duplicate: Option<f64>,
    #[serde(default)]
    reorder: Option<f64>,
    #[serde(default)]
    reorder_delay_max: Option<String>,
}

/// Reads a fault file's text. Names and times are checked against the topology and the run's
/// length when the run starts ([`FaultScript::validate`]).
pub fn parse_faults(text: &str) -> Result<Faults, String> {
    check_size(text, "fault")?;
    let file: FaultFile = toml::from_str(text).map_err(|error| error.to_string())?;
    let network = match file.network {
        None => None,
        Some(table) => {
            let reorder_delay_max =
                reorder_delay_max(table.reorder_delay_max.as_deref(), table.reorder)
                    .map_err(|error| format!("[network] reorder_delay_max: {error}"))?;
            let faults = NetworkFaults {
                loss_probability: table.loss,
                duplication_probability: table.duplicate,
                reorder_probability: table.reorder,
                reorder_delay_max,
            };
            faults
                .validate()
                .map_err(|error| format!("[network]: {error}"))?;
            Some(faults)
        }
    };
    let standard_swarm = match file.swarm {
        None => false,
        Some(table) => match table.preset.as_str() {
            "standard" => true,
            "none" => false,
            other => {
                return Err(format!(
                    "[swarm] preset = {other:?}; it is \"standard\" or \"none\""
                ));
            }
        },
    };
    let mut faults = Vec::with_capacity(file.fault.len());
    for (index, table) in file.fault.iter().enumerate() {
        faults.push(read_fault(table).map_err(|error| format!("[[fault]] {index}: {error}"))?);
    }
    Ok(Faults {
        script: FaultScript { network, faults },
        standard_swarm,
    })
}

fn read_fault(table: &FaultTable) -> Result<ScriptedFault, String> {
    let at = parse_duration(&table.at).map_err(|error| format!("at: {error}"))?;
    let length = || -> Result<Duration, String> {
        let text = table
            .length
            .as_ref()
            .ok_or_else(|| format!("a {} fault needs `for`, how long it lasts", table.kind))?;
        parse_duration(text).map_err(|error| format!("for: {error}"))
    };
    let text = |value: &Option<String>, key: &str| -> Result<String, String> {
        value
            .clone()
            .ok_or_else(|| format!("a {} fault needs `{key}`", table.kind))
    };
    let node = || -> Result<u64, String> {
        table
            .node
            .ok_or_else(|| format!("a {} fault needs `node`, a node id", table.kind))
    };
    // Keys that the kind does not take are refused rather than ignored.
    let takes: &[&str] = match table.kind.as_str() {
        "isolate_region" => &["region", "for"],
        "cut_regions" => &["regions", "for"],
        "cut_one_way" => &["from", "to", "for"],
        "crash_node" | "pause_node" => &["node", "for"],
        "crash_coordinator_leader" => &["for"],
        "crash_region_leader" | "pause_region_leader" => &["region", "for"],
        "clock_skew" => &["node", "skew"],
        "link_delay" => &["from", "to", "regions", "delay", "jitter", "for"],
        "link_loss" => &[
            "from",
            "to",
            "regions",
            "loss",
            "duplicate",
            "reorder",
            "reorder_delay_max",
            "for",
        ],
        other => {
            return Err(format!(
                "kind = {other:?}; it is one of isolate_region, cut_regions, cut_one_way, \
                 crash_node, crash_region_leader, crash_coordinator_leader, pause_node, \
                 pause_region_leader, clock_skew, link_delay, link_loss"
            ));
        }
    };
    for (key, present) in [
        ("for", table.length.is_some()),
        ("region", table.region.is_some()),
        ("regions", table.regions.is_some()),
        ("from", table.from.is_some()),
        ("to", table.to.is_some()),
        ("node", table.node.is_some()),
        ("skew", table.skew.is_some()),
        ("delay", table.delay.is_some()),
        ("jitter", table.jitter.is_some()),
        ("loss", table.loss.is_some()),
        ("duplicate", table.duplicate.is_some()),
        ("reorder", table.reorder.is_some()),
        ("reorder_delay_max", table.reorder_delay_max.is_some()),
    ] {
        if present && !takes.contains(&key) {
            return Err(format!(
                "a {} fault takes no `{key}` (it takes {})",
                table.kind,
                takes.join(", ")
            ));
        }
    }
    let kind = match table.kind.as_str() {
        "isolate_region" => ScriptedFaultKind::IsolateRegion {
            region: text(&table.region, "region")?,
            length: length()?,
        },
        "cut_regions" => {
            let [a, b] = table
                .regions
                .clone()
                .ok_or("a cut_regions fault needs `regions`, two region names")?;
            ScriptedFaultKind::CutRegions {
                a,
                b,
                length: length()?,
            }
        }
        "cut_one_way" => ScriptedFaultKind::CutOneWay {
            from: text(&table.from, "from")?,
            to: text(&table.to, "to")?,
            length: length()?,
        },
        "crash_node" => ScriptedFaultKind::CrashNode {
            node: node()?,
            downtime: length()?,
        },
        "pause_node" => ScriptedFaultKind::PauseNode {
            node: node()?,
            length: length()?,
        },
        "crash_coordinator_leader" => ScriptedFaultKind::CrashCoordinatorLeader {
            downtime: length()?,
        },
        "crash_region_leader" => ScriptedFaultKind::CrashRegionLeader {
            region: text(&table.region, "region")?,
            downtime: length()?,
        },
        "pause_region_leader" => ScriptedFaultKind::PauseRegionLeader {
            region: text(&table.region, "region")?,
            length: length()?,
        },
        "link_delay" => {
            let (from, to, both_ways) = read_link(table)?;
            let delay = parse_duration(&text(&table.delay, "delay")?)
                .map_err(|error| format!("delay: {error}"))?;
            let jitter = match &table.jitter {
                Some(jitter) => {
                    parse_duration(jitter).map_err(|error| format!("jitter: {error}"))?
                }
                None => Duration::ZERO,
            };
            check_link_delay(delay, jitter)?;
            ScriptedFaultKind::LinkDelay {
                from,
                to,
                both_ways,
                delay,
                jitter,
                length: length()?,
            }
        }
        "link_loss" => {
            let (from, to, both_ways) = read_link(table)?;
            let reorder = table.reorder.unwrap_or(0.0);
            let faults = NetworkFaults {
                loss_probability: table.loss.unwrap_or(0.0),
                duplication_probability: table.duplicate.unwrap_or(0.0),
                reorder_probability: reorder,
                reorder_delay_max: reorder_delay_max(table.reorder_delay_max.as_deref(), reorder)
                    .map_err(|error| format!("reorder_delay_max: {error}"))?,
            };
            check_link_faults(&faults)?;
            ScriptedFaultKind::LinkLoss {
                from,
                to,
                both_ways,
                faults,
                length: length()?,
            }
        }
        _ => {
            let skew = text(&table.skew, "skew")?;
            ScriptedFaultKind::ClockSkew {
                node: node()?,
                skew_us: parse_signed_duration_us(&skew)
                    .map_err(|error| format!("skew: {error}"))?,
            }
        }
    };
    Ok(ScriptedFault { at, kind })
}

/// The link of a `link_delay` or `link_loss` fault: `from` and `to` for one way, or
/// `regions = [A, B]` for both ways. Returns (sending region, receiving region, both ways).
fn read_link(table: &FaultTable) -> Result<(String, String, bool), String> {
    match (&table.from, &table.to, &table.regions) {
        (Some(from), Some(to), None) => Ok((from.clone(), to.clone(), false)),
        (None, None, Some([a, b])) => Ok((a.clone(), b.clone(), true)),
        _ => Err(format!(
            "a {} fault names its link with `from` and `to` (one way) or with `regions`, two \
             region names (both ways), not both",
            table.kind
        )),
    }
}

/// The largest extra delay of reordering: as written, or 20 ms when the file gives a
/// reorder probability but no delay.
fn reorder_delay_max(text: Option<&str>, reorder: f64) -> Result<Duration, String> {
    match text {
        Some(text) => parse_duration(text),
        None if reorder > 0.0 => Ok(Duration::from_millis(20)),
        None => Ok(Duration::ZERO),
    }
}

/// Reads a duration written as a number and a unit: `250us`, `20ms`, `1.5s`, `2min`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let micros = parse_signed_duration_us(text)?;
    u64::try_from(micros)
        .map(Duration::from_micros)
        .map_err(|_| format!("{text:?} is negative"))
}

/// The longest duration a file may name: a week.
const DURATION_US_MAX: f64 = 7.0 * 24.0 * 3_600.0 * 1e6;

/// [`parse_duration`] that takes a leading minus, in microseconds.
fn parse_signed_duration_us(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|character: char| character.is_ascii_alphabetic())
        .ok_or_else(|| format!("{text:?} has no unit; write e.g. 250us, 20ms, 1.5s, 2min, 1h"))?;
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: {:?} is not a number", number.trim()))?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "min" => 60e6,
        "h" => 3_600e6,
        other => {
            return Err(format!(
                "{text:?}: unit {other:?} is not one of us, ms, s, min, h"
            ));
        }
    };
    let micros = value * scale;
    if !micros.is_finite() || micros.abs() > DURATION_US_MAX {
        return Err(format!("{text:?} is longer than a week"));
    }
    Ok(micros.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKLOAD: &str = r#"
instances_per_region = 3

[objects]
global_registers = 4

[mix]
write = 0.5
local_read = 0.2
sync_read = 0.3

[popularity]
law = "zipf"
exponent = 1.2

[arrival]
think_time = ["2ms", "30ms"]
"#;

    #[test]
    fn a_workload_file_reads_into_its_settings() {
        let workload = parse_workload(WORKLOAD).unwrap();
        assert_eq!(workload.instances_per_region, 3);
        assert_eq!(workload.global_registers, 4);
        assert!(workload.regional_register, "the default");
        assert_eq!(workload.popularity, Popularity::Zipf { exponent: 1.2 });
        assert_eq!(workload.think_time_min, Duration::from_millis(2));
        assert_eq!(workload.think_time_max, Duration::from_millis(30));
        assert_eq!(workload.operations_per_instance_max, 100_000);
    }

    #[test]
    fn a_wrong_workload_file_is_refused_naming_what_is_wrong() {
        let cases = [
            (
                WORKLOAD.replace("sync_read = 0.3", "sync_read = 0.4"),
                "the shares sum to 1",
            ),
            (
                WORKLOAD.replace("global_registers = 4", "global_registers = 40"),
                "global_registers = 40 is outside",
            ),
            (
                WORKLOAD.replace("exponent = 1.2", ""),
                "a zipf law needs an exponent",
            ),
            (
                WORKLOAD.replace("\"30ms\"", "\"30 parsecs\""),
                "think_time[1]",
            ),
            (
                WORKLOAD.replace("\"2ms\", \"30ms\"", "\"30ms\", \"2ms\""),
                "the first is the shortest",
            ),
            (
                WORKLOAD.replace("[mix]", "[mix]\nwrites = 1"),
                "unknown field `writes`",
            ),
            (
                WORKLOAD.replace("instances_per_region = 3", ""),
                "missing field `instances_per_region`",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_workload(&text).unwrap_err();
            assert!(error.contains(expected), "{expected:?} not in {error}");
        }
    }

    /// `WORKLOAD` with the example objects `examples` (a TOML array) instead of registers and
    /// a uniform popularity.
    fn with_examples(examples: &str) -> String {
        WORKLOAD
            .replace("global_registers = 4", &format!("examples = {examples}"))
            .replace("law = \"zipf\"\nexponent = 1.2", "law = \"uniform\"")
    }

    #[test]
    fn a_workload_of_example_objects_reads_into_its_settings() {
        let workload =
            parse_workload(&with_examples(r#"["lobby", "bank", "leaderboard"]"#)).unwrap();
        assert_eq!(
            workload.examples,
            [
                ExampleObject::Lobby,
                ExampleObject::Bank,
                ExampleObject::Leaderboard
            ]
        );
        assert_eq!(workload.instances_per_region, 3);
        assert_eq!(workload.write_share, 0.5);
        let registers = parse_workload(WORKLOAD).unwrap();
        assert!(registers.examples.is_empty());
    }

    #[test]
    fn a_wrong_workload_of_example_objects_is_refused_naming_what_is_wrong() {
        let cases = [
            (
                with_examples(r#"["piggy-bank"]"#),
                "\"piggy-bank\" is not an example object; they are \"bank\", \"counter\"",
            ),
            (with_examples("[]"), "examples = []: name at least one"),
            (
                with_examples(r#"["bank", "counter", "bank"]"#),
                "examples names \"bank\" twice",
            ),
            (
                with_examples(r#"["bank"]"#)
                    .replace("[objects]", "[objects]\nglobal_registers = 2"),
                "global_registers (registers) or examples (the example objects), not both",
            ),
            (
                with_examples(r#"["bank"]"#)
                    .replace("[objects]", "[objects]\nregional_register = false"),
                "regional_register is a register setting",
            ),
            (
                WORKLOAD.replace("global_registers = 4", ""),
                "[objects] needs global_registers = 3 (registers) or examples",
            ),
            (
                WORKLOAD.replace("global_registers = 4", r#"examples = ["bank"]"#),
                "[popularity] with examples, instances pick objects uniformly",
            ),
            (
                with_examples(r#"["bank"]"#)
                    .replace("think_time = [\"2ms\", \"30ms\"]", "rate_per_second = 100"),
                "[arrival] with examples, instances run a closed loop",
            ),
            (
                with_examples(r#"["bank"]"#) + "\n[payload]\nbytes = 64\n",
                "[payload] with examples",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_workload(&text).unwrap_err();
            assert!(error.contains(expected), "{expected:?} not in {error}");
        }
    }

    #[test]
    fn an_open_loop_workload_with_payloads_reads_into_its_settings() {
        let text = WORKLOAD.replace(
            "think_time = [\"2ms\", \"30ms\"]",
            "rate_per_second = 1000\n\n[payload]\nbytes = [64, 1024]",
        );
        let workload = parse_workload(&text).unwrap();
        assert_eq!(workload.rate_per_second, Some(1_000.0));
        assert_eq!(workload.payload_bytes, (64, 1_024));
        let exactly = text.replace("[64, 1024]", "256");
        assert_eq!(parse_workload(&exactly).unwrap().payload_bytes, (256, 256));
        let closed = parse_workload(WORKLOAD).unwrap();
        assert_eq!(
            (closed.rate_per_second, closed.payload_bytes),
            (None, (0, 0))
        );
    }

    #[test]
    fn every_bound_of_a_workload_file_is_reached_and_refused_past_it() {
        let open = WORKLOAD.replace("think_time = [\"2ms\", \"30ms\"]", "rate_per_second = 1000");
        let at_rate = |rate: f64| open.replace("1000", &rate.to_string());
        assert!(parse_workload(&at_rate(RATE_PER_SECOND_MAX)).is_ok());
        let with_payload = |bytes: usize| format!("{WORKLOAD}\n[payload]\nbytes = {bytes}\n");
        assert!(parse_workload(&with_payload(PAYLOAD_BYTES_MAX)).is_ok());
        let with_operations = |count: usize| {
            WORKLOAD.replace(
                "[arrival]",
                &format!("[arrival]\noperations_per_instance_max = {count}"),
            )
        };
        assert!(parse_workload(&with_operations(OPERATIONS_PER_INSTANCE_MAX)).is_ok());
        let padded = |bytes: usize| format!("{WORKLOAD}{}", "#".repeat(bytes - WORKLOAD.len()));
        assert!(parse_workload(&padded(SCENARIO_FILE_BYTES_MAX)).is_ok());
        let cases = [
            (
                at_rate(RATE_PER_SECOND_MAX * 2.0),
                "rate_per_second = 200000 is outside".to_owned(),
            ),
            (at_rate(0.0), "rate_per_second = 0 is outside".to_owned()),
            (
                open.replace("[arrival]", "[arrival]\nthink_time = [\"1ms\", \"2ms\"]"),
                "not both".to_owned(),
            ),
            (
                WORKLOAD.replace("think_time = [\"2ms\", \"30ms\"]", ""),
                "needs think_time".to_owned(),
            ),
            (
                with_payload(PAYLOAD_BYTES_MAX + 1),
                format!("at most {PAYLOAD_BYTES_MAX}"),
            ),
            (
                format!("{WORKLOAD}\n[payload]\nbytes = [100, 10]\n"),
                "the smallest then the largest".to_owned(),
            ),
            (
                with_operations(OPERATIONS_PER_INSTANCE_MAX + 1),
                "operations_per_instance_max = 1000001 is outside".to_owned(),
            ),
            (
                padded(SCENARIO_FILE_BYTES_MAX + 1),
                format!("at most {SCENARIO_FILE_BYTES_MAX} are read"),
            ),
        ];
        for (text, expected) in cases {
            let error = parse_workload(&text).unwrap_err();
            assert!(error.contains(&expected), "{expected:?} not in {error}");
        }
    }

    #[test]
    fn a_fault_file_reads_into_a_script() {
        let faults = parse_faults(
            r#"
[network]
loss = 0.01
reorder = 0.1

[swarm]
preset = "standard"

[[fault]]
at = "1s"
kind = "cut_regions"
regions = ["local-a", "local-b"]
for = "2.5s"

[[fault]]
at = "3s"
kind = "clock_skew"
node = 4
skew = "-40ms"

[[fault]]
at = "500ms"
kind = "crash_coordinator_leader"
for = "1s"
"#,
        )
        .unwrap();
        assert!(faults.standard_swarm);
        let network = faults.script.network.unwrap();
        assert_eq!(network.loss_probability, 0.01);
        assert_eq!(network.reorder_delay_max, Duration::from_millis(20));
        assert_eq!(
            faults.script.faults,
            vec![
                ScriptedFault {
                    at: Duration::from_secs(1),
                    kind: ScriptedFaultKind::CutRegions {
                        a: "local-a".to_owned(),
                        b: "local-b".to_owned(),
                        length: Duration::from_millis(2_500),
                    },
                },
                ScriptedFault {
                    at: Duration::from_secs(3),
                    kind: ScriptedFaultKind::ClockSkew {
                        node: 4,
                        skew_us: -40_000,
                    },
                },
                ScriptedFault {
                    at: Duration::from_millis(500),
                    kind: ScriptedFaultKind::CrashCoordinatorLeader {
                        downtime: Duration::from_secs(1),
                    },
                },
            ]
        );
    }

    #[test]
    fn faults_aimed_at_a_region_leader_read_and_name_what_is_missing() {
        let faults = parse_faults(
            "[[fault]]\nat = \"1s\"\nkind = \"crash_region_leader\"\nregion = \"local-a\"\n\
             for = \"2s\"\n[[fault]]\nat = \"3s\"\nkind = \"pause_region_leader\"\n\
             region = \"local-b\"\nfor = \"500ms\"\n",
        )
        .unwrap();
        assert_eq!(
            faults.script.faults[0].kind,
            ScriptedFaultKind::CrashRegionLeader {
                region: "local-a".to_owned(),
                downtime: Duration::from_secs(2)
            }
        );
        assert_eq!(
            faults.script.faults[1].kind,
            ScriptedFaultKind::PauseRegionLeader {
                region: "local-b".to_owned(),
                length: Duration::from_millis(500)
            }
        );
        for (text, expected) in [
            (
                "[[fault]]\nat = \"1s\"\nkind = \"crash_region_leader\"\nfor = \"2s\"\n",
                "a crash_region_leader fault needs `region`",
            ),
            (
                "[[fault]]\nat = \"1s\"\nkind = \"pause_region_leader\"\nnode = 11\n\
                 region = \"local-a\"\nfor = \"2s\"\n",
                "a pause_region_leader fault takes no `node`",
            ),
        ] {
            let error = parse_faults(text).unwrap_err();
            assert!(error.contains(expected), "{expected:?} not in {error}");
        }
    }

    #[test]
    fn a_wrong_fault_file_is_refused_naming_the_fault() {
        let cases = [
            (
                "[[fault]]\nat = \"1s\"\nkind = \"meteor\"\n",
                "[[fault]] 0: kind = \"meteor\"",
            ),
            (
                "[[fault]]\nat = \"1s\"\nkind = \"crash_node\"\nnode = 3\n",
                "needs `for`",
            ),
            (
                "[[fault]]\nat = \"1s\"\nkind = \"crash_node\"\nnode = 3\nfor = \"1s\"\n\
                 region = \"local-a\"\n",
                "takes no `region`",
            ),
            (
                "[[fault]]\nat = \"-1s\"\nkind = \"crash_coordinator_leader\"\nfor = \"1s\"\n",
                "is negative",
            ),
            ("[network]\nloss = 2.0\n", "[network]"),
            ("[swarm]\npreset = \"wild\"\n", "preset = \"wild\""),
        ];
        for (text, expected) in cases {
            let error = parse_faults(text).unwrap_err();
            assert!(error.contains(expected), "{expected:?} not in {error}");
        }
    }

    #[test]
    fn link_faults_read_into_a_script() {
        let faults = parse_faults(
            r#"
[[fault]]
at = "2s"
kind = "link_delay"
regions = ["local-a", "local-c"]
delay = "150ms"
jitter = "10ms"
for = "4s"

[[fault]]
at = "3s"
kind = "link_delay"
from = "local-b"
to = "local-c"
delay = "1.5s"
for = "2s"

[[fault]]
at = "7s"
kind = "link_loss"
from = "local-b"
to = "local-a"
loss = 0.2
reorder = 0.1
for = "2s"

[[fault]]
at = "9s"
kind = "link_loss"
regions = ["local-a", "local-b"]
duplicate = 1
reorder = 0.5
reorder_delay_max = "5ms"
for = "1s"
"#,
        )
        .unwrap();
        assert!(!faults.standard_swarm);
        assert_eq!(
            faults.script.faults,
            vec![
                ScriptedFault {
                    at: Duration::from_secs(2),
                    kind: ScriptedFaultKind::LinkDelay {
                        from: "local-a".to_owned(),
                        to: "local-c".to_owned(),
                        both_ways: true,
                        delay: Duration::from_millis(150),
                        jitter: Duration::from_millis(10),
                        length: Duration::from_secs(4),
                    },
                },
                ScriptedFault {
                    at: Duration::from_secs(3),
                    kind: ScriptedFaultKind::LinkDelay {
                        from: "local-b".to_owned(),
                        to: "local-c".to_owned(),
                        both_ways: false,
                        delay: Duration::from_millis(1_500),
                        jitter: Duration::ZERO,
                        length: Duration::from_secs(2),
                    },
                },
                ScriptedFault {
                    at: Duration::from_secs(7),
                    kind: ScriptedFaultKind::LinkLoss {
                        from: "local-b".to_owned(),
                        to: "local-a".to_owned(),
                        both_ways: false,
                        faults: NetworkFaults {
                            loss_probability: 0.2,
                            duplication_probability: 0.0,
                            reorder_probability: 0.1,
                            // The default when reorder is given without a delay.
                            reorder_delay_max: Duration::from_millis(20),
                        },
                        length: Duration::from_secs(2),
                    },
                },
                ScriptedFault {
                    at: Duration::from_secs(9),
                    kind: ScriptedFaultKind::LinkLoss {
                        from: "local-a".to_owned(),
                        to: "local-b".to_owned(),
                        both_ways: true,
                        faults: NetworkFaults {
                            loss_probability: 0.0,
                            duplication_probability: 1.0,
                            reorder_probability: 0.5,
                            reorder_delay_max: Duration::from_millis(5),
                        },
                        length: Duration::from_secs(1),
                    },
                },
            ]
        );
        let topology = dsss_topology::local_default();
        assert_eq!(
            faults.script.validate(&topology, Duration::from_secs(10)),
            Ok(())
        );
    }

    /// A wrong link fault is refused naming the fault, the key, the value and what is
    /// accepted.
    #[test]
    fn a_wrong_link_fault_is_refused_naming_the_key_and_the_value() {
        let delay = |keys: &str| {
            format!("[[fault]]\nat = \"1s\"\nkind = \"link_delay\"\nfor = \"2s\"\n{keys}\n")
        };
        let loss = |keys: &str| {
            format!("[[fault]]\nat = \"1s\"\nkind = \"link_loss\"\nfor = \"2s\"\n{keys}\n")
        };
        let one_way = "from = \"local-a\"\nto = \"local-b\"";
        let cases = [
            (
                delay(&format!("{one_way}\ndelay = \"61s\"")),
                "[[fault]] 0: delay = 61s is more than the maximum of 60s",
            ),
            (
                delay(&format!("{one_way}\ndelay = \"10ms\"\njitter = \"11ms\"")),
                "jitter = 11ms is more than the delay of 10ms",
            ),
            (
                delay(&format!("{one_way}\ndelay = \"fast\"")),
                "delay: \"fast\": \"\" is not a number",
            ),
            (
                delay(&format!("{one_way}\ndelay = \"-5ms\"")),
                "delay: \"-5ms\" is negative",
            ),
            (delay(one_way), "a link_delay fault needs `delay`"),
            (
                delay("from = \"local-a\"\ndelay = \"5ms\""),
                "names its link with `from` and `to` (one way) or with `regions`",
            ),
            (
                delay(&format!(
                    "{one_way}\nregions = [\"local-a\", \"local-b\"]\ndelay = \"5ms\""
                )),
                "not both",
            ),
            (
                delay(&format!("{one_way}\ndelay = \"5ms\"\nloss = 0.1")),
                "a link_delay fault takes no `loss`",
            ),
            (
                delay(&format!("{one_way}\ndelay = \"5ms\"\nscale = 3.0")),
                "unknown field `scale`",
            ),
            (
                loss(&format!("{one_way}\nloss = 1.0")),
                "[[fault]] 0: loss = 1 is outside 0 <= loss < 1 (a link that loses every \
                 message is cut",
            ),
            (
                loss(&format!("{one_way}\nloss = -0.1")),
                "loss = -0.1 is outside 0 <= loss < 1",
            ),
            (
                loss(&format!("{one_way}\nduplicate = 1.5")),
                "duplicate = 1.5 is outside 0 <= duplicate <= 1",
            ),
            (
                loss(&format!("{one_way}\nreorder = nan")),
                "reorder = NaN is outside 0 <= reorder <= 1",
            ),
            (
                loss(&format!(
                    "{one_way}\nreorder = 0.5\nreorder_delay_max = \"61s\""
                )),
                "reorder_delay_max = 61s is more than the maximum of 60s",
            ),
            (
                loss(one_way),
                "loss, duplicate and reorder are all 0, so the fault changes nothing",
            ),
            (
                loss(&format!("{one_way}\nloss = 0.1\ndelay = \"5ms\"")),
                "a link_loss fault takes no `delay`",
            ),
            (
                "[[fault]]\nat = \"1s\"\nkind = \"link_loss\"\nfrom = \"local-a\"\n\
                 to = \"local-b\"\nloss = 0.1\n"
                    .to_owned(),
                "a link_loss fault needs `for`",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_faults(&text).unwrap_err();
            assert!(error.contains(expected), "{expected:?} not in {error}");
        }
    }

    /// Every bound of a link fault is accepted at the bound and refused just beyond it.
    #[test]
    fn link_fault_bounds_are_reached_and_kept() {
        let delay = |delay: &str, jitter: &str| {
            parse_faults(&format!(
                "[[fault]]\nat = \"1s\"\nkind = \"link_delay\"\nfrom = \"local-a\"\n\
                 to = \"local-b\"\ndelay = \"{delay}\"\njitter = \"{jitter}\"\nfor = \"2s\"\n"
            ))
        };
        assert!(delay("60s", "0s").is_ok(), "the largest delay");
        assert!(delay("60s", "60s").is_ok(), "the largest jitter");
        assert!(delay("0s", "0s").is_ok(), "no delay at all");
        assert!(delay("60.000001s", "0s").is_err());
        assert!(delay("20ms", "20.001ms").is_err());
        let loss = |keys: &str| {
            parse_faults(&format!(
                "[[fault]]\nat = \"1s\"\nkind = \"link_loss\"\nregions = [\"local-a\", \
                 \"local-b\"]\n{keys}\nfor = \"2s\"\n"
            ))
        };
        assert!(loss("loss = 0.999999").is_ok(), "just below a full loss");
        assert!(loss("loss = 1").is_err());
        assert!(loss("duplicate = 1.0").is_ok());
        assert!(loss("duplicate = 1.000001").is_err());
        assert!(loss("reorder = 1.0\nreorder_delay_max = \"60s\"").is_ok());
        assert!(loss("reorder = 1.0\nreorder_delay_max = \"60.000001s\"").is_err());
        assert!(loss("loss = 0.000001").is_ok(), "the smallest change");
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("12").unwrap_err().contains("no unit"));
        assert!(parse_duration("3 weeks").unwrap_err().contains("unit"));
        assert!(
            parse_duration("200h")
                .unwrap_err()
                .contains("longer than a week")
        );
    }
}
