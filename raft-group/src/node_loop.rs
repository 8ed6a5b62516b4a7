//! The node loop of the production drivers (feature `driver`): one dedicated OS thread that
//! owns one sans-IO node and its store, shared by the region node and the coordinator replica.
//!
//! A store's fsync blocks, so a node does not live on the tokio runtime: the gRPC services
//! send it events over a bounded channel ([`EVENTS_QUEUED_MAX`]) and wait for the answers on
//! channels of their own. Each tier implements [`LoopNode`] (its event enum, its ready round,
//! and its one exhaustive `match` over its output enum); [`spawn`] runs it. One iteration of
//! the loop:
//!
//! 1. waits for an event, for the next tick that does something or for the wake-up the node
//!    asked for, whichever comes first (no wait when the node still has ready work left from
//!    the previous iteration);
//! 2. runs every tick whose time has passed, before the event: the ticks it slept through
//!    (see below), and at most [`CATCH_UP_TICKS_MAX`] to catch up after a stall; then the
//!    node's own wake-up between ticks, when it asked for one ([`LoopNode::wake_at_us`]) and
//!    its time has passed;
//! 3. takes that event and every other queued one, up to [`EVENTS_PER_ITERATION_MAX`];
//! 4. runs ONE ready round ([`LoopNode::handle_ready`]), whose [`ReadyIo`](crate::ReadyIo)
//!    syncs the store and hands raft messages to the peer transport ([`PeerIo`]);
//! 5. drains the node's outputs ([`LoopNode::route_outputs`]).
//!
//! While one sync runs, new requests queue in the channel and all of them share the next
//! sync: group commit falls out of the loop's shape.
//!
//! An idle node costs almost nothing: before it waits, the loop asks the node how many of the
//! next ticks would only count ([`LoopNode::quiet_ticks`]; a raft follower's ticks until its
//! election timeout, say) and sleeps through them, up to [`QUIET_WAIT_MAX`]. It runs them
//! when it wakes, for an event or for the first tick that acts, so the node sees the same
//! ticks in the same order relative to its events as if it had been woken for each: only
//! the wall-clock moment of the counting moves.
//!
//! Time is the loop's: it reads the system clock and hands the reading to the node with every
//! event, tick and drain, so the nodes never read a clock.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dsss_wire::{PhysicalClock, SystemClock};
use raft::eraftpb::Message;
use tokio::sync::oneshot;

use crate::transport::{PeerSenders, RaftDelivery};
use crate::{DurableStore, ReadyIo, StoreError, WriteBatch};

/// The most events waiting in a node's channel. A sender that finds it full gets an error at
/// once (a proposal is refused as overloaded, a raft message is dropped and retransmitted by
/// raft, a region resends its batch), so the node's memory stays bounded whatever the clients
/// do.
pub const EVENTS_QUEUED_MAX: usize = 16_384;

/// The most events one iteration of the loop takes before it runs a ready round, so that a
/// flood of requests cannot starve ticks and syncs.
pub const EVENTS_PER_ITERATION_MAX: usize = 4_096;

/// The most ticks the loop runs at once to catch up after a stall (a long sync). Ticks lost
/// beyond it are not replayed: raft measures time in ticks, and a burst of them would start
/// elections for no reason.
pub const CATCH_UP_TICKS_MAX: u32 = 2;

/// The longest the loop sleeps through quiet ticks ([`LoopNode::quiet_ticks`]) before it
/// wakes and asks the node again. It bounds how long a stop request waits: the loop sees it
/// when it wakes.
pub const QUIET_WAIT_MAX: Duration = Duration::from_millis(250);

/// One sans-IO node as the loop drives it: what a tier implements to run on [`spawn`].
///
/// The implementation owns the node, its store and its peer transport, and the waiting
/// callers' answer channels; it does no waiting and reads no clock (`now_us` comes from the
/// loop, in microseconds since the UNIX epoch).
pub trait LoopNode {
    /// What the services send the node.
    type Event: Send + 'static;
    /// Why the node could not open, or had to stop (a failed sync).
    type Error: From<LoopThreadError> + Display + Send + 'static;

