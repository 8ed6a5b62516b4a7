//! [`RegionClient`]: the raw client of one region's gRPC API, failing over between its members.
//! Applications use [`crate::Client`]; operators' tools and tests use this one directly.
//!
//! It proposes calls with exactly-once retries: every call gets the next request sequence of
//! the client, and every retry of that call (after a timeout, an unreachable node, a leader
//! change) reuses it, so the region applies the call once whatever happened to the earlier
//! attempts. Every member serves a proposal (a follower forwards it to the leader through
//! raft and answers once it applied the record), so the client stays on the member it uses;
//! going to the leader ([`RegionClient::prefer`]) saves the forwarding hop. A member that
//! knows no leader answers NotLeader (an election is under way): the client follows the hint
//! when there is one, and otherwise waits and tries the next member, as it does when a member
//! does not answer.
//!
//! Connections are [`RegionConnections`]: one lazily connected gRPC channel per member,
//! cheap to clone, so many clients can share a few connections. The calls the clients of one
//! connection propose at once travel together, in `ProposeBatch` requests
//! ([`crate::propose_batcher`]).

use std::sync::Arc;
use std::time::Duration;

use dsss_wire::grpc::{AttachProtocolVersion, VersionedChannel, region_client_client_with};
use dsss_wire::proto::region_client_client::RegionClientClient;
use dsss_wire::proto::{self, open_session_reply, propose_reply};
use dsss_wire::tls::Security;
use dsss_wire::{LeaderTracker, NextAttempt, Scope, Timestamp};

use crate::propose_batcher::{ProposeAnswer, ProposeBatchCounts, ProposeBatcher};
use tonic::transport::Endpoint;
use tonic::{Code, Request};

/// The longest one attempt of a proposal may take, in microseconds, before the client tries
/// again (with the same sequence) on another member.
pub const ATTEMPT_TIMEOUT_US_DEFAULT: u64 = 2_000_000;

/// The longest a proposal may take over all its attempts, in microseconds.
pub const PROPOSE_TIME_US_DEFAULT: u64 = 30_000_000;

/// The most attempts of one proposal.
pub const PROPOSE_ATTEMPTS_MAX: u32 = 1_000;

/// The wait before retrying when no member knows a leader (an election is under way), in
/// microseconds.
pub const NO_LEADER_WAIT_US: u64 = 50_000;

/// How long connecting to a member may take, in microseconds.
pub const CONNECT_TIMEOUT_US: u64 = 1_000_000;

/// The most members a region may have, as in topology files.
pub const MEMBERS_MAX: usize = 9;

/// Why a call failed for good.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The member list is unusable.
    #[error("region members: {0}")]
    Members(String),
    /// A node refused the request itself (a malformed or too old request): retrying cannot
    /// help.
    #[error("node {node_id} refused the request ({code:?}): {message}")]
    Refused {
        /// The node.
        node_id: u64,
        /// The gRPC status code.
        code: Code,
        /// The node's message.
        message: String,
    },
    /// No attempt succeeded within the time or attempt bound; the call may or may not be
    /// applied, and retrying it with the same sequence is safe.
    #[error("gave up after {attempts} attempts over {elapsed_ms} ms; last error: {last_error}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed_ms: u64,
        /// The last failure seen.
        last_error: String,
    },
    /// The node id is not a member this client knows.
    #[error("node {0} is not a member this client knows")]
    UnknownNode(u64),
    /// A call to one node failed.
    #[error("node {node_id}: {code:?}: {message}")]
    Call {
        /// The node.
        node_id: u64,
        /// The gRPC status code.
        code: Code,
        /// The message.
        message: String,
    },
}

/// One member of the region.
#[derive(Clone, Debug)]
struct Member {
    node_id: u64,
    client: RegionClientClient<VersionedChannel>,
    /// The calls proposed to the member over this connection, sent in batches.
    batcher: Arc<ProposeBatcher>,
}

