//! [`MonthSlot`]: one simulated place where application instances come and go, one after
//! another, each running the SDK's own [`ClientSession`] through the simulator's
//! [`SessionDriver`] (shared with the session and sdk workloads), with checkpoint uploads
//! carried to the region as production's driver carries them.
//!
//! An instance opens a few journals (objects of its own that no other instance opens, perhaps
//! a popular one of its region that many instances share, perhaps a global one), appends
//! payloads to them for a while, and then goes away in one of three ways: it closes every
//! object and ends; it ends at once without closing anything (a process that exits or
//! crashes); or it lingers, idle, for a while and then ends without closing. After a pause the
//! slot starts the next instance, with a new session id. Once arrivals stop, the instances
//! still running stop writing and hold their objects until the final round: one append, a
//! `sync()` barrier, and a read of every object held. Once every holder has read, each opens
//! the first global object never opened in its region that a holder elsewhere read: its
//! region released its records (nobody there followed them), so the open completes by the
//! region adopting another region's checkpoint of it (docs/design.md section 2.8); after
//! another barrier the instance reads it too, to be compared with the other regions' copies.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use dsss::replica::{ReplicaConfig, SharedReplica};
use dsss::session::{ClientSession, Event, SessionConfig, new_copy};
use dsss::{Codec, Postcard};
use dsss_examples::Journal;
use dsss_region_node::{ProposeError, Reply};
use dsss_wire::Scope;

use super::{FinalRound, MonthObserver, MonthSettings, ObjectRead, global_object_opened_in};
use crate::network::NodeId;
use crate::process::{Context, Process, TimerId};
use crate::time::SimTime;
use crate::workloads::common::uniform_duration;
use crate::workloads::global::{Application, GlobalMessage};
use crate::workloads::session::driver::{SessionDriver, micros};

/// The method id of `Journal::append`.
const APPEND_METHOD_ID: u32 = 1;

/// How often an instance that holds its objects looks whether the final round began.
const HOLDING_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long the application waits before it opens again a late object whose open failed
/// because the region released its records (no region served a checkpoint to adopt yet: the
/// other regions' copies checkpoint once their final append is idle).
const LATE_OPEN_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The pause of a keeper between two appends, shortest (the longest is twice as long).
const KEEPER_THINK_TIME: Duration = Duration::from_secs(30);

/// The most opens of the late object an instance makes.
pub const LATE_OPEN_ATTEMPTS_MAX: u32 = 4;

/// How an instance goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It closes every object, then ends.
    Closes,
    /// It ends at once, closing nothing.
    Abandons,
    /// It stays idle, its objects open, for this long, then ends closing nothing.
    Lingers(Duration),
}

impl Ending {
    /// The name of the kind in reports.
    pub fn kind(self) -> &'static str {
        match self {
            Ending::Closes => "closed its objects",
            Ending::Abandons => "abandoned its objects at once",
            Ending::Lingers(_) => "lingered, then abandoned its objects",
        }
    }
}

/// One journal an instance holds.
struct Held {
    scope: Scope,
    copy: Arc<SharedReplica<Journal>>,
}

/// What an instance waits on.
#[derive(Clone, Debug)]
enum Waiting {
    /// Opens not finished yet, by open id.
    Opens(BTreeMap<u64, String>),
    /// The think timer runs.
    Thinking,
    /// An append of `payload_bytes` to `object`.
    Append {
        call_id: u64,
        object: String,
        payload_bytes: usize,
    },
    /// Done writing; the linger timer runs.
    Lingering,
    /// Arrivals stopped: holding the objects until the final round.
    Holding,
    /// The final round's opens of the objects every holder shares, by open id.
    FinalOpens(BTreeMap<u64, String>),
    /// The final round's append.
    FinalAppend { call_id: u64 },
    /// The final append is done: waiting for every holder's, before the barrier.
    AwaitingReads,
    /// The final round's barrier.
    FinalSync { sync_id: u64 },
    /// The final reads are done: waiting for every holder's, before the late open.
    AwaitingLate,
    /// The open of the late object `name`, the `attempt`th.
    LateOpen {
        open_id: u64,
        name: String,
        attempt: u32,
    },
    /// The late object's open is tried again when the late timer fires.
    LateRetry { attempt: u32 },
    /// The barrier before the late object is read.
    LateSync { sync_id: u64, name: String },
    /// The final round is done.
    Finished,
}

