//! A member takes a raft snapshot only once it holds every entry the snapshot stands on.
//!
//! A region snapshot carries the replicated state and no entry ([`crate::region_log`]): the
//! log above the truncation point may hold far more than one raft message. Before a member
//! hands a snapshot to raft, it must hold every entry in `(truncation point, next position)`
//! of the snapshot. The entries it lacks it reads from a peer in bounded pieces
//! ([`LOG_FETCH_RECORDS_MAX`] entries, [`LOG_FETCH_BYTES_MAX`] bytes beyond the first entry),
//! the snapshot's sender first, then the other members. Each piece is checked (consecutive
//! positions from the one asked, each entry decodes and names its position) and written to
//! the store before the next is asked. Only when the range is whole does the snapshot go to
//! raft, which acknowledges it to the leader once it is restored: a member that counts as
//! caught up holds the whole retained log, so no retained entry is ever on no member, however
//! often members catch up by snapshot and in whatever order.
//!
//! Entries are immutable once applied (every member applies the same records at the same
//! positions), so a fetched entry written before the snapshot is restored is the entry the
//! member would have applied there; restoring keeps the entries in the range and drops the
//! rest ([`crate::region_log`]).
//!
//! While a member fetches, the leader sends the snapshot again now and then (raft probes the
//! member, which still lacks the entries after the snapshot's index). A snapshot at a newer
//! index replaces the waiting one, and the fetch goes on from where it stands when what was
//! fetched still lies in the new range. A peer that does not answer within
//! [`LOG_FETCH_TIMEOUT_TICKS`], no longer holds the range (its truncation point passed it) or
//! answers something other than what was asked is left for the next; after
//! [`LOG_FETCH_FAILURES_MAX`] failures the member drops the snapshot and waits for the leader
//! to send a newer one.

use dsss_raft_group::raft::eraftpb::Message;
use dsss_raft_group::{DurableStore, StoreError, WriteBatch};

use crate::checkpoint::CheckpointSpace;
use crate::checkpoint::transfer::{StatePiece, StateStaging, answer_state_piece};
use crate::record::encode_entry;
use crate::region_log::{
    REGION_LOG, RegionLog, SnapshotSpan, StateToFetch, decode_fetched, position_key,
};

/// The most entries one piece of a fetch carries.
pub const LOG_FETCH_RECORDS_MAX: u32 = 1_024;

/// The most bytes of stored entries one piece carries beyond its first entry (a piece always
/// holds one entry when the peer has it, however large).
pub const LOG_FETCH_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// How many ticks a member waits for a piece before it asks the next peer.
pub const LOG_FETCH_TIMEOUT_TICKS: u64 = 100;

/// How many failed pieces a member accepts for one snapshot before it drops the snapshot.
pub const LOG_FETCH_FAILURES_MAX: u32 = 8;

/// A member's request for the entries `[from_position, end_position)` of a peer's log; the
/// peer answers with a prefix of them ([`answer_log_range`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRangeRequest {
    /// Chosen by the asking member, echoed in the answer.
    pub fetch_id: u64,
    /// The first position wanted.
    pub from_position: u64,
    /// The first position not wanted.
    pub end_position: u64,
    /// When some, a piece of the checkpoint state of a snapshot is asked instead of entries
    /// (see [`crate::checkpoint::transfer`]).
    pub state: Option<StateRequest>,
}

/// A request for a piece of a snapshot's checkpoint state, from the view its sender pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateRequest {
    /// The raft index of the snapshot, under which its view is pinned.
    pub view_index: u64,
    /// Where the sender kept the state when it pinned the view.
    pub space: CheckpointSpace,
    /// The piece starts after this key (at the start when empty).
    pub after_key: Vec<u8>,
}

impl std::fmt::Display for LogRangeRequest {
    /// The compact form traces show: fetch id and range, or the state piece asked.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            None => write!(
                formatter,
                "f{} p{}..p{}",
                self.fetch_id, self.from_position, self.end_position
            ),
            Some(state) => write!(
                formatter,
                "f{} state of i{} after {} bytes of key",
                self.fetch_id,
                state.view_index,
                state.after_key.len()
            ),
        }
    }
}

