//! `dsss status`: the whole cluster at a glance. Every node of the topology is asked for its
//! `Status` and every coordinator replica for its `Coordinator.Status`, at once; the answers are
//! gathered into one [`ClusterStatus`], judged ([`problems`]) and printed as text or JSON. The
//! exit status says whether something needs attention, so scripts and cron jobs can act on it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use dsss_topology::Topology;
use dsss_wire::grpc::{coordinator_client, region_client_client};
use dsss_wire::proto;
use dsss_wire::tls::Security;
use serde::Serialize;
use tonic::Request;
use tonic::transport::Endpoint;

/// Exit status when something needs attention (the problems are listed).
const EXIT_ATTENTION: u8 = 1;

/// Exit status for a topology file or setting that cannot be used.
const EXIT_BAD_INPUT: u8 = 2;

/// How long one node has to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A node this many log positions behind its region's most advanced member needs attention.
pub const LAG_POSITIONS_ATTENTION: u64 = 10_000;

/// A region log or checkpoint state this full (percent of its bound) needs attention: etcd's
/// space alarm is the model, raised before the quota refuses writes.
pub const FILL_PERCENT_ATTENTION: u64 = 80;

/// How many diverged objects `dsss status` names.
pub const DIVERGED_NAMED_MAX: usize = 8;

/// The shortest and longest `--watch` interval, seconds.
const WATCH_SECONDS_MIN: u64 = 1;
const WATCH_SECONDS_MAX: u64 = 3_600;

/// The arguments of `dsss status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The topology file that lists the nodes (by default the one `dsss up` runs, written to
    /// dsss-up/local.toml under the working directory).
    #[arg(long, value_name = "FILE", default_value = "dsss-up/local.toml")]
    topology: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Ask again every SECONDS (2 when no value is given) and redraw, until Ctrl-C.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    watch: Option<u64>,
}

/// Everything `dsss status` learned, as printed with `--json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClusterStatus {
    /// The cluster's name.
    pub cluster: String,
    /// When the answers were gathered, in milliseconds since the UNIX epoch.
    pub taken_at_unix_ms: u64,
    /// Every region, in topology order.
    pub regions: Vec<RegionView>,
    /// The coordinator's replicas and, from its leader, its view of the regions (absent in a
    /// cluster of one region, which runs no global tier).
    pub coordinator: Option<CoordinatorView>,
    /// What needs attention, one sentence each; empty when healthy.
    pub problems: Vec<String>,
}

/// One region.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RegionView {
    /// The region's id.
    pub region: String,
    /// Its nodes, in topology order.
    pub nodes: Vec<NodeView>,
}

/// One node as it answered (or did not).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeView {
    /// The node's id.
    pub node_id: u64,
    /// Where it was asked.
    pub address: String,
    /// Why it did not answer; `None` when it did.
    pub unreachable: Option<String>,
    /// Its answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeFacts>,
}

