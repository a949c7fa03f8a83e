//! PBO by CSCV: hand-computed cases with ties, dominance, iid noise, and a naive reference.

use overfitting::{Error, ReturnMatrix, pbo};
use proptest::prelude::*;

use crate::{blocks_trial, matrix, noise};

/// The one place the hand-computed cases call the API: S = 4 on trials built by
/// [`blocks_trial`], with `lead` extra rows put in front of every trial (CSCV must drop them:
/// T mod S = `lead`).
fn check(good: &[&[usize]], lead: &[[f64; 2]], expect_pbo: f64, expect_logits: [f64; 6]) {
    let trials: Vec<Vec<f64>> = good
        .iter()
        .enumerate()
        .map(|(n, g)| {
            let mut t: Vec<f64> = lead.get(n).map(|l| l.to_vec()).unwrap_or_default();
            t.extend(blocks_trial(g));
            t
        })
        .collect();
    let r = pbo(&matrix(&trials), 4).unwrap();
    assert_eq!(r.dropped_rows, trials[0].len() - 16);
    assert_eq!(r.block_rows, 4);
    assert_eq!(r.logits.len(), 6);
    for (split, (got, want)) in r.logits.iter().zip(expect_logits).enumerate() {
        assert!((got - want).abs() < 1e-12, "split {split}: λ {got} != {want}: {:?}", r.logits);
    }
    assert_eq!(r.pbo, expect_pbo, "{:?}", r.logits);
}

// Splits in lexicographic order of the in-sample blocks c: {0,1} {0,2} {0,3} {1,2} {1,3} {2,3};
// out-of-sample is the complement. k_n = number of good blocks of trial n in c; R̄ follows the
// good count in the complement. With N = 4, ω = r/5, and λ = ln(ω/(1−ω)):
// r = 1 → ln(0.2/0.8) = ln(1/4); r = 1.5 → ln(0.3/0.7) = ln(3/7); r = 2.5 → ln(1) = 0;
// r = 3.5 → ln(0.7/0.3) = ln(7/3); r = 4 → ln(0.8/0.2) = ln 4.

#[test]
fn in_sample_best_is_always_out_of_sample_worst() {
    // Good blocks {0,1} {2,3} {0,2} {1,3}: every trial has 2 good blocks, so the OOS count is
    // 2 − k and the IS best is the OOS worst.
    // c={0,1}: k=[2,0,1,1], n*=0, OOS counts [0,2,1,1]: R̄_0 = f(0), none below or equal: r=1.
    // c={0,2}: k=[1,1,2,0], n*=2, OOS [1,1,0,2]: r=1.
    // c={0,3}: k=[1,1,1,1], IS tie → n*=0; OOS [1,1,1,1] all tie: r = 1 + 0 + 3/2 = 2.5, λ=0.
    // c={1,2}: k=[1,1,1,1], n*=0, OOS all tie: r = 2.5, λ = 0.
    // c={1,3}: k=[1,1,0,2], n*=3, OOS [1,1,2,0]: r=1.
    // c={2,3}: k=[0,2,1,1], n*=1, OOS [2,0,1,1]: r=1.
    // λ ≤ 0 in all 6 splits (λ = 0 counts): pbo = 6/6 = 1.
    let q = (0.25f64).ln();
    check(&[&[0, 1], &[2, 3], &[0, 2], &[1, 3]], &[], 1.0, [q, q, 0.0, 0.0, q, q]);
}

#[test]
fn one_trial_good_in_every_block_gives_pbo_zero() {
    // Good blocks {0,1,2,3} {0,1} {2,3} {}: trial 0 has k = 2 in every split and wins
    // in-sample (ties with trial 1 on c={0,1} and trial 2 on c={2,3} go to the lowest id, 0).
    // c={0,1}: OOS {2,3} counts [2,0,2,0]: 2 below (trials 1, 3), 1 equal (trial 2):
    //          r = 1 + 2 + 1/2 = 3.5, λ = ln(7/3).
    // c={0,2}, {0,3}, {1,2}, {1,3}: OOS counts [2,1,1,0]: 3 below, r = 4, λ = ln 4.
    // c={2,3}: OOS {0,1} counts [2,2,0,0]: 2 below, 1 equal: r = 3.5, λ = ln(7/3).
    // No λ ≤ 0: pbo = 0.
    // The first 2 rows of 18 (T mod 4 = 2) are wild and must be dropped: kept, they would
    // make trial 3 the in-sample best of every split containing block 0.
    let (a, b) = ((7.0f64 / 3.0).ln(), 4f64.ln());
    let lead = [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [900.0, 1000.0]];
    check(&[&[0, 1, 2, 3], &[0, 1], &[2, 3], &[]], &lead, 0.0, [a, b, b, b, b, a]);
}

