//! The synthetic generator: determinism, shape and adjustments.

use bundle::generate::PlantEdge;
use bundle::{Bundle, Field, Frequency, GenerateSpec, Preset};

#[test]
fn same_seed_same_hash_and_other_seed_other_hash() {
    let spec = crate::small_spec(Frequency::Daily);
    let a = bundle::generate::generate(&spec).unwrap().content_hash();
    let b = bundle::generate::generate(&spec).unwrap().content_hash();
    assert_eq!(a, b);
    let c = bundle::generate::generate(&GenerateSpec { seed: 8, ..spec }).unwrap().content_hash();
    assert_ne!(a, c);
}

#[test]
fn written_hash_is_stable_across_write_and_load() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = crate::small_spec(Frequency::Daily);
    let h1 = crate::write_bundle(&spec, &tmp.path().join("a"));
    let h2 = crate::write_bundle(&spec, &tmp.path().join("b"));
    assert_eq!(h1, h2);
    let loaded = Bundle::load(&tmp.path().join("a")).unwrap();
    assert_eq!(loaded.content_hash(), h1);
    assert_eq!(bundle::summary::verify(&tmp.path().join("b")).unwrap().content_hash, h1);
}

#[test]
fn default_mag7_daily_shape() {
    let data = bundle::generate::generate(&GenerateSpec::mag7(Frequency::Daily)).unwrap();
    let symbols: Vec<&str> = data.assets.iter().map(|a| a.symbol.as_str()).collect();
    assert_eq!(symbols, ["AAPL", "AMZN", "GOOGL", "META", "MSFT", "NVDA", "TSLA"]);
    assert_eq!(data.sessions.len(), 1258);
    assert!(data.bars.iter().all(|b| b.len() == 1258 && b.first_bar == 0));
    // The real splits of the period: AAPL 4:1, AMZN 20:1, GOOGL 20:1, NVDA 4:1 and 10:1,
    // TSLA 5:1 and 3:1.
    let splits: Vec<(u32, String, f64)> =
        data.splits.iter().map(|s| (s.sid, s.effective_date.to_string(), 1.0 / s.ratio)).collect();
    assert_eq!(
        splits,
        [
            (0, "2020-08-31".into(), 4.0),
            (1, "2022-06-06".into(), 20.0),
            (2, "2022-07-18".into(), 20.0),
            (5, "2021-07-20".into(), 4.0),
            (5, "2024-06-10".into(), 10.0),
            (6, "2020-08-31".into(), 5.0),
            (6, "2022-08-25".into(), 3.0),
        ]
    );
    // Quarterly dividends for the payers only: AAPL, MSFT, NVDA all along; META and GOOGL in 2024.
    let count = |sid| data.dividends.iter().filter(|d| d.sid == sid).count();
    assert_eq!([count(0), count(1), count(2), count(3), count(4), count(5), count(6)], [20, 0, 3, 4, 20, 20, 0]);
}

#[test]
fn minute_bundle_has_390_or_210_bars_per_session() {
    let spec = GenerateSpec {
        start: "2024-11-25".parse().unwrap(),
        end: "2024-12-03".parse().unwrap(),
        ..GenerateSpec::mag7(Frequency::Minute)
    };
    let data = bundle::generate::generate(&spec).unwrap();
    let bounds = data.session_bounds();
    let per_session: Vec<usize> = bounds.windows(2).map(|w| w[1] - w[0]).collect();
    // 25, 26, 27 Nov; 28 Thanksgiving closed; 29 early close; 2, 3 Dec.
    assert_eq!(per_session, [390, 390, 390, 210, 390, 390]);
    assert!(data.bars.iter().all(|b| b.len() == 2160));
}

#[test]
fn split_back_adjusts_earlier_prices() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    crate::write_bundle(&crate::small_spec(Frequency::Daily), &dir);
    let b = Bundle::load(&dir).unwrap();
    // AAPL (sid 0) splits 4:1 on 2020-08-31 and goes ex-dividend on 2020-08-07.
    let split_at = b.sessions().iter().position(|s| s.to_string() == "2020-08-31").unwrap();
    let raw = b.column(0, Field::Close);
    let adj = b.column(0, Field::AdjClose);
    assert_eq!(adj[split_at], raw[split_at], "no adjustment from the split on");
    let ratio_before = adj[split_at - 1] / raw[split_at - 1];
    assert!((ratio_before - 0.25).abs() < 1e-12, "4:1 split multiplies earlier prices by 0.25: {ratio_before}");
    let vol_ratio = b.column(0, Field::AdjVolume)[split_at - 1] / b.column(0, Field::Volume)[split_at - 1];
    assert!((vol_ratio - 4.0).abs() < 1e-12);
    // Before the dividend, the dividend ratio applies too.
    let div = b.dividends().iter().find(|d| d.sid == 0).unwrap();
    let ex = b.sessions().iter().position(|s| *s == div.ex_date).unwrap();
    let expected = 0.25 * (1.0 - div.amount / raw[ex - 1]);
    let actual = adj[ex - 1] / raw[ex - 1];
    assert!((actual - expected).abs() < 1e-12, "{actual} vs {expected}");
}

