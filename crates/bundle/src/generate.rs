//! Deterministic synthetic bundles: the "mag-7" stocks and a broad universe.
//!
//! Prices are correlated geometric Brownian motion: each bar's log return mixes one market
//! factor with an idiosyncratic shock, with a per-symbol drift, volatility and correlation.
//! Raw prices then carry the real splits of 2020–2024 (for mag-7) and quarterly cash
//! dividends, so that the back-adjustment path is exercised exactly as with real data.
//!
//! Every random number comes from one `ChaCha12Rng` seeded with `--seed`, drawn in a fixed
//! order (bar by bar, asset by asset), and normals come from our own Box–Muller transform, so
//! the same seed gives the same bytes, and the same content hash, on every platform and with
//! every version of the `rand` crates.
//!
//! [`PlantEdge`] (`--plant-edge`) optionally plants a real, known edge for one MA-crossover
//! configuration, as a control for the overfitting statistics: see its docs. Without it every
//! operation of the generator is unchanged, so existing bundles keep their content hashes.

use chrono::NaiveDate;
use rand_chacha::ChaCha12Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use crate::calendar;
use crate::data::{AssetDef, BundleData, Dividend, Frequency, RawBars, Split};
use crate::error::{Error, Result};

/// Which synthetic data set to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// AAPL, AMZN, GOOGL, META, MSFT, NVDA and TSLA with their real 2020–2024 splits.
    Mag7,
    /// `assets` synthetic stocks with shares outstanding, for cross-sectional strategies.
    Universe {
        /// Number of assets.
        assets: usize,
    },
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateSpec {
    /// The data set.
    pub preset: Preset,
    /// Bar frequency.
    pub frequency: Frequency,
    /// First calendar day (the first session is on or after it).
    pub start: NaiveDate,
    /// Last calendar day.
    pub end: NaiveDate,
    /// Seed of every random draw.
    pub seed: u64,
    /// A planted edge for one MA-crossover configuration; `None` for pure noise.
    pub plant_edge: Option<PlantEdge>,
}

/// A real, known edge for exactly one MA-crossover configuration (short, long, threshold).
///
/// While generating, each asset runs that configuration's rule (design-notes section 3) on
/// its own closes as they are made: no signal until both SMAs exist, then long when
/// SMA_short > SMA_long·(1+threshold), flat when SMA_short < SMA_long·(1−threshold), else the
/// previous target. When the target changes on the close of bar t, the configuration fills
/// at the open of t+1, and the planted edge moves that open in its favour: `strength`·σ_bar
/// lower for a buy, higher for a sell (σ_bar is the asset's per-bar volatility). So the
/// planted configuration earns about 2·strength·σ_bar per round trip, on top of the noise.
///
/// Only opens move, and only on the planted configuration's fill bars: the closes, hence
/// every SMA and every other configuration's signals, are those of the plain bundle, and a
/// configuration earns the edge only on the bars where it trades together with the planted
/// one (buying into a planted exit, or selling into a planted entry, costs it instead). The
/// rule is causal (bar t+1's open depends on closes up to t) and draws no random number, so
/// the bundle stays deterministic by seed.
///
/// The rule sees exactly the back-adjusted closes of a backtest: it runs on raw closes times
/// the split factor in force (a constant multiple of the adjusted closes, which the rule's
/// ratios ignore), and a planted-edge bundle has no dividends (their back-adjustment would
/// depend on future ex-dates). Splits are kept.
///
/// On the default mag-7 daily bundle, `--plant-edge 20,110` (strength 2, threshold 0.001)
/// makes (20, 110, 0.001) the best of the 1,100 points of `spaces/ma-1100.toml`: annualised
/// sharpe 1.58, against 1.45 for the same windows at threshold 0.002 (which shares many fill
/// bars) and 1.23 for the best other window pair; without the edge it ranks below 10th
/// (`tests/e2e/planted_edge.rs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlantEdge {
    /// The short SMA window, in bars.
    pub short_window: usize,
    /// The long SMA window, in bars.
    pub long_window: usize,
    /// The open's move on each planted fill, in units of the asset's per-bar volatility,
    /// in (0, 10].
    pub strength: f64,
    /// The MA crossover's threshold, in [0, 1).
    pub threshold: f64,
}

