//! [`SessionInstance`]: a simulated application instance that runs the SDK's own
//! [`ClientSession`], exactly as `dsss::Client` does in production, with several registers open
//! at once (global ones, and one regional register of its region).
//!
//! The process is the session's driver ([`SessionDriver`], shared with the sdk workload) and
//! the application on top of it.
//!
//! The application on top: it opens every register at once, then, one operation at a time,
//! writes a value unique in the run (a register's write returns the value it replaced), reads a
//! copy locally, or asks for a `sync()` barrier and then reads. Everything is recorded with
//! the simulated time for the position-free order checks.
//!
//! Operations come in a closed loop (the next one a think time after the last ended) or in an
//! open loop ([`InstanceSettings::open_loop_rate_per_s`]): they arrive in a Poisson process
//! whatever the instance is doing, wait in a bounded backlog while an earlier one runs, and
//! each one's latency counts from its arrival, so that a stall shows in full rather than
//! slowing the arrivals down (no coordinated omission).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use dsss::replica::{ReplicaConfig, SharedReplica};
use dsss::session::{ClientSession, Event, SessionConfig, new_copy};
use dsss::{Codec, Postcard};
use dsss_examples::Register;
use dsss_wire::Scope;

use super::driver::{SessionDriver, micros};
use super::history::{InstanceHistory, SessionObserver, SessionOperation};
use crate::network::NodeId;
use crate::process::{Context, Process, TimerId};
use crate::time::SimTime;
use crate::workloads::global::{Application, GlobalMessage};

/// The method id of `Register::write`.
const WRITE_METHOD_ID: u32 = 1;

/// The method id of `Register::write_with_payload`.
const WRITE_WITH_PAYLOAD_METHOD_ID: u32 = 2;

/// The most operations that may wait in an open-loop instance's backlog; arrivals beyond it
/// are shed (counted, never run), so that a stalled cluster cannot grow the backlog without
/// limit.
pub const ARRIVALS_QUEUED_MAX: usize = 1_024;

/// The highest open-loop arrival rate of one instance, per second.
pub const OPEN_LOOP_RATE_PER_INSTANCE_MAX: f64 = 10_000.0;

/// The largest payload a write may carry, in bytes. The simulated nodes keep their logs in
/// memory, so the bound keeps a long busy run's memory in check.
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024;

/// How often an open-loop instance whose arrivals ended looks for the final round.
const IDLE_POLL: Duration = Duration::from_millis(10);

/// How an instance behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstanceSettings {
    /// The shortest pause between two operations.
    pub think_time_min: Duration,
    /// The longest pause.
    pub think_time_max: Duration,
    /// The share of operations that are writes; the others are reads.
    pub write_share: f64,
    /// The share of reads that follow a `sync()` barrier.
    pub sync_read_share: f64,
    /// The most operations one instance makes.
    pub operations_max: usize,
    /// How long one request may go unanswered before the session tries another member.
    pub attempt_timeout: Duration,
    /// How long the log stream may stall while something waits on it.
    pub stream_stall_timeout: Duration,
    /// How long a call, an open or a barrier may take over all attempts.
    pub call_timeout: Duration,
    /// How long the process waits for a member's answer to a log read before asking again.
    pub log_read_timeout: Duration,
    /// How long a member may hold a log read that finds nothing new before it answers empty
    /// (it answers as soon as it applies something, as a production stream pushes).
    pub log_read_wait: Duration,
    /// Runs the session in its planted stream-per-object mode, the bug the order checks must
    /// catch: every object follows the log with a stream of its own, so one copy may lag
    /// another inside the instance.
    pub planted_stream_per_object: bool,
    /// How the instance picks the register of each operation, among those it holds in the
    /// order of their names.
    pub popularity: Popularity,
    /// When set, operations arrive in a Poisson process at this mean rate (per second, for
    /// this instance) whatever the instance is doing (open loop), and the think times are not
    /// used. `None`: closed loop.
    pub open_loop_rate_per_s: Option<f64>,
    /// The smallest and largest payload a write carries, in bytes, drawn uniformly per write.
    /// `(0, 0)`: plain writes of the value alone.
    pub payload_bytes: (usize, usize),
}

