//! The session table: exactly-once for retried proposals (docs/design.md section 1, "exactly
//! once").
//!
//! A client opens a session before it calls anything: an entry of the region log that
//! registers the session id the client chose (64 random bits, fresh for every process). A
//! record carries the (session id, request sequence) of the call it stands for, and the region
//! log applies a pair once: a retry of an applied pair gets the position of the first copy and
//! appends nothing. The table is part of the replicated state (written in the same batch as the
//! records, carried by snapshots), so its answers are the same on every member, after restarts
//! and leader changes.
//!
//! A session's lifetime is explicit and nothing another client does can end it:
//! - it begins with its open entry; a record of a session the table does not hold (never
//!   opened, or expired) is refused as [`DedupVerdict::UnknownSession`], never applied, so a
//!   call can never be applied a second time by a session that forgot it;
//! - it ends when it has been idle (no open, no record) for [`SESSION_IDLE_TIMEOUT_US`] of log
//!   time: the physical part of the timestamps the leader assigns to entries, so every member
//!   expires the same sessions at the same entry, and a client that keeps retrying keeps its
//!   session however many positions other clients fill in between;
//! - it ends when its client closes it (an entry of the region log too, taking no position):
//!   its calls are refused from then on as after an expiry, and it frees its room at once. The
//!   close names only the session id: that id (64 random bits the client drew) is the only
//!   credential a client holds, so a session is closed only by whoever knows its id;
//! - at most [`SESSIONS_MAX`] sessions live at once: a new session beyond that is refused
//!   (the caller is told which bound it met), never made room for by evicting a live one.
//!
//! Per session, the [`DEDUP_WINDOW_MAX`] highest applied sequences are kept with their
//! positions; when one is dropped, the session's floor rises above it, and a sequence below the
//! floor is refused as too old (it may or may not have been applied: the table cannot tell any
//! more, so it must not apply it). A client keeps far fewer calls in flight than the window.
//!
//! A process that restarts opens a new session under a new id, so none of its new calls can be
//! mistaken for a call of the process before, even when the application configures one client
//! id for both (that id names the client in alarms; it is not the session id).
//!
//! # Storage
//!
//! A session is stored as a header, `dedup/<session id>` (when it was opened, in log time), and
//! up to [`DEDUP_WINDOW_MAX`] slots, `dedup/<session id><slot>`, one per applied sequence:
//! recording a sequence writes one 32-byte slot (the slot of the sequence it pushes out of the
//! window, when the window is full), not the whole window. Each slot also carries the
//! session's floor and last activity as of its writing; both only grow, so the session's are
//! the highest over its header and slots. Which slot holds which sequence is a storage detail:
//! two members may place a session's sequences differently (one restored from a snapshot, say)
//! and still hold equal tables.

use std::collections::{BTreeMap, BTreeSet};

use dsss_raft_group::{DurableStore, KeySpace, StoreError, WriteBatch};

use crate::bytes::{Reader, corrupt, scan_range};

/// The most (sequence, position) pairs kept per session.
pub const DEDUP_WINDOW_MAX: usize = 32;

/// A session with no open and no record for this long, in log time (microseconds), ends.
pub const SESSION_IDLE_TIMEOUT_US: u64 = 30 * 60 * 1_000_000;

/// The most sessions that live at once in a region.
pub const SESSIONS_MAX: usize = 16_384;

/// The most slots a session's window may use: one bit each in a `u64`.
const SLOTS_MAX: usize = 64;

/// The prefix of every key of the table in the region state key space: `dedup/<session id>`
/// for a header, `dedup/<session id><slot>` for a slot.
pub const SESSION_KEY_PREFIX: &[u8] = b"dedup/";

/// The end of the range of the table's keys: the prefix with its last byte raised by one.
const SESSION_KEYS_END: &[u8] = b"dedup0";

/// The size of a stored slot: floor, last activity, sequence, position.
const SLOT_VALUE_BYTES: usize = 32;

/// The bounds of a table. Every member of a region MUST use the same ones (the region log
/// uses [`DedupLimits::STANDARD`]); other values exist for tests of the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupLimits {
    /// The most sequences kept per session.
    pub window_max: usize,
    /// Log time (microseconds) without an open or a record after which a session ends.
    pub idle_timeout_us: u64,
    /// The most sessions that live at once.
    pub sessions_max: usize,
}

impl DedupLimits {
    /// The bounds every region uses.
    pub const STANDARD: DedupLimits = DedupLimits {
        window_max: DEDUP_WINDOW_MAX,
        idle_timeout_us: SESSION_IDLE_TIMEOUT_US,
        sessions_max: SESSIONS_MAX,
    };
}

/// What the table knows of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionWindow {
    /// Sequences below this were dropped from the window: too old to judge.
    pub floor: u64,
    /// The log time (microseconds) of the session's latest open or record.
    pub last_active_us: u64,
    /// The highest applied sequences and their positions.
    pub applied: BTreeMap<u64, u64>,
}

/// The table's verdict on a (session, sequence) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupVerdict {
    /// Never applied: apply it.
    New,
    /// Already applied at `position`.
    Duplicate {
        /// The position of the first copy.
        position: u64,
    },
    /// Below the session's window: refused.
    TooOld {
        /// The lowest sequence the window can still judge.
        floor: u64,
    },
    /// The table holds no such session: it was never opened, or it expired. Refused: the
    /// call may have been applied while the session lived, so it must not be applied now.
    UnknownSession,
}