/// A request for the driver to send to `peer`, whose answer goes to
/// [`crate::RegionNode::handle_log_range`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRangeFetch {
    /// The member asked.
    pub peer: u64,
    /// The request.
    pub request: LogRangeRequest,
}

/// A peer's answer to a [`LogRangeRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRangeReply {
    /// The request's id.
    pub fetch_id: u64,
    /// The stored form of consecutive entries from the position asked; empty when the peer
    /// does not hold it.
    pub entries: Vec<Vec<u8>>,
    /// The oldest position the peer holds.
    pub first_retained_position: u64,
    /// The position the peer's next record will take.
    pub next_position: u64,
    /// The piece of checkpoint state asked, when a piece was asked and the peer keeps the
    /// view it was asked from.
    pub state: Option<StatePiece>,
}

impl std::fmt::Display for LogRangeReply {
    /// The compact form traces show: fetch id, entry count and what the peer holds.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "f{} {} entries, holds p{}..p{}",
            self.fetch_id,
            self.entries.len(),
            self.first_retained_position,
            self.next_position
        )?;
        if let Some(state) = &self.state {
            write!(
                formatter,
                ", {} state pairs{}",
                state.pairs.len(),
                if state.done { ", done" } else { "" }
            )?;
        }
        Ok(())
    }
}

/// Answers `request` from `log` and its `store`: a prefix of the range, bounded by
/// [`LOG_FETCH_RECORDS_MAX`] and [`LOG_FETCH_BYTES_MAX`]. A store that cannot give back an
/// entry the log holds is an error.
pub fn answer_log_range(
    log: &RegionLog,
    store: &dyn DurableStore,
    request: &LogRangeRequest,
) -> Result<LogRangeReply, StoreError> {
    if let Some(state) = &request.state {
        let piece = match store.pinned_view(state.view_index) {
            Some(view) => Some(answer_state_piece(
                &*view,
                state.space.key_space(),
                &state.after_key,
            )?),
            None => None,
        };
        return Ok(LogRangeReply {
            fetch_id: request.fetch_id,
            entries: Vec::new(),
            first_retained_position: log.first_retained_position(),
            next_position: log.next_position(),
            state: piece,
        });
    }
    let wanted = request
        .end_position
        .saturating_sub(request.from_position)
        .min(u64::from(LOG_FETCH_RECORDS_MAX));
    let records = if wanted == 0 {
        Vec::new()
    } else {
        log.read(
            store,
            request.from_position,
            wanted as usize,
            LOG_FETCH_BYTES_MAX,
        )?
    };
    Ok(LogRangeReply {
        fetch_id: request.fetch_id,
        entries: records
            .iter()
            .map(|record| encode_entry(record.position, &record.entry))
            .collect(),
        first_retained_position: log.first_retained_position(),
        next_position: log.next_position(),
        state: None,
    })
}

/// How many snapshots waited for entries, and what their fetches did, for status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUpCounters {
    /// Snapshots taken at once: the member held every entry they stand on.
    pub snapshots_taken_at_once: u64,
    /// Snapshots taken after fetching the entries they stand on.
    pub snapshots_taken_after_fetch: u64,
    /// Snapshots dropped after [`LOG_FETCH_FAILURES_MAX`] failed pieces.
    pub snapshots_dropped: u64,
    /// Entries fetched from peers and written.
    pub entries_fetched: u64,
    /// Pieces that failed: no answer in time, an error, a peer without the range, or an
    /// answer that was not what was asked.
    pub fetches_failed: u64,
    /// Waiting snapshots dropped because the member applied past them by appends meanwhile.
    pub snapshots_overtaken: u64,
    /// Pieces of checkpoint state fetched and written (see [`crate::checkpoint::transfer`]).
    pub state_pieces_fetched: u64,
    /// Bytes of keys and values of checkpoint state fetched and written.
    pub state_bytes_fetched: u64,
}

