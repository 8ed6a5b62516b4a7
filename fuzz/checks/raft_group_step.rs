//! Raft messages from the network never stop a node: a real `RaftGroup` over a `MemoryStore`,
//! brought into a role by honest steps, takes a sequence of decoded messages (each through
//! `decode_message` and `RaftGroup::step`, which runs `message_check` before raft-rs), ticks,
//! proposals and campaigns, with a ready round after each. Refusals (`DecodeError`,
//! `StepError`) are fine; a panic or a failed ready round is not.
//!
//! Input: the first byte picks the starting role ([`Start`]); then operations, each an op byte
//! followed by its operands:
//! - op % 4 == 0 or 1: a message, a 2-byte big-endian length and that many bytes of an encoded
//!   `eraftpb.Message`. Unless bit 7 of the op is set, its `to` is rewritten to this node, so
//!   that most inputs reach raft instead of stopping at `StepError::WrongReceiver`;
//! - op % 4 == 2: `(op >> 2) % 24 + 1` ticks;
//! - op % 4 == 3: bit 2 clear, a proposal of the next `(op >> 3) % 8` bytes; bit 2 set, a
//!   campaign, or with bit 3 also set, a read request.
//!
//! Shared by the fuzz target `raft_group_step` and the corpus replay in
//! `raft-group/tests/fuzz_corpus.rs`.

use dsss_raft_group::raft::eraftpb::{Entry, Message, MessageType};
use dsss_raft_group::{
    DurableStore, MemoryStore, RaftGroup, RaftGroupConfig, Role, SnapshotError, StateMachine,
    StoreError, StoreIo, WriteBatch, decode_message,
};

/// This node's id.
const NODE: u64 = 1;
/// The voters of the three-member starts.
const VOTERS: [u64; 3] = [1, 2, 3];
/// The honest leader of [`Start::Follower`] and the voter that elects [`Start::Leader`].
const PEER: u64 = 2;

/// Sums the bytes of the applied entries: enough state for snapshots to mean something.
#[derive(Default)]
struct ByteCounter(u64);

impl StateMachine for ByteCounter {
    type Output = u64;

    fn apply(
        &mut self,
        _index: u64,
        data: &[u8],
        _store: &dyn DurableStore,
        _batch: &mut WriteBatch,
    ) -> Result<u64, StoreError> {
        self.0 = self.0.wrapping_add(data.len() as u64);
        Ok(self.0)
    }

    fn snapshot(&self, _store: &dyn DurableStore) -> Result<Vec<u8>, StoreError> {
        Ok(self.0.to_be_bytes().to_vec())
    }

    fn validate_snapshot(&self, data: &[u8]) -> Result<(), SnapshotError> {
        <[u8; 8]>::try_from(data)
            .map(|_| ())
            .map_err(|_| SnapshotError::new(format!("{} bytes, not 8", data.len())))
    }

    fn restore(&mut self, data: &[u8], _batch: &mut WriteBatch) -> Result<(), SnapshotError> {
        let bytes = <[u8; 8]>::try_from(data)
            .map_err(|_| SnapshotError::new(format!("{} bytes, not 8", data.len())))?;
        self.0 = u64::from_be_bytes(bytes);
        Ok(())
    }

    fn recover(&mut self, _store: &dyn DurableStore) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The role the node is in when the fuzzed operations start.
#[derive(Clone, Copy, Debug)]
pub enum Start {
    /// Just bootstrapped with voters 1, 2, 3: term 1, no leader.
    Fresh,
    /// Follows leader 2 in term 2, entry 2 appended and committed.
    Follower,
    /// Leads term 2, elected by 2, entry 2 committed.
    Leader,
    /// The only voter of its group, leading term 2.
    SoleLeader,
}

impl Start {
    fn of(selector: u8) -> Start {
        match selector % 4 {
            0 => Start::Fresh,
            1 => Start::Follower,
            2 => Start::Leader,
            _ => Start::SoleLeader,
        }
    }
}

fn message(msg_type: MessageType, term: u64) -> Message {
    let mut message = Message::default();
    message.set_msg_type(msg_type);
    message.from = PEER;
    message.to = NODE;
    message.term = term;
    message
}

struct Node {
    group: RaftGroup<ByteCounter>,
    store: MemoryStore,
}

impl Node {
    fn open(voters: Vec<u64>) -> Node {
        let mut store = MemoryStore::new();
        let config = RaftGroupConfig::new(NODE, voters);
        let group = match RaftGroup::open(config, ByteCounter::default(), &mut store) {
            Ok(group) => group,
            Err(error) => panic!("a bootstrapped group opens: {error}"),
        };
        Node { group, store }
    }

