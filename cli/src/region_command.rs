//! `dsss region add-node`, `remove-node`, `status` and `clear-alarm`: work on one running
//! region over its `RegionAdmin` and `RegionClient` gRPC services.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use dsss_wire::grpc::{VersionedChannel, region_admin_client, region_client_client};
use dsss_wire::proto::region_admin_client::RegionAdminClient;
use dsss_wire::proto::{self, MembershipAction};
use dsss_wire::tls::Security;
use tonic::Request;
use tonic::transport::Endpoint;

/// Exit status when the change could not be made.
const EXIT_CHANGE_FAILED: u8 = 1;

/// Exit status for a topology file or setting that cannot be used.
const EXIT_BAD_INPUT: u8 = 2;

/// The longest `--wait-seconds`.
pub const WAIT_SECONDS_MAX: u64 = 3_600;

/// How long one call to a node may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the command polls the region while it waits.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The `dsss region` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum RegionCommand {
    /// Add a node to its region's running raft group: as a learner first, then as a voter once
    /// it has caught up.
    ///
    /// The topology file must list the node in its region. Start the node first with
    /// `dsss node --topology FILE --id N --join`. Every running member is told the node's
    /// address, the leader adds it as a learner, the command waits until the node has applied
    /// the log as far as the leader had when it was added, and then the leader promotes it.
    #[command(after_help = "Example:\n  \
        dsss node --topology five-nodes.toml --id 14 --join &\n  \
        dsss region add-node --topology five-nodes.toml --id 14")]
    AddNode(MembershipArgs),
    /// Show how every node of the topology sees its region: leader, voters, learners, the last
    /// position applied, and how full the region's log is against its quota
    /// (`region_log_quota_mb`); a node about to take a snapshot shows the entries it still
    /// fetches. A node that does not answer is listed as unreachable.
    #[command(
        after_help = "Example:\n  dsss region status --topology topology/examples/local.toml"
    )]
    Status(StatusArgs),
    /// Clear a divergence alarm once the divergence is resolved (the object's method fixed and
    /// its copies restarted), so that the region truncates its log past the object again.
    ///
    /// A divergence alarm means two copies of an object computed different states at one
    /// position: a method that is not deterministic. While it stands the region keeps every
    /// record (`dsss status` names the object). Clearing it changes nothing else: the next
    /// checkpoints are compared again, and a divergence that persists raises a new alarm.
    #[command(after_help = "Example:\n  \
        dsss status\n  \
        dsss region clear-alarm --topology dsss-up/local.toml --region local-a --object demo/bank")]
    ClearAlarm(ClearAlarmArgs),
    /// Remove a node from its region's raft group (leadership moves away from it first).
    #[command(after_help = "Example:\n  \
        dsss region remove-node --topology five-nodes.toml --id 15")]
    RemoveNode(MembershipArgs),
}

/// The arguments of a membership change.
#[derive(Debug, Args)]
pub(crate) struct MembershipArgs {
    /// The topology file that lists the region and the node.
    #[arg(long, value_name = "FILE")]
    topology: PathBuf,
    /// The node to add or remove.
    #[arg(long, value_name = "N")]
    id: u64,
    /// The longest wait for each step (a leader, the catch-up, the change applied), seconds.
    #[arg(long, value_name = "S", default_value_t = 120)]
    wait_seconds: u64,
}

/// The arguments of `dsss region clear-alarm`.
#[derive(Debug, Args)]
pub(crate) struct ClearAlarmArgs {
    /// The topology file that lists the region's nodes.
    #[arg(long, value_name = "FILE")]
    topology: PathBuf,
    /// The region whose alarm to clear.
    #[arg(long, value_name = "REGION")]
    region: String,
    /// The object whose copies diverged.
    #[arg(long, value_name = "ID")]
    object: String,
}

/// The arguments of `dsss region status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The topology file that lists the nodes.
    #[arg(long, value_name = "FILE")]
    topology: PathBuf,
}