/// Lazily connected channels to every member of a region, shared by clones.
#[derive(Clone, Debug)]
pub struct RegionConnections {
    members: Arc<Vec<Member>>,
}

impl RegionConnections {
    /// Plaintext channels to `members` (node id, `host:port`); nothing connects until the
    /// first call. Only nodes started with `--insecure` (and tests) accept them: see
    /// [`RegionConnections::with_security`].
    pub fn new(members: &[(u64, String)]) -> Result<RegionConnections, ClientError> {
        RegionConnections::with_security(members, &Security::Plaintext)
    }

    /// Channels to `members` (node id, `host:port`) secured as `security` says; nothing
    /// connects until the first call.
    pub fn with_security(
        members: &[(u64, String)],
        security: &Security,
    ) -> Result<RegionConnections, ClientError> {
        RegionConnections::with_security_and_token(members, security, None)
    }

    /// Channels like [`RegionConnections::with_security`] whose requests also carry
    /// `bearer_token` (one the topology's `[[tokens]]` lists): the region then takes the calls
    /// as the token's client, whatever client certificate the connection presents.
    pub fn with_security_and_token(
        members: &[(u64, String)],
        security: &Security,
        bearer_token: Option<&str>,
    ) -> Result<RegionConnections, ClientError> {
        let attach = match bearer_token {
            None => AttachProtocolVersion::default(),
            Some(token) => {
                AttachProtocolVersion::with_token(token).map_err(ClientError::Members)?
            }
        };
        if members.is_empty() || members.len() > MEMBERS_MAX {
            return Err(ClientError::Members(format!(
                "{} members given; a region has 1 to {MEMBERS_MAX}",
                members.len()
            )));
        }
        let mut list = Vec::with_capacity(members.len());
        for (node_id, address) in members {
            let endpoint = Endpoint::from_shared(format!("http://{address}"))
                .map_err(|error| {
                    ClientError::Members(format!("node {node_id} address {address:?}: {error}"))
                })?
                .connect_timeout(Duration::from_micros(CONNECT_TIMEOUT_US))
                .tcp_nodelay(true);
            let client = region_client_client_with(security.connect_lazy(endpoint), attach.clone());
            list.push(Member {
                node_id: *node_id,
                batcher: Arc::new(ProposeBatcher::new(client.clone())),
                client,
            });
        }
        Ok(RegionConnections {
            members: Arc::new(list),
        })
    }

    /// The members' node ids, in the order given.
    pub fn node_ids(&self) -> Vec<u64> {
        self.members.iter().map(|member| member.node_id).collect()
    }

    /// A gRPC client stub for node `node_id`.
    pub fn stub(&self, node_id: u64) -> Result<RegionClientClient<VersionedChannel>, ClientError> {
        self.members
            .iter()
            .find(|member| member.node_id == node_id)
            .map(|member| member.client.clone())
            .ok_or(ClientError::UnknownNode(node_id))
    }

    /// Proposes `call` at node `node_id` in the next `ProposeBatch` request of this
    /// connection (see [`crate::propose_batcher`]), and gives the node's answer to it or the
    /// status the call failed with. `timeout` bounds the request on the node.
    pub async fn propose(
        &self,
        node_id: u64,
        call: proto::ProposeRequest,
        timeout: Duration,
    ) -> Result<ProposeAnswer, ClientError> {
        let member = self
            .members
            .iter()
            .find(|member| member.node_id == node_id)
            .ok_or(ClientError::UnknownNode(node_id))?;
        Ok(member.batcher.propose(call, timeout).await)
    }

    /// How many `ProposeBatch` requests this connection sent to node `node_id` and how many
    /// calls they carried (the clones of a [`RegionConnections`] share one count).
    pub fn propose_batch_counts(&self, node_id: u64) -> Result<ProposeBatchCounts, ClientError> {
        self.members
            .iter()
            .find(|member| member.node_id == node_id)
            .map(|member| member.batcher.counts())
            .ok_or(ClientError::UnknownNode(node_id))
    }

