//! The protocol version handshake and the message size limit, over a real tonic server on
//! loopback.
//!
//! The server is a one-node stand-in for a region: it answers `Status` and orders proposals with
//! a hybrid logical clock, which is enough to see what a client of each kind gets back.

#![cfg(feature = "grpc")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use dsss_wire::grpc::{region_client_client, region_client_server};
use dsss_wire::proto::region_client_client::RegionClientClient;
use dsss_wire::proto::region_client_server::{RegionClient, RegionClientServer};
use dsss_wire::proto::{
    self, FetchCheckpointReply, FetchCheckpointRequest, ProposeReply, ProposeRequest, StatusReply,
    StatusRequest, SubscribeReply, SubscribeRequest, SyncReply, SyncRequest, UploadCheckpointReply,
    UploadCheckpointRequest,
};
use dsss_wire::{
    ARGUMENTS_BYTES_MAX, Arguments, CHECKPOINT_STATE_BYTES_MAX, Clock, GRPC_MESSAGE_BYTES_MAX,
    ManualClock, ObjectId, PROTOCOL_VERSION, PROTOCOL_VERSION_HEADER, PhysicalClock, Scope,
};
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codegen::{Bytes, Service, http};
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};

const NODE_ID: u64 = 3;
const REGION: &str = "eu-west";
const MAX_SKEW_US: u64 = 250_000;
const START_US: u64 = 1_700_000_000_000_000;

/// The stand-in region node.
struct OneNodeRegion {
    state: Mutex<RegionState>,
}

struct RegionState {
    clock: Clock<ManualClock>,
    commit_position: u64,
    /// The newest checkpoint of each object.
    checkpoints: HashMap<String, proto::Checkpoint>,
}

impl OneNodeRegion {
    fn new() -> Self {
        OneNodeRegion {
            state: Mutex::new(RegionState {
                clock: Clock::new(ManualClock::new(START_US), MAX_SKEW_US),
                commit_position: 0,
                checkpoints: HashMap::new(),
            }),
        }
    }

    /// A node that already keeps `checkpoint`, for tests that need a reply of a given size.
    fn with_checkpoint(checkpoint: proto::Checkpoint) -> Self {
        let region = OneNodeRegion::new();
        region
            .lock()
            .checkpoints
            .insert(checkpoint.object_id.clone(), checkpoint);
        region
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RegionState> {
        self.state
            .lock()
            .expect("no test panics while holding the lock")
    }
}

fn invalid(request: &str, field: &str, error: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{request} field {field}: {error}"))
}

#[tonic::async_trait]
impl RegionClient for OneNodeRegion {
    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let request = request.into_inner();
        ObjectId::new(request.object_id).map_err(|error| invalid("propose", "object_id", error))?;
        Arguments::new(request.arguments)
            .map_err(|error| invalid("propose", "arguments", error))?;
        Scope::try_from(request.scope).map_err(|error| invalid("propose", "scope", error))?;
        let mut state = self.lock();
        state.commit_position += 1;
        let committed = proto::ProposeCommitted {
            position: state.commit_position,
            timestamp: Some(state.clock.now().into()),
            duplicate: false,
        };
        Ok(Response::new(ProposeReply {
            outcome: Some(proto::propose_reply::Outcome::Committed(committed)),
        }))
    }

    async fn open_session(
        &self,
        _request: Request<proto::OpenSessionRequest>,
    ) -> Result<Response<proto::OpenSessionReply>, Status> {
        Err(Status::unimplemented("this test node keeps no sessions"))
    }

    async fn propose_batch(
        &self,
        _request: Request<proto::ProposeBatchRequest>,
    ) -> Result<Response<proto::ProposeBatchReply>, Status> {
        Err(Status::unimplemented(
            "this test node orders one call at a time",
        ))
    }

    async fn close_session(
        &self,
        _request: Request<proto::CloseSessionRequest>,
    ) -> Result<Response<proto::CloseSessionReply>, Status> {
        Err(Status::unimplemented("this test node keeps no sessions"))
    }

