//! The deflated Sharpe ratio: a hand-computed case, a second computation, edge cases.

use overfitting::{EULER_GAMMA, Error, ReturnMatrix, compute, deflated_sharpe, sharpe};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::{blocks_trial, matrix, noise};

#[test]
fn four_trials_of_sixteen_returns_by_hand() {
    // Trial g has its first g blocks good (see `blocks_trial`): g = 0, 1, 2, 3.
    // Full-series sharpe of g good blocks out of 4 (16 rows): mean = 2g/4 = g/2; each block
    // contributes 4·(1 + (μ_b − g/2)²) to Σd², so Σd² = 16 + 4·(g·(2 − g/2)² + (4 − g)·(g/2)²)
    // = 16 + 16g − 4g²:
    //   g = 0: sharpe 0;
    //   g = 1: Σd² = 28, var = 28/15, SR = 0.5/sqrt(28/15) = 0.365962527355700;
    //   g = 2: Σd² = 32, var = 32/15, SR = 1/sqrt(32/15)   = 0.684653196881458;
    //   g = 3: Σd² = 28, var = 28/15, SR = 1.5/sqrt(28/15) = 1.097887582067100.
    let srs = [0.0, 0.5 / (28.0f64 / 15.0).sqrt(), 1.0 / (32.0f64 / 15.0).sqrt(), 1.5 / (28.0f64 / 15.0).sqrt()];
    // V = var(SR, ddof 1): mean 0.537125826576064, V = 0.218006366661878.
    let mean = srs.iter().sum::<f64>() / 4.0;
    let v = srs.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / 3.0;
    assert!((v - 0.218006366661878).abs() < 1e-14);
    // SR0 = sqrt(V)·((1−γ)·Φ⁻¹(1 − 1/4) + γ·Φ⁻¹(1 − 1/(4e))), with the table values
    // Φ⁻¹(0.75) = 0.674489750196082 and Φ⁻¹(0.908030139707139) = 1.328721949624763:
    // SR0 = 0.466913 · (0.422784·0.674490 + 0.577216·1.328722) = 0.491248266114807.
    let sr0 = v.sqrt() * ((1.0 - EULER_GAMMA) * 0.674489750196082 + EULER_GAMMA * 1.328721949624763);
    assert!((sr0 - 0.491248266114807).abs() < 1e-12);
    // The best is g = 3: values 3 (×6), 1 (×8), −1 (×2), mean 1.5, deviations 1.5, −0.5, −2.5.
    //   m2 = (6·2.25 + 8·0.25 + 2·6.25)/16 = 28/16 = 1.75
    //   m3 = (6·3.375 − 8·0.125 − 2·15.625)/16 = −12/16 = −0.75
    //   m4 = (6·5.0625 + 8·0.0625 + 2·39.0625)/16 = 109/16 = 6.8125
    //   g3 = −0.75/1.75^1.5 = −0.323969548293623, g4 = 6.8125/3.0625 = 2.224489795918367
    // radicand = 1 − g3·SR* + (g4 − 1)/4·SR*² = 1.724669024505929
    // z = (SR* − SR0)·sqrt(15)/sqrt(radicand) = 1.789053389427270, DSR = Φ(z) = 0.963196891151591.
    let trials: Vec<Vec<f64>> = [&[][..], &[0], &[0, 1], &[0, 1, 2]].iter().map(|g| blocks_trial(g)).collect();
    let d = deflated_sharpe(&matrix(&trials)).unwrap();
    assert_eq!(d.best_trial, 3);
    for (name, got, want) in [
        ("best_sharpe", d.best_sharpe, srs[3]),
        ("sharpe_variance", d.sharpe_variance, 0.218006366661878),
        ("expected_max_sharpe", d.expected_max_sharpe, 0.491248266114807),
        ("skewness", d.skewness, -0.323969548293623),
        ("kurtosis", d.kurtosis, 2.224489795918367),
        ("deflated_sharpe", d.deflated_sharpe, 0.963196891151591),
    ] {
        // statrs's Φ agrees with an exact erfc to about 2e-12 here.
        let tolerance = if name == "deflated_sharpe" { 1e-10 } else { 1e-12 };
        assert!((got - want).abs() < tolerance, "{name}: {got} != {want}");
    }
    for (trial, want) in trials.iter().zip(srs) {
        assert!((sharpe(trial) - want).abs() < 1e-15);
    }
}

