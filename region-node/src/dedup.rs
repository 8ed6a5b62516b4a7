//! The dedup table: exactly-once for retried proposals (docs/design.md section 1, "exactly once").
//!
//! A record carries the (client id, request sequence) of the call it stands for. The region
//! log applies a pair once: a retry of an applied pair gets the position of the first copy
//! and appends nothing. The table is part of the replicated state (written in the same batch
//! as the records, carried by snapshots), so its answers are the same on every member, after
//! restarts and leader changes.
//!
//! Its memory is bounded, and every bound is decided by log position, never by wall time, so
//! that every member forgets the same things at the same point:
//! - per client, the [`DEDUP_WINDOW_MAX`] highest applied sequences are kept with their
//!   positions; when one is dropped, the client's floor rises above it, and a sequence below
//!   the floor is refused as too old (it may or may not have been applied: the table cannot
//!   tell any more, so it must not apply it);
//! - a client with no record in the last [`DEDUP_IDLE_POSITIONS_MAX`] positions is forgotten;
//! - at most [`DEDUP_CLIENTS_MAX`] clients are kept; a new client evicts the one idle longest.
//!
//! A client forgotten by either of the last two rules starts afresh: a retry that arrives
//! after that is applied again. Clients retry within seconds; the bounds are set so that
//! forgetting takes far longer under any real load.
//!
//! # Storage
//!
//! Every applied record changes its client's window, and the table is written in the same
//! batch as the record, on every member. Rewriting the whole window for each record (32
//! pairs, over 500 bytes) would double what a member writes per record, so the window is
//! stored as up to [`DEDUP_WINDOW_MAX`] slots, `dedup/<client id><slot>`, one per applied
//! sequence: recording a sequence writes one 32-byte slot (the slot of the sequence it pushes
//! out of the window, when the window is full). Each slot also carries the client's floor and
//! last position as of its writing; both only grow, so the client's are the highest over its
//! slots. Which slot holds which sequence is a storage detail: two members may place a
//! client's sequences differently (one restored from a snapshot, say) and still hold equal
//! tables.
//!
//! Stores written by earlier releases hold each window whole under `client/<client id>`;
//! recovery reads those too, and the client's next write replaces its window by slots.

use std::collections::{BTreeMap, BTreeSet};

use dsss_raft_group::{DurableStore, KeySpace, StoreError, WriteBatch};

use crate::bytes::{Reader, corrupt, scan_range};

/// The most (sequence, position) pairs kept per client.
pub const DEDUP_WINDOW_MAX: usize = 32;

/// A client with no record in this many positions is forgotten.
pub const DEDUP_IDLE_POSITIONS_MAX: u64 = 1_000_000;

/// The most clients the table keeps.
pub const DEDUP_CLIENTS_MAX: usize = 10_000;

/// The most slots a client's window may use: one bit each in a `u64`.
const SLOTS_MAX: usize = 64;

/// The prefix of every slot key in the region state key space: `dedup/<client id><slot>`.
pub const SLOT_KEY_PREFIX: &[u8] = b"dedup/";

/// The end of the range of slot keys: the prefix with its last byte raised by one.
const SLOT_KEYS_END: &[u8] = b"dedup0";

/// The prefix of the whole-window keys of earlier releases: `client/<client id>`.
pub const LEGACY_CLIENT_KEY_PREFIX: &[u8] = b"client/";

/// The end of the range of whole-window keys.
const LEGACY_CLIENT_KEYS_END: &[u8] = b"client0";

/// The size of a stored slot: floor, last position, sequence, position.
const SLOT_VALUE_BYTES: usize = 32;

/// The bounds of a table. Every member of a region MUST use the same ones (the region log
/// uses [`DedupLimits::STANDARD`]); other values exist for tests of the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupLimits {
    /// The most sequences kept per client.
    pub window_max: usize,
    /// Positions of idleness after which a client is forgotten.
    pub idle_positions_max: u64,
    /// The most clients kept.
    pub clients_max: usize,
}

impl DedupLimits {
    /// The bounds every region uses.
    pub const STANDARD: DedupLimits = DedupLimits {
        window_max: DEDUP_WINDOW_MAX,
        idle_positions_max: DEDUP_IDLE_POSITIONS_MAX,
        clients_max: DEDUP_CLIENTS_MAX,
    };
}