/// Runs one `dsss region` subcommand.
pub(crate) fn run(
    command: RegionCommand,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> ExitCode {
    let (arguments, adding) = match command {
        RegionCommand::AddNode(arguments) => (arguments, true),
        RegionCommand::RemoveNode(arguments) => (arguments, false),
        RegionCommand::Status(arguments) => return status(&arguments, stdout, stderr),
        RegionCommand::ClearAlarm(arguments) => return clear_alarm(&arguments, stdout, stderr),
    };
    if arguments.wait_seconds == 0 || arguments.wait_seconds > WAIT_SECONDS_MAX {
        let _ = writeln!(
            stderr,
            "--wait-seconds: {} is outside 1..={WAIT_SECONDS_MAX}",
            arguments.wait_seconds
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let (topology, security) =
        match crate::command_runtime::operator_setup(&arguments.topology, stderr, EXIT_BAD_INPUT) {
            Ok(setup) => setup,
            Err(code) => return code,
        };
    let Some(region) = topology.region_of(arguments.id) else {
        let _ = writeln!(
            stderr,
            "{}: node {} is not in the topology",
            arguments.topology.display(),
            arguments.id
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    };
    let runtime = match crate::command_runtime::current_thread(stderr, EXIT_CHANGE_FAILED) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    // The channels are built inside the runtime, which their connections run on.
    let _runtime_context = runtime.enter();
    let mut members = Vec::new();
    for node in &region.nodes {
        match admin_stub(&node.address, &security) {
            Ok(stub) => members.push(Member {
                node_id: node.id,
                address: node.address.clone(),
                stub,
            }),
            Err(message) => {
                let _ = writeln!(stderr, "node {}: {message}", node.id);
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        }
    }
    let change = Change {
        members,
        node_id: arguments.id,
        wait: Duration::from_secs(arguments.wait_seconds),
    };
    let outcome = runtime.block_on(async {
        if adding {
            change.add(stdout).await
        } else {
            change.remove(stdout).await
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(stderr, "{message}");
            ExitCode::from(EXIT_CHANGE_FAILED)
        }
    }
}

fn clear_alarm(
    arguments: &ClearAlarmArgs,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> ExitCode {
    let (topology, security) =
        match crate::command_runtime::operator_setup(&arguments.topology, stderr, EXIT_BAD_INPUT) {
            Ok(setup) => setup,
            Err(code) => return code,
        };
    let Some(region) = topology
        .regions
        .iter()
        .find(|region| region.id == arguments.region)
    else {
        let regions: Vec<&str> = topology
            .regions
            .iter()
            .map(|region| region.id.as_str())
            .collect();
        let _ = writeln!(
            stderr,
            "--region {}: not a region of {} (its regions: {})",
            arguments.region,
            arguments.topology.display(),
            regions.join(", ")
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    };
    let runtime = match crate::command_runtime::current_thread(stderr, EXIT_CHANGE_FAILED) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let _runtime_context = runtime.enter();
    // Any member takes it (a follower's proposal goes to the leader): the first that answers.
    let mut failures = Vec::new();
    for node in &region.nodes {
        let answer = admin_stub(&node.address, &security).map(|mut stub| {
            runtime.block_on(stub.clear_alarm(request(proto::ClearAlarmRequest {
                object_id: arguments.object.clone(),
            })))
        });
        match answer {
            Ok(Ok(reply)) => {
                let line = if reply.into_inner().was_alarmed {
                    format!(
                        "cleared the divergence alarm of {} in region {}: the region truncates \
                         past it again",
                        arguments.object, region.id
                    )
                } else {
                    format!(
                        "{} has no divergence alarm in region {}; nothing changed",
                        arguments.object, region.id
                    )
                };
                let _ = writeln!(stdout, "{line}");
                return ExitCode::SUCCESS;
            }
            Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => {
                let _ = writeln!(stderr, "{}", status.message());
                return ExitCode::from(EXIT_BAD_INPUT);
            }
            Ok(Err(status)) => failures.push(format!("node {}: {}", node.id, status.message())),
            Err(message) => failures.push(format!("node {}: {message}", node.id)),
        }
    }
    let _ = writeln!(
        stderr,
        "no node of region {} cleared the alarm: {}",
        region.id,
        failures.join("; ")
    );
    ExitCode::from(EXIT_CHANGE_FAILED)
}

fn status(arguments: &StatusArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let (topology, security) =
        match crate::command_runtime::operator_setup(&arguments.topology, stderr, EXIT_BAD_INPUT) {
            Ok(setup) => setup,
            Err(code) => return code,
        };
    let runtime = match crate::command_runtime::current_thread(stderr, EXIT_CHANGE_FAILED) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let _runtime_context = runtime.enter();
    for (region, node) in topology.nodes() {
        let line = match admin_stub(&node.address, &security) {
            Ok(mut stub) => {
                let reply = runtime.block_on(stub.members(request(proto::MembersRequest {})));
                match reply {
                    Ok(reply) => {
                        let reply = reply.into_inner();
                        let members = format!(
                            "leader {}, voters {:?}, learners {:?}, applied through position {}",
                            reply.leader_node_id,
                            reply.voters,
                            reply.learners,
                            reply.applied_position
                        );
                        match runtime.block_on(log_fill(&node.address, &security)) {
                            Ok(fill) => format!("{members}; {fill}"),
                            Err(message) => format!("{members}; log fill unknown: {message}"),
                        }
                    }
                    Err(status) => format!("unreachable: {}", status.message()),
                }
            }
            Err(message) => message,
        };
        let _ = writeln!(
            stdout,
            "region {} node {} at {}: {line}",
            region.id, node.id, node.address
        );
    }
    ExitCode::SUCCESS
}

/// How full the region's log is, as the node at `address` reports it: bytes above the
/// truncation point against the quota, the truncation point, and the live client sessions.
async fn log_fill(address: &str, security: &Security) -> Result<String, String> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|error| format!("address {address:?}: {error}"))?
        .connect_timeout(CALL_TIMEOUT);
    let mut stub = region_client_client(security.connect_lazy(endpoint));
    let status = stub
        .status(request(proto::StatusRequest {}))
        .await
        .map_err(|status| status.message().to_owned())?
        .into_inner();
    const MIB: f64 = 1024.0 * 1024.0;
    let percent = if status.log_quota_bytes == 0 {
        0.0
    } else {
        100.0 * status.log_size_bytes as f64 / status.log_quota_bytes as f64
    };
    let mut fill = format!(
        "log {:.1} MiB of its {:.0} MiB quota ({percent:.0}%) above truncation point {}; \
         {} live client sessions",
        status.log_size_bytes as f64 / MIB,
        status.log_quota_bytes as f64 / MIB,
        status.truncated_through_position,
        status.sessions
    );
    // A node whose clock is off refuses calls and does not lead: worth a line.
    if let Some(clock) = status.clock.as_ref().filter(|clock| clock.fenced) {
        fill.push_str(&format!(
            "; FENCED: its clock is {} ms {} of its region's (more than the {} ms allowed), so \
             it refuses calls and does not lead",
            clock.own_offset_us.unsigned_abs() / 1_000,
            if clock.own_offset_us >= 0 {
                "ahead"
            } else {
                "behind"
            },
            clock.max_skew_us / 1_000
        ));
    }
    // Objects released without a checkpoint no longer open in this region: worth a line.
    if status.released_objects > 0 {
        fill.push_str(&format!(
            "; {} objects released without a checkpoint",
            status.released_objects
        ));
    }
    // Past half of either bound on what the checkpoint state takes, the region nears refusing
    // new objects or checkpoints: worth a line.
    for (what, bytes, max) in [
        (
            "checkpoints",
            status.checkpoint_bytes,
            status.checkpoint_bytes_max,
        ),
        (
            "tracked objects",
            status.tracking_bytes,
            status.tracking_bytes_max,
        ),
    ] {
        if max > 0 && bytes * 2 > max {
            fill.push_str(&format!(
                "; {what} take {:.1} of their {:.0} MiB",
                bytes as f64 / MIB,
                max as f64 / MIB
            ));
        }
    }
    // Refused raft messages are forged or corrupt input from the network: worth a line.
    if status.raft_messages_refused > 0 {
        fill.push_str(&format!(
            "; {} raft messages refused (forged or corrupt)",
            status.raft_messages_refused
        ));
    }
    // A node behind the raft log fetches the entries its snapshot stands on before it takes
    // it: operators see how far it is.
    if status.snapshot_missing_to > 0 {
        return Ok(format!(
            "{fill}; taking a snapshot, fetching entries {} to {} from a peer",
            status.snapshot_missing_from,
            status.snapshot_missing_to - 1
        ));
    }
    Ok(fill)
}

fn admin_stub(
    address: &str,
    security: &Security,
) -> Result<RegionAdminClient<VersionedChannel>, String> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|error| format!("address {address:?}: {error}"))?
        .connect_timeout(CALL_TIMEOUT);
    Ok(region_admin_client(security.connect_lazy(endpoint)))
}

struct Member {
    node_id: u64,
    address: String,
    stub: RegionAdminClient<VersionedChannel>,
}

struct Change {
    members: Vec<Member>,
    node_id: u64,
    wait: Duration,
}

fn request<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

impl Change {
    fn member(&self, node_id: u64) -> Result<&Member, String> {
        self.members
            .iter()
            .find(|member| member.node_id == node_id)
            .ok_or_else(|| format!("node {node_id} is not in the region's topology"))
    }

    async fn members_of(&self, node_id: u64) -> Result<proto::MembersReply, String> {
        let mut stub = self.member(node_id)?.stub.clone();
        stub.members(request(proto::MembersRequest {}))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| format!("node {node_id}: {}", status.message()))
    }

    /// The leader's view of the membership, polling the other members until one leads.
    async fn leader(&self) -> Result<proto::MembersReply, String> {
        let started = Instant::now();
        let mut last_error = String::from("no member answered");
        while started.elapsed() < self.wait {
            for member in &self.members {
                if member.node_id == self.node_id {
                    continue;
                }
                match self.members_of(member.node_id).await {
                    Ok(reply) if reply.leader_node_id == reply.node_id => return Ok(reply),
                    Ok(_) => {}
                    Err(error) => last_error = error,
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Err(format!(
            "no leader found within {} s ({last_error})",
            self.wait.as_secs()
        ))
    }

    async fn propose(&self, action: MembershipAction) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < self.wait {
            let leader = self.leader().await?;
            let mut stub = self.member(leader.node_id)?.stub.clone();
            let reply = stub
                .change_membership(request(proto::ChangeMembershipRequest {
                    action: action.into(),
                    node_id: self.node_id,
                }))
                .await;
            match reply {
                Ok(reply) if reply.get_ref().not_leader.is_none() => return Ok(()),
                // Leadership moved between the two calls: ask again.
                Ok(_) => {}
                Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                    // Another change is still pending: wait for it to apply.
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(status) => {
                    return Err(format!(
                        "node {} refused {action:?}: {}",
                        leader.node_id,
                        status.message()
                    ));
                }
            }
        }
        Err(format!(
            "{action:?} of node {} was not accepted within {} s",
            self.node_id,
            self.wait.as_secs()
        ))
    }

    /// Waits until the leader's membership satisfies `condition`.
    async fn wait_for(
        &self,
        what: &str,
        condition: impl Fn(&proto::MembersReply) -> bool,
    ) -> Result<proto::MembersReply, String> {
        let started = Instant::now();
        while started.elapsed() < self.wait {
            if let Ok(leader) = self.leader().await
                && condition(&leader)
            {
                return Ok(leader);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Err(format!("{what}: not within {} s", self.wait.as_secs()))
    }

    async fn add(&self, stdout: &mut dyn Write) -> Result<(), String> {
        let node = self.member(self.node_id)?;
        for member in &self.members {
            if member.node_id == self.node_id {
                continue;
            }
            let mut stub = member.stub.clone();
            let reply = stub
                .add_peer(request(proto::AddPeerRequest {
                    node_id: self.node_id,
                    address: node.address.clone(),
                }))
                .await;
            match reply {
                Ok(_) => {
                    let _ = writeln!(
                        stdout,
                        "node {} knows node {} at {}",
                        member.node_id, self.node_id, node.address
                    );
                }
                // A member that is down learns the address from the topology when it starts.
                Err(status) => {
                    let _ = writeln!(
                        stdout,
                        "node {} ({}) did not take the address: {}",
                        member.node_id,
                        member.address,
                        status.message()
                    );
                }
            }
        }
        let before = self.leader().await?;
        if before.voters.contains(&self.node_id) {
            let _ = writeln!(stdout, "node {} is already a voter", self.node_id);
            return Ok(());
        }
        if !before.learners.contains(&self.node_id) {
            self.propose(MembershipAction::AddLearner).await?;
        }
        let leader = self
            .wait_for("the node becomes a learner", |reply| {
                reply.learners.contains(&self.node_id)
            })
            .await?;
        let _ = writeln!(
            stdout,
            "node {} is a learner; waiting for it to apply through position {}",
            self.node_id, leader.applied_position
        );
        let started = Instant::now();
        loop {
            if let Ok(reply) = self.members_of(self.node_id).await
                && reply.applied_position >= leader.applied_position
            {
                break;
            }
            if started.elapsed() >= self.wait {
                return Err(format!(
                    "node {} did not catch up within {} s; is it running with --join?",
                    self.node_id,
                    self.wait.as_secs()
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        self.propose(MembershipAction::Promote).await?;
        let leader = self
            .wait_for("the node becomes a voter", |reply| {
                reply.voters.contains(&self.node_id)
            })
            .await?;
        let _ = writeln!(
            stdout,
            "node {} is a voter; voters now {:?}",
            self.node_id, leader.voters
        );
        Ok(())
    }

    async fn remove(&self, stdout: &mut dyn Write) -> Result<(), String> {
        let leader = self.leader_any().await?;
        if leader.node_id == self.node_id {
            let Some(&successor) = leader.voters.iter().find(|&&voter| voter != self.node_id)
            else {
                return Err(format!("node {} is the only voter", self.node_id));
            };
            self.propose_at(self.node_id, MembershipAction::TransferLeader, successor)
                .await?;
            let _ = writeln!(
                stdout,
                "leadership moves from node {} to node {successor}",
                self.node_id
            );
        }
        self.propose(MembershipAction::Remove).await?;
        let leader = self
            .wait_for("the node leaves the group", |reply| {
                !reply.voters.contains(&self.node_id) && !reply.learners.contains(&self.node_id)
            })
            .await?;
        let _ = writeln!(
            stdout,
            "node {} removed; voters now {:?}",
            self.node_id, leader.voters
        );
        Ok(())
    }

    /// The leader's view, the node itself included among those asked.
    async fn leader_any(&self) -> Result<proto::MembersReply, String> {
        let started = Instant::now();
        while started.elapsed() < self.wait {
            for member in &self.members {
                if let Ok(reply) = self.members_of(member.node_id).await
                    && reply.leader_node_id == reply.node_id
                {
                    return Ok(reply);
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Err(format!("no leader found within {} s", self.wait.as_secs()))
    }

    async fn propose_at(
        &self,
        at: u64,
        action: MembershipAction,
        node_id: u64,
    ) -> Result<(), String> {
        let mut stub = self.member(at)?.stub.clone();
        stub.change_membership(request(proto::ChangeMembershipRequest {
            action: action.into(),
            node_id,
        }))
        .await
        .map(|_| ())
        .map_err(|status| format!("node {at} refused {action:?}: {}", status.message()))
    }
}
