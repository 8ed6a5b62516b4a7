//! The boundary between the kernel and a simulated node: [`Process`] and its [`Context`].
//!
//! Any sans-IO state machine becomes a simulated node by implementing [`Process`]. The kernel
//! calls one `handle_*` method at a time, never re-entrantly, and hands it a [`Context`]: the
//! only way a process sees time, randomness and its disk, and the only way it acts (send a
//! message, set or cancel a timer). Actions are collected while the handler runs and applied
//! by the kernel, in the order they were requested, after it returns; nothing a handler does
//! takes effect in the middle of it.

use std::fmt;
use std::time::Duration;

use crate::costs::{NodeCosts, WorkKind};
use crate::disk::SimDisk;
use crate::network::NodeId;
use crate::random::SimRng;
use crate::time::SimTime;

/// The most actions (sends, timer changes) one handler call may request.
pub const CONTEXT_ACTION_COUNT_MAX: usize = 100_000;

/// A simulated node: a state machine driven by start, message and timer events.
///
/// The kernel calls `handle_start` once after the process is created (at the start of the run
/// and after each restart), then `handle_message` and `handle_timer` as events arrive. A
/// handler MUST NOT block or read the system clock or thread-local randomness: time and
/// randomness come from the [`Context`] alone, or the run stops being reproducible.
pub trait Process {
    /// The messages nodes exchange. `Clone` lets the network duplicate them; `Debug` writes
    /// them to the trace, so it must print the same text for the same message on every run.
    type Message: Clone + fmt::Debug;

    /// The process has just been created, at the start of the run or after a restart.
    fn handle_start(&mut self, cx: &mut Context<'_, Self::Message>);

    /// A message arrived from `from` ([`EXTERNAL_NODE_ID`](crate::EXTERNAL_NODE_ID) for a
    /// message injected by the test driver).
    fn handle_message(
        &mut self,
        cx: &mut Context<'_, Self::Message>,
        from: NodeId,
        message: Self::Message,
    );

    /// A timer set with [`Context::set_timer`] fired (it was not cancelled, and the node did
    /// not crash since setting it).
    fn handle_timer(&mut self, cx: &mut Context<'_, Self::Message>, timer: TimerId);

    /// Whether the kernel tells this process of messages that found their receiver crashed
    /// ([`Process::handle_refused`]). False by default: a process that does not act on
    /// refusals keeps its runs' traces as they were.
    fn notices_refusals(&self) -> bool {
        false
    }

    /// A message this node sent to `to` found `to` crashed (not paused, and not behind a cut
    /// link), and the refusal came back one mean one-way delay later, as a host refuses a
    /// connection to a process that is gone: the production drivers see such a call fail at
    /// once rather than time out. Called only when [`Process::notices_refusals`] is true. The
    /// default does nothing.
    fn handle_refused(
        &mut self,
        cx: &mut Context<'_, Self::Message>,
        to: NodeId,
        message: Self::Message,
    ) {
        let _ = (cx, to, message);
    }

    /// What kind of work handling `message` is, for costs set per kind
    /// ([`crate::costs::NodeCosts::cpu_per_kind`]). The default, [`WorkKind::Other`], costs
    /// the cost per event.
    fn work_kind(message: &Self::Message) -> WorkKind
    where
        Self: Sized,
    {
        let _ = message;
        WorkKind::Other
    }

    /// A run of events that waited while the node was busy ([`crate::costs`]) was handed to
    /// it, one handler call each, and one of them was told that more would follow
    /// ([`Context::more_waiting`]) when none did (a handler cancelled the timer that was next):
    /// the work a process defers to the end of such a run is due now. Costs no CPU time of its
    /// own. The default does nothing.
    fn handle_run_end(&mut self, cx: &mut Context<'_, Self::Message>) {
        let _ = cx;
    }
}

/// A timer of one node. Ids are unique over the whole run, so a timer set before a crash is
/// never confused with one set after the restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(pub(crate) u64);

impl TimerId {
    /// The id as a number, for a process that keeps timers in its own tables.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TimerId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "timer{}", self.0)
    }
}

/// Where a handler call stands in a run of events that waited for the node's work.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RunPosition {
    /// The work of the run's earlier calls.
    pub(crate) work_before: Duration,
    /// Whether another event follows in the run.
    pub(crate) more_waiting: bool,
}

/// An action requested by a handler, applied by the kernel after the handler returns.
pub(crate) enum Action<M> {
    /// `after`: the work the handler did before the send, which the message waits for
    /// ([`crate::costs`]).
    Send {
        to: NodeId,
        message: M,
        after: Duration,
    },
    SetTimer {
        timer: TimerId,
        after: Duration,
    },
    CancelTimer {
        timer: TimerId,
    },
}

