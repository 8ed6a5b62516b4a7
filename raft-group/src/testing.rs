//! An in-memory network of sans-IO raft nodes, routed by hand, for tests (feature `testing`).
//!
//! The tests of the raft group, the region node and the coordinator each drive several
//! members of one raft group without threads, sockets or a clock: a test ticks every member,
//! runs each one's ready rounds, and delivers the raft messages they send one at a time until
//! none is left. [`Network`] is that loop once, over any member type that implements
//! [`TestNode`], with filters that drop messages between members (cut links, isolated
//! members, ignored message types) so that a test can partition the group and heal it.
//!
//! Delivery is deterministic: messages travel in the order they were sent, and a filter drops
//! every message it matches. Every message crosses the network as bytes, encoded with
//! [`encode_message`], as in production.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use raft::eraftpb::{Message, MessageType};

use crate::codec::encode_message;

/// How many deliveries [`Network::settle`] makes at most before it decides the members never
/// fall quiet.
pub const SETTLE_DELIVERIES_MAX: usize = 100_000;

/// A member of a [`Network`]: a node that takes raft messages and emits raft messages.
///
/// A member that crashed stays in the network (its store survives for a restart); it then
/// takes nothing, sends nothing, and is not the leader.
pub trait TestNode {
    /// Takes one raft message off the network, as bytes. Returns whether the member was
    /// running to take it (a crashed member drops it); an error of the node is the node's to
    /// count, as a production driver drops a message it cannot use.
    fn receive(&mut self, message: &[u8]) -> bool;

    /// Runs the member's ready rounds at `now_us` and returns the raft messages they send.
    fn ready(&mut self, now_us: u64) -> Vec<Message>;

    /// Advances the member's logical clock by one tick at `now_us`.
    fn tick(&mut self, now_us: u64);

    /// Whether the member leads its group.
    fn is_leader(&self) -> bool;
}

/// Members keyed by id, the messages in flight between them, the filters that drop some of
/// them, and the time of the last tick.
#[derive(Debug)]
pub struct Network<N> {
    nodes: BTreeMap<u64, N>,
    in_flight: VecDeque<Message>,
    /// Members cut off from every other: their messages are dropped both ways.
    isolated: BTreeSet<u64>,
    /// Directed links `(from, to)` whose messages are dropped.
    dropped: BTreeSet<(u64, u64)>,
    /// Message types dropped on every link.
    ignored: Vec<MessageType>,
    now_us: u64,
    tick_us: u64,
    delivered: u64,
}

impl<N: TestNode> Network<N> {
    /// An empty network whose clock starts at `start_us` and advances `tick_us` per tick.
    pub fn new(start_us: u64, tick_us: u64) -> Self {
        Network {
            nodes: BTreeMap::new(),
            in_flight: VecDeque::new(),
            isolated: BTreeSet::new(),
            dropped: BTreeSet::new(),
            ignored: Vec::new(),
            now_us: start_us,
            tick_us,
            delivered: 0,
        }
    }

    /// Adds (or replaces) the member `id`.
    pub fn insert(&mut self, id: u64, node: N) {
        self.nodes.insert(id, node);
    }

    /// The member `id`.
    ///
    /// # Panics
    ///
    /// If there is no member `id`.
    pub fn node(&self, id: u64) -> &N {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no member {id}"))
    }

    /// The member `id`, to change.
    ///
    /// # Panics
    ///
    /// If there is no member `id`.
    pub fn node_mut(&mut self, id: u64) -> &mut N {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no member {id}"))
    }

    /// Every member, by id.
    pub fn nodes(&self) -> impl Iterator<Item = (u64, &N)> {
        self.nodes.iter().map(|(&id, node)| (id, node))
    }

    /// Every member, by id, to change.
    pub fn nodes_mut(&mut self) -> impl Iterator<Item = (u64, &mut N)> {
        self.nodes.iter_mut().map(|(&id, node)| (id, node))
    }

    /// The ids of the members, in order.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The time of the last tick.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// How many messages reached a running member.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Cuts `id` off from every other member, both ways, until [`Network::rejoin`] or
    /// [`Network::recover`].
    pub fn isolate(&mut self, id: u64) {
        self.isolated.insert(id);
    }

    /// Ends the isolation of `id` (links cut with [`Network::cut`] stay cut).
    pub fn rejoin(&mut self, id: u64) {
        self.isolated.remove(&id);
    }

    /// Whether `id` is isolated.
    pub fn is_isolated(&self, id: u64) -> bool {
        self.isolated.contains(&id)
    }

    /// Drops every message from `from` to `to` (one direction).
    pub fn drop_link(&mut self, from: u64, to: u64) {
        self.dropped.insert((from, to));
    }

    /// Cuts the link between `one` and `other`, both ways.
    pub fn cut(&mut self, one: u64, other: u64) {
        self.drop_link(one, other);
        self.drop_link(other, one);
    }

    /// Drops every message of type `message_type`.
    pub fn ignore(&mut self, message_type: MessageType) {
        if !self.ignored.contains(&message_type) {
            self.ignored.push(message_type);
        }
    }

    /// Lifts every filter: isolations, cut links and ignored types.
    pub fn recover(&mut self) {
        self.isolated.clear();
        self.dropped.clear();
        self.ignored.clear();
    }

    /// Whether a filter drops `message`.
    fn filtered(&self, message: &Message) -> bool {
        self.isolated.contains(&message.from)
            || self.isolated.contains(&message.to)
            || self.dropped.contains(&(message.from, message.to))
            || self.ignored.contains(&message.get_msg_type())
    }

    /// Runs the ready rounds of the member `id` and puts what it sends in flight.
    pub fn ready(&mut self, id: u64) {
        let now_us = self.now_us;
        let sent = self.node_mut(id).ready(now_us);
        self.in_flight.extend(sent);
    }

    /// Runs every member's ready rounds and delivers one message at a time, until no message
    /// is in flight. A message that a filter drops, or that is addressed to no member, is
    /// lost.
    ///
    /// # Panics
    ///
    /// If messages are still in flight after [`SETTLE_DELIVERIES_MAX`] deliveries.
    pub fn settle(&mut self) {
        for _ in 0..SETTLE_DELIVERIES_MAX {
            for id in self.ids() {
                self.ready(id);
            }
            let Some(message) = self.in_flight.pop_front() else {
                return;
            };
            if self.filtered(&message) {
                continue;
            }
            let Some(node) = self.nodes.get_mut(&message.to) else {
                continue;
            };
            if node.receive(&encode_message(&message)) {
                self.delivered += 1;
            }
        }
        panic!("the network did not settle");
    }

    /// Advances the clock `ticks` times, ticking every member and settling after each.
    pub fn tick(&mut self, ticks: usize) {
        for _ in 0..ticks {
            self.now_us += self.tick_us;
            let now_us = self.now_us;
            for node in self.nodes.values_mut() {
                node.tick(now_us);
            }
            self.settle();
        }
    }

    /// The member that leads and is not isolated, if any.
    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .find_map(|(&id, node)| (node.is_leader() && !self.is_isolated(id)).then_some(id))
    }

    /// Ticks five at a time until a leader is elected, then `ticks_after` more so that every
    /// member learns it; returns the leader.
    ///
    /// # Panics
    ///
    /// If no leader is elected within 500 ticks.
    pub fn elect(&mut self, ticks_after: usize) -> u64 {
        for _ in 0..100 {
            self.tick(5);
            if let Some(leader) = self.leader() {
                self.tick(ticks_after);
                return leader;
            }
        }
        panic!("no leader was elected");
    }
}