/// A running instance.
struct Live {
    index: u64,
    driver: SessionDriver,
    objects: BTreeMap<String, Held>,
    waiting: Waiting,
    appends_left: u32,
    ending: Ending,
    think_timer: Option<TimerId>,
    linger_timer: Option<TimerId>,
    holding_timer: Option<TimerId>,
    late_timer: Option<TimerId>,
    /// Whether this is its region's keeper (see [`MonthSettings::late_global_opens`]).
    keeper: bool,
}

/// A place where instances come and go. See the module documentation.
pub struct MonthSlot {
    settings: Rc<MonthSettings>,
    node: NodeId,
    region: String,
    region_index: usize,
    /// Every region's name, for the bytes a global append adds to each.
    region_names: Vec<String>,
    members: Vec<NodeId>,
    /// Instances started here so far (the high bits of the next session id).
    generation: u64,
    live: Option<Live>,
    start_timer: Option<TimerId>,
    arrivals_until: SimTime,
    final_round: Rc<Cell<FinalRound>>,
    observer: Rc<RefCell<MonthObserver>>,
}

impl MonthSlot {
    /// The slot running as node `node` in `region` (index `region_index` in the topology)
    /// whose members are `members`. New instances start until `arrivals_until`.
    pub fn new(
        settings: Rc<MonthSettings>,
        node: NodeId,
        region: String,
        region_index: usize,
        members: Vec<NodeId>,
        final_round: Rc<Cell<FinalRound>>,
        observer: Rc<RefCell<MonthObserver>>,
    ) -> MonthSlot {
        let arrivals_until = SimTime::ZERO.saturating_add(settings.arrivals_for);
        let region_names = settings
            .topology
            .regions
            .iter()
            .map(|region| region.id.clone())
            .collect();
        MonthSlot {
            settings,
            node,
            region_names,
            region,
            region_index,
            members,
            generation: 0,
            live: None,
            start_timer: None,
            arrivals_until,
            final_round,
            observer,
        }
    }

    fn schedule_start(&mut self, cx: &mut Context<'_, GlobalMessage>, low: Duration) {
        let high = low.max(self.settings.gap.1);
        let after = uniform_duration(cx.rng(), low, high);
        if cx.now().saturating_add(after) < self.arrivals_until {
            self.start_timer = Some(cx.set_timer(after));
        }
    }

    /// The objects a new instance opens: fresh objects of its own, perhaps a popular one of
    /// its region, perhaps a global one opened in this region.
    fn draw_objects(&self, cx: &mut Context<'_, GlobalMessage>) -> Vec<(String, Scope)> {
        let settings = &self.settings;
        let mut objects = Vec::new();
        let own = cx.rng().range_inclusive(
            settings.own_objects_per_instance.0 as u64,
            settings.own_objects_per_instance.1 as u64,
        );
        let per_region = settings.own_objects_per_region();
        {
            let mut observer = self.observer.borrow_mut();
            let next = observer.next_own.entry(self.region.clone()).or_default();
            for _ in 0..own {
                if *next >= per_region {
                    break;
                }
                objects.push((
                    format!("journal/{}/own-{}", self.region, *next),
                    Scope::Regional,
                ));
                *next += 1;
            }
        }
        if settings.popular_objects_per_region > 0 && cx.rng().chance(settings.popular_share) {
            let popular = cx.rng().below(settings.popular_objects_per_region as u64);
            objects.push((
                format!("journal/{}/popular-{popular}", self.region),
                Scope::Regional,
            ));
        }
        let regions = settings.topology.regions.len();
        let eligible: Vec<usize> = (0..settings.global_objects)
            .filter(|&index| global_object_opened_in(index, self.region_index, regions))
            .collect();
        if !eligible.is_empty() && cx.rng().chance(settings.global_share) {
            let index = *cx.rng().choose(&eligible).expect("not empty");
            objects.push((format!("journal/global-{index}"), Scope::Global));
        }
        objects
    }

