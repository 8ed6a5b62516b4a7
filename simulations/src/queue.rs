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

/// One pending event with its ordering key.
struct Entry<E> {
    time: SimTime,
    sequence: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed, because `BinaryHeap` pops its largest element and we want the earliest.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.sequence).cmp(&(self.time, self.sequence))
    }
}

/// A bounded priority queue of events, earliest first, ties in insertion order.
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
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

    /// An empty queue bounded by `len_max` events.
    pub fn with_len_max(len_max: usize) -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            sequence_next: 0,
            len_max,
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
        self.heap.push(Entry {
            time,
            sequence,
            event,
        });
        Ok(())
    }

    /// Removes and returns the earliest event with its time.
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        self.heap.pop().map(|entry| (entry.time, entry.event))
    }

    /// The earliest event with its time, left in the queue.
    pub fn peek(&self) -> Option<(SimTime, &E)> {
        self.heap.peek().map(|entry| (entry.time, &entry.event))
    }

    /// The time of the earliest event, if any.
    pub fn peek_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|entry| entry.time)
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