/// Why a session could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefusal {
    /// As many sessions live as the region allows; one ends when it has been idle for the
    /// timeout.
    #[error(
        "the region holds {sessions_max} live client sessions, the most it may; a session \
         ends after {idle_timeout_s} s without calls"
    )]
    Full {
        /// The bound.
        sessions_max: usize,
        /// The idle timeout, in seconds.
        idle_timeout_s: u64,
    },
}

/// A session's window and where it is stored.
#[derive(Clone, Debug)]
struct SessionEntry {
    window: SessionWindow,
    /// The slot of each sequence in the window.
    slot_of: BTreeMap<u64, u8>,
    /// Bit `i` is set when slot `i` holds a sequence.
    used_slots: u64,
}

impl SessionEntry {
    fn new(window: SessionWindow) -> Self {
        SessionEntry {
            window,
            slot_of: BTreeMap::new(),
            used_slots: 0,
        }
    }

    /// Places every sequence of the window in slots 0, 1, ... in sequence order.
    fn place_all(&mut self) {
        self.slot_of.clear();
        self.used_slots = 0;
        let sequences: Vec<u64> = self.window.applied.keys().copied().collect();
        for sequence in sequences {
            self.take_slot(sequence);
        }
    }

    /// Gives `sequence` the lowest free slot.
    fn take_slot(&mut self, sequence: u64) -> u8 {
        let slot = (!self.used_slots).trailing_zeros();
        assert!(
            (slot as usize) < SLOTS_MAX,
            "a window never holds more than {SLOTS_MAX} sequences"
        );
        self.used_slots |= 1 << slot;
        let slot = slot as u8;
        self.slot_of.insert(sequence, slot);
        slot
    }

    /// Frees the slot of `sequence`, returning it.
    fn free_slot(&mut self, sequence: u64) -> Option<u8> {
        let slot = self.slot_of.remove(&sequence)?;
        self.used_slots &= !(1 << slot);
        Some(slot)
    }

    fn slot_is_free(&self, slot: u8) -> bool {
        self.used_slots & (1 << slot) == 0
    }

    /// Writes the header: the session's last activity as of now.
    fn write_header(&self, session_id: u64, space: KeySpace, batch: &mut WriteBatch) {
        batch.put(
            space,
            header_key(session_id),
            self.window.last_active_us.to_be_bytes().to_vec(),
        );
    }

    /// Writes the slot of `sequence` (which the window holds), with the session's floor and
    /// last activity as they are now.
    fn write_slot(&self, session_id: u64, sequence: u64, space: KeySpace, batch: &mut WriteBatch) {
        let slot = self.slot_of[&sequence];
        let position = self.window.applied[&sequence];
        let mut value = Vec::with_capacity(SLOT_VALUE_BYTES);
        value.extend_from_slice(&self.window.floor.to_be_bytes());
        value.extend_from_slice(&self.window.last_active_us.to_be_bytes());
        value.extend_from_slice(&sequence.to_be_bytes());
        value.extend_from_slice(&position.to_be_bytes());
        batch.put(space, slot_key(session_id, slot), value);
    }

    /// Writes the whole session: its header and every slot.
    fn write_all(&self, session_id: u64, space: KeySpace, batch: &mut WriteBatch) {
        self.write_header(session_id, space, batch);
        for &sequence in self.slot_of.keys() {
            self.write_slot(session_id, sequence, space, batch);
        }
    }

    /// Deletes everything stored for the session.
    fn delete_all(&self, session_id: u64, space: KeySpace, batch: &mut WriteBatch) {
        batch.delete(space, header_key(session_id));
        for &slot in self.slot_of.values() {
            batch.delete(space, slot_key(session_id, slot));
        }
    }
}

/// The session table. See the module documentation for its rules.
#[derive(Clone, Debug)]
pub struct DedupTable {
    limits: DedupLimits,
    sessions: BTreeMap<u64, SessionEntry>,
    /// (last activity, session id) of every session, so the idlest is found first.
    idle_order: BTreeSet<(u64, u64)>,
}

/// Tables are equal when they judge every pair alike: same bounds, same sessions. Where the
/// sequences are stored is not part of it.
impl PartialEq for DedupTable {
    fn eq(&self, other: &Self) -> bool {
        self.limits == other.limits
            && self.sessions.len() == other.sessions.len()
            && self
                .sessions()
                .zip(other.sessions())
                .all(|(mine, theirs)| mine == theirs)
    }
}

impl Eq for DedupTable {}

impl Default for DedupTable {
    fn default() -> Self {
        DedupTable::new(DedupLimits::STANDARD)
    }
}

impl DedupTable {
    /// An empty table with the given bounds.
    ///
    /// # Panics
    ///
    /// If a bound is zero, or the window is larger than 64.
    pub fn new(limits: DedupLimits) -> Self {
        assert!(
            limits.window_max > 0 && limits.idle_timeout_us > 0 && limits.sessions_max > 0,
            "dedup bounds must be positive"
        );
        assert!(
            limits.window_max <= SLOTS_MAX,
            "a window holds at most {SLOTS_MAX} sequences"
        );
        DedupTable {
            limits,
            sessions: BTreeMap::new(),
            idle_order: BTreeSet::new(),
        }
    }

