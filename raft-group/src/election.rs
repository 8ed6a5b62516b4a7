//! Seeded election timeouts.
//!
//! raft-rs draws each randomized election timeout from an unseeded thread-local generator
//! whenever a node changes term or role. A simulated run must replay exactly from its seed, so
//! the group overrides every such draw with one from [`ElectionTimeoutRng`], seeded by the
//! driver (from the simulation's seed, or from the operating system in production).

/// A small seeded generator (splitmix64) for election timeouts. Its quality is far beyond
/// what spreading elections needs, and it has no state beyond one number.
#[derive(Clone, Debug)]
pub struct ElectionTimeoutRng {
    state: u64,
}

impl ElectionTimeoutRng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        ElectionTimeoutRng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut value = self.state;
        value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        value ^ (value >> 31)
    }

    /// A timeout in `[election_tick, 2 * election_tick)`, the range raft-rs itself uses.
    ///
    /// # Panics
    ///
    /// If `election_tick` is zero (the group's configuration refuses it before).
    pub fn timeout_ticks(&mut self, election_tick: usize) -> usize {
        assert!(election_tick > 0, "the election tick is positive");
        let span = election_tick as u64;
        // The modulo bias is below 2^-50 for any realistic tick count.
        election_tick + (self.next_u64() % span) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_stay_in_range_cover_it_and_replay_from_the_seed() {
        let mut rng = ElectionTimeoutRng::new(7);
        let mut seen = [false; 10];
        for _ in 0..1_000 {
            let ticks = rng.timeout_ticks(10);
            assert!((10..20).contains(&ticks), "{ticks}");
            seen[ticks - 10] = true;
        }
        assert!(seen.iter().all(|&hit| hit));
        let first: Vec<usize> = {
            let mut rng = ElectionTimeoutRng::new(99);
            (0..20).map(|_| rng.timeout_ticks(10)).collect()
        };
        let again: Vec<usize> = {
            let mut rng = ElectionTimeoutRng::new(99);
            (0..20).map(|_| rng.timeout_ticks(10)).collect()
        };
        assert_eq!(first, again);
    }
}
