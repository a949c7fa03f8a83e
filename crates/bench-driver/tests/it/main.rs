//! Integration tests for bench-driver's library: one binary, one module per area.

mod decide;
mod plots;
mod report;
mod stats;

use rand_chacha::ChaCha12Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// Asserts `|actual − expected| ≤ tol`, naming what was compared.
#[track_caller]
fn close(what: &str, actual: f64, expected: f64, tol: f64) {
    assert!((actual - expected).abs() <= tol, "{what}: got {actual}, expected {expected} ± {tol}");
}

/// Standard normals from a seeded ChaCha12 stream by the Box–Muller transform, so that every
/// simulation is reproducible bit for bit.
struct Normals {
    rng: ChaCha12Rng,
    spare: Option<f64>,
}

impl Normals {
    fn new(seed: u64) -> Normals {
        Normals { rng: ChaCha12Rng::seed_from_u64(seed), spare: None }
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }

    /// `n` draws from N(mean, sd²).
    fn sample(&mut self, n: usize, mean: f64, sd: f64) -> Vec<f64> {
        (0..n).map(|_| mean + sd * self.normal()).collect()
    }
}