    /// One ready round; a failed round is fatal for a node, so it is a finding here.
    fn ready(&mut self) {
        let mut io = StoreIo::new(&mut self.store);
        if let Err(error) = self.group.handle_ready(&mut io) {
            panic!("a ready round failed: {error}");
        }
    }

    /// Steps a message an honest peer sends at this point; a refusal is a bug in the start.
    fn step_honest(&mut self, message: Message) {
        let msg_type = message.get_msg_type();
        if let Err(error) = self.group.step(message) {
            panic!("the honest {msg_type:?} of the start was refused: {error}");
        }
        self.ready();
    }

    fn start(start: Start) -> Node {
        match start {
            Start::Fresh => Node::open(VOTERS.to_vec()),
            Start::Follower => {
                let mut node = Node::open(VOTERS.to_vec());
                let mut append = message(MessageType::MsgAppend, 2);
                append.index = 1;
                append.log_term = 1;
                append.commit = 1;
                let entry = Entry {
                    index: 2,
                    term: 2,
                    ..Entry::default()
                };
                append.set_entries(vec![entry].into());
                node.step_honest(append);
                let mut heartbeat = message(MessageType::MsgHeartbeat, 2);
                heartbeat.commit = 2;
                node.step_honest(heartbeat);
                node.expect(Role::Follower, 2);
                node
            }
            Start::Leader => {
                let mut node = Node::open(VOTERS.to_vec());
                node.campaign();
                node.step_honest(message(MessageType::MsgRequestPreVoteResponse, 2));
                node.step_honest(message(MessageType::MsgRequestVoteResponse, 2));
                let mut acknowledgement = message(MessageType::MsgAppendResponse, 2);
                acknowledgement.index = 2;
                node.step_honest(acknowledgement);
                node.expect(Role::Leader, 2);
                node
            }
            Start::SoleLeader => {
                let mut node = Node::open(vec![NODE]);
                node.campaign();
                node.ready();
                node.expect(Role::Leader, 2);
                node
            }
        }
    }

    fn campaign(&mut self) {
        // Refused when the node may not campaign (a learner, say): fine.
        let _ = self.group.campaign();
        self.ready();
    }

    fn expect(&self, role: Role, commit_index: u64) {
        assert_eq!(self.group.role(), role, "role after the start");
        assert_eq!(
            self.group.commit_index(),
            commit_index,
            "commit after the start"
        );
    }
}

/// Reads a 2-byte big-endian length and that many bytes (fewer if the input ends).
fn take_framed<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let length = match *data {
        [high, low, ..] => usize::from(u16::from_be_bytes([*high, *low])),
        _ => data.len(),
    };
    *data = &data[data.len().min(2)..];
    let (frame, rest) = data.split_at(length.min(data.len()));
    *data = rest;
    frame
}

/// Runs the input. Panics only when the group or raft-rs does.
pub fn check(data: &[u8]) {
    let Some((&selector, mut data)) = data.split_first() else {
        return;
    };
    let mut node = Node::start(Start::of(selector));
    // Read contexts must be unique among the reads in flight.
    let mut reads: u64 = 0;
    while let Some((&op, rest)) = data.split_first() {
        data = rest;
        match op % 4 {
            0 | 1 => {
                let bytes = take_framed(&mut data);
                let Ok(mut message) = decode_message(bytes) else {
                    continue;
                };
                if op & 0x80 == 0 {
                    message.to = NODE;
                }
                // Refusals are the point of the checks; only a panic is a finding.
                let _ = node.group.step(message);
                node.ready();
            }
            2 => {
                for _ in 0..(op >> 2) % 24 + 1 {
                    node.group.tick();
                    node.ready();
                }
            }
            _ => {
                if op & 0b100 == 0 {
                    let length = usize::from((op >> 3) % 8).min(data.len());
                    let (proposal, rest) = data.split_at(length);
                    data = rest;
                    let _ = node.group.propose(proposal.to_vec());
                } else if op & 0b1000 == 0 {
                    let _ = node.group.campaign();
                } else {
                    reads += 1;
                    node.group.read_index(reads.to_be_bytes().to_vec());
                }
                node.ready();
            }
        }
    }
}
