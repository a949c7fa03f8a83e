//! The seeded subsample for the trial cap.

use overfitting::{Sample, sample_key};

/// The ids (0..trials) a [`Sample`] keeps under `cap`, sorted.
fn subsample(trials: usize, cap: usize, seed: u64) -> Vec<usize> {
    let mut s = Sample::new(cap, seed);
    for id in 0..trials as u64 {
        s.push(id, ());
    }
    s.into_sorted().into_iter().map(|(id, ())| id as usize).collect()
}
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
fn follows_the_documented_rule() {
    // The cap smallest keys, computed again from the documentation: splitmix64's finalizer.
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    };
    let (n, cap, seed) = (1000u64, 37usize, 9u64);
    let mut keyed: Vec<(u64, u64)> = (0..n).map(|id| (mix(id ^ mix(seed ^ 0x9e3779b97f4a7c15)), id)).collect();
    keyed.sort();
    let mut want: Vec<usize> = keyed[..cap].iter().map(|k| k.1 as usize).collect();
    want.sort();
    assert_eq!(subsample(n as usize, cap, seed), want);
    assert_eq!(sample_key(seed, 17), keyed.iter().find(|k| k.1 == 17).unwrap().0);
}

#[test]
fn the_subset_does_not_depend_on_the_order_trials_arrive_in() {
    let ids: Vec<u64> = (0..5000u64).map(|i| i * 3 + 1).collect();
    let mut forward = Sample::new(100, 4);
    for &id in &ids {
        forward.push(id, id);
    }
    let mut shuffled = ids.clone();
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    for i in (1..shuffled.len()).rev() {
        let j = ((rng.next_u64() as u128 * (i as u128 + 1)) >> 64) as usize;
        shuffled.swap(i, j);
    }
    let mut backward = Sample::new(100, 4);
    for &id in &shuffled {
        backward.push(id, id);
    }
    assert_eq!(forward.seen(), 5000);
    let (a, b) = (forward.into_sorted(), backward.into_sorted());
    assert_eq!(a.len(), 100);
    assert_eq!(a, b);
    assert!(a.iter().all(|(id, item)| id == item));
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
