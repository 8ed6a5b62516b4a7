//! The DSSS deterministic simulation kernel.
//!
//! Every DSSS state machine (region nodes, the global coordinator, SDK replicas) is sans-IO: it
//! takes inputs and returns outputs and reads no clock. This crate runs such state machines as
//! nodes of a simulated world on one thread, with a virtual clock, one seeded random number
//! generator, an event queue, a wide-area network built from a latency matrix (with jitter,
//! loss, duplication, reordering and partitions), per-node clocks with skew and drift, and an
//! in-memory disk per node that loses its unsynced writes when the node crashes.
//!
//! A seed reproduces a whole run: every event the kernel processes is written to a trace that
//! is hashed with SHA-256, so two runs with one seed must produce one hash. Seeded tests go
//! through [`run_seeds`], which prints the seed of a failure and how to replay it.
//!
//! The pieces, one module each:
//! - [`time`]: virtual time, [`SimTime`].
//! - [`random`]: the one generator, [`SimRng`] (xoshiro256**).
//! - [`queue`]: the bounded [`EventQueue`], ordered by time then insertion.
//! - [`network`]: [`NetworkConfig`] (plain data: regions, nodes, link matrix), faults and
//!   partitions.
//! - [`clock`]: [`NodeClock`], the physical clock a node reads.
//! - [`disk`]: [`SimDisk`], the crash-aware key-value store.
//! - [`process`]: the [`Process`] trait and its [`Context`].
//! - [`trace`]: the hashed [`Trace`].
//! - [`simulation`]: [`Simulation`], the run itself.
//! - [`seeds`]: [`run_seeds`] and determinism checks.
//! - [`topology_network`]: [`NetworkConfig::from_topology`], the network of a topology file.
//! - [`workloads`]: processes and harnesses that run on a topology, such as the clock probe
//!   behind `dsss sim probe`.
//!
//! # Example: ping-pong between two regions
//!
//! ```
//! use std::time::Duration;
//!
//! use dsss_simulations::{
//!     Context, Link, NetworkConfig, NodeId, Process, SimDisk, SimTime, Simulation, TimerId,
//! };
//!
//! #[derive(Clone, Debug)]
//! enum Message {
//!     Ping(u32),
//!     Pong(u32),
//! }
//!
//! struct Player {
//!     peer: NodeId,
//!     pongs_received: u32,
//! }
//!
//! impl Process for Player {
//!     type Message = Message;
//!
//!     fn handle_start(&mut self, cx: &mut Context<'_, Message>) {
//!         if cx.node() == 1 {
//!             cx.send(self.peer, Message::Ping(0));
//!         }
//!     }
//!
//!     fn handle_message(&mut self, cx: &mut Context<'_, Message>, from: NodeId, message: Message) {
//!         match message {
//!             Message::Ping(round) => cx.send(from, Message::Pong(round)),
//!             Message::Pong(round) => {
//!                 self.pongs_received += 1;
//!                 if round < 9 {
//!                     cx.send(from, Message::Ping(round + 1));
//!                 }
//!             }
//!         }
//!     }
//!
//!     fn handle_timer(&mut self, _cx: &mut Context<'_, Message>, _timer: TimerId) {}
//! }
//!
//! let local = Link::new(Duration::from_micros(200), Duration::from_micros(50));
//! let mut config = NetworkConfig::new();
//! let eu = config.add_region("eu-west", local);
//! let us = config.add_region("us-east", local);
//! config.set_link_symmetric(eu, us, Link::new(Duration::from_millis(40), Duration::from_millis(2)));
//! config.add_node(1, eu);
//! config.add_node(2, us);
//!
//! fn player(node: NodeId, _disk: &SimDisk) -> Player {
//!     Player { peer: if node == 1 { 2 } else { 1 }, pongs_received: 0 }
//! }
//!
//! let mut simulation = Simulation::new(42, config.clone(), player)?;
//! simulation.run_until_quiet()?;
//!
//! assert_eq!(simulation.process(1).unwrap().pongs_received, 10);
//! // Twenty one-way trips, each between 38 and 42 ms.
//! assert!(simulation.now() >= SimTime::from_millis(20 * 38));
//! assert!(simulation.now() <= SimTime::from_millis(20 * 42));
//!
//! // The same seed replays the same run, event for event.
//! let mut replay = Simulation::new(42, config, player)?;
//! replay.run_until_quiet()?;
//! assert_eq!(replay.trace_hash(), simulation.trace_hash());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod clock;
pub mod costs;
pub mod disk;
pub mod network;
pub mod process;
pub mod queue;
pub mod random;
pub mod scenario;
pub mod seeds;
pub mod simulation;
pub mod time;
pub mod topology_network;
pub mod trace;
pub mod workloads;

pub use clock::{CLOCK_DRIFT_PPM_MAX, CLOCK_SKEW_US_MAX, NodeClock, WALL_CLOCK_START_US};
pub use costs::{NODE_COST_MAX, NodeCosts, WorkKind};
pub use disk::{DiskError, DiskWrite, SimDisk};
pub use network::{
    EXTERNAL_NODE_ID, Link, LinkOverride, Network, NetworkConfig, NetworkConfigError,
    NetworkFaults, NodeConfig, NodeId, RegionId,
};
pub use process::{Context, Process, TimerId};
pub use queue::{EVENT_QUEUE_LEN_MAX, EventQueue, EventQueueFull};
pub use random::SimRng;
pub use seeds::{SeedPlan, assert_deterministic, run_seed_plan, run_seeds};
pub use simulation::{
    DropReason, ExternalMessage, MessageStatistics, NotQuiet, RunWork, Simulation,
};
pub use time::SimTime;
pub use trace::{Trace, TraceDifference};
