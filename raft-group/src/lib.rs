//! Raft plumbing shared by both DSSS tiers (docs/design.md section 4): the regional raft groups and
//! the global coordinator are its two users, and neither depends on the other.
//!
//! - [`RaftGroup`] wraps a raft-rs `RawNode` and a [`StateMachine`], and has ONE
//!   [`RaftGroup::handle_ready`] whose documented order both drivers (simulator and tokio)
//!   follow through a [`ReadyIo`].
//! - [`RaftStorage`] is the raft log in memory, mirrored to a [`DurableStore`] and rebuilt from
//!   it at start.
//! - [`encode_message`] and [`decode_message`] put raft messages on the wire; decoding
//!   untrusted bytes never panics.
//! - [`message_check`] refuses, before raft-rs sees it, every message whose fields would make
//!   raft-rs stop the node ([`StepError::Unsafe`]): a node never panics on untrusted bytes.
//! - [`MemoryStore`] is an in-memory [`DurableStore`] with crash semantics, for tests.
//! - Behind feature `driver`, `node_loop` is the one production node loop both tiers run on
//!   (a thread per node, its bounded event channel, ticks, one ready round per iteration),
//!   and `transport` the gRPC peer transport.
//!
//! Everything else here is sans-IO: no clock (time is the driver's ticks), no thread-local
//! randomness (election timeouts come from a seed), no files or sockets.
//!
//! # Example: a one-member group applies a proposal
//!
//! ```
//! use dsss_raft_group::{
//!     Applied, DurableStore, MemoryStore, RaftGroup, RaftGroupConfig, SnapshotError,
//!     StateMachine, StoreError, StoreIo, WriteBatch,
//! };
//!
//! /// Counts the bytes of every applied entry (kept in memory only, for brevity).
//! #[derive(Default)]
//! struct ByteCounter(u64);
//!
//! impl StateMachine for ByteCounter {
//!     type Output = u64;
//!     fn apply(
//!         &mut self,
//!         _index: u64,
//!         data: &[u8],
//!         _store: &dyn DurableStore,
//!         _batch: &mut WriteBatch,
//!     ) -> Result<u64, StoreError> {
//!         self.0 += data.len() as u64;
//!         Ok(self.0)
//!     }
//!     fn snapshot(&self, _store: &dyn DurableStore) -> Result<Vec<u8>, StoreError> {
//!         Ok(self.0.to_be_bytes().to_vec())
//!     }
//!     fn validate_snapshot(&self, data: &[u8]) -> Result<(), SnapshotError> {
//!         <[u8; 8]>::try_from(data).map(|_| ()).map_err(|_| SnapshotError::new("not 8 bytes"))
//!     }
//!     fn restore(&mut self, data: &[u8], _batch: &mut WriteBatch) -> Result<(), SnapshotError> {
//!         self.validate_snapshot(data)?;
//!         self.0 = u64::from_be_bytes(data.try_into().unwrap());
//!         Ok(())
//!     }
//!     fn recover(&mut self, _store: &dyn DurableStore) -> Result<(), StoreError> {
//!         Ok(())
//!     }
//! }
//!
//! let mut store = MemoryStore::new();
//! let config = RaftGroupConfig::new(1, vec![1]);
//! let mut group = RaftGroup::open(config, ByteCounter::default(), &mut store)?;
//! group.campaign()?;
//! let mut io = StoreIo::new(&mut store);
//! group.handle_ready(&mut io)?;
//! group.propose(b"hello".to_vec())?;
//! let applied = group.handle_ready(&mut io)?;
//! assert!(applied.contains(&Applied::Entry { index: 3, output: 5 }));
//! assert_eq!(group.state_machine().0, 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod bytes;
pub mod codec;
pub mod election;
pub mod group;
pub mod memory_store;
pub mod message_check;
#[cfg(feature = "driver")]
pub mod node_loop;
pub mod peer_clocks;
#[cfg(feature = "driver")]
mod raft_log;
pub mod storage;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "driver")]
pub mod transport;

pub use codec::{DecodeError, RAFT_MESSAGE_BYTES_MAX, decode_message, encode_message};
pub use election::ElectionTimeoutRng;
pub use group::{
    Applied, BOOTSTRAP_INDEX, BOOTSTRAP_TERM, ConfigError, FollowerProgress, GroupCounters,
    LogRetention, OpenError, ProposeError, READ_STATES_PENDING_MAX, RaftGroup, RaftGroupConfig,
    ReadyError, ReadyIo, Role, SnapshotError, StateMachine, StepError, StoreIo,
};
pub use memory_store::MemoryStore;
pub use message_check::UnsafeMessage;
pub use peer_clocks::{ClockProbe, ClockSample, ClockVerdict, PeerClocks};
/// The raft-rs crate this group is built on, so users name the same message types.
pub use raft;
/// A read the leader confirmed: its context and the commit index it names.
pub use raft::ReadState;
pub use storage::{RaftStorage, RecoveredStorage};
pub use store::{
    CopiedView, DurableStore, KeyRange, KeySpace, KeyValuePairs, PINNED_VIEWS_MAX, PinnedViews,
    RAFT_LOG, RAFT_STATE, StoreError, StoreView, WriteBatch, WriteOperation,
};