    /// Takes one event. Answers the node gives at once may be sent from here; the others
    /// come out of [`LoopNode::route_outputs`].
    fn handle_event(&mut self, now_us: u64, event: Self::Event);

    /// One tick of the node's logical clock.
    fn handle_tick(&mut self, now_us: u64);

    /// How many of the next ticks only count (advance the node's tick counters) and do nothing
    /// else, as of `now_us`, with a tick every `tick_interval`: the loop may sleep through them
    /// and run them late, all at once when it next wakes, before the event that woke it. The
    /// node must answer 0 whenever a tick may act (send, propose, expire or answer
    /// something), or when work waits on its ticks; the default, 0, ticks the node every
    /// interval.
    fn quiet_ticks(&self, now_us: u64, tick_interval: Duration) -> u64 {
        let _ = (now_us, tick_interval);
        0
    }

    /// When the node wants to be woken between two ticks, in microseconds since the UNIX
    /// epoch: for work whose period is shorter than the tick (a region leader closes a batch
    /// every epoch interval, and an epoch may be shorter than a raft tick). The loop wakes it
    /// then with [`LoopNode::handle_wake`]; the default, none, leaves the node to its ticks.
    fn wake_at_us(&self) -> Option<u64> {
        None
    }

    /// The time [`LoopNode::wake_at_us`] named has come.
    fn handle_wake(&mut self, now_us: u64) {
        let _ = now_us;
    }

    /// Whether the node has ready work: the loop then runs a round without waiting.
    fn has_ready(&self) -> bool;

    /// Runs one ready round, syncing the store. An error stops the loop: the node must be
    /// opened again from what its store holds.
    fn handle_ready(&mut self) -> Result<(), Self::Error>;

    /// Drains every output of the node (its `poll_output`) in one exhaustive `match`, so that
    /// an output added to the node does not compile until it is routed.
    fn route_outputs(&mut self, now_us: u64);
}

/// The node thread could not start, could not run, or ended without a word.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoopThreadError(pub String);

/// What the loop needs besides the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopSettings {
    /// The name of the node's thread (`dsss-node-1`), also in the log line of a failure.
    pub thread_name: String,
    /// The interval between ticks; not zero.
    pub tick_interval: Duration,
}

/// A new bounded event channel for a node loop, holding at most [`EVENTS_QUEUED_MAX`] events.
/// Made before [`spawn`] so that tasks started before the node can hold a sender.
pub fn event_channel<Event>() -> (SyncSender<Event>, Receiver<Event>) {
    std::sync::mpsc::sync_channel(EVENTS_QUEUED_MAX)
}

/// The running loop of one node.
#[derive(Debug)]
pub struct LoopHandle<Event, Error> {
    events: SyncSender<Event>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), Error>>>,
    exited: Option<oneshot::Receiver<()>>,
}

impl<Event, Error: From<LoopThreadError>> LoopHandle<Event, Error> {
    /// A sender of events to the node.
    pub fn events(&self) -> SyncSender<Event> {
        self.events.clone()
    }

    /// Resolves when the loop has stopped, by request or by failure. Resolves at once when
    /// called a second time.
    pub async fn exited(&mut self) {
        if let Some(exited) = self.exited.as_mut() {
            let _ = exited.await;
            self.exited = None;
        }
    }

    /// Asks the loop to stop and waits for its thread, returning why it stopped if it failed.
    /// The loop notices the request within one tick interval or [`QUIET_WAIT_MAX`], whichever
    /// is longer, after its current round (so everything it acknowledged is synced).
    pub fn stop(mut self) -> Result<(), Error> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }

    fn join(&mut self) -> Result<(), Error> {
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| {
                Err(
                    LoopThreadError("the node thread panicked; see the log above".to_owned())
                        .into(),
                )
            }),
            None => Ok(()),
        }
    }
}