    /// The bounds.
    pub fn limits(&self) -> DedupLimits {
        self.limits
    }

    /// How many sessions live.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// What the table knows of `session_id`.
    pub fn session(&self, session_id: u64) -> Option<&SessionWindow> {
        self.sessions.get(&session_id).map(|entry| &entry.window)
    }

    /// Every live session, in id order.
    pub fn sessions(&self) -> impl Iterator<Item = (u64, &SessionWindow)> {
        self.sessions.iter().map(|(&id, entry)| (id, &entry.window))
    }

    /// The verdict on `(session_id, sequence)`, without changing anything.
    pub fn check(&self, session_id: u64, sequence: u64) -> DedupVerdict {
        let Some(entry) = self.sessions.get(&session_id) else {
            return DedupVerdict::UnknownSession;
        };
        let window = &entry.window;
        if let Some(&position) = window.applied.get(&sequence) {
            return DedupVerdict::Duplicate { position };
        }
        if sequence < window.floor {
            return DedupVerdict::TooOld {
                floor: window.floor,
            };
        }
        DedupVerdict::New
    }

    /// Ends every session idle for longer than the timeout as of `now_us` (log time), adding
    /// the deletes to `batch`.
    pub fn expire(&mut self, now_us: u64, space: KeySpace, batch: &mut WriteBatch) {
        self.expire_keeping(now_us, space, batch, |_| false);
    }

    /// [`DedupTable::expire`], except that a session for which `in_flight` is true is not
    /// idle: it is marked active at `now_us` (and written to `batch`) instead of ended. The
    /// region keeps a session whose global call waits for its epoch, however long the
    /// coordinator is away, so that the call's retry finds its answer once it is sealed.
    pub fn expire_keeping(
        &mut self,
        now_us: u64,
        space: KeySpace,
        batch: &mut WriteBatch,
        in_flight: impl Fn(u64) -> bool,
    ) {
        while let Some(&(last_active_us, session_id)) = self.idle_order.first() {
            if now_us.saturating_sub(last_active_us) <= self.limits.idle_timeout_us {
                break;
            }
            if in_flight(session_id) {
                self.touch(session_id, now_us);
                self.sessions[&session_id].write_header(session_id, space, batch);
                continue;
            }
            if let Some(entry) = self.sessions.remove(&session_id) {
                entry.delete_all(session_id, space, batch);
            }
            self.idle_order.remove(&(last_active_us, session_id));
        }
    }

    /// Opens `session_id` at `now_us` (log time), adding the writes to `batch`. Opening a
    /// session that lives (the retry of an open) only marks it active.
    pub fn open(
        &mut self,
        session_id: u64,
        now_us: u64,
        space: KeySpace,
        batch: &mut WriteBatch,
    ) -> Result<(), SessionRefusal> {
        self.expire(now_us, space, batch);
        if !self.sessions.contains_key(&session_id) {
            if self.sessions.len() >= self.limits.sessions_max {
                return Err(SessionRefusal::Full {
                    sessions_max: self.limits.sessions_max,
                    idle_timeout_s: self.limits.idle_timeout_us / 1_000_000,
                });
            }
            self.sessions.insert(
                session_id,
                SessionEntry::new(SessionWindow {
                    floor: 0,
                    last_active_us: now_us,
                    applied: BTreeMap::new(),
                }),
            );
            self.idle_order.insert((now_us, session_id));
        }
        self.touch(session_id, now_us);
        self.sessions[&session_id].write_header(session_id, space, batch);
        Ok(())
    }

    /// Closes `session_id` at its client's request, adding the deletes to `batch`: from now on
    /// its calls are refused as [`DedupVerdict::UnknownSession`], exactly as after it expired,
    /// and it no longer counts against [`DedupLimits::sessions_max`]. Returns whether it lived
    /// (closing a session that ended or never opened, a retried close, changes nothing).
    pub fn close(&mut self, session_id: u64, space: KeySpace, batch: &mut WriteBatch) -> bool {
        let Some(entry) = self.sessions.remove(&session_id) else {
            return false;
        };
        self.idle_order
            .remove(&(entry.window.last_active_us, session_id));
        entry.delete_all(session_id, space, batch);
        true
    }

    /// Marks `session_id` active at `now_us`; activity never moves back.
    fn touch(&mut self, session_id: u64, now_us: u64) {
        let entry = self
            .sessions
            .get_mut(&session_id)
            .expect("only live sessions are touched");
        if now_us > entry.window.last_active_us {
            self.idle_order
                .remove(&(entry.window.last_active_us, session_id));
            entry.window.last_active_us = now_us;
            self.idle_order.insert((now_us, session_id));
        }
    }