    type SubscribeStream = tokio_stream::Iter<std::vec::IntoIter<Result<SubscribeReply, Status>>>;

    async fn subscribe(
        &self,
        _request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        Err(Status::unimplemented("this test node keeps no log"))
    }

    async fn fetch_checkpoint(
        &self,
        request: Request<FetchCheckpointRequest>,
    ) -> Result<Response<FetchCheckpointReply>, Status> {
        let object_id = request.into_inner().object_id;
        let checkpoint = self.lock().checkpoints.get(&object_id).cloned();
        Ok(Response::new(FetchCheckpointReply {
            checkpoint,
            truncated_through_position: 0,
            released_through_position: 0,
        }))
    }

    async fn upload_checkpoint(
        &self,
        request: Request<UploadCheckpointRequest>,
    ) -> Result<Response<UploadCheckpointReply>, Status> {
        let checkpoint = request
            .into_inner()
            .checkpoint
            .ok_or_else(|| invalid("upload", "checkpoint", "missing"))?;
        ObjectId::new(checkpoint.object_id.clone())
            .map_err(|error| invalid("upload", "object_id", error))?;
        if checkpoint.state.len() > CHECKPOINT_STATE_BYTES_MAX {
            return Err(invalid(
                "upload",
                "state",
                "larger than CHECKPOINT_STATE_BYTES_MAX",
            ));
        }
        let mut state = self.lock();
        let newest = state.checkpoints.get(&checkpoint.object_id);
        let outcome = if newest.is_some_and(|newest| newest.position > checkpoint.position) {
            proto::CheckpointOutcome::Superseded
        } else {
            state
                .checkpoints
                .insert(checkpoint.object_id.clone(), checkpoint);
            proto::CheckpointOutcome::Stored
        };
        Ok(Response::new(UploadCheckpointReply {
            outcome: outcome.into(),
            not_leader: None,
        }))
    }