    fn start_instance(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        self.generation += 1;
        let settings = Rc::clone(&self.settings);
        // New to the region for every instance: the high bits count the slot's instances, the
        // low ones name the node (members route answers by the node that proposed).
        let session_id = (self.generation << 32) | self.node;
        let mut config = SessionConfig::new(self.node, self.members.clone());
        config.attempt_timeout_us = micros(settings.attempt_timeout);
        config.stream_stall_timeout_us = micros(settings.stream_stall_timeout);
        config.call_timeout_us = micros(settings.call_timeout);
        config.idle_checkpoint_after_us = micros(settings.idle_checkpoint_after);
        let session = match ClientSession::new(config, session_id) {
            Ok(session) => session,
            Err(error) => {
                self.observer
                    .borrow_mut()
                    .violation(format!("node {}: a session: {error}", self.node));
                return;
            }
        };
        let index = {
            let mut observer = self.observer.borrow_mut();
            observer.instances_started += 1;
            observer.instances_started
        };
        let mut driver = SessionDriver::new(
            format!("instance {index} (node {}, {})", self.node, self.region),
            session,
            settings.log_read_timeout,
            settings.log_read_wait,
        );
        driver.carry_uploads();
        let replica = ReplicaConfig {
            checkpoint_every_records: settings.checkpoint_every_records,
            ..ReplicaConfig::default()
        };
        let appends = cx.rng().range_inclusive(
            u64::from(settings.appends_per_instance.0),
            u64::from(settings.appends_per_instance.1),
        ) as u32;
        let ending = match cx.rng().below(3) {
            0 => Ending::Closes,
            1 => Ending::Abandons,
            _ => Ending::Lingers(uniform_duration(
                cx.rng(),
                Duration::ZERO,
                settings.linger_max,
            )),
        };
        let keeper = self.settings.late_global_opens
            && settings.topology.regions.len() > 1
            && settings.global_objects >= settings.topology.regions.len()
            && self
                .observer
                .borrow_mut()
                .keepers
                .insert(self.region.clone());
        let (wanted, appends, ending) = if keeper {
            // The keeper holds the first global object never opened in the next region, to
            // the end: the late open of that region adopts its checkpoint.
            let regions = settings.topology.regions.len();
            let index = (self.region_index + 1) % regions;
            debug_assert!(global_object_opened_in(index, self.region_index, regions));
            (
                vec![(format!("journal/global-{index}"), Scope::Global)],
                u32::MAX,
                Ending::Closes,
            )
        } else {
            (self.draw_objects(cx), appends, ending)
        };
        let now_us = SessionDriver::now_us(cx);
        let mut objects = BTreeMap::new();
        let mut opens = BTreeMap::new();
        for (name, scope) in wanted {
            let copy = Arc::new(new_copy::<Journal>(&name, replica));
            match driver
                .session_mut()
                .open(now_us, &name, scope, Arc::clone(&copy) as _)
            {
                Ok(open_id) => {
                    opens.insert(open_id, name.clone());
                    objects.insert(name, Held { scope, copy });
                }
                Err(error) => {
                    self.observer
                        .borrow_mut()
                        .open_failed(&self.region, &name, &error.to_string())
                }
            }
        }
        self.live = Some(Live {
            index,
            driver,
            objects,
            waiting: Waiting::Opens(opens),
            appends_left: appends,
            ending,
            think_timer: None,
            linger_timer: None,
            holding_timer: None,
            late_timer: None,
            keeper,
        });
        self.observer.borrow_mut().live += 1;
        if matches!(&self.live, Some(Live { waiting: Waiting::Opens(opens), .. }) if opens.is_empty())
        {
            self.think(cx);
        }
    }