impl<Event, Error> Drop for LoopHandle<Event, Error> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a thread named in `settings` that opens the node with `open`, then runs the loop
/// over `events` (from [`event_channel`]). Returns once the node is open, or the error `open`
/// returned. The node never leaves its thread, so it need not be `Send`.
pub fn spawn<Node, Open>(
    settings: LoopSettings,
    events: (SyncSender<Node::Event>, Receiver<Node::Event>),
    open: Open,
) -> Result<LoopHandle<Node::Event, Node::Error>, Node::Error>
where
    Node: LoopNode,
    Open: FnOnce() -> Result<Node, Node::Error> + Send + 'static,
{
    if settings.tick_interval.is_zero() {
        return Err(LoopThreadError(format!(
            "{}: the tick interval must be above zero",
            settings.thread_name
        ))
        .into());
    }
    let (events, receiver) = events;
    let stop = Arc::new(AtomicBool::new(false));
    let (opened_sender, opened_receiver) = std::sync::mpsc::channel();
    let (exited_sender, exited_receiver) = oneshot::channel();
    let thread_stop = stop.clone();
    let thread_name = settings.thread_name.clone();
    let thread = std::thread::Builder::new()
        .name(settings.thread_name.clone())
        .spawn(move || {
            let outcome = match open() {
                Ok(mut node) => {
                    let _ = opened_sender.send(true);
                    run(&mut node, &receiver, &thread_stop, settings.tick_interval)
                }
                Err(error) => {
                    let _ = opened_sender.send(false);
                    Err(error)
                }
            };
            if let Err(error) = &outcome {
                tracing::error!(thread = %thread_name, %error, "the node loop stopped");
            }
            let _ = exited_sender.send(());
            outcome
        })
        .map_err(|error| {
            LoopThreadError(format!(
                "cannot start the thread {}: {error}",
                settings.thread_name
            ))
        })?;
    let mut handle = LoopHandle {
        events,
        stop,
        thread: Some(thread),
        exited: Some(exited_receiver),
    };
    match opened_receiver.recv() {
        Ok(true) => Ok(handle),
        // The thread returned the open error: join to hand it back typed.
        Ok(false) | Err(_) => match handle.join() {
            Err(error) => Err(error),
            Ok(()) => Err(LoopThreadError(format!(
                "the thread {} ended before opening its node",
                settings.thread_name
            ))
            .into()),
        },
    }
}

