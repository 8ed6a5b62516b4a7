//! Replays the corpus of fuzz target `raft_group_step` (`fuzz/corpus/raft_group_step/`)
//! through the check the target runs (`fuzz/checks/raft_group_step.rs`): sequences of decoded
//! raft messages, ticks and proposals stepped into a real group over a memory store, which
//! must never panic.

#[path = "../../fuzz/checks/raft_group_step.rs"]
mod check;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;

use dsss_raft_group::encode_message;
use dsss_raft_group::raft::eraftpb::{
    ConfState, Entry, Message, MessageType, Snapshot, SnapshotMetadata,
};

const TARGET: &str = "raft_group_step";

#[test]
fn every_corpus_input_leaves_the_node_running() {
    replay::replay(TARGET, check::check);
}

#[test]
fn every_start_is_reached_by_honest_steps() {
    // The starts assert their role and commit index themselves.
    for selector in 0..4 {
        check::check(&[selector]);
    }
}

/// A message operation of the check's input: op 0, a 2-byte length, the encoded message.
fn framed(message: &Message) -> Vec<u8> {
    let bytes = encode_message(message);
    let mut data = vec![0];
    data.extend_from_slice(&u16::try_from(bytes.len()).unwrap().to_be_bytes());
    data.extend_from_slice(&bytes);
    data
}

fn message(msg_type: MessageType, from: u64, term: u64) -> Message {
    let mut message = Message::default();
    message.set_msg_type(msg_type);
    message.from = from;
    message.to = 1;
    message.term = term;
    message
}

/// Writes the seed corpus: each start followed by messages of every kind a peer sends, ticks
/// and proposals. Run with `cargo test -p dsss-raft-group --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus/raft_group_step; run by hand to reseed"]
fn write_seed_corpus() {
    let mut append = message(MessageType::MsgAppend, 2, 3);
    append.index = 2;
    append.log_term = 2;
    append.commit = 2;
    append.set_entries(
        vec![Entry {
            index: 3,
            term: 3,
            data: b"entry".to_vec().into(),
            ..Entry::default()
        }]
        .into(),
    );
    let mut heartbeat = message(MessageType::MsgHeartbeat, 2, 3);
    heartbeat.commit = 2;
    let mut vote = message(MessageType::MsgRequestVote, 3, 4);
    vote.index = 2;
    vote.log_term = 2;
    let mut pre_vote = message(MessageType::MsgRequestPreVote, 3, 4);
    pre_vote.index = 2;
    pre_vote.log_term = 2;
    let mut metadata = SnapshotMetadata {
        index: 5,
        term: 3,
        ..SnapshotMetadata::default()
    };
    metadata.set_conf_state(ConfState {
        voters: vec![1, 2, 3],
        ..ConfState::default()
    });
    let mut snapshot_body = Snapshot {
        data: 40u64.to_be_bytes().to_vec().into(),
        ..Snapshot::default()
    };
    snapshot_body.set_metadata(metadata);
    let mut snapshot = message(MessageType::MsgSnapshot, 2, 3);
    snapshot.set_snapshot(snapshot_body);
    let mut acknowledgement = message(MessageType::MsgAppendResponse, 3, 2);
    acknowledgement.index = 2;
    let mut rejection = message(MessageType::MsgAppendResponse, 3, 2);
    rejection.index = 2;
    rejection.reject = true;
    rejection.reject_hint = 1;
    let mut heartbeat_response = message(MessageType::MsgHeartbeatResponse, 3, 2);
    heartbeat_response.commit = 2;
    let mut proposal = message(MessageType::MsgPropose, 3, 0);
    proposal.set_entries(
        vec![Entry {
            data: b"forwarded".to_vec().into(),
            ..Entry::default()
        }]
        .into(),
    );
    let mut read = message(MessageType::MsgReadIndex, 3, 0);
    read.set_entries(
        vec![Entry {
            data: b"read".to_vec().into(),
            ..Entry::default()
        }]
        .into(),
    );
    let transfer = message(MessageType::MsgTransferLeader, 3, 2);
    let timeout_now = message(MessageType::MsgTimeoutNow, 2, 3);
    let vote_response = message(MessageType::MsgRequestVoteResponse, 3, 2);

    let messages = [
        ("append", append),
        ("heartbeat", heartbeat),
        ("vote", vote),
        ("pre_vote", pre_vote),
        ("snapshot", snapshot),
        ("append_response", acknowledgement),
        ("append_rejection", rejection),
        ("heartbeat_response", heartbeat_response),
        ("propose", proposal),
        ("read_index", read),
        ("transfer_leader", transfer),
        ("timeout_now", timeout_now),
        ("vote_response", vote_response),
    ];
    let starts = ["fresh", "follower", "leader", "sole_leader"];
    let mut seeds = Vec::new();
    for (selector, start) in starts.iter().enumerate() {
        for (name, message) in &messages {
            let mut data = vec![selector as u8];
            data.extend_from_slice(&framed(message));
            seeds.push((format!("{start}-{name}"), data));
        }
        // Ticks past an election timeout, a proposal, a campaign and a read.
        let operations = vec![
            selector as u8,
            2 | (23 << 2),
            3 | (3 << 3),
            b'a',
            b'b',
            b'c',
            0b111,
            0b1111,
        ];
        seeds.push((format!("{start}-operations"), operations));
    }
    replay::write_seeds(TARGET, &seeds);
}