    /// Records that `(session_id, sequence)` was applied at `position` at `now_us` (log time),
    /// adding the writes to `batch`: one slot.
    ///
    /// # Panics
    ///
    /// If the pair is not [`DedupVerdict::New`]: the caller checks first.
    pub fn record(
        &mut self,
        session_id: u64,
        sequence: u64,
        position: u64,
        now_us: u64,
        space: KeySpace,
        batch: &mut WriteBatch,
    ) {
        assert_eq!(
            self.check(session_id, sequence),
            DedupVerdict::New,
            "only new pairs of live sessions are recorded"
        );
        self.touch(session_id, now_us);
        let window_max = self.limits.window_max;
        let entry = self
            .sessions
            .get_mut(&session_id)
            .expect("the session lives");
        entry.window.applied.insert(sequence, position);
        let mut freed = Vec::new();
        while entry.window.applied.len() > window_max {
            let (oldest, _) = entry
                .window
                .applied
                .pop_first()
                .expect("the window is over its bound");
            entry.window.floor = entry.window.floor.max(oldest + 1);
            freed.extend(entry.free_slot(oldest));
        }
        if entry.window.applied.contains_key(&sequence) {
            entry.take_slot(sequence);
            entry.write_slot(session_id, sequence, space, batch);
        } else {
            // The sequence fell out of the window at once (it was below every other one):
            // only the floor and the last activity changed; the highest sequence's slot
            // carries them.
            let (&highest, _) = entry
                .window
                .applied
                .last_key_value()
                .expect("the window keeps the sequences above the new one");
            entry.write_slot(session_id, highest, space, batch);
        }
        for slot in freed {
            if entry.slot_is_free(slot) {
                batch.delete(space, slot_key(session_id, slot));
            }
        }
    }

    /// Moves the applied pair `(session_id, sequence)` to a later `position` at `now_us` (log
    /// time): a global call is first applied as a pending record, and once sealed its retries
    /// get the position of its sequenced copy. The sealing counts as the session's activity:
    /// the call completes only now, however long its epoch took, and its client calls next
    /// after it. Nothing happens when the table no longer holds the pair.
    pub fn relocate(
        &mut self,
        session_id: u64,
        sequence: u64,
        position: u64,
        now_us: u64,
        space: KeySpace,
        batch: &mut WriteBatch,
    ) {
        let Some(entry) = self.sessions.get_mut(&session_id) else {
            return;
        };
        let Some(applied_position) = entry.window.applied.get_mut(&sequence) else {
            return;
        };
        *applied_position = position;
        entry.write_slot(session_id, sequence, space, batch);
        self.touch(session_id, now_us);
        self.sessions[&session_id].write_header(session_id, space, batch);
    }

    /// Adds a session read from a snapshot; its sequences get slots in order.
    pub(crate) fn insert_recovered(
        &mut self,
        session_id: u64,
        window: SessionWindow,
    ) -> Result<(), String> {
        let mut entry = SessionEntry::new(window);
        entry.place_all();
        self.insert_entry(session_id, entry)
    }

    fn insert_entry(&mut self, session_id: u64, entry: SessionEntry) -> Result<(), String> {
        if self.sessions.len() >= self.limits.sessions_max {
            return Err(format!(
                "more than {} sessions in the session table",
                self.limits.sessions_max
            ));
        }
        if entry.window.applied.len() > self.limits.window_max {
            return Err(format!(
                "session {session_id} has {} sequences, more than the window of {}",
                entry.window.applied.len(),
                self.limits.window_max
            ));
        }
        if self.sessions.contains_key(&session_id) {
            return Err(format!("session {session_id} appears twice"));
        }
        self.idle_order
            .insert((entry.window.last_active_us, session_id));
        self.sessions.insert(session_id, entry);
        Ok(())
    }

    /// Writes every session to `batch` (after a snapshot replaced the table and its keys).
    pub(crate) fn write_all(&self, space: KeySpace, batch: &mut WriteBatch) {
        for (&session_id, entry) in &self.sessions {
            entry.write_all(session_id, space, batch);
        }
    }

    /// Reads the table back from `store`: each session's header, then its slots.
    pub(crate) fn recover(
        limits: DedupLimits,
        store: &dyn DurableStore,
        space: KeySpace,
    ) -> Result<DedupTable, StoreError> {
        let mut table = DedupTable::new(limits);
        let mut reader = SessionReader::default();
        let mut last_key = Vec::new();
        scan_range(
            store,
            space,
            SESSION_KEY_PREFIX,
            SESSION_KEYS_END,
            |key, value| {
                last_key = key.to_vec();
                match decode_key(key).ok_or_else(|| "not a session table key".to_owned())? {
                    (session_id, None) => {
                        reader.finish(&mut table)?;
                        reader.start(session_id, value)
                    }
                    (session_id, Some(slot)) => {
                        if reader.session_id != Some(session_id) {
                            return Err(format!(
                                "a slot of session {session_id}, which has no header"
                            ));
                        }
                        if slot as usize >= limits.window_max {
                            return Err(format!(
                                "slot {slot} is beyond the window of {}",
                                limits.window_max
                            ));
                        }
                        reader.add(slot, value)
                    }
                }
            },
        )?;
        reader
            .finish(&mut table)
            .map_err(|reason| corrupt(space, &last_key, reason))?;
        Ok(table)
    }
}

/// Collects one session's header and slots during recovery.
#[derive(Default)]
struct SessionReader {
    session_id: Option<u64>,
    floor: u64,
    last_active_us: u64,
    applied: BTreeMap<u64, u64>,
    slot_of: BTreeMap<u64, u8>,
    used_slots: u64,
}

