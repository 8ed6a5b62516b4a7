//! [`Shipping`]: what the region leader has sent to the coordinator and what it learned was
//! acknowledged. Soft state: a new leader starts afresh and sends every outgoing batch again,
//! which the coordinator takes as duplicates by number.

use std::collections::BTreeMap;

use dsss_wire::ResendTimeout;

use crate::global::entry::EpochPart;
use crate::global::state::{GlobalState, OutgoingBatch};

/// The most batches sent in one round of sending or resending; the rest go in later rounds.
pub const BATCHES_PER_RESEND_MAX: usize = 64;

/// The most epoch parts proposed and not yet applied; beyond, deliveries are refused and the
/// coordinator resends them.
pub const EPOCH_PARTS_PROPOSED_MAX: usize = 256;

/// The most epoch parts a leader holds while it waits for an earlier part that the network
/// delayed or lost; beyond, a part is dropped and the coordinator resends it.
pub const EARLY_EPOCH_PARTS_MAX: usize = 256;

/// The bounds of the wait before unacknowledged batches are sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResendBounds {
    /// The first wait, after the acknowledged point last moved.
    pub min_us: u64,
    /// The longest wait, however many resends brought nothing.
    pub max_us: u64,
}

/// The leader's soft state towards the coordinator. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shipping {
    /// The term this state belongs to; a new term starts afresh.
    term: u64,
    /// Every batch at or below (incarnation, batch number) is acknowledged.
    acknowledged: (u64, u64),
    /// Every batch at or below this was sent at least once in this term.
    sent: (u64, u64),
    /// When unacknowledged batches are sent again in this term: after a wait doubled per
    /// resend that the acknowledged point did not follow.
    resend_timeout: ResendTimeout,
    /// When this leader last proposed a `CloseBatch`.
    closed_at_us: Option<u64>,
    /// When this leader last asked the coordinator whether it is heard (an idle region's
    /// liveness ask, see `RegionNode::ask_coordinator`), and whether an answer came since.
    asked_at_us: Option<u64>,
    ask_answered: bool,
    /// What the coordinator's newest answer (or acknowledgement sent unasked) said: records
    /// wait for the watermark, so every region closes a batch every epoch interval. `None`
    /// (read as true) until an answer arrives in this term.
    closes_wanted: Option<bool>,
    /// Epoch parts proposed and not yet applied, with the tick they were proposed at.
    parts_proposed: BTreeMap<(u64, u32), u64>,
    /// The newest part proposed in this term, as (epoch, part, parts in the epoch), every
    /// earlier part proposed before it.
    proposed_through: Option<(u64, u32, u32)>,
    /// Parts that arrived ahead of a missing one (the network reorders), held until the gap
    /// fills so that they are proposed in order; at most [`EARLY_EPOCH_PARTS_MAX`].
    early_parts: BTreeMap<(u64, u32), EpochPart>,
}

impl Shipping {
    /// Starts afresh when `term` is not the term of the state (a new leadership).
    pub fn enter_term(&mut self, term: u64) {
        if self.term != term {
            *self = Shipping {
                term,
                ..Shipping::default()
            };
        }
    }

    /// Whether this state belongs to `term`.
    pub fn is_term(&self, term: u64) -> bool {
        self.term == term
    }

    /// When an idle leader next has something to do by time, in microseconds: its next
    /// liveness ask (`idle_interval_us` after the last ask or close, or the lower resend bound
    /// after an unanswered ask), and its next resend when batches are unacknowledged
    /// (`resend_batches`, see [`Shipping::due`]). 0 (due now) before its first close in this
    /// term, or while epoch parts it proposed wait to be applied (their timeouts count ticks).
    pub fn idle_due_at_us(
        &self,
        idle_interval_us: u64,
        resend: ResendBounds,
        resend_batches: bool,
    ) -> u64 {
        let Some(closed_at_us) = self.closed_at_us else {
            return 0;
        };
        if !self.parts_proposed.is_empty() {
            return 0;
        }
        let last_us = self.asked_at_us.unwrap_or(0).max(closed_at_us);
        let mut due_us = last_us.saturating_add(idle_interval_us);
        if let Some(asked_at_us) = self.asked_at_us.filter(|_| !self.ask_answered) {
            due_us = due_us.min(asked_at_us.saturating_add(resend.min_us));
        }
        if resend_batches
            && let Some(resend_at_us) = self
                .resend_timeout
                .resend_at_us(resend.min_us, resend.max_us)
        {
            due_us = due_us.min(resend_at_us);
        }
        due_us
    }