/// A second computation: one-pass raw moments (E[x^k] expanded into central moments),
/// Welford sharpes, the quantiles by bisection of Φ.
fn second_dsr(m: &ReturnMatrix) -> (f64, f64, f64) {
    let phi = Normal::standard();
    let welford_sharpe = |xs: &[f64]| {
        let (mut mean, mut m2) = (0.0, 0.0);
        for (i, &x) in xs.iter().enumerate() {
            let d = x - mean;
            mean += d / (i + 1) as f64;
            m2 += d * (x - mean);
        }
        mean / (m2 / (xs.len() - 1) as f64).sqrt()
    };
    let quantile = |p: f64| {
        let (mut lo, mut hi) = (-40.0f64, 40.0f64);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if phi.cdf(mid) < p { lo = mid } else { hi = mid }
        }
        0.5 * (lo + hi)
    };
    let srs: Vec<f64> = m.iter().map(welford_sharpe).collect();
    let n = srs.len() as f64;
    let v = (srs.iter().map(|s| s * s).sum::<f64>() - srs.iter().sum::<f64>().powi(2) / n) / (n - 1.0);
    let sr0 = v.sqrt()
        * ((1.0 - 0.5772156649015329) * quantile(1.0 - 1.0 / n)
            + 0.5772156649015329 * quantile(1.0 - 1.0 / (n * std::f64::consts::E)));
    let best = srs.iter().cloned().fold(f64::MIN, f64::max);
    let x = m.trial(srs.iter().position(|&s| s == best).unwrap());
    let t = x.len() as f64;
    let e = |k: i32| x.iter().map(|v| v.powi(k)).sum::<f64>() / t;
    let (e1, e2, e3, e4) = (e(1), e(2), e(3), e(4));
    let m2 = e2 - e1 * e1;
    let m3 = e3 - 3.0 * e1 * e2 + 2.0 * e1.powi(3);
    let m4 = e4 - 4.0 * e1 * e3 + 6.0 * e1 * e1 * e2 - 3.0 * e1.powi(4);
    let (g3, g4) = (m3 / m2.powf(1.5), m4 / (m2 * m2));
    let z = (best - sr0) * (t - 1.0).sqrt() / (1.0 - g3 * best + (g4 - 1.0) / 4.0 * best * best).sqrt();
    (phi.cdf(z), sr0, best)
}

#[test]
fn matches_a_second_computation_on_random_trials() {
    // Skewed, fat-tailed returns (a cube of a normal plus drift) so that g3 and g4 matter.
    for seed in 0..20u64 {
        let mut z = crate::Normals::new(seed);
        let trials: Vec<Vec<f64>> = (0..(5 + seed as usize * 7))
            .map(|n| (0..(60 + seed as usize * 31)).map(|_| 0.0002 * n as f64 + 0.01 * z.normal().powi(3)).collect())
            .collect();
        let m = matrix(&trials);
        let d = deflated_sharpe(&m).unwrap();
        let (dsr, sr0, best) = second_dsr(&m);
        assert!((d.best_sharpe - best).abs() < 1e-12, "seed {seed}");
        assert!((d.expected_max_sharpe - sr0).abs() < 1e-10, "seed {seed}: {} vs {sr0}", d.expected_max_sharpe);
        assert!((d.deflated_sharpe - dsr).abs() < 1e-9, "seed {seed}: {} vs {dsr}", d.deflated_sharpe);
    }
}