/// What a node said of itself, in the units an operator reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeFacts {
    /// leader, follower, candidate or pre-candidate.
    pub role: String,
    /// The raft term.
    pub term: u64,
    /// The leader the node knows of (0: none).
    pub leader: u64,
    /// The region's voters and learners as the node applied them.
    pub voters: Vec<u64>,
    /// Learners.
    pub learners: Vec<u64>,
    /// The newest log position applied.
    pub applied_position: u64,
    /// Positions behind the region's most advanced node that answered.
    pub lag_positions: u64,
    /// Raft commit and applied indexes.
    pub commit_index: u64,
    /// Raft applied index.
    pub applied_index: u64,
    /// The region log above its truncation point, its quota, and the truncation point.
    pub log_bytes: u64,
    /// The quota.
    pub log_quota_bytes: u64,
    /// The truncation point.
    pub truncated_through: u64,
    /// Checkpoints kept, and alarms raised since the region began.
    pub checkpointed_objects: u64,
    /// Objects whose divergence alarm stands.
    pub divergence_alarms: u64,
    /// The objects whose copies diverged (at most [`DIVERGED_NAMED_MAX`] of them).
    pub diverged_objects: Vec<String>,
    /// Objects released without a checkpoint.
    pub released_objects: u64,
    /// What the checkpoint state takes, and its bounds.
    pub checkpoint_bytes: u64,
    /// Bound on checkpoint bytes.
    pub checkpoint_bytes_max: u64,
    /// Tracked objects' bytes.
    pub tracking_bytes: u64,
    /// Bound on tracked objects' bytes.
    pub tracking_bytes_max: u64,
    /// Live client sessions and log streams.
    pub sessions: u64,
    /// Log streams the node serves.
    pub subscriptions: u64,
    /// Whether the region is a member of the global tier, and how far the watermark of the
    /// newest epoch it appended lies behind the node's clock (ms).
    pub global_member: bool,
    /// Watermark lag in milliseconds (0 without a global tier). An idle region closes no
    /// epoch, so the watermark stands still while no global record waits.
    pub watermark_lag_ms: u64,
    /// Global records of the region not sealed yet.
    pub unsealed_records: u64,
    /// Set while the region lacks epochs the coordinator released: (first lacked, first held).
    pub epochs_missed: Option<(u64, u64)>,
    /// Whether the node fenced itself for its clock, its offset then (µs), the largest offset
    /// it measured to a peer (µs, signed: peer minus node) and the timestamps it refused.
    pub clock_fenced: bool,
    /// The node's offset while fenced.
    pub clock_own_offset_us: i64,
    /// The largest peer offset by magnitude.
    pub clock_peer_offset_us_max: i64,
    /// Timestamps refused for skew.
    pub clock_rejected_timestamps: u64,
    /// While the node fetches what a snapshot stands on: positions from..to.
    pub snapshot_missing: Option<(u64, u64)>,
    /// Raft messages refused (forged or corrupt input).
    pub raft_messages_refused: u64,
}

/// The coordinator.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CoordinatorView {
    /// Each replica, in topology order.
    pub replicas: Vec<ReplicaView>,
    /// The leader's view of each region (empty when no replica leads).
    pub regions: Vec<MemberRegionView>,
}

/// One coordinator replica.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReplicaView {
    /// The node that hosts it.
    pub node_id: u64,
    /// Where it was asked.
    pub address: String,
    /// Why it did not answer.
    pub unreachable: Option<String>,
    /// Whether it leads, the leader it knows of, its term.
    pub leader: bool,
    /// The leader it knows of (0: none).
    pub leader_node_id: u64,
    /// Its raft term.
    pub term: u64,
    /// The newest sealed epoch and how far its watermark lies behind the replica's clock.
    pub newest_epoch: u64,
    /// Watermark lag in milliseconds.
    pub watermark_lag_ms: u64,
    /// Epochs retained for regions that lack them.
    pub retained_epochs: u64,
    /// Global records waiting for the watermark.
    pub pending_records: u64,
    /// Regions removed and readmitted since the replica started.
    pub regions_removed: u64,
    /// Regions readmitted.
    pub regions_readmitted: u64,
}

/// A region as the coordinator leader sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MemberRegionView {
    /// The region.
    pub region: String,
    /// Whether it counts for the watermark.
    pub member: bool,
    /// How far its closed timestamp lies behind the leader's clock (ms).
    pub closed_lag_ms: u64,
    /// How long since its closed timestamp last moved (ms).
    pub silent_ms: u64,
    /// How long ago the leader proposed its removal (ms), while suspected.
    pub suspected_ms: Option<u64>,
    /// The newest epoch it acknowledged.
    pub acknowledged_epoch: u64,
}

