//! Runs a fixed MA-crossover sweep on one 2,520-bar daily series, for profiling with
//! `perf` or `time` (user CPU time is robust on a shared machine, unlike wall time).
//!
//! `CARGO_TARGET_DIR=/work/target-engine cargo run --release -p engine --example profile_sweep -- 200000`

use engine::{AssetSeries, Backtester, MaCrossover, Market, RunOptions, Strategy};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;

fn main() {
    let runs: usize = std::env::args().nth(1).map_or(100_000, |s| s.parse().expect("a count"));
    const BARS: usize = 2520;
    let mut rng = ChaCha12Rng::seed_from_u64(42);
    let mut p = 100.0;
    let (mut open, mut close) = (Vec::new(), Vec::new());
    for _ in 0..BARS {
        open.push(p * (1.0 + 0.004 * (rng.random::<f64>() - 0.5)));
        p *= 1.0 + 0.02 * (rng.random::<f64>() * 2.0 - 1.0);
        close.push(p);
    }
    let bounds: Vec<usize> = (0..=BARS).collect();
    let asset =
        AssetSeries { sid: 0, open: &open, close: &close, first_bar: 0, end_bar: BARS, shares_outstanding: 1.0 };
    let market = Market::new_checked(252.0, &bounds, vec![asset]).expect("market");
    let mut grid = Vec::new();
    for short_window in (5..=50).step_by(5) {
        for long_window in (50..=250).step_by(20) {
            grid.push(Strategy::MaCrossover(MaCrossover { short_window, long_window, threshold: 0.0 }));
        }
    }
    let mut bt = Backtester::new(&market).expect("backtester");
    let opts = RunOptions::default();
    let start = std::time::Instant::now();
    let mut check = 0.0;
    for i in 0..runs {
        check += bt.run(&grid[i % grid.len()], &opts).expect("run").sharpe;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{runs} backtests in {secs:.3} s wall: {:.0}/s, {:.2} ns/bar (checksum {check:.6})",
        runs as f64 / secs,
        secs * 1e9 / (runs * BARS) as f64
    );
}