    /// Sends what the session queued, delivers its events, arms its timer.
    fn pump(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        live.driver.flush(cx);
        while let Some(event) = self
            .live
            .as_mut()
            .and_then(|live| live.driver.session_mut().poll_event())
        {
            self.handle_event(cx, event);
        }
        let Some(live) = self.live.as_mut() else {
            return;
        };
        live.driver.flush(cx);
        live.driver.arm_timer(cx);
        let notes = live.driver.drain();
        let mut observer = self.observer.borrow_mut();
        for violation in notes.violations {
            observer.violation(violation);
        }
    }

    fn handle_event(&mut self, cx: &mut Context<'_, GlobalMessage>, event: Event) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        match event {
            Event::Opened { open_id, outcome } if matches!(&live.waiting, Waiting::LateOpen { open_id: waited, .. } if *waited == open_id) =>
            {
                let Waiting::LateOpen { name, attempt, .. } = live.waiting.clone() else {
                    return;
                };
                self.late_opened(
                    cx,
                    name,
                    attempt,
                    outcome.map_err(|error| error.to_string()),
                );
            }
            Event::Opened { open_id, outcome } => {
                let final_round = matches!(live.waiting, Waiting::FinalOpens(_));
                let (Waiting::Opens(opens) | Waiting::FinalOpens(opens)) = &mut live.waiting else {
                    return;
                };
                let Some(name) = opens.remove(&open_id) else {
                    return;
                };
                let all_done = opens.is_empty();
                let mut observer = self.observer.borrow_mut();
                match outcome {
                    Ok(()) => observer.opened(&name),
                    Err(error) => {
                        observer.open_failed(&self.region, &name, &error.to_string());
                        live.objects.remove(&name);
                    }
                }
                drop(observer);
                if all_done && final_round {
                    self.final_append(cx);
                } else if all_done {
                    self.think(cx);
                }
            }
            Event::CallDone { call_id, outcome } => match live.waiting.clone() {
                Waiting::Append {
                    call_id: waited,
                    object,
                    payload_bytes,
                } if waited == call_id => {
                    let region = match live.objects.get(&object).map(|held| held.scope) {
                        Some(Scope::Global) => None,
                        _ => Some(self.region.as_str()),
                    };
                    match outcome {
                        Ok(_) => self.observer.borrow_mut().appended(
                            region,
                            &self.region_names,
                            payload_bytes,
                        ),
                        Err(error) => self.observer.borrow_mut().call_failed(
                            &self.region,
                            &object,
                            &error.to_string(),
                        ),
                    }
                    self.think(cx);
                }
                Waiting::FinalAppend { call_id: waited } if waited == call_id => {
                    match outcome {
                        Ok(_) => self.observer.borrow_mut().appends_acknowledged += 1,
                        Err(error) => self.observer.borrow_mut().call_failed(
                            &self.region,
                            "the final append",
                            &error.to_string(),
                        ),
                    }
                    self.await_reads(cx);
                }
                _ => {}
            },
            Event::SyncDone { sync_id, outcome } if matches!(&live.waiting, Waiting::LateSync { sync_id: waited, .. } if *waited == sync_id) =>
            {
                let Waiting::LateSync { name, .. } = live.waiting.clone() else {
                    return;
                };
                let index = live.index;
                let mut observer = self.observer.borrow_mut();
                match (outcome, live.objects.get(&name)) {
                    (Ok(()), Some(held)) => {
                        let view = live.driver.session().view();
                        let _reading = view.read().unwrap_or_else(|poisoned| poisoned.into_inner());
                        let read = held.copy.read(|journal| ObjectRead {
                            entries: journal.entries(),
                            bytes: journal.bytes(),
                            digest: journal.digest(),
                        });
                        observer.final_read(&name, index, read);
                    }
                    (Ok(()), None) => {}
                    (Err(error), _) => observer.violation(format!(
                        "instance {index}: the barrier before reading {name} failed: {error}"
                    )),
                }
                observer.late_finished += 1;
                drop(observer);
                live.waiting = Waiting::Finished;
            }
            Event::SyncDone { sync_id, outcome } => {
                let Waiting::FinalSync { sync_id: waited } = live.waiting else {
                    return;
                };
                if waited != sync_id {
                    return;
                }
                let index = live.index;
                let mut observer = self.observer.borrow_mut();
                match outcome {
                    Ok(()) => {
                        let view = live.driver.session().view();
                        let _reading = view.read().unwrap_or_else(|poisoned| poisoned.into_inner());
                        for (name, held) in &live.objects {
                            // A copy the session dropped (its region could not rebuild the
                            // object: every record it missed was released) is not read.
                            if !live.driver.session().is_open(name) {
                                continue;
                            }
                            let read = held.copy.read(|journal| ObjectRead {
                                entries: journal.entries(),
                                bytes: journal.bytes(),
                                digest: journal.digest(),
                            });
                            observer.final_read(name, index, read);
                        }
                    }
                    Err(error) => observer.violation(format!(
                        "instance {index}: the final sync() failed: {error}"
                    )),
                }
                observer.holders_finished += 1;
                observer.copies_behind_skipped_epochs += live
                    .driver
                    .session()
                    .counters()
                    .copies_behind_skipped_epochs;
                drop(observer);
                live.waiting = Waiting::AwaitingLate;
                live.holding_timer = Some(cx.set_timer(HOLDING_CHECK_INTERVAL));
            }
            Event::SessionClosed { close_id, .. } => {
                // This workload's instances end without closing their sessions, which the
                // region ends by idleness.
                self.observer.borrow_mut().violation(format!(
                    "instance {}: a session close {close_id} nobody asked for finished",
                    live.index
                ));
            }
            Event::CheckpointDiverged {
                object_id,
                position,
            } => {
                self.observer.borrow_mut().violation(format!(
                    "instance {}: the region found a divergent checkpoint of {object_id} at \
                     {position}",
                    live.index
                ));
            }
        }
    }

    fn think(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let (mut low, mut high) = self.settings.think_time;
        if self.live.as_ref().is_some_and(|live| live.keeper) {
            // A keeper writes now and then: its object is followed, not busy.
            (low, high) = (KEEPER_THINK_TIME, KEEPER_THINK_TIME.saturating_mul(2));
        }
        let pause = uniform_duration(cx.rng(), low, high);
        let timer = cx.set_timer(pause);
        if let Some(live) = self.live.as_mut() {
            live.waiting = Waiting::Thinking;
            live.think_timer = Some(timer);
        }
    }

    /// The next append, or the instance's ending, or holding once arrivals stopped.
    fn operate(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let now = cx.now();
        let now_us = SessionDriver::now_us(cx);
        let arrivals_over = now >= self.arrivals_until;
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if arrivals_over {
            live.waiting = Waiting::Holding;
            live.holding_timer = Some(cx.set_timer(HOLDING_CHECK_INTERVAL));
            return;
        }
        if live.appends_left == 0 || live.objects.is_empty() {
            match live.ending {
                Ending::Closes => {
                    let names: Vec<String> = live.objects.keys().cloned().collect();
                    for name in names {
                        live.driver.session_mut().close(now_us, &name);
                    }
                    self.end_instance(cx);
                }
                Ending::Abandons => self.end_instance(cx),
                Ending::Lingers(linger) => {
                    live.waiting = Waiting::Lingering;
                    live.linger_timer = Some(cx.set_timer(linger));
                }
            }
            return;
        }
        live.appends_left -= 1;
        let names: Vec<&String> = live.objects.keys().collect();
        let object = names[cx.rng().below(names.len() as u64) as usize].clone();
        let (low, high) = self.settings.payload_bytes;
        let length = cx.rng().range_inclusive(low as u64, high as u64) as usize;
        let mut payload = vec![0u8; length];
        cx.rng().fill_bytes(&mut payload);
        let arguments = Postcard::encode(&(payload,)).expect("bytes encode");
        match live
            .driver
            .session_mut()
            .call(now_us, &object, APPEND_METHOD_ID, arguments)
        {
            Ok(call_id) => {
                live.waiting = Waiting::Append {
                    call_id,
                    object,
                    payload_bytes: length,
                }
            }
            Err(error) => {
                self.observer
                    .borrow_mut()
                    .call_failed(&self.region, &object, &error.to_string());
                self.think(cx);
            }
        }
    }

    /// The final round begins: the holder opens the objects every holder shares, its region's
    /// first popular object and the first global object opened in its region, so that the
    /// final reads compare copies held by several instances.
    fn final_opens(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let now_us = SessionDriver::now_us(cx);
        let regions = self.settings.topology.regions.len();
        let mut shared = Vec::new();
        if self.settings.popular_objects_per_region > 0 {
            shared.push((
                format!("journal/{}/popular-0", self.region),
                Scope::Regional,
            ));
        }
        if let Some(index) = (0..self.settings.global_objects)
            .find(|&index| global_object_opened_in(index, self.region_index, regions))
        {
            shared.push((format!("journal/global-{index}"), Scope::Global));
        }
        let replica = ReplicaConfig {
            checkpoint_every_records: self.settings.checkpoint_every_records,
            ..ReplicaConfig::default()
        };
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let mut opens = BTreeMap::new();
        for (name, scope) in shared {
            if live.objects.contains_key(&name) {
                continue;
            }
            let copy = Arc::new(new_copy::<Journal>(&name, replica));
            match live
                .driver
                .session_mut()
                .open(now_us, &name, scope, Arc::clone(&copy) as _)
            {
                Ok(open_id) => {
                    opens.insert(open_id, name.clone());
                    live.objects.insert(name, Held { scope, copy });
                }
                Err(error) => {
                    self.observer
                        .borrow_mut()
                        .open_failed(&self.region, &name, &error.to_string())
                }
            }
        }
        if opens.is_empty() {
            self.final_append(cx);
        } else {
            live.waiting = Waiting::FinalOpens(opens);
        }
    }

    fn final_append(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let now_us = SessionDriver::now_us(cx);
        let Some(live) = self.live.as_mut() else {
            return;
        };
        // One append after the quiet spell moves the log time on past the idle timeout of the
        // sessions that ended, so the regions forget them.
        let Some(object) = live.objects.keys().next().cloned() else {
            self.await_reads(cx);
            return;
        };
        let arguments = Postcard::encode(&(b"final".to_vec(),)).expect("bytes encode");
        match live
            .driver
            .session_mut()
            .call(now_us, &object, APPEND_METHOD_ID, arguments)
        {
            Ok(call_id) => live.waiting = Waiting::FinalAppend { call_id },
            Err(error) => {
                self.observer
                    .borrow_mut()
                    .call_failed(&self.region, &object, &error.to_string());
                self.await_reads(cx);
            }
        }
    }

    /// The final append is done (or failed): the barrier and reads wait until every holder's
    /// append is done, so that every holder reads after the same appends.
    fn await_reads(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        self.observer.borrow_mut().final_appends_done += 1;
        let timer = cx.set_timer(HOLDING_CHECK_INTERVAL);
        if let Some(live) = self.live.as_mut() {
            live.waiting = Waiting::AwaitingReads;
            live.holding_timer = Some(timer);
        }
    }

    fn final_sync(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let now_us = SessionDriver::now_us(cx);
        let Some(live) = self.live.as_mut() else {
            return;
        };
        match live.driver.session_mut().sync(now_us) {
            Ok(sync_id) => live.waiting = Waiting::FinalSync { sync_id },
            Err(error) => {
                let mut observer = self.observer.borrow_mut();
                observer.violation(format!(
                    "instance {}: the final sync() was refused: {error}",
                    live.index
                ));
                observer.holders_finished += 1;
                live.waiting = Waiting::Finished;
            }
        }
    }

    /// The late object of this region: the first global object never opened here that a
    /// holder of another region read in the final round (so a copy of it lives on, whose
    /// checkpoint the region can adopt).
    fn late_object(&self) -> Option<String> {
        let regions = self.settings.topology.regions.len();
        if !self.settings.late_global_opens || regions < 2 {
            return None;
        }
        let observer = self.observer.borrow();
        (0..self.settings.global_objects)
            .filter(|&index| !global_object_opened_in(index, self.region_index, regions))
            .map(|index| format!("journal/global-{index}"))
            .find(|name| observer.final_reads.contains_key(name))
    }

    /// After its final reads, the instance opens the late object (the `attempt`th time), or
    /// finishes when there is none.
    fn late_open(&mut self, cx: &mut Context<'_, GlobalMessage>, attempt: u32) {
        let now_us = SessionDriver::now_us(cx);
        let late = self.late_object();
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let Some(name) = late else {
            self.observer.borrow_mut().late_finished += 1;
            live.waiting = Waiting::Finished;
            return;
        };
        if attempt == 1 {
            self.observer.borrow_mut().late_opens += 1;
        }
        let replica = ReplicaConfig {
            checkpoint_every_records: self.settings.checkpoint_every_records,
            ..ReplicaConfig::default()
        };
        let copy = Arc::new(new_copy::<Journal>(&name, replica));
        match live
            .driver
            .session_mut()
            .open(now_us, &name, Scope::Global, Arc::clone(&copy) as _)
        {
            Ok(open_id) => {
                live.objects.insert(
                    name.clone(),
                    Held {
                        scope: Scope::Global,
                        copy,
                    },
                );
                live.waiting = Waiting::LateOpen {
                    open_id,
                    name,
                    attempt,
                };
            }
            Err(error) => {
                let mut observer = self.observer.borrow_mut();
                observer.late_open_failed(&name, &error.to_string());
                observer.late_finished += 1;
                live.waiting = Waiting::Finished;
            }
        }
    }

    /// The late object's open ended: read it after a barrier, try again later when the
    /// region released its records and served no adopted checkpoint yet, or give up.
    fn late_opened(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        name: String,
        attempt: u32,
        outcome: Result<(), String>,
    ) {
        let now_us = SessionDriver::now_us(cx);
        let Some(live) = self.live.as_mut() else {
            return;
        };
        match outcome {
            Ok(()) => {
                self.observer.borrow_mut().late_opened(attempt);
                match live.driver.session_mut().sync(now_us) {
                    Ok(sync_id) => live.waiting = Waiting::LateSync { sync_id, name },
                    Err(error) => {
                        let mut observer = self.observer.borrow_mut();
                        observer.violation(format!(
                            "instance {}: the barrier before reading {name} was refused: {error}",
                            live.index
                        ));
                        observer.late_finished += 1;
                        live.waiting = Waiting::Finished;
                    }
                }
            }
            Err(error) => {
                live.objects.remove(&name);
                if super::failure_kind(&error) == "the object's records were released"
                    && attempt < LATE_OPEN_ATTEMPTS_MAX
                {
                    live.late_timer = Some(cx.set_timer(LATE_OPEN_RETRY_AFTER));
                    live.waiting = Waiting::LateRetry { attempt };
                    return;
                }
                let mut observer = self.observer.borrow_mut();
                observer.late_open_failed(&name, &error);
                observer.late_finished += 1;
                live.waiting = Waiting::Finished;
            }
        }
    }

    /// The instance goes away: its session and copies are dropped (after closing its objects
    /// if that is its ending). The slot starts another after a pause.
    fn end_instance(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let Some(live) = self.live.take() else {
            return;
        };
        let counters = live.driver.session().counters();
        {
            let mut observer = self.observer.borrow_mut();
            observer.live -= 1;
            *observer.endings.entry(live.ending.kind()).or_default() += 1;
            observer.idle_checkpoints += counters.idle_checkpoints;
            observer.copies_restored += counters.copies_restored;
            observer.copies_behind_skipped_epochs += counters.copies_behind_skipped_epochs;
        }
        // Answers to the requests of the session that ended (none takes longer than the
        // shortest pause) arrive before the next session starts.
        let gap_min = self.settings.gap.0;
        self.schedule_start(cx, gap_min);
    }

    fn is_waiting(&self) -> bool {
        self.live.as_ref().is_some_and(|live| {
            matches!(
                live.waiting,
                Waiting::Opens(_)
                    | Waiting::FinalOpens(_)
                    | Waiting::Append { .. }
                    | Waiting::FinalAppend { .. }
                    | Waiting::FinalSync { .. }
                    | Waiting::LateOpen { .. }
                    | Waiting::LateSync { .. }
            )
        })
    }
}