    /// The status of node `node_id`.
    pub async fn status(&self, node_id: u64) -> Result<proto::StatusReply, ClientError> {
        let mut stub = self.stub(node_id)?;
        let mut request = Request::new(proto::StatusRequest {});
        request.set_timeout(Duration::from_micros(ATTEMPT_TIMEOUT_US_DEFAULT));
        stub.status(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| call_error(node_id, &status))
    }

    /// The leader, as the first member that answers and knows one says.
    pub async fn find_leader(&self) -> Option<u64> {
        for member in self.members.iter() {
            if let Ok(status) = self.status(member.node_id).await
                && status.leader_node_id != 0
            {
                return Some(status.leader_node_id);
            }
        }
        None
    }

    /// Reads node `node_id`'s log through `Subscribe` from `from_position` until
    /// `through_position` (inclusive), or until `wait` passes. Returns every entry received,
    /// in order.
    pub async fn read_log(
        &self,
        node_id: u64,
        from_position: u64,
        through_position: u64,
        wait: Duration,
    ) -> Result<Vec<proto::LogEntry>, ClientError> {
        let mut stub = self.stub(node_id)?;
        let mut entries = Vec::new();
        if through_position < from_position {
            return Ok(entries);
        }
        let read = async {
            let mut stream = match stub
                .subscribe(proto::SubscribeRequest {
                    from_position,
                    object_ids: Vec::new(),
                    client_id: 0,
                })
                .await
            {
                Ok(response) => response.into_inner(),
                Err(status) => return Err(call_error(node_id, &status)),
            };
            loop {
                match stream.message().await {
                    Ok(Some(reply)) => {
                        entries.extend(reply.entries);
                        if reply.through_position >= through_position {
                            return Ok(());
                        }
                    }
                    Ok(None) => {
                        return Err(ClientError::Call {
                            node_id,
                            code: Code::Unavailable,
                            message: "the log stream ended".to_owned(),
                        });
                    }
                    Err(status) => return Err(call_error(node_id, &status)),
                }
            }
        };
        let outcome = tokio::time::timeout(wait, read).await;
        match outcome {
            Ok(Ok(())) => Ok(entries),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(ClientError::Call {
                node_id,
                code: Code::DeadlineExceeded,
                message: format!(
                    "the log stream did not reach position {through_position} within {} ms \
                     ({} entries received)",
                    wait.as_millis(),
                    entries.len()
                ),
            }),
        }
    }
}

fn call_error(node_id: u64, status: &tonic::Status) -> ClientError {
    ClientError::Call {
        node_id,
        code: status.code(),
        message: status.message().to_owned(),
    }
}

/// One call to order: the object, the method and its encoded arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The object called.
    pub object_id: String,
    /// The mutating method.
    pub method_id: u32,
    /// The encoded arguments.
    pub arguments: Vec<u8>,
    /// The object's scope.
    pub scope: Scope,
}

/// A committed call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The request sequence the call was proposed with.
    pub request_sequence: u64,
    /// Its position in the region log.
    pub position: u64,
    /// The timestamp the region gave it, when the answering node still had the record.
    pub timestamp: Option<Timestamp>,
    /// True when the answer repeats an earlier commit of the same call.
    pub duplicate: bool,
    /// The node that answered.
    pub node_id: u64,
    /// How many attempts it took.
    pub attempts: u32,
}

/// A client of one region with exactly-once retries. See the module documentation.
#[derive(Clone, Debug)]
pub struct RegionClient {
    connections: RegionConnections,
    client_id: u64,
    /// The region confirmed the client's session (`OpenSession`).
    session_open: bool,
    /// The id the region keeps the session under (its records carry it), once it said.
    log_session_id: Option<u64>,
    next_sequence: u64,
    leader: LeaderTracker,
    attempt_timeout: Duration,
    propose_time: Duration,
}