#[test]
fn a_fraction_of_the_splits_overfit() {
    // Good blocks {0,1,2} {3} {0,3} {1,2}:
    // c={0,1}: k=[2,0,1,1], n*=0; OOS {2,3} counts [1,1,1,1]: r = 1 + 0 + 3/2 = 2.5, λ = 0.
    // c={0,2}: k=[2,0,1,1], n*=0; OOS {1,3} counts [1,1,1,1]: r = 2.5, λ = 0.
    // c={0,3}: k=[1,1,2,0], n*=2; OOS {1,2} counts [2,0,0,2]: R̄_2 = f(0), 0 below, 1 equal
    //          (trial 1): r = 1.5, λ = ln(3/7).
    // c={1,2}: k=[2,0,0,2], tie → n*=0; OOS {0,3} counts [1,1,2,0]: 1 below (trial 3), 1 equal
    //          (trial 1): r = 2.5, λ = 0.
    // c={1,3}: k=[1,1,1,1], n*=0; OOS {0,2} counts [2,0,1,1]: 3 below: r = 4, λ = ln 4.
    // c={2,3}: k=[1,1,1,1], n*=0; OOS {0,1} counts [2,0,1,1]: r = 4, λ = ln 4.
    // λ ≤ 0 in 4 of 6: pbo = 2/3.
    let (w, b) = ((3.0f64 / 7.0).ln(), 4f64.ln());
    check(&[&[0, 1, 2], &[3], &[0, 3], &[1, 2]], &[], 4.0 / 6.0, [0.0, 0.0, w, 0.0, b, b]);
}

#[test]
fn identical_trials_tie_exactly() {
    // Four copies of one noisy series (not a hand pattern: sums are inexact here). Every
    // sharpe ties in every split, so n* = 0 and r = 1 + 0 + 3/2 = 2.5: ω = 0.5, λ = 0 exactly,
    // and pbo = 1. This only holds if IS and OOS sharpes of equal data are bit-equal.
    let one = noise(3, 1, 16 * 5 + 3, 0.01, |_| 0.0005);
    let copies: Vec<Vec<f64>> = (0..4).map(|_| one.trial(0).to_vec()).collect();
    let r = pbo(&matrix(&copies), 16).unwrap();
    assert_eq!(r.logits.len(), 12_870);
    assert!(r.logits.iter().all(|&l| l == 0.0));
    assert_eq!(r.pbo, 1.0);
    // A fifth, distinct and clearly better trial then wins every split: ties among the
    // copies below it leave its rank at 5, ω = 5/6, λ = ln 5.
    let mut five = copies.clone();
    five.push(one.trial(0).iter().map(|x| x + 0.05).collect());
    let r = pbo(&matrix(&five), 16).unwrap();
    assert!(r.logits.iter().all(|&l| (l - 5f64.ln()).abs() < 1e-12));
    assert_eq!(r.pbo, 0.0);
}

#[test]
fn constant_returns_have_sharpe_zero_and_tie() {
    // Trial 0 earns a constant 0.1 per period (std 0, so sharpe 0 by the contract, although
    // 0.1 summed 20 times and divided by 20 is not exactly 0.1), trial 1 is out of the market
    // (all 0: sharpe 0), trials 2 and 3 are noise with a drift of −0.5 sd (sharpe about −0.5
    // on any half, well below 0). In every split trials 0 and 1 tie in-sample (n* = 0, the
    // lowest id) and out-of-sample; 2 are below: r = 1 + 2 + 1/2 = 3.5, ω = 0.7,
    // λ = ln(7/3) > 0, and pbo = 0. A few-ulp std for trial 0 would give it a huge sharpe
    // out of sample (r = 4, λ = ln 4) instead.
    let neg = noise(9, 2, 320, 0.01, |_| -0.005);
    let r = pbo(&matrix(&[vec![0.1; 320], vec![0.0; 320], neg.trial(0).to_vec(), neg.trial(1).to_vec()]), 16).unwrap();
    let expected = (7.0f64 / 3.0).ln();
    assert!(r.logits.iter().all(|&l| (l - expected).abs() < 1e-12), "{:?}", &r.logits[..8]);
    assert_eq!(r.pbo, 0.0);
    assert_eq!(overfitting::sharpe(&[0.1; 20]), 0.0);
}

#[test]
fn one_trial_dominating_every_block_gives_pbo_about_zero() {
    // 20 noise trials (sd 1 per period); trial 7 has a drift of 0.5 sd. Over 20-row blocks its
    // in-sample sharpe (about 0.5 over 160 rows, noise ±0.08) beats the others' (0 ± 0.08) in
    // every split, and it ranks near the top out of sample.
    let m = noise(11, 20, 320, 1.0, |n| if n == 7 { 0.5 } else { 0.0 });
    let r = pbo(&m, 16).unwrap();
    assert!(r.pbo < 0.01, "pbo {}", r.pbo);
}