/// What became of a piece.
#[derive(Debug)]
// One outcome is made and consumed per piece fetched: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum PieceOutcome {
    /// Not the piece in flight (late, duplicated, or for a snapshot given up): nothing done.
    Ignored,
    /// The piece failed; the next peer is asked.
    Failed(String),
    /// Entries or state to write; once written, `complete` (when some) goes to raft.
    Entries {
        /// The entries, keyed as the region log keys them, or the state's pairs.
        batch: WriteBatch,
        /// The snapshot, when this piece completed what it stands on.
        complete: Option<Message>,
        /// The checkpoint state fetched whole, when the snapshot has one: the region log
        /// must note it ([`RegionLog::note_staged`]) before raft takes the snapshot.
        staged: Option<(StateStaging, StateToFetch)>,
    },
}

/// A snapshot waiting for the entries it stands on.
#[derive(Debug)]
struct WaitingSnapshot {
    message: Message,
    index: u64,
    span: SnapshotSpan,
    /// Every entry from the range's start up to this position is held.
    next_needed: u64,
    /// The members to ask, the sender first.
    peers: Vec<u64>,
    peer_cursor: usize,
    /// The piece asked and the tick it was asked at.
    in_flight: Option<(u64, u64)>,
    failures: u32,
    /// The checkpoint state to fetch from the sender once the entries are held, and its
    /// fetch so far; none when the snapshot keeps nothing per object.
    state: Option<(StateToFetch, StateStaging)>,
}

/// The snapshot waiting for its entries, if any (see the module documentation).
#[derive(Debug, Default)]
pub struct SnapshotCatchUp {
    waiting: Option<WaitingSnapshot>,
    next_fetch_id: u64,
    counters: CatchUpCounters,
    /// A snapshot whose state was fetched went to raft and its restore is not known to have
    /// run: no new state fetch starts (it would clear the space the restore switches to)
    /// until the next ready round ([`SnapshotCatchUp::ready_ran`]).
    restore_pending: bool,
}

impl SnapshotCatchUp {
    /// The counters.
    pub fn counters(&self) -> CatchUpCounters {
        self.counters
    }

    /// The range still to fetch for the waiting snapshot, if one waits.
    pub fn missing(&self) -> Option<(u64, u64)> {
        self.waiting
            .as_ref()
            .map(|waiting| (waiting.next_needed, waiting.span.next_position))
    }

    /// A snapshot `message` (checked, standing on `span`) arrived. `held` is the range of
    /// positions the member's own log holds, `[first retained, next)`; `members` the group's
    /// members (this member among them or not). Returns the message when it can go to raft
    /// now; otherwise it waits (or an older one is dropped for a newer one waiting).
    ///
    /// `staging` is the fetch of the snapshot's checkpoint state into the space the member
    /// does not use, when the snapshot keeps any (`span.state`): it goes on once the entries
    /// are held, from the snapshot's sender alone (only it pinned the view).
    pub fn offer(
        &mut self,
        message: Message,
        span: SnapshotSpan,
        held: (u64, u64),
        members: &[u64],
        own_id: u64,
        staging: Option<StateStaging>,
    ) -> Option<Message> {
        let index = message.get_snapshot().get_metadata().index;
        let start = span.truncated_through + 1;
        let (held_first, held_next) = held;
        let mut from = if held_first <= start {
            start.max(held_next)
        } else {
            start
        };
        if let Some(waiting) = &self.waiting {
            if waiting.index > index {
                return None;
            }
            // The same snapshot again (the leader probes a member that has not taken it): the
            // fetch goes on where it stands, from the same view.
            if waiting.index == index && waiting.message.from == message.from {
                return None;
            }
            // The fetched prefix of the waiting range stays held; the new range starts at
            // or above the old one (truncation points only grow).
            if waiting.span.truncated_through <= span.truncated_through
                && waiting.next_needed >= from
            {
                from = waiting.next_needed;
            }
        }
        let state = span.state.zip(staging);
        if from >= span.next_position && state.is_none() {
            self.waiting = None;
            self.counters.snapshots_taken_at_once += 1;
            return Some(message);
        }
        let mut peers = vec![message.from];
        peers.extend(
            members
                .iter()
                .copied()
                .filter(|&member| member != own_id && member != message.from),
        );
        let in_flight = self
            .waiting
            .as_ref()
            .and_then(|waiting| waiting.in_flight)
            .filter(|_| {
                // A piece of entries in flight still serves; a piece of state came from the
                // older snapshot's view.
                self.waiting.as_ref().is_some_and(|waiting| {
                    waiting.next_needed == from && waiting.next_needed < waiting.span.next_position
                })
            });
        self.waiting = Some(WaitingSnapshot {
            message,
            index,
            span,
            next_needed: from,
            peers,
            peer_cursor: 0,
            in_flight,
            failures: 0,
            state,
        });
        None
    }

