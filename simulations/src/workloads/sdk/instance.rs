//! [`SdkInstance`]: a simulated application instance that runs the SDK's own
//! [`ClientSession`], exactly as `dsss::Client` does in production (through the simulator's
//! [`SessionDriver`], which the session workload's instances use too), with several objects of
//! the example types open at once: global ones, and its region's copy of regional ones.
//!
//! The application on top: it opens every object at once; the instance that sets objects up
//! makes their setup calls, one after the other; once every copy shows its setup, the instance
//! makes one operation at a time until the fault window ends: a random call of a random
//! object, a local read of one, or a `sync()` barrier and then a read. Each copy is a
//! [`RecordedCopy`](super::objects::RecordedCopy), the SDK's own copy with a note of every record it applied, so the history
//! holds what the client saw and what each copy did.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use dsss::CallError;
use dsss::replica::ReplicaConfig;
use dsss::session::{ClientSession, Event, SessionConfig};
use dsss_wire::Scope;

use super::history::{
    AppliedRecord, CallCompletion, CallEvent, CallSpec, DynValue, Operation, ReadEvent,
    SdkObserver, SyncBarrier,
};
use super::objects::{AnyObjectWorkload, HeldObject};
use crate::network::NodeId;
use crate::process::{Context, Process, TimerId};
use crate::time::SimTime;
use crate::workloads::global::{Application, GlobalMessage};
use crate::workloads::session::driver::{SessionDriver, micros};

/// How instances behave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ApplicationSettings {
    /// The shortest pause between two operations.
    pub think_time_min: Duration,
    /// The longest pause.
    pub think_time_max: Duration,
    /// The share of operations that are calls; the others are reads.
    pub call_share: f64,
    /// The share of reads that follow a `sync()` barrier.
    pub sync_read_share: f64,
    /// The most random operations one instance makes (the setup not counted).
    pub operations_max: usize,
    /// How long one request may go unanswered before the session tries another member.
    pub attempt_timeout: Duration,
    /// How long the log stream may stall while something waits on it.
    pub stream_stall_timeout: Duration,
    /// How long a call, an open or a barrier may take over all attempts.
    pub call_timeout: Duration,
    /// How long the driver waits for a member's answer to a log read before asking again.
    pub log_read_timeout: Duration,
    /// How long a member may hold a log read that finds nothing new before it answers empty
    /// (it answers as soon as it applies something, as a production stream pushes).
    pub log_read_wait: Duration,
    /// Every copy makes a checkpoint after this many records of its object (0: never); the
    /// checkers compare the state hashes of copies at equal counts.
    pub checkpoint_every_records: u64,
    /// Runs the session in its planted stream-per-object mode, a bug the checks must catch:
    /// every object follows the log with a stream of its own, so one copy may lag another
    /// inside the instance.
    pub planted_stream_per_object: bool,
}

impl ApplicationSettings {
    /// Rejects settings an instance cannot honour, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        crate::workloads::common::validate_instance_settings(
            (self.think_time_min, self.think_time_max),
            &[
                ("call_share", self.call_share),
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
        if self.operations_max > super::history::OPERATIONS_PER_CLIENT_MAX / 2 {
            return Err(format!(
                "operations_max {} is above {}",
                self.operations_max,
                super::history::OPERATIONS_PER_CLIENT_MAX / 2
            ));
        }
        Ok(())
    }
}

/// One object the instance holds.
struct Held {
    name: String,
    scope: Scope,
    workload: Rc<dyn AnyObjectWorkload>,
    copy: Box<dyn HeldObject>,
}

/// What the instance waits on.
enum Waiting {
    /// Opens not finished yet: open id to object index.
    Opens(BTreeMap<u64, usize>),
    /// Nothing: a think timer may run.
    Idle,
    /// A call; its sequence once the session proposed it.
    Call {
        call_id: u64,
        object: usize,
        method_id: u32,
        sequence: Option<u64>,
    },
    /// A barrier, then `read` of `object`.
    Sync {
        sync_id: u64,
        object: usize,
        read: DynValue,
        began_at: SimTime,
    },
    /// Stopped by a problem, noted.
    Halted,
}