#[test]
fn iid_noise_gives_pbo_about_one_half() {
    // On pure noise the in-sample best's out-of-sample rank is uniform on 1..N, so with N even
    // P(λ ≤ 0) = P(r ≤ (N+1)/2) = 1/2. The splits of one matrix share rows, so a single PBO
    // varies a lot (roughly 0.2..0.8); the mean over 10 seeded matrices is held to
    // |mean − 0.5| < 0.15 (its sd is about 0.06).
    let pbos: Vec<f64> = (0..10).map(|seed| pbo(&noise(100 + seed, 50, 480, 0.01, |_| 0.0), 16).unwrap().pbo).collect();
    let mean = pbos.iter().sum::<f64>() / pbos.len() as f64;
    assert!((mean - 0.5).abs() < 0.15, "mean pbo {mean}: {pbos:?}");
}

#[test]
fn bad_block_counts_and_short_matrices_are_refused() {
    let m = noise(1, 3, 40, 0.01, |_| 0.0);
    for s in [0, 2, 3, 5, 7, 26, 100] {
        assert_eq!(pbo(&m, s).unwrap_err(), Error::InvalidBlocks { got: s });
    }
    assert!(pbo(&m, 24).is_err_and(|e| matches!(e, Error::TooFewReturns { got: 40, needed: 48, .. })));
    assert!(pbo(&m, 20).is_ok());
    assert_eq!(pbo(&m.select(&[1]), 4).unwrap_err(), Error::TooFewTrials(1));
    assert_eq!(overfitting::splits(4), 6);
    assert_eq!(overfitting::splits(16), 12_870);
    assert_eq!(overfitting::splits(24), 2_704_156);
}

/// The contract read literally: per split, gather the rows of the in-sample blocks in order
/// and the rest, compute every sharpe row by row, rank.
fn naive_pbo(m: &ReturnMatrix, s: usize) -> (f64, Vec<f64>) {
    fn sharpe(xs: &[f64]) -> f64 {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        if var == 0.0 { 0.0 } else { mean / var.sqrt() }
    }
    fn sets(s: usize, h: usize, from: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == h {
            out.push(cur.clone());
            return;
        }
        for b in from..s {
            cur.push(b);
            sets(s, h, b + 1, cur, out);
            cur.pop();
        }
    }
    let (t, n) = (m.returns(), m.trials());
    let (rows, drop) = (t / s, t % s);
    let mut all = Vec::new();
    sets(s, s / 2, 0, &mut Vec::new(), &mut all);
    let logits: Vec<f64> = all
        .iter()
        .map(|c| {
            let pick = |inside: bool| -> Vec<f64> {
                (0..n)
                    .map(|trial| {
                        let x = m.trial(trial);
                        let rows: Vec<f64> = (0..s)
                            .filter(|b| c.contains(b) == inside)
                            .flat_map(|b| x[drop + b * rows..drop + (b + 1) * rows].iter().copied())
                            .collect();
                        sharpe(&rows)
                    })
                    .collect()
            };
            let (is, oos) = (pick(true), pick(false));
            let best = (0..n).fold(0, |b, m| if is[m] > is[b] { m } else { b });
            let below = oos.iter().filter(|&&r| r < oos[best]).count() as f64;
            let equal = (0..n).filter(|&m| m != best && oos[m] == oos[best]).count() as f64;
            let omega = (1.0 + below + equal / 2.0) / (n as f64 + 1.0);
            (omega / (1.0 - omega)).ln()
        })
        .collect();
    let pbo = logits.iter().filter(|&&l| l <= 0.0).count() as f64 / logits.len() as f64;
    (pbo, logits)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The incremental PBO equals the row-by-row reference on random matrices (continuous
    /// noise, so no two sharpes tie), λ by λ.
    #[test]
    fn incremental_equals_row_by_row(seed in 0u64..1_000_000, trials in 2usize..12, half in 2usize..5, extra in 0usize..20, skill in 0.0f64..0.3) {
        let s = 2 * half;
        let m = noise(seed, trials, 2 * s + extra + (seed as usize % 3) * s, 0.01, |n| skill * 0.01 * (n % 3) as f64);
        let fast = pbo(&m, s).unwrap();
        let (slow_pbo, slow_logits) = naive_pbo(&m, s);
        prop_assert_eq!(&fast.logits, &slow_logits);
        prop_assert_eq!(fast.pbo, slow_pbo);
    }
}

/// The splits are shared out among threads; every thread count gives the same bits, with the
/// last range shorter than the others or not, and with more threads than pairs.
#[test]
fn every_thread_count_gives_the_same_logits() {
    let m = noise(21, 40, 256, 0.01, |n| n as f64 * 1e-5);
    for blocks in [4, 8, 16] {
        let one = overfitting::pbo_on_threads(&m, blocks, Some(1)).unwrap();
        assert_eq!(one, pbo(&m, blocks).unwrap(), "S = {blocks}, default threads");
        for threads in [2, 3, 7, 10_000] {
            let many = overfitting::pbo_on_threads(&m, blocks, Some(threads)).unwrap();
            let bits = |p: &overfitting::Pbo| p.logits.iter().map(|l| l.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&many), bits(&one), "S = {blocks}, {threads} threads");
            assert_eq!(many.pbo, one.pbo);
        }
    }
}