/// What a process sees and can do while one of its handlers runs.
pub struct Context<'a, M> {
    node: NodeId,
    now: SimTime,
    now_us: u64,
    rng: &'a mut SimRng,
    disk: &'a mut SimDisk,
    timer_id_next: &'a mut u64,
    actions: Vec<Action<M>>,
    costs: NodeCosts,
    /// The kind of the event being handled, which sets its CPU time.
    kind: WorkKind,
    /// The disk's sync count when the handler started.
    syncs_at_start: u64,
    /// The work of the earlier handler calls of the same run of waiting events.
    work_before: Duration,
    /// Whether another waiting event follows this one in the same run.
    more_waiting: bool,
}

impl<'a, M> Context<'a, M> {
    pub(crate) fn new(
        node: NodeId,
        now: SimTime,
        now_us: u64,
        rng: &'a mut SimRng,
        disk: &'a mut SimDisk,
        timer_id_next: &'a mut u64,
        (costs, kind, run): (NodeCosts, WorkKind, RunPosition),
    ) -> Self {
        let syncs_at_start = disk.sync_count();
        Context {
            node,
            now,
            now_us,
            rng,
            disk,
            timer_id_next,
            actions: Vec::new(),
            costs,
            kind,
            syncs_at_start,
            work_before: run.work_before,
            more_waiting: run.more_waiting,
        }
    }

    /// The actions requested, in order, and the work of this handler call alone.
    pub(crate) fn into_actions(self) -> (Vec<Action<M>>, Duration) {
        let own_work = self.work_done() - self.work_before;
        (self.actions, own_work)
    }

    /// The time the work so far costs, since the run of waiting events began: the earlier
    /// calls' work, this call's CPU time and its syncs.
    fn work_done(&self) -> Duration {
        self.work_before.saturating_add(
            self.costs
                .handler_time(self.kind, self.disk.sync_count() - self.syncs_at_start),
        )
    }

    /// True when the node was busy and another event that waited meanwhile will be handed to
    /// it right after this one, at the same time: a process may leave work that one pass does
    /// for every event (a raft round) to the last of them, as a production loop handles every
    /// queued event before its next round. Always false without costs.
    pub fn more_waiting(&self) -> bool {
        self.more_waiting
    }

    /// The id of the node this handler runs on.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The node's physical clock in microseconds since the Unix epoch, with its skew and drift
    /// applied: what a hybrid logical clock reads. It may step backwards between two handler
    /// calls when the test driver steps the clock.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// The virtual time of the run, the same on every node. Protocol code should read
    /// [`Context::now_us`]; this is for measurements and checkers.
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// The run's random number generator, shared by every node and the network.
    pub fn rng(&mut self) -> &mut SimRng {
        self.rng
    }

    /// The node's disk.
    pub fn disk(&mut self) -> &mut SimDisk {
        self.disk
    }

    /// Sends `message` to `to` through the simulated network. With costs
    /// ([`crate::costs`]) it leaves once the work before it is done.
    ///
    /// # Panics
    ///
    /// If this handler already requested [`CONTEXT_ACTION_COUNT_MAX`] actions.
    pub fn send(&mut self, to: NodeId, message: M) {
        let after = self.work_done();
        self.push_action(Action::Send { to, message, after });
    }

    /// Sets a timer that fires `after` from now, unless cancelled or the node crashes first.
    ///
    /// # Panics
    ///
    /// If this handler already requested [`CONTEXT_ACTION_COUNT_MAX`] actions.
    pub fn set_timer(&mut self, after: Duration) -> TimerId {
        let timer = TimerId(*self.timer_id_next);
        *self.timer_id_next += 1;
        self.push_action(Action::SetTimer { timer, after });
        timer
    }

    /// Cancels a timer; cancelling one that already fired or was cancelled does nothing.
    ///
    /// # Panics
    ///
    /// If this handler already requested [`CONTEXT_ACTION_COUNT_MAX`] actions.
    pub fn cancel_timer(&mut self, timer: TimerId) {
        self.push_action(Action::CancelTimer { timer });
    }

    fn push_action(&mut self, action: Action<M>) {
        assert!(
            self.actions.len() < CONTEXT_ACTION_COUNT_MAX,
            "node {} requested more than {CONTEXT_ACTION_COUNT_MAX} actions in one handler call",
            self.node
        );
        self.actions.push(action);
    }
}
