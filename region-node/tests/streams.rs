//! Log streams of the production driver over real gRPC on loopback: how many subscriptions one
//! connection and one client may hold, the bytes of pieces a node holds for slow subscribers,
//! and records of the largest accepted size streamed in pieces of bounded size. Reference:
//! docs/design.md section 8 (bounds and limits).

use dsss::region_client::{Call, RegionClient, RegionConnections};
use dsss_region_node::region_log::LOG_CACHE_BYTES_MAX;
use dsss_region_node::service::{
    SUBSCRIBE_BUFFERED_BYTES_MAX, SUBSCRIBE_REPLY_BYTES_MAX, SUBSCRIBE_STREAM_REPLIES_BUFFERED_MAX,
    SUBSCRIBE_STREAMS_MAX, SUBSCRIPTIONS_PER_CLIENT_MAX, SUBSCRIPTIONS_PER_CONNECTION_MAX,
};
use dsss_wire::grpc::region_client_client;
use dsss_wire::proto::{self, log_entry};
use dsss_wire::{ARGUMENTS_BYTES_MAX, Scope};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, sleep};
use tonic::Code;
use tonic::transport::Endpoint;

mod support;

use support::{NODE_IDS, POLL_INTERVAL, Region, Stub, WAIT_MAX};

/// Records of this many bytes of arguments: the largest a region accepts, less room for the
/// length prefix of the encoding.
const BLOB_BYTES: usize = ARGUMENTS_BYTES_MAX - 64;

/// Large records written in a row: together well over the 32 MiB a gRPC message may hold.
const BLOBS: u64 = 40;

/// A stub over a connection of its own (a tonic channel is one HTTP/2 connection).
async fn own_connection(address: &str) -> Stub {
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    region_client_client(channel)
}

fn subscribe_request(from_position: u64, client_id: u64) -> proto::SubscribeRequest {
    proto::SubscribeRequest {
        from_position,
        object_ids: Vec::new(),
        client_id,
    }
}

async fn wait_for_leader(connections: &RegionConnections) -> u64 {
    let started = Instant::now();
    loop {
        for node_id in NODE_IDS {
            if let Ok(status) = connections.status(node_id).await
                && status.role == proto::NodeRole::Leader as i32
            {
                return node_id;
            }
        }
        assert!(started.elapsed() < WAIT_MAX, "no leader");
        sleep(POLL_INTERVAL).await;
    }
}

/// Reads `stream` until it has delivered through `through_position`; returns its pieces.
async fn pieces_through(
    stream: &mut tonic::Streaming<proto::SubscribeReply>,
    through_position: u64,
) -> Vec<proto::SubscribeReply> {
    let mut pieces = Vec::new();
    loop {
        let piece = tokio::time::timeout(WAIT_MAX, stream.message())
            .await
            .expect("the stream delivers within the bound")
            .unwrap_or_else(|status| {
                panic!(
                    "the stream failed after {} pieces: {:?}: {}",
                    pieces.len(),
                    status.code(),
                    status.message()
                )
            })
            .expect("the stream stays open");
        let through = piece.through_position;
        pieces.push(piece);
        if through >= through_position {
            return pieces;
        }
    }
}

/// The arguments of every regional record in `pieces`, by position; checks that each piece
/// stays within the reply budget unless it carries one entry alone.
fn blobs_of(pieces: &[proto::SubscribeReply]) -> Vec<(u64, Vec<u8>)> {
    let mut blobs = Vec::new();
    for piece in pieces {
        assert!(
            piece.entries.len() <= 1 || piece.encoded_len() <= SUBSCRIBE_REPLY_BYTES_MAX,
            "a piece of {} entries holds {} bytes, more than SUBSCRIBE_REPLY_BYTES_MAX",
            piece.entries.len(),
            piece.encoded_len()
        );
        for entry in &piece.entries {
            if let Some(log_entry::Entry::Regional(record)) = &entry.entry {
                blobs.push((entry.position, record.arguments.clone()));
            }
        }
    }
    blobs
}