/// Runs `dsss status`.
pub(crate) fn run(args: StatusArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    if let Some(seconds) = args.watch
        && !(WATCH_SECONDS_MIN..=WATCH_SECONDS_MAX).contains(&seconds)
    {
        let _ = writeln!(
            stderr,
            "--watch: {seconds} is outside {WATCH_SECONDS_MIN}..={WATCH_SECONDS_MAX} seconds"
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let (topology, security) =
        match crate::command_runtime::operator_setup(&args.topology, stderr, EXIT_BAD_INPUT) {
            Ok(setup) => setup,
            Err(code) => {
                if args.topology == Path::new("dsss-up/local.toml") {
                    let _ = writeln!(
                        stderr,
                        "(dsss status reads the topology `dsss up` writes in this directory; \
                         give --topology FILE for another cluster)"
                    );
                }
                return code;
            }
        };
    let runtime = match crate::command_runtime::current_thread(stderr, EXIT_ATTENTION) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    loop {
        let status = runtime.block_on(gather(&topology, &security));
        let healthy = status.problems.is_empty();
        if args.watch.is_some() {
            // Clear the terminal and draw from its top.
            let _ = write!(stdout, "\x1b[2J\x1b[H");
        }
        if args.json {
            match serde_json::to_string_pretty(&status) {
                Ok(json) => {
                    let _ = writeln!(stdout, "{json}");
                }
                Err(error) => {
                    let _ = writeln!(stderr, "cannot write the status as JSON: {error}");
                    return ExitCode::from(EXIT_ATTENTION);
                }
            }
        } else {
            let _ = write!(stdout, "{}", render(&topology, &status));
        }
        let _ = stdout.flush();
        let Some(seconds) = args.watch else {
            return if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_ATTENTION)
            };
        };
        std::thread::sleep(Duration::from_secs(seconds));
    }
}

/// Asks every node and replica at once and judges the answers.
pub async fn gather(topology: &Topology, security: &Security) -> ClusterStatus {
    let mut asks = tokio::task::JoinSet::new();
    for (region_index, region) in topology.regions.iter().enumerate() {
        for (node_index, node) in region.nodes.iter().enumerate() {
            let address = node.address.clone();
            let security = security.clone();
            asks.spawn(async move {
                let answer = ask_node(&address, &security).await;
                (region_index, node_index, answer)
            });
        }
    }
    let mut regions: Vec<RegionView> = topology
        .regions
        .iter()
        .map(|region| RegionView {
            region: region.id.clone(),
            nodes: region
                .nodes
                .iter()
                .map(|node| NodeView {
                    node_id: node.id,
                    address: node.address.clone(),
                    ..NodeView::default()
                })
                .collect(),
        })
        .collect();
    while let Some(Ok((region_index, node_index, answer))) = asks.join_next().await {
        let view = &mut regions[region_index].nodes[node_index];
        match answer {
            Ok(reply) => view.status = Some(facts_of(&reply)),
            Err(error) => view.unreachable = Some(error),
        }
    }
    for region in &mut regions {
        let most = region
            .nodes
            .iter()
            .filter_map(|node| node.status.as_ref())
            .map(|facts| facts.applied_position)
            .max()
            .unwrap_or(0);
        for facts in region
            .nodes
            .iter_mut()
            .filter_map(|node| node.status.as_mut())
        {
            facts.lag_positions = most - facts.applied_position;
        }
    }
    let coordinator = if topology.regions.len() > 1 {
        let mut replicas = Vec::new();
        let mut leader_view = Vec::new();
        let mut asks = tokio::task::JoinSet::new();
        for (index, &replica) in topology.coordinator.replicas.iter().enumerate() {
            let address = topology
                .nodes()
                .find(|(_, node)| node.id == replica)
                .map(|(_, node)| node.address.clone())
                .unwrap_or_default();
            let security = security.clone();
            asks.spawn(async move {
                let answer = ask_replica(&address, &security).await;
                (index, replica, address, answer)
            });
        }
        let mut answers = Vec::new();
        while let Some(Ok(answer)) = asks.join_next().await {
            answers.push(answer);
        }
        answers.sort_by_key(|(index, ..)| *index);
        for (_, node_id, address, answer) in answers {
            let mut view = ReplicaView {
                node_id,
                address,
                ..ReplicaView::default()
            };
            match answer {
                Ok(reply) => {
                    view.leader = reply.leader;
                    view.leader_node_id = reply.leader_node_id;
                    view.term = reply.term;
                    view.newest_epoch = reply.newest_epoch;
                    view.watermark_lag_ms = lag_ms(reply.now_us, reply.watermark_physical_us);
                    view.retained_epochs = reply.retained_epochs;
                    view.pending_records = reply.pending_records;
                    view.regions_removed = reply.regions_removed;
                    view.regions_readmitted = reply.regions_readmitted;
                    if reply.leader {
                        leader_view = reply
                            .regions
                            .iter()
                            .filter(|region| region.has_leader_view)
                            .map(|region| MemberRegionView {
                                region: region.region.clone(),
                                member: region.member,
                                closed_lag_ms: lag_ms(reply.now_us, region.closed_physical_us),
                                silent_ms: lag_ms(reply.now_us, region.closed_advanced_at_us),
                                suspected_ms: (region.suspected_at_us != 0)
                                    .then(|| lag_ms(reply.now_us, region.suspected_at_us)),
                                acknowledged_epoch: region.acknowledged_epoch,
                            })
                            .collect();
                    }
                }
                Err(error) => view.unreachable = Some(error),
            }
            replicas.push(view);
        }
        Some(CoordinatorView {
            replicas,
            regions: leader_view,
        })
    } else {
        None
    };
    let mut status = ClusterStatus {
        cluster: topology.cluster.name.clone(),
        taken_at_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64),
        regions,
        coordinator,
        problems: Vec::new(),
    };
    status.problems = problems(&status);
    status
}

