//! Hand-computed cases on tiny series.

use crate::{Data, OwnedAsset, assert_close, check, ma, opts};

fn assert_curve(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (t, (g, w)) in got.iter().zip(want).enumerate() {
        assert_close(*g, *w, 1e-14, &format!("equity[{t}]"));
    }
}

#[test]
fn single_cross_up_then_down_fills_at_next_open() {
    let close = [10.0, 10.0, 12.0, 13.0, 11.0, 10.0];
    let open = [10.0, 10.0, 11.0, 12.5, 12.0, 10.5];
    // SMA2 at t=1 equals the close (no signal); t=2: 12 > 11 -> long, filled at open[3];
    // t=4: 11 < 12 -> flat, filled at open[5].
    let (m, eq) = check(&Data::daily(&open, &close), &ma(1, 2, 0.0), &opts(1.0, None, 0.0));
    let shares = 1.0 / 12.5;
    assert_curve(&eq, &[1.0, 1.0, 1.0, shares * 13.0, shares * 11.0, shares * 10.5]);
    assert_eq!(m.trades, 2);
    assert_eq!(m.bars, 6);
    assert_close(m.final_equity, shares * 10.5, 1e-15, "final equity");
    assert_close(m.total_return, shares * 10.5 - 1.0, 1e-14, "total return");
    // Peak 1.04 at t=3, trough 0.84 at t=5.
    assert_close(m.max_drawdown, (shares * 10.5) / (shares * 13.0) - 1.0, 1e-14, "drawdown");
}

#[test]
fn fee_is_charged_on_each_fill() {
    let close = [10.0, 10.0, 12.0, 13.0, 11.0, 10.0];
    let open = [10.0, 10.0, 11.0, 12.5, 12.0, 10.5];
    let fee = 0.001;
    let (m, eq) = check(&Data::daily(&open, &close), &ma(1, 2, 0.0), &opts(1.0, None, fee));
    let shares = 1.0 / (12.5 * (1.0 + fee));
    let cash = shares * 10.5 * (1.0 - fee);
    assert_curve(&eq, &[1.0, 1.0, 1.0, shares * 13.0, shares * 11.0, cash]);
    assert_eq!(m.trades, 2);
    // Each fill costs a fee: the round trip loses exactly (1−f)/(1+f) against no fee.
    let (free, _) = check(&Data::daily(&open, &close), &ma(1, 2, 0.0), &opts(1.0, None, 0.0));
    assert_close(m.final_equity / free.final_equity, (1.0 - fee) / (1.0 + fee), 1e-14, "fee");
}

#[test]
fn threshold_band_holds_the_position() {
    let close = [10.0, 10.0, 13.0, 12.0, 11.0, 8.0, 8.0];
    let open = close;
    // t=2: 13 > 11.5·1.1 -> long (filled at open[3] = 12). t=3: 12 vs SMA 12.5, inside
    // [11.25, 13.75] -> hold. t=4: 11 vs 11.5, inside the band -> hold. t=5: 8 < 9.5·0.9 ->
    // flat, filled at open[6] = 8.
    let (m, eq) = check(&Data::daily(&open, &close), &ma(1, 2, 0.1), &opts(1.0, None, 0.0));
    let shares = 1.0 / 12.0;
    assert_curve(&eq, &[1.0, 1.0, 1.0, 1.0, shares * 11.0, shares * 8.0, shares * 8.0]);
    assert_eq!(m.trades, 2);
    // Without the band the dip at t=3 sells at open[4] = 11.
    let (m0, eq0) = check(&Data::daily(&open, &close), &ma(1, 2, 0.0), &opts(1.0, None, 0.0));
    assert_eq!(m0.trades, 2);
    assert_curve(&eq0, &[1.0, 1.0, 1.0, 1.0, shares * 11.0, shares * 11.0, shares * 11.0]);
}

