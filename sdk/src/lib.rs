//! DSSS gives every instance of a globally deployed application one shared, persistent object,
//! as if the whole application were a single process with persistent memory
//! (docs/design.md section 1).
//!
//! This is the crate applications depend on. Write an ordinary type, mark the methods that
//! change it, and open it through a [`Client`]:
//!
//! ```no_run
//! use std::collections::BTreeMap;
//!
//! #[dsss::shared_object]
//! #[derive(Default, serde::Serialize, serde::Deserialize)]
//! pub struct Lobby {
//!     seats: BTreeMap<String, u32>,
//!     capacity: u32,
//! }
//!
//! #[dsss::methods]
//! impl Lobby {
//!     /// Seats a player; the seat number, or None when the lobby is full.
//!     #[mutate(id = 1)] // a stable id: part of the log format
//!     pub fn join(&mut self, player: String) -> Option<u32> {
//!         if self.seats.len() as u32 >= self.capacity {
//!             return None;
//!         }
//!         let seat = self.seats.len() as u32;
//!         self.seats.insert(player, seat);
//!         Some(seat)
//!     }
//!
//!     /// Sets the number of seats.
//!     #[mutate(id = 2, codec = "json")] // a per-method argument codec
//!     pub fn set_capacity(&mut self, capacity: u32) {
//!         self.capacity = capacity;
//!     }
//!
//!     /// A getter: a local read, never leaves the process.
//!     pub fn free_seats(&self) -> u32 {
//!         self.capacity - self.seats.len() as u32
//!     }
//! }
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = dsss::Config::from_topology("topology.toml", "eu-west")?;
//! let dsss = dsss::Client::connect(config).await?;
//! let lobby = dsss.open::<Lobby>("lobby/main").await?; // local replica: checkpoint + log
//! lobby.set_capacity(8).await?; // ordered in every region, applied here, then returns
//! let seat = lobby.join("ann".into()).await?; // the method's own result
//! let free = lobby.read(|lobby| lobby.free_seats()); // local, sequentially consistent
//! lobby.sync().await?; // barrier: the next read is linearizable
//! # let _ = (seat, free);
//! # Ok(())
//! # }
//! ```
//!
//! What runs inside every copy is the [`replica::Replica`]: it applies the object's records in
//! log order, and copies fed the same log agree byte for byte. It needs no cluster, so this
//! example runs as it is:
//!
//! ```
//! # #[dsss::shared_object]
//! # #[derive(Default, serde::Serialize, serde::Deserialize)]
//! # pub struct Counter { value: i64 }
//! # #[dsss::methods]
//! # impl Counter {
//! #     #[mutate(id = 1)]
//! #     pub fn add(&mut self, amount: i64) -> i64 { self.value += amount; self.value }
//! #     pub fn value(&self) -> i64 { self.value }
//! # }
//! use dsss::replica::{RecordRef, Replica, ReplicaConfig};
//! use dsss::{Codec, Postcard};
//!
//! let mut here = Replica::<Counter>::new("counter", ReplicaConfig::default());
//! let mut there = Replica::<Counter>::new("counter", ReplicaConfig::default());
//! for (position, amount) in [(1, 5i64), (2, -2), (3, 10)] {
//!     let arguments = Postcard::encode(&(amount,))?;
//!     let record = RecordRef { client_id: 1, request_sequence: position, method_id: 1, arguments: &arguments };
//!     let applied = here.handle_record(position, record)?;
//!     there.handle_record(position, record)?;
//!     println!("add({amount}) -> {}", Postcard::decode::<i64>(&applied.outcome?)?);
//! }
//! assert_eq!(here.object().value(), 13);
//! assert_eq!(here.state_hash(), there.state_hash());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

#[cfg(feature = "client")]
pub mod client;
pub mod codec;
pub mod error;
pub mod object;
#[cfg(feature = "client")]
pub mod propose_batcher;
#[cfg(feature = "client")]
pub mod region_client;
pub mod replica;
pub mod schema;
pub mod session;

#[cfg(feature = "client")]
pub use client::{Client, Config, Object};
pub use codec::{Codec, CodecError, Json, Postcard};
pub use dsss_macros::{methods, shared_object};
pub use error::CallError;
pub use object::{MethodError, SharedObject};
pub use schema::{MethodSchema, ObjectSchema};
#[doc(hidden)]
pub use serde;
#[cfg(not(feature = "client"))]
pub use without_client::Object;

/// Without the `client` feature no object can be opened (the sans-IO [`session`] and
/// [`replica`] remain). The handle type stands in so that shared-object types compile the same
/// in both builds.
#[cfg(not(feature = "client"))]
mod without_client {
    use std::marker::PhantomData;

    use crate::error::CallError;

    /// An opened object; it cannot exist without the `client` feature.
    pub struct Object<T> {
        never: std::convert::Infallible,
        object_type: PhantomData<fn() -> T>,
    }

    impl<T> Clone for Object<T> {
        fn clone(&self) -> Self {
            match self.never {}
        }
    }

    impl<T> Object<T> {
        /// Never called: no value of this type exists.
        pub async fn call_raw(
            &self,
            _method_id: u32,
            _arguments: Vec<u8>,
        ) -> Result<Vec<u8>, CallError> {
            let _ = &self.object_type;
            match self.never {}
        }
    }
}