fn lag_ms(now_us: u64, then_us: u64) -> u64 {
    if then_us == 0 {
        0
    } else {
        now_us.saturating_sub(then_us) / 1_000
    }
}

async fn ask_node(address: &str, security: &Security) -> Result<proto::StatusReply, String> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|error| format!("address {address:?}: {error}"))?
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    let mut stub = region_client_client(security.connect_lazy(endpoint));
    stub.status(Request::new(proto::StatusRequest {}))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| status.message().to_owned())
}

pub(crate) async fn ask_replica(
    address: &str,
    security: &Security,
) -> Result<proto::CoordinatorStatusReply, String> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|error| format!("address {address:?}: {error}"))?
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    let mut stub = coordinator_client(security.connect_lazy(endpoint));
    stub.status(Request::new(proto::CoordinatorStatusRequest {}))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| status.message().to_owned())
}

fn facts_of(reply: &proto::StatusReply) -> NodeFacts {
    let clock = reply.clock.clone().unwrap_or_default();
    let role = match proto::NodeRole::try_from(reply.role) {
        Ok(proto::NodeRole::Leader) => "leader",
        Ok(proto::NodeRole::Follower) => "follower",
        Ok(proto::NodeRole::Candidate) => "candidate",
        Ok(proto::NodeRole::PreCandidate) => "pre-candidate",
        _ => "unknown",
    };
    NodeFacts {
        role: role.to_owned(),
        term: reply.term,
        leader: reply.leader_node_id,
        voters: reply.voters.clone(),
        learners: reply.learners.clone(),
        applied_position: reply.applied_position,
        lag_positions: 0,
        commit_index: reply.commit_index,
        applied_index: reply.applied_index,
        log_bytes: reply.log_size_bytes,
        log_quota_bytes: reply.log_quota_bytes,
        truncated_through: reply.truncated_through_position,
        checkpointed_objects: reply.checkpointed_objects,
        divergence_alarms: reply.alarmed_objects,
        diverged_objects: reply
            .diverged_objects
            .iter()
            .take(DIVERGED_NAMED_MAX)
            .map(|diverged| diverged.object_id.clone())
            .collect(),
        released_objects: reply.released_objects,
        checkpoint_bytes: reply.checkpoint_bytes,
        checkpoint_bytes_max: reply.checkpoint_bytes_max,
        tracking_bytes: reply.tracking_bytes,
        tracking_bytes_max: reply.tracking_bytes_max,
        sessions: reply.sessions,
        subscriptions: reply.subscriptions,
        global_member: reply.global_member,
        watermark_lag_ms: lag_ms(clock.physical_now_us, reply.watermark_physical_us),
        unsealed_records: reply.unsealed_records,
        epochs_missed: (reply.epochs_missed_to != 0)
            .then_some((reply.epochs_missed_from, reply.epochs_missed_to)),
        clock_fenced: clock.fenced,
        clock_own_offset_us: clock.own_offset_us,
        clock_peer_offset_us_max: clock
            .peers
            .iter()
            .map(|peer| peer.offset_us)
            .max_by_key(|offset| offset.unsigned_abs())
            .unwrap_or(0),
        clock_rejected_timestamps: clock.rejected_timestamps,
        snapshot_missing: (reply.snapshot_missing_to != 0)
            .then_some((reply.snapshot_missing_from, reply.snapshot_missing_to)),
        raft_messages_refused: reply.raft_messages_refused,
    }
}

