//! Integration tests of the overfitting crate: CSCV/PBO, the deflated Sharpe, the subsample
//! and walk-forward segments, each against hand-computed values or a second computation.

mod cscv;
mod deflated;
mod matrix;
mod moments;
mod sample;
mod segments;

use overfitting::ReturnMatrix;
use rand_chacha::ChaCha12Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// A trial of 4 blocks × 4 rows for the hand-computed cases: a "good" block is
/// (3, 1, 3, 1), mean 2; a "bad" one is (1, −1, 1, −1), mean 0. Each block's deviations from
/// its own mean are ±1.
///
/// The sharpe of any 2 blocks depends only on how many are good, k:
/// - k = 0: mean 0, so sharpe f(0) = 0;
/// - k = 1: rows 3,1,3,1,1,−1,1,−1, mean 1, deviations ±2 or 0 (four 2² and four 0):
///   Σd² = 16, var = 16/7, f(1) = 1/sqrt(16/7) = sqrt(7)/4 ≈ 0.661;
/// - k = 2: mean 2, deviations ±1: Σd² = 8, var = 8/7, f(2) = 2/sqrt(8/7) ≈ 1.871.
///
/// So f(0) < f(1) < f(2), ranks follow k, and equal k gives bit-equal sharpes (small
/// integers and halves are exact in f64, whatever the summation order).
pub(crate) fn blocks_trial(good: &[usize]) -> Vec<f64> {
    (0..4)
        .flat_map(|b| {
            let base = if good.contains(&b) { 2.0 } else { 0.0 };
            [base + 1.0, base - 1.0, base + 1.0, base - 1.0]
        })
        .collect()
}

/// A matrix from explicit series.
pub(crate) fn matrix(trials: &[Vec<f64>]) -> ReturnMatrix {
    ReturnMatrix::from_trials(trials).expect("valid matrix")
}

/// Standard normals by Box–Muller from a seeded ChaCha12 stream.
pub(crate) struct Normals(ChaCha12Rng);

impl Normals {
    pub(crate) fn new(seed: u64) -> Normals {
        Normals(ChaCha12Rng::seed_from_u64(seed))
    }
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    pub(crate) fn normal(&mut self) -> f64 {
        let (u1, u2) = (1.0 - self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// `trials` series of `returns` iid normal returns with sd `sd` and per-trial drift
/// `drift(n)`.
pub(crate) fn noise(seed: u64, trials: usize, returns: usize, sd: f64, drift: impl Fn(usize) -> f64) -> ReturnMatrix {
    let mut z = Normals::new(seed);
    let series: Vec<Vec<f64>> =
        (0..trials).map(|n| (0..returns).map(|_| drift(n) + sd * z.normal()).collect()).collect();
    matrix(&series)
}
