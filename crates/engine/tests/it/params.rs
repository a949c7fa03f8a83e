//! Parameter parsing, defaults, validation messages and serde round trips.

use engine::{Configured, Error, MaCrossover, Momentum, ParamValues, Registry, RunOptions, WeightingScheme};

use crate::{Data, ma};

fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn parse(name: &str, kv: &[(&str, &str)]) -> Result<Configured, Error> {
    engine::Registry::builtin().configure(name, &pairs(kv))
}

fn err(name: &str, kv: &[(&str, &str)]) -> String {
    parse(name, kv).expect_err("should be rejected").to_string()
}

#[test]
fn defaults_fill_everything_left_out() {
    assert_eq!(
        parse("ma-crossover", &[]).unwrap(),
        (MaCrossover { short_window: 10, long_window: 50, threshold: 0.0 }).configured().expect("valid ma-crossover")
    );
    assert_eq!(parse("momentum", &[]).unwrap(), (Momentum::default()).configured().expect("valid momentum"));
    let m = parse("momentum", &[("weighting_scheme", "risk_parity"), ("top_n_assets", "5")]).unwrap();
    let want = Momentum { weighting_scheme: WeightingScheme::RiskParity, top_n_assets: 5, ..Momentum::default() };
    assert_eq!(m, want.configured().unwrap());
    assert_eq!(m.to_pairs()[3], ("weighting_scheme", "risk_parity".to_string()));
    assert_eq!(m.to_pairs()[0], ("lookback_period", "60".to_string()));
}

#[test]
fn integers_may_arrive_as_floats() {
    for v in ["50", "50.0", "5e1", " 50 "] {
        let s = parse("ma-crossover", &[("long_window", v), ("threshold", "0.003")]).unwrap();
        assert_eq!(s, ma(10, 50, 0.003), "{v}");
    }
    // short ≥ long is legal: the guidance's grid contains (50, 50).
    assert_eq!(parse("ma-crossover", &[("short_window", "50"), ("long_window", "50")]).unwrap(), ma(50, 50, 0.0));
}

/// Strategy name, pairs, expected message.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_input_gets_one_clear_message() {
    let cases: &[Case<'_>] = &[
        ("sma", &[], "unknown strategy `sma` (expected one of: ma-crossover, momentum)"),
        (
            "ma-crossover",
            &[("short", "5")],
            "unknown parameter `short` for ma-crossover (expected one of: short_window, long_window, threshold)",
        ),
        ("ma-crossover", &[("short_window", "5.5")], "invalid short_window `5.5`: expected an integer >= 1"),
        ("ma-crossover", &[("short_window", "0")], "invalid short_window `0`: expected an integer >= 1"),
        ("ma-crossover", &[("long_window", "-3")], "invalid long_window `-3`: expected an integer >= 1"),
        ("ma-crossover", &[("threshold", "abc")], "invalid threshold `abc`: expected a finite number >= 0"),
        ("ma-crossover", &[("threshold", "-0.1")], "invalid threshold `-0.1`: expected a finite number >= 0"),
        ("ma-crossover", &[("threshold", "inf")], "invalid threshold `inf`: expected a finite number >= 0"),
        (
            "ma-crossover",
            &[("short_window", "5"), ("short_window", "6")],
            "parameter `short_window` given more than once",
        ),
        (
            "momentum",
            &[("weighting_scheme", "cap")],
            "invalid weighting_scheme `cap`: expected one of equal, market_cap, risk_parity",
        ),
        ("momentum", &[("lookback_period", "1")], "invalid lookback_period `1`: expected an integer >= 2"),
        ("momentum", &[("rebalance_frequency", "0")], "invalid rebalance_frequency `0`: expected an integer >= 1"),
        (
            "momentum",
            &[("volatility_threshold", "0")],
            "invalid volatility_threshold `0`: expected a finite number > 0",
        ),
        (
            "momentum",
            &[("threshold", "0.1")],
            "unknown parameter `threshold` for momentum (expected one of: lookback_period, holding_period, rebalance_frequency, weighting_scheme, top_n_assets, volatility_threshold, min_position_size, max_position_size)",
        ),
    ];
    for (name, kv, want) in cases {
        assert_eq!(err(name, kv), *want);
    }
}

