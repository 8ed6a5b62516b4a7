//! A latency histogram that threads share without a lock: fixed buckets of atomic counters,
//! read whole for metrics (Prometheus' cumulative buckets, sum and count).
//!
//! The drivers time what only they can see (a store sync, a client call from its arrival to its
//! answer) and the metrics endpoint reads the counts when it is scraped. The buckets are fixed
//! so that every node of a cluster reports the same ones, which is what lets a dashboard add
//! them up across nodes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The upper bounds of the buckets, in microseconds: from 50 µs (an fsync on a fast disk) to
/// 10 s (a call that waited for an election, or a stalled disk). Anything slower counts only in
/// the implicit `+Inf` bucket.
pub const LATENCY_BUCKET_BOUNDS_US: [u64; 18] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_000_000, 4_000_000, 7_000_000, 10_000_000,
];

/// Counts of observed durations by bucket, with their sum and count.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations at or below each bound and above the one before (not cumulative).
    buckets: [AtomicU64; LATENCY_BUCKET_BOUNDS_US.len()],
    /// Observations above the last bound.
    over: AtomicU64,
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// What a histogram held when it was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyCounts {
    /// For each bound of [`LATENCY_BUCKET_BOUNDS_US`], the observations at or below it
    /// (cumulative, as Prometheus wants them).
    pub cumulative: Vec<u64>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// Their sum in microseconds.
    pub sum_us: u64,
}

impl LatencyHistogram {
    /// Counts one duration.
    pub fn observe(&self, elapsed: Duration) {
        let elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        match LATENCY_BUCKET_BOUNDS_US
            .iter()
            .position(|&bound| elapsed_us <= bound)
        {
            Some(bucket) => self.buckets[bucket].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_us.fetch_add(elapsed_us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts as of now. Observations that race with the read may show in the count and
    /// not yet in a bucket (or the other way round) for one scrape; the next one sees them.
    pub fn counts(&self) -> LatencyCounts {
        let mut running = 0_u64;
        let cumulative = self
            .buckets
            .iter()
            .map(|bucket| {
                running += bucket.load(Ordering::Relaxed);
                running
            })
            .collect();
        LatencyCounts {
            cumulative,
            count: running + self.over.load(Ordering::Relaxed),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_slowest_count_only_in_the_total() {
        let histogram = LatencyHistogram::default();
        histogram.observe(Duration::from_micros(40));
        histogram.observe(Duration::from_micros(50));
        histogram.observe(Duration::from_micros(51));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let counts = histogram.counts();
        assert_eq!(counts.cumulative.len(), LATENCY_BUCKET_BOUNDS_US.len());
        // 50 µs: the first two; 100 µs: one more; 5 ms: the 3 ms one too.
        assert_eq!(counts.cumulative[0], 2);
        assert_eq!(counts.cumulative[1], 3);
        assert_eq!(counts.cumulative[5], 3);
        assert_eq!(counts.cumulative[6], 4);
        assert_eq!(*counts.cumulative.last().unwrap(), 4);
        assert_eq!(counts.count, 5);
        assert_eq!(counts.sum_us, 40 + 50 + 51 + 3_000 + 60_000_000);
    }

    #[test]
    fn the_bounds_grow() {
        assert!(
            LATENCY_BUCKET_BOUNDS_US
                .windows(2)
                .all(|pair| pair[0] < pair[1])
        );
    }
}