/// The answer that speaks for its region's replicated facts (log fill, checkpoints, alarms):
/// the leader's of the newest term, else the most advanced node's of the newest term.
fn representative<'a>(answers: impl Iterator<Item = &'a NodeFacts>) -> Option<&'a NodeFacts> {
    answers.max_by_key(|facts| (facts.term, facts.role == "leader", facts.applied_position))
}

fn percent(part: u64, whole: u64) -> u64 {
    part.saturating_mul(100).checked_div(whole).unwrap_or(0)
}

const MIB: f64 = 1024.0 * 1024.0;

/// What needs attention in `status`, one sentence each, naming the node or region and what to
/// look at.
pub fn problems(status: &ClusterStatus) -> Vec<String> {
    let mut problems = Vec::new();
    for region in &status.regions {
        let answered: Vec<(&NodeView, &NodeFacts)> = region
            .nodes
            .iter()
            .filter_map(|node| node.status.as_ref().map(|facts| (node, facts)))
            .collect();
        for node in &region.nodes {
            if let Some(error) = &node.unreachable {
                problems.push(format!(
                    "node {} of region {} at {} does not answer: {error}",
                    node.node_id, region.region, node.address
                ));
            }
        }
        let Some(newest) = representative(answered.iter().map(|(_, facts)| *facts)) else {
            problems.push(format!("region {}: no node answers", region.region));
            continue;
        };
        if newest.leader == 0 {
            problems.push(format!(
                "region {} has no leader (term {}): a majority of its voters must be up and \
                 reach each other",
                region.region, newest.term
            ));
        }
        for (node, facts) in &answered {
            let id = node.node_id;
            if !newest.voters.contains(&id) && !newest.learners.contains(&id) {
                problems.push(format!(
                    "node {id} is not a member of region {}'s group (voters {:?}); add it with \
                     `dsss region add-node` or remove it from the topology",
                    region.region, newest.voters
                ));
            }
            if facts.leader == 0 && newest.leader != 0 {
                problems.push(format!(
                    "node {id} does not know region {}'s leader yet (it is starting or cut off \
                     from it)",
                    region.region
                ));
            }
            if facts.lag_positions > LAG_POSITIONS_ATTENTION {
                problems.push(format!(
                    "node {id} of region {} is {} positions behind its region",
                    region.region, facts.lag_positions
                ));
            }
            if let Some((from, to)) = facts.snapshot_missing {
                problems.push(format!(
                    "node {id} of region {} is catching up by snapshot (fetching positions \
                     {from}..{to} from a peer)",
                    region.region
                ));
            }
            if facts.clock_fenced {
                problems.push(format!(
                    "node {id} fenced itself: its clock is {} ms off its region's; fix its time \
                     source (it refuses calls until then)",
                    facts.clock_own_offset_us / 1_000
                ));
            }
            if facts.raft_messages_refused > 0 {
                problems.push(format!(
                    "node {id} refused {} raft messages (forged or corrupt input from the \
                     network)",
                    facts.raft_messages_refused
                ));
            }
        }
        // Replicated facts: the newest answer speaks for the region.
        let fill = percent(newest.log_bytes, newest.log_quota_bytes);
        if fill >= FILL_PERCENT_ATTENTION {
            problems.push(format!(
                "region {}'s log holds {:.1} MiB of its {:.0} MiB quota ({fill}%): objects \
                 without checkpoints hold truncation back; at the quota the region refuses \
                 writes (raise region_log_quota_mb, or find the objects in the node log)",
                region.region,
                newest.log_bytes as f64 / MIB,
                newest.log_quota_bytes as f64 / MIB
            ));
        }
        for (what, bytes, max) in [
            (
                "checkpoints",
                newest.checkpoint_bytes,
                newest.checkpoint_bytes_max,
            ),
            (
                "tracked objects",
                newest.tracking_bytes,
                newest.tracking_bytes_max,
            ),
        ] {
            let fill = percent(bytes, max);
            if fill >= FILL_PERCENT_ATTENTION {
                problems.push(format!(
                    "region {}'s {what} take {fill}% of their bound",
                    region.region
                ));
            }
        }
        if newest.divergence_alarms > 0 {
            problems.push(format!(
                "region {} has {} objects with a divergence alarm ({}): their copies computed \
                 different states (a method that is not deterministic); the region stops \
                 truncating until the method is fixed and the alarm cleared (`dsss region \
                 clear-alarm`)",
                region.region,
                newest.divergence_alarms,
                newest.diverged_objects.join(", ")
            ));
        }
        if let Some((from, to)) = answered.iter().find_map(|(_, facts)| facts.epochs_missed) {
            problems.push(format!(
                "region {} lacks epochs {from}..{to} that the coordinator released; it reads \
                 them from another region and refuses global calls until then",
                region.region
            ));
        }
    }
    if let Some(coordinator) = &status.coordinator {
        for replica in &coordinator.replicas {
            if let Some(error) = &replica.unreachable {
                problems.push(format!(
                    "coordinator replica on node {} at {} does not answer: {error}",
                    replica.node_id, replica.address
                ));
            }
        }
        if !coordinator.replicas.iter().any(|replica| replica.leader) {
            problems.push(
                "the coordinator has no leader: global calls wait until a majority of its \
                 replicas reach each other"
                    .to_owned(),
            );
        }
        for region in &coordinator.regions {
            if !region.member {
                problems.push(format!(
                    "region {} is out of the global membership{}: the other regions go on \
                     without it, and it catches up when it comes back",
                    region.region,
                    region
                        .suspected_ms
                        .map(|ms| format!(" (suspected {:.1} s ago)", ms as f64 / 1e3))
                        .unwrap_or_default()
                ));
            }
        }
    }
    problems
}

