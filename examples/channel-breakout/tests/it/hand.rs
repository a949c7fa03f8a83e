//! A case small enough to compute by hand.

use crate::{Ohlc, check};

#[test]
fn breakout_and_breakdown_fill_at_the_next_open() {
    // bar:      0     1     2     3     4     5     6     7
    let a = Ohlc {
        open: vec![10.0, 10.5, 9.5, 11.0, 14.0, 13.5, 12.0, 10.0],
        high: vec![10.0, 11.0, 10.0, 12.0, 15.0, 14.0, 13.0, 12.0],
        low: vec![9.0, 10.0, 9.0, 10.0, 13.0, 12.0, 10.0, 9.0],
        close: vec![10.0, 10.5, 9.5, 11.5, 14.5, 13.0, 11.0, 9.5],
    };
    // Entry and exit windows of 2 bars, tested from bar 2 on:
    // t=2: upper max(10, 11) = 11, close 9.5: no; lower min(9, 10) = 9: no.
    // t=3: upper max(11, 10) = 11 < close 11.5: long, filled at open[4] = 14.
    // t=4: upper 12 < 14.5: long again. t=5: upper 15, lower 10, close 13: hold.
    // t=6: lower min(13, 12) = 12 > close 11: flat, filled at open[7] = 10.
    // t=7: lower min(12, 10) = 10 > close 9.5: flat (already).
    let fee = 0.001;
    let (m, eq) = check(&[a], 2, 2, 1.0, fee);
    let shares = 1.0 / (14.0 * (1.0 + fee));
    let cash = shares * 10.0 * (1.0 - fee);
    let want = [1.0, 1.0, 1.0, 1.0, shares * 14.5, shares * 13.0, shares * 11.0, cash];
    assert_eq!(eq, want);
    assert_eq!(m.trades, 2);
    assert_eq!(m.bars, 8);
    assert_eq!(m.final_equity, cash);
    assert_eq!(m.total_return, cash - 1.0);
    // The drawdown runs from the high-water mark on bar 4 to the last value.
    assert_eq!(m.max_drawdown, cash / (shares * 14.5) - 1.0);
}

#[test]
fn no_signal_until_the_window_of_earlier_bars_exists() {
    // A close far above everything on bar 1 cannot signal with a 2-bar entry window.
    let a = Ohlc {
        open: vec![10.0, 10.0, 10.0, 10.0],
        high: vec![10.0, 50.0, 10.0, 10.0],
        low: vec![10.0, 10.0, 10.0, 10.0],
        close: vec![10.0, 50.0, 10.0, 10.0],
    };
    let (m, eq) = check(&[a], 2, 2, 1.0, 0.0);
    assert_eq!(m.trades, 0);
    assert_eq!(eq, [1.0; 4]);
}