    /// Drops the waiting snapshot when its checkpoint state is fetched into `live`, the space
    /// the node keeps its state in now (it switched spaces by restoring another snapshot
    /// since the fetch began): a piece must never be written over the state in use. Returns
    /// whether one was dropped.
    pub fn drop_fetch_into(&mut self, live: CheckpointSpace) -> bool {
        let into_live = self.waiting.as_ref().is_some_and(|waiting| {
            waiting
                .state
                .as_ref()
                .is_some_and(|(_, staging)| staging.space() == live)
        });
        if into_live {
            self.waiting = None;
            self.counters.snapshots_dropped += 1;
        }
        into_live
    }

    /// A ready round of the group ran: a snapshot that went to raft was restored by it or
    /// dropped, so a new fetch of checkpoint state may begin.
    pub fn ready_ran(&mut self) {
        self.restore_pending = false;
    }

    /// Drops the waiting snapshot when the member's raft log has applied through its index by
    /// other means (a leader that still held the entries appended them): the member no longer
    /// needs it, and a fetch of its range would only be work and a stale status. Returns
    /// whether one was dropped.
    pub fn overtaken(&mut self, applied_index: u64) -> bool {
        if self
            .waiting
            .as_ref()
            .is_some_and(|waiting| waiting.index <= applied_index)
        {
            self.waiting = None;
            self.counters.snapshots_overtaken += 1;
            return true;
        }
        false
    }

    /// The next piece to ask, at tick `now_tick`: when a snapshot waits and no piece is in
    /// flight, or the one in flight timed out (then the next peer is asked).
    pub fn poll_fetch(&mut self, now_tick: u64) -> Option<LogRangeFetch> {
        let waiting = self.waiting.as_mut()?;
        if let Some((_, asked_tick)) = waiting.in_flight {
            if now_tick.saturating_sub(asked_tick) < LOG_FETCH_TIMEOUT_TICKS {
                return None;
            }
            waiting.in_flight = None;
            self.counters.fetches_failed += 1;
            if self.fail() {
                return None;
            }
        }
        let entries_held = self
            .waiting
            .as_ref()
            .is_some_and(|waiting| waiting.next_needed >= waiting.span.next_position);
        if entries_held && self.restore_pending {
            return None;
        }
        let waiting = self.waiting.as_mut()?;
        self.next_fetch_id += 1;
        let fetch_id = self.next_fetch_id;
        waiting.in_flight = Some((fetch_id, now_tick));
        if entries_held && let Some((to_fetch, staging)) = &waiting.state {
            return Some(LogRangeFetch {
                peer: waiting.message.from,
                request: LogRangeRequest {
                    fetch_id,
                    from_position: 0,
                    end_position: 0,
                    state: Some(StateRequest {
                        view_index: waiting.index,
                        space: to_fetch.sender_space,
                        after_key: staging.after_key().to_vec(),
                    }),
                },
            });
        }
        Some(LogRangeFetch {
            peer: waiting.peers[waiting.peer_cursor % waiting.peers.len()],
            request: LogRangeRequest {
                fetch_id,
                from_position: waiting.next_needed,
                end_position: waiting.span.next_position,
                state: None,
            },
        })
    }