impl RegionClient {
    /// A client whose session id is `client_id` over `connections`; it opens the session
    /// before its first call. The id MUST be fresh for every client (never reused by another
    /// process, also not after a restart): the region applies each (session, sequence) once.
    /// Its first call has sequence 1.
    pub fn new(connections: RegionConnections, client_id: u64) -> Self {
        // `RegionConnections::new` refuses an empty member list.
        let leader = LeaderTracker::new(connections.node_ids(), 0);
        RegionClient {
            connections,
            client_id,
            session_open: false,
            log_session_id: None,
            next_sequence: 1,
            leader,
            attempt_timeout: Duration::from_micros(ATTEMPT_TIMEOUT_US_DEFAULT),
            propose_time: Duration::from_micros(PROPOSE_TIME_US_DEFAULT),
        }
    }

    /// Sets how long one attempt and all attempts of a proposal may take.
    pub fn with_timeouts(mut self, attempt: Duration, total: Duration) -> Self {
        self.attempt_timeout = attempt;
        self.propose_time = total;
        self
    }

    /// The client's id.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The id the region keeps the client's session under, which its records carry in the
    /// log: under mutual TLS one derived from the client's identity and [`Self::client_id`]
    /// (so that no other client can call under it), otherwise the client id. Known once the
    /// session is open (after the first call); the client id before.
    pub fn log_session_id(&self) -> u64 {
        self.log_session_id.unwrap_or(self.client_id)
    }

    /// The member the next attempt goes to first.
    pub fn current_node_id(&self) -> u64 {
        self.leader.target()
    }

    /// Makes `node_id` the member the next attempt goes to.
    pub fn prefer(&mut self, node_id: u64) -> Result<(), ClientError> {
        if self.leader.prefer(node_id) {
            Ok(())
        } else {
            Err(ClientError::UnknownNode(node_id))
        }
    }

    /// Proposes `call` with the client's next sequence and retries it until it is committed.
    pub async fn propose(&mut self, call: &Call) -> Result<Committed, ClientError> {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.propose_with_sequence(sequence, call).await
    }

