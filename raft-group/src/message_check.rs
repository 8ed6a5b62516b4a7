//! Whether a raft message from the network is safe to hand to raft-rs, given the receiving
//! node's log and state.
//!
//! raft-rs 0.7 trusts its peers: a message whose fields no honest peer would send reaches a
//! `fatal!`, an `assert!`, an arithmetic overflow or a slice index out of range, and the node
//! stops (or, for a few, a state it never leaves: a snapshot request no snapshot serves, a
//! durable log the store refuses at restart). `RaftGroup::step` runs `check_message` before
//! [`RawNode::step`](raft::RawNode::step), and it refuses such messages, naming the field,
//! its value and the bound it breaks ([`UnsafeMessage`]).
//!
//! Every rule is derived from what raft-rs itself sends, so that no message of an honest
//! peer is ever refused, whatever the network delays, drops, duplicates or reorders; each
//! rule's comment gives that argument next to the crash it prevents. (One message raft-rs 0.7
//! can send breaks a rule: with `batch_append`, an append whose entries do not follow its
//! anchor, which would itself stop the follower; the group runs raft-rs without it, see
//! `RaftGroupConfig::raft_config`.) Two facts carry most of the arguments:
//!
//! - raft-rs answers a message of a lower term without reading any other field, so the rules
//!   on fields apply only to messages of the node's term or a higher one (an honest peer's
//!   stale message may name indexes the node no longer holds, and is harmless);
//! - an honest node only sends a message that promises persisted state after persisting it
//!   ([`RaftGroup::handle_ready`](crate::RaftGroup::handle_ready)), and a leader's log only
//!   grows during its term.
//!
//! What no rule can catch: values within the bounds that an honest peer could have sent but
//! did not (a forged heartbeat that commits entries the leader never committed, a forged
//! acknowledgement within the leader's log, a forged vote). Telling those apart needs
//! authenticated peers, and a group fed such lies may disagree on what is committed and stop
//! making progress; what the rules keep is that neither such a message nor anything a node
//! receives because of it stops a node.

use std::fmt::Display;

use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfState, Message, MessageType};
use raft::{Changer, ProgressTracker, Raft, Storage};

use crate::group::Role;

/// The highest term a message may carry. raft-rs adds one to its term when it campaigns
/// (and `u64::MAX + 1` overflows); honest terms grow by one per election, so even a million
/// elections a second take close to three hundred thousand years to reach this.
pub const TERM_MAX: u64 = u64::MAX / 2;

/// The highest log index a message may name as an anchor, an entry or a snapshot. raft-rs
/// computes `index + 1` on all of them; honest indexes grow by one per entry, so even a
/// billion entries a second take three centuries to reach this.
pub const INDEX_MAX: u64 = u64::MAX / 2;

/// The most member ids (voters, learners, outgoing voters and staged learners together) a
/// snapshot's membership may list. raft-rs restores a membership one change at a time, in
/// time quadratic in its size; a raft group has a handful of members.
pub const CONF_STATE_IDS_MAX: usize = 1_024;

/// Why a message is not safe to step: the field, its value, and what the field may hold
/// here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value}, allowed: {bound}")]
pub struct UnsafeMessage {
    /// The field, as spelled in `eraftpb.proto` (`commit`, `entries[2].index`,
    /// `snapshot.metadata.term`, ...).
    pub field: String,
    /// Its value in the message.
    pub value: String,
    /// What it may hold on this node now, and why.
    pub bound: String,
}

fn refuse(
    field: impl Into<String>,
    value: impl Display,
    bound: impl Into<String>,
) -> Result<(), UnsafeMessage> {
    Err(UnsafeMessage {
        field: field.into(),
        value: value.to_string(),
        bound: bound.into(),
    })
}

/// What the check reads of the receiving node, taken from raft just before the step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeState {
    /// This node's id.
    pub(crate) id: u64,
    /// Its role before the step (a message of a higher term makes it a follower first).
    pub(crate) role: Role,
    /// Its term before the step.
    pub(crate) term: u64,
    /// The leader this node follows, if it knows one.
    pub(crate) leader_id: Option<u64>,
    /// Whether this node is a voter, so that it campaigns when told to.
    pub(crate) promotable: bool,
    /// Whether this node is the only voter of every half of its membership: a campaign of
    /// its own wins at once.
    pub(crate) sole_voter: bool,
    /// The last index of the log, persisted or not (raft's `last_index`).
    pub(crate) last_index: u64,
    /// The index through which the log is persisted.
    pub(crate) persisted_index: u64,
    /// The index through which the log is known committed.
    pub(crate) committed_index: u64,
    /// The term of the entry at the commit index (known: raft keeps the term of the
    /// compaction point).
    pub(crate) committed_term: Option<u64>,
}