    /// Forgets everything (this node no longer leads).
    pub fn clear(&mut self) {
        *self = Shipping::default();
    }

    /// The coordinator acknowledged every batch through `batch_number` of `incarnation`, in an
    /// answer that arrived at `now_us`.
    pub fn acknowledge(&mut self, now_us: u64, incarnation: u64, batch_number: u64) {
        self.ask_answered = true;
        let key = (incarnation, batch_number);
        if key <= self.acknowledged {
            return;
        }
        self.acknowledged = key;
        self.resend_timeout.progressed(now_us, self.sent > key);
    }

    /// A coordinator replica answered that it does not lead: the batches it was sent are not
    /// taken, so the unacknowledged ones go again one lower bound after the last resend,
    /// whatever the backoff (which is for a leader that does not acknowledge).
    pub fn refused(&mut self) {
        self.resend_timeout.refused();
    }

    /// Every batch at or below this (incarnation, batch number) is acknowledged.
    pub fn acknowledged(&self) -> (u64, u64) {
        self.acknowledged
    }

    /// Every batch at or below this (incarnation, batch number) was sent in this term.
    pub fn sent(&self) -> (u64, u64) {
        self.sent
    }

    /// The coordinator's newest answer said whether it wants closes every epoch interval.
    pub fn set_closes_wanted(&mut self, wanted: bool) {
        self.closes_wanted = Some(wanted);
    }

    /// True until an answer of the coordinator in this term says closes are not wanted.
    pub fn closes_wanted(&self) -> bool {
        self.closes_wanted.unwrap_or(true)
    }

    /// True when a `CloseBatch` is due at `now_us`: the first in this term, or `interval_us`
    /// after the previous one. When true, the close counts as made at `now_us`.
    pub fn close_due(&mut self, now_us: u64, interval_us: u64) -> bool {
        if self
            .closed_at_us
            .is_some_and(|at_us| now_us < at_us.saturating_add(interval_us))
        {
            return false;
        }
        self.closed_at_us = Some(now_us);
        true
    }

    /// When the next `CloseBatch` is due with `interval_us` between closes; none before the
    /// first close of the term (the next tick makes it).
    pub fn next_close_at_us(&self, interval_us: u64) -> Option<u64> {
        self.closed_at_us
            .map(|at_us| at_us.saturating_add(interval_us))
    }

    /// True when this leader has closed a batch in this term.
    pub fn has_closed(&self) -> bool {
        self.closed_at_us.is_some()
    }

    /// True when an idle leader's liveness ask is due at `now_us`: `idle_interval_us` after
    /// its last ask or close, or `resend_interval_us` after an ask that no answer followed
    /// (asks are not otherwise resent, and a region the coordinator does not hear from is
    /// suspected). When true, the ask counts as made.
    pub fn ask_due(&mut self, now_us: u64, idle_interval_us: u64, resend_interval_us: u64) -> bool {
        let last_us = self.asked_at_us.max(self.closed_at_us);
        let idle_due = last_us.is_none_or(|at_us| now_us >= at_us.saturating_add(idle_interval_us));
        let resend_due = self.asked_at_us.is_some_and(|at_us| {
            !self.ask_answered && now_us >= at_us.saturating_add(resend_interval_us)
        });
        if !(idle_due || resend_due) {
            return false;
        }
        self.asked_at_us = Some(now_us);
        self.ask_answered = false;
        true
    }