#[test]
fn universe_has_shares_outstanding_and_late_listings() {
    let spec = GenerateSpec { preset: Preset::Universe { assets: 100 }, ..GenerateSpec::mag7(Frequency::Daily) };
    let data = bundle::generate::generate(&spec).unwrap();
    assert_eq!(data.assets.len(), 100);
    assert_eq!(data.assets[0].symbol, "S000");
    assert!(data.assets.iter().all(|a| a.shares_outstanding > 0.0));
    assert!(data.bars.iter().any(|b| b.first_bar > 0), "some assets list after the first session");
    assert!(!data.splits.is_empty() && !data.dividends.is_empty());
    data.validate("universe".as_ref()).unwrap();
}

#[test]
fn loaded_columns_are_nan_outside_the_asset_range() {
    let spec = GenerateSpec { preset: Preset::Universe { assets: 30 }, ..crate::small_spec(Frequency::Daily) };
    let data = bundle::generate::generate(&spec).unwrap();
    let b = Bundle::from_data(&data, data.content_hash(), String::new());
    for a in b.assets() {
        let close = b.column(a.sid, Field::AdjClose);
        assert_eq!(close.len(), b.n_bars());
        assert!(close[..a.first_bar].iter().all(|v| v.is_nan()));
        assert!(close[a.first_bar..a.end_bar].iter().all(|v| v.is_finite() && *v > 0.0));
    }
}

#[test]
fn content_hashes_without_a_planted_edge_never_change() {
    // Recorded before the planted-edge option existed: the option must not change one bit
    // of the bundles generated without it.
    let minute = GenerateSpec {
        start: "2024-11-25".parse().unwrap(),
        end: "2024-12-03".parse().unwrap(),
        ..GenerateSpec::mag7(Frequency::Minute)
    };
    for (spec, hash) in [
        (GenerateSpec::mag7(Frequency::Daily), "c4ad34ca6761518ca41aa690057596b9a985a3ccfb02e0e22f085a8fece973b8"),
        (
            GenerateSpec { preset: Preset::Universe { assets: 100 }, ..GenerateSpec::mag7(Frequency::Daily) },
            "da0b0fc00cefec8e9c3f9dad2b4445317736d59bbf1e893a07216c52c1197cdf",
        ),
        (minute, "15f8cf54a421231f93479fd9885507d94c4636f6f585ba3826a0d6d55a826b74"),
        (crate::small_spec(Frequency::Daily), "7350161c4007dbd635485714dcec540f59fdbe2c12b565ffbd4e4c2b3ba6ecfb"),
    ] {
        assert_eq!(bundle::generate::generate(&spec).unwrap().content_hash(), hash, "{spec:?}");
    }
}

fn planted(short: usize, long: usize, strength: f64) -> GenerateSpec {
    GenerateSpec {
        plant_edge: Some(PlantEdge { short_window: short, long_window: long, strength, threshold: 0.001 }),
        ..GenerateSpec::mag7(Frequency::Daily)
    }
}

#[test]
fn a_planted_edge_is_deterministic_by_seed_and_moves_only_opens() {
    let spec = planted(20, 110, 1.0);
    let a = bundle::generate::generate(&spec).unwrap();
    let b = bundle::generate::generate(&spec).unwrap();
    assert_eq!(a.content_hash(), b.content_hash());
    assert!(
        a.provenance.contains("planted edge short_window=20 long_window=110 threshold=0.001 strength=1, no dividends"),
        "{}",
        a.provenance
    );
    let plain = bundle::generate::generate(&GenerateSpec::mag7(Frequency::Daily)).unwrap();
    assert_ne!(a.content_hash(), plain.content_hash());
    assert_ne!(
        a.content_hash(),
        bundle::generate::generate(&GenerateSpec { seed: 43, ..spec }).unwrap().content_hash()
    );
    assert_ne!(a.content_hash(), bundle::generate::generate(&planted(20, 95, 1.0)).unwrap().content_hash());
    // Closes (and so every signal) are the plain bundle's; only opens move, on the planted
    // configuration's fill bars, none before its long SMA exists (bar 110 is the first fill
    // bar possible), and a few times per asset over five years.
    for (x, y) in a.bars.iter().zip(&plain.bars) {
        assert_eq!(x.close, y.close);
        let moved: Vec<usize> = (0..x.len()).filter(|&k| x.open[k] != y.open[k]).collect();
        assert!(moved.first().is_some_and(|&k| k >= 110), "{moved:?}");
        assert!((4..200).contains(&moved.len()), "{} moved opens", moved.len());
    }
    assert_eq!(a.splits, plain.splits);
    assert!(a.dividends.is_empty() && !plain.dividends.is_empty());
    a.validate("planted".as_ref()).unwrap();
}

#[test]
fn bad_planted_edges_are_refused() {
    for (short, long, strength) in
        [(0, 50, 0.1), (50, 50, 0.1), (60, 50, 0.1), (5, 50, 0.0), (5, 50, 10.5), (5, 50, f64::NAN)]
    {
        let e = bundle::generate::generate(&planted(short, long, strength)).unwrap_err().to_string();
        assert!(e.starts_with("planted edge"), "{e}");
    }
    assert!(PlantEdge::new_checked(5, 50, 10.0, 0.0).is_ok());
    for t in [-0.1, 1.0, f64::NAN] {
        let e = PlantEdge::new_checked(5, 50, 1.0, t).unwrap_err().to_string();
        assert!(e.starts_with("planted edge threshold"), "{e}");
    }
}