impl NodeState {
    /// Reads the state of `raft`.
    pub(crate) fn of<S: Storage>(raft: &Raft<S>) -> Self {
        let log = &raft.raft_log;
        let voter_ids = raft.prs().conf().voters().ids();
        let mut voters = voter_ids.iter();
        let sole_voter = voters.next() == Some(raft.id) && voters.next().is_none();
        NodeState {
            id: raft.id,
            role: raft.state.into(),
            term: raft.term,
            leader_id: (raft.leader_id != raft::INVALID_ID).then_some(raft.leader_id),
            promotable: raft.promotable(),
            sole_voter,
            last_index: log.last_index(),
            persisted_index: log.persisted,
            committed_index: log.committed,
            committed_term: log.term(log.committed).ok(),
        }
    }

    fn unpersisted(&self) -> bool {
        self.persisted_index < self.last_index
    }

    /// Whether a campaign of this node would make it leader at once with entries not yet
    /// persisted, which raft-rs asserts never happens: it is the only voter and holds
    /// unpersisted entries. (A leader does not campaign; deposed, it may.)
    pub(crate) fn own_campaign_would_lead_unpersisted(&self) -> bool {
        self.promotable && self.sole_voter && self.unpersisted()
    }
}

/// Decides whether raft-rs can step `message` on the node in `node` without stopping.
pub(crate) fn check_message(node: &NodeState, message: &Message) -> Result<(), UnsafeMessage> {
    let msg_type = message.get_msg_type();
    if raft::raw_node::is_local_msg(msg_type) {
        // `RawNode::step` refuses these itself (`Error::StepLocalMsg`).
        return Ok(());
    }
    check_sender_and_term(node, message)?;
    if message.term != 0 && message.term < node.term {
        // raft-rs answers a stale message at most with a bare response naming its own term,
        // and reads no other field.
        return Ok(());
    }
    match msg_type {
        MessageType::MsgAppend => check_append(message),
        MessageType::MsgHeartbeat => check_heartbeat(node, message),
        MessageType::MsgSnapshot => check_snapshot(node, message),
        MessageType::MsgAppendResponse => check_append_response(node, message),
        MessageType::MsgRequestVoteResponse => check_vote_response(node, message),
        MessageType::MsgTimeoutNow => check_timeout_now(node, message),
        MessageType::MsgPropose | MessageType::MsgReadIndex => check_single_entry(message),
        MessageType::MsgTransferLeader => check_transfer_leader(node, message),
        // raft-rs only compares these fields (vote requests and pre-vote answers), keeps the
        // highest (a heartbeat answer's commit), or commits only an index its log holds with
        // the named term (a read answer, a rejected vote's commit).
        MessageType::MsgRequestVote
        | MessageType::MsgRequestPreVote
        | MessageType::MsgRequestPreVoteResponse
        | MessageType::MsgHeartbeatResponse
        | MessageType::MsgReadIndexResp => Ok(()),
        // Returned above.
        MessageType::MsgHup
        | MessageType::MsgBeat
        | MessageType::MsgUnreachable
        | MessageType::MsgSnapStatus
        | MessageType::MsgCheckQuorum => Ok(()),
    }
}

fn check_sender_and_term(node: &NodeState, message: &Message) -> Result<(), UnsafeMessage> {
    // raft-rs reads sender 0 as "no node": a vote recorded for it is a vote for nobody. Never
    // honest: raft-rs stamps its own id on every message it sends.
    if message.from == raft::INVALID_ID {
        return refuse("from", 0, "a node id (0 is reserved for \"no node\")");
    }
    let msg_type = message.get_msg_type();
    // A node that takes itself for its leader forwards every proposal and read to itself,
    // forever. Never honest: raft-rs never sends a message to its own node (its broadcasts
    // skip its id, it answers the sender, it forwards to its leader). Exempt are the
    // messages whose `from` names another node than the sender: a leader transfer names
    // the transferee (the leader itself, say), and a forwarded proposal or read names the
    // node it started at, to which it may come back when leadership moves on the way.
    let names_another_node = matches!(
        msg_type,
        MessageType::MsgTransferLeader | MessageType::MsgPropose | MessageType::MsgReadIndex
    );
    if message.from == node.id && !names_another_node {
        return refuse(
            "from",
            message.from,
            format!("another node than this one ({msg_type:?} never goes to its own sender)"),
        );
    }
    let travels_without_term = matches!(
        msg_type,
        MessageType::MsgPropose | MessageType::MsgReadIndex
    );
    if travels_without_term && message.term != 0 {
        // A follower forwards these to its leader, and raft-rs stops at a fatal error
        // ("term should not be set when sending") forwarding one that carries a term. Never
        // honest: raft-rs sends them without a term and stops itself before sending one with.
        return refuse(
            "term",
            message.term,
            format!("0 ({msg_type:?} travels without a term)"),
        );
    }
    if !travels_without_term && message.term == 0 {
        // raft-rs takes a message without a term for one of the node's own and skips every
        // term check: a term-0 append reaches a candidate (a debug assertion) or rewinds its
        // term to 0, a granted term-0 vote stops at a fatal error, a term-0 read answer
        // commits past the log. Never honest: raft-rs stamps its term (at least 1 once it
        // has heard of a group) on every other message and stops before sending a vote
        // message without one.
        return refuse(
            "term",
            0,
            format!(
                "at least 1 (only MsgPropose and MsgReadIndex travel without a term, not {msg_type:?})"
            ),
        );
    }
    if message.term > TERM_MAX {
        return refuse(
            "term",
            message.term,
            format!("at most {TERM_MAX} (raft-rs adds 1 to its term when it campaigns)"),
        );
    }
    Ok(())
}

