//! The seeded subsample for the trial cap.

use std::collections::BTreeSet;

use overfitting::subsample;
use rand_chacha::ChaCha12Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

#[test]
fn under_the_cap_every_trial_is_kept() {
    assert_eq!(subsample(5, 5, 1), [0, 1, 2, 3, 4]);
    assert_eq!(subsample(3, 20_000, 1), [0, 1, 2]);
    assert_eq!(subsample(0, 10, 1), Vec::<usize>::new());
}

#[test]
fn over_the_cap_a_seeded_sorted_subset() {
    let a = subsample(1_000_000, 500, 42);
    assert_eq!(a, subsample(1_000_000, 500, 42), "same seed, same subset");
    assert_ne!(a, subsample(1_000_000, 500, 43));
    assert_eq!(a.len(), 500);
    assert!(a.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
    assert!(*a.last().unwrap() < 1_000_000);
}

#[test]
fn follows_the_documented_algorithm() {
    // Floyd's algorithm, written again from the documentation.
    let (n, cap, seed) = (1000usize, 37usize, 9u64);
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut kept = BTreeSet::new();
    for j in n - cap..n {
        let t = ((rng.next_u64() as u128 * (j as u128 + 1)) >> 64) as usize;
        if kept.contains(&t) {
            kept.insert(j);
        } else {
            kept.insert(t);
        }
    }
    assert_eq!(subsample(n, cap, seed), kept.into_iter().collect::<Vec<_>>());
}

#[test]
fn every_trial_is_about_equally_likely() {
    // 10 trials, cap 3: each id should be kept with probability 0.3. Over 3,000 seeds the
    // count is Binomial(3000, 0.3): mean 900, sd 25; allow 6 sd.
    let mut counts = [0usize; 10];
    for seed in 0..3000 {
        for id in subsample(10, 3, seed) {
            counts[id] += 1;
        }
    }
    assert!(counts.iter().all(|&c| c.abs_diff(900) < 150), "{counts:?}");
}