/// The status as text.
fn render(topology: &Topology, status: &ClusterStatus) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "cluster {}: {} nodes in {} regions",
        status.cluster,
        topology.node_count(),
        status.regions.len()
    );
    for region in &status.regions {
        let newest = representative(region.nodes.iter().filter_map(|node| node.status.as_ref()));
        let _ = writeln!(text);
        match newest {
            Some(facts) => {
                let leader = if facts.leader == 0 {
                    "no leader".to_owned()
                } else {
                    format!("leader {}", facts.leader)
                };
                let global = if status.coordinator.is_some() {
                    format!(
                        "; {}, {}",
                        if facts.global_member {
                            "global member"
                        } else {
                            "NOT a global member"
                        },
                        if facts.unsealed_records == 0 {
                            "no global record waiting".to_owned()
                        } else {
                            format!(
                                "{} global records waiting, watermark {} ms behind",
                                facts.unsealed_records, facts.watermark_lag_ms
                            )
                        }
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(
                    text,
                    "region {}: {leader} (term {}); log {:.1} of {:.0} MiB ({}%) above \
                     position {}; {} objects checkpointed; {} divergence alarms{global}",
                    region.region,
                    facts.term,
                    facts.log_bytes as f64 / MIB,
                    facts.log_quota_bytes as f64 / MIB,
                    percent(facts.log_bytes, facts.log_quota_bytes),
                    facts.truncated_through,
                    facts.checkpointed_objects,
                    facts.divergence_alarms
                );
            }
            None => {
                let _ = writeln!(text, "region {}: no node answers", region.region);
            }
        }
        let _ = writeln!(
            text,
            "  {:<6} {:<22} {:<13} {:>10} {:>6} {:>10} {:>9} {:>6}",
            "node", "address", "role", "applied", "lag", "clock±ms", "sessions", "streams"
        );
        for node in &region.nodes {
            match &node.status {
                Some(facts) => {
                    let role = if facts.clock_fenced {
                        format!("{} FENCED", facts.role)
                    } else {
                        facts.role.clone()
                    };
                    let _ = writeln!(
                        text,
                        "  {:<6} {:<22} {:<13} {:>10} {:>6} {:>10.1} {:>9} {:>6}",
                        node.node_id,
                        node.address,
                        role,
                        facts.applied_position,
                        facts.lag_positions,
                        facts.clock_peer_offset_us_max as f64 / 1e3,
                        facts.sessions,
                        facts.subscriptions
                    );
                }
                None => {
                    let _ = writeln!(
                        text,
                        "  {:<6} {:<22} UNREACHABLE: {}",
                        node.node_id,
                        node.address,
                        node.unreachable.as_deref().unwrap_or("no answer")
                    );
                }
            }
        }
    }
    if let Some(coordinator) = &status.coordinator {
        let _ = writeln!(text);
        let leader = coordinator.replicas.iter().find(|replica| replica.leader);
        match leader {
            Some(leader) => {
                let watermark = if leader.pending_records == 0 {
                    "idle (the watermark moves only while global records wait)".to_owned()
                } else {
                    format!(
                        "{} records waiting, watermark {} ms behind",
                        leader.pending_records, leader.watermark_lag_ms
                    )
                };
                let _ = writeln!(
                    text,
                    "coordinator: leader {} (term {}); epoch {} sealed, {watermark}; {} epochs \
                     retained; {} regions removed and {} readmitted since it started",
                    leader.node_id,
                    leader.term,
                    leader.newest_epoch,
                    leader.retained_epochs,
                    leader.regions_removed,
                    leader.regions_readmitted
                );
            }
            None => {
                let _ = writeln!(text, "coordinator: no leader");
            }
        }
        for replica in &coordinator.replicas {
            let state = match &replica.unreachable {
                Some(error) => format!("UNREACHABLE: {error}"),
                None if replica.leader => "leader".to_owned(),
                None => format!("follower of {}", replica.leader_node_id),
            };
            let _ = writeln!(
                text,
                "  replica on node {} at {}: {state}",
                replica.node_id, replica.address
            );
        }
        if !coordinator.regions.is_empty() {
            let _ = writeln!(
                text,
                "  {:<16} {:<8} {:>14} {:>10} {:>12}",
                "region", "member", "closed lag ms", "silent ms", "acked epoch"
            );
            for region in &coordinator.regions {
                let member = match (region.member, region.suspected_ms) {
                    (true, _) => "yes".to_owned(),
                    (false, Some(ms)) => format!("no ({} s)", ms / 1_000),
                    (false, None) => "no".to_owned(),
                };
                let _ = writeln!(
                    text,
                    "  {:<16} {:<8} {:>14} {:>10} {:>12}",
                    region.region,
                    member,
                    region.closed_lag_ms,
                    region.silent_ms,
                    region.acknowledged_epoch
                );
            }
        }
    }
    let _ = writeln!(text);
    if status.problems.is_empty() {
        let _ = writeln!(
            text,
            "healthy: every node answers, every region has a leader{}",
            if status.coordinator.is_some() {
                ", and the coordinator seals epochs with every region a member"
            } else {
                ""
            }
        );
    } else {
        let _ = writeln!(text, "{} need attention:", status.problems.len());
        for problem in &status.problems {
            let _ = writeln!(text, "  - {problem}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy_node(id: u64, applied: u64) -> NodeView {
        NodeView {
            node_id: id,
            address: format!("127.0.0.1:{}", 7000 + id),
            unreachable: None,
            status: Some(NodeFacts {
                role: if id == 11 { "leader" } else { "follower" }.to_owned(),
                term: 2,
                leader: 11,
                voters: vec![11, 12, 13],
                applied_position: applied,
                log_quota_bytes: 1 << 30,
                global_member: true,
                ..NodeFacts::default()
            }),
        }
    }

    fn cluster() -> ClusterStatus {
        ClusterStatus {
            cluster: "test".to_owned(),
            regions: vec![RegionView {
                region: "a".to_owned(),
                nodes: vec![
                    healthy_node(11, 100),
                    healthy_node(12, 100),
                    healthy_node(13, 99),
                ],
            }],
            coordinator: Some(CoordinatorView {
                replicas: vec![ReplicaView {
                    node_id: 11,
                    leader: true,
                    leader_node_id: 11,
                    ..ReplicaView::default()
                }],
                regions: vec![MemberRegionView {
                    region: "a".to_owned(),
                    member: true,
                    ..MemberRegionView::default()
                }],
            }),
            ..ClusterStatus::default()
        }
    }

    #[test]
    fn at_most_eight_diverged_objects_are_named() {
        let reply = proto::StatusReply {
            alarmed_objects: 10,
            diverged_objects: (0..10)
                .map(|index| proto::DivergedObject {
                    object_id: format!("object/{index}"),
                    ..proto::DivergedObject::default()
                })
                .collect(),
            ..proto::StatusReply::default()
        };
        let facts = facts_of(&reply);
        assert_eq!(facts.divergence_alarms, 10);
        assert_eq!(facts.diverged_objects.len(), DIVERGED_NAMED_MAX);
        assert_eq!(facts.diverged_objects[0], "object/0");
    }

    #[test]
    fn a_watch_interval_outside_its_bounds_is_refused_naming_them() {
        for seconds in [WATCH_SECONDS_MIN - 1, WATCH_SECONDS_MAX + 1] {
            let arguments = StatusArgs {
                topology: PathBuf::from("no-such-topology.toml"),
                json: false,
                watch: Some(seconds),
            };
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            let code = run(arguments, &mut stdout, &mut stderr);
            assert_eq!(code, ExitCode::from(EXIT_BAD_INPUT));
            let said = String::from_utf8_lossy(&stderr);
            assert!(
                said.contains(&format!("--watch: {seconds} is outside 1..=3600")),
                "{said}"
            );
        }
    }

    #[test]
    fn a_healthy_cluster_has_no_problem() {
        assert_eq!(problems(&cluster()), Vec::<String>::new());
    }

    #[test]
    fn each_kind_of_trouble_is_named_with_the_node_or_region_it_concerns() {
        let mut status = cluster();
        let nodes = &mut status.regions[0].nodes;
        nodes[2].status = None;
        nodes[2].unreachable = Some("connection refused".to_owned());
        let facts = nodes[1].status.as_mut().unwrap();
        facts.clock_fenced = true;
        facts.clock_own_offset_us = 900_000;
        facts.lag_positions = LAG_POSITIONS_ATTENTION + 1;
        let leader = nodes[0].status.as_mut().unwrap();
        leader.log_bytes = leader.log_quota_bytes / 10 * 9;
        leader.divergence_alarms = 1;
        leader.epochs_missed = Some((40, 90));
        let coordinator = status.coordinator.as_mut().unwrap();
        coordinator.regions[0].member = false;
        coordinator.regions[0].suspected_ms = Some(4_000);
        let found = problems(&status);
        let expect = [
            "node 13 of region a at 127.0.0.1:7013 does not answer: connection refused",
            "node 12 of region a is 10001 positions behind",
            "node 12 fenced itself: its clock is 900 ms off",
            "region a's log holds 921.6 MiB of its 1024 MiB quota (89%)",
            "region a has 1 objects with a divergence alarm",
            "region a lacks epochs 40..90",
            "region a is out of the global membership (suspected 4.0 s ago)",
        ];
        for expected in expect {
            assert!(
                found.iter().any(|problem| problem.contains(expected)),
                "{expected:?} not in {found:#?}"
            );
        }
        assert_eq!(found.len(), expect.len(), "{found:#?}");
    }

    #[test]
    fn a_node_that_knows_no_leader_while_its_region_has_one_is_named() {
        let mut status = cluster();
        status.regions[0].nodes[1].status.as_mut().unwrap().leader = 0;
        assert_eq!(
            problems(&status),
            vec![
                "node 12 does not know region a's leader yet (it is starting or cut off from it)"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn a_region_without_a_leader_or_answer_and_a_leaderless_coordinator_are_problems() {
        let mut status = cluster();
        for node in &mut status.regions[0].nodes {
            node.status.as_mut().unwrap().leader = 0;
        }
        status.coordinator.as_mut().unwrap().replicas[0].leader = false;
        let found = problems(&status);
        assert!(
            found
                .iter()
                .any(|problem| problem.contains("region a has no leader"))
        );
        assert!(
            found
                .iter()
                .any(|problem| problem.contains("the coordinator has no leader"))
        );
        for node in &mut status.regions[0].nodes {
            node.status = None;
            node.unreachable = Some("timed out".to_owned());
        }
        let found = problems(&status);
        assert!(
            found
                .iter()
                .any(|problem| problem == "region a: no node answers")
        );
    }
}