fn check_append(message: &Message) -> Result<(), UnsafeMessage> {
    // A leader anchors an append at `next - 1` with the term its own log holds there, and
    // sends the entries that follow, straight from its log.
    if message.index > INDEX_MAX {
        return refuse(
            "index",
            message.index,
            format!("at most {INDEX_MAX} (raft-rs computes index + 1)"),
        );
    }
    if message.log_term == 0 && message.index != 0 {
        // raft-rs reads the term of an index past its log as 0, so an anchor past the log
        // with term 0 "matches": it then commits past its log (a fatal error) or appends
        // after a gap (an index out of range). Never honest: every entry and every snapshot
        // has a term of at least 1, so only the empty log's index 0 has term 0.
        return refuse(
            "log_term",
            0,
            format!(
                "at least 1 for an append anchored at index {} (only index 0 of an empty log has term 0)",
                message.index
            ),
        );
    }
    let mut term_floor = message.log_term.max(1);
    for (position, entry) in message.get_entries().iter().enumerate() {
        // raft-rs finds where the entries diverge from its log assuming they follow the
        // anchor without gaps: otherwise it slices past them (an index out of range), takes
        // a committed entry for a conflict (a fatal error), keeps a log with holes, or
        // acknowledges and commits an index past the entries (a fatal error on the next
        // commit). Never honest: a leader sends a run of its log starting right after the
        // anchor. (raft-rs's batching can anchor a run elsewhere; the group re-anchors it
        // before it leaves, `RaftGroup::handle_ready`.)
        let expected = (position as u64)
            .checked_add(1)
            .and_then(|offset| message.index.checked_add(offset))
            .filter(|&index| index <= INDEX_MAX);
        let Some(expected) = expected else {
            return refuse(
                format!("entries[{position}].index"),
                entry.index,
                format!("at most {INDEX_MAX} (raft-rs computes index + 1)"),
            );
        };
        if entry.index != expected {
            return refuse(
                format!("entries[{position}].index"),
                entry.index,
                format!(
                    "{expected} (the entries follow the anchor index {} without gaps)",
                    message.index
                ),
            );
        }
        // Terms never fall along a log, and the store refuses at restart a log whose terms
        // do (the node could never start again). Never honest: a leader's log, anchor
        // included, has rising terms of at least 1.
        if entry.term < term_floor {
            return refuse(
                format!("entries[{position}].term"),
                entry.term,
                format!("at least {term_floor} (terms never fall along a log, and start at 1)"),
            );
        }
        // An entry from a term ahead of its leader's would make this node, once leader,
        // append its own entries after a higher term, a log the store refuses at restart.
        // Never honest: a leader's entries come from its own term or earlier ones.
        if entry.term > message.term {
            return refuse(
                format!("entries[{position}].term"),
                entry.term,
                format!(
                    "at most the message term {} (a leader's entries are from its term or earlier)",
                    message.term
                ),
            );
        }
        term_floor = entry.term;
    }
    Ok(())
}

fn check_heartbeat(node: &NodeState, message: &Message) -> Result<(), UnsafeMessage> {
    // raft-rs commits a heartbeat's commit as is, and stops at a fatal error ("to_commit ...
    // is out of range") past its last index. Never honest: a leader sends
    // min(match, commit), and the follower acknowledged `match` only once it had persisted
    // those entries, which it never drops afterwards in that term.
    if message.commit > node.last_index {
        return refuse(
            "commit",
            message.commit,
            format!("at most the last index {}", node.last_index),
        );
    }
    Ok(())
}

