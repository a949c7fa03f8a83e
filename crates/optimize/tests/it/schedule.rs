//! Bracket schedules equal HpBandSter 0.7.4's.

use optimize::{bracket_schedule, budgets};

fn check(min: f64, max: f64, eta: f64, sizes: &[&[usize]], stage_budgets: &[&[f64]]) {
    let plans = bracket_schedule(min, max, eta).unwrap();
    let got: Vec<Vec<usize>> = plans.iter().map(|p| p.num_configs.clone()).collect();
    assert_eq!(got, sizes.iter().map(|s| s.to_vec()).collect::<Vec<_>>(), "({min}, {max}, {eta})");
    for (p, want) in plans.iter().zip(stage_budgets) {
        assert_eq!(p.budgets.len(), want.len());
        for (g, w) in p.budgets.iter().zip(*want) {
            assert!((g - w).abs() < 1e-9 * w, "budget {g} != {w}");
        }
    }
}

#[test]
fn hpbandster_examples() {
    check(
        9.0,
        243.0,
        3.0,
        &[&[27, 9, 3, 1], &[9, 3, 1], &[6, 2], &[4]],
        &[&[9.0, 27.0, 81.0, 243.0], &[27.0, 81.0, 243.0], &[81.0, 243.0], &[243.0]],
    );
    let b = budgets(0.01, 1.0, 3.0).unwrap();
    let want = [1.0 / 81.0, 1.0 / 27.0, 1.0 / 9.0, 1.0 / 3.0, 1.0];
    assert_eq!(b.len(), 5);
    for (g, w) in b.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{b:?}");
    }
    assert!((b[0] - 0.0123).abs() < 1e-4 && (b[1] - 0.037).abs() < 1e-3 && (b[2] - 0.111).abs() < 1e-3);
    check(0.05, 1.0, 3.0, &[&[9, 3, 1], &[3, 1], &[3]], &[&[1.0 / 9.0, 1.0 / 3.0, 1.0], &[1.0 / 3.0, 1.0], &[1.0]]);
    check(1.0, 1.0, 3.0, &[&[1]], &[&[1.0]]);
}

#[test]
fn bad_settings_are_refused() {
    for (min, max, eta, msg) in [
        (0.0, 1.0, 3.0, "positive"),
        (2.0, 1.0, 3.0, "exceeds"),
        (0.1, 1.0, 1.0, "eta must be > 1"),
        (0.1, f64::NAN, 3.0, "finite"),
    ] {
        let e = bracket_schedule(min, max, eta).unwrap_err().to_string();
        assert!(e.contains(msg), "{e}");
    }
}
