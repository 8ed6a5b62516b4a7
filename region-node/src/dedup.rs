//! The dedup table: exactly-once for retried proposals (DESIGN.md section 1, "exactly once").
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

use std::collections::{BTreeMap, BTreeSet};

use dsss_raft_group::{KeySpace, StoreError, WriteBatch};

/// The most (sequence, position) pairs kept per client.
pub const DEDUP_WINDOW_MAX: usize = 32;

/// A client with no record in this many positions is forgotten.
pub const DEDUP_IDLE_POSITIONS_MAX: u64 = 1_000_000;

/// The most clients the table keeps.
pub const DEDUP_CLIENTS_MAX: usize = 10_000;

/// The prefix of every client's key in the region state key space.
pub const CLIENT_KEY_PREFIX: &[u8] = b"client/";

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

/// The dedup table. See the module documentation for its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DedupTable {
    limits: DedupLimits,
    clients: BTreeMap<u64, ClientWindow>,
    /// (last position, client id) of every client, so the idlest is found first.
    idle_order: BTreeSet<(u64, u64)>,
}

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
    /// If a bound is zero.
    pub fn new(limits: DedupLimits) -> Self {
        assert!(
            limits.window_max > 0 && limits.idle_positions_max > 0 && limits.clients_max > 0,
            "dedup bounds must be positive"
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
        self.clients.get(&client_id)
    }

    /// Every client, in id order.
    pub fn clients(&self) -> impl Iterator<Item = (u64, &ClientWindow)> {
        self.clients.iter().map(|(&id, window)| (id, window))
    }

    /// The verdict on `(client_id, sequence)`, without changing anything.
    pub fn check(&self, client_id: u64, sequence: u64) -> DedupVerdict {
        let Some(window) = self.clients.get(&client_id) else {
            return DedupVerdict::New;
        };
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
    /// `batch`.
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
        let window = self.clients.entry(client_id).or_insert(ClientWindow {
            floor: 0,
            last_position: 0,
            applied: BTreeMap::new(),
        });
        assert!(
            position > window.last_position,
            "positions only grow: client {client_id} had {}, now {position}",
            window.last_position
        );
        self.idle_order.remove(&(window.last_position, client_id));
        window.last_position = position;
        window.applied.insert(sequence, position);
        while window.applied.len() > self.limits.window_max {
            let (oldest, _) = window
                .applied
                .pop_first()
                .expect("the window is over its bound");
            window.floor = window.floor.max(oldest + 1);
        }
        self.idle_order.insert((position, client_id));
        batch.put(space, client_key(client_id), encode_window(window));
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
        let Some(window) = self.clients.get_mut(&client_id) else {
            return;
        };
        let Some(applied_position) = window.applied.get_mut(&sequence) else {
            return;
        };
        *applied_position = position;
        if position > window.last_position {
            self.idle_order.remove(&(window.last_position, client_id));
            window.last_position = position;
            self.idle_order.insert((position, client_id));
        }
        batch.put(space, client_key(client_id), encode_window(window));
    }

    fn forget(&mut self, client_id: u64, space: KeySpace, batch: &mut WriteBatch) {
        if let Some(window) = self.clients.remove(&client_id) {
            self.idle_order.remove(&(window.last_position, client_id));
            batch.delete(space, client_key(client_id));
        }
    }

    /// Adds a client read back from the store or a snapshot.
    pub(crate) fn insert_recovered(
        &mut self,
        client_id: u64,
        window: ClientWindow,
    ) -> Result<(), String> {
        if self.clients.len() >= self.limits.clients_max {
            return Err(format!(
                "more than {} clients in the dedup table",
                self.limits.clients_max
            ));
        }
        if window.applied.len() > self.limits.window_max {
            return Err(format!(
                "client {client_id} has {} sequences, more than the window of {}",
                window.applied.len(),
                self.limits.window_max
            ));
        }
        if self.clients.contains_key(&client_id) {
            return Err(format!("client {client_id} appears twice"));
        }
        self.idle_order.insert((window.last_position, client_id));
        self.clients.insert(client_id, window);
        Ok(())
    }

    /// Writes every client to `batch` (after a snapshot replaced the table).
    pub(crate) fn write_all(&self, space: KeySpace, batch: &mut WriteBatch) {
        for (&client_id, window) in &self.clients {
            batch.put(space, client_key(client_id), encode_window(window));
        }
    }
}

/// The key of a client in the region state key space.
pub fn client_key(client_id: u64) -> Vec<u8> {
    let mut key = CLIENT_KEY_PREFIX.to_vec();
    key.extend_from_slice(&client_id.to_be_bytes());
    key
}

/// The client id a key holds, if it is a client key.
pub(crate) fn decode_client_key(key: &[u8]) -> Option<u64> {
    let id = key.strip_prefix(CLIENT_KEY_PREFIX)?;
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

/// Encodes a window: floor, last position, count, then (sequence, position) pairs.
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
    reader: &mut crate::bytes::Reader<'_>,
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

/// Decodes a stored window value, naming the key on error.
pub(crate) fn decode_stored_window(
    space: KeySpace,
    key: &[u8],
    value: &[u8],
) -> Result<ClientWindow, StoreError> {
    let mut reader = crate::bytes::Reader::new(value);
    let window = decode_window(&mut reader, DEDUP_WINDOW_MAX)
        .and_then(|window| reader.finish().map(|()| window))
        .map_err(|reason| crate::bytes::corrupt(space, key, reason))?;
    Ok(window)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            decode_stored_window(SPACE, &client_key(9), &bytes).unwrap(),
            window
        );
        for length in 0..bytes.len() {
            assert!(decode_stored_window(SPACE, &client_key(9), &bytes[..length]).is_err());
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_stored_window(SPACE, &client_key(9), &trailing).is_err());
        assert_eq!(decode_client_key(&client_key(u64::MAX)), Some(u64::MAX));
        assert_eq!(decode_client_key(b"client/1"), None);
    }
}
