//! Criterion benchmarks for the engine.
//!
//! - `ma_sweep_daily`: MA-crossover backtests on one asset × 2,520 daily bars, cycling
//!   through a 10 × 11 grid of windows on one warm `Backtester` (the sweep shape), and on a
//!   cache-less one. Throughput is in bars, so criterion prints bars/s; backtests/s is
//!   2,520 times less.
//! - `ma_minute_mag7`: one full-budget MA-crossover backtest on a synthetic 7 × 490,620
//!   minute-bar market (1,258 sessions × 390), warm and cold, next to `stream_read`, a plain
//!   read of the same bytes a warm backtest touches (open, close and two SMAs per asset):
//!   the memory-bandwidth bound.
//! - `momentum_universe`: one momentum backtest (defaults, lookbacks cycling 20/60/100) on a
//!   synthetic 100-asset × 2,520-session daily universe, on one warm `Backtester`.
//!
//! Every benchmark runs twice: `wall/…` with criterion's wall clock, and `cpu/…` with this
//! thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), which stays meaningful on a shared,
//! oversubscribed machine where wall time also counts time spent descheduled.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-engine cargo bench -p engine --bench engine`.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::{AssetSeries, Backtester, Configured, MaCrossover, Market, Momentum, RunOptions};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;

/// CPU time of the calling thread.
struct CpuTime;

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Same unit (nanoseconds as a duration), so the wall-clock formatter fits.
        WallTime.formatter()
    }
}

struct Columns {
    open: Vec<f64>,
    close: Vec<f64>,
}

fn walk(rng: &mut ChaCha12Rng, n: usize, vol: f64) -> Columns {
    let mut p = 100.0;
    let mut open = Vec::with_capacity(n);
    let mut close = Vec::with_capacity(n);
    for _ in 0..n {
        open.push(p * (1.0 + vol * 0.2 * (rng.random::<f64>() - 0.5)));
        p *= 1.0 + vol * (rng.random::<f64>() * 2.0 - 1.0);
        close.push(p);
    }
    Columns { open, close }
}

fn market<'a>(cols: &'a [Columns], bounds: &'a [usize], periods_per_year: f64) -> Market<'a> {
    let n = *bounds.last().unwrap();
    let assets = cols
        .iter()
        .enumerate()
        .map(|(i, c)| AssetSeries {
            high: &c.close,
            low: &c.close,
            sid: i as u32,
            open: &c.open,
            close: &c.close,
            first_bar: 0,
            end_bar: n,
            shares_outstanding: 1e9,
        })
        .collect();
    Market::new_checked(periods_per_year, bounds, assets).unwrap()
}

fn grid() -> Vec<Configured> {
    let mut out = Vec::new();
    for short_window in (5..=50).step_by(5) {
        for long_window in (50..=250).step_by(20) {
            out.push(
                (MaCrossover { short_window, long_window, threshold: 0.0 }).configured().expect("valid ma-crossover"),
            );
        }
    }
    out
}

fn ma_sweep_daily<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    const BARS: usize = 2520;
    let mut rng = ChaCha12Rng::seed_from_u64(42);
    let cols = vec![walk(&mut rng, BARS, 0.02)];
    let bounds: Vec<usize> = (0..=BARS).collect();
    let m = market(&cols, &bounds, 252.0);
    let grid = grid();
    let opts = RunOptions::default();
    let mut g = c.benchmark_group(format!("{clock}/ma_sweep_daily"));
    g.throughput(Throughput::Elements(BARS as u64));
    let mut warm = Backtester::new(&m).unwrap();
    let mut i = 0;
    g.bench_function("warm_cache_1x2520", |b| {
        b.iter(|| {
            i = (i + 1) % grid.len();
            black_box(warm.run(&grid[i], &opts).unwrap())
        })
    });
    let mut cold = Backtester::with_cache_bytes(&m, 0).unwrap();
    g.bench_function("no_cache_1x2520", |b| {
        b.iter(|| {
            i = (i + 1) % grid.len();
            black_box(cold.run(&grid[i], &opts).unwrap())
        })
    });
    g.finish();
}

