//! A fixed momentum workload for `perf`, `time` or `valgrind`: the same market and configs as
//! the `momentum_5m` criterion benchmark (100 assets × 1,258 sessions, 4,096 configs drawn
//! from `spaces/momentum-5m.toml`), one warm-up pass over the configs, then N backtests
//! cycling through them on the same `Backtester`.
//!
//! `cargo run --release -p engine --example momentum_sweep -- RUNS [CONFIGS [reference]]`
//! (defaults 20,000 and 4,096; fewer configs keep a `valgrind` run short; `reference` runs a
//! cache-less backtester, so momentum's reference kernel, whose checksums must agree).

use std::time::Instant;

use engine::{AssetSeries, Backtester, Configured, Market, Momentum, RunOptions, WeightingScheme};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;

const SESSIONS: usize = 1258;

/// Per asset: opens, closes, first bar. Same generator as the benchmark's `universe`.
#[allow(clippy::type_complexity, reason = "a throwaway tuple of columns")]
fn universe(rng: &mut ChaCha12Rng, n_assets: usize) -> Vec<(Vec<f64>, Vec<f64>, usize)> {
    (0..n_assets)
        .map(|_| {
            let mu = rng.random_range(-0.05..0.30) / 252.0;
            let daily = rng.random_range(0.15..0.65) / 252.0_f64.sqrt() * 3.0_f64.sqrt();
            let first = if rng.random_bool(0.2) { rng.random_range(0..SESSIONS * 2 / 5) } else { 0 };
            let mut p = rng.random_range(10.0..500.0);
            let (mut open, mut close) = (vec![f64::NAN; SESSIONS], vec![f64::NAN; SESSIONS]);
            for t in first..SESSIONS {
                open[t] = p * (1.0 + daily * 0.2 * (rng.random::<f64>() - 0.5));
                p *= 1.0 + mu + daily * (rng.random::<f64>() * 2.0 - 1.0);
                close[t] = p;
            }
            (open, close, first)
        })
        .collect()
}

fn configs(rng: &mut ChaCha12Rng, n: usize) -> Vec<Configured> {
    let schemes = [WeightingScheme::Equal, WeightingScheme::MarketCap, WeightingScheme::RiskParity];
    (0..n)
        .map(|_| {
            (Momentum {
                lookback_period: 10 * rng.random_range(1..=10_usize),
                holding_period: 1 + 2 * rng.random_range(0..10_usize),
                rebalance_frequency: rng.random_range(1..=10),
                weighting_scheme: schemes[rng.random_range(0..3)],
                top_n_assets: 5 * rng.random_range(1..=4_usize),
                volatility_threshold: [0.1, 0.2, 0.3, 0.4, 0.5][rng.random_range(0..5)],
                min_position_size: rng.random_range(1..=10_u32) as f64,
                max_position_size: (5 * rng.random_range(2..=10_u32)) as f64,
            })
            .configured()
            .expect("valid momentum")
        })
        .collect()
}

fn main() {
    let arg = |i: usize, default: usize| std::env::args().nth(i).map_or(default, |s| s.parse().expect("a count"));
    let (runs, n_configs) = (arg(1, 20_000), arg(2, 4096));
    let mut rng = ChaCha12Rng::seed_from_u64(11);
    let cols = universe(&mut rng, 100);
    let bounds: Vec<usize> = (0..=SESSIONS).collect();
    let assets = cols
        .iter()
        .enumerate()
        .map(|(i, (open, close, first))| AssetSeries {
            high: close,
            low: close,
            sid: i as u32,
            open,
            close,
            first_bar: *first,
            end_bar: SESSIONS,
            shares_outstanding: 1e8 + 1e7 * i as f64,
        })
        .collect();
    let market = Market::new_checked(252.0, &bounds, assets).expect("market");
    let grid = configs(&mut rng, n_configs);
    let opts = RunOptions::default();
    let reference = std::env::args().nth(3).is_some_and(|a| a == "reference");
    let capacity = if reference { 0 } else { Backtester::DEFAULT_CACHE_BYTES };
    let mut bt = Backtester::with_cache_bytes(&market, capacity).expect("backtester");
    let start = Instant::now();
    let mut check = 0.0;
    for s in &grid {
        check += bt.run(s, &opts).expect("run").sharpe;
    }
    println!("warm-up pass over {} configs: {:.3} s (checksum {check:.9})", grid.len(), start.elapsed().as_secs_f64());
    let start = Instant::now();
    let mut check = 0.0;
    for i in 0..runs {
        check += bt.run(&grid[i % grid.len()], &opts).expect("run").sharpe;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{runs} backtests in {secs:.3} s wall: {:.1} µs each (checksum {check:.9})", secs * 1e6 / runs as f64);
}