fn blob(index: u64) -> Vec<u8> {
    let mut blob = vec![u8::try_from(index % 251).expect("below 251"); BLOB_BYTES];
    blob[..8].copy_from_slice(&index.to_le_bytes());
    blob
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_cannot_take_every_subscription_of_a_node() {
    let region = Region::start(false).await;
    let connections = RegionConnections::new(&region.members()).expect("members");
    wait_for_leader(&connections).await;
    let address = region.configs[&1].listen_address.clone();

    // One connection asks node 1 for as many streams as it serves in total.
    let mut greedy = own_connection(&address).await;
    let mut held = Vec::new();
    let mut refusal = None;
    for index in 0..SUBSCRIBE_STREAMS_MAX {
        match greedy
            .subscribe(subscribe_request(1, 1_000 + index as u64))
            .await
        {
            Ok(stream) => held.push(stream.into_inner()),
            Err(status) => {
                refusal = Some(status);
                break;
            }
        }
    }
    let refusal = refusal.unwrap_or_else(|| {
        panic!(
            "one connection opened {} subscriptions on one node",
            held.len()
        )
    });
    assert_eq!(held.len(), SUBSCRIPTIONS_PER_CONNECTION_MAX);
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    assert!(
        refusal
            .message()
            .contains("SUBSCRIPTIONS_PER_CONNECTION_MAX")
            && refusal
                .message()
                .contains(&SUBSCRIPTIONS_PER_CONNECTION_MAX.to_string()),
        "the refusal names the bound: {}",
        refusal.message()
    );

    // Other clients, each on its own connection, still subscribe to the node and follow it.
    let mut others = Vec::new();
    for client in 0..4 {
        let mut stub = own_connection(&address).await;
        let stream = stub
            .subscribe(subscribe_request(1, 50 + client))
            .await
            .expect("another client subscribes")
            .into_inner();
        others.push(stream);
    }
    let mut writer = RegionClient::new(connections.clone(), 9);
    let committed = writer
        .propose(&Call {
            object_id: "o".to_owned(),
            method_id: 1,
            arguments: vec![7],
            scope: Scope::Regional,
        })
        .await
        .expect("committed");
    for stream in &mut others {
        let pieces = pieces_through(stream, committed.position).await;
        assert_eq!(blobs_of(&pieces), vec![(committed.position, vec![7])]);
    }
    // The connection that holds its share still follows the log on every stream it holds.
    for stream in held.iter_mut().take(3) {
        let pieces = pieces_through(stream, committed.position).await;
        assert_eq!(blobs_of(&pieces), vec![(committed.position, vec![7])]);
    }
    // A stream given back makes room for another on the same connection.
    held.truncate(SUBSCRIPTIONS_PER_CONNECTION_MAX - 1);
    let started = Instant::now();
    loop {
        match greedy.subscribe(subscribe_request(1, 77)).await {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(started.elapsed() < WAIT_MAX, "the slot never came back");
                sleep(POLL_INTERVAL).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_subscription_over_many_connections() {
    let region = Region::start(false).await;
    let connections = RegionConnections::new(&region.members()).expect("members");
    wait_for_leader(&connections).await;
    let address = region.configs[&2].listen_address.clone();

    // Client 5 spreads its subscriptions over connections of their own.
    let mut held = Vec::new();
    let mut refusal = None;
    for _ in 0..=SUBSCRIPTIONS_PER_CLIENT_MAX {
        let mut stub = own_connection(&address).await;
        match stub.subscribe(subscribe_request(1, 5)).await {
            Ok(stream) => held.push(stream.into_inner()),
            Err(status) => {
                refusal = Some(status);
                break;
            }
        }
    }
    let refusal = refusal.expect("one client opened more than its bound");
    assert_eq!(held.len(), SUBSCRIPTIONS_PER_CLIENT_MAX);
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    assert!(
        refusal.message().contains("client 5")
            && refusal.message().contains("SUBSCRIPTIONS_PER_CLIENT_MAX"),
        "the refusal names the client and the bound: {}",
        refusal.message()
    );
    // Another client subscribes on the very connection that was refused.
    let mut stub = own_connection(&address).await;
    assert!(stub.subscribe(subscribe_request(1, 5)).await.is_err());
    stub.subscribe(subscribe_request(1, 6))
        .await
        .expect("another client subscribes on the same connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_the_largest_accepted_size_stream_in_bounded_pieces() {
    let mut region = Region::start(false).await;
    let connections = RegionConnections::new(&region.members()).expect("members");
    let leader = wait_for_leader(&connections).await;
    let follower = NODE_IDS
        .into_iter()
        .find(|&node_id| node_id != leader)
        .expect("a follower");

    // A subscriber that follows from the start but reads nothing until every record is in:
    // it falls behind the node's live events.
    let mut lagging = region
        .stub(follower)
        .subscribe(subscribe_request(1, 3))
        .await
        .expect("subscribe")
        .into_inner();

    let last_position = write_blobs(&connections).await;
    let expected: Vec<(u64, Vec<u8>)> = (1..=BLOBS).map(|index| (index, blob(index))).collect();

    let pieces = pieces_through(&mut lagging, last_position).await;
    assert_eq!(blobs_of(&pieces), expected, "the lagging subscriber");

    // Every member serves the whole run to a new subscriber, which reads it from the log.
    for node_id in NODE_IDS {
        let pieces = new_subscriber_through(&region, node_id, 4, last_position).await;
        assert_eq!(blobs_of(&pieces), expected, "node {node_id}");
        // Each record is larger than the reply budget: it comes alone in its piece.
        assert!(
            pieces.iter().all(|piece| piece.entries.len() <= 1),
            "node {node_id}"
        );
    }
    // The SDK's raw log reader gets the same records.
    let entries = connections
        .read_log(follower, 1, last_position, WAIT_MAX)
        .await
        .expect("read the log");
    assert_eq!(entries.len(), BLOBS as usize);

    // The run is larger than the entries a node keeps in memory: the oldest come from the
    // store, also after a restart, which reads back only the newest.
    region.restart(follower).await;
    let status = status_once_applied(&connections, follower, last_position).await;
    assert!(
        status.log_size_bytes > LOG_CACHE_BYTES_MAX
            && status.log_cache_bytes <= LOG_CACHE_BYTES_MAX,
        "log {} bytes, cache {} bytes",
        status.log_size_bytes,
        status.log_cache_bytes
    );
    let pieces = new_subscriber_through(&region, follower, 5, last_position).await;
    assert_eq!(blobs_of(&pieces), expected, "the restarted node");
}

/// How long a subscriber is watched for a piece that must not come while the node's buffer is
/// full. A piece that comes is a failure however late; a wait that ends empty passes.
const NOTHING_ARRIVES_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The stream figures of `node_id`'s status: (subscriptions, buffered bytes, bound).
async fn stream_load(connections: &RegionConnections, node_id: u64) -> (u64, u64, u64) {
    let status = connections.status(node_id).await.expect("status answers");
    (
        status.subscriptions,
        status.subscribe_buffered_bytes,
        status.subscribe_buffered_bytes_max,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscribers_fill_the_buffer_of_a_node_and_give_it_back_when_they_go() {
    let region = Region::start(false).await;
    let connections = RegionConnections::new(&region.members()).expect("members");
    let leader = wait_for_leader(&connections).await;
    let node_id = NODE_IDS
        .into_iter()
        .find(|&node_id| node_id != leader)
        .expect("a follower");
    let address = region.configs[&node_id].listen_address.clone();

    // A log of large records, each alone in its piece of about BLOB_BYTES.
    let last_position = write_blobs(&connections).await;
    let mut expected: Vec<(u64, Vec<u8>)> = (1..=BLOBS).map(|index| (index, blob(index))).collect();

    // Slow subscribers: each follows the log from the start over a connection of its own and
    // reads nothing. Each holds at most SUBSCRIBE_STREAM_REPLIES_BUFFERED_MAX pieces queued
    // (and one waiting to be queued); together they hold more than the node's buffer.
    let slow_count =
        SUBSCRIBE_BUFFERED_BYTES_MAX / (BLOB_BYTES * SUBSCRIBE_STREAM_REPLIES_BUFFERED_MAX) + 4;
    let mut slow = Vec::new();
    for index in 0..slow_count {
        let mut stub = own_connection(&address).await;
        let stream = stub
            .subscribe(subscribe_request(1, 100 + index as u64))
            .await
            .expect("a slow subscriber subscribes")
            .into_inner();
        slow.push((stub, stream));
    }
    // They fill the buffer: the node holds no room for another piece, and never more than
    // its bound.
    let started = Instant::now();
    loop {
        let (subscriptions, buffered, bound) = stream_load(&connections, node_id).await;
        assert_eq!(bound, SUBSCRIBE_BUFFERED_BYTES_MAX as u64);
        assert!(
            buffered <= bound,
            "node {node_id} holds {buffered} bytes of pieces, above its bound of {bound}"
        );
        assert_eq!(subscriptions, slow_count as u64);
        if bound - buffered < BLOB_BYTES as u64 {
            break;
        }
        assert!(
            started.elapsed() < WAIT_MAX,
            "the slow subscribers never filled the buffer: {buffered} of {bound} bytes"
        );
        sleep(POLL_INTERVAL).await;
    }

    // At the bound a new subscriber is taken, but its stream waits for room: nothing is
    // dropped, nothing is refused, and it gets no piece while the buffer is full, although
    // it reads at once.
    let mut waiting = own_connection(&address)
        .await
        .subscribe(subscribe_request(1, 7))
        .await
        .expect("a subscriber is taken at the bound")
        .into_inner();
    assert!(
        tokio::time::timeout(NOTHING_ARRIVES_WAIT, waiting.message())
            .await
            .is_err(),
        "a piece arrived while the node's buffer was full"
    );

    // The node keeps serving all else: a proposal to it commits and is applied there, its
    // status answers, and the other members stream the log to new subscribers.
    let mut through_full_node = RegionClient::new(connections.clone(), 10);
    through_full_node.prefer(node_id).expect("a member");
    let committed = through_full_node
        .propose(&Call {
            object_id: "o".to_owned(),
            method_id: 1,
            arguments: vec![7],
            scope: Scope::Regional,
        })
        .await
        .expect("a proposal through the full node commits");
    assert_eq!(committed.position, last_position + 1);
    assert!(
        connections
            .status(node_id)
            .await
            .expect("status answers")
            .applied_position
            >= committed.position
    );
    expected.push((committed.position, vec![7]));
    let other = NODE_IDS
        .into_iter()
        .find(|&other| other != node_id)
        .expect("another member");
    let pieces = new_subscriber_through(&region, other, 8, committed.position).await;
    assert_eq!(blobs_of(&pieces), expected, "node {other}");

    // The slow subscribers go: the node gives their room back, and the waiting subscriber
    // gets the whole log in order.
    drop(slow);
    let pieces = pieces_through(&mut waiting, committed.position).await;
    assert_eq!(blobs_of(&pieces), expected, "the subscriber that waited");
    let started = Instant::now();
    loop {
        let (subscriptions, buffered, _) = stream_load(&connections, node_id).await;
        if (subscriptions, buffered) == (1, 0) {
            break;
        }
        assert!(
            started.elapsed() < WAIT_MAX,
            "node {node_id} still serves {subscriptions} subscriptions and holds {buffered} \
             bytes of pieces after the slow subscribers left"
        );
        sleep(POLL_INTERVAL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_after_the_raft_log_moved_on_holds_every_entry_once_caught_up() {
    // The leader keeps few raft entries, so a node that was down while a run larger than one
    // raft message was written catches up by snapshot. The snapshot carries the region's
    // state, not its entries: the node reads those from a peer (RegionPeer.ReadLogRange) in
    // bounded pieces before it takes the snapshot, and then serves the whole run.
    let mut region = Region::start_with(false, |node| {
        node.group.log_retention.entries_max = 8;
    })
    .await;
    let connections = RegionConnections::new(&region.members()).expect("members");
    let leader = wait_for_leader(&connections).await;
    let away = NODE_IDS
        .into_iter()
        .find(|&node_id| node_id != leader)
        .expect("a follower");
    region.stop(away).await;

    let last_position = write_blobs(&connections).await;
    let expected: Vec<(u64, Vec<u8>)> = (1..=BLOBS).map(|index| (index, blob(index))).collect();

    region.restart(away).await;
    let status = status_once_applied(&connections, away, last_position).await;
    assert_eq!(
        status.first_retained_position, 1,
        "the node holds the whole retained log, not the part one message could carry"
    );
    assert!(status.log_size_bytes > 32 * 1024 * 1024);
    assert!(
        status.snapshots_taken_after_fetch >= 1 && status.snapshot_entries_fetched >= BLOBS,
        "the node caught up by snapshot after fetching the entries: {status:?}"
    );
    assert_eq!(
        (status.snapshot_missing_from, status.snapshot_missing_to),
        (0, 0)
    );
    let pieces = new_subscriber_through(&region, away, 4, last_position).await;
    assert_eq!(blobs_of(&pieces), expected, "the node that was away");
}

/// Writes the blobs 1 to [`BLOBS`] as regional records of "blobs", one after the other;
/// returns the position of the last.
async fn write_blobs(connections: &RegionConnections) -> u64 {
    let mut writer = RegionClient::new(connections.clone(), 9);
    let mut last_position = 0;
    for index in 1..=BLOBS {
        last_position = writer
            .propose(&Call {
                object_id: "blobs".to_owned(),
                method_id: 1,
                arguments: blob(index),
                scope: Scope::Regional,
            })
            .await
            .expect("a record of the largest size is committed")
            .position;
    }
    last_position
}

/// The status of `node_id` once it has applied through `position` (bounded by [`WAIT_MAX`]).
async fn status_once_applied(
    connections: &RegionConnections,
    node_id: u64,
    position: u64,
) -> proto::StatusReply {
    let started = Instant::now();
    loop {
        if let Ok(status) = connections.status(node_id).await
            && status.applied_position >= position
        {
            return status;
        }
        assert!(
            started.elapsed() < WAIT_MAX,
            "node {node_id} never applied through position {position}"
        );
        sleep(POLL_INTERVAL).await;
    }
}

/// What a new subscriber of `client_id` to `node_id` reads from position 1 through
/// `last_position`.
async fn new_subscriber_through(
    region: &Region,
    node_id: u64,
    client_id: u64,
    last_position: u64,
) -> Vec<proto::SubscribeReply> {
    let mut stream = region
        .stub(node_id)
        .subscribe(subscribe_request(1, client_id))
        .await
        .expect("subscribe")
        .into_inner();
    pieces_through(&mut stream, last_position).await
}

/// Appends blobs and counts them.
#[dsss::shared_object]
#[derive(Default, Debug, Serialize, Deserialize)]
pub struct Blobs {
    count: u64,
    bytes: u64,
    checksum: u64,
}

#[dsss::methods]
impl Blobs {
    /// Appends `blob`; returns how many blobs there are.
    #[mutate(id = 1)]
    pub fn append(&mut self, blob: Vec<u8>) -> u64 {
        self.count += 1;
        self.bytes += blob.len() as u64;
        self.checksum = blob.iter().fold(self.checksum, |sum, byte| {
            sum.wrapping_mul(31) ^ u64::from(*byte)
        });
        self.count
    }

    /// How many blobs, their bytes, and a checksum of their contents in order.
    pub fn summary(&self) -> (u64, u64, u64) {
        (self.count, self.bytes, self.checksum)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_opens_an_object_whose_log_holds_many_records_of_the_largest_size() {
    let region = Region::start(false).await;
    let connections = RegionConnections::new(&region.members()).expect("members");
    wait_for_leader(&connections).await;
    let config = dsss::Config::new("test-region", region.members());

    let writer = dsss::Client::connect(config.clone())
        .await
        .expect("connect");
    let blobs = tokio::time::timeout(WAIT_MAX, writer.open_regional::<Blobs>("blobs"))
        .await
        .expect("opens within the bound")
        .expect("opens");
    for index in 1..=BLOBS {
        let count = blobs
            .append(blob(index)[..BLOB_BYTES - 64].to_vec())
            .await
            .expect("appended");
        assert_eq!(count, index);
    }
    let written = blobs.read(Blobs::summary);
    assert_eq!(written.0, BLOBS);

    // A new client builds its copy from the log alone: every record, each near the largest
    // size, in a row.
    let reader = dsss::Client::connect(config).await.expect("connect");
    let opened = tokio::time::timeout(WAIT_MAX, reader.open_regional::<Blobs>("blobs"))
        .await
        .expect("the object opens within the bound: the stream never ends in a loop")
        .expect("opens");
    assert_eq!(opened.read(Blobs::summary), written);
    // Its calls complete too.
    let count = tokio::time::timeout(WAIT_MAX, opened.append(vec![1; 16]))
        .await
        .expect("completes within the bound")
        .expect("appended");
    assert_eq!(count, BLOBS + 1);
}
