//! The checkpoint state of a snapshot, moved in pieces.
//!
//! A region snapshot carries the checkpoint state's counters and listed alarms, not what it
//! keeps per object: that is bounded by the region's storage ([`super::CheckpointBounds`]),
//! not by one raft message. When the raft group builds a snapshot it pins a view of the store
//! in the same instant ([`dsss_raft_group::DurableStore::pin_view`], under the snapshot's raft
//! index), so the view holds exactly the state the counters describe, however far the sender
//! moves on. A member taking the snapshot reads that view from the sender in pieces
//! ([`answer_state_piece`]: the checkpoints, released marks, states and uncovered objects, in
//! key order, at most [`STATE_PIECE_PAIRS_MAX`] pairs and [`STATE_PIECE_BYTES_MAX`] bytes
//! beyond the first), checks each pair and writes it into the key space it does not use
//! ([`StateStaging`], with the indexes it derives: alarms and covering limits). Only when the
//! pieces are whole and add up to the snapshot's counters does the snapshot go to raft; the
//! restore then switches the member to that space and clears the other
//! ([`super::CheckpointState::restore`]). A member that crashes while it fetches keeps its own
//! state: the fetched pairs sit in the space it does not use until the next fetch clears it.

use dsss_raft_group::{DurableStore, KeySpace, KeyValuePairs, StoreError, StoreView, WriteBatch};
use dsss_wire::ObjectId;

use super::{
    ALARM_KEY_PREFIX, CHECKPOINT_KEY_PREFIX, CHECKPOINT_KEYS_END, CheckpointSpace, Header,
    KEYS_END, OBJECT_DIGEST_BYTES, ObjectCheckpoints, RELEASED_KEY_PREFIX, RELEASED_KEYS_END,
    RELEASED_SNAPSHOT_BYTES, STATE_KEY_PREFIX, STATE_KEYS_END, UNCOVERED_KEY_PREFIX,
    UNCOVERED_KEYS_END, check_object, decode_meta, decode_position, decode_uncovered, limit_key,
    object_from_key, object_key, object_snapshot_bytes, uncovered_snapshot_bytes,
};
use crate::bytes::Reader;

/// The most pairs one piece carries.
pub const STATE_PIECE_PAIRS_MAX: usize = 4_096;

/// The most bytes of keys and values one piece carries beyond its first pair (a piece always
/// holds one pair when one is left, however large: a state is at most
/// [`super::CHECKPOINT_STATE_BYTES_MAX`]).
pub const STATE_PIECE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The key ranges a piece walks, in key order: what the state keeps per object, without the
/// indexes a member derives from it (alarms and covering limits) and without the header, which
/// the snapshot carries.
const SHIPPED_RANGES: [(&[u8], &[u8]); 4] = [
    (CHECKPOINT_KEY_PREFIX, CHECKPOINT_KEYS_END),
    (RELEASED_KEY_PREFIX, RELEASED_KEYS_END),
    (STATE_KEY_PREFIX, STATE_KEYS_END),
    (UNCOVERED_KEY_PREFIX, UNCOVERED_KEYS_END),
];

/// How many pairs one scan of the view reads.
const SCAN_CHUNK: usize = 256;

/// The ranges of `space` a snapshot's view must hold.
pub(crate) fn view_ranges(space: KeySpace) -> Vec<dsss_raft_group::KeyRange> {
    SHIPPED_RANGES
        .iter()
        .map(|(start, end)| dsss_raft_group::KeyRange {
            space,
            start: start.to_vec(),
            end: end.to_vec(),
        })
        .collect()
}

/// One piece of the state: pairs in key order after the key asked, and whether they reach
/// the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatePiece {
    /// Key-value pairs, in key order.
    pub pairs: KeyValuePairs,
    /// True when no pair follows the last one.
    pub done: bool,
}