/// A simulated application instance running the SDK's session. See the module documentation.
pub struct SdkInstance {
    settings: ApplicationSettings,
    node: NodeId,
    driver: SessionDriver,
    objects: Vec<Held>,
    setup: VecDeque<(usize, CallSpec)>,
    waiting: Waiting,
    set_up: bool,
    think_timer: Option<TimerId>,
    operations_done: usize,
    operations_until: Rc<Cell<SimTime>>,
    observer: Rc<RefCell<SdkObserver>>,
}

impl SdkInstance {
    /// An instance running as node `node` in `region` whose members are `members`, holding
    /// one object of each of `workloads` (its region's, for a regional one), making the setup
    /// calls of the workloads whose index `sets_up` holds. It operates until
    /// `operations_until`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: ApplicationSettings,
        node: NodeId,
        region: &str,
        members: Vec<NodeId>,
        workloads: &[Rc<dyn AnyObjectWorkload>],
        sets_up: &[usize],
        operations_until: Rc<Cell<SimTime>>,
        observer: Rc<RefCell<SdkObserver>>,
    ) -> Result<SdkInstance, String> {
        settings.validate()?;
        if workloads.is_empty() {
            return Err("an instance needs at least one object".to_owned());
        }
        // Members send a call's answer to the node its session id names: the instance's node
        // id, or no answer would ever reach it.
        let mut config = SessionConfig::new(node, members);
        config.attempt_timeout_us = micros(settings.attempt_timeout);
        config.stream_stall_timeout_us = micros(settings.stream_stall_timeout);
        config.call_timeout_us = micros(settings.call_timeout);
        config.planted_stream_per_object = settings.planted_stream_per_object;
        let session = ClientSession::new(config, node).map_err(|error| error.to_string())?;
        let replica = ReplicaConfig {
            checkpoint_every_records: settings.checkpoint_every_records,
            ..ReplicaConfig::default()
        };
        replica.validate()?;
        let objects: Vec<Held> = workloads
            .iter()
            .map(|workload| {
                let name = workload.object_id_in(region);
                Held {
                    copy: workload.hold(&name, replica),
                    name,
                    scope: workload.scope(),
                    workload: Rc::clone(workload),
                }
            })
            .collect();
        let setup = sets_up
            .iter()
            .filter_map(|&index| Some((index, objects.get(index)?)))
            .flat_map(|(index, held)| {
                held.workload
                    .setup_calls()
                    .into_iter()
                    .map(move |call| (index, call))
            })
            .collect();
        let names: Vec<String> = objects.iter().map(|held| held.name.clone()).collect();
        observer.borrow_mut().register(node, region, &names);
        Ok(SdkInstance {
            settings,
            node,
            driver: SessionDriver::new(
                format!("client {node} ({region})"),
                session,
                settings.log_read_timeout,
                settings.log_read_wait,
            ),
            objects,
            setup,
            waiting: Waiting::Opens(BTreeMap::new()),
            set_up: false,
            think_timer: None,
            operations_done: 0,
            operations_until,
            observer,
        })
    }

    fn violation(&mut self, problem: String) {
        self.observer
            .borrow_mut()
            .violation(format!("client {}: {problem}", self.node));
    }

    /// Notes what the copies applied, sends what the session queued, delivers its events,
    /// arms its timer.
    fn pump(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        self.absorb_copies();
        self.driver.flush(cx);
        self.absorb_driver_notes(cx);
        while let Some(event) = self.driver.session_mut().poll_event() {
            self.handle_event(cx, event);
        }
        // Events may have started operations whose requests are queued now.
        self.driver.flush(cx);
        self.absorb_driver_notes(cx);
        self.driver.arm_timer(cx);
        if !self.set_up && matches!(self.waiting, Waiting::Idle) {
            self.next(cx);
        }
        let counters = self.driver.session().counters();
        self.observer
            .borrow_mut()
            .session_counters(self.node, counters);
    }

    /// Moves the copies' notes into the history.
    fn absorb_copies(&mut self) {
        let mut problems = Vec::new();
        let mut observer = self.observer.borrow_mut();
        for held in &self.objects {
            let notes = held.copy.drain();
            if notes.dropped > 0 {
                problems.push(format!(
                    "the copy of {} dropped {} notes between two drains",
                    held.name, notes.dropped
                ));
            }
            for applied in notes.applied {
                let order = match held.scope {
                    Scope::Global => match self.driver.order_key(applied.position) {
                        Some(order) => order,
                        None => {
                            problems.push(format!(
                                "the copy of {} applied a record at position {} that no \
                                 sequenced entry forwarded",
                                held.name, applied.position
                            ));
                            continue;
                        }
                    },
                    Scope::Regional => (applied.position, 0),
                };
                observer.applied(
                    &held.name,
                    self.node,
                    AppliedRecord {
                        position: applied.position,
                        records_applied: applied.records_applied,
                        order,
                        client_id: applied.client_id,
                        request_sequence: applied.request_sequence,
                        call: applied.call,
                    },
                );
            }
            for (records_applied, hash) in notes.checkpoints {
                observer.checkpoint(&held.name, self.node, records_applied, hash);
            }
        }
        drop(observer);
        for problem in problems {
            self.violation(problem);
        }
    }

    /// Notes the driver's counts, the sequence of the call waited on, acknowledgements.
    fn absorb_driver_notes(&mut self, cx: &Context<'_, GlobalMessage>) {
        let notes = self.driver.drain();
        let now = cx.now();
        let mut observer = self.observer.borrow_mut();
        observer.counters.proposals_unanswered += notes.proposals_unanswered as u64;
        observer.counters.log_reads += notes.log_reads;
        for violation in notes.violations {
            observer.violation(violation);
        }
        for proposal in notes.proposed {
            if let Waiting::Call {
                object,
                method_id,
                sequence: sequence @ None,
                ..
            } = &mut self.waiting
                && proposal.object_id == self.objects[*object].name
                && proposal.method_id == *method_id
            {
                // One call at a time: the first proposal of this object and method after the
                // call began is its (a schema declaration has a method id of its own).
                *sequence = Some(proposal.request_sequence);
                if let Some(call) = observer.last_call_mut(self.node) {
                    call.sequence = proposal.request_sequence;
                }
            }
        }
        for (sequence, position) in notes.acknowledged {
            if let Some(call) = observer.call_mut(self.node, sequence)
                && call.acknowledged.is_none()
            {
                call.acknowledged = Some((now, position));
            }
        }
    }

    fn handle_event(&mut self, cx: &mut Context<'_, GlobalMessage>, event: Event) {
        match event {
            Event::Opened { open_id, outcome } => {
                let Waiting::Opens(opens) = &mut self.waiting else {
                    return;
                };
                let Some(index) = opens.remove(&open_id) else {
                    return;
                };
                let all_open = opens.is_empty();
                if let Err(error) = outcome {
                    let name = self.objects[index].name.clone();
                    self.violation(format!("could not open {name}: {error}"));
                    self.waiting = Waiting::Halted;
                    return;
                }
                if all_open {
                    self.waiting = Waiting::Idle;
                    self.next(cx);
                }
            }
            Event::CallDone { call_id, outcome } => {
                let Waiting::Call {
                    call_id: waited,
                    object,
                    sequence,
                    ..
                } = self.waiting
                else {
                    return;
                };
                if waited != call_id {
                    return;
                }
                self.waiting = Waiting::Idle;
                let outcome = match outcome {
                    Ok(result) => Some(Ok(result)),
                    Err(CallError::Method(error)) => Some(Err(error)),
                    // It may or may not have been applied: the checks treat it so.
                    Err(_) => None,
                };
                match outcome {
                    Some(outcome) => self.complete(cx, object, sequence, outcome),
                    None => self
                        .observer
                        .borrow_mut()
                        .call_given_up(self.node, cx.now()),
                }
                self.next(cx);
            }
            Event::SyncDone { sync_id, outcome } => {
                let Waiting::Sync {
                    sync_id: waited,
                    object,
                    began_at,
                    ..
                } = &self.waiting
                else {
                    return;
                };
                if *waited != sync_id {
                    return;
                }
                let (object, began_at) = (*object, *began_at);
                let Waiting::Sync { read, .. } =
                    std::mem::replace(&mut self.waiting, Waiting::Idle)
                else {
                    return;
                };
                if outcome.is_ok() {
                    let barrier = SyncBarrier {
                        began_at,
                        apply_through_position: self.driver.session().position(),
                    };
                    self.observer.borrow_mut().counters.syncs += 1;
                    self.read(cx, object, read, Some(barrier));
                } else {
                    let name = &self.objects[object].name;
                    let mut observer = self.observer.borrow_mut();
                    observer.counters.syncs_failed += 1;
                    observer.sync_given_up(self.node, name, began_at, cx.now());
                }
                self.next(cx);
            }
            Event::CheckpointDiverged {
                object_id,
                position,
            } => {
                self.violation(format!(
                    "the region found a divergent checkpoint of {object_id} at {position}"
                ));
            }
            Event::SessionClosed { close_id, .. } => {
                // This workload's instances keep their sessions to the end.
                self.violation(format!(
                    "a session close {close_id} nobody asked for finished"
                ));
            }
        }
    }

    /// Records how the call waited on ended, from the record its copy applied.
    fn complete(
        &mut self,
        cx: &Context<'_, GlobalMessage>,
        object: usize,
        sequence: Option<u64>,
        outcome: Result<Vec<u8>, dsss::MethodError>,
    ) {
        let name = self.objects[object].name.clone();
        let Some(sequence) = sequence else {
            self.violation(format!(
                "a call of {name} completed that was never proposed"
            ));
            return;
        };
        let mut observer = self.observer.borrow_mut();
        let applied =
            observer.replica(&name, self.node).and_then(|replica| {
                replica.applied.iter().rev().find(|record| {
                    record.client_id == self.node && record.request_sequence == sequence
                })
            });
        let Some(applied) = applied.cloned() else {
            drop(observer);
            self.violation(format!(
                "call s{sequence} of {name} completed, but its copy never applied its record"
            ));
            return;
        };
        if let Some(call) = observer.last_call_mut(self.node) {
            call.completion = Some(CallCompletion {
                completed_at: cx.now(),
                position: applied.position,
                records_applied: applied.records_applied,
                order: applied.order,
                outcome,
            });
        }
    }

    /// Reads `object` locally and records it.
    fn read(
        &mut self,
        cx: &Context<'_, GlobalMessage>,
        object: usize,
        read: DynValue,
        sync: Option<SyncBarrier>,
    ) {
        let held = &self.objects[object];
        // Under the session's view, as `Object::read` reads: between two pieces of the
        // stream, never inside one.
        let view = self.driver.session().view();
        let reading = view.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let value = held.copy.read(&read);
        let records_applied = held.copy.records_applied();
        drop(reading);
        let Some(value) = value else {
            let name = held.name.clone();
            self.violation(format!(
                "a read of {name} is not one of its workload: {read:?}"
            ));
            return;
        };
        let operation = Operation::Read(ReadEvent {
            object: held.name.clone(),
            read,
            value,
            records_applied,
            at: cx.now(),
            sync,
        });
        self.observer.borrow_mut().operation(self.node, operation);
    }

    /// What comes next: a setup call at once; else, once every copy shows its setup, a pause
    /// before a random operation.
    fn next(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        if !matches!(self.waiting, Waiting::Idle) {
            return;
        }
        if let Some((object, call)) = self.setup.pop_front() {
            self.start_call(cx, object, call);
            return;
        }
        if !self.set_up {
            if !self.objects.iter().all(|held| held.copy.is_set_up()) {
                // Looked at again when the copies move (`pump`).
                return;
            }
            self.set_up = true;
            self.observer.borrow_mut().set_up(self.node, cx.now());
        }
        if !self.may_operate(cx) || self.think_timer.is_some() {
            return;
        }
        let low = u64::try_from(self.settings.think_time_min.as_nanos()).unwrap_or(u64::MAX);
        let high = u64::try_from(self.settings.think_time_max.as_nanos())
            .unwrap_or(u64::MAX)
            .max(low);
        let pause = Duration::from_nanos(cx.rng().range_inclusive(low, high));
        self.think_timer = Some(cx.set_timer(pause));
    }

    fn may_operate(&self, cx: &Context<'_, GlobalMessage>) -> bool {
        cx.now() < self.operations_until.get()
            && self.operations_done < self.settings.operations_max
    }

    fn random_operation(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        if !matches!(self.waiting, Waiting::Idle) || !self.may_operate(cx) {
            return;
        }
        self.operations_done += 1;
        let object = cx.rng().below(self.objects.len() as u64) as usize;
        if cx.rng().chance(self.settings.call_share) {
            let call = self.objects[object].workload.random_call(cx.rng());
            self.start_call(cx, object, call);
            return;
        }
        let read = self.objects[object].workload.random_read(cx.rng());
        if cx.rng().chance(self.settings.sync_read_share) {
            let now_us = SessionDriver::now_us(cx);
            match self.driver.session_mut().sync(now_us) {
                Ok(sync_id) => {
                    self.waiting = Waiting::Sync {
                        sync_id,
                        object,
                        read,
                        began_at: cx.now(),
                    };
                }
                Err(error) => {
                    self.violation(format!("sync() refused: {error}"));
                    self.next(cx);
                }
            }
            return;
        }
        self.read(cx, object, read, None);
        self.next(cx);
    }

    fn start_call(&mut self, cx: &mut Context<'_, GlobalMessage>, object: usize, call: CallSpec) {
        let now_us = SessionDriver::now_us(cx);
        let name = self.objects[object].name.clone();
        self.observer.borrow_mut().operation(
            self.node,
            Operation::Call(CallEvent {
                object: name.clone(),
                // Known once the session proposes it (`absorb_driver_notes`).
                sequence: 0,
                call: call.clone(),
                invoked_at: cx.now(),
                acknowledged: None,
                completion: None,
                gave_up_at: None,
            }),
        );
        match self
            .driver
            .session_mut()
            .call(now_us, &name, call.method_id, call.arguments)
        {
            Ok(call_id) => {
                self.waiting = Waiting::Call {
                    call_id,
                    object,
                    method_id: call.method_id,
                    sequence: None,
                };
            }
            Err(error) => {
                self.violation(format!("the session refused a call of {name}: {error}"));
                self.waiting = Waiting::Halted;
            }
        }
    }
}

impl Process for SdkInstance {
    type Message = GlobalMessage;

    fn handle_start(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let now_us = SessionDriver::now_us(cx);
        let mut opens = BTreeMap::new();
        for index in 0..self.objects.len() {
            let held = &self.objects[index];
            let (name, scope, copy) = (held.name.clone(), held.scope, held.copy.copy());
            match self.driver.session_mut().open(now_us, &name, scope, copy) {
                Ok(open_id) => {
                    opens.insert(open_id, index);
                }
                Err(error) => {
                    self.violation(format!("could not begin opening {name}: {error}"));
                }
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
            self.random_operation(cx);
        }
        self.pump(cx);
    }
}

impl Application for SdkInstance {
    fn is_busy(&self) -> bool {
        matches!(
            self.waiting,
            Waiting::Opens(_) | Waiting::Call { .. } | Waiting::Sync { .. }
        ) || !self.setup.is_empty()
    }
}
