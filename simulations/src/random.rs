//! The one seeded random number generator of a run.
//!
//! Every random choice of a run is drawn from a single [`SimRng`]: network jitter, loss,
//! duplication and reordering, the randomness handed to nodes through their
//! [`Context`](crate::Context), and the choices a test driver makes about faults. One seed
//! therefore replays a whole run.
//!
//! The generator is xoshiro256** (Blackman and Vigna, 2018) with its state filled by
//! splitmix64, as its authors recommend. It is written out here, about forty lines, instead of
//! taken from the `rand` crates on purpose: their algorithms and value-derivation helpers may
//! change between releases, and a dependency upgrade must never change which trace a seed
//! produces. This generator is not cryptographically secure, which a simulation does not need.

/// The seeded generator of a run: xoshiro256** seeded through splitmix64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimRng {
    state: [u64; 4],
}

/// One step of splitmix64: advances `state` and returns the next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut mixed = *state;
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    mixed ^ (mixed >> 31)
}

impl SimRng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut splitmix_state = seed;
        // splitmix64 is a bijection of its counter, so four consecutive outputs are never all
        // zero: the all-zero state, the one xoshiro cannot leave, cannot arise.
        let state = [
            splitmix64(&mut splitmix_state),
            splitmix64(&mut splitmix_state),
            splitmix64(&mut splitmix_state),
            splitmix64(&mut splitmix_state),
        ];
        SimRng { state }
    }

    /// The next 64 uniformly distributed bits (xoshiro256**).
    pub fn next_u64(&mut self) -> u64 {
        let result = self.state[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let shifted = self.state[1] << 17;
        self.state[2] ^= self.state[0];
        self.state[3] ^= self.state[1];
        self.state[1] ^= self.state[2];
        self.state[0] ^= self.state[3];
        self.state[2] ^= shifted;
        self.state[3] = self.state[3].rotate_left(45);
        result
    }

    /// A uniform value in `0..bound`, without modulo bias (Lemire's multiply-and-reject).
    ///
    /// # Panics
    ///
    /// If `bound` is zero: the range is empty, which is a bug in the caller.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "SimRng::below: the bound must be positive");
        // Products whose low half falls below this threshold would make some results more
        // likely than others; they are drawn again.
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// A uniform value in `low..=high`.
    ///
    /// # Panics
    ///
    /// If `low > high`.
    pub fn range_inclusive(&mut self, low: u64, high: u64) -> u64 {
        assert!(
            low <= high,
            "SimRng::range_inclusive: empty range {low}..={high}"
        );
        let span = high - low;
        if span == u64::MAX {
            return self.next_u64();
        }
        low + self.below(span + 1)
    }

    /// A uniform signed value in `low..=high`.
    ///
    /// # Panics
    ///
    /// If `low > high`.
    pub fn range_inclusive_i64(&mut self, low: i64, high: i64) -> i64 {
        assert!(
            low <= high,
            "SimRng::range_inclusive_i64: empty range {low}..={high}"
        );
        // The span of two i64 values always fits in a u64.
        let span = high.abs_diff(low);
        let offset = if span == u64::MAX {
            self.next_u64()
        } else {
            self.below(span + 1)
        };
        (i128::from(low) + i128::from(offset)) as i64
    }

    /// A uniform value in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        // Integer-to-float conversion and one multiplication by a power of two are exact in
        // IEEE 754, so this is the same on every platform.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with the given probability; always draws exactly one value.
    ///
    /// A probability of 0 is never true and 1 is always true.
    ///
    /// # Panics
    ///
    /// If `probability` is not within `[0, 1]` (NaN included).
    pub fn chance(&mut self, probability: f64) -> bool {
        assert!(
            (0.0..=1.0).contains(&probability),
            "SimRng::chance: probability {probability} is outside [0, 1]"
        );
        self.next_f64() < probability
    }

    /// Fills `bytes` with random bytes.
    pub fn fill_bytes(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let value = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&value[..chunk.len()]);
        }
    }

    /// Puts `items` in a uniformly random order (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for index in (1..items.len()).rev() {
            let other = self.below(index as u64 + 1) as usize;
            items.swap(index, other);
        }
    }

    /// A uniformly chosen element of `items`, or `None` if it is empty.
    pub fn choose<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        let index = self.below(items.len() as u64) as usize;
        items.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_outputs() {
        // Reference values of splitmix64 started from state 0.
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut state), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(splitmix64(&mut state), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn xoshiro256starstar_matches_the_reference_outputs() {
        // Reference values of xoshiro256** from the state [1, 2, 3, 4].
        let mut rng = SimRng {
            state: [1, 2, 3, 4],
        };
        let outputs: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(
            outputs,
            [11_520, 0, 1_509_978_240, 1_215_971_899_390_074_240]
        );
    }

    #[test]
    fn one_seed_gives_one_stream_and_seeds_differ() {
        let first: Vec<u64> = {
            let mut rng = SimRng::new(7);
            (0..16).map(|_| rng.next_u64()).collect()
        };
        let again: Vec<u64> = {
            let mut rng = SimRng::new(7);
            (0..16).map(|_| rng.next_u64()).collect()
        };
        let other: Vec<u64> = {
            let mut rng = SimRng::new(8);
            (0..16).map(|_| rng.next_u64()).collect()
        };
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn below_stays_in_range_and_reaches_every_value() {
        let mut rng = SimRng::new(1);
        let mut seen = [0u32; 7];
        for _ in 0..7_000 {
            let value = rng.below(7);
            seen[value as usize] += 1;
        }
        // Each of seven values is expected 1000 times; a biased or broken generator lands far
        // outside this generous band.
        for count in seen {
            assert!((800..1_200).contains(&count), "counts {seen:?}");
        }
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn ranges_include_both_ends() {
        let mut rng = SimRng::new(2);
        let mut low_seen = false;
        let mut high_seen = false;
        for _ in 0..1_000 {
            let value = rng.range_inclusive(10, 13);
            assert!((10..=13).contains(&value));
            low_seen |= value == 10;
            high_seen |= value == 13;
        }
        assert!(low_seen && high_seen);
        for _ in 0..1_000 {
            let value = rng.range_inclusive_i64(-3, 2);
            assert!((-3..=2).contains(&value));
        }
        assert_eq!(rng.range_inclusive(5, 5), 5);
        // The full range must not overflow.
        rng.range_inclusive(0, u64::MAX);
        rng.range_inclusive_i64(i64::MIN, i64::MAX);
    }

    #[test]
    fn chance_respects_the_extremes_and_the_middle() {
        let mut rng = SimRng::new(3);
        assert!((0..1_000).all(|_| !rng.chance(0.0)));
        assert!((0..1_000).all(|_| rng.chance(1.0)));
        let hits = (0..10_000).filter(|_| rng.chance(0.25)).count();
        assert!((2_200..2_800).contains(&hits), "hits {hits}");
    }

    #[test]
    #[should_panic(expected = "outside [0, 1]")]
    fn chance_rejects_a_probability_above_one() {
        SimRng::new(0).chance(1.5);
    }

    #[test]
    fn shuffle_permutes_and_choose_picks_members() {
        let mut rng = SimRng::new(4);
        let mut items: Vec<u32> = (0..20).collect();
        rng.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
        assert_ne!(items, sorted, "twenty items kept their order");
        assert_eq!(rng.choose::<u32>(&[]), None);
        assert!(items.contains(rng.choose(&items).unwrap()));
        let mut bytes = [0u8; 13];
        rng.fill_bytes(&mut bytes);
        assert!(bytes.iter().any(|&byte| byte != 0));
    }
}
