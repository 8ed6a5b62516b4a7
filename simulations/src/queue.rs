//! The event queue: a bounded binary heap ordered by (time, insertion sequence).
//!
//! Two events due at the same virtual time come out in the order they were pushed, so ties
//! never depend on the heap's internal layout. The queue is bounded by
//! [`EVENT_QUEUE_LEN_MAX`]: a workload that schedules events faster than it processes them (a
//! message storm, a timer that re-arms itself twice per firing) is a bug, and it is reported as
//! such instead of exhausting memory.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::time::SimTime;

/// The most events one queue holds at once.
pub const EVENT_QUEUE_LEN_MAX: usize = 1_000_000;

/// A push into a queue that already holds its maximum number of events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "event queue full: {len_max} events are pending, so the workload schedules events faster \
     than the simulation processes them (a message storm or a timer loop)"
)]
pub struct EventQueueFull {
    /// The bound that was reached.
    pub len_max: usize,
}

/// The ordering key of one pending event and where the event waits in the slab. The heap
/// moves only these 24 bytes when it sifts, never the events themselves (a message can be
/// hundreds of bytes).
#[derive(Clone, Copy)]
struct Key {
    time: SimTime,
    sequence: u64,
    slot: u32,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    /// Reversed, because `BinaryHeap` pops its largest element and we want the earliest.
    /// Sequences are unique, so the slot never decides.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.sequence).cmp(&(self.time, self.sequence))
    }
}

/// A bounded priority queue of events, earliest first, ties in insertion order.
pub struct EventQueue<E> {
    heap: BinaryHeap<Key>,
    /// The pending events, at the slots their keys name; `None` for a free slot.
    slots: Vec<Option<E>>,
    /// Free slots, reused before the slab grows.
    slots_free: Vec<u32>,
    sequence_next: u64,
    len_max: usize,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> EventQueue<E> {
    /// An empty queue bounded by [`EVENT_QUEUE_LEN_MAX`].
    pub fn new() -> Self {
        Self::with_len_max(EVENT_QUEUE_LEN_MAX)
    }

    /// An empty queue bounded by `len_max` events (at most `u32::MAX`).
    pub fn with_len_max(len_max: usize) -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            slots_free: Vec::new(),
            sequence_next: 0,
            len_max: len_max.min(u32::MAX as usize),
        }
    }

    /// Schedules `event` at `time`, after every event already scheduled at that time.
    pub fn push(&mut self, time: SimTime, event: E) -> Result<(), EventQueueFull> {
        if self.heap.len() >= self.len_max {
            return Err(EventQueueFull {
                len_max: self.len_max,
            });
        }
        let sequence = self.sequence_next;
        self.sequence_next += 1;
        let slot = match self.slots_free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                // Fits: the slab never holds more than `len_max` (at most u32::MAX) events.
                let slot = self.slots.len() as u32;
                self.slots.push(Some(event));
                slot
            }
        };
        self.heap.push(Key {
            time,
            sequence,
            slot,
        });
        Ok(())
    }

    /// Removes and returns the earliest event with its time.
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        let key = self.heap.pop()?;
        let event = self.slots[key.slot as usize]
            .take()
            .expect("a queued key names an occupied slot");
        self.slots_free.push(key.slot);
        Some((key.time, event))
    }

    /// The earliest event with its time, left in the queue.
    pub fn peek(&self) -> Option<(SimTime, &E)> {
        let key = self.heap.peek()?;
        let event = self.slots[key.slot as usize]
            .as_ref()
            .expect("a queued key names an occupied slot");
        Some((key.time, event))
    }

    /// The time of the earliest event, if any.
    pub fn peek_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|key| key.time)
    }

    /// The number of pending events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no event is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_insertion_order() {
        let mut queue = EventQueue::new();
        queue.push(SimTime::from_nanos(5), "late").unwrap();
        queue.push(SimTime::from_nanos(1), "first at 1").unwrap();
        queue.push(SimTime::from_nanos(1), "second at 1").unwrap();
        queue.push(SimTime::from_nanos(3), "middle").unwrap();
        queue.push(SimTime::from_nanos(1), "third at 1").unwrap();
        assert_eq!(queue.peek_time(), Some(SimTime::from_nanos(1)));
        let order: Vec<&str> = std::iter::from_fn(|| queue.pop().map(|(_, event)| event)).collect();
        assert_eq!(
            order,
            ["first at 1", "second at 1", "third at 1", "middle", "late"]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn refuses_events_beyond_its_bound() {
        let mut queue = EventQueue::with_len_max(2);
        queue.push(SimTime::ZERO, 1).unwrap();
        queue.push(SimTime::ZERO, 2).unwrap();
        let error = queue.push(SimTime::ZERO, 3).unwrap_err();
        assert_eq!(error, EventQueueFull { len_max: 2 });
        assert!(error.to_string().contains("2 events are pending"));
        assert_eq!(queue.len(), 2);
        queue.pop();
        queue.push(SimTime::ZERO, 3).unwrap();
    }
}