#[test]
fn no_signal_during_warm_up() {
    let close: Vec<f64> = (0..8).map(|i| 10.0 + i as f64).collect();
    // A rising series would be long at once, but the long SMA needs 9 closes.
    let (m, eq) = check(&Data::daily(&close, &close), &ma(2, 9, 0.0), &opts(1.0, None, 0.001));
    assert_eq!(m.trades, 0);
    assert!(eq.iter().all(|&e| e == 1.0));
    assert_eq!((m.sharpe, m.sortino, m.calmar, m.max_drawdown), (0.0, 0.0, 0.0, 0.0));
    // With 9 closes the last bar signals, but its fill would fall outside the data.
    let close9: Vec<f64> = (0..9).map(|i| 10.0 + i as f64).collect();
    let (m9, _) = check(&Data::daily(&close9, &close9), &ma(2, 9, 0.0), &opts(1.0, None, 0.0));
    assert_eq!(m9.trades, 0);
}

#[test]
fn decision_before_the_window_fills_at_its_first_open() {
    let close: Vec<f64> = (0..10).map(|i| 10.0 + i as f64).collect();
    let open: Vec<f64> = close.iter().map(|c| c - 0.5).collect();
    // Budget 0.5 evaluates sessions 5..10; the signal from the close of bar 4 (warm-up)
    // fills at open[5].
    let (m, eq) = check(&Data::daily(&open, &close), &ma(1, 2, 0.0), &opts(0.5, None, 0.0));
    assert_eq!(m.bars, 5);
    assert_eq!(m.trades, 1);
    let shares = 1.0 / open[5];
    let want: Vec<f64> = (5..10).map(|t| shares * close[t]).collect();
    assert_curve(&eq, &want);
}

#[test]
fn split_inside_the_window_uses_adjusted_prices_throughout() {
    // Raw prices halve at bar 6 (a 2-for-1 split). Back-adjustment multiplies every price
    // before the split by 0.5, so the adjusted series is smooth and a held position does not
    // "lose" half its value at the split.
    let raw_close = [20.0, 20.0, 22.0, 24.0, 26.0, 28.0, 15.0, 16.0, 17.0, 18.0];
    let raw_open = [20.0, 20.0, 21.0, 23.0, 25.0, 27.0, 14.5, 15.5, 16.5, 17.5];
    let adj = |p: &[f64]| -> Vec<f64> { p.iter().enumerate().map(|(t, x)| if t < 6 { x * 0.5 } else { *x }).collect() };
    let (close, open) = (adj(&raw_close), adj(&raw_open));
    let (m, eq) = check(&Data::daily(&open, &close), &ma(1, 3, 0.0), &opts(1.0, None, 0.0));
    // Long from the close of bar 2 (11 > 10.33), filled at adjusted open[3] = 11.5, and held
    // through the split because the adjusted closes keep rising.
    assert_eq!(m.trades, 1);
    let shares = 1.0 / 11.5;
    assert_curve(&eq[3..], &close[3..].iter().map(|c| shares * c).collect::<Vec<_>>());
    // The economic return across the split: 2 raw shares after it for each one before.
    assert_close(m.final_equity, (1.0 / raw_open[3]) * 2.0 * raw_close[9], 1e-14, "split return");
    // The same strategy on unadjusted prices sees a crash at the split, sells at open[7]
    // and buys back at open[9]: a spurious round trip.
    let (raw, _) = check(&Data::daily(&raw_open, &raw_close), &ma(1, 3, 0.0), &opts(1.0, None, 0.0));
    assert_eq!(raw.trades, 3);
    assert!(raw.final_equity < 0.6 * m.final_equity);
}

#[test]
fn zero_variance_gives_zero_sharpe() {
    let close = [100.0; 30];
    let (m, eq) = check(&Data::daily(&close, &close), &ma(3, 7, 0.0), &opts(1.0, None, 0.001));
    assert_eq!(m.trades, 0);
    assert!(eq.iter().all(|&e| e == 1.0));
    assert_eq!((m.sharpe, m.sortino, m.calmar, m.max_drawdown), (0.0, 0.0, 0.0, 0.0));
    assert_eq!((m.total_return, m.final_equity), (0.0, 1.0));
}