/// The loop itself; see the module documentation for its steps.
fn run<Node: LoopNode>(
    node: &mut Node,
    events: &Receiver<Node::Event>,
    stop: &AtomicBool,
    tick_interval: Duration,
) -> Result<(), Node::Error> {
    // The first tick comes at once: a node may act on it (the coordinator's preferred leader
    // campaigns).
    let mut clock = TickClock::new(Instant::now(), tick_interval);
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let wait = if node.has_ready() {
            clock.wake_now();
            Duration::ZERO
        } else {
            let now_us = SystemClock.now_us();
            let until_tick = clock.sleep(node.quiet_ticks(now_us, tick_interval), now);
            match node.wake_at_us() {
                Some(wake_at_us) => {
                    until_tick.min(Duration::from_micros(wake_at_us.saturating_sub(now_us)))
                }
                None => until_tick,
            }
        };
        let received = match events.recv_timeout(wait) {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => None,
            // Every sender is gone (the handle holds one): nothing can reach the node again.
            Err(RecvTimeoutError::Disconnected) => break,
        };
        // The ticks whose time has passed come before the event: the node sees them in the
        // order it would have had it been woken for each.
        for _ in 0..clock.due(Instant::now()) {
            node.handle_tick(SystemClock.now_us());
        }
        let now_us = SystemClock.now_us();
        if node
            .wake_at_us()
            .is_some_and(|wake_at_us| wake_at_us <= now_us)
        {
            node.handle_wake(now_us);
        }
        if let Some(event) = received {
            node.handle_event(SystemClock.now_us(), event);
        }
        for _ in 1..EVENTS_PER_ITERATION_MAX {
            match events.try_recv() {
                Ok(event) => node.handle_event(SystemClock.now_us(), event),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if node.has_ready() {
            node.handle_ready()?;
        }
        node.route_outputs(SystemClock.now_us());
    }
    Ok(())
}

/// When the loop's ticks are due, and how many it may sleep through. Time is passed in, so
/// that the schedule is tested without a clock.
#[derive(Clone, Copy, Debug)]
struct TickClock {
    tick_interval: Duration,
    /// The time of the next tick not run yet.
    next_tick: Instant,
    /// Ticks the node let the loop sleep through when it last went to sleep: they are run
    /// late, all of them, beyond the [`CATCH_UP_TICKS_MAX`] a stall may replay.
    deferred: u64,
}

impl TickClock {
    fn new(first_tick: Instant, tick_interval: Duration) -> Self {
        TickClock {
            tick_interval,
            next_tick: first_tick,
            deferred: 0,
        }
    }

    /// How long to wait from `now` when the node has `quiet_ticks` ticks that only count: until
    /// the first tick after them, at most [`QUIET_WAIT_MAX`] (or one tick interval, if longer).
    fn sleep(&mut self, quiet_ticks: u64, now: Instant) -> Duration {
        let interval_ns = self.tick_interval.as_nanos().max(1);
        let quiet_max = (QUIET_WAIT_MAX.as_nanos() / interval_ns).saturating_sub(1);
        self.deferred = quiet_ticks.min(u64::try_from(quiet_max).unwrap_or(u64::MAX));
        let wake_at = self.tick_at(self.deferred);
        wake_at.saturating_duration_since(now)
    }

    /// The loop does not sleep: no tick is deferred.
    fn wake_now(&mut self) {
        self.deferred = 0;
    }

    /// How many ticks to run at `now`: every one whose time has passed, up to the deferred
    /// ones plus [`CATCH_UP_TICKS_MAX`]. Ticks beyond are dropped (a long stall): raft measures
    /// time in ticks, and a burst of them would start elections for no reason.
    fn due(&mut self, now: Instant) -> u64 {
        let allowed = self.deferred.saturating_add(u64::from(CATCH_UP_TICKS_MAX));
        let mut ticks = 0;
        while now >= self.next_tick && ticks < allowed {
            self.next_tick += self.tick_interval;
            ticks += 1;
        }
        if now >= self.next_tick {
            self.next_tick = now + self.tick_interval;
        }
        // Ticks run consume the deferral; the rest stays valid for the current sleep.
        self.deferred = self.deferred.saturating_sub(ticks);
        ticks
    }

    fn tick_at(&self, ticks_after_next: u64) -> Instant {
        let offset = self
            .tick_interval
            .saturating_mul(u32::try_from(ticks_after_next).unwrap_or(u32::MAX));
        self.next_tick + offset
    }
}

/// The [`ReadyIo`] of the production drivers: a batch raft must have durable is synced to the
/// store before raft goes on, one that only applies committed entries is written without a
/// sync (a crash makes the node apply them again, see
/// [`RaftGroup::handle_ready`](crate::RaftGroup::handle_ready)), and messages go to the peer
/// transport's queues without waiting.
pub struct PeerIo<'a, S: DurableStore, D: RaftDelivery> {
    store: &'a mut S,
    peers: &'a PeerSenders<D>,
}

impl<'a, S: DurableStore, D: RaftDelivery> PeerIo<'a, S, D> {
    /// An I/O over `store` that sends through `peers`.
    pub fn new(store: &'a mut S, peers: &'a PeerSenders<D>) -> Self {
        PeerIo { store, peers }
    }
}