/// How an instance picks the register of each operation among those it holds, ranked by
/// name (`register/global-0`, `register/global-1`, ..., then its region's regional register).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Popularity {
    /// Every register alike.
    Uniform,
    /// The k-th register (from 1) in proportion to 1 / k^exponent.
    Zipf {
        /// The exponent, above 0 (1 is the classic law; larger favours the first more).
        exponent: f64,
    },
}

/// The largest Zipf exponent a run accepts: beyond it every operation picks the first
/// register.
pub const ZIPF_EXPONENT_MAX: f64 = 10.0;

impl Popularity {
    /// Picks an index below `count` (above 0) from a uniform draw in [0, 1).
    pub fn pick(&self, count: usize, draw: f64) -> usize {
        match *self {
            Popularity::Uniform => ((draw * count as f64) as usize).min(count - 1),
            Popularity::Zipf { exponent } => {
                let weight = |rank: usize| (rank as f64 + 1.0).powf(-exponent);
                let total: f64 = (0..count).map(weight).sum();
                let mut left = draw * total;
                for rank in 0..count {
                    left -= weight(rank);
                    if left < 0.0 {
                        return rank;
                    }
                }
                count - 1
            }
        }
    }

    fn validate(&self) -> Result<(), String> {
        match *self {
            Popularity::Uniform => Ok(()),
            Popularity::Zipf { exponent } => {
                if exponent > 0.0 && exponent <= ZIPF_EXPONENT_MAX {
                    Ok(())
                } else {
                    Err(format!(
                        "popularity: a Zipf exponent of {exponent} is outside (0, \
                         {ZIPF_EXPONENT_MAX}]"
                    ))
                }
            }
        }
    }
}

impl InstanceSettings {
    /// Rejects settings an instance cannot honour, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        crate::workloads::common::validate_instance_settings(
            (self.think_time_min, self.think_time_max),
            &[
                ("write_share", self.write_share),
                ("sync_read_share", self.sync_read_share),
            ],
            &[
                ("attempt_timeout", self.attempt_timeout),
                ("stream_stall_timeout", self.stream_stall_timeout),
                ("call_timeout", self.call_timeout),
                ("log_read_timeout", self.log_read_timeout),
                ("log_read_wait", self.log_read_wait),
            ],
        )?;
        self.popularity.validate()?;
        if let Some(rate) = self.open_loop_rate_per_s
            && !(rate > 0.0 && rate <= OPEN_LOOP_RATE_PER_INSTANCE_MAX)
        {
            return Err(format!(
                "open_loop_rate_per_s: {rate} per instance is outside (0, \
                 {OPEN_LOOP_RATE_PER_INSTANCE_MAX}]"
            ));
        }
        let (smallest, largest) = self.payload_bytes;
        if smallest > largest || largest > PAYLOAD_BYTES_MAX {
            return Err(format!(
                "payload_bytes: {smallest}..={largest} is not a range within \
                 0..={PAYLOAD_BYTES_MAX}"
            ));
        }
        Ok(())
    }
}

/// One register the instance holds.
struct Held {
    scope: Scope,
    copy: Arc<SharedReplica<Register>>,
}

/// The operation the instance waits on.
#[derive(Clone, Debug)]
enum Waiting {
    /// Opens not finished yet, by open id.
    Opens(BTreeMap<u64, String>),
    /// Nothing: the think timer runs (closed loop), or the instance waits for the next
    /// arrival (open loop).
    Thinking,
    /// A write.
    Write {
        call_id: u64,
        object: String,
        value: u64,
        began_at: SimTime,
    },
    /// A barrier, then a read of `object` (`None`: every object, the final round).
    Sync {
        sync_id: u64,
        object: Option<String>,
        began_at: SimTime,
    },
    /// Done: no more operations.
    Done,
}

/// A simulated application instance running the SDK's session. See the module documentation.
pub struct SessionInstance {
    settings: InstanceSettings,
    index: u64,
    driver: SessionDriver,
    objects: BTreeMap<String, Held>,
    waiting: Waiting,
    think_timer: Option<TimerId>,
    /// Open loop: the timer of the next arrival.
    arrival_timer: Option<TimerId>,
    /// Open loop: when each operation waiting to run arrived, oldest first.
    arrivals: VecDeque<SimTime>,
    next_value: u64,
    operations_done: usize,
    operations_until: Rc<Cell<SimTime>>,
    final_round: Rc<Cell<bool>>,
    observer: Rc<RefCell<SessionObserver>>,
}

