//! A seeded, documented subsample of trial ids, for the `--overfitting-max-trials` cap.

use std::collections::BTreeSet;

use rand_chacha::ChaCha12Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// The default cap on the number of trials the statistics use (`--overfitting-max-trials`).
pub const DEFAULT_MAX_TRIALS: usize = 20_000;

/// The trial ids (positions 0..trials) the statistics use under a cap of `cap`, sorted.
///
/// - `trials <= cap`: every id, 0..trials, and no random draw.
/// - Otherwise a uniformly random subset of `cap` ids by Robert Floyd's algorithm, drawing
///   from `ChaCha12Rng::seed_from_u64(seed)`: for j = trials−cap, …, trials−1 in turn, draw t
///   uniform in 0..=j and keep t, or j if t is already kept. A uniform draw in 0..m is
///   `(next_u64 · m) >> 64` (Lemire's multiply without rejection: its bias is below m/2⁶⁴,
///   far under any statistical effect here). Everything is spelled out so that the subset
///   depends on the seed alone, never on the version of the `rand` crates.
///
/// Memory is O(cap) whatever `trials` is.
pub fn subsample(trials: usize, cap: usize, seed: u64) -> Vec<usize> {
    if trials <= cap {
        return (0..trials).collect();
    }
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut kept = BTreeSet::new();
    for j in trials - cap..trials {
        let t = ((u128::from(rng.next_u64()) * (j as u128 + 1)) >> 64) as usize;
        if !kept.insert(t) {
            kept.insert(j);
        }
    }
    kept.into_iter().collect()
}