fn ma_minute_mag7<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    const SESSIONS: usize = 1258;
    const BARS: usize = SESSIONS * 390;
    let mut rng = ChaCha12Rng::seed_from_u64(7);
    let cols: Vec<Columns> = (0..7).map(|_| walk(&mut rng, BARS, 0.001)).collect();
    let bounds: Vec<usize> = (0..=SESSIONS).map(|s| s * 390).collect();
    let m = market(&cols, &bounds, 252.0 * 390.0);
    let s =
        (MaCrossover { short_window: 10, long_window: 50, threshold: 0.0 }).configured().expect("valid ma-crossover");
    let opts = RunOptions::default();
    let mut g = c.benchmark_group(format!("{clock}/ma_minute_mag7"));
    g.sample_size(20);
    g.throughput(Throughput::Bytes((7 * BARS * 4 * size_of::<f64>()) as u64));
    let mut warm = Backtester::new(&m).unwrap();
    g.bench_function("warm_7x490620", |b| b.iter(|| black_box(warm.run(&s, &opts).unwrap())));
    g.bench_function("cold_7x490620", |b| b.iter(|| black_box(engine::run(&m, &s, &opts).unwrap())));
    // The bound: one streaming pass over the same 4 columns per asset. The two SMA columns
    // are stand-ins with the same size as the real ones.
    let smas: Vec<Columns> = (0..7).map(|_| walk(&mut rng, BARS, 0.001)).collect();
    g.bench_function("stream_read_same_bytes", |b| {
        b.iter(|| {
            let mut acc = [0.0_f64; 4];
            for (x, y) in cols.iter().zip(&smas) {
                for k in 0..BARS / 4 {
                    for (j, a) in acc.iter_mut().enumerate() {
                        let i = 4 * k + j;
                        *a += x.open[i] + x.close[i] + y.open[i] + y.close[i];
                    }
                }
            }
            black_box(acc)
        })
    });
    g.finish();
}

fn momentum_universe<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    const SESSIONS: usize = 2520;
    let mut rng = ChaCha12Rng::seed_from_u64(9);
    let cols: Vec<Columns> = (0..100).map(|_| walk(&mut rng, SESSIONS, 0.02)).collect();
    let bounds: Vec<usize> = (0..=SESSIONS).collect();
    let m = market(&cols, &bounds, 252.0);
    let grid: Vec<Configured> = [20, 60, 100]
        .map(|lookback_period| {
            (Momentum { lookback_period, ..Momentum::default() }).configured().expect("valid momentum")
        })
        .to_vec();
    let opts = RunOptions::default();
    let mut g = c.benchmark_group(format!("{clock}/momentum_universe"));
    g.sample_size(30);
    g.throughput(Throughput::Elements((100 * SESSIONS) as u64));
    let mut warm = Backtester::new(&m).unwrap();
    let mut i = 0;
    g.bench_function("warm_100x2520", |b| {
        b.iter(|| {
            i = (i + 1) % grid.len();
            black_box(warm.run(&grid[i], &opts).unwrap())
        })
    });
    g.finish();
}

fn wall(c: &mut Criterion) {
    ma_sweep_daily(c, "wall");
    ma_minute_mag7(c, "wall");
    momentum_universe(c, "wall");
}

fn cpu(c: &mut Criterion<CpuTime>) {
    ma_sweep_daily(c, "cpu");
    ma_minute_mag7(c, "cpu");
    momentum_universe(c, "cpu");
}

criterion_group!(wall_clock, wall);
criterion_group! {
    name = cpu_clock;
    config = Criterion::default().with_measurement(CpuTime);
    targets = cpu
}
criterion_main!(wall_clock, cpu_clock);
