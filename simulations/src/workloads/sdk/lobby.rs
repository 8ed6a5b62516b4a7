//! The lobby workload: one global `dsss_examples::Lobby`; the setup sets its capacity, then
//! instances in every region make a fixed set of players join and leave at random (many joins
//! find the lobby full or the player seated, many leaves find no seat, and the lobby refuses
//! them by its own result) and read the seats. Whatever the order, every read shows at most
//! `capacity` players seated, in distinct seats below the capacity, and as many free seats as
//! the capacity leaves.
//!
//! The lobby's methods use two codecs: `set_capacity` and `join` take their arguments as one
//! postcard-encoded tuple, `leave` as one JSON-encoded tuple (its `codec = "json"`); the ids
//! and encodings are part of the log format.

use std::collections::BTreeSet;

use dsss::{Codec, Json, MethodError, Postcard};
use dsss_examples::{Lobby, LobbyError};

use super::ObjectWorkload;
use super::history::CallSpec;
use crate::random::SimRng;

/// The object name of the lobby in lobby runs.
pub const LOBBY_OBJECT_ID: &str = "sim/lobby";

/// The method id of `set_capacity(capacity: u32) -> Result<(), LobbyError>`.
pub const SET_CAPACITY_METHOD_ID: u32 = 1;

/// The method id of `join(player: String) -> Result<u32, LobbyError>`.
pub const JOIN_METHOD_ID: u32 = 2;

/// The method id of `leave(player: String) -> bool`, JSON-encoded.
pub const LEAVE_METHOD_ID: u32 = 3;

/// The seats of a standard lobby run.
pub const LOBBY_CAPACITY: u32 = 4;

/// The players of a standard lobby run: more than the seats, so that the lobby fills.
pub const LOBBY_PLAYER_COUNT: usize = 6;

/// The most seats a lobby workload sets.
pub const CAPACITY_MAX: u32 = 1_000;

/// The most players a lobby workload moves.
pub const PLAYERS_MAX: usize = 1_000;

/// The share of random calls that are joins; the others are leaves.
pub const JOIN_SHARE: f64 = 0.6;

/// What a lobby read asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LobbyRead {
    /// Every player's seat and the free seats, read at once.
    Seats,
    /// `seat_of(player)`.
    SeatOf(String),
}

/// What a lobby read returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LobbyValue {
    /// The seat of every player of the workload, in the workload's order, and `free_seats()`.
    Seats {
        /// Each player's seat, if seated.
        seats: Vec<Option<u32>>,
        /// `free_seats()`.
        free_seats: u32,
    },
    /// The player's seat, if seated.
    Seat(Option<u32>),
}

/// The lobby workload. See the module documentation.
#[derive(Clone, Debug)]
pub struct LobbyWorkload {
    object_id: String,
    capacity: u32,
    players: Vec<String>,
}

impl LobbyWorkload {
    /// A lobby named `object_id` whose setup sets `capacity` seats (1..=[`CAPACITY_MAX`]) and
    /// whose calls make `player_count` players (1..=[`PLAYERS_MAX`]) join and leave.
    pub fn new(object_id: &str, capacity: u32, player_count: usize) -> Result<Self, String> {
        if !(1..=CAPACITY_MAX).contains(&capacity) {
            return Err(format!("capacity {capacity} is outside 1..={CAPACITY_MAX}"));
        }
        if !(1..=PLAYERS_MAX).contains(&player_count) {
            return Err(format!(
                "player_count {player_count} is outside 1..={PLAYERS_MAX}"
            ));
        }
        Ok(LobbyWorkload {
            object_id: object_id.to_string(),
            capacity,
            players: player_names(player_count),
        })
    }

    /// The players the calls move.
    pub fn players(&self) -> &[String] {
        &self.players
    }

    /// The seats the setup sets.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The call `set_capacity(capacity)`.
    pub fn set_capacity(capacity: u32) -> CallSpec {
        CallSpec {
            method_id: SET_CAPACITY_METHOD_ID,
            arguments: Postcard::encode(&(capacity,)).expect("an integer always encodes"),
        }
    }

    /// The call `join(player)`.
    pub fn join(player: &str) -> CallSpec {
        CallSpec {
            method_id: JOIN_METHOD_ID,
            arguments: Postcard::encode(&(player,)).expect("a string always encodes"),
        }
    }

    /// The call `leave(player)`, JSON-encoded as the method's codec wants.
    pub fn leave(player: &str) -> CallSpec {
        CallSpec {
            method_id: LEAVE_METHOD_ID,
            arguments: Json::encode(&(player,)).expect("a string always encodes"),
        }
    }