impl SessionReader {
    fn start(&mut self, session_id: u64, header: &[u8]) -> Result<(), String> {
        let mut reader = Reader::new(header);
        let opened_us = reader.u64("last activity")?;
        reader.finish()?;
        *self = SessionReader {
            session_id: Some(session_id),
            last_active_us: opened_us,
            ..SessionReader::default()
        };
        Ok(())
    }

    fn add(&mut self, slot: u8, value: &[u8]) -> Result<(), String> {
        let mut reader = Reader::new(value);
        let floor = reader.u64("floor")?;
        let last_active_us = reader.u64("last activity")?;
        let sequence = reader.u64("sequence")?;
        let position = reader.u64("position")?;
        reader.finish()?;
        if self.applied.insert(sequence, position).is_some() {
            return Err(format!("sequence {sequence} is in two slots"));
        }
        self.floor = self.floor.max(floor);
        self.last_active_us = self.last_active_us.max(last_active_us);
        self.slot_of.insert(sequence, slot);
        self.used_slots |= 1 << slot;
        Ok(())
    }

    /// Adds the collected session to `table` and starts afresh.
    fn finish(&mut self, table: &mut DedupTable) -> Result<(), String> {
        let collected = std::mem::take(self);
        let Some(session_id) = collected.session_id else {
            return Ok(());
        };
        if let Some((&sequence, _)) = collected.applied.first_key_value()
            && sequence < collected.floor
        {
            return Err(format!(
                "session {session_id}: sequence {sequence} is below the floor {}",
                collected.floor
            ));
        }
        let entry = SessionEntry {
            window: SessionWindow {
                floor: collected.floor,
                last_active_us: collected.last_active_us,
                applied: collected.applied,
            },
            slot_of: collected.slot_of,
            used_slots: collected.used_slots,
        };
        table.insert_entry(session_id, entry)
    }
}

/// The key of a session's header in the region state key space.
fn header_key(session_id: u64) -> Vec<u8> {
    let mut key = SESSION_KEY_PREFIX.to_vec();
    key.extend_from_slice(&session_id.to_be_bytes());
    key
}

/// The key of one slot of a session's window in the region state key space.
fn slot_key(session_id: u64, slot: u8) -> Vec<u8> {
    let mut key = header_key(session_id);
    key.push(slot);
    key
}

/// The session id a key holds, and its slot when it is a slot key.
fn decode_key(key: &[u8]) -> Option<(u64, Option<u8>)> {
    let rest = key.strip_prefix(SESSION_KEY_PREFIX)?;
    let (id, slot) = rest.split_first_chunk::<8>()?;
    let id = u64::from_be_bytes(*id);
    match slot {
        [] => Some((id, None)),
        [slot] => Some((id, Some(*slot))),
        _ => None,
    }
}

/// Encodes a window (in snapshots): floor, last activity, count, then (sequence, position)
/// pairs.
pub(crate) fn encode_window(window: &SessionWindow) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(20 + 16 * window.applied.len());
    bytes.extend_from_slice(&window.floor.to_be_bytes());
    bytes.extend_from_slice(&window.last_active_us.to_be_bytes());
    let count = u32::try_from(window.applied.len()).expect("windows are small");
    bytes.extend_from_slice(&count.to_be_bytes());
    for (&sequence, &position) in &window.applied {
        bytes.extend_from_slice(&sequence.to_be_bytes());
        bytes.extend_from_slice(&position.to_be_bytes());
    }
    bytes
}