    /// A peer's answer (or why the driver got none). A failed piece moves to the next peer;
    /// entries that are what was asked come back as a batch to write.
    ///
    /// `store` is the member's store, read for what earlier pieces of checkpoint state wrote.
    pub fn receive(
        &mut self,
        fetch_id: u64,
        reply: Result<LogRangeReply, String>,
        store: &dyn DurableStore,
    ) -> PieceOutcome {
        let Some(waiting) = self.waiting.as_mut() else {
            return PieceOutcome::Ignored;
        };
        if waiting.in_flight.map(|(id, _)| id) != Some(fetch_id) {
            return PieceOutcome::Ignored;
        }
        waiting.in_flight = None;
        if waiting.next_needed >= waiting.span.next_position {
            return self.receive_state(fetch_id, reply, store);
        }
        let from = waiting.next_needed;
        let end = waiting.span.next_position;
        let checked = reply.and_then(|reply| check_piece(&reply, fetch_id, from, end));
        match checked {
            Err(reason) => {
                self.counters.fetches_failed += 1;
                self.fail();
                PieceOutcome::Failed(reason)
            }
            Ok(batch_and_count) => {
                let (batch, count) = batch_and_count;
                self.counters.entries_fetched += count;
                let waiting = self.waiting.as_mut().expect("checked above");
                waiting.next_needed = from + count;
                let complete = if waiting.next_needed >= end && waiting.state.is_none() {
                    self.counters.snapshots_taken_after_fetch += 1;
                    self.waiting.take().map(|waiting| waiting.message)
                } else {
                    None
                };
                PieceOutcome::Entries {
                    batch,
                    complete,
                    staged: None,
                }
            }
        }
    }

    /// A piece of checkpoint state (the entries are held): checked and written into the
    /// space the member does not use; the last one completes the snapshot.
    fn receive_state(
        &mut self,
        fetch_id: u64,
        reply: Result<LogRangeReply, String>,
        store: &dyn DurableStore,
    ) -> PieceOutcome {
        let waiting = self.waiting.as_mut().expect("checked by the caller");
        let index = waiting.index;
        let Some((_, staging)) = waiting.state.as_mut() else {
            return PieceOutcome::Ignored;
        };
        let mut batch = WriteBatch::new();
        let checked = reply.and_then(|reply| {
            if reply.fetch_id != fetch_id {
                return Err(format!(
                    "the answer names fetch {} instead of {fetch_id}",
                    reply.fetch_id
                ));
            }
            let piece = reply.state.ok_or_else(|| {
                format!("the sender keeps no view of the snapshot at raft index {index}")
            })?;
            let bytes = staging.bytes();
            let whole = staging
                .take_piece(&piece, store, &mut batch)
                .map_err(|reason| format!("checkpoint state: {reason}"))?;
            Ok((whole, staging.bytes() - bytes))
        });
        match checked {
            Err(reason) => {
                self.counters.fetches_failed += 1;
                self.fail();
                PieceOutcome::Failed(reason)
            }
            Ok((whole, bytes)) => {
                self.counters.state_pieces_fetched += 1;
                self.counters.state_bytes_fetched += bytes;
                if !whole {
                    return PieceOutcome::Entries {
                        batch,
                        complete: None,
                        staged: None,
                    };
                }
                self.counters.snapshots_taken_after_fetch += 1;
                self.restore_pending = true;
                let waiting = self.waiting.take().expect("checked above");
                let (to_fetch, staging) = waiting.state.expect("checked above");
                PieceOutcome::Entries {
                    batch,
                    complete: Some(waiting.message),
                    staged: Some((staging, to_fetch)),
                }
            }
        }
    }

