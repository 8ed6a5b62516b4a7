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
    /// What the members share outside their raft group, handed to every ready round: a fake
    /// peer of another tier that they all talk to, say. `()` when there is none.
    type Shared;

    /// Takes one raft message off the network, as bytes. Returns whether the member was
    /// running to take it (a crashed member drops it); an error of the node is the node's to
    /// count, as a production driver drops a message it cannot use.
    fn receive(&mut self, message: &[u8]) -> bool;

    /// Runs the member's ready rounds at `now_us` and returns the raft messages they send.
    /// What the member sends outside its group goes to `shared`, at once.
    fn ready(&mut self, now_us: u64, shared: &mut Self::Shared) -> Vec<Message>;

    /// Advances the member's logical clock by one tick at `now_us`.
    fn tick(&mut self, now_us: u64);

    /// Whether the member leads its group.
    fn is_leader(&self) -> bool;
}

/// Members keyed by id, the messages in flight between them, the filters that drop some of
/// them, what the members share, and the time of the last tick.
pub struct Network<N: TestNode> {
    nodes: BTreeMap<u64, N>,
    shared: N::Shared,
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
    pub fn new(start_us: u64, tick_us: u64) -> Self
    where
        N::Shared: Default,
    {
        Self::with_shared(start_us, tick_us, N::Shared::default())
    }

    /// An empty network whose members share `shared`.
    pub fn with_shared(start_us: u64, tick_us: u64, shared: N::Shared) -> Self {
        Network {
            nodes: BTreeMap::new(),
            shared,
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

    /// What the members share.
    pub fn shared(&self) -> &N::Shared {
        &self.shared
    }

    /// What the members share, to change.
    pub fn shared_mut(&mut self) -> &mut N::Shared {
        &mut self.shared
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
        let node = self
            .nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no member {id}"));
        let sent = node.ready(now_us, &mut self.shared);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A member that sends what a test queues and keeps what it receives.
    #[derive(Default)]
    struct Probe {
        running: bool,
        leads: bool,
        to_send: Vec<Message>,
        received: Vec<(u64, MessageType)>,
        ticks: Vec<u64>,
    }

    impl TestNode for Probe {
        type Shared = u64;

        fn receive(&mut self, message: &[u8]) -> bool {
            if !self.running {
                return false;
            }
            let message = crate::codec::decode_message(message).unwrap();
            self.received.push((message.from, message.get_msg_type()));
            true
        }

        fn ready(&mut self, _now_us: u64, rounds: &mut u64) -> Vec<Message> {
            *rounds += 1;
            std::mem::take(&mut self.to_send)
        }

        fn tick(&mut self, now_us: u64) {
            self.ticks.push(now_us);
        }

        fn is_leader(&self) -> bool {
            self.leads
        }
    }

    fn message(from: u64, to: u64, message_type: MessageType) -> Message {
        let mut message = Message::default();
        message.set_msg_type(message_type);
        message.from = from;
        message.to = to;
        message
    }

    fn network() -> Network<Probe> {
        let mut network = Network::new(1_000, 10);
        for id in 1..=3 {
            network.insert(
                id,
                Probe {
                    running: true,
                    ..Probe::default()
                },
            );
        }
        network
    }

    /// Sends a heartbeat and an append from 1 to each of 2 and 3; returns what each got.
    fn broadcast(network: &mut Network<Probe>) -> [Vec<(u64, MessageType)>; 2] {
        for to in [2, 3] {
            let sent = [
                message(1, to, MessageType::MsgHeartbeat),
                message(1, to, MessageType::MsgAppend),
            ];
            network.node_mut(1).to_send.extend(sent);
        }
        network.settle();
        [2, 3].map(|id| std::mem::take(&mut network.node_mut(id).received))
    }

    #[test]
    fn filters_drop_what_they_match_until_recovered() {
        use MessageType::{MsgAppend, MsgHeartbeat};
        let mut network = network();
        let all = vec![(1, MsgHeartbeat), (1, MsgAppend)];
        assert_eq!(broadcast(&mut network), [all.clone(), all.clone()]);
        assert_eq!(network.delivered(), 4);

        network.cut(2, 1);
        assert_eq!(broadcast(&mut network), [vec![], all.clone()]);
        network.recover();
        network.drop_link(1, 3);
        assert_eq!(broadcast(&mut network), [all.clone(), vec![]]);
        network.recover();
        network.ignore(MsgHeartbeat);
        let appends = vec![(1, MsgAppend)];
        assert_eq!(broadcast(&mut network), [appends.clone(), appends]);
        network.recover();

        network.isolate(3);
        assert!(network.is_isolated(3));
        assert_eq!(broadcast(&mut network), [all.clone(), vec![]]);
        network.rejoin(3);
        assert_eq!(broadcast(&mut network), [all.clone(), all.clone()]);

        // A member that is down takes nothing and is not counted as a delivery.
        network.node_mut(2).running = false;
        let delivered = network.delivered();
        assert_eq!(broadcast(&mut network), [vec![], all]);
        assert_eq!(network.delivered(), delivered + 2);
        assert!(*network.shared() > 0, "every settle ran ready rounds");
    }

    #[test]
    fn the_leader_is_one_that_is_not_isolated_and_ticks_advance_the_clock() {
        let mut network = network();
        assert_eq!(network.leader(), None);
        network.node_mut(2).leads = true;
        assert_eq!(network.elect(2), 2);
        // Five ticks to find the leader, two more after.
        assert_eq!(network.now_us(), 1_000 + 7 * 10);
        assert_eq!(network.node(1).ticks.len(), 7);
        network.isolate(2);
        assert_eq!(network.leader(), None);
        network.node_mut(3).leads = true;
        assert_eq!(network.leader(), Some(3));
        assert_eq!(network.ids(), vec![1, 2, 3]);
        assert_eq!(network.nodes().count(), 3);
    }
}