/// What the table knows of one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientWindow {
    /// Sequences below this were dropped from the window: too old to judge.
    pub floor: u64,
    /// The position of the client's latest record.
    pub last_position: u64,
    /// The highest applied sequences and their positions.
    pub applied: BTreeMap<u64, u64>,
}

/// The table's verdict on a (client, sequence) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupVerdict {
    /// Never applied: apply it.
    New,
    /// Already applied at `position`.
    Duplicate {
        /// The position of the first copy.
        position: u64,
    },
    /// Below the client's window: refused.
    TooOld {
        /// The lowest sequence the window can still judge.
        floor: u64,
    },
}

/// A client's window and where it is stored.
#[derive(Clone, Debug)]
struct ClientEntry {
    window: ClientWindow,
    /// The slot of each sequence in the window.
    slot_of: BTreeMap<u64, u8>,
    /// Bit `i` is set when slot `i` holds a sequence.
    used_slots: u64,
    /// The window is still stored whole under its legacy key.
    legacy: bool,
}

impl ClientEntry {
    fn new(window: ClientWindow) -> Self {
        ClientEntry {
            window,
            slot_of: BTreeMap::new(),
            used_slots: 0,
            legacy: false,
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

    /// Writes the slot of `sequence` (which the window holds), with the client's floor and
    /// last position as they are now.
    fn write_slot(&self, client_id: u64, sequence: u64, space: KeySpace, batch: &mut WriteBatch) {
        let slot = self.slot_of[&sequence];
        let position = self.window.applied[&sequence];
        let mut value = Vec::with_capacity(SLOT_VALUE_BYTES);
        value.extend_from_slice(&self.window.floor.to_be_bytes());
        value.extend_from_slice(&self.window.last_position.to_be_bytes());
        value.extend_from_slice(&sequence.to_be_bytes());
        value.extend_from_slice(&position.to_be_bytes());
        batch.put(space, slot_key(client_id, slot), value);
    }

    /// Writes the whole window (slots placed anew), replacing its legacy key if it had one.
    fn write_all(&mut self, client_id: u64, space: KeySpace, batch: &mut WriteBatch) {
        if self.legacy {
            batch.delete(space, legacy_client_key(client_id));
            self.legacy = false;
        }
        for &sequence in self.slot_of.keys() {
            self.write_slot(client_id, sequence, space, batch);
        }
    }

    /// Deletes everything stored for the client.
    fn delete_all(&self, client_id: u64, space: KeySpace, batch: &mut WriteBatch) {
        if self.legacy {
            batch.delete(space, legacy_client_key(client_id));
        }
        for &slot in self.slot_of.values() {
            batch.delete(space, slot_key(client_id, slot));
        }
    }
}

/// The dedup table. See the module documentation for its rules.
#[derive(Clone, Debug)]
pub struct DedupTable {
    limits: DedupLimits,
    clients: BTreeMap<u64, ClientEntry>,
    /// (last position, client id) of every client, so the idlest is found first.
    idle_order: BTreeSet<(u64, u64)>,
}

/// Tables are equal when they judge every pair alike: same bounds, same windows. Where the
/// sequences are stored is not part of it.
impl PartialEq for DedupTable {
    fn eq(&self, other: &Self) -> bool {
        self.limits == other.limits
            && self.clients.len() == other.clients.len()
            && self
                .clients()
                .zip(other.clients())
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
            limits.window_max > 0 && limits.idle_positions_max > 0 && limits.clients_max > 0,
            "dedup bounds must be positive"
        );
        assert!(
            limits.window_max <= SLOTS_MAX,
            "a window holds at most {SLOTS_MAX} sequences"
        );
        DedupTable {
            limits,
            clients: BTreeMap::new(),
            idle_order: BTreeSet::new(),
        }
    }

    /// The bounds.
    pub fn limits(&self) -> DedupLimits {
        self.limits
    }

    /// How many clients are known.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// What the table knows of `client_id`.
    pub fn client(&self, client_id: u64) -> Option<&ClientWindow> {
        self.clients.get(&client_id).map(|entry| &entry.window)
    }

    /// Every client, in id order.
    pub fn clients(&self) -> impl Iterator<Item = (u64, &ClientWindow)> {
        self.clients.iter().map(|(&id, entry)| (id, &entry.window))
    }

    /// The verdict on `(client_id, sequence)`, without changing anything.
    pub fn check(&self, client_id: u64, sequence: u64) -> DedupVerdict {
        let Some(entry) = self.clients.get(&client_id) else {
            return DedupVerdict::New;
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

    /// Forgets every client idle for more than the bound as of `position` (the position
    /// about to be assigned), adding the deletes to `batch`.
    pub fn expire(&mut self, position: u64, space: KeySpace, batch: &mut WriteBatch) {
        while let Some(&(last_position, client_id)) = self.idle_order.first() {
            if position.saturating_sub(last_position) <= self.limits.idle_positions_max {
                break;
            }
            self.forget(client_id, space, batch);
        }
    }

    /// Records that `(client_id, sequence)` was applied at `position`, adding the writes to
    /// `batch`: one slot, or the whole window when it was still stored whole.
    ///
    /// # Panics
    ///
    /// If the pair is not [`DedupVerdict::New`], or `position` is not above the client's last
    /// one: the caller checks first and assigns positions in order.
    pub fn record(
        &mut self,
        client_id: u64,
        sequence: u64,
        position: u64,
        space: KeySpace,
        batch: &mut WriteBatch,
    ) {
        assert_eq!(
            self.check(client_id, sequence),
            DedupVerdict::New,
            "only new pairs are recorded"
        );
        if !self.clients.contains_key(&client_id) && self.clients.len() >= self.limits.clients_max {
            let &(_, idlest) = self
                .idle_order
                .first()
                .expect("a full table has an idlest client");
            self.forget(idlest, space, batch);
        }
        let entry = self.clients.entry(client_id).or_insert_with(|| {
            ClientEntry::new(ClientWindow {
                floor: 0,
                last_position: 0,
                applied: BTreeMap::new(),
            })
        });
        assert!(
            position > entry.window.last_position,
            "positions only grow: client {client_id} had {}, now {position}",
            entry.window.last_position
        );
        self.idle_order
            .remove(&(entry.window.last_position, client_id));
        entry.window.last_position = position;
        entry.window.applied.insert(sequence, position);
        let mut freed = Vec::new();
        while entry.window.applied.len() > self.limits.window_max {
            let (oldest, _) = entry
                .window
                .applied
                .pop_first()
                .expect("the window is over its bound");
            entry.window.floor = entry.window.floor.max(oldest + 1);
            freed.extend(entry.free_slot(oldest));
        }
        self.idle_order.insert((position, client_id));
        if entry.legacy {
            entry.place_all();
            entry.write_all(client_id, space, batch);
            return;
        }
        if entry.window.applied.contains_key(&sequence) {
            entry.take_slot(sequence);
            entry.write_slot(client_id, sequence, space, batch);
        } else {
            // The sequence fell out of the window at once (it was below every other one):
            // only the floor and the last position changed; the highest sequence's slot
            // carries them.
            let (&highest, _) = entry
                .window
                .applied
                .last_key_value()
                .expect("the window keeps the sequences above the new one");
            entry.write_slot(client_id, highest, space, batch);
        }
        for slot in freed {
            if entry.slot_is_free(slot) {
                batch.delete(space, slot_key(client_id, slot));
            }
        }
    }

    /// Moves the applied pair `(client_id, sequence)` to a later `position`: a global call
    /// is first applied as a pending record, and once sealed its retries get the position of
    /// its sequenced copy. Nothing happens when the table no longer holds the pair.
    pub fn relocate(
        &mut self,
        client_id: u64,
        sequence: u64,
        position: u64,
        space: KeySpace,
        batch: &mut WriteBatch,
    ) {
        let Some(entry) = self.clients.get_mut(&client_id) else {
            return;
        };
        let Some(applied_position) = entry.window.applied.get_mut(&sequence) else {
            return;
        };
        *applied_position = position;
        if position > entry.window.last_position {
            self.idle_order
                .remove(&(entry.window.last_position, client_id));
            entry.window.last_position = position;
            self.idle_order.insert((position, client_id));
        }
        if entry.legacy {
            entry.place_all();
            entry.write_all(client_id, space, batch);
        } else {
            entry.write_slot(client_id, sequence, space, batch);
        }
    }

    fn forget(&mut self, client_id: u64, space: KeySpace, batch: &mut WriteBatch) {
        if let Some(entry) = self.clients.remove(&client_id) {
            self.idle_order
                .remove(&(entry.window.last_position, client_id));
            entry.delete_all(client_id, space, batch);
        }
    }

    /// Adds a client read from a snapshot; its sequences get slots in order.
    pub(crate) fn insert_recovered(
        &mut self,
        client_id: u64,
        window: ClientWindow,
    ) -> Result<(), String> {
        let mut entry = ClientEntry::new(window);
        entry.place_all();
        self.insert_entry(client_id, entry)
    }

    fn insert_entry(&mut self, client_id: u64, entry: ClientEntry) -> Result<(), String> {
        if self.clients.len() >= self.limits.clients_max {
            return Err(format!(
                "more than {} clients in the dedup table",
                self.limits.clients_max
            ));
        }
        if entry.window.applied.len() > self.limits.window_max {
            return Err(format!(
                "client {client_id} has {} sequences, more than the window of {}",
                entry.window.applied.len(),
                self.limits.window_max
            ));
        }
        if self.clients.contains_key(&client_id) {
            return Err(format!("client {client_id} appears twice"));
        }
        self.idle_order
            .insert((entry.window.last_position, client_id));
        self.clients.insert(client_id, entry);
        Ok(())
    }

    /// Writes every client to `batch` (after a snapshot replaced the table and its keys).
    pub(crate) fn write_all(&mut self, space: KeySpace, batch: &mut WriteBatch) {
        for (&client_id, entry) in &mut self.clients {
            entry.write_all(client_id, space, batch);
        }
    }

    /// Reads the table back from `store`: slots, and whole windows that earlier releases
    /// wrote.
    pub(crate) fn recover(
        limits: DedupLimits,
        store: &dyn DurableStore,
        space: KeySpace,
    ) -> Result<DedupTable, StoreError> {
        let mut table = DedupTable::new(limits);
        let mut slots = SlotReader::default();
        scan_range(
            store,
            space,
            SLOT_KEY_PREFIX,
            SLOT_KEYS_END,
            |key, value| {
                let (client_id, slot) =
                    decode_slot_key(key).ok_or_else(|| "not a dedup slot key".to_owned())?;
                if slot as usize >= limits.window_max {
                    return Err(format!(
                        "slot {slot} is beyond the window of {}",
                        limits.window_max
                    ));
                }
                if slots.client_id != Some(client_id) {
                    slots.finish(&mut table)?;
                    slots.client_id = Some(client_id);
                }
                slots.add(slot, value)
            },
        )?;
        let last_key = slots
            .client_id
            .map(|client_id| slot_key(client_id, 0))
            .unwrap_or_default();
        slots
            .finish(&mut table)
            .map_err(|reason| corrupt(space, &last_key, reason))?;
        scan_range(
            store,
            space,
            LEGACY_CLIENT_KEY_PREFIX,
            LEGACY_CLIENT_KEYS_END,
            |key, value| {
                let client_id =
                    decode_legacy_client_key(key).ok_or_else(|| "not a client key".to_owned())?;
                let mut reader = Reader::new(value);
                let window = decode_window(&mut reader, limits.window_max)?;
                reader.finish()?;
                let mut entry = ClientEntry::new(window);
                entry.place_all();
                entry.legacy = true;
                table.insert_entry(client_id, entry)
            },
        )?;
        Ok(table)
    }
}

/// Collects one client's slots during recovery.
#[derive(Default)]
struct SlotReader {
    client_id: Option<u64>,
    floor: u64,
    last_position: u64,
    applied: BTreeMap<u64, u64>,
    slot_of: BTreeMap<u64, u8>,
    used_slots: u64,
}

impl SlotReader {
    fn add(&mut self, slot: u8, value: &[u8]) -> Result<(), String> {
        let mut reader = Reader::new(value);
        let floor = reader.u64("floor")?;
        let last_position = reader.u64("last position")?;
        let sequence = reader.u64("sequence")?;
        let position = reader.u64("position")?;
        reader.finish()?;
        if position > last_position {
            return Err(format!(
                "sequence {sequence} at position {position}, after the last position \
                 {last_position} its slot carries"
            ));
        }
        if self.applied.insert(sequence, position).is_some() {
            return Err(format!("sequence {sequence} is in two slots"));
        }
        self.floor = self.floor.max(floor);
        self.last_position = self.last_position.max(last_position);
        self.slot_of.insert(sequence, slot);
        self.used_slots |= 1 << slot;
        Ok(())
    }

    /// Adds the collected client to `table` and starts afresh.
    fn finish(&mut self, table: &mut DedupTable) -> Result<(), String> {
        let collected = std::mem::take(self);
        let Some(client_id) = collected.client_id else {
            return Ok(());
        };
        if let Some((&sequence, _)) = collected.applied.first_key_value()
            && sequence < collected.floor
        {
            return Err(format!(
                "client {client_id}: sequence {sequence} is below the floor {}",
                collected.floor
            ));
        }
        let entry = ClientEntry {
            window: ClientWindow {
                floor: collected.floor,
                last_position: collected.last_position,
                applied: collected.applied,
            },
            slot_of: collected.slot_of,
            used_slots: collected.used_slots,
            legacy: false,
        };
        table.insert_entry(client_id, entry)
    }
}

/// The key of one slot of a client's window in the region state key space.
fn slot_key(client_id: u64, slot: u8) -> Vec<u8> {
    let mut key = SLOT_KEY_PREFIX.to_vec();
    key.extend_from_slice(&client_id.to_be_bytes());
    key.push(slot);
    key
}

/// The client id and slot a slot key holds.
fn decode_slot_key(key: &[u8]) -> Option<(u64, u8)> {
    let rest = key.strip_prefix(SLOT_KEY_PREFIX)?;
    let (id, slot) = rest.split_first_chunk::<8>()?;
    match slot {
        [slot] => Some((u64::from_be_bytes(*id), *slot)),
        _ => None,
    }
}

/// The whole-window key of a client, as earlier releases wrote it.
fn legacy_client_key(client_id: u64) -> Vec<u8> {
    let mut key = LEGACY_CLIENT_KEY_PREFIX.to_vec();
    key.extend_from_slice(&client_id.to_be_bytes());
    key
}

/// The client id a whole-window key holds.
fn decode_legacy_client_key(key: &[u8]) -> Option<u64> {
    let id = key.strip_prefix(LEGACY_CLIENT_KEY_PREFIX)?;
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

/// Encodes a window (in snapshots): floor, last position, count, then (sequence, position)
/// pairs.
pub(crate) fn encode_window(window: &ClientWindow) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(20 + 16 * window.applied.len());
    bytes.extend_from_slice(&window.floor.to_be_bytes());
    bytes.extend_from_slice(&window.last_position.to_be_bytes());
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
) -> Result<ClientWindow, String> {
    let floor = reader.u64("floor")?;
    let last_position = reader.u64("last position")?;
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
        if position > last_position || sequence < floor {
            return Err(format!(
                "sequence {sequence} at position {position} is outside the window (floor \
                 {floor}, last position {last_position})"
            ));
        }
        if applied.insert(sequence, position).is_some() {
            return Err(format!("sequence {sequence} appears twice"));
        }
    }
    Ok(ClientWindow {
        floor,
        last_position,
        applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsss_raft_group::{MemoryStore, WriteOperation};

    const SPACE: KeySpace = KeySpace::new("dedup_test");

    fn small(window_max: usize, idle_positions_max: u64, clients_max: usize) -> DedupTable {
        DedupTable::new(DedupLimits {
            window_max,
            idle_positions_max,
            clients_max,
        })
    }

    #[test]
    fn a_retried_pair_gets_its_first_position() {
        let mut table = DedupTable::default();
        let mut batch = WriteBatch::new();
        assert_eq!(table.check(7, 1), DedupVerdict::New);
        table.record(7, 1, 10, SPACE, &mut batch);
        assert_eq!(table.check(7, 1), DedupVerdict::Duplicate { position: 10 });
        assert_eq!(table.check(7, 2), DedupVerdict::New);
        assert_eq!(table.check(8, 1), DedupVerdict::New, "clients are separate");
        assert_eq!(batch.len(), 1, "one write per recorded pair");
    }

    #[test]
    fn sequences_below_the_window_are_too_old_and_within_it_are_judged() {
        let mut table = small(3, 1_000, 10);
        let mut batch = WriteBatch::new();
        for sequence in 1..=5 {
            table.record(1, sequence, sequence * 10, SPACE, &mut batch);
        }
        // The window holds 3, 4, 5; 1 and 2 fell out.
        assert_eq!(table.check(1, 2), DedupVerdict::TooOld { floor: 3 });
        assert_eq!(table.check(1, 1), DedupVerdict::TooOld { floor: 3 });
        assert_eq!(table.check(1, 3), DedupVerdict::Duplicate { position: 30 });
        assert_eq!(table.check(1, 6), DedupVerdict::New);
        assert_eq!(table.client(1).unwrap().applied.len(), 3);
        // A sequence skipped inside the window is still new (clients may pipeline).
        table.record(1, 8, 60, SPACE, &mut batch);
        assert_eq!(table.check(1, 7), DedupVerdict::New);
        assert_eq!(table.check(1, 3), DedupVerdict::TooOld { floor: 4 });
    }

    #[test]
    fn idle_clients_expire_by_position() {
        let mut table = small(4, 100, 10);
        let mut batch = WriteBatch::new();
        table.record(1, 1, 1, SPACE, &mut batch);
        table.record(2, 1, 50, SPACE, &mut batch);
        table.expire(101, SPACE, &mut batch);
        assert!(
            table.client(1).is_some(),
            "idle for exactly 100 positions is kept"
        );
        table.expire(102, SPACE, &mut batch);
        assert!(
            table.client(1).is_none(),
            "idle for 101 positions is forgotten"
        );
        assert!(table.client(2).is_some());
        assert_eq!(
            table.check(1, 1),
            DedupVerdict::New,
            "a forgotten client starts afresh"
        );
        assert!(matches!(
            batch.operations().last(),
            Some(dsss_raft_group::WriteOperation::Delete { .. })
        ));
    }

    #[test]
    fn a_full_table_evicts_the_client_idle_longest() {
        let mut table = small(4, 1_000, 3);
        let mut batch = WriteBatch::new();
        table.record(1, 1, 1, SPACE, &mut batch);
        table.record(2, 1, 2, SPACE, &mut batch);
        table.record(3, 1, 3, SPACE, &mut batch);
        table.record(1, 2, 4, SPACE, &mut batch);
        // Client 2 is now the idlest (last seen at 2).
        table.record(4, 1, 5, SPACE, &mut batch);
        assert_eq!(table.client_count(), 3);
        assert!(table.client(2).is_none());
        assert!(table.client(1).is_some() && table.client(3).is_some());
        // The standard bound holds too.
        let mut table = DedupTable::default();
        let mut batch = WriteBatch::new();
        for client in 0..=DEDUP_CLIENTS_MAX as u64 {
            table.record(client, 0, client + 1, SPACE, &mut batch);
        }
        assert_eq!(table.client_count(), DEDUP_CLIENTS_MAX);
        assert!(table.client(0).is_none());
    }

    #[test]
    fn windows_survive_encoding_and_bad_bytes_are_errors() {
        let mut table = small(4, 1_000, 10);
        let mut batch = WriteBatch::new();
        for sequence in 1..=6 {
            table.record(9, sequence, sequence + 100, SPACE, &mut batch);
        }
        let window = table.client(9).unwrap().clone();
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
        assert_eq!(decode_slot_key(&slot_key(u64::MAX, 7)), Some((u64::MAX, 7)));
        assert_eq!(decode_slot_key(b"dedup/1"), None);
        assert_eq!(
            decode_legacy_client_key(&legacy_client_key(u64::MAX)),
            Some(u64::MAX)
        );
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
        for sequence in 1..=100 {
            let mut batch = WriteBatch::new();
            table.record(5, sequence, sequence, SPACE, &mut batch);
            assert_eq!(batch.len(), 1, "sequence {sequence}: one write");
            let bytes = write(&mut store, batch);
            assert_eq!(bytes, SLOT_KEY_PREFIX.len() + 9 + SLOT_VALUE_BYTES);
        }
        let stored = store.scan(SPACE, b"", b"\xff", 1_000).unwrap();
        assert_eq!(
            stored.len(),
            DEDUP_WINDOW_MAX,
            "a full window uses its slots again"
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
        // Clients pipeline (sequences out of order, some skipped, some below the whole
        // window), retry, get relocated, go idle and are evicted by a full table.
        for seed in 1..=40_u64 {
            let limits = DedupLimits {
                window_max: 4,
                idle_positions_max: 60,
                clients_max: 5,
            };
            let mut table = DedupTable::new(limits);
            let mut store = MemoryStore::new();
            let mut steps = Steps(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut next_sequence = [1_u64; 8];
            for position in 1..=400_u64 {
                let mut batch = WriteBatch::new();
                table.expire(position, SPACE, &mut batch);
                let client = steps.next(8);
                let sequence = match steps.next(4) {
                    0 => next_sequence[client as usize].saturating_sub(steps.next(8)),
                    _ => {
                        next_sequence[client as usize] += 1 + steps.next(2);
                        next_sequence[client as usize]
                    }
                };
                if table.check(client, sequence) == DedupVerdict::New {
                    table.record(client, sequence, position, SPACE, &mut batch);
                }
                if steps.next(10) == 0
                    && let Some(window) = table.client(client)
                    && let Some(&applied) = window.applied.keys().next()
                {
                    table.relocate(client, applied, position, SPACE, &mut batch);
                }
                write(&mut store, batch);
                let recovered = DedupTable::recover(limits, &store, SPACE).unwrap();
                assert_eq!(recovered, table, "seed {seed}, position {position}");
            }
        }
    }

    #[test]
    fn a_window_stored_whole_by_an_earlier_release_is_read_and_then_replaced_by_slots() {
        let mut store = MemoryStore::new();
        let window = ClientWindow {
            floor: 3,
            last_position: 40,
            applied: BTreeMap::from([(3, 10), (4, 20), (6, 40)]),
        };
        let mut batch = WriteBatch::new();
        batch.put(SPACE, legacy_client_key(12), encode_window(&window));
        write(&mut store, batch);
        let mut table = DedupTable::recover(DedupLimits::STANDARD, &store, SPACE).unwrap();
        assert_eq!(table.client(12), Some(&window));
        assert_eq!(table.check(12, 4), DedupVerdict::Duplicate { position: 20 });
        assert_eq!(table.check(12, 2), DedupVerdict::TooOld { floor: 3 });
        let mut batch = WriteBatch::new();
        table.record(12, 7, 41, SPACE, &mut batch);
        write(&mut store, batch);
        assert_eq!(store.get(SPACE, &legacy_client_key(12)).unwrap(), None);
        let recovered = DedupTable::recover(DedupLimits::STANDARD, &store, SPACE).unwrap();
        assert_eq!(recovered, table);
        assert_eq!(
            recovered.check(12, 4),
            DedupVerdict::Duplicate { position: 20 }
        );
        assert_eq!(
            recovered.check(12, 7),
            DedupVerdict::Duplicate { position: 41 }
        );
        // Forgetting a client whose window is still whole deletes its key too.
        let mut batch = WriteBatch::new();
        batch.put(SPACE, legacy_client_key(13), encode_window(&window));
        write(&mut store, batch);
        let mut table = DedupTable::recover(DedupLimits::STANDARD, &store, SPACE).unwrap();
        let mut batch = WriteBatch::new();
        table.expire(40 + DEDUP_IDLE_POSITIONS_MAX + 2, SPACE, &mut batch);
        write(&mut store, batch);
        assert_eq!(table.client_count(), 0);
        assert!(store.scan(SPACE, b"", b"\xff", 10).unwrap().is_empty());
    }

    #[test]
    fn damaged_slots_are_errors_that_name_the_key() {
        let mut table = DedupTable::default();
        let mut store = MemoryStore::new();
        let mut batch = WriteBatch::new();
        table.record(3, 1, 5, SPACE, &mut batch);
        table.record(3, 2, 6, SPACE, &mut batch);
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
        let error = damage(slot_key(3, 2), slot_value(0, 6, 9, 7));
        assert!(error.contains("after the last position"), "{error}");
        let error = damage(slot_key(3, 2), slot_value(2, 6, 9, 6));
        assert!(error.contains("below the floor"), "{error}");
        let error = damage(b"dedup/abc".to_vec(), slot_value(0, 6, 9, 6));
        assert!(error.contains("not a dedup slot key"), "{error}");
        let error = damage(
            legacy_client_key(3),
            encode_window(table.client(3).unwrap()),
        );
        assert!(error.contains("appears twice"), "{error}");
    }
}
