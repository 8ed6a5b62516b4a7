//! [`Lobby`]: a game lobby with seats and a capacity.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Why a lobby call was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LobbyError {
    /// Every seat is taken.
    #[error("the lobby is full ({capacity} seats)")]
    Full {
        /// The number of seats.
        capacity: u32,
    },
    /// The player has a seat already.
    #[error("{player} sits in seat {seat} already")]
    AlreadySeated {
        /// The player.
        player: String,
        /// Their seat.
        seat: u32,
    },
    /// The new capacity is below the number of seated players.
    #[error("{seated} players are seated, more than {capacity} seats")]
    TooManySeated {
        /// Players seated now.
        seated: u32,
        /// The capacity asked for.
        capacity: u32,
    },
}

/// Players seated in a game lobby: seat numbers from 0, at most `capacity` players.
#[dsss::shared_object]
#[derive(Default, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lobby {
    seats: BTreeMap<String, u32>,
    capacity: u32,
}

#[dsss::methods]
impl Lobby {
    /// Sets the number of seats; it cannot drop below the players seated.
    #[mutate(id = 1)]
    pub fn set_capacity(&mut self, capacity: u32) -> Result<(), LobbyError> {
        let seated = self.seated();
        if seated > capacity {
            return Err(LobbyError::TooManySeated { seated, capacity });
        }
        self.capacity = capacity;
        Ok(())
    }

    /// Seats `player` in the lowest free seat and returns it.
    #[mutate(id = 2)]
    pub fn join(&mut self, player: String) -> Result<u32, LobbyError> {
        if let Some(seat) = self.seats.get(&player) {
            return Err(LobbyError::AlreadySeated {
                player,
                seat: *seat,
            });
        }
        if self.seated() >= self.capacity {
            return Err(LobbyError::Full {
                capacity: self.capacity,
            });
        }
        let taken: std::collections::BTreeSet<u32> = self.seats.values().copied().collect();
        let seat = (0..self.capacity)
            .find(|seat| !taken.contains(seat))
            .expect("fewer players than seats leaves a seat free");
        self.seats.insert(player, seat);
        Ok(seat)
    }

    /// Frees `player`'s seat; returns whether they had one.
    #[mutate(id = 3, codec = "json")]
    pub fn leave(&mut self, player: String) -> bool {
        self.seats.remove(&player).is_some()
    }

    /// The number of seats.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Seats not taken.
    pub fn free_seats(&self) -> u32 {
        self.capacity - self.seated()
    }

    /// `player`'s seat.
    pub fn seat_of(&self, player: &str) -> Option<u32> {
        self.seats.get(player).copied()
    }

    fn seated(&self) -> u32 {
        u32::try_from(self.seats.len()).unwrap_or(u32::MAX)
    }
}
