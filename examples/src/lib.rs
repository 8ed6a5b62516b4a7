//! Shared objects that show DSSS at work. Each is an ordinary Rust type whose mutating methods
//! carry `#[mutate(id = N)]`; the SDK's macros make it a shared object that every instance of an
//! application, in every region, holds a copy of.
//!
//! - [`Counter`]: the smallest shared object.
//! - [`Bank`]: one global object holding every account; transfers between accounts from every
//!   region, and money is never created or destroyed.
//! - [`Lobby`]: a game lobby with seats and a capacity.
//! - [`Leaderboard`]: a regional object, ordered by its own region alone, beside the global ones.
//! - [`Journal`]: an append-only journal that keeps a summary of its entries; the load of
//!   `dsss bench soak`.
//!
//! Each also runs against a cluster (start one with `cargo run --bin dsss -- up` in another
//! terminal): `cargo run -p dsss-examples --bin counter -- --topology dsss-up/local.toml --region
//! local-b`, and likewise `--bin bank`, `--bin lobby` and `--bin leaderboard`.
#![deny(missing_docs)]

pub mod bank;
pub mod connect;
pub mod counter;
pub mod journal;
pub mod leaderboard;
pub mod lobby;
pub mod register;

pub use bank::{Bank, BankError, BankHandle};
pub use counter::{Counter, CounterHandle};
pub use journal::{Journal, JournalHandle};
pub use leaderboard::{Leaderboard, LeaderboardHandle};
pub use lobby::{Lobby, LobbyError, LobbyHandle};
pub use register::{Register, RegisterHandle};