/// Decodes a window from `reader`, checking counts and order.
pub(crate) fn decode_window(
    reader: &mut Reader<'_>,
    window_max: usize,
) -> Result<SessionWindow, String> {
    let floor = reader.u64("floor")?;
    let last_active_us = reader.u64("last activity")?;
    let count = reader.u32("sequence count")? as usize;
    if count > window_max {
        return Err(format!(
            "{count} sequences, more than the window of {window_max}"
        ));
    }
    let mut applied = BTreeMap::new();
    for _ in 0..count {
        let sequence = reader.u64("sequence")?;
        let position = reader.u64("position")?;
        if sequence < floor {
            return Err(format!(
                "sequence {sequence} at position {position} is below the floor {floor}"
            ));
        }
        if applied.insert(sequence, position).is_some() {
            return Err(format!("sequence {sequence} appears twice"));
        }
    }
    Ok(SessionWindow {
        floor,
        last_active_us,
        applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsss_raft_group::{MemoryStore, WriteOperation};

    const SPACE: KeySpace = KeySpace::new("dedup_test");

    /// One minute of log time, in microseconds.
    const MINUTE_US: u64 = 60 * 1_000_000;

    fn small(window_max: usize, idle_timeout_us: u64, sessions_max: usize) -> DedupTable {
        DedupTable::new(DedupLimits {
            window_max,
            idle_timeout_us,
            sessions_max,
        })
    }

    fn open(table: &mut DedupTable, session_id: u64, now_us: u64, batch: &mut WriteBatch) {
        table
            .open(session_id, now_us, SPACE, batch)
            .expect("the table has room");
    }

    #[test]
    fn a_retried_pair_gets_its_first_position() {
        let mut table = DedupTable::default();
        let mut batch = WriteBatch::new();
        open(&mut table, 7, 1, &mut batch);
        open(&mut table, 8, 1, &mut batch);
        assert_eq!(batch.len(), 2, "an open writes the session's header");
        assert_eq!(table.check(7, 1), DedupVerdict::New);
        let mut batch = WriteBatch::new();
        table.record(7, 1, 10, 2, SPACE, &mut batch);
        assert_eq!(table.check(7, 1), DedupVerdict::Duplicate { position: 10 });
        assert_eq!(table.check(7, 2), DedupVerdict::New);
        assert_eq!(
            table.check(8, 1),
            DedupVerdict::New,
            "sessions are separate"
        );
        assert_eq!(batch.len(), 1, "one write per recorded pair");
    }

    #[test]
    fn a_session_never_opened_is_refused_whatever_the_sequence() {
        let mut table = DedupTable::default();
        assert_eq!(table.check(7, 1), DedupVerdict::UnknownSession);
        let mut batch = WriteBatch::new();
        open(&mut table, 8, 1, &mut batch);
        table.record(8, 1, 1, 1, SPACE, &mut batch);
        assert_eq!(table.check(7, 1), DedupVerdict::UnknownSession);
    }

    #[test]
    fn sequences_below_the_window_are_too_old_and_within_it_are_judged() {
        let mut table = small(3, MINUTE_US, 10);
        let mut batch = WriteBatch::new();
        open(&mut table, 1, 0, &mut batch);
        for sequence in 1..=5 {
            table.record(1, sequence, sequence * 10, sequence, SPACE, &mut batch);
        }
        // The window holds 3, 4, 5; 1 and 2 fell out.
        assert_eq!(table.check(1, 2), DedupVerdict::TooOld { floor: 3 });
        assert_eq!(table.check(1, 1), DedupVerdict::TooOld { floor: 3 });
        assert_eq!(table.check(1, 3), DedupVerdict::Duplicate { position: 30 });
        assert_eq!(table.check(1, 6), DedupVerdict::New);
        assert_eq!(table.session(1).unwrap().applied.len(), 3);
        // A sequence skipped inside the window is still new (clients may pipeline).
        table.record(1, 8, 60, 6, SPACE, &mut batch);
        assert_eq!(table.check(1, 7), DedupVerdict::New);
        assert_eq!(table.check(1, 3), DedupVerdict::TooOld { floor: 4 });
    }

    /// A session whose global call waits for its epoch is not idle: past the timeout it is
    /// marked active (and written) instead of ended, so the call's retry is answered once
    /// the epoch is sealed; once nothing waits, it ends a timeout after that.
    #[test]
    fn a_session_with_a_call_in_flight_outlives_the_idle_timeout() {
        let mut table = small(4, MINUTE_US, 10);
        let mut batch = WriteBatch::new();
        open(&mut table, 1, 0, &mut batch);
        open(&mut table, 2, 0, &mut batch);
        table.record(1, 1, 1, 1_000, SPACE, &mut batch);
        table.record(2, 1, 2, 1_000, SPACE, &mut batch);
        let writes_before = batch.operations().len();
        let later_us = 30 * MINUTE_US;
        table.expire_keeping(later_us, SPACE, &mut batch, |session| session == 1);
        assert!(table.session(2).is_none(), "the idle session ended");
        assert!(table.session(1).is_some(), "the session in flight lives");
        assert_eq!(table.check(1, 1), DedupVerdict::Duplicate { position: 1 });
        assert!(
            batch.operations()[writes_before..]
                .iter()
                .any(|operation| matches!(operation, WriteOperation::Put { .. })),
            "its new activity is written, so a restarted member ends it at the same time"
        );
        table.expire(later_us + MINUTE_US, SPACE, &mut batch);
        assert!(
            table.session(1).is_some(),
            "active at the keep, idle for the timeout"
        );
        table.expire(later_us + MINUTE_US + 1, SPACE, &mut batch);
        assert!(table.session(1).is_none());
    }

    #[test]
    fn a_session_ends_after_its_idle_timeout_in_log_time_and_its_calls_are_refused_after() {
        let mut table = small(4, MINUTE_US, 10);
        let mut batch = WriteBatch::new();
        open(&mut table, 1, 0, &mut batch);
        open(&mut table, 2, 0, &mut batch);
        table.record(1, 1, 1, 1_000, SPACE, &mut batch);
        table.record(2, 1, 2, 30_000_000, SPACE, &mut batch);
        table.expire(1_000 + MINUTE_US, SPACE, &mut batch);
        assert!(
            table.session(1).is_some(),
            "idle for exactly the timeout is kept"
        );
        table.expire(1_001 + MINUTE_US, SPACE, &mut batch);
        assert!(table.session(1).is_none(), "idle for longer ends");
        assert!(table.session(2).is_some());
        assert_eq!(
            table.check(1, 1),
            DedupVerdict::UnknownSession,
            "a retry of an ended session's applied call is refused, never applied again"
        );
        assert_eq!(
            table.check(1, 2),
            DedupVerdict::UnknownSession,
            "so is a new call of an ended session"
        );
        assert!(matches!(
            batch.operations().last(),
            Some(WriteOperation::Delete { .. })
        ));
    }

    #[test]
    fn positions_filled_by_other_sessions_never_end_a_session() {
        // A session that keeps retrying one call while other clients fill millions of
        // positions still knows the call: idleness is counted in log time, not positions.
        let mut table = DedupTable::default();
        let mut batch = WriteBatch::new();
        open(&mut table, 1, 0, &mut batch);
        open(&mut table, 2, 0, &mut batch);
        table.record(1, 1, 1, 0, SPACE, &mut batch);
        for (step, position) in [(1, 1_000_000), (2, 5_000_000), (3, 50_000_000)] {
            table.record(2, step, position, step * MINUTE_US, SPACE, &mut batch);
            table.expire(step * MINUTE_US, SPACE, &mut batch);
        }
        assert_eq!(table.check(1, 1), DedupVerdict::Duplicate { position: 1 });
    }

    #[test]
    fn new_sessions_beyond_the_bound_are_refused_and_never_end_a_live_one() {
        let mut table = DedupTable::default();
        let mut batch = WriteBatch::new();
        open(&mut table, 0, 0, &mut batch);
        table.record(0, 1, 1, 0, SPACE, &mut batch);
        for session in 1..SESSIONS_MAX as u64 {
            open(&mut table, session, 1, &mut batch);
        }
        assert_eq!(table.session_count(), SESSIONS_MAX);
        let refusal = table
            .open(u64::MAX, 2, SPACE, &mut batch)
            .expect_err("the table is full");
        assert_eq!(
            refusal,
            SessionRefusal::Full {
                sessions_max: SESSIONS_MAX,
                idle_timeout_s: SESSION_IDLE_TIMEOUT_US / 1_000_000
            }
        );
        assert!(refusal.to_string().contains("16384 live client sessions"));
        assert_eq!(table.check(0, 1), DedupVerdict::Duplicate { position: 1 });
        // Reopening a live session (a retried open) needs no room.
        open(&mut table, 5, 3, &mut batch);
        // Once sessions end by idleness, there is room again.
        table.record(0, 2, 2, SESSION_IDLE_TIMEOUT_US, SPACE, &mut batch);
        open(
            &mut table,
            u64::MAX,
            SESSION_IDLE_TIMEOUT_US + 2,
            &mut batch,
        );
        assert_eq!(table.session_count(), 3, "sessions 0, 5 and the new one");
        assert_eq!(table.check(0, 1), DedupVerdict::Duplicate { position: 1 });
    }

    #[test]
    fn a_closed_session_frees_its_room_and_its_calls_are_refused_never_applied_again() {
        let mut table = small(4, MINUTE_US, 2);
        let mut store = MemoryStore::new();
        let mut batch = WriteBatch::new();
        open(&mut table, 1, 0, &mut batch);
        open(&mut table, 2, 0, &mut batch);
        table.record(1, 1, 10, 1, SPACE, &mut batch);
        table.record(1, 2, 11, 2, SPACE, &mut batch);
        write(&mut store, batch);
        let mut batch = WriteBatch::new();
        assert!(
            table.open(3, 3, SPACE, &mut batch).is_err(),
            "the table is full"
        );
        assert!(table.close(1, SPACE, &mut batch), "session 1 lived");
        assert_eq!(table.session_count(), 1);
        for sequence in [1, 2, 3] {
            assert_eq!(
                table.check(1, sequence),
                DedupVerdict::UnknownSession,
                "sequence {sequence}: a closed session's calls, applied or not, are refused"
            );
        }
        assert!(
            !table.close(1, SPACE, &mut batch),
            "a retried close changes nothing"
        );
        assert!(
            !table.close(9, SPACE, &mut batch),
            "nor does closing an unknown session"
        );
        open(&mut table, 3, 3, &mut batch);
        assert_eq!(
            table.session_count(),
            2,
            "the closed session's room was taken"
        );
        write(&mut store, batch);
        let recovered = DedupTable::recover(table.limits(), &store, SPACE).unwrap();
        assert_eq!(
            recovered, table,
            "the close deleted every key of the session"
        );
        assert_eq!(recovered.check(1, 1), DedupVerdict::UnknownSession);
        // Closed, the session never comes back by expiry bookkeeping either.
        let mut batch = WriteBatch::new();
        table.expire(10 * MINUTE_US, SPACE, &mut batch);
        assert_eq!(table.session_count(), 0);
    }

    #[test]
    fn windows_survive_encoding_and_bad_bytes_are_errors() {
        let mut table = small(4, MINUTE_US, 10);
        let mut batch = WriteBatch::new();
        open(&mut table, 9, 0, &mut batch);
        for sequence in 1..=6 {
            table.record(9, sequence, sequence + 100, sequence, SPACE, &mut batch);
        }
        let window = table.session(9).unwrap().clone();
        let bytes = encode_window(&window);
        let decode = |bytes: &[u8]| {
            let mut reader = Reader::new(bytes);
            decode_window(&mut reader, 4).and_then(|window| reader.finish().map(|()| window))
        };
        assert_eq!(decode(&bytes).unwrap(), window);
        for length in 0..bytes.len() {
            assert!(decode(&bytes[..length]).is_err());
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        assert_eq!(
            decode_key(&slot_key(u64::MAX, 7)),
            Some((u64::MAX, Some(7)))
        );
        assert_eq!(decode_key(&header_key(3)), Some((3, None)));
        assert_eq!(decode_key(b"dedup/1"), None);
    }

    /// Applies `batch` to `store` and returns the bytes it put.
    fn write(store: &mut MemoryStore, batch: WriteBatch) -> usize {
        let bytes = batch
            .operations()
            .iter()
            .map(|operation| match operation {
                WriteOperation::Put { key, value, .. } => key.len() + value.len(),
                _ => 0,
            })
            .sum();
        store.write(batch, true).unwrap();
        bytes
    }

    #[test]
    fn a_record_writes_one_small_slot_whatever_the_window_holds() {
        let mut table = DedupTable::default();
        let mut store = MemoryStore::new();
        let mut batch = WriteBatch::new();
        open(&mut table, 5, 0, &mut batch);
        write(&mut store, batch);
        for sequence in 1..=100 {
            let mut batch = WriteBatch::new();
            table.record(5, sequence, sequence, sequence, SPACE, &mut batch);
            assert_eq!(batch.len(), 1, "sequence {sequence}: one write");
            let bytes = write(&mut store, batch);
            assert_eq!(bytes, SESSION_KEY_PREFIX.len() + 9 + SLOT_VALUE_BYTES);
        }
        let stored = store.scan(SPACE, b"", b"\xff", 1_000).unwrap();
        assert_eq!(
            stored.len(),
            1 + DEDUP_WINDOW_MAX,
            "the header, and a full window that uses its slots again"
        );
        assert_eq!(
            DedupTable::recover(DedupLimits::STANDARD, &store, SPACE).unwrap(),
            table
        );
    }

    /// A small deterministic generator, so that the test needs no dependency.
    struct Steps(u64);

    impl Steps {
        fn next(&mut self, below: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % below
        }
    }

    #[test]
    fn the_store_gives_back_the_table_after_any_history() {
        // Sessions open (some are refused by a full table), pipeline (sequences out of order,
        // some skipped, some below the whole window), retry, get relocated and expire.
        for seed in 1..=40_u64 {
            let limits = DedupLimits {
                window_max: 4,
                idle_timeout_us: 60,
                sessions_max: 5,
            };
            let mut table = DedupTable::new(limits);
            let mut store = MemoryStore::new();
            let mut steps = Steps(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut next_sequence = [1_u64; 8];
            for position in 1..=400_u64 {
                let now_us = position;
                let mut batch = WriteBatch::new();
                table.expire(now_us, SPACE, &mut batch);
                let session = steps.next(8);
                if table.session(session).is_none() || steps.next(20) == 0 {
                    let _ = table.open(session, now_us, SPACE, &mut batch);
                }
                let sequence = match steps.next(4) {
                    0 => next_sequence[session as usize].saturating_sub(steps.next(8)),
                    _ => {
                        next_sequence[session as usize] += 1 + steps.next(2);
                        next_sequence[session as usize]
                    }
                };
                if table.check(session, sequence) == DedupVerdict::New {
                    table.record(session, sequence, position, now_us, SPACE, &mut batch);
                }
                if steps.next(10) == 0
                    && let Some(window) = table.session(session)
                    && let Some(&applied) = window.applied.keys().next()
                {
                    table.relocate(session, applied, position, now_us, SPACE, &mut batch);
                }
                write(&mut store, batch);
                let recovered = DedupTable::recover(limits, &store, SPACE).unwrap();
                assert_eq!(recovered, table, "seed {seed}, position {position}");
            }
        }
    }

    #[test]
    fn damaged_slots_are_errors_that_name_the_key() {
        let mut table = DedupTable::default();
        let mut store = MemoryStore::new();
        let mut batch = WriteBatch::new();
        open(&mut table, 3, 1, &mut batch);
        table.record(3, 1, 5, 2, SPACE, &mut batch);
        table.record(3, 2, 6, 3, SPACE, &mut batch);
        write(&mut store, batch);
        let damage = |key: Vec<u8>, value: Vec<u8>| {
            let mut damaged = store.clone();
            let mut batch = WriteBatch::new();
            batch.put(SPACE, key, value);
            damaged.write(batch, true).unwrap();
            DedupTable::recover(DedupLimits::STANDARD, &damaged, SPACE)
                .unwrap_err()
                .to_string()
        };
        let slot_value = |floor: u64, last: u64, sequence: u64, position: u64| {
            [floor, last, sequence, position]
                .iter()
                .flat_map(|field| field.to_be_bytes())
                .collect::<Vec<u8>>()
        };
        let short = damage(slot_key(3, 0), vec![0; 31]);
        let key_hex: String = slot_key(3, 0)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert!(
            short.contains(&key_hex) && short.contains("position"),
            "{short}"
        );
        let error = damage(slot_key(3, 40), slot_value(0, 6, 9, 6));
        assert!(error.contains("slot 40"), "{error}");
        let error = damage(slot_key(3, 2), slot_value(0, 6, 1, 6));
        assert!(error.contains("two slots"), "{error}");
        let error = damage(slot_key(3, 2), slot_value(3, 6, 9, 6));
        assert!(error.contains("below the floor"), "{error}");
        let error = damage(slot_key(4, 0), slot_value(0, 6, 9, 6));
        assert!(error.contains("no header"), "{error}");
        let error = damage(header_key(3), vec![0; 7]);
        assert!(error.contains("last activity"), "{error}");
        let error = damage(b"dedup/abc".to_vec(), slot_value(0, 6, 9, 6));
        assert!(error.contains("not a session table key"), "{error}");
    }
}