    /// Why a `Seats` value breaks the lobby's invariant, if it does.
    fn check_seats(&self, seats: &[Option<u32>], free_seats: u32) -> Result<(), String> {
        if seats.len() != self.players.len() {
            return Err(format!(
                "{} seats read for {} players",
                seats.len(),
                self.players.len()
            ));
        }
        let taken: Vec<u32> = seats.iter().flatten().copied().collect();
        let seated = taken.len() as u64;
        if seated > u64::from(self.capacity) {
            return Err(format!(
                "{seated} players seated in a lobby of {} seats",
                self.capacity
            ));
        }
        if let Some(seat) = taken.iter().find(|&&seat| seat >= self.capacity) {
            return Err(format!(
                "seat {seat} is taken in a lobby of {} seats",
                self.capacity
            ));
        }
        let distinct: BTreeSet<u32> = taken.iter().copied().collect();
        if distinct.len() != taken.len() {
            return Err(format!("two players share a seat: {taken:?}"));
        }
        if u64::from(free_seats) + seated != u64::from(self.capacity) {
            return Err(format!(
                "{free_seats} seats free with {seated} players seated in a lobby of {} seats",
                self.capacity
            ));
        }
        Ok(())
    }
}

impl ObjectWorkload for LobbyWorkload {
    type Object = Lobby;
    type Read = LobbyRead;
    type Value = LobbyValue;

    fn object_id(&self) -> &str {
        &self.object_id
    }

    fn setup_calls(&self) -> Vec<CallSpec> {
        vec![Self::set_capacity(self.capacity)]
    }

    fn is_set_up(&self, object: &Lobby) -> bool {
        // Only the workload's players ever sit, and no call but the setup changes the
        // capacity: the free seats and the seated players add up to it once the setup shows.
        let seated = self
            .players
            .iter()
            .filter(|player| object.seat_of(player).is_some())
            .count() as u64;
        u64::from(object.free_seats()) + seated == u64::from(self.capacity)
    }

    fn random_call(&self, rng: &mut SimRng) -> CallSpec {
        let player = rng
            .choose(&self.players)
            .expect("a lobby workload has players");
        if rng.chance(JOIN_SHARE) {
            Self::join(player)
        } else {
            Self::leave(player)
        }
    }

    fn random_read(&self, rng: &mut SimRng) -> LobbyRead {
        if rng.chance(0.5) {
            LobbyRead::Seats
        } else {
            let player = rng
                .choose(&self.players)
                .expect("a lobby workload has players");
            LobbyRead::SeatOf(player.clone())
        }
    }

    fn read(&self, object: &Lobby, read: &LobbyRead) -> LobbyValue {
        match read {
            LobbyRead::Seats => LobbyValue::Seats {
                seats: self
                    .players
                    .iter()
                    .map(|player| object.seat_of(player))
                    .collect(),
                free_seats: object.free_seats(),
            },
            LobbyRead::SeatOf(player) => LobbyValue::Seat(object.seat_of(player)),
        }
    }

    fn check_read(&self, read: &LobbyRead, value: &LobbyValue) -> Result<(), String> {
        match (read, value) {
            (LobbyRead::Seats, LobbyValue::Seats { seats, free_seats }) => {
                self.check_seats(seats, *free_seats)
            }
            (LobbyRead::SeatOf(player), LobbyValue::Seat(Some(seat))) if *seat >= self.capacity => {
                Err(format!(
                    "{player} sits in seat {seat} of a lobby of {} seats",
                    self.capacity
                ))
            }
            (LobbyRead::SeatOf(_), LobbyValue::Seat(_)) => Ok(()),
            (read, value) => Err(format!("{read:?} returned a {value:?}")),
        }
    }

    fn is_refusal(&self, call: &CallSpec, outcome: &Result<Vec<u8>, MethodError>) -> bool {
        let Ok(result) = outcome else {
            return false;
        };
        match call.method_id {
            SET_CAPACITY_METHOD_ID => matches!(
                Postcard::decode::<Result<(), LobbyError>>(result),
                Ok(Err(_))
            ),
            JOIN_METHOD_ID => matches!(
                Postcard::decode::<Result<u32, LobbyError>>(result),
                Ok(Err(_))
            ),
            // A leave of a player with no seat changes nothing.
            LEAVE_METHOD_ID => matches!(Json::decode::<bool>(result), Ok(false)),
            _ => false,
        }
    }
}

/// The lobby workload of a standard lobby run: [`LOBBY_CAPACITY`] seats,
/// [`LOBBY_PLAYER_COUNT`] players.
pub fn lobby_workload() -> LobbyWorkload {
    LobbyWorkload {
        object_id: LOBBY_OBJECT_ID.to_string(),
        capacity: LOBBY_CAPACITY,
        players: player_names(LOBBY_PLAYER_COUNT),
    }
}

fn player_names(count: usize) -> Vec<String> {
    (0..count).map(|index| format!("player-{index}")).collect()
}