impl SessionInstance {
    /// Instance number `index` (unique in the run, from 1) running as node `node` in `region`
    /// whose members are `members`, holding `objects` (name and scope).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: InstanceSettings,
        index: u64,
        node: NodeId,
        region: String,
        members: Vec<NodeId>,
        objects: &[(String, Scope)],
        operations_until: Rc<Cell<SimTime>>,
        final_round: Rc<Cell<bool>>,
        observer: Rc<RefCell<SessionObserver>>,
    ) -> Result<SessionInstance, String> {
        settings.validate()?;
        // Members send a call's answer to the node its session id names: the instance's node
        // id, or no answer would ever reach it.
        let mut config = SessionConfig::new(node, members);
        config.attempt_timeout_us = micros(settings.attempt_timeout);
        config.stream_stall_timeout_us = micros(settings.stream_stall_timeout);
        config.call_timeout_us = micros(settings.call_timeout);
        config.planted_stream_per_object = settings.planted_stream_per_object;
        // The session id is the instance's node id too, so that the nodes route answers to it
        // (sessions outlive every run: the region's idle timeout is far longer).
        let session = ClientSession::new(config, node).map_err(|error| error.to_string())?;
        // No checkpoints: the simulated region takes no uploads, so the log is never truncated
        // below a copy and every open starts from the log's beginning.
        let replica = ReplicaConfig {
            checkpoint_every_records: 0,
            checkpoint_every_argument_bytes: 0,
            ..ReplicaConfig::default()
        };
        let objects = objects
            .iter()
            .map(|(name, scope)| {
                (
                    name.clone(),
                    Held {
                        scope: *scope,
                        copy: Arc::new(new_copy::<Register>(name, replica)),
                    },
                )
            })
            .collect();
        observer
            .borrow_mut()
            .instances
            .insert(index, InstanceHistory::new(&region));
        Ok(SessionInstance {
            settings,
            index,
            driver: SessionDriver::new(
                format!("instance {index}"),
                session,
                settings.log_read_timeout,
                settings.log_read_wait,
            ),
            objects,
            waiting: Waiting::Opens(BTreeMap::new()),
            think_timer: None,
            arrival_timer: None,
            arrivals: VecDeque::new(),
            next_value: 1,
            operations_done: 0,
            operations_until,
            final_round,
            observer,
        })
    }

    fn now_us(cx: &Context<'_, GlobalMessage>) -> u64 {
        SessionDriver::now_us(cx)
    }

    /// Sends what the session queued, delivers its events, arms its timer.
    fn pump(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        self.driver.flush(cx);
        while let Some(event) = self.driver.session_mut().poll_event() {
            self.handle_event(cx, event);
        }
        // Events may have started operations whose requests are queued now.
        self.driver.flush(cx);
        self.driver.arm_timer(cx);
        let notes = self.driver.drain();
        let mut observer = self.observer.borrow_mut();
        observer.proposals_unanswered += notes.proposals_unanswered;
        for violation in notes.violations {
            observer.violation(violation);
        }
    }

    fn handle_event(&mut self, cx: &mut Context<'_, GlobalMessage>, event: Event) {
        let now = cx.now();
        match event {
            Event::Opened { open_id, outcome } => {
                let Waiting::Opens(opens) = &mut self.waiting else {
                    return;
                };
                let Some(name) = opens.remove(&open_id) else {
                    return;
                };
                if let Err(error) = outcome {
                    self.observer.borrow_mut().violation(format!(
                        "instance {} could not open {name}: {error}",
                        self.index
                    ));
                    self.waiting = Waiting::Done;
                    return;
                }
                if opens.is_empty() {
                    self.observer.borrow_mut().opened += 1;
                    self.schedule_arrival(cx);
                    self.think(cx);
                }
            }
            Event::CallDone { call_id, outcome } => {
                let Waiting::Write {
                    call_id: waited,
                    object,
                    value,
                    began_at,
                } = self.waiting.clone()
                else {
                    return;
                };
                if waited != call_id {
                    return;
                }
                let replaced = outcome
                    .ok()
                    .and_then(|bytes| Postcard::decode::<u64>(&bytes).ok());
                self.record(SessionOperation::Write {
                    object,
                    value,
                    replaced,
                    began_at,
                    ended_at: now,
                });
                // Reading every register right after a write is what shows one copy lagging
                // another inside the instance, if the client let that happen.
                let names: Vec<String> = self.objects.keys().cloned().collect();
                for name in names {
                    self.read(&name, false, now, now);
                }
                self.think(cx);
            }
            Event::SyncDone { sync_id, outcome } => {
                let Waiting::Sync {
                    sync_id: waited,
                    object,
                    began_at,
                } = self.waiting.clone()
                else {
                    return;
                };
                if waited != sync_id {
                    return;
                }
                if outcome.is_ok() {
                    let names: Vec<String> = match object {
                        Some(name) => vec![name],
                        None => self.objects.keys().cloned().collect(),
                    };
                    for name in names {
                        self.read(&name, true, began_at, now);
                    }
                } else {
                    self.observer.borrow_mut().syncs_failed += 1;
                    self.record(SessionOperation::SyncFailed {
                        object,
                        began_at,
                        ended_at: now,
                    });
                }
                if self.waiting_final() {
                    let counters = self.driver.session().counters();
                    let mut observer = self.observer.borrow_mut();
                    observer.finished += 1;
                    observer.counters.stream_moves += counters.stream_moves;
                    observer.counters.stream_stalls += counters.stream_stalls;
                    observer.counters.call_retries += counters.call_retries;
                    observer.counters.copies_joined += counters.copies_joined;
                    observer.counters.copies_restored += counters.copies_restored;
                    observer.counters.copies_behind_skipped_epochs +=
                        counters.copies_behind_skipped_epochs;
                    drop(observer);
                    self.waiting = Waiting::Done;
                } else {
                    self.think(cx);
                }
            }
            Event::CheckpointDiverged { object_id, .. } => {
                self.observer.borrow_mut().violation(format!(
                    "instance {}: checkpoint divergence on {object_id}",
                    self.index
                ));
            }
            Event::SessionClosed { close_id, .. } => {
                // This workload's instances keep their sessions to the end.
                self.observer.borrow_mut().violation(format!(
                    "instance {}: a session close {close_id} nobody asked for finished",
                    self.index
                ));
            }
        }
    }

    fn waiting_final(&self) -> bool {
        matches!(&self.waiting, Waiting::Sync { object: None, .. })
    }

    fn think(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        self.waiting = Waiting::Thinking;
        if self.settings.open_loop_rate_per_s.is_some() {
            // The next operation is the oldest waiting arrival, run on a timer of its own so
            // that a backlog of local reads does not recurse; with none waiting, the next
            // arrival starts it. Once arrivals ended, poll for the final round.
            if !self.arrivals.is_empty() {
                self.think_timer = Some(cx.set_timer(Duration::ZERO));
            } else if self.arrival_timer.is_none() {
                self.think_timer = Some(cx.set_timer(IDLE_POLL));
            }
            return;
        }
        let min = self.settings.think_time_min;
        let max = self.settings.think_time_max;
        let span = micros(max.saturating_sub(min));
        let pause = min
            + Duration::from_micros(if span == 0 {
                0
            } else {
                cx.rng().next_u64() % (span + 1)
            });
        self.think_timer = Some(cx.set_timer(pause));
    }

    /// Whether the operation window is over for this instance.
    fn operations_ended(&self, now: SimTime) -> bool {
        now >= self.operations_until.get() || self.operations_done >= self.settings.operations_max
    }

    /// Open loop: arms the timer of the next arrival, an exponentially distributed wait away,
    /// unless the operation window is over.
    fn schedule_arrival(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let Some(rate) = self.settings.open_loop_rate_per_s else {
            return;
        };
        if self.operations_ended(cx.now()) {
            return;
        }
        // Inverse transform of a uniform draw in (0, 1]; whole microseconds, at least one.
        let uniform = 1.0 - cx.rng().next_f64();
        let wait_us = (-uniform.ln() / rate * 1e6).ceil().clamp(1.0, 3.6e9) as u64;
        self.arrival_timer = Some(cx.set_timer(Duration::from_micros(wait_us)));
    }

    /// Open loop: an operation arrived; it waits in the backlog (or is shed when the backlog
    /// is full) and starts at once if the instance is idle.
    fn arrive(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        self.arrival_timer = None;
        let queued = self.arrivals.len() < ARRIVALS_QUEUED_MAX;
        if queued {
            self.arrivals.push_back(cx.now());
        }
        let mut observer = self.observer.borrow_mut();
        if let Some(history) = observer.instances.get_mut(&self.index) {
            history.arrivals += 1;
            history.arrivals_shed += u64::from(!queued);
        }
        drop(observer);
        self.schedule_arrival(cx);
        if matches!(self.waiting, Waiting::Thinking) && self.think_timer.is_none() {
            self.think(cx);
        }
    }

    /// The next operation, or the final round, or nothing more.
    fn operate(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let now = cx.now();
        let now_us = Self::now_us(cx);
        // Open loop: arrivals start once the harness opens the operation window (until then
        // the instance polls, as a closed-loop one thinks).
        if self.settings.open_loop_rate_per_s.is_some()
            && self.arrival_timer.is_none()
            && self.arrivals.is_empty()
            && !self.operations_ended(now)
        {
            self.schedule_arrival(cx);
        }
        // Open loop: the operation began when it arrived, however long it waited.
        let began_at = match self.settings.open_loop_rate_per_s {
            Some(_) => self.arrivals.pop_front(),
            None => Some(now),
        };
        let Some(began_at) = began_at.filter(|_| !self.operations_ended(now)) else {
            // Arrivals still waiting when the window closes are dropped: the window is over.
            self.arrivals.clear();
            if self.final_round.get() {
                match self.driver.session_mut().sync(now_us) {
                    Ok(sync_id) => {
                        self.waiting = Waiting::Sync {
                            sync_id,
                            object: None,
                            began_at: now,
                        }
                    }
                    Err(error) => {
                        self.observer
                            .borrow_mut()
                            .violation(format!("instance {}: final sync: {error}", self.index));
                        self.waiting = Waiting::Done;
                    }
                }
            } else {
                // Idle until the harness starts the final round.
                self.think(cx);
            }
            return;
        };
        self.operations_done += 1;
        let names: Vec<&String> = self.objects.keys().collect();
        let object = match self.settings.popularity {
            // Drawn as always, so that runs of earlier releases keep their seeds' histories.
            Popularity::Uniform => names[(cx.rng().next_u64() % names.len() as u64) as usize],
            popularity => names[popularity.pick(names.len(), cx.rng().next_f64())],
        }
        .clone();
        let draw = cx.rng().next_f64();
        if draw < self.settings.write_share {
            // Unique in the run: the instance's index in the high bits.
            let value = (self.index << 32) | self.next_value;
            self.next_value += 1;
            let (method_id, arguments) = match self.settings.payload_bytes {
                // No payload: no draw, so that runs without payloads keep their histories.
                (0, 0) => (
                    WRITE_METHOD_ID,
                    Postcard::encode(&(value,)).expect("a u64 encodes"),
                ),
                (smallest, largest) => {
                    let span = (largest - smallest) as u64 + 1;
                    let size = smallest + (cx.rng().next_u64() % span) as usize;
                    // The bytes themselves do not matter; their number does.
                    let payload = vec![(value & 0xff) as u8; size];
                    (
                        WRITE_WITH_PAYLOAD_METHOD_ID,
                        Postcard::encode(&(value, payload)).expect("bytes encode"),
                    )
                }
            };
            match self
                .driver
                .session_mut()
                .call(now_us, &object, method_id, arguments)
            {
                Ok(call_id) => {
                    self.waiting = Waiting::Write {
                        call_id,
                        object,
                        value,
                        began_at,
                    }
                }
                Err(error) => {
                    self.observer
                        .borrow_mut()
                        .violation(format!("instance {}: call refused: {error}", self.index));
                    self.think(cx);
                }
            }
        } else if cx.rng().next_f64() < self.settings.sync_read_share {
            match self.driver.session_mut().sync(now_us) {
                Ok(sync_id) => {
                    self.waiting = Waiting::Sync {
                        sync_id,
                        object: Some(object),
                        began_at,
                    }
                }
                Err(error) => {
                    self.observer
                        .borrow_mut()
                        .violation(format!("instance {}: sync refused: {error}", self.index));
                    self.think(cx);
                }
            }
        } else {
            self.read(&object, false, began_at, now);
            self.think(cx);
        }
    }

    fn read(&mut self, name: &str, synced: bool, began_at: SimTime, ended_at: SimTime) {
        let Some(held) = self.objects.get(name) else {
            return;
        };
        let view = self.driver.session().view();
        let _reading = view.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let value = held.copy.read(Register::value);
        let position = held.copy.lock_read().position();
        self.record(SessionOperation::Read {
            object: name.to_owned(),
            value,
            synced,
            position,
            began_at,
            ended_at,
        });
    }

    fn record(&mut self, operation: SessionOperation) {
        let mut observer = self.observer.borrow_mut();
        if let Some(history) = observer.instances.get_mut(&self.index) {
            history.push(operation);
        }
    }
}