    async fn sync(&self, _request: Request<SyncRequest>) -> Result<Response<SyncReply>, Status> {
        let state = self.lock();
        Ok(Response::new(SyncReply {
            apply_through_position: state.commit_position,
            sealed_epoch_number: 0,
        }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        let mut state = self.lock();
        let hybrid_now = state.clock.now();
        let physical_now_us = state.clock.source().now_us();
        Ok(Response::new(StatusReply {
            node_id: NODE_ID,
            region: REGION.to_owned(),
            role: proto::NodeRole::Leader.into(),
            leader_node_id: NODE_ID,
            term: 1,
            applied_position: state.commit_position,
            commit_index: state.commit_position,
            applied_index: state.commit_position,
            sealed_epoch_number: 0,
            protocol_version: PROTOCOL_VERSION,
            clock: Some(proto::ClockHealth {
                hybrid_now: Some(hybrid_now.into()),
                physical_now_us,
                max_skew_us: MAX_SKEW_US,
                rejected_timestamps: 0,
                ..proto::ClockHealth::default()
            }),
            ..StatusReply::default()
        }))
    }
}

/// How the test server is built.
enum ServerKind {
    /// With `grpc::region_client_server`, as DSSS nodes are: version check and size limit.
    Dsss,
    /// With the generated constructor and tonic's defaults, which encode replies of any size.
    UnlimitedEncoding,
}

/// Starts the stand-in node on an ephemeral loopback port and returns a channel to it.
async fn start_node(region: OneNodeRegion, kind: ServerKind) -> Channel {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let address: SocketAddr = listener.local_addr().expect("bound address");
    let incoming = TcpListenerStream::new(listener);
    let router = match kind {
        ServerKind::Dsss => Server::builder().add_service(region_client_server(region)),
        ServerKind::UnlimitedEncoding => Server::builder().add_service(
            RegionClientServer::new(region).max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX),
        ),
    };
    tokio::spawn(async move {
        router
            .serve_with_incoming(incoming)
            .await
            .expect("the test server runs until the test ends");
    });
    Channel::from_shared(format!("http://{address}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("connect to the test server")
}

async fn start_dsss_node() -> Channel {
    start_node(OneNodeRegion::new(), ServerKind::Dsss).await
}

fn checkpoint(state_bytes: usize) -> proto::Checkpoint {
    proto::Checkpoint {
        object_id: "lobby/main".to_owned(),
        position: 42,
        state: vec![5; state_bytes],
        state_hash: vec![9; 32],
    }
}

fn status_request() -> Request<StatusRequest> {
    Request::new(StatusRequest {})
}

fn propose_request(arguments_bytes: usize) -> ProposeRequest {
    ProposeRequest {
        object_id: "lobby/main".to_owned(),
        method_id: 1,
        arguments: vec![7; arguments_bytes],
        client_id: 11,
        request_sequence: 1,
        scope: proto::Scope::Regional.into(),
    }
}

#[tokio::test]
async fn client_of_the_same_version_gets_an_answer() {
    let mut client = region_client_client(start_dsss_node().await);
    let reply = client
        .status(status_request())
        .await
        .expect("same version is served")
        .into_inner();
    assert_eq!(reply.node_id, NODE_ID);
    assert_eq!(reply.region, REGION);
    assert_eq!(reply.protocol_version, PROTOCOL_VERSION);
    assert_eq!(reply.role(), proto::NodeRole::Leader);
    let clock = reply.clock.expect("status reports the clock");
    assert_eq!(clock.physical_now_us, START_US);
    assert_eq!(
        clock.hybrid_now,
        Some(proto::Timestamp {
            physical_us: START_US,
            logical: 0
        })
    );
}

#[tokio::test]
async fn client_of_another_version_is_refused_naming_both_versions() {
    let declare_version_two = |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert(PROTOCOL_VERSION_HEADER, "2".parse().expect("ascii"));
        Ok(request)
    };
    let mut client =
        RegionClientClient::with_interceptor(start_dsss_node().await, declare_version_two);
    let status = client
        .status(status_request())
        .await
        .expect_err("version 2 must be refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "protocol version mismatch: this node speaks DSSS protocol 1, the peer speaks 2; run \
         the same DSSS release on every node"
    );
}

#[tokio::test]
async fn client_without_a_version_header_is_refused_with_a_clear_error() {
    let mut client = RegionClientClient::new(start_dsss_node().await);
    let status = client
        .status(status_request())
        .await
        .expect_err("a request without a version must be refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status
            .message()
            .starts_with("missing dsss-protocol-version header: this node speaks DSSS protocol 1"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn client_with_an_unparsable_version_header_is_refused_with_a_clear_error() {
    let declare_garbage = |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert(PROTOCOL_VERSION_HEADER, "one".parse().expect("ascii"));
        Ok(request)
    };
    let mut client = RegionClientClient::with_interceptor(start_dsss_node().await, declare_garbage);
    let status = client
        .status(status_request())
        .await
        .expect_err("garbage must be refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status
            .message()
            .starts_with("unparsable dsss-protocol-version header \"one\""),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn messages_up_to_the_limit_reach_the_service() {
    // Larger than tonic's default limit of 4 MiB, smaller than GRPC_MESSAGE_BYTES_MAX: the
    // server decodes it and the service itself refuses the oversized arguments, which shows that
    // the transport applied the DSSS limit and not tonic's default.
    let mut client = region_client_client(start_dsss_node().await);
    let status = client
        .propose(propose_request(8 * 1024 * 1024))
        .await
        .expect_err("arguments over ARGUMENTS_BYTES_MAX are refused by the service");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("propose field arguments:"),
        "{}",
        status.message()
    );

    let reply = client
        .propose(propose_request(ARGUMENTS_BYTES_MAX))
        .await
        .expect("the largest arguments are accepted")
        .into_inner();
    let Some(proto::propose_reply::Outcome::Committed(committed)) = reply.outcome else {
        panic!("the only node is the leader, so the proposal commits");
    };
    assert_eq!(committed.position, 1);
}

#[tokio::test]
async fn server_refuses_a_message_over_the_limit_from_its_length_prefix() {
    // A faulty peer announces a message one byte over the limit and sends only the 5-byte gRPC
    // frame header. The server must refuse from the header alone, before it allocates for the
    // body or calls the service. The request goes straight into the server's tower service: over
    // a socket, the refusal would race with the client still sending the body.
    let announced_bytes = u32::try_from(GRPC_MESSAGE_BYTES_MAX + 1).expect("limit fits in u32");
    let mut frame = vec![0u8]; // not compressed
    frame.extend_from_slice(&announced_bytes.to_be_bytes());
    let request = http::Request::builder()
        .method("POST")
        .uri("http://node.invalid/dsss.v1.RegionClient/Propose")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header(PROTOCOL_VERSION_HEADER, PROTOCOL_VERSION.to_string())
        .body(Full::new(Bytes::from(frame)))
        .expect("valid request");
    let mut server = region_client_server(OneNodeRegion::new());
    let response = server
        .call(request)
        .await
        .expect("the service always answers");
    let status = Status::from_header_map(response.headers()).expect("a gRPC status in the headers");
    assert_eq!(status.code(), Code::OutOfRange, "{}", status.message());
    assert!(
        status.message().contains(&format!(
            "found {announced_bytes} bytes, the limit is: {GRPC_MESSAGE_BYTES_MAX} bytes"
        )),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn the_largest_checkpoint_crosses_in_both_directions() {
    let mut client = region_client_client(start_dsss_node().await);
    let largest = checkpoint(CHECKPOINT_STATE_BYTES_MAX);
    let reply = client
        .upload_checkpoint(UploadCheckpointRequest {
            checkpoint: Some(largest.clone()),
            client_id: 11,
        })
        .await
        .expect("the largest checkpoint fits in one message")
        .into_inner();
    assert_eq!(reply.outcome(), proto::CheckpointOutcome::Stored);
    let fetched = client
        .fetch_checkpoint(FetchCheckpointRequest {
            object_id: largest.object_id.clone(),
            ..Default::default()
        })
        .await
        .expect("the largest checkpoint comes back")
        .into_inner();
    assert_eq!(fetched.checkpoint, Some(largest));
}

#[tokio::test]
async fn server_refuses_to_send_a_reply_over_the_limit() {
    let oversized = checkpoint(GRPC_MESSAGE_BYTES_MAX + 1);
    let object_id = oversized.object_id.clone();
    let channel = start_node(OneNodeRegion::with_checkpoint(oversized), ServerKind::Dsss).await;
    let status = region_client_client(channel)
        .fetch_checkpoint(FetchCheckpointRequest {
            object_id,
            ..Default::default()
        })
        .await
        .expect_err("the reply is over the limit");
    assert_eq!(status.code(), Code::OutOfRange, "{}", status.message());
    assert!(
        status
            .message()
            .contains("encoded message length too large"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn client_refuses_a_reply_over_the_limit() {
    // A peer that does not limit what it sends: the DSSS client refuses the reply from its
    // length prefix.
    let oversized = checkpoint(GRPC_MESSAGE_BYTES_MAX + 1);
    let object_id = oversized.object_id.clone();
    let region = OneNodeRegion::with_checkpoint(oversized);
    let channel = start_node(region, ServerKind::UnlimitedEncoding).await;
    let status = region_client_client(channel)
        .fetch_checkpoint(FetchCheckpointRequest {
            object_id,
            ..Default::default()
        })
        .await
        .expect_err("the reply is over the limit");
    assert_eq!(status.code(), Code::OutOfRange, "{}", status.message());
    assert!(
        status
            .message()
            .contains("decoded message length too large"),
        "{}",
        status.message()
    );
}