/// The pairs of `space` in `view` after `after_key` (from the start when it is empty), at most
/// [`STATE_PIECE_PAIRS_MAX`] and [`STATE_PIECE_BYTES_MAX`] bytes beyond the first.
pub fn answer_state_piece(
    view: &dyn StoreView,
    space: KeySpace,
    after_key: &[u8],
) -> Result<StatePiece, StoreError> {
    let mut piece = StatePiece::default();
    let mut bytes = 0usize;
    for (start, end) in SHIPPED_RANGES {
        if !after_key.is_empty() && end <= after_key {
            continue;
        }
        let mut from = if after_key.is_empty() || after_key < start {
            start.to_vec()
        } else {
            let mut next = after_key.to_vec();
            next.push(0);
            next
        };
        loop {
            let chunk = view.scan(space, &from, end, SCAN_CHUNK)?;
            let exhausted = chunk.len() < SCAN_CHUNK;
            for (key, value) in chunk {
                let size = key.len() + value.len();
                if !piece.pairs.is_empty()
                    && (piece.pairs.len() >= STATE_PIECE_PAIRS_MAX
                        || bytes + size > STATE_PIECE_BYTES_MAX)
                {
                    return Ok(piece);
                }
                bytes += size;
                from = key.clone();
                from.push(0);
                piece.pairs.push((key, value));
            }
            if exhausted {
                break;
            }
        }
    }
    piece.done = true;
    Ok(piece)
}

/// A snapshot's state being fetched into the space a member does not use (see the module
/// documentation).
#[derive(Debug)]
pub struct StateStaging {
    space: CheckpointSpace,
    expected: Header,
    next_position: u64,
    counted: Header,
    /// The last key taken; pieces continue after it.
    after_key: Vec<u8>,
    pieces: u64,
    bytes: u64,
}

impl StateStaging {
    /// A fetch into `space` of the state whose counters are `expected`, in a snapshot whose
    /// next position is `next_position`.
    pub(crate) fn new(space: CheckpointSpace, expected: Header, next_position: u64) -> Self {
        StateStaging {
            space,
            expected,
            next_position,
            counted: Header {
                truncated_through: expected.truncated_through,
                alarms_raised: expected.alarms_raised,
                untracked_from: expected.untracked_from,
                releases: expected.releases,
                ..Header::default()
            },
            after_key: Vec::new(),
            pieces: 0,
            bytes: 0,
        }
    }

    /// Where the state is fetched into.
    pub fn space(&self) -> CheckpointSpace {
        self.space
    }

    /// The key the next piece starts after (empty for the first).
    pub fn after_key(&self) -> &[u8] {
        &self.after_key
    }

    /// Pieces taken so far.
    pub fn pieces(&self) -> u64 {
        self.pieces
    }