impl PlantEdge {
    /// The strength when none is given.
    pub const DEFAULT_STRENGTH: f64 = 2.0;
    /// The threshold when none is given: 0.001, the smallest threshold of
    /// `spaces/ma-1100.toml`, so that the planted configuration is a point of that grid.
    pub const DEFAULT_THRESHOLD: f64 = 0.001;

    /// A checked edge: 1 ≤ short < long, strength in (0, 10], threshold in [0, 1).
    pub fn new_checked(short_window: usize, long_window: usize, strength: f64, threshold: f64) -> Result<PlantEdge> {
        if short_window < 1 || short_window >= long_window {
            return Err(Error::Invalid(format!(
                "planted edge windows must satisfy 1 <= short < long, got short {short_window}, long {long_window}"
            )));
        }
        if !(strength > 0.0 && strength <= 10.0) {
            return Err(Error::Invalid(format!("planted edge strength must be in (0, 10], got {strength}")));
        }
        if !(0.0..1.0).contains(&threshold) {
            return Err(Error::Invalid(format!("planted edge threshold must be in [0, 1), got {threshold}")));
        }
        Ok(PlantEdge { short_window, long_window, strength, threshold })
    }
}

/// The planted configuration's rule per asset while generating.
struct Planted {
    edge: PlantEdge,
    assets: Vec<PlantedAsset>,
}

#[derive(Clone)]
struct PlantedAsset {
    /// The last `long_window` closes in a ring: close k is in slot k mod long.
    ring: Vec<f64>,
    /// Closes recorded so far.
    seen: usize,
    long: bool,
    /// The open move of the next bar, in units of σ_bar: −1 before a buy, +1 before a sell.
    next_open: f64,
}

impl Planted {
    fn new(edge: PlantEdge, assets: usize) -> Planted {
        let a = PlantedAsset { ring: vec![0.0; edge.long_window], seen: 0, long: false, next_open: 0.0 };
        Planted { edge, assets: vec![a; assets] }
    }

    /// The move of asset `i`'s open of this bar, in units of its σ_bar.
    fn open_move(&self, i: usize) -> f64 {
        self.assets[i].next_open * self.edge.strength
    }

    /// Records asset `i`'s (adjusted up to a constant) close of this bar and runs the rule.
    fn record(&mut self, i: usize, close: f64) {
        let e = self.edge;
        let a = &mut self.assets[i];
        a.ring[a.seen % e.long_window] = close;
        a.seen += 1;
        a.next_open = 0.0;
        if a.seen < e.long_window {
            return;
        }
        // Oldest first, as a running sum would add them.
        let sum = |w: usize| (a.seen - w..a.seen).map(|k| a.ring[k % e.long_window]).sum::<f64>();
        let short = sum(e.short_window) / e.short_window as f64;
        let long = sum(e.long_window) / e.long_window as f64;
        let target = if short > long * (1.0 + e.threshold) {
            true
        } else if short < long * (1.0 - e.threshold) {
            false
        } else {
            a.long
        };
        if target != a.long {
            a.next_open = if target { -1.0 } else { 1.0 };
            a.long = target;
        }
    }
}

impl GenerateSpec {
    /// The default mag-7 bundle: 2020-01-02..2024-12-31, seed 42.
    pub fn mag7(frequency: Frequency) -> GenerateSpec {
        GenerateSpec {
            preset: Preset::Mag7,
            frequency,
            start: NaiveDate::from_ymd_opt(2020, 1, 2).expect("valid"),
            end: NaiveDate::from_ymd_opt(2024, 12, 31).expect("valid"),
            seed: 42,
            plant_edge: None,
        }
    }
}