impl<S: DurableStore, D: RaftDelivery> ReadyIo for PeerIo<'_, S, D> {
    fn persist(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        let started = Instant::now();
        let written = self.store.write(batch, true);
        self.peers.sync_latency().observe(started.elapsed());
        written
    }

    fn write_unsynced(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.store.write(batch, false)
    }

    fn send(&mut self, messages: Vec<Message>) {
        self.peers.send(messages);
    }

    fn with_store(&mut self, reads: &mut dyn FnMut(&dyn DurableStore)) {
        reads(&*self.store);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::mpsc;

    use super::*;
    use crate::{
        Applied, MemoryStore, RaftGroup, RaftGroupConfig, ReadyError, SnapshotError, StateMachine,
        StoreIo,
    };

    /// How long a test waits for an answer of the loop before it fails: generous, since the
    /// loop runs on its own thread on a busy machine. Nothing is asserted about how fast.
    const ANSWER_WAIT_MAX: Duration = Duration::from_secs(30);

    const TICK_INTERVAL: Duration = Duration::from_millis(1);

    /// Counts the bytes of every applied entry; outputs the running total.
    #[derive(Default)]
    struct ByteCounter(u64);

    impl StateMachine for ByteCounter {
        type Output = u64;
        fn apply(
            &mut self,
            _index: u64,
            data: &[u8],
            _store: &dyn DurableStore,
            _batch: &mut WriteBatch,
        ) -> Result<u64, StoreError> {
            self.0 += data.len() as u64;
            Ok(self.0)
        }
        fn snapshot(&self, _store: &dyn DurableStore) -> Result<Vec<u8>, StoreError> {
            Ok(self.0.to_be_bytes().to_vec())
        }
        fn validate_snapshot(&self, data: &[u8]) -> Result<(), SnapshotError> {
            <[u8; 8]>::try_from(data)
                .map(|_| ())
                .map_err(|_| SnapshotError::new("not 8 bytes"))
        }
        fn restore(&mut self, data: &[u8], _batch: &mut WriteBatch) -> Result<(), SnapshotError> {
            let bytes = <[u8; 8]>::try_from(data).map_err(|_| SnapshotError::new("not 8 bytes"))?;
            self.0 = u64::from_be_bytes(bytes);
            Ok(())
        }
        fn recover(&mut self, _store: &dyn DurableStore) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[derive(Debug, thiserror::Error)]
    enum CounterError {
        #[error("opening the counter: {0}")]
        Open(String),
        #[error("a round failed: {0}")]
        Ready(#[from] ReadyError),
        #[error("the counter thread: {0}")]
        Thread(#[from] LoopThreadError),
    }

    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    struct CounterStatus {
        ticks: u64,
        leads: bool,
        rounds: u64,
        /// Ready rounds that began while outputs of an earlier round were still queued.
        rounds_over_undrained_outputs: u64,
        /// Iterations of the loop: one `route_outputs` each.
        iterations: u64,
    }

    enum CounterEvent {
        /// Appends bytes; answered with the running total once applied.
        Append {
            bytes: Vec<u8>,
            reply: mpsc::Sender<Result<u64, String>>,
        },
        Status(mpsc::Sender<CounterStatus>),
        /// The next synced write fails, as a full disk would.
        FailNextSync,
        /// From now on the node reports this many quiet ticks.
        SetQuietTicks(u64),
    }

    /// A one-member raft group over a [`MemoryStore`], as a tier's node would be driven.
    struct CounterNode {
        group: RaftGroup<ByteCounter>,
        store: MemoryStore,
        /// The answers of the proposed appends, in proposal order (one member applies them in
        /// that order).
        proposed: VecDeque<mpsc::Sender<Result<u64, String>>>,
        /// The totals applied in ready rounds and not yet routed to their callers.
        outputs: VecDeque<u64>,
        status: CounterStatus,
        fail_next_sync: bool,
        quiet_ticks: u64,
    }

    impl CounterNode {
        fn open() -> Result<Self, CounterError> {
            let mut store = MemoryStore::new();
            let config = RaftGroupConfig::new(1, vec![1]);
            let group = RaftGroup::open(config, ByteCounter::default(), &mut store)
                .map_err(|error| CounterError::Open(error.to_string()))?;
            Ok(CounterNode {
                group,
                store,
                proposed: VecDeque::new(),
                outputs: VecDeque::new(),
                status: CounterStatus::default(),
                fail_next_sync: false,
                quiet_ticks: 0,
            })
        }
    }

    /// Fails every synced write: the store of a node whose disk broke.
    struct BrokenDiskIo(MemoryStore);

    impl ReadyIo for BrokenDiskIo {
        fn persist(&mut self, _batch: WriteBatch) -> Result<(), StoreError> {
            Err(StoreError::Engine("no space left on device".to_owned()))
        }
        fn send(&mut self, _messages: Vec<Message>) {}
        fn with_store(&mut self, reads: &mut dyn FnMut(&dyn DurableStore)) {
            reads(&self.0);
        }
    }

    impl LoopNode for CounterNode {
        type Event = CounterEvent;
        type Error = CounterError;

        fn handle_event(&mut self, _now_us: u64, event: CounterEvent) {
            match event {
                CounterEvent::Append { bytes, reply } => match self.group.propose(bytes) {
                    Ok(()) => self.proposed.push_back(reply),
                    Err(error) => {
                        let _ = reply.send(Err(error.to_string()));
                    }
                },
                CounterEvent::Status(reply) => {
                    self.status.leads = self.group.leader_id() == Some(1);
                    let _ = reply.send(self.status);
                }
                CounterEvent::FailNextSync => {
                    self.fail_next_sync = true;
                    // Something to sync, so that a round runs.
                    let _ = self.group.propose(b"doomed".to_vec());
                }
                CounterEvent::SetQuietTicks(ticks) => self.quiet_ticks = ticks,
            }
        }

        fn quiet_ticks(&self, _now_us: u64, _tick_interval: Duration) -> u64 {
            self.quiet_ticks
        }

        fn handle_tick(&mut self, _now_us: u64) {
            self.status.ticks += 1;
            self.group.tick();
        }

        fn has_ready(&self) -> bool {
            self.group.has_ready()
        }

        fn handle_ready(&mut self) -> Result<(), CounterError> {
            if !self.outputs.is_empty() {
                self.status.rounds_over_undrained_outputs += 1;
            }
            self.status.rounds += 1;
            let applied = if self.fail_next_sync {
                self.group
                    .handle_ready(&mut BrokenDiskIo(MemoryStore::new()))?
            } else {
                // One member: nothing to send.
                self.group
                    .handle_ready(&mut StoreIo::new(&mut self.store))?
            };
            for applied in applied {
                if let Applied::Entry { output, .. } = applied {
                    self.outputs.push_back(output);
                }
            }
            Ok(())
        }

        fn route_outputs(&mut self, _now_us: u64) {
            self.status.iterations += 1;
            while let Some(total) = self.outputs.pop_front() {
                if let Some(reply) = self.proposed.pop_front() {
                    let _ = reply.send(Ok(total));
                }
            }
        }
    }

    fn settings() -> LoopSettings {
        LoopSettings {
            thread_name: "dsss-test-counter".to_owned(),
            tick_interval: TICK_INTERVAL,
        }
    }

    fn ask_status(events: &SyncSender<CounterEvent>) -> CounterStatus {
        let (reply, answer) = mpsc::channel();
        events
            .try_send(CounterEvent::Status(reply))
            .expect("queued");
        answer.recv_timeout(ANSWER_WAIT_MAX).expect("answered")
    }

    /// Waits until the member leads; only ticks can make it campaign.
    fn wait_for_leadership(events: &SyncSender<CounterEvent>) -> CounterStatus {
        let started = Instant::now();
        loop {
            let status = ask_status(events);
            if status.leads {
                return status;
            }
            assert!(started.elapsed() < ANSWER_WAIT_MAX, "never led: {status:?}");
            std::thread::sleep(TICK_INTERVAL);
        }
    }

    #[test]
    fn ticks_elect_the_member_and_events_are_answered_from_drained_rounds() {
        let handle = spawn(settings(), event_channel(), CounterNode::open).expect("opens");
        let events = handle.events();
        let status = wait_for_leadership(&events);
        // A one-member group campaigns once its election timeout of ticks has passed.
        assert!(status.ticks >= 10, "{status:?}");

        let answers: Vec<_> = (1..=100)
            .map(|length| {
                let (reply, answer) = mpsc::channel();
                events
                    .try_send(CounterEvent::Append {
                        bytes: vec![7; length],
                        reply,
                    })
                    .expect("queued");
                answer
            })
            .collect();
        let totals: Vec<u64> = answers
            .iter()
            .map(|answer| {
                answer
                    .recv_timeout(ANSWER_WAIT_MAX)
                    .expect("answered")
                    .expect("applied")
            })
            .collect();
        let expected: Vec<u64> = (1..=100u64).map(|n| n * (n + 1) / 2).collect();
        assert_eq!(totals, expected);

        let status = ask_status(&events);
        assert!(status.rounds > 0);
        assert_eq!(status.rounds_over_undrained_outputs, 0, "{status:?}");
        handle.stop().expect("stops cleanly");
    }

    #[test]
    fn stop_ends_the_thread_and_closes_the_channel() {
        let handle = spawn(settings(), event_channel(), CounterNode::open).expect("opens");
        let events = handle.events();
        ask_status(&events);
        handle.stop().expect("stops cleanly");
        // The thread dropped its receiver when it ended.
        let (reply, _answer) = mpsc::channel();
        assert!(matches!(
            events.try_send(CounterEvent::Status(reply)),
            Err(mpsc::TrySendError::Disconnected(_))
        ));
    }

    #[test]
    fn an_open_failure_is_returned_typed() {
        let outcome = spawn(settings(), event_channel(), || {
            Err::<CounterNode, _>(CounterError::Open("the store is locked".to_owned()))
        });
        match outcome {
            Err(CounterError::Open(reason)) => assert_eq!(reason, "the store is locked"),
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("a node that cannot open runs"),
        }
    }

    #[test]
    fn a_zero_tick_interval_is_refused() {
        let outcome = spawn(
            LoopSettings {
                tick_interval: Duration::ZERO,
                ..settings()
            },
            event_channel(),
            CounterNode::open,
        );
        match outcome {
            Err(CounterError::Thread(LoopThreadError(reason))) => {
                assert!(reason.contains("tick interval"), "{reason}");
            }
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("a loop without ticks runs"),
        }
    }

    #[test]
    fn a_failed_sync_stops_the_loop_with_its_error() {
        let mut handle = spawn(settings(), event_channel(), CounterNode::open).expect("opens");
        let events = handle.events();
        wait_for_leadership(&events);
        events.try_send(CounterEvent::FailNextSync).expect("queued");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(handle.exited());
        match handle.stop() {
            Err(CounterError::Ready(ReadyError::Store(StoreError::Engine(reason)))) => {
                assert_eq!(reason, "no space left on device");
            }
            other => panic!("not the sync's error: {other:?}"),
        }
    }

    /// An idle node that reports its ticks quiet is not woken for them: the loop sleeps
    /// through them and runs them all, before the next event, when that event wakes it.
    #[test]
    fn an_idle_node_sleeps_through_quiet_ticks_and_gets_them_before_the_next_event() {
        let handle = spawn(settings(), event_channel(), CounterNode::open).expect("opens");
        let events = handle.events();
        wait_for_leadership(&events);
        events
            .try_send(CounterEvent::SetQuietTicks(u64::MAX))
            .expect("queued");
        let before = ask_status(&events);
        let asked_at = Instant::now();
        std::thread::sleep(100 * TICK_INTERVAL);
        let slept = asked_at.elapsed();
        let after = ask_status(&events);

        // Ticked every interval, the loop would have run about 100 iterations; sleeping
        // through quiet ticks it wakes once per QUIET_WAIT_MAX at most, and for the event.
        let wakes_max = 1 + (slept.as_nanos() / QUIET_WAIT_MAX.as_nanos()) as u64 + 1;
        let iterations = after.iterations - before.iterations;
        assert!(
            iterations <= wakes_max,
            "{iterations} iterations in {slept:?} (at most {wakes_max})"
        );
        // The ticks slept through were run before the event was answered.
        let ticks_due = (slept.as_nanos() / TICK_INTERVAL.as_nanos()) as u64;
        let ticks = after.ticks - before.ticks;
        assert!(
            ticks + 1 >= ticks_due,
            "{ticks} ticks run, {ticks_due} were due"
        );
        handle.stop().expect("stops cleanly");
    }

    fn at(start: Instant, ticks: u32) -> Instant {
        start + TICK_INTERVAL * ticks
    }

    #[test]
    fn the_tick_clock_sleeps_through_quiet_ticks_and_runs_them_all_on_waking() {
        let start = Instant::now();
        let mut clock = TickClock::new(start, TICK_INTERVAL);
        // No quiet tick: wake for the next one.
        assert_eq!(clock.sleep(0, start), Duration::ZERO);
        assert_eq!(clock.due(start), 1);
        // Five quiet ticks: wake for the sixth, which acts, and run all six.
        assert_eq!(clock.sleep(5, start), TICK_INTERVAL * 6);
        assert_eq!(clock.due(at(start, 6)), 6);
        // An event two and a half intervals into a sleep gets the two ticks due before it;
        // the rest of the deferral holds for the rest of the sleep.
        assert_eq!(clock.sleep(5, at(start, 6)), TICK_INTERVAL * 6);
        let event_at = at(start, 6) + TICK_INTERVAL * 5 / 2;
        assert_eq!(clock.due(event_at), 2);
        assert_eq!(clock.due(at(start, 12)), 4);
    }

    #[test]
    fn the_tick_clock_caps_a_sleep_and_the_ticks_a_stall_replays() {
        let start = Instant::now();
        let mut clock = TickClock::new(start, TICK_INTERVAL);
        let cap_ticks = (QUIET_WAIT_MAX.as_nanos() / TICK_INTERVAL.as_nanos()) as u32;
        assert_eq!(clock.due(start), 1);
        // However many quiet ticks, the loop wakes after QUIET_WAIT_MAX.
        assert_eq!(clock.sleep(u64::MAX, start), QUIET_WAIT_MAX);
        assert_eq!(clock.due(at(start, cap_ticks)), u64::from(cap_ticks));
        // A stall while the loop was busy (no sleep, nothing deferred): at most
        // CATCH_UP_TICKS_MAX ticks, and the next one an interval later.
        clock.wake_now();
        let stalled_until = at(start, cap_ticks + 50);
        assert_eq!(clock.due(stalled_until), u64::from(CATCH_UP_TICKS_MAX));
        assert_eq!(clock.due(stalled_until), 0);
        assert_eq!(clock.sleep(0, stalled_until), TICK_INTERVAL);
        // A tick interval longer than QUIET_WAIT_MAX: one interval, no quiet tick skipped.
        let mut slow = TickClock::new(start, QUIET_WAIT_MAX * 2);
        assert_eq!(slow.sleep(10, start), Duration::ZERO);
        assert_eq!(slow.due(start), 1);
        assert_eq!(slow.sleep(10, start), QUIET_WAIT_MAX * 2);
    }
}
