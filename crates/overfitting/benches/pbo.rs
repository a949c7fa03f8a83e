//! Criterion benchmarks of the overfitting statistics at the size the issue names:
//!
//! - `pbo_1000x1258_s16`: PBO by CSCV, 1,000 trials × T = 1,258 returns, S = 16
//!   (C(16, 8) = 12,870 splits), from the matrix to the result.
//! - `deflated_sharpe_1000x1258`: the deflated Sharpe of the same matrix.
//!
//! Run: `cargo bench -p overfitting --bench pbo`.
//!
//! Measured 2026-12-01 on the shared 2-core machine while other builds ran (load average
//! 10–12, so wall times are inflated): `pbo_1000x1258_s16` 231 ms (212–246) wall;
//! `deflated_sharpe_1000x1258` 7.0 ms. CPU time per PBO call, from `/usr/bin/time` user
//! seconds of a release loop of 10 calls minus one: 0.09 s (0.17 s before the inner loops
//! were made to vectorise).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use overfitting::{ReturnMatrix, deflated_sharpe, pbo};
use rand_chacha::ChaCha12Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

fn matrix(trials: usize, returns: usize) -> ReturnMatrix {
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    let mut uniform = || (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let mut m = ReturnMatrix::with_returns(returns);
    for n in 0..trials {
        // Returns of about 1% a day with a small per-trial drift; a tenth of the trials are
        // out of the market in their first quarter (exact zeros), as MA configs often are.
        let series: Vec<f64> =
            (0..returns)
                .map(|t| {
                    if n % 10 == 0 && t < returns / 4 {
                        0.0
                    } else {
                        1e-5 * (n % 17) as f64 + 0.017 * (uniform() - 0.5)
                    }
                })
                .collect();
        m.push(&series).expect("finite");
    }
    m
}

fn benches(c: &mut Criterion) {
    let m = matrix(1000, 1258);
    let mut g = c.benchmark_group("overfitting");
    g.sample_size(20);
    g.bench_function("pbo_1000x1258_s16", |b| b.iter(|| pbo(black_box(&m), 16).expect("valid")));
    g.bench_function("deflated_sharpe_1000x1258", |b| b.iter(|| deflated_sharpe(black_box(&m)).expect("valid")));
    g.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