fn check_snapshot(node: &NodeState, message: &Message) -> Result<(), UnsafeMessage> {
    let metadata = message.get_snapshot().get_metadata();
    // raft-rs computes index + 1 for the log that follows. Never honest: a snapshot covers
    // the leader's applied index.
    if metadata.index > INDEX_MAX {
        return refuse(
            "snapshot.metadata.index",
            metadata.index,
            format!("at most {INDEX_MAX} (raft-rs computes index + 1)"),
        );
    }
    // A snapshot of term 0 past the log "matches" the log (raft-rs reads the term of an
    // index past its log as 0) and raft-rs commits past its log, a fatal error. A term above
    // the message's makes the log's last term run ahead of the node's term. Never honest: a
    // snapshot carries the term of an entry of its leader's log, at least 1 and at most the
    // leader's term.
    if metadata.term == 0 || metadata.term > message.term {
        return refuse(
            "snapshot.metadata.term",
            metadata.term,
            format!(
                "between 1 and the message term {} (the term of an entry of the leader's log)",
                message.term
            ),
        );
    }
    // A snapshot ending at the commit index with another term than the committed entry's is
    // restored by raft-rs over a state already applied through that index, which the group
    // asserts never happens. Never honest: a committed entry is the same in every log.
    if metadata.index == node.committed_index
        && let Some(committed_term) = node.committed_term
        && metadata.term != committed_term
    {
        return refuse(
            "snapshot.metadata.term",
            metadata.term,
            format!(
                "{committed_term}, the term of the committed entry {} the snapshot ends at",
                node.committed_index
            ),
        );
    }
    // raft-rs stops at a fatal error on a membership it cannot restore, or one that restores
    // as another. Never honest: a leader's membership is the one raft-rs itself produced.
    let conf_state = metadata.get_conf_state();
    if let Err(reason) = check_conf_state(conf_state) {
        return refuse(
            "snapshot.metadata.conf_state",
            describe_conf_state(conf_state),
            format!("a membership raft-rs restores as it is, not this one: {reason}"),
        );
    }
    Ok(())
}

/// Restores `conf_state` the way raft-rs restores the membership of a snapshot
/// (`confchange::restore` then `post_conf_change`), into a scratch tracker, and reports what
/// raft-rs would stop on.
fn check_conf_state(conf_state: &ConfState) -> Result<(), String> {
    let ids = conf_state.voters.len()
        + conf_state.learners.len()
        + conf_state.voters_outgoing.len()
        + conf_state.learners_next.len();
    if ids > CONF_STATE_IDS_MAX {
        return Err(format!(
            "{ids} member ids, above the maximum {CONF_STATE_IDS_MAX}"
        ));
    }
    let single = raft_proto::new_conf_change_single;
    // The outgoing voters first, as a simple configuration; then, entering the joint
    // configuration, the incoming one: the outgoing voters removed, the voters and learners
    // added, and the staged learners added as learners.
    let outgoing: Vec<ConfChangeSingle> = conf_state
        .voters_outgoing
        .iter()
        .map(|&id| single(id, ConfChangeType::AddNode))
        .collect();
    let incoming: Vec<ConfChangeSingle> = conf_state
        .voters_outgoing
        .iter()
        .map(|&id| single(id, ConfChangeType::RemoveNode))
        .chain(
            conf_state
                .voters
                .iter()
                .map(|&id| single(id, ConfChangeType::AddNode)),
        )
        .chain(
            conf_state
                .learners
                .iter()
                .chain(&conf_state.learners_next)
                .map(|&id| single(id, ConfChangeType::AddLearnerNode)),
        )
        .collect();
    let mut tracker = ProgressTracker::new(1);
    let error = |error: raft::Error| error.to_string();
    if outgoing.is_empty() {
        for change in incoming {
            let (configuration, changes) =
                Changer::new(&tracker).simple(&[change]).map_err(error)?;
            tracker.apply_conf(configuration, changes, 1);
        }
    } else {
        for change in outgoing {
            let (configuration, changes) =
                Changer::new(&tracker).simple(&[change]).map_err(error)?;
            tracker.apply_conf(configuration, changes, 1);
        }
        let (configuration, changes) = Changer::new(&tracker)
            .enter_joint(conf_state.auto_leave, &incoming)
            .map_err(error)?;
        tracker.apply_conf(configuration, changes, 1);
    }
    let restored = tracker.conf().to_conf_state();
    if !raft_proto::conf_state_eq(&restored, conf_state) {
        return Err(format!("it restores as {}", describe_conf_state(&restored)));
    }
    Ok(())
}

fn describe_conf_state(conf_state: &ConfState) -> String {
    format!(
        "voters {:?} learners {:?} voters_outgoing {:?} learners_next {:?} auto_leave {}",
        conf_state.voters,
        conf_state.learners,
        conf_state.voters_outgoing,
        conf_state.learners_next,
        conf_state.auto_leave
    )
}

