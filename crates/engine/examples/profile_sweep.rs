//! Runs fixed MA-crossover workloads for profiling with `perf` or `time` (user CPU time is
//! robust on a shared machine, unlike wall time):
//!
//! - `daily N`: N backtests cycling through a 10 × 11 window grid on one 2,520-bar daily
//!   series, on one warm `Backtester`.
//! - `minute N`: N full-budget backtests on a synthetic 7 × 490,620 minute-bar market, on one
//!   warm `Backtester` (after one cold run, timed separately).
//!
//! - `momentum N`: N momentum backtests (defaults, rebalancing every 5 sessions, lookbacks
//!   cycling 20/60/100) on a synthetic 100-asset × 2,520-session daily universe.
//!
//! `CARGO_TARGET_DIR=/work/target-engine cargo run --release -p engine --example profile_sweep -- daily 200000`

use std::time::Instant;

use engine::{AssetSeries, Backtester, Configured, MaCrossover, Market, RunOptions};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;

fn walk(rng: &mut ChaCha12Rng, n: usize, vol: f64) -> (Vec<f64>, Vec<f64>) {
    let mut p = 100.0;
    let (mut open, mut close) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        open.push(p * (1.0 + vol * 0.2 * (rng.random::<f64>() - 0.5)));
        p *= 1.0 + vol * (rng.random::<f64>() * 2.0 - 1.0);
        close.push(p);
    }
    (open, close)
}

fn ma(short_window: usize, long_window: usize) -> Configured {
    (MaCrossover { short_window, long_window, threshold: 0.0 }).configured().expect("valid ma-crossover")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "daily".into());
    let runs: usize = args.next().map_or(100_000, |s| s.parse().expect("a count"));
    let minute = mode == "minute";
    let momentum = mode == "momentum";
    let (n_assets, sessions, per) = match mode.as_str() {
        "minute" => (7, 1258, 390),
        "momentum" => (100, 2520, 1),
        _ => (1, 2520, 1),
    };
    let bars = sessions * per;
    let mut rng = ChaCha12Rng::seed_from_u64(42);
    let cols: Vec<_> = (0..n_assets).map(|_| walk(&mut rng, bars, if minute { 0.001 } else { 0.02 })).collect();
    let bounds: Vec<usize> = (0..=sessions).map(|s| s * per).collect();
    let assets = cols
        .iter()
        .enumerate()
        .map(|(i, (open, close))| AssetSeries {
            high: close,
            low: close,
            sid: i as u32,
            open,
            close,
            first_bar: 0,
            end_bar: bars,
            shares_outstanding: 1.0,
        })
        .collect();
    let market = Market::new_checked(252.0 * per as f64, &bounds, assets).expect("market");
    let grid: Vec<Configured> = if minute {
        vec![ma(10, 50)]
    } else if momentum {
        [20, 60, 100]
            .map(|lookback_period| {
                (engine::Momentum { lookback_period, ..Default::default() }).configured().expect("valid momentum")
            })
            .to_vec()
    } else {
        (5..=50).step_by(5).flat_map(|s| (50..=250).step_by(20).map(move |l| ma(s, l))).collect()
    };
    let opts = RunOptions::default();
    let mut bt = Backtester::new(&market).expect("backtester");
    if minute {
        let start = Instant::now();
        let m = bt.run(&grid[0], &opts).expect("run");
        println!("cold run (2 SMA columns per asset + backtest): {:.2} ms, {m:?}", start.elapsed().as_secs_f64() * 1e3);
    }
    let start = Instant::now();
    let mut check = 0.0;
    for i in 0..runs {
        check += bt.run(&grid[i % grid.len()], &opts).expect("run").sharpe;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{mode}: {runs} backtests of {n_assets} x {bars} bars in {secs:.3} s wall: {:.1}/s, {:.3} ms each, {:.2} ns/bar (checksum {check:.6})",
        runs as f64 / secs,
        secs * 1e3 / runs as f64,
        secs * 1e9 / (runs * bars * n_assets) as f64
    );
}
