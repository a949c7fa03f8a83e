//! Hand-computed momentum cases on a tiny daily universe.

use engine::{Momentum, WeightingScheme};

use crate::{Data, OwnedAsset, assert_close, check, opts};

fn universe(sids: &[u32], closes: &[&[f64]]) -> Data {
    let n = closes[0].len();
    let assets = sids
        .iter()
        .zip(closes)
        .map(|(&sid, c)| OwnedAsset {
            sid,
            open: c.iter().map(|x| x - 0.1).collect(),
            close: c.to_vec(),
            first: 0,
            end: n,
            shares_outstanding: 1.0,
        })
        .collect();
    Data { periods_per_year: 252.0, bounds: (0..=n).collect(), assets }
}

const FLAT: [f64; 6] = [10.0, 10.0, 10.0, 10.0, 10.0, 10.0];
// Score 0.2 at bar 2 but volatile (returns 0.2 and 0).
const JUMPY: [f64; 6] = [10.0, 12.0, 12.0, 13.0, 13.5, 14.0];
// Score 0.1 at bar 2, calm.
const STEADY: [f64; 6] = [10.0, 10.5, 11.0, 11.5, 12.0, 12.5];

fn three() -> Data {
    universe(&[0, 1, 2], &[&FLAT, &JUMPY, &STEADY])
}

fn momentum(top: usize, vol: f64, scheme: WeightingScheme) -> Momentum {
    Momentum {
        lookback_period: 2,
        holding_period: 1,
        rebalance_frequency: 10,
        weighting_scheme: scheme,
        top_n_assets: top,
        volatility_threshold: vol,
        min_position_size: 0.0,
        max_position_size: 100.0,
    }
}

fn annual_vol(c: &[f64]) -> f64 {
    let r: Vec<f64> = c.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    let mean = r.iter().sum::<f64>() / r.len() as f64;
    let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (r.len() - 1) as f64;
    var.sqrt() * 252.0_f64.sqrt()
}

/// W is sessions 2..6: one rebalance on the close of bar 2, filled at the open of bar 3.
fn run(data: &Data, p: Momentum, fee: f64) -> (engine::Metrics, Vec<f64>) {
    check(data, &(p).configured().expect("valid momentum"), &opts(1.0, Some(2..6), fee))
}

fn open(c: &[f64], t: usize) -> f64 {
    c[t] - 0.1
}

#[test]
fn top_n_equal_weights_buy_at_the_next_open_scaled_for_fees() {
    let fee = 0.001;
    let (m, eq) = run(&three(), momentum(2, 100.0, WeightingScheme::Equal), fee);
    // JUMPY and STEADY are the top two. Both buys want 0.5 of V = 1 plus fees, which exceeds
    // the cash, so both are scaled by 1/1.001.
    let scale = 1.0 / (1.0 + fee);
    let s1 = 0.5 / open(&JUMPY, 3) * scale;
    let s2 = 0.5 / open(&STEADY, 3) * scale;
    assert_eq!(m.trades, 2);
    assert_eq!(eq[0], 1.0);
    for t in 3..6 {
        assert_close(eq[t - 2], s1 * JUMPY[t] + s2 * STEADY[t], 1e-14, "equity");
    }
}

#[test]
fn volatile_assets_are_excluded() {
    assert!(annual_vol(&JUMPY[..3]) > 1.0 && annual_vol(&STEADY[..3]) < 1.0);
    let (_, calm) = run(&three(), momentum(1, 1.0, WeightingScheme::Equal), 0.0);
    let (_, any) = run(&three(), momentum(1, 5.0, WeightingScheme::Equal), 0.0);
    let (s_steady, s_jumpy) = (1.0 / open(&STEADY, 3), 1.0 / open(&JUMPY, 3));
    assert_close(calm[3], s_steady * STEADY[5], 1e-14, "steady picked");
    assert_close(any[3], s_jumpy * JUMPY[5], 1e-14, "jumpy picked");
}

#[test]
fn ties_go_to_the_lower_sid() {
    // Equal closes up to bar 2, so equal scores; afterwards they differ.
    let a: [f64; 6] = [10.0, 10.5, 11.0, 20.0, 20.0, 20.0];
    let b: [f64; 6] = [10.0, 10.5, 11.0, 5.0, 5.0, 5.0];
    // sid 7 listed first, sid 4 second: sid 4 (series b) must win.
    let (_, eq) = run(&universe(&[7, 4], &[&a, &b]), momentum(1, 100.0, WeightingScheme::Equal), 0.0);
    assert_close(eq[2], 1.0 / open(&b, 3) * b[4], 1e-14, "lower sid held");
}