impl Process for MonthSlot {
    type Message = GlobalMessage;

    fn handle_start(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        // The first instances start spread over the first pauses, not all at once.
        self.schedule_start(cx, Duration::from_secs(1));
    }

    fn handle_message(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        from: NodeId,
        message: GlobalMessage,
    ) {
        let Some(live) = self.live.as_mut() else {
            // An answer to an instance that ended.
            return;
        };
        if let GlobalMessage::Reply(Reply::Refused {
            error: ProposeError::LogFull { reason },
            ..
        }) = &message
        {
            self.observer
                .borrow_mut()
                .log_full(from, &self.region, reason);
        }
        live.driver.handle_message(cx, from, message);
        self.pump(cx);
    }

    fn handle_timer(&mut self, cx: &mut Context<'_, GlobalMessage>, timer: TimerId) {
        if self.start_timer == Some(timer) {
            self.start_timer = None;
            if self.live.is_none() {
                self.start_instance(cx);
            }
            self.pump(cx);
            return;
        }
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if live.driver.handle_timer(cx, timer) {
            // The driver's: the session's deadline, or a stream's log read or poll.
        } else if live.think_timer == Some(timer) {
            live.think_timer = None;
            if matches!(live.waiting, Waiting::Thinking) {
                self.operate(cx);
            }
        } else if live.linger_timer == Some(timer) {
            live.linger_timer = None;
            if matches!(live.waiting, Waiting::Lingering) {
                self.end_instance(cx);
            }
        } else if live.late_timer == Some(timer) {
            live.late_timer = None;
            if let Waiting::LateRetry { attempt, .. } = live.waiting {
                self.late_open(cx, attempt + 1);
            }
        } else if live.holding_timer == Some(timer) {
            live.holding_timer = None;
            match (&live.waiting, self.final_round.get()) {
                (Waiting::Holding, FinalRound::Appends | FinalRound::Reads) => {
                    self.final_opens(cx);
                }
                (Waiting::AwaitingReads, FinalRound::Reads | FinalRound::LateOpens) => {
                    self.final_sync(cx)
                }
                (Waiting::AwaitingLate, FinalRound::LateOpens) => self.late_open(cx, 1),
                (Waiting::Holding | Waiting::AwaitingReads | Waiting::AwaitingLate, _) => {
                    live.holding_timer = Some(cx.set_timer(HOLDING_CHECK_INTERVAL));
                }
                _ => {}
            }
        }
        self.pump(cx);
    }
}

impl Application for MonthSlot {
    fn is_busy(&self) -> bool {
        self.is_waiting()
    }
}