fn check_append_response(node: &NodeState, message: &Message) -> Result<(), UnsafeMessage> {
    // Only a leader of the message's term reads an append answer's fields.
    if node.role != Role::Leader || message.term != node.term {
        return Ok(());
    }
    // An acknowledgement past the leader's log makes raft-rs overflow (index + 1) or believe
    // the follower holds entries it does not: the leader then anchors appends past the
    // follower's log with term 0 and sends it commits past its log, and the follower stops.
    // Never honest: an answer of the leader's term answers one of its own appends or
    // snapshots, which name indexes of its log, and its log only grows during its term (an
    // answer naming the follower's commit index is within it too: the leader holds every
    // committed entry).
    if message.index > node.last_index {
        return refuse(
            "index",
            message.index,
            format!("at most the leader's last index {}", node.last_index),
        );
    }
    if !message.reject {
        return Ok(());
    }
    // raft-rs probes at min(rejected, hint + 1): a hint of u64::MAX overflows. Never honest:
    // the follower hints at an index at most the rejected anchor, or at its own last index
    // of the leader's term when it asks for a snapshot.
    if message.reject_hint > node.last_index {
        return refuse(
            "reject_hint",
            message.reject_hint,
            format!("at most the leader's last index {}", node.last_index),
        );
    }
    // A snapshot request past the leader's log can never be served: raft-rs then only ever
    // tries to send that follower a snapshot, the group builds one every round, and the
    // follower never catches up again in this term. Never honest: a follower asks for a
    // snapshot through its last index, of the leader's term, so within the leader's log
    // (and DSSS never asks at all).
    if message.request_snapshot > node.last_index {
        return refuse(
            "request_snapshot",
            message.request_snapshot,
            format!("at most the leader's last index {}", node.last_index),
        );
    }
    Ok(())
}

fn check_vote_response(node: &NodeState, message: &Message) -> Result<(), UnsafeMessage> {
    // A granted vote may make a candidate leader, and raft-rs asserts that a new leader's
    // log is persisted. Never honest before that: a candidate's vote requests leave only
    // after the round that persisted its log, its term is new (no older request of that term
    // exists), and its log does not change while it campaigns.
    if node.role == Role::Candidate
        && message.term == node.term
        && !message.reject
        && node.unpersisted()
    {
        return refuse(
            "reject",
            "false (a granted vote)",
            format!(
                "only once this candidate's log through {} is persisted (it is through {}; \
                 raft-rs asserts a new leader's log is persisted)",
                node.last_index, node.persisted_index
            ),
        );
    }
    Ok(())
}

fn check_timeout_now(node: &NodeState, message: &Message) -> Result<(), UnsafeMessage> {
    // A follower told to time out campaigns at once (a leader or candidate first becomes a
    // follower when the message's term is higher); the only voter wins its own campaign on
    // the spot, and raft-rs asserts that a new leader's log is persisted. Exactly the case
    // raft-rs stops on: no honest message is refused that raft-rs would have survived.
    let campaigns = node.role == Role::Follower || message.term > node.term;
    if campaigns && node.own_campaign_would_lead_unpersisted() {
        return refuse(
            "msg_type",
            "MsgTimeoutNow",
            format!(
                "only once this node's log through {} is persisted (it is through {}; as the \
                 only voter it would lead at once, and raft-rs asserts a new leader's log is \
                 persisted)",
                node.last_index, node.persisted_index
            ),
        );
    }
    Ok(())
}

fn check_single_entry(message: &Message) -> Result<(), UnsafeMessage> {
    // raft-rs stops at a fatal error on a proposal without entries ("stepped empty
    // MsgProp"), and a leader takes the first entry of a read request without looking
    // (an index out of range); a follower forwards both to its leader as they are. Never
    // honest: raft-rs proposes and asks for reads one entry at a time, and forwards them
    // unchanged.
    let count = message.get_entries().len();
    if count != 1 {
        return refuse(
            "entries",
            format!("{count} entries"),
            format!("exactly 1 ({:?} carries one entry)", message.get_msg_type()),
        );
    }
    Ok(())
}