    /// The batches to send now: those never sent in this term, and when `resend` is allowed
    /// and the acknowledged point has not moved for the resend timeout, every unacknowledged
    /// one, in order, at most [`BATCHES_PER_RESEND_MAX`].
    ///
    /// The timeout is the lower bound, doubled after each resend that the acknowledged point
    /// did not follow, up to the upper bound (see [`ResendTimeout`]): a coordinator slowed by
    /// load, whose acknowledgements still move, is not sent copies of what it has not yet had
    /// time to take.
    pub fn due(
        &mut self,
        state: &GlobalState,
        now_us: u64,
        resend: Option<ResendBounds>,
    ) -> Vec<OutgoingBatch> {
        let resending = resend
            .and_then(|bounds| {
                self.resend_timeout
                    .resend_at_us(bounds.min_us, bounds.max_us)
            })
            .is_some_and(|resend_at_us| now_us >= resend_at_us);
        if resending {
            self.resend_timeout.resent(now_us);
        }
        let mut due = Vec::new();
        for batch in state.outgoing() {
            let key = (batch.incarnation, batch.batch_number);
            if key <= self.acknowledged || (key <= self.sent && !resending) {
                continue;
            }
            if due.len() >= BATCHES_PER_RESEND_MAX {
                break;
            }
            if key > self.sent {
                self.resend_timeout.sent(now_us);
                self.sent = key;
            }
            due.push(*batch);
        }
        due
    }

    /// True when part `part` of epoch `epoch_number` was proposed less than `timeout_ticks`
    /// ago.
    pub fn part_in_flight(
        &self,
        epoch_number: u64,
        part: u32,
        now_ticks: u64,
        timeout_ticks: u64,
    ) -> bool {
        self.parts_proposed
            .get(&(epoch_number, part))
            .is_some_and(|&tick| tick + timeout_ticks > now_ticks)
    }

    /// True when a proposed part waits to be applied.
    pub fn parts_in_flight(&self) -> bool {
        !self.parts_proposed.is_empty()
    }

    /// True when no further part may be proposed.
    pub fn parts_full(&self) -> bool {
        self.parts_proposed.len() >= EPOCH_PARTS_PROPOSED_MAX
    }

    /// Part `part` of an epoch of `part_count` parts was proposed at tick `now_ticks`.
    pub fn part_proposed(&mut self, epoch_number: u64, part: u32, part_count: u32, now_ticks: u64) {
        self.parts_proposed.insert((epoch_number, part), now_ticks);
        let newer = self
            .proposed_through
            .is_none_or(|(epoch, index, _)| (epoch_number, part) > (epoch, index));
        if newer {
            self.proposed_through = Some((epoch_number, part, part_count));
        }
    }

    /// The part that follows the newest one proposed in this term, or none before the first.
    pub fn next_to_propose(&self) -> Option<(u64, u32)> {
        self.proposed_through.map(|(epoch, part, part_count)| {
            if part + 1 < part_count {
                (epoch, part + 1)
            } else {
                (epoch + 1, 0)
            }
        })
    }

    /// Holds `part`, which arrived ahead of a part not yet proposed. When the buffer is full
    /// the part furthest ahead goes (this one, or a held one further ahead): the parts nearest
    /// the gap are the ones that let the log move on, and the coordinator resends the rest.
    /// False when `part` itself was not kept.
    pub fn hold_early(&mut self, part: EpochPart) -> bool {
        let key = (part.epoch_number, part.part_index);
        if self.early_parts.len() >= EARLY_EPOCH_PARTS_MAX {
            match self.early_parts.keys().next_back() {
                Some(&furthest) if furthest > key => {
                    self.early_parts.remove(&furthest);
                }
                _ => return false,
            }
        }
        self.early_parts.insert(key, part);
        true
    }

    /// Takes the held part `key`, if any, and drops held parts below `next_expected` (they are
    /// appended already).
    pub fn take_early(&mut self, key: (u64, u32), next_expected: (u64, u32)) -> Option<EpochPart> {
        self.early_parts.retain(|&held, _| held >= next_expected);
        self.early_parts.remove(&key)
    }

    /// Forgets part `part` of epoch `epoch_number` (its entry was applied).
    pub fn forget_part(&mut self, epoch_number: u64, part: u32) {
        self.parts_proposed.remove(&(epoch_number, part));
    }

    /// Forgets the parts below (epoch, part) `applied_through` (they are appended) and those
    /// proposed `timeout_ticks` ago or more (raft may have dropped them).
    pub fn forget_parts(&mut self, next_expected: (u64, u32), now_ticks: u64, timeout_ticks: u64) {
        self.parts_proposed
            .retain(|&key, &mut tick| key >= next_expected && tick + timeout_ticks > now_ticks);
    }
}