/// Per-symbol model parameters.
struct Profile {
    symbol: String,
    name: String,
    /// Annual drift of the log price (before the −σ²/2 correction).
    mu: f64,
    /// Annual volatility.
    sigma: f64,
    /// Correlation with the market factor.
    rho: f64,
    /// Raw price on the first session.
    p0: f64,
    /// Shares outstanding today.
    shares: f64,
    /// Typical daily volume in today's shares.
    volume: f64,
    /// First session index it trades on (IPO), relative to the generated range.
    listed_at: usize,
    /// (effective date, split factor): factor 4 is a 4-for-1 split.
    splits: Vec<(NaiveDate, f64)>,
    /// Quarterly dividend: (first possible ex-date, months of the year, day of month,
    /// yield per quarter as a fraction of the previous close).
    dividend: Option<(NaiveDate, [u32; 4], u32, f64)>,
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

fn mag7_profiles() -> Vec<Profile> {
    let p = |symbol: &str, name: &str, mu, sigma, rho, p0, shares, volume| Profile {
        symbol: symbol.into(),
        name: name.into(),
        mu,
        sigma,
        rho,
        p0,
        shares,
        volume,
        listed_at: 0,
        splits: vec![],
        dividend: None,
    };
    let mut v = vec![
        p("AAPL", "Apple Inc.", 0.26, 0.31, 0.70, 300.35, 15.2e9, 8.0e7),
        p("AMZN", "Amazon.com Inc.", 0.14, 0.34, 0.62, 1898.01, 10.5e9, 6.0e7),
        p("GOOGL", "Alphabet Inc. Class A", 0.19, 0.31, 0.66, 1368.68, 12.2e9, 3.0e7),
        p("META", "Meta Platforms Inc.", 0.21, 0.44, 0.58, 209.78, 2.53e9, 2.0e7),
        p("MSFT", "Microsoft Corp.", 0.23, 0.28, 0.72, 160.62, 7.43e9, 2.8e7),
        p("NVDA", "NVIDIA Corp.", 0.58, 0.52, 0.60, 239.91, 24.5e9, 4.0e8),
        p("TSLA", "Tesla Inc.", 0.46, 0.62, 0.45, 430.26, 3.19e9, 1.0e8),
    ];
    v[0].splits = vec![(ymd(2020, 8, 31), 4.0)];
    v[0].dividend = Some((ymd(2020, 1, 1), [2, 5, 8, 11], 8, 0.0014));
    v[1].splits = vec![(ymd(2022, 6, 6), 20.0)];
    v[2].splits = vec![(ymd(2022, 7, 18), 20.0)];
    v[2].dividend = Some((ymd(2024, 6, 1), [3, 6, 9, 12], 10, 0.0012));
    v[3].dividend = Some((ymd(2024, 2, 1), [3, 6, 9, 12], 15, 0.0011));
    v[4].dividend = Some((ymd(2020, 1, 1), [2, 5, 8, 11], 18, 0.0024));
    v[5].splits = vec![(ymd(2021, 7, 20), 4.0), (ymd(2024, 6, 10), 10.0)];
    v[5].dividend = Some((ymd(2020, 1, 1), [3, 6, 9, 12], 5, 0.0002));
    v[6].splits = vec![(ymd(2020, 8, 31), 5.0), (ymd(2022, 8, 25), 3.0)];
    v
}

fn universe_profiles(n: usize, sessions: &[NaiveDate], rng: &mut Normals) -> Vec<Profile> {
    let width = n.saturating_sub(1).to_string().len().max(3);
    (0..n)
        .map(|i| {
            let u = |r: &mut Normals, lo: f64, hi: f64| lo + (hi - lo) * r.uniform();
            let log_u = |r: &mut Normals, lo: f64, hi: f64| (lo.ln() + (hi.ln() - lo.ln()) * r.uniform()).exp();
            let mu = u(rng, -0.05, 0.30);
            let sigma = u(rng, 0.15, 0.65);
            let rho = u(rng, 0.30, 0.70);
            let p0 = log_u(rng, 10.0, 500.0);
            let shares = log_u(rng, 5e7, 5e9);
            let volume = shares * u(rng, 0.002, 0.01);
            let ipo = rng.uniform() < 0.2;
            let listed_at = if ipo { (u(rng, 0.0, 0.4) * sessions.len() as f64) as usize } else { 0 };
            let split_at = u(rng, 0.45, 0.95);
            let mut splits = vec![];
            if i % 17 == 5 {
                splits.push((sessions[((split_at * sessions.len() as f64) as usize).min(sessions.len() - 1)], 2.0));
            }
            let dividend = (i % 3 == 0).then_some((sessions[0], [3, 6, 9, 12], 12, 0.004));
            Profile {
                symbol: format!("S{i:0width$}"),
                name: format!("Synthetic Stock {i}"),
                mu,
                sigma,
                rho,
                p0,
                shares,
                volume,
                listed_at,
                splits,
                dividend,
            }
        })
        .collect()
}

/// Standard normals from a ChaCha12 stream by the Box–Muller transform.
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
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Generates the bundle content described by `spec`. Write it with [`crate::store::write`].
pub fn generate(spec: &GenerateSpec) -> Result<BundleData> {
    if spec.start > spec.end {
        return Err(Error::Invalid(format!("--start {} is after --end {}", spec.start, spec.end)));
    }
    for d in [spec.start, spec.end] {
        if !calendar::supports(d) {
            return Err(Error::Invalid(format!(
                "date {d} is outside the supported calendar years {}..{}",
                calendar::FIRST_YEAR,
                calendar::LAST_YEAR
            )));
        }
    }
    let sessions = calendar::sessions_between(spec.start, spec.end);
    if sessions.len() < 2 {
        return Err(Error::Invalid(format!("{}..{} holds fewer than 2 sessions", spec.start, spec.end)));
    }
    let mut rng = Normals::new(spec.seed);
    let profiles = match spec.preset {
        Preset::Mag7 => mag7_profiles(),
        Preset::Universe { assets } => {
            if assets == 0 {
                return Err(Error::Invalid("--assets must be at least 1".into()));
            }
            universe_profiles(assets, &sessions, &mut rng)
        }
    };
    if let Some(e) = spec.plant_edge {
        PlantEdge::new_checked(e.short_window, e.long_window, e.strength, e.threshold)?;
    }
    let mut planted = spec.plant_edge.map(|e| Planted::new(e, profiles.len()));
    let freq = spec.frequency;
    let bounds = crate::data::session_bounds(freq, &sessions);
    let n_bars = *bounds.last().expect("non-empty");

    // Split factor in force at each session (product of factors effective on or before it).
    let split_factor = |p: &Profile, s: NaiveDate| -> f64 {
        p.splits.iter().filter(|(d, _)| *d <= s && *d > sessions[0]).map(|(_, f)| f).product()
    };

    let mut bars: Vec<RawBars> = profiles
        .iter()
        .map(|p| {
            let first_bar = bounds[p.listed_at.min(sessions.len() - 2)];
            let mut b = RawBars { first_bar, ..RawBars::default() };
            for col in [&mut b.open, &mut b.high, &mut b.low, &mut b.close, &mut b.volume] {
                col.reserve_exact(n_bars - first_bar);
            }
            b
        })
        .collect();
    // Economic (split-free) log price of each asset.
    let mut log_p: Vec<f64> = profiles.iter().map(|p| p.p0.ln()).collect();
    let bars_per_year = freq.periods_per_year();
    for (s, &date) in sessions.iter().enumerate() {
        let per_session = bounds[s + 1] - bounds[s];
        let factors: Vec<f64> = profiles.iter().map(|p| split_factor(p, date)).collect();
        for k in 0..per_session {
            let bar = bounds[s] + k;
            let z_market = rng.normal();
            // Overnight gaps are wider than a minute's move.
            let gap = if freq == Frequency::Minute && k == 0 { 4.0 } else { 1.0 };
            for (i, p) in profiles.iter().enumerate() {
                let z_idio = rng.normal();
                let (z_gap, z_hi, z_lo, z_vol) = (rng.normal(), rng.normal(), rng.normal(), rng.normal());
                let shock = p.rho * z_market + (1.0 - p.rho * p.rho).sqrt() * z_idio;
                let sd = p.sigma / bars_per_year.sqrt();
                let drift = (p.mu - 0.5 * p.sigma * p.sigma) / bars_per_year;
                let prev = log_p[i];
                let mut open_log = prev + 0.2 * sd * gap * z_gap;
                let close_log = prev + drift + sd * gap.sqrt() * shock;
                log_p[i] = close_log;
                if bar < bars[i].first_bar {
                    continue;
                }
                if let Some(planted) = &planted {
                    open_log += planted.open_move(i) * sd;
                }
                let f = factors[i];
                let o = round4((open_log.exp() / f).max(0.01));
                let c = round4((close_log.exp() / f).max(0.01));
                if let Some(planted) = &mut planted {
                    planted.record(i, c * f);
                }
                let h = round4(o.max(c) * (0.3 * sd * z_hi.abs()).exp());
                let l = round4((o.min(c) * (-0.3 * sd * z_lo.abs()).exp()).max(0.0001));
                let v = (p.volume * f / per_session as f64 * (0.35 * z_vol).exp()).round().max(1.0);
                bars[i].push(o, h, l.min(o.min(c)), c, v);
            }
        }
    }

    let mut splits = Vec::new();
    let mut dividends = Vec::new();
    for (sid, p) in profiles.iter().enumerate() {
        let b = &bars[sid];
        let first_session = bounds.partition_point(|&x| x <= b.first_bar) - 1;
        let inside = |d: NaiveDate| -> Option<usize> {
            let s = sessions.partition_point(|x| *x < d);
            (s > first_session && s < sessions.len()).then_some(s)
        };
        for &(d, factor) in &p.splits {
            if let Some(s) = inside(d) {
                splits.push(Split { sid: sid as u32, effective_date: sessions[s], ratio: 1.0 / factor });
            }
        }
        // A planted edge's rule could not see back-adjustments for later dividends: none.
        if let Some((from, months, day, yield_q)) = p.dividend.filter(|_| spec.plant_edge.is_none()) {
            for year in sessions[0].format("%Y").to_string().parse::<i32>().unwrap_or(2000)..=calendar::LAST_YEAR {
                for m in months {
                    let d = ymd(year, m, day);
                    if d < from {
                        continue;
                    }
                    if let Some(s) = inside(d) {
                        let prev_close = b.close[bounds[s] - 1 - b.first_bar];
                        let amount = (yield_q * prev_close * 1e4).round() / 1e4;
                        if amount > 0.0
                            && dividends
                                .last()
                                .is_none_or(|x: &Dividend| x.sid != sid as u32 || x.ex_date != sessions[s])
                        {
                            dividends.push(Dividend { sid: sid as u32, ex_date: sessions[s], amount });
                        }
                    }
                }
            }
        }
    }
    splits.sort_by_key(|s| (s.sid, s.effective_date));
    dividends.sort_by_key(|d| (d.sid, d.ex_date));

    let assets = profiles
        .iter()
        .map(|p| AssetDef {
            symbol: p.symbol.clone(),
            asset_name: p.name.clone(),
            exchange: "XNYS".into(),
            shares_outstanding: p.shares,
        })
        .collect();
    let preset = match spec.preset {
        Preset::Mag7 => "mag7".to_string(),
        Preset::Universe { assets } => format!("universe assets={assets}"),
    };
    Ok(BundleData {
        frequency: freq,
        sessions,
        provenance: format!(
            "btopt synthetic generator: preset {preset}, {} {}..{}, seed {}{}",
            freq.as_str(),
            spec.start,
            spec.end,
            spec.seed,
            spec.plant_edge.map_or(String::new(), |e| format!(
                ", planted edge short_window={} long_window={} threshold={} strength={}, no dividends",
                e.short_window, e.long_window, e.threshold, e.strength
            ))
        ),
        assets,
        bars,
        splits,
        dividends,
    })
}
