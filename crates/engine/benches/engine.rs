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
//! - `momentum_5m`: momentum backtests on a synthetic 100-asset × 1,258-session universe
//!   shaped like bundle's `universe` preset (annual volatility 0.15–0.65, a fifth listed
//!   late), cycling through 4,096 configs drawn (seeded) from `spaces/momentum-5m.toml` on
//!   one `Backtester` warmed by one pass over them, as a long sweep of that space is; and
//!   `batch_of_90_bounds`: 64 of those configs, each with all 90 position bounds of the
//!   space, through `run_momentum_batch` (throughput in configs, so time per config is
//!   criterion's time / 90).
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
use engine::{AssetSeries, Backtester, Configured, MaCrossover, Market, Momentum, RunOptions, WeightingScheme};
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

/// A universe like bundle's `universe` preset: per asset a drift, an annual volatility in
/// 0.15–0.65 and, for a fifth of them, a late listing.
fn universe(rng: &mut ChaCha12Rng, n_assets: usize, sessions: usize) -> (Vec<Columns>, Vec<usize>) {
    let mut cols = Vec::with_capacity(n_assets);
    let mut firsts = Vec::with_capacity(n_assets);
    for _ in 0..n_assets {
        let mu = rng.random_range(-0.05..0.30) / 252.0;
        // Uniform noise on [-1, 1] has standard deviation 1/sqrt(3).
        let daily = rng.random_range(0.15..0.65) / 252.0_f64.sqrt() * 3.0_f64.sqrt();
        let first = if rng.random_bool(0.2) { rng.random_range(0..sessions * 2 / 5) } else { 0 };
        let mut p = rng.random_range(10.0..500.0);
        let (mut open, mut close) = (vec![f64::NAN; sessions], vec![f64::NAN; sessions]);
        for t in first..sessions {
            open[t] = p * (1.0 + daily * 0.2 * (rng.random::<f64>() - 0.5));
            p *= 1.0 + mu + daily * (rng.random::<f64>() * 2.0 - 1.0);
            close[t] = p;
        }
        cols.push(Columns { open, close });
        firsts.push(first);
    }
    (cols, firsts)
}

/// `n` configs drawn uniformly from the grid of `spaces/momentum-5m.toml`.
fn momentum_5m_configs(rng: &mut ChaCha12Rng, n: usize) -> Vec<Momentum> {
    let schemes = [WeightingScheme::Equal, WeightingScheme::MarketCap, WeightingScheme::RiskParity];
    (0..n)
        .map(|_| Momentum {
            lookback_period: 10 * rng.random_range(1..=10_usize),
            holding_period: 1 + 2 * rng.random_range(0..10_usize),
            rebalance_frequency: rng.random_range(1..=10),
            weighting_scheme: schemes[rng.random_range(0..3)],
            top_n_assets: 5 * rng.random_range(1..=4_usize),
            volatility_threshold: [0.1, 0.2, 0.3, 0.4, 0.5][rng.random_range(0..5)],
            min_position_size: rng.random_range(1..=10_u32) as f64,
            max_position_size: (5 * rng.random_range(2..=10_u32)) as f64,
        })
        .collect()
}

fn momentum_5m<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    const SESSIONS: usize = 1258;
    let mut rng = ChaCha12Rng::seed_from_u64(11);
    let (cols, firsts) = universe(&mut rng, 100, SESSIONS);
    let bounds: Vec<usize> = (0..=SESSIONS).collect();
    let assets = cols
        .iter()
        .zip(&firsts)
        .enumerate()
        .map(|(i, (c, &first_bar))| AssetSeries {
            high: &c.close,
            low: &c.close,
            sid: i as u32,
            open: &c.open,
            close: &c.close,
            first_bar,
            end_bar: SESSIONS,
            shares_outstanding: 1e8 + 1e7 * i as f64,
        })
        .collect();
    let m = Market::new_checked(252.0, &bounds, assets).unwrap();
    let params = momentum_5m_configs(&mut rng, 4096);
    let grid: Vec<Configured> = params.iter().map(|p| p.configured().expect("valid momentum")).collect();
    let opts = RunOptions::default();
    let mut g = c.benchmark_group(format!("{clock}/momentum_5m"));
    g.sample_size(30);
    g.throughput(Throughput::Elements(1));
    let mut warm = Backtester::new(&m).unwrap();
    // Warm: every table and selection these configs use is built, as in a long sweep.
    for s in &grid {
        black_box(warm.run(s, &opts).unwrap());
    }
    let mut i = 0;
    g.bench_function("warm_100x1258", |b| {
        b.iter(|| {
            i = (i + 1) % grid.len();
            black_box(warm.run(&grid[i], &opts).unwrap())
        })
    });
    // The grid's own order: the position bounds vary fastest, so a sweep that hands the
    // engine one (lookback, holding, rebalance, weighting, top_n, threshold) point with all
    // 10 x 9 bounds at once lets it share backtests whose decisions coincide.
    let groups: Vec<Vec<Momentum>> = params
        .iter()
        .take(64)
        .map(|&p| {
            (1..=10)
                .flat_map(|lo| {
                    (2..=10).map(move |hi| Momentum {
                        min_position_size: lo as f64,
                        max_position_size: (5 * hi) as f64,
                        ..p
                    })
                })
                .collect()
        })
        .collect();
    for batch in &groups {
        black_box(warm.run_momentum_batch(batch, &opts).unwrap());
    }
    g.throughput(Throughput::Elements(90));
    let mut j = 0;
    g.bench_function("batch_of_90_bounds_100x1258", |b| {
        b.iter(|| {
            j = (j + 1) % groups.len();
            black_box(warm.run_momentum_batch(&groups[j], &opts).unwrap())
        })
    });
    g.finish();
}

fn wall(c: &mut Criterion) {
    ma_sweep_daily(c, "wall");
    ma_minute_mag7(c, "wall");
    momentum_universe(c, "wall");
    momentum_5m(c, "wall");
}

fn cpu(c: &mut Criterion<CpuTime>) {
    ma_sweep_daily(c, "cpu");
    ma_minute_mag7(c, "cpu");
    momentum_universe(c, "cpu");
    momentum_5m(c, "cpu");
}

criterion_group!(wall_clock, wall);
criterion_group! {
    name = cpu_clock;
    config = Criterion::default().with_measurement(CpuTime);
    targets = cpu
}
criterion_main!(wall_clock, cpu_clock);