#[test]
fn metrics_follow_the_contract_formulas() {
    let close = [10.0, 10.0, 12.0, 13.0, 11.0, 10.0, 10.5, 12.0, 12.5, 11.0];
    let open = [10.0, 10.0, 11.0, 12.5, 12.0, 10.5, 10.0, 11.0, 12.8, 11.5];
    let (m, eq) = check(&Data::daily(&open, &close), &ma(1, 2, 0.0), &opts(1.0, None, 0.001));
    let mut prev = 1.0;
    let r: Vec<f64> = eq
        .iter()
        .map(|&e| {
            let x = e / prev - 1.0;
            prev = e;
            x
        })
        .collect();
    let n = r.len() as f64;
    let mean = r.iter().sum::<f64>() / n;
    let sd = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let down = (r.iter().map(|x| x.min(0.0).powi(2)).sum::<f64>() / n).sqrt();
    let ann = 252.0_f64.sqrt();
    let mut peak = 1.0_f64;
    let mdd = eq
        .iter()
        .map(|&e| {
            peak = peak.max(e);
            e / peak - 1.0
        })
        .fold(0.0, f64::min);
    let last = *eq.last().unwrap();
    assert_close(m.sharpe, mean / sd * ann, 1e-12, "sharpe");
    assert_close(m.sortino, mean / down * ann, 1e-12, "sortino");
    assert_close(m.max_drawdown, mdd, 1e-14, "max_drawdown");
    assert_close(m.calmar, (last.powf(252.0 / n) - 1.0) / mdd.abs(), 1e-12, "calmar");
    // Long from open[3] to open[5], and again from open[7]; the last signal falls outside.
    assert!(m.max_drawdown < 0.0 && m.trades == 3);
}

#[test]
fn slices_are_independent_and_gaps_hold_cash_or_the_last_close() {
    // Asset 1 lists at bar 3; asset 2 delists after bar 5 while long.
    let n = 9;
    let rising: Vec<f64> = (0..n).map(|i| 10.0 + i as f64).collect();
    let mut late =
        OwnedAsset { sid: 1, open: rising.clone(), close: rising.clone(), first: 3, end: n, shares_outstanding: 1.0 };
    for t in 0..3 {
        late.open[t] = f64::NAN;
        late.close[t] = f64::NAN;
    }
    let mut early =
        OwnedAsset { sid: 2, open: rising.clone(), close: rising.clone(), first: 0, end: 6, shares_outstanding: 1.0 };
    for t in 6..n {
        early.open[t] = f64::NAN;
        early.close[t] = f64::NAN;
    }
    let data = Data { periods_per_year: 252.0, bounds: (0..=n).collect(), assets: vec![late, early] };
    let (m, eq) = check(&data, &ma(1, 2, 0.0), &opts(1.0, None, 0.0));
    // sid 1: signal at close 4, fill at open 5. sid 2: signal at close 1, fill at open 2,
    // held after its last bar at close[5].
    assert_eq!(m.trades, 2);
    let half = 0.5;
    let s1 = half / rising[5];
    let s2 = half / rising[2];
    let want: Vec<f64> = (0..n)
        .map(|t| {
            let v1 = if t < 5 { half } else { s1 * rising[t] };
            let v2 = if t < 2 { half } else { s2 * rising[t.min(5)] };
            v1 + v2
        })
        .collect();
    assert_curve(&eq, &want);
}

#[test]
fn windows_longer_than_the_data_never_signal() {
    let close: Vec<f64> = (0..40).map(|i| 10.0 + (i % 7) as f64).collect();
    for s in [ma(i64::MAX as usize, 5, 0.0), ma(3, 1 << 40, 0.0), ma(41, 2, 0.0)] {
        let (m, eq) = check(&Data::daily(&close, &close), &s, &opts(1.0, None, 0.001));
        assert_eq!(m.trades, 0, "{s:?}");
        assert!(eq.iter().all(|&e| e == 1.0));
    }
}