#[test]
fn run_options_are_checked() {
    let e = |b: f64, r: Option<std::ops::Range<usize>>, f: f64| {
        RunOptions::new_checked(b, r, f).expect_err("should be rejected").to_string()
    };
    assert_eq!(e(0.0, None, 0.001), "invalid run options: budget must be in (0, 1], got 0");
    assert_eq!(e(1.5, None, 0.001), "invalid run options: budget must be in (0, 1], got 1.5");
    assert_eq!(e(f64::NAN, None, 0.001), "invalid run options: budget must be in (0, 1], got NaN");
    assert_eq!(e(1.0, Some(3..3), 0.001), "invalid run options: session range 3..3 is empty");
    assert_eq!(e(1.0, None, -0.1), "invalid run options: fee must be in [0, 1), got -0.1");
    let d = RunOptions::default();
    assert_eq!((d.budget(), d.sessions(), d.fee()), (1.0, None, 0.001));

    // A range past the market's end is caught at run time, against the market.
    let close = [1.0, 2.0, 3.0];
    let data = Data::daily(&close, &close);
    let market = data.market();
    let o = RunOptions::new_checked(1.0, Some(0..4), 0.0).unwrap();
    assert_eq!(
        engine::run(&market, &ma(1, 2, 0.0), &o).unwrap_err().to_string(),
        "invalid run options: session range 0..4 exceeds the market's 3 sessions"
    );
    // Typed parameters built by hand are validated too.
    let bad = MaCrossover { short_window: 0, long_window: 2, threshold: 0.0 };
    assert_eq!(bad.configured().unwrap_err().to_string(), "invalid short_window `0`: expected an integer >= 1");
    // So are values that crossed a process boundary, when they run.
    let strategy = Registry::builtin().lookup("ma-crossover").unwrap().clone();
    let table = strategy.parameters();
    let mut b = ParamValues::builder("ma-crossover", table);
    b.set_number("short_window", 3.0).unwrap();
    let mut bytes = postcard::to_stdvec(&b.finish()).unwrap();
    // Postcard writes the `Int` tag then a zigzag varint: 3 becomes 6, 0 stays 0.
    let at = bytes.iter().position(|&x| x == 6).unwrap();
    bytes[at] = 0;
    let forged: ParamValues = postcard::from_bytes(&bytes).unwrap();
    let mut bt = engine::Backtester::new(&market).unwrap();
    assert_eq!(
        bt.run_values(&*strategy, &forged, &RunOptions::default(), None).unwrap_err().to_string(),
        "invalid short_window `0`: expected an integer >= 1"
    );
}

#[test]
fn strategies_round_trip_through_pairs_postcard_and_json() {
    let all = [
        ma(7, 30, 0.002),
        parse("momentum", &[("weighting_scheme", "market_cap"), ("volatility_threshold", "0.3")]).unwrap(),
    ];
    for s in all {
        let back: Vec<(String, String)> = s.to_pairs().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(engine::Registry::builtin().configure(s.name(), &back).unwrap(), s);
        let bytes = postcard::to_stdvec(s.values()).unwrap();
        let values: ParamValues = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(Configured::new(s.strategy().clone(), values).unwrap(), s);
        let json = serde_json::to_string(s.values()).unwrap();
        assert_eq!(serde_json::from_str::<ParamValues>(&json).unwrap(), *s.values());
    }
    // Inline values: a task's parameters take no heap allocation, and encode compactly.
    assert!(postcard::to_stdvec(ma(5, 20, 0.0).values()).unwrap().len() < 24);
}

#[test]
fn metrics_serialise_with_the_cli_field_names() {
    let close = [10.0, 11.0, 12.0];
    let data = Data::daily(&close, &close);
    let m = engine::run(&data.market(), &ma(1, 2, 0.0), &RunOptions::default()).unwrap();
    let v: serde_json::Value = serde_json::to_value(m).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = ["total_return", "sharpe", "max_drawdown", "trades", "sortino", "calmar", "bars", "final_equity"];
    want.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, want);
}

#[test]
fn markets_are_checked() {
    let close = [1.0, 2.0, -3.0];
    let data = Data::daily(&close, &close);
    let a = &data.assets[0];
    let series = engine::AssetSeries {
        high: &a.close,
        low: &a.close,
        sid: 0,
        open: &a.open,
        close: &a.close,
        first_bar: 0,
        end_bar: 3,
        shares_outstanding: 1.0,
    };
    let e = engine::Market::new_checked(252.0, &data.bounds, vec![series]).unwrap_err();
    assert_eq!(e.to_string(), "invalid market: sid 0 has open -3 on bar 2, expected a finite positive price");
    let short = engine::AssetSeries { close: &a.close[..2], ..series };
    let e = engine::Market::new_checked(252.0, &data.bounds, vec![short]).unwrap_err();
    assert_eq!(e.to_string(), "invalid market: sid 0 has 3 opens, 3 highs, 3 lows and 2 closes, expected 3 each");
    let e = engine::Market::new_checked(252.0, &data.bounds, vec![series, series]).unwrap_err();
    assert_eq!(e.to_string(), "invalid market: sid 0 appears twice");
}

#[test]
fn the_price_check_names_the_first_bad_bar_across_blocks() {
    let n = 2_000;
    let good: Vec<f64> = (0..n).map(|i| 100.0 + (i % 7) as f64).collect();
    let check = |close: &[f64]| {
        let data = Data::daily(&good, close);
        let a = &data.assets[0];
        let (open, close) = (&a.open[..], &a.close[..]);
        let series = engine::AssetSeries {
            sid: 4,
            open,
            high: open,
            low: open,
            close,
            first_bar: 0,
            end_bar: n,
            shares_outstanding: 1.0,
        };
        engine::Market::new_checked(252.0, &data.bounds, vec![series]).map(|_| ()).map_err(|e| e.to_string())
    };
    for bad in [0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for at in [0, 1, 511, 512, 513, 1_500, n - 1] {
            let mut close = good.clone();
            close[at] = bad;
            // A later bad bar is not the one reported.
            if at + 3 < n {
                close[at + 3] = -5.0;
            }
            let want = format!("invalid market: sid 4 has close {bad} on bar {at}, expected a finite positive price");
            assert_eq!(check(&close), Err(want));
        }
    }
    // Positive subnormals and the largest finite value are prices.
    let mut close = good.clone();
    close[700] = f64::MIN_POSITIVE / 4.0;
    close[900] = f64::MAX;
    assert_eq!(check(&close), Ok(()));
}