    /// Bytes of keys and values taken so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Checks `piece` and adds its writes to `batch` (the first piece also clears the space
    /// of what an earlier fetch left); `store` is read for the checkpoints of earlier pieces.
    /// Returns whether the state is whole; when it is, it has been checked against the
    /// snapshot's counters. An error names the pair and what was wrong: the caller drops the
    /// batch and starts over.
    pub(crate) fn take_piece(
        &mut self,
        piece: &StatePiece,
        store: &dyn DurableStore,
        batch: &mut WriteBatch,
    ) -> Result<bool, String> {
        let space = self.space.key_space();
        if piece.pairs.is_empty() && !piece.done {
            return Err("an empty piece that does not end the state".to_owned());
        }
        if self.pieces == 0 {
            batch.delete_range(space, Vec::new(), KEYS_END.to_vec());
        }
        // Checkpoints of this piece, for the states after them in it.
        let mut metas: std::collections::BTreeMap<ObjectId, u64> = Default::default();
        let mut counted = self.counted;
        for (key, value) in &piece.pairs {
            if !self.after_key.is_empty() && key.as_slice() <= self.after_key.as_slice() {
                return Err(format!(
                    "key {} is not after the last one taken",
                    String::from_utf8_lossy(key)
                ));
            }
            let at = || format!("key {}", String::from_utf8_lossy(key));
            if let Some(object_id) = object_from_key(CHECKPOINT_KEY_PREFIX, key) {
                let mut reader = Reader::new(value);
                let object: ObjectCheckpoints = decode_meta(&mut reader)
                    .and_then(|object| reader.finish().map(|()| object))
                    .and_then(|object| check_object(&object, self.next_position).map(|()| object))
                    .map_err(|reason| format!("{}: {reason}", at()))?;
                counted.object_count += 1;
                counted.checkpoint_bytes +=
                    object_snapshot_bytes(&object_id, object.newest.state_bytes);
                if object.alarm.is_some() {
                    counted.alarm_count += 1;
                    batch.put(space, object_key(ALARM_KEY_PREFIX, &object_id), Vec::new());
                }
                metas.insert(object_id, object.newest.state_bytes);
            } else if let Some(digest) = key.strip_prefix(RELEASED_KEY_PREFIX) {
                if digest.len() != OBJECT_DIGEST_BYTES {
                    return Err(format!("{}: not a released object key", at()));
                }
                let position = decode_position(value, "a released position")
                    .map_err(|reason| format!("{}: {reason}", at()))?;
                if position == 0 || position >= self.next_position {
                    return Err(format!(
                        "{}: released through position {position}, not in 1..{}",
                        at(),
                        self.next_position
                    ));
                }
                counted.released_count += 1;
                counted.tracking_bytes += RELEASED_SNAPSHOT_BYTES;
            } else if let Some(object_id) = object_from_key(STATE_KEY_PREFIX, key) {
                let announced = match metas.get(&object_id) {
                    Some(bytes) => Some(*bytes),
                    // Earlier pieces are in the store; the first piece's clear is not
                    // written yet, so the store is not read for it.
                    None if self.pieces > 0 => store
                        .get(space, &object_key(CHECKPOINT_KEY_PREFIX, &object_id))
                        .map_err(|error| error.to_string())?
                        .map(|meta| {
                            let mut reader = Reader::new(&meta);
                            decode_meta(&mut reader).map(|object| object.newest.state_bytes)
                        })
                        .transpose()
                        .map_err(|reason| format!("{}: its checkpoint: {reason}", at()))?,
                    None => None,
                };
                let Some(announced) = announced else {
                    return Err(format!("{}: a state without a checkpoint", at()));
                };
                if value.len() as u64 != announced {
                    return Err(format!(
                        "{}: {} bytes of state, {announced} announced",
                        at(),
                        value.len()
                    ));
                }
                counted.states_size_bytes += announced;
            } else if let Some(object_id) = object_from_key(UNCOVERED_KEY_PREFIX, key) {
                let uncovered =
                    decode_uncovered(value).map_err(|reason| format!("{}: {reason}", at()))?;
                if uncovered.last_record_position >= self.next_position
                    || uncovered.last_record_position <= self.expected.truncated_through
                    || uncovered.covering_position < self.expected.truncated_through
                {
                    return Err(format!(
                        "{}: newest record at {} and covering position {} do not lie between \
                         the truncation point {} and the next position {}",
                        at(),
                        uncovered.last_record_position,
                        uncovered.covering_position,
                        self.expected.truncated_through,
                        self.next_position
                    ));
                }
                counted.uncovered_count += 1;
                counted.tracking_bytes += uncovered_snapshot_bytes(&object_id);
                batch.put(
                    space,
                    limit_key(uncovered.covering_position, &object_id),
                    Vec::new(),
                );
            } else {
                return Err(format!("{}: not a key of the checkpoint state", at()));
            }
            batch.put(space, key.clone(), value.clone());
        }
        if let Some((last, _)) = piece.pairs.last() {
            self.after_key = last.clone();
        }
        self.counted = counted;
        self.pieces += 1;
        self.bytes += piece
            .pairs
            .iter()
            .map(|(key, value)| (key.len() + value.len()) as u64)
            .sum::<u64>();
        if !piece.done {
            return Ok(false);
        }
        if self.counted != self.expected {
            return Err(format!(
                "the state fetched ({:?}) does not add up to the snapshot's counters ({:?})",
                self.counted, self.expected
            ));
        }
        Ok(true)
    }
}