#[test]
fn position_bounds_drop_or_cap_without_renormalising() {
    // Three members at 1/3 each, capped at 20%: 40% stays in cash.
    let mut p = momentum(3, 100.0, WeightingScheme::Equal);
    p.max_position_size = 20.0;
    let (m, eq) = run(&three(), p, 0.0);
    assert_eq!(m.trades, 3);
    let cash = 1.0 - 0.2 * 3.0;
    let value: f64 = [&FLAT, &JUMPY, &STEADY].iter().map(|c| 0.2 / open(*c, 3) * c[4]).sum();
    assert_close(eq[2], cash + value, 1e-14, "capped");
    // A 40% floor drops every 1/3 weight: nothing trades.
    p.min_position_size = 40.0;
    let (m, eq) = run(&three(), p, 0.0);
    assert_eq!(m.trades, 0);
    assert!(eq.iter().all(|&e| e == 1.0));
}

#[test]
fn market_cap_and_risk_parity_weights() {
    let mut data = three();
    data.assets[2].shares_outstanding = 3.0;
    let (_, eq) = run(&data, momentum(2, 100.0, WeightingScheme::MarketCap), 0.0);
    let caps = [JUMPY[2] * 1.0, STEADY[2] * 3.0];
    let w = [caps[0] / (caps[0] + caps[1]), caps[1] / (caps[0] + caps[1])];
    let want = w[0] / open(&JUMPY, 3) * JUMPY[4] + w[1] / open(&STEADY, 3) * STEADY[4];
    assert_close(eq[2], want, 1e-14, "market cap");

    let (_, eq) = run(&three(), momentum(2, 100.0, WeightingScheme::RiskParity), 0.0);
    let inv = [1.0 / annual_vol(&JUMPY[..3]), 1.0 / annual_vol(&STEADY[..3])];
    let w = [inv[0] / (inv[0] + inv[1]), inv[1] / (inv[0] + inv[1])];
    let want = w[0] / open(&JUMPY, 3) * JUMPY[4] + w[1] / open(&STEADY, 3) * STEADY[4];
    assert_close(eq[2], want, 1e-12, "risk parity");
}

#[test]
fn young_positions_stay_for_the_holding_period() {
    // Rebalance every session. Bar 2 picks JUMPY (bought at open 3); bar 3 prefers STEADY.
    let mut p = momentum(1, 100.0, WeightingScheme::Equal);
    p.rebalance_frequency = 1;
    let data = universe(&[1, 2], &[&JUMPY, &STEADY]);
    let sh1 = 1.0 / open(&JUMPY, 3);
    let v = sh1 * open(&JUMPY, 4);
    // holding_period 1: JUMPY has been held one session at close 3, so it is dropped.
    let (_, eq) = run(&data, p, 0.0);
    assert_close(eq[2], v / open(&STEADY, 4) * STEADY[4], 1e-13, "rotated");
    // holding_period 3: it stays, and the target set {STEADY, JUMPY} is split equally.
    p.holding_period = 3;
    let (_, eq) = run(&data, p, 0.0);
    let want = 0.5 * v / open(&JUMPY, 4) * JUMPY[4] + 0.5 * v / open(&STEADY, 4) * STEADY[4];
    assert_close(eq[2], want, 1e-13, "kept");
}

#[test]
fn momentum_needs_daily_bars_and_market_caps() {
    let data = Data::random(1, 3, 10, 2);
    let market = data.market();
    let s = (Momentum::default()).configured().expect("valid momentum");
    assert_eq!(
        engine::run(&market, &s, &engine::RunOptions::default()).unwrap_err().to_string(),
        "unsupported: momentum runs on daily bars, but this market has minute bars"
    );
    let mut data = three();
    data.assets[1].shares_outstanding = 0.0;
    let s = (momentum(2, 1.0, WeightingScheme::MarketCap)).configured().expect("valid momentum");
    assert_eq!(
        engine::run(&data.market(), &s, &engine::RunOptions::default()).unwrap_err().to_string(),
        "invalid market: market_cap weighting needs positive shares_outstanding, sid 1 has 0"
    );
}