#[test]
fn ties_pick_the_lowest_trial_and_equal_sharpes_give_sr0_zero() {
    let one = noise(4, 1, 50, 0.01, |_| 0.001);
    let d = deflated_sharpe(&matrix(&[one.trial(0).to_vec(), one.trial(0).to_vec()])).unwrap();
    assert_eq!(d.best_trial, 0);
    assert_eq!(d.sharpe_variance, 0.0);
    assert_eq!(d.expected_max_sharpe, 0.0);
    // N = 2: Φ⁻¹(1 − 1/2) = 0, so SR0 = sqrt(V)·γ·Φ⁻¹(1 − 1/(2e)) for two different trials.
    let two = noise(4, 2, 50, 0.01, |_| 0.001);
    let d = deflated_sharpe(&two).unwrap();
    let (a, b) = (sharpe(two.trial(0)), sharpe(two.trial(1)));
    let v = (a - b).powi(2) / 2.0;
    let want = v.sqrt() * EULER_GAMMA * Normal::standard().inverse_cdf(1.0 - 1.0 / (2.0 * std::f64::consts::E));
    assert!((d.expected_max_sharpe - want).abs() < 1e-14);
}

#[test]
fn a_flat_best_trial_has_radicand_one() {
    // Every trading trial loses; trial 1 never trades (returns all 0) and is the best with
    // SR* = 0. Its moments are 0/0: the documented rule takes the radicand as 1, so
    // DSR = Φ((0 − SR0)·sqrt(T − 1)).
    let losers = noise(6, 3, 64, 0.01, |_| -0.004);
    let trials = vec![losers.trial(0).to_vec(), vec![0.0; 64], losers.trial(1).to_vec(), losers.trial(2).to_vec()];
    let d = deflated_sharpe(&matrix(&trials)).unwrap();
    assert_eq!((d.best_trial, d.best_sharpe, d.skewness, d.kurtosis), (1, 0.0, 0.0, 0.0));
    let want = Normal::standard().cdf(-d.expected_max_sharpe * 63f64.sqrt());
    assert!((d.deflated_sharpe - want).abs() < 1e-15);
    assert!(d.deflated_sharpe < 0.5);
}

#[test]
fn compute_gathers_both_statistics_and_refuses_with_reasons() {
    let m = noise(8, 30, 200, 0.01, |n| 0.0001 * n as f64);
    let o = compute(&m, 16).unwrap();
    let d = deflated_sharpe(&m).unwrap();
    let p = overfitting::pbo(&m, 16).unwrap();
    assert_eq!((o.trials, o.returns, o.cscv_blocks), (30, 200, 16));
    assert_eq!(
        (o.deflated_sharpe, o.expected_max_sharpe, o.best_sharpe),
        (d.deflated_sharpe, d.expected_max_sharpe, d.best_sharpe)
    );
    assert_eq!((o.pbo, &o.logits, o.best_trial), (p.pbo, &p.logits, d.best_trial));

    assert_eq!(compute(&m.select(&[3]), 16).unwrap_err(), Error::TooFewTrials(1));
    let short = matrix(&(0..5).map(|n| m.trial(n)[..31].to_vec()).collect::<Vec<_>>());
    let e = compute(&short, 16).unwrap_err();
    assert_eq!(e.to_string(), "fewer than 32 returns (31), cscv needs 2 per block");
    assert_eq!(compute(&m, 15).unwrap_err().to_string(), "cscv blocks must be even, at least 4 and at most 24, got 15");
    assert_eq!(
        deflated_sharpe(&matrix(&[vec![0.1], vec![0.2]])).unwrap_err(),
        Error::TooFewReturns { got: 1, needed: 2, why: "the deflated sharpe needs at least 2" }
    );
}

#[test]
fn the_reading_follows_both_figures() {
    let m = noise(8, 30, 200, 0.01, |n| 0.0001 * n as f64);
    let base = compute(&m, 16).unwrap();
    let at =
        |pbo: f64, deflated_sharpe: f64| overfitting::Overfitting { pbo, deflated_sharpe, ..base.clone() }.reading();
    assert_eq!(
        at(0.087, 0.984),
        "PBO 0.09, DSR 0.98: the in-sample best usually stays above the out-of-sample median; \
         its sharpe is significant at 95% after 30 trials"
    );
    assert!(at(0.5, 0.95).contains("usually stays above") && at(0.5, 0.95).contains("is significant"));
    assert!(at(0.51, 0.949).contains("more likely than not below") && at(0.51, 0.949).contains("is not significant"));
}