impl Process for SessionInstance {
    type Message = GlobalMessage;

    fn handle_start(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let now_us = Self::now_us(cx);
        let mut opens = BTreeMap::new();
        let names: Vec<(String, Scope, Arc<SharedReplica<Register>>)> = self
            .objects
            .iter()
            .map(|(name, held)| (name.clone(), held.scope, Arc::clone(&held.copy)))
            .collect();
        for (name, scope, copy) in names {
            match self.driver.session_mut().open(now_us, &name, scope, copy) {
                Ok(open_id) => {
                    opens.insert(open_id, name);
                }
                Err(error) => self.observer.borrow_mut().violation(format!(
                    "instance {} could not begin opening {name}: {error}",
                    self.index
                )),
            }
        }
        self.waiting = Waiting::Opens(opens);
        self.pump(cx);
    }

    fn handle_message(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        from: NodeId,
        message: GlobalMessage,
    ) {
        self.driver.handle_message(cx, from, message);
        self.pump(cx);
    }

    fn handle_timer(&mut self, cx: &mut Context<'_, GlobalMessage>, timer: TimerId) {
        if self.driver.handle_timer(cx, timer) {
            // The driver's: the session's deadline, or a stream's log read or poll.
        } else if self.think_timer == Some(timer) {
            self.think_timer = None;
            if matches!(self.waiting, Waiting::Thinking) {
                self.operate(cx);
            }
        } else if self.arrival_timer == Some(timer) {
            self.arrive(cx);
        }
        self.pump(cx);
    }
}