    /// Proposes `call` with sequence `request_sequence` (a retry of an earlier call reuses
    /// its sequence) until it is committed, following NotLeader hints and failing over.
    pub async fn propose_with_sequence(
        &mut self,
        request_sequence: u64,
        call: &Call,
    ) -> Result<Committed, ClientError> {
        let started = tokio::time::Instant::now();
        let mut last_error = String::from("no attempt made");
        let mut attempts = 0;
        while attempts < PROPOSE_ATTEMPTS_MAX && started.elapsed() < self.propose_time {
            attempts += 1;
            let node_id = self.leader.target();
            let stub = self.connections.stub(node_id)?;
            if !self.session_open {
                match self.open_session(node_id, stub.clone()).await {
                    Ok(()) => self.session_open = true,
                    Err(error) => {
                        last_error = error;
                        continue;
                    }
                }
            }
            let request = proto::ProposeRequest {
                object_id: call.object_id.clone(),
                method_id: call.method_id,
                arguments: call.arguments.clone(),
                client_id: self.client_id,
                request_sequence,
                scope: proto::Scope::from(call.scope).into(),
            };
            let reply = tokio::time::timeout(
                self.attempt_timeout,
                self.connections
                    .propose(node_id, request, self.attempt_timeout),
            )
            .await;
            let status = match reply {
                Ok(Err(error)) => return Err(error),
                Ok(Ok(Ok(reply))) => match reply.outcome {
                    Some(propose_reply::Outcome::Committed(committed)) => {
                        return Ok(Committed {
                            request_sequence,
                            position: committed.position,
                            timestamp: committed
                                .timestamp
                                .and_then(|timestamp| Timestamp::try_from(timestamp).ok()),
                            duplicate: committed.duplicate,
                            node_id,
                            attempts,
                        });
                    }
                    Some(propose_reply::Outcome::NotLeader(not_leader)) => {
                        last_error = format!(
                            "node {node_id} is not the leader (hint: {})",
                            not_leader.leader_node_id
                        );
                        let next = self
                            .leader
                            .handle_not_leader(node_id, not_leader.leader_hint());
                        if next == NextAttempt::AfterWait {
                            tokio::time::sleep(Duration::from_micros(NO_LEADER_WAIT_US)).await;
                        }
                        continue;
                    }
                    Some(propose_reply::Outcome::SessionUnknown(unknown)) => {
                        self.session_open = false;
                        return Err(ClientError::Refused {
                            node_id,
                            code: Code::FailedPrecondition,
                            message: format!(
                                "client session {} is not open in the region (it ended after \
                                 {} s without calls); the call may or may not have been applied",
                                unknown.session_id,
                                unknown.idle_timeout_us / 1_000_000
                            ),
                        });
                    }
                    None => {
                        last_error = format!("node {node_id} sent an empty reply");
                        self.leader.handle_failure(node_id);
                        continue;
                    }
                },
                Ok(Ok(Err(status))) => status,
                Err(_) => tonic::Status::deadline_exceeded("the attempt timed out"),
            };
            last_error = format!("node {node_id}: {:?}: {}", status.code(), status.message());
            match status.code() {
                Code::InvalidArgument
                | Code::FailedPrecondition
                | Code::OutOfRange
                | Code::Unimplemented
                | Code::PermissionDenied
                | Code::Unauthenticated => {
                    return Err(ClientError::Refused {
                        node_id,
                        code: status.code(),
                        message: status.message().to_owned(),
                    });
                }
                Code::ResourceExhausted => {
                    // The node is busy or this client has too much in flight there: wait,
                    // then try the same node again.
                    tokio::time::sleep(Duration::from_micros(NO_LEADER_WAIT_US)).await;
                }
                _ => {
                    // Unreachable, stopped, timed out, or dropped the proposal: try the
                    // next member, which may know the new leader.
                    self.leader.handle_failure(node_id);
                    tokio::time::sleep(Duration::from_micros(NO_LEADER_WAIT_US / 5)).await;
                }
            }
        }
        Err(ClientError::GaveUp {
            attempts,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            last_error,
        })
    }

    /// One attempt to open the client's session at `node_id`; on failure, the tracker moves
    /// where the answer points.
    async fn open_session(
        &mut self,
        node_id: u64,
        mut stub: RegionClientClient<VersionedChannel>,
    ) -> Result<(), String> {
        let mut request = Request::new(proto::OpenSessionRequest {
            session_id: self.client_id,
        });
        request.set_timeout(self.attempt_timeout);
        let reply = tokio::time::timeout(self.attempt_timeout, stub.open_session(request)).await;
        let error = match reply {
            Ok(Ok(reply)) => match reply.into_inner().outcome {
                Some(open_session_reply::Outcome::Opened(opened)) => {
                    self.leader.handle_success(node_id);
                    if opened.log_session_id != 0 {
                        self.log_session_id = Some(opened.log_session_id);
                    }
                    return Ok(());
                }
                Some(open_session_reply::Outcome::NotLeader(not_leader)) => {
                    let next = self
                        .leader
                        .handle_not_leader(node_id, not_leader.leader_hint());
                    if next == NextAttempt::AfterWait {
                        tokio::time::sleep(Duration::from_micros(NO_LEADER_WAIT_US)).await;
                    }
                    return Err(format!(
                        "opening the session: node {node_id} is not the leader"
                    ));
                }
                None => format!("node {node_id} sent an empty reply"),
            },
            Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
            Err(_) => "the attempt timed out".to_owned(),
        };
        self.leader.handle_failure(node_id);
        tokio::time::sleep(Duration::from_micros(NO_LEADER_WAIT_US / 5)).await;
        Err(format!("opening the session at node {node_id}: {error}"))
    }
}