fn check_transfer_leader(node: &NodeState, message: &Message) -> Result<(), UnsafeMessage> {
    // A follower that knows its leader forwards a leader transfer of its own term to it, and
    // raft-rs stops at a fatal error sending a forwarded message that carries a term. Never
    // honest: a follower forwards a transfer to its leader of that term, the only leader of
    // the term, which never follows another leader of the same term.
    if node.role == Role::Follower
        && let Some(leader_id) = node.leader_id
        && message.term == node.term
    {
        return refuse(
            "term",
            message.term,
            format!(
                "another term than this follower's {} (it follows leader {leader_id}: only a \
                 leader takes a transfer of its own term)",
                node.term
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::{Entry, Snapshot};

    use super::*;

    /// Node 2, following leader 1 in term 5: entries through 10, all persisted, committed
    /// through 8 (of term 4); one of voters 1, 2 and 3.
    fn follower() -> NodeState {
        NodeState {
            id: 2,
            role: Role::Follower,
            term: 5,
            leader_id: Some(1),
            promotable: true,
            sole_voter: false,
            last_index: 10,
            persisted_index: 10,
            committed_index: 8,
            committed_term: Some(4),
        }
    }

    /// Node 1 leading voters 1, 2 and 3 in term 5 with the log of [`follower`].
    fn leader() -> NodeState {
        NodeState {
            id: 1,
            role: Role::Leader,
            leader_id: Some(1),
            ..follower()
        }
    }

    fn message(msg_type: MessageType, from: u64, term: u64) -> Message {
        let mut message = Message::default();
        message.set_msg_type(msg_type);
        message.from = from;
        message.to = 2;
        message.term = term;
        message
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    /// What a leader of term 5 sends after entry 10 of term 5.
    fn append(entries: &[(u64, u64)]) -> Message {
        let mut message = message(MessageType::MsgAppend, 1, 5);
        message.index = 10;
        message.log_term = 5;
        message.commit = 8;
        let entries: Vec<Entry> = entries
            .iter()
            .map(|&(index, term)| entry(index, term))
            .collect();
        message.set_entries(entries.into());
        message
    }

    fn voters(ids: &[u64]) -> ConfState {
        ConfState {
            voters: ids.to_vec(),
            ..ConfState::default()
        }
    }

    fn snapshot(index: u64, term: u64, conf_state: ConfState) -> Message {
        let mut message = message(MessageType::MsgSnapshot, 1, 5);
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = term;
        snapshot.mut_metadata().set_conf_state(conf_state);
        message.set_snapshot(snapshot);
        message
    }

    /// The field `node` refuses `message` on; panics when it takes it.
    fn refused_field(node: &NodeState, message: &Message) -> String {
        match check_message(node, message) {
            Err(refusal) => refusal.field,
            Ok(()) => panic!("{:?} was taken", message.get_msg_type()),
        }
    }

    #[test]
    fn what_an_honest_leader_sends_a_follower_is_taken() {
        let node = follower();
        for message in [
            append(&[]),
            append(&[(11, 5), (12, 5)]),
            // A probe past the follower's log: raft-rs rejects it, it does not crash.
            {
                let mut probe = append(&[(16, 5)]);
                probe.index = 15;
                probe
            },
            // The first append to an empty log.
            {
                let mut first = append(&[(1, 1)]);
                first.index = 0;
                first.log_term = 0;
                first
            },
            {
                let mut heartbeat = message(MessageType::MsgHeartbeat, 1, 5);
                heartbeat.commit = 10;
                heartbeat
            },
            snapshot(20, 5, voters(&[1, 2, 3])),
            snapshot(8, 4, voters(&[1, 2, 3])),
            message(MessageType::MsgTimeoutNow, 1, 5),
        ] {
            assert_eq!(check_message(&node, &message), Ok(()), "{message:?}");
        }
    }

    #[test]
    fn what_honest_peers_send_a_leader_is_taken() {
        let node = leader();
        let mut acknowledgement = message(MessageType::MsgAppendResponse, 2, 5);
        acknowledgement.index = 10;
        let mut rejection = message(MessageType::MsgAppendResponse, 2, 5);
        rejection.index = 10;
        rejection.reject = true;
        rejection.reject_hint = 7;
        rejection.log_term = 4;
        let mut proposal = message(MessageType::MsgPropose, 2, 0);
        proposal.set_entries(vec![entry(0, 0)].into());
        let mut read = message(MessageType::MsgReadIndex, 2, 0);
        read.set_entries(vec![entry(0, 0)].into());
        let mut vote = message(MessageType::MsgRequestVote, 3, 6);
        vote.index = 10;
        vote.log_term = 5;
        for message in [
            acknowledgement,
            rejection,
            proposal,
            read,
            vote,
            message(MessageType::MsgHeartbeatResponse, 2, 5),
            message(MessageType::MsgTransferLeader, 3, 5),
        ] {
            assert_eq!(check_message(&node, &message), Ok(()), "{message:?}");
        }
    }

    #[test]
    fn a_sender_of_0_a_missing_term_a_term_where_none_belongs_and_a_huge_term_are_refused() {
        let node = follower();
        let mut anonymous = append(&[]);
        anonymous.from = 0;
        assert_eq!(refused_field(&node, &anonymous), "from");
        let mut from_itself = append(&[]);
        from_itself.from = node.id;
        assert_eq!(refused_field(&node, &from_itself), "from");
        // A transfer names the transferee, which may be the leader itself.
        let transfer_to_itself = message(MessageType::MsgTransferLeader, 1, 5);
        assert_eq!(check_message(&leader(), &transfer_to_itself), Ok(()));
        assert_eq!(refused_field(&node, &append_with_term(0)), "term");
        let mut vote = message(MessageType::MsgRequestVote, 1, 0);
        vote.index = 99;
        assert_eq!(refused_field(&node, &vote), "term");
        let mut read_answer = message(MessageType::MsgReadIndexResp, 1, 0);
        read_answer.index = 99;
        assert_eq!(refused_field(&node, &read_answer), "term");
        let mut proposal = message(MessageType::MsgPropose, 3, 5);
        proposal.set_entries(vec![entry(0, 0)].into());
        assert_eq!(refused_field(&node, &proposal), "term");
        let refusal = check_message(&node, &append_with_term(TERM_MAX + 1)).unwrap_err();
        assert_eq!(refusal.field, "term");
        assert!(refusal.bound.contains(&TERM_MAX.to_string()), "{refusal}");
        assert_eq!(check_message(&node, &append_with_term(TERM_MAX)), Ok(()));
        // Local messages are raft-rs's to refuse.
        assert_eq!(
            check_message(&node, &message(MessageType::MsgHup, 0, 0)),
            Ok(())
        );
    }

    fn append_with_term(term: u64) -> Message {
        let mut message = append(&[]);
        message.term = term;
        message.log_term = 1;
        message
    }

    #[test]
    fn a_stale_message_is_taken_whatever_its_fields_since_raft_reads_none() {
        let node = follower();
        let mut heartbeat = message(MessageType::MsgHeartbeat, 1, 4);
        heartbeat.commit = u64::MAX;
        assert_eq!(check_message(&node, &heartbeat), Ok(()));
        let mut gap = append(&[(40, 4)]);
        gap.term = 4;
        assert_eq!(check_message(&node, &gap), Ok(()));
    }

    #[test]
    fn appends_with_gaps_falling_terms_or_a_term_0_anchor_past_the_log_are_refused() {
        let node = follower();
        // Rewriting committed entry 8: entries must follow the anchor 10.
        let refusal = check_message(&node, &append(&[(8, 9)])).unwrap_err();
        assert_eq!(refusal.field, "entries[0].index");
        assert_eq!(refusal.value, "8");
        assert!(refusal.bound.starts_with("11 "), "{refusal}");
        assert_eq!(
            refused_field(&node, &append(&[(11, 5), (13, 5)])),
            "entries[1].index"
        );
        assert_eq!(
            refused_field(&node, &append(&[(11, 5), (12, 4)])),
            "entries[1].term"
        );
        assert_eq!(refused_field(&node, &append(&[(11, 4)])), "entries[0].term");
        assert_eq!(refused_field(&node, &append(&[(11, 6)])), "entries[0].term");
        let mut past = append(&[]);
        past.index = 20;
        past.log_term = 0;
        past.commit = 20;
        assert_eq!(refused_field(&node, &past), "log_term");
        let mut overflowing = append(&[(0, 5)]);
        overflowing.index = u64::MAX;
        assert_eq!(refused_field(&node, &overflowing), "index");
        overflowing.index = INDEX_MAX;
        assert_eq!(refused_field(&node, &overflowing), "entries[0].index");
    }

    #[test]
    fn a_heartbeat_committing_past_the_log_is_refused() {
        let mut heartbeat = message(MessageType::MsgHeartbeat, 1, 5);
        heartbeat.commit = u64::MAX;
        let refusal = check_message(&follower(), &heartbeat).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "commit = 18446744073709551615, allowed: at most the last index 10"
        );
        heartbeat.commit = 11;
        assert_eq!(refused_field(&follower(), &heartbeat), "commit");
        // A heartbeat of a higher term deposes a leader, which then commits it.
        heartbeat.term = 6;
        heartbeat.from = 3;
        assert_eq!(refused_field(&leader(), &heartbeat), "commit");
    }

    #[test]
    fn snapshots_with_impossible_indexes_terms_or_memberships_are_refused() {
        let node = follower();
        let refused = |message: Message| refused_field(&node, &message);
        assert_eq!(
            refused(snapshot(u64::MAX, 5, voters(&[1, 2, 3]))),
            "snapshot.metadata.index"
        );
        assert_eq!(
            refused(snapshot(20, 0, voters(&[1, 2, 3]))),
            "snapshot.metadata.term"
        );
        assert_eq!(
            refused(snapshot(20, 6, voters(&[1, 2, 3]))),
            "snapshot.metadata.term"
        );
        // Ending at the commit index 8 with another term than the committed entry's 4.
        assert_eq!(
            refused(snapshot(8, 5, voters(&[1, 2, 3]))),
            "snapshot.metadata.term"
        );
        let learner_only = ConfState {
            learners: vec![2],
            ..ConfState::default()
        };
        let refusal = check_message(&node, &snapshot(20, 5, learner_only)).unwrap_err();
        assert_eq!(refusal.field, "snapshot.metadata.conf_state");
        assert!(refusal.bound.contains("removed all voters"), "{refusal}");
    }

    #[test]
    fn a_membership_is_taken_only_when_raft_restores_it_as_it_is() {
        let joint = ConfState {
            voters: vec![1, 2, 3],
            learners: vec![5],
            voters_outgoing: vec![1, 2, 4],
            learners_next: vec![4],
            auto_leave: true,
            ..ConfState::default()
        };
        for valid in [voters(&[1]), voters(&[1, 2, 3]), joint] {
            assert_eq!(check_conf_state(&valid), Ok(()), "{valid:?}");
        }
        let invalid = [
            (
                "a learner without voters",
                ConfState {
                    learners: vec![2],
                    ..ConfState::default()
                },
            ),
            (
                "a voter also learner",
                ConfState {
                    learners: vec![2],
                    ..voters(&[1, 2])
                },
            ),
            ("the id 0", voters(&[0, 1])),
            (
                "a staged learner outside a joint membership",
                ConfState {
                    learners_next: vec![2],
                    ..voters(&[1, 2])
                },
            ),
            (
                "auto leave outside a joint membership",
                ConfState {
                    auto_leave: true,
                    ..voters(&[1])
                },
            ),
            (
                "too many ids",
                voters(&(1..=CONF_STATE_IDS_MAX as u64 + 1).collect::<Vec<_>>()),
            ),
        ];
        for (what, conf_state) in invalid {
            assert!(check_conf_state(&conf_state).is_err(), "{what} was taken");
        }
    }

    #[test]
    fn a_leader_refuses_answers_naming_indexes_past_its_log() {
        let node = leader();
        let mut acknowledgement = message(MessageType::MsgAppendResponse, 3, 5);
        acknowledgement.index = 11;
        assert_eq!(refused_field(&node, &acknowledgement), "index");
        acknowledgement.index = u64::MAX;
        assert_eq!(refused_field(&node, &acknowledgement), "index");
        // A follower or a leader of another term does not read them.
        assert_eq!(check_message(&follower(), &acknowledgement), Ok(()));
        acknowledgement.term = 6;
        assert_eq!(check_message(&node, &acknowledgement), Ok(()));

        let mut rejection = message(MessageType::MsgAppendResponse, 2, 5);
        rejection.index = 10;
        rejection.reject = true;
        rejection.reject_hint = u64::MAX;
        assert_eq!(refused_field(&node, &rejection), "reject_hint");
        rejection.reject_hint = 9;
        rejection.request_snapshot = 11;
        assert_eq!(refused_field(&node, &rejection), "request_snapshot");
        rejection.request_snapshot = 10;
        assert_eq!(check_message(&node, &rejection), Ok(()));
    }

    #[test]
    fn a_vote_that_would_make_a_candidate_with_an_unpersisted_log_leader_is_refused() {
        let candidate = NodeState {
            role: Role::Candidate,
            leader_id: None,
            persisted_index: 9,
            ..follower()
        };
        let grant = message(MessageType::MsgRequestVoteResponse, 3, 5);
        assert_eq!(refused_field(&candidate, &grant), "reject");
        let mut rejection = grant.clone();
        rejection.reject = true;
        assert_eq!(check_message(&candidate, &rejection), Ok(()));
        let persisted = NodeState {
            persisted_index: 10,
            ..candidate.clone()
        };
        assert_eq!(check_message(&persisted, &grant), Ok(()));
    }

    #[test]
    fn a_timeout_that_would_make_the_only_voter_with_an_unpersisted_log_leader_is_refused() {
        let sole_voter = NodeState {
            sole_voter: true,
            persisted_index: 9,
            ..follower()
        };
        let timeout = message(MessageType::MsgTimeoutNow, 1, 5);
        assert_eq!(refused_field(&sole_voter, &timeout), "msg_type");
        let one_of_three = NodeState {
            sole_voter: false,
            ..sole_voter.clone()
        };
        assert_eq!(check_message(&one_of_three, &timeout), Ok(()));
        let learner = NodeState {
            promotable: false,
            ..sole_voter.clone()
        };
        assert_eq!(check_message(&learner, &timeout), Ok(()));
        // A leader ignores a timeout of its own term, and follows one of a higher term.
        let leading = NodeState {
            role: Role::Leader,
            leader_id: Some(2),
            ..sole_voter
        };
        assert_eq!(check_message(&leading, &timeout), Ok(()));
        let mut deposing = timeout.clone();
        deposing.term = 6;
        assert_eq!(refused_field(&leading, &deposing), "msg_type");
    }

    #[test]
    fn proposals_and_reads_carry_exactly_one_entry() {
        for msg_type in [MessageType::MsgPropose, MessageType::MsgReadIndex] {
            let mut message = message(msg_type, 3, 0);
            assert_eq!(refused_field(&leader(), &message), "entries");
            assert_eq!(refused_field(&follower(), &message), "entries");
            message.set_entries(vec![entry(0, 0), entry(0, 0)].into());
            assert_eq!(refused_field(&leader(), &message), "entries");
        }
    }

    #[test]
    fn a_follower_refuses_a_leader_transfer_it_would_forward_with_its_term() {
        let transfer = message(MessageType::MsgTransferLeader, 3, 5);
        assert_eq!(refused_field(&follower(), &transfer), "term");
        let leaderless = NodeState {
            leader_id: None,
            ..follower()
        };
        assert_eq!(check_message(&leaderless, &transfer), Ok(()));
        assert_eq!(check_message(&leader(), &transfer), Ok(()));
    }
}