    /// Counts a failed piece and moves to the next peer; drops the snapshot after too many.
    /// Returns whether it was dropped.
    fn fail(&mut self) -> bool {
        let Some(waiting) = self.waiting.as_mut() else {
            return true;
        };
        waiting.failures += 1;
        waiting.peer_cursor += 1;
        if waiting.failures >= LOG_FETCH_FAILURES_MAX {
            self.waiting = None;
            self.counters.snapshots_dropped += 1;
            return true;
        }
        false
    }
}

/// Checks a piece against what was asked, `[from, end)`: entries at consecutive positions from
/// `from`, each decoding and naming its position, none at or past `end`. Returns the writes
/// and the count.
fn check_piece(
    reply: &LogRangeReply,
    fetch_id: u64,
    from: u64,
    end: u64,
) -> Result<(WriteBatch, u64), String> {
    if reply.fetch_id != fetch_id {
        return Err(format!(
            "the answer names fetch {} instead of {fetch_id}",
            reply.fetch_id
        ));
    }
    if reply.entries.is_empty() {
        return Err(format!(
            "the peer holds positions {} to {}, not position {from}",
            reply.first_retained_position,
            reply.next_position.saturating_sub(1)
        ));
    }
    let count = reply.entries.len() as u64;
    if count > u64::from(LOG_FETCH_RECORDS_MAX) || from + count > end {
        return Err(format!(
            "{count} entries from position {from}, beyond the {} asked",
            (end - from).min(u64::from(LOG_FETCH_RECORDS_MAX))
        ));
    }
    let mut batch = WriteBatch::new();
    for (offset, bytes) in reply.entries.iter().enumerate() {
        let position = from + offset as u64;
        decode_fetched(position, bytes)
            .map_err(|reason| format!("entry at {position}: {reason}"))?;
        batch.put(REGION_LOG, position_key(position).to_vec(), bytes.clone());
    }
    Ok((batch, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsss_raft_group::MemoryStore;
    use dsss_raft_group::raft::eraftpb::MessageType;

    fn snapshot_message(from: u64, index: u64) -> Message {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgSnapshot);
        message.from = from;
        message.to = 3;
        message.mut_snapshot().mut_metadata().index = index;
        message
    }

    fn span(truncated_through: u64, next_position: u64) -> SnapshotSpan {
        SnapshotSpan {
            truncated_through,
            next_position,
            state: None,
        }
    }

    fn entries(from: u64, count: u64) -> Vec<Vec<u8>> {
        (from..from + count)
            .map(|position| {
                encode_entry(
                    position,
                    &crate::record::LogEntry::EpochSealed {
                        epoch_number: position,
                        watermark: dsss_wire::Timestamp::new(position, 0),
                        previous_watermark: None,
                        record_count: 0,
                        member_regions: Vec::new(),
                        skipped_from: 0,
                    },
                )
            })
            .collect()
    }

    fn reply(fetch: &LogRangeFetch, count: u64) -> LogRangeReply {
        LogRangeReply {
            fetch_id: fetch.request.fetch_id,
            entries: entries(fetch.request.from_position, count),
            first_retained_position: 1,
            next_position: 1_000,
            state: None,
        }
    }

    #[test]
    fn a_member_holding_the_range_takes_the_snapshot_at_once() {
        let mut catch_up = SnapshotCatchUp::default();
        let message = catch_up.offer(
            snapshot_message(1, 50),
            span(10, 40),
            (5, 40),
            &[1, 2, 3],
            3,
            None,
        );
        assert!(message.is_some());
        assert_eq!(catch_up.missing(), None);
        assert_eq!(catch_up.poll_fetch(0), None);
    }

    /// A member whose raft log applied past the waiting snapshot's index by appends no longer
    /// needs it: it is dropped, its range is no longer reported missing, and an answer to a
    /// piece asked before is ignored.
    #[test]
    fn a_snapshot_the_member_applied_past_is_dropped() {
        let mut catch_up = SnapshotCatchUp::default();
        let offered = catch_up.offer(
            snapshot_message(1, 50),
            span(0, 41),
            (1, 1),
            &[1, 2, 3],
            3,
            None,
        );
        assert!(offered.is_none());
        let fetch = catch_up.poll_fetch(0).unwrap();
        assert!(
            !catch_up.overtaken(49),
            "below the snapshot's index it still waits"
        );
        assert_eq!(catch_up.missing(), Some((1, 41)));
        assert!(catch_up.overtaken(50));
        assert_eq!(catch_up.missing(), None);
        assert_eq!(catch_up.counters().snapshots_overtaken, 1);
        assert!(matches!(
            catch_up.receive(
                fetch.request.fetch_id,
                Ok(reply(&fetch, 40)),
                &MemoryStore::new()
            ),
            PieceOutcome::Ignored
        ));
        assert_eq!(catch_up.poll_fetch(1), None);
    }

    #[test]
    fn the_missing_range_is_fetched_in_pieces_then_the_snapshot_goes_to_raft() {
        let mut catch_up = SnapshotCatchUp::default();
        // The member holds positions 1 to 19; the snapshot stands on 11 to 2,499.
        let offered = catch_up.offer(
            snapshot_message(1, 50),
            span(10, 2_500),
            (1, 20),
            &[1, 2, 3],
            3,
            None,
        );
        assert!(offered.is_none());
        assert_eq!(catch_up.missing(), Some((20, 2_500)));
        let fetch = catch_up.poll_fetch(0).unwrap();
        assert_eq!(fetch.peer, 1, "the sender is asked first");
        assert_eq!(fetch.request.from_position, 20);
        assert_eq!(
            catch_up.poll_fetch(1),
            None,
            "one piece in flight at a time"
        );
        let PieceOutcome::Entries {
            batch, complete, ..
        } = catch_up.receive(
            fetch.request.fetch_id,
            Ok(reply(&fetch, 1_024)),
            &MemoryStore::new(),
        )
        else {
            panic!("the piece is what was asked");
        };
        assert_eq!(batch.len(), 1_024);
        assert!(complete.is_none());
        let mut position = 20 + 1_024;
        loop {
            let fetch = catch_up.poll_fetch(2).unwrap();
            assert_eq!(fetch.request.from_position, position);
            let count = (2_500 - position).min(1_024);
            match catch_up.receive(
                fetch.request.fetch_id,
                Ok(reply(&fetch, count)),
                &MemoryStore::new(),
            ) {
                PieceOutcome::Entries {
                    complete: Some(message),
                    ..
                } => {
                    assert_eq!(message.get_snapshot().get_metadata().index, 50);
                    break;
                }
                PieceOutcome::Entries { complete: None, .. } => position += count,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(catch_up.counters().entries_fetched, 2_500 - 20);
        assert_eq!(catch_up.counters().snapshots_taken_after_fetch, 1);
    }

    #[test]
    fn wrong_pieces_are_refused_and_the_next_peer_is_asked() {
        let mut catch_up = SnapshotCatchUp::default();
        catch_up.offer(
            snapshot_message(1, 50),
            span(10, 100),
            (1, 5),
            &[1, 2, 3],
            3,
            None,
        );
        let fetch = catch_up.poll_fetch(0).unwrap();
        assert_eq!(fetch.request.from_position, 11);
        // Entries that start elsewhere than asked.
        let mut shifted = reply(&fetch, 3);
        shifted.entries = entries(12, 3);
        let PieceOutcome::Failed(reason) =
            catch_up.receive(fetch.request.fetch_id, Ok(shifted), &MemoryStore::new())
        else {
            panic!("a shifted piece is refused");
        };
        assert!(reason.contains("entry at 11"), "{reason}");
        // Garbage bytes.
        let fetch = catch_up.poll_fetch(1).unwrap();
        assert_eq!(fetch.peer, 2, "the next peer is asked");
        let mut garbage = reply(&fetch, 1);
        garbage.entries = vec![vec![0xff; 7]];
        assert!(matches!(
            catch_up.receive(fetch.request.fetch_id, Ok(garbage), &MemoryStore::new()),
            PieceOutcome::Failed(_)
        ));
        // A peer that no longer holds the range.
        let fetch = catch_up.poll_fetch(2).unwrap();
        let mut truncated = reply(&fetch, 0);
        truncated.first_retained_position = 60;
        let PieceOutcome::Failed(reason) =
            catch_up.receive(fetch.request.fetch_id, Ok(truncated), &MemoryStore::new())
        else {
            panic!("an empty piece fails");
        };
        assert!(reason.contains("holds positions 60"), "{reason}");
        // More than was asked.
        let fetch = catch_up.poll_fetch(3).unwrap();
        assert!(matches!(
            catch_up.receive(
                fetch.request.fetch_id,
                Ok(reply(&fetch, 200)),
                &MemoryStore::new()
            ),
            PieceOutcome::Failed(_)
        ));
        // A late answer to a piece no longer in flight changes nothing.
        assert!(matches!(
            catch_up.receive(
                fetch.request.fetch_id,
                Ok(reply(&fetch, 5)),
                &MemoryStore::new()
            ),
            PieceOutcome::Ignored
        ));
        assert_eq!(catch_up.missing(), Some((11, 100)));
    }

    #[test]
    fn a_silent_peer_times_out_and_too_many_failures_drop_the_snapshot() {
        let mut catch_up = SnapshotCatchUp::default();
        catch_up.offer(
            snapshot_message(1, 50),
            span(0, 100),
            (1, 1),
            &[1, 2, 3],
            3,
            None,
        );
        let mut tick = 0;
        let mut asked = Vec::new();
        while catch_up.missing().is_some() {
            if let Some(fetch) = catch_up.poll_fetch(tick) {
                asked.push(fetch.peer);
            }
            tick += 1;
            assert!(tick < 100_000, "the snapshot is dropped in the end");
        }
        assert_eq!(asked.len() as u32, LOG_FETCH_FAILURES_MAX);
        assert_eq!(&asked[..4], &[1, 2, 1, 2], "peers are asked in turn");
        assert_eq!(catch_up.counters().snapshots_dropped, 1);
        assert_eq!(catch_up.poll_fetch(tick), None);
    }

    #[test]
    fn a_newer_snapshot_replaces_the_waiting_one_and_keeps_what_was_fetched() {
        let mut catch_up = SnapshotCatchUp::default();
        catch_up.offer(
            snapshot_message(1, 50),
            span(10, 3_000),
            (1, 1),
            &[1, 2, 3],
            3,
            None,
        );
        let fetch = catch_up.poll_fetch(0).unwrap();
        let PieceOutcome::Entries { .. } = catch_up.receive(
            fetch.request.fetch_id,
            Ok(reply(&fetch, 1_024)),
            &MemoryStore::new(),
        ) else {
            panic!("the piece is taken");
        };
        // An older snapshot changes nothing.
        assert!(
            catch_up
                .offer(
                    snapshot_message(1, 40),
                    span(5, 2_000),
                    (1, 1),
                    &[1, 2, 3],
                    3,
                    None,
                )
                .is_none()
        );
        assert_eq!(catch_up.missing(), Some((11 + 1_024, 3_000)));
        // A newer one whose range starts below what was fetched goes on from there.
        assert!(
            catch_up
                .offer(
                    snapshot_message(2, 60),
                    span(500, 4_000),
                    (1, 1),
                    &[1, 2, 3],
                    3,
                    None,
                )
                .is_none()
        );
        assert_eq!(catch_up.missing(), Some((11 + 1_024, 4_000)));
        assert_eq!(
            catch_up.poll_fetch(1).unwrap().peer,
            2,
            "its sender is asked"
        );
        // A newer one whose range starts above it starts over there.
        catch_up.offer(
            snapshot_message(2, 70),
            span(2_000, 4_500),
            (1, 1),
            &[1, 2, 3],
            3,
            None,
        );
        assert_eq!(catch_up.missing(), Some((2_001, 4_500)));
    }
}
