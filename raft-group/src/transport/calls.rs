//! [`CallsInFlight`]: the unary calls one sender keeps open to its destinations at once.
//!
//! A region leader ships a batch every epoch interval and the coordinator a sealed epoch part
//! as often. Waiting for each call's answer before the next call would let one call through
//! per round trip: on a WAN link whose round trip is longer than an epoch (70 ms between
//! `local-a` and `local-c` of `local.toml`, 10 ms epochs) the queue would grow without end and
//! every global call behind it would wait longer and longer. So calls start in the order they
//! were queued, at their [`DelayLine`](super::DelayLine) send times, and their answers are
//! taken as they come, up to a bound on how many are open.
//!
//! With WAN emulation, an answer is held for the link's delay before it is taken: it travels
//! back as it would over a real WAN.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::delay::wait_until;

/// Calls started and not yet answered, at most `max` at once. See the module documentation.
#[derive(Debug)]
pub struct CallsInFlight<Answer> {
    calls: JoinSet<Answer>,
    max: usize,
}

impl<Answer: Send + 'static> CallsInFlight<Answer> {
    /// No call in flight; at most `max` (at least one) at once.
    pub fn new(max: usize) -> Self {
        CallsInFlight {
            calls: JoinSet::new(),
            max: max.max(1),
        }
    }

    /// True when another call may start: fewer than the bound are in flight.
    pub fn has_room(&self) -> bool {
        self.calls.len() < self.max
    }

    /// True when no call is in flight.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// How many calls are in flight.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Starts `call` at `send_at` on the current runtime; its answer is taken
    /// `answer_delay` after it came (the return leg of an emulated link). A caller that
    /// retries a finished call may start it without room: it takes the finished call's place.
    pub fn start<Call>(&mut self, send_at: Instant, answer_delay: Duration, call: Call)
    where
        Call: Future<Output = Answer> + Send + 'static,
    {
        self.calls.spawn(async move {
            wait_until(send_at).await;
            let answer = call.await;
            wait_until(Instant::now() + answer_delay).await;
            answer
        });
    }

    /// The next answer to arrive; `None` when no call is in flight. A call that panicked
    /// panics here: its task's failure is the sender's.
    pub async fn next(&mut self) -> Option<Answer> {
        match self.calls.join_next().await? {
            Ok(answer) => Some(answer),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Calls are never aborted while the set lives; a runtime shutting down cancels
            // them, and the sender ends with it.
            Err(_) => None,
        }
    }
}

/// For tests of senders (feature `testing`): a gate a fake server passes each call through,
/// which holds calls until `together` are open at once (or `hold_max` passed), then lets every
/// call through, from then on at once; it counts the most calls it saw open at once. A server
/// across a WAN, whose answers are still on their way back while its clients send more.
#[cfg(feature = "testing")]
#[derive(Debug)]
pub struct OpenCallsGate {
    together: usize,
    hold_max: Duration,
    open: std::sync::atomic::AtomicUsize,
    most_open: std::sync::atomic::AtomicUsize,
    released: tokio::sync::Notify,
    released_once: std::sync::atomic::AtomicBool,
}

#[cfg(feature = "testing")]
impl OpenCallsGate {
    /// A gate that opens once `together` calls wait at it; a call waits at most `hold_max`.
    pub fn new(together: usize, hold_max: Duration) -> Self {
        OpenCallsGate {
            together,
            hold_max,
            open: std::sync::atomic::AtomicUsize::new(0),
            most_open: std::sync::atomic::AtomicUsize::new(0),
            released: tokio::sync::Notify::new(),
            released_once: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Holds one call as the gate says.
    pub async fn pass(&self) {
        use std::sync::atomic::Ordering;
        let released = self.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_open.fetch_max(open, Ordering::SeqCst);
        if open >= self.together {
            self.released_once.store(true, Ordering::SeqCst);
            self.released.notify_waiters();
        } else if !self.released_once.load(Ordering::SeqCst) {
            let _ = tokio::time::timeout(self.hold_max, released).await;
        }
        self.open.fetch_sub(1, Ordering::SeqCst);
    }

    /// The most calls open at once so far.
    pub fn most_open(&self) -> usize {
        self.most_open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Calls that each wait until four are open at once: they only finish when the set keeps
    /// them all in flight together.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_run_together_up_to_the_bound_and_every_answer_is_taken() {
        let mut calls = CallsInFlight::new(4);
        let open = Arc::new(AtomicUsize::new(0));
        let all_open = Arc::new(tokio::sync::Notify::new());
        for call in 0..4usize {
            assert!(calls.has_room(), "call {call} fits");
            let open = Arc::clone(&open);
            let all_open = Arc::clone(&all_open);
            calls.start(Instant::now(), Duration::ZERO, async move {
                let waiting = all_open.notified();
                if open.fetch_add(1, Ordering::SeqCst) + 1 == 4 {
                    all_open.notify_waiters();
                } else {
                    waiting.await;
                }
                call
            });
        }
        assert!(!calls.has_room(), "the bound is reached");
        assert_eq!(calls.len(), 4);
        let mut answers = Vec::new();
        while let Some(answer) = calls.next().await {
            answers.push(answer);
        }
        answers.sort_unstable();
        assert_eq!(answers, vec![0, 1, 2, 3]);
        assert!(calls.is_empty() && calls.has_room());
    }

    /// A call leaves at its send time and its answer is held for the return leg of its link:
    /// it is taken no sooner than both delays after the start.
    #[tokio::test(flavor = "current_thread")]
    async fn an_answer_waits_for_the_send_time_and_the_return_leg() {
        let mut calls = CallsInFlight::new(1);
        let started = Instant::now();
        calls.start(
            Instant::now() + Duration::from_millis(30),
            Duration::from_millis(20),
            async {},
        );
        calls.next().await.expect("an answer");
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