impl Application for SessionInstance {
    fn is_busy(&self) -> bool {
        !matches!(self.waiting, Waiting::Thinking | Waiting::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::session::SessionRunSettings;

    #[test]
    fn an_open_loop_rate_and_a_payload_are_taken_up_to_their_bounds() {
        let mut settings = SessionRunSettings::new(1, dsss_topology::local_default()).instance;
        settings.open_loop_rate_per_s = Some(OPEN_LOOP_RATE_PER_INSTANCE_MAX);
        settings.payload_bytes = (PAYLOAD_BYTES_MAX, PAYLOAD_BYTES_MAX);
        assert_eq!(settings.validate(), Ok(()));
        settings.open_loop_rate_per_s = Some(OPEN_LOOP_RATE_PER_INSTANCE_MAX * 1.5);
        let error = settings.validate().unwrap_err();
        assert!(error.contains("open_loop_rate_per_s: 15000"), "{error}");
        settings.open_loop_rate_per_s = Some(0.0);
        assert!(settings.validate().is_err());
        settings.open_loop_rate_per_s = None;
        settings.payload_bytes = (0, PAYLOAD_BYTES_MAX + 1);
        let error = settings.validate().unwrap_err();
        assert!(error.contains("payload_bytes"), "{error}");
    }
}
