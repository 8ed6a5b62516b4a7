//! The production driver in one process, for checkpoints, truncation and barriers: three nodes
//! on loopback ports with RocksDB stores in a temporary directory, called through their real
//! gRPC services. Reference: docs/design.md section 2 ("Checkpoints"), section 1 ("linearizable
//! reads on request") and section 3 (thin drivers around the sans-IO node).

use dsss_region_node::CHECKPOINT_STATE_BYTES_MAX;
use dsss_wire::proto::{self, propose_reply};
use tokio::time::{Instant, sleep};
use tonic::Code;

mod support;

use support::{NODE_IDS, POLL_INTERVAL, Region, WAIT_MAX};

const OBJECT: &str = "lobby/main";

impl Region {
    async fn status(&self, node_id: u64) -> proto::StatusReply {
        self.stub(node_id)
            .status(proto::StatusRequest {})
            .await
            .expect("status")
            .into_inner()
    }

    async fn wait_for_leader(&self) -> u64 {
        let started = Instant::now();
        loop {
            for node_id in NODE_IDS {
                if let Ok(status) = self.stub(node_id).status(proto::StatusRequest {}).await
                    && status.get_ref().role == proto::NodeRole::Leader as i32
                {
                    return node_id;
                }
            }
            assert!(started.elapsed() < WAIT_MAX, "no leader");
            sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until every node's status satisfies `condition`.
    async fn wait_for_every_status(
        &self,
        what: &str,
        condition: impl Fn(&proto::StatusReply) -> bool,
    ) {
        let started = Instant::now();
        loop {
            let mut all = true;
            for node_id in NODE_IDS {
                all &= condition(&self.status(node_id).await);
            }
            if all {
                return;
            }
            assert!(started.elapsed() < WAIT_MAX, "timed out waiting: {what}");
            sleep(POLL_INTERVAL).await;
        }
    }

    /// Proposes one call on `node_id`, retrying while no leader is known; its position.
    async fn propose(&self, node_id: u64, object: &str, client_id: u64, sequence: u64) -> u64 {
        let started = Instant::now();
        // The client's session first (opening a live session again is harmless).
        loop {
            let reply = self
                .stub(node_id)
                .open_session(proto::OpenSessionRequest {
                    session_id: client_id,
                })
                .await;
            if let Ok(reply) = reply
                && let Some(proto::open_session_reply::Outcome::Opened(_)) =
                    reply.into_inner().outcome
            {
                break;
            }
            assert!(started.elapsed() < WAIT_MAX, "the session was never opened");
            sleep(POLL_INTERVAL).await;
        }
        loop {
            let reply = self
                .stub(node_id)
                .propose(proto::ProposeRequest {
                    object_id: object.to_owned(),
                    method_id: 1,
                    arguments: format!("call {sequence}").into_bytes(),
                    client_id,
                    request_sequence: sequence,
                    scope: proto::Scope::Regional.into(),
                })
                .await;
            if let Ok(reply) = reply
                && let Some(propose_reply::Outcome::Committed(committed)) =
                    reply.into_inner().outcome
            {
                return committed.position;
            }
            assert!(started.elapsed() < WAIT_MAX, "the call was never committed");
            sleep(POLL_INTERVAL).await;
        }
    }

    async fn upload(
        &self,
        node_id: u64,
        object: &str,
        position: u64,
        state: Vec<u8>,
        hash: u8,
        client_id: u64,
    ) -> Result<proto::UploadCheckpointReply, tonic::Status> {
        self.stub(node_id)
            .upload_checkpoint(proto::UploadCheckpointRequest {
                checkpoint: Some(proto::Checkpoint {
                    object_id: object.to_owned(),
                    position,
                    state,
                    state_hash: vec![hash; 32],
                }),
                client_id,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    async fn upload_outcome(
        &self,
        node_id: u64,
        object: &str,
        position: u64,
        hash: u8,
        client_id: u64,
    ) -> proto::CheckpointOutcome {
        let reply = self
            .upload(node_id, object, position, vec![hash; 100], hash, client_id)
            .await
            .expect("upload answered");
        assert!(reply.not_leader.is_none(), "a leader is known");
        reply.outcome()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_agree_truncate_the_log_and_a_mismatch_raises_an_alarm() {
    let mut region = Region::start(false).await;
    let leader = region.wait_for_leader().await;
    let followers: Vec<u64> = NODE_IDS.into_iter().filter(|&id| id != leader).collect();
    let mut last = 0;
    for sequence in 1..=5 {
        last = region.propose(followers[0], OBJECT, 7, sequence).await;
    }
    assert_eq!(last, 5);
    region
        .wait_for_every_status("every member applied 5", |status| {
            status.applied_position >= 5
        })
        .await;

    // Two replicas report the same state at position 5, through two different followers.
    assert_eq!(
        region.upload_outcome(followers[0], OBJECT, 5, 1, 100).await,
        proto::CheckpointOutcome::Stored
    );
    assert_eq!(
        region.upload_outcome(followers[1], OBJECT, 5, 1, 100).await,
        proto::CheckpointOutcome::Stored,
        "the same client again is idempotent"
    );
    assert_eq!(
        region.upload_outcome(followers[1], OBJECT, 5, 1, 200).await,
        proto::CheckpointOutcome::Agreed
    );
    assert_eq!(
        region.upload_outcome(leader, OBJECT, 4, 1, 300).await,
        proto::CheckpointOutcome::Superseded
    );
    region
        .wait_for_every_status("every member truncated through 5", |status| {
            status.truncated_through_position == 5
                && status.first_retained_position == 6
                && status.checkpointed_objects == 1
                && status.objects_lacking_agreed_checkpoint == 0
        })
        .await;
    for node_id in NODE_IDS {
        let fetched = region
            .stub(node_id)
            .fetch_checkpoint(proto::FetchCheckpointRequest {
                object_id: OBJECT.to_owned(),
                ..Default::default()
            })
            .await
            .expect("fetch")
            .into_inner();
        let checkpoint = fetched.checkpoint.expect("a checkpoint is kept");
        assert_eq!(checkpoint.position, 5);
        assert_eq!(checkpoint.state, vec![1; 100]);
        assert_eq!(fetched.truncated_through_position, 5);
        // Below the truncation point a subscription fails, naming where the log starts.
        let error = region
            .stub(node_id)
            .subscribe(proto::SubscribeRequest {
                from_position: 1,
                object_ids: Vec::new(),
                client_id: 0,
            })
            .await
            .expect_err("truncated");
        assert_eq!(error.code(), Code::OutOfRange, "{error:?}");
        assert!(
            error.message().contains("starts at position 6"),
            "{}",
            error.message()
        );
    }
    // From one past the checkpoint the stream goes on.
    let mut stream = region
        .stub(leader)
        .subscribe(proto::SubscribeRequest {
            from_position: 6,
            object_ids: Vec::new(),
            client_id: 0,
        })
        .await
        .expect("subscribe")
        .into_inner();
    let position = region.propose(leader, OBJECT, 7, 6).await;
    assert_eq!(position, 6);
    let reply = stream
        .message()
        .await
        .expect("a reply")
        .expect("open stream");
    assert_eq!(reply.entries[0].position, 6);

    // Another object without a checkpoint holds truncation where it is.
    region.propose(leader, "other/object", 8, 1).await;
    region
        .wait_for_every_status("every member applied 7", |status| {
            status.applied_position >= 7
        })
        .await;
    assert_eq!(
        region.upload_outcome(leader, OBJECT, 6, 2, 100).await,
        proto::CheckpointOutcome::Stored
    );
    assert_eq!(
        region.upload_outcome(leader, OBJECT, 6, 3, 200).await,
        proto::CheckpointOutcome::HashMismatch
    );
    region
        .wait_for_every_status("every member raised the alarm", |status| {
            status.divergence_alarms == 1
                && status.diverged_objects
                    == vec![proto::DivergedObject {
                        object_id: OBJECT.to_owned(),
                        position: 6,
                        first_client_id: 100,
                        second_client_id: 200,
                    }]
                && status.truncated_through_position == 5
                // The object's newest checkpoint (one client's) covers its records; the other
                // object has none.
                && status.objects_lacking_agreed_checkpoint == 1
        })
        .await;

    // A restart keeps the checkpoints, the alarm and the truncation point.
    region.restart(followers[0]).await;
    region
        .wait_for_every_status("the restarted member kept everything", |status| {
            status.divergence_alarms == 1
                && status.truncated_through_position == 5
                && status.first_retained_position == 6
                && status.checkpointed_objects == 1
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_uploads_are_refused_naming_the_field_and_the_largest_state_travels_both_ways() {
    let region = Region::start(false).await;
    let leader = region.wait_for_leader().await;
    let follower = NODE_IDS.into_iter().find(|&id| id != leader).unwrap();
    let position = region.propose(leader, "big/object", 1, 1).await;
    region
        .wait_for_every_status("every member applied the call", |status| {
            status.applied_position >= position
        })
        .await;
    let cases: [(&str, Vec<u8>, u64, usize, &str); 4] = [
        ("bad\u{7}id", vec![1], 1, 32, "checkpoint.object_id"),
        (OBJECT, vec![1], 1, 31, "checkpoint.state_hash"),
        (
            OBJECT,
            vec![0; CHECKPOINT_STATE_BYTES_MAX + 1],
            1,
            32,
            "checkpoint.state",
        ),
        (OBJECT, vec![1], 1_000, 32, "checkpoint.position"),
    ];
    for (object, state, position, hash_bytes, field) in cases {
        let error = region
            .stub(follower)
            .upload_checkpoint(proto::UploadCheckpointRequest {
                checkpoint: Some(proto::Checkpoint {
                    object_id: object.to_owned(),
                    position,
                    state,
                    state_hash: vec![1; hash_bytes],
                }),
                client_id: 1,
            })
            .await
            .expect_err("refused");
        assert_eq!(error.code(), Code::InvalidArgument, "{field}: {error:?}");
        assert!(error.message().contains(field), "{}", error.message());
    }
    let error = region
        .stub(leader)
        .fetch_checkpoint(proto::FetchCheckpointRequest {
            object_id: String::new(),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("object_id"), "{}", error.message());

    // The largest state goes up through a follower (then through raft to every member) and
    // comes back down from each.
    let largest: Vec<u8> = (0..CHECKPOINT_STATE_BYTES_MAX).map(|i| i as u8).collect();
    let reply = region
        .upload(follower, "big/object", position, largest.clone(), 9, 1)
        .await
        .expect("the largest state is taken");
    assert_eq!(reply.outcome(), proto::CheckpointOutcome::Stored);
    for node_id in NODE_IDS {
        let started = Instant::now();
        loop {
            let fetched = region
                .stub(node_id)
                .fetch_checkpoint(proto::FetchCheckpointRequest {
                    object_id: "big/object".to_owned(),
                    ..Default::default()
                })
                .await
                .expect("fetch")
                .into_inner();
            if let Some(checkpoint) = fetched.checkpoint {
                assert!(
                    checkpoint.state == largest,
                    "node {node_id} serves the state whole"
                );
                break;
            }
            assert!(
                started.elapsed() < WAIT_MAX,
                "node {node_id} never applied it"
            );
            sleep(POLL_INTERVAL).await;
        }
    }
}

/// Reference: docs/design.md section 1, "linearizable reads on request".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_returns_a_position_at_or_above_every_acknowledged_proposal() {
    let region = Region::start(false).await;
    region.wait_for_leader().await;
    for round in 1..=3 {
        let mut acknowledged = 0;
        for (index, node_id) in NODE_IDS.into_iter().enumerate() {
            let sequence = round * 10 + index as u64;
            acknowledged = acknowledged.max(region.propose(node_id, OBJECT, 5, sequence).await);
        }
        for node_id in NODE_IDS {
            let barrier = region
                .stub(node_id)
                .sync(proto::SyncRequest {
                    object_ids: vec![OBJECT.to_owned()],
                })
                .await
                .expect("a barrier")
                .into_inner();
            assert!(
                barrier.apply_through_position >= acknowledged,
                "round {round}: node {node_id} gave {} below the acknowledged {acknowledged}",
                barrier.apply_through_position
            );
            assert_eq!(barrier.sealed_epoch_number, 0, "no global tier");
            // The node applied what it asks the caller to apply through.
            let status = region.status(node_id).await;
            assert!(status.applied_position >= barrier.apply_through_position);
        }
    }
    let error = region
        .stub(1)
        .sync(proto::SyncRequest {
            object_ids: vec![String::new()],
        })
        .await
        .expect_err("refused");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("object_ids[0]"),
        "{}",
        error.message()
    );
}
