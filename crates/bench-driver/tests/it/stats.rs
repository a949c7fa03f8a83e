//! Statistics against known values (R's `t.test`, recomputed to 12 digits with mpmath) and CI
//! coverage by simulation.

use bench_driver::stats::{self, Error};

use crate::{Normals, close};

/// R's `sleep` data: extra hours of sleep under two drugs, the same 10 patients.
const SLEEP_1: [f64; 10] = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0];
const SLEEP_2: [f64; 10] = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4];

#[test]
fn t_quantiles() {
    for (df, expect) in [
        (9.0, 2.262157),
        (4.0, 2.776445),
        (30.0, 2.042272),
        (1.0, 12.706205),
        (2.0, 4.302653),
        (100.0, 1.983972),
        (f64::INFINITY, 1.959964),
    ] {
        close(&format!("t(0.975, {df})"), stats::t_quantile(0.975, df), expect, 1e-6);
        // The distribution is symmetric, so the lower quantile mirrors the upper one.
        close(&format!("t(0.025, {df})"), stats::t_quantile(0.025, df), -expect, 1e-6);
    }
}

#[test]
fn t_cdf_known_values() {
    close("P(T5 < -2)", stats::t_cdf(-2.0, 5.0), 0.0509697394149, 1e-9);
    close("P(T3 < 1.5)", stats::t_cdf(1.5, 3.0), 0.884708067378, 1e-9);
    close("P(T9 < 0)", stats::t_cdf(0.0, 9.0), 0.5, 1e-12);
}

#[test]
fn summary_of_sleep_group_1() {
    let s = stats::summarize(&SLEEP_1).unwrap();
    assert_eq!(s.n, 10);
    close("mean", s.mean, 0.75, 1e-12);
    close("sd", s.sd, 1.78900965776, 1e-9);
    // R: t.test(sleep$extra[1:10])$conf.int = -0.5297804 2.0297804
    close("ci lo", s.ci95[0], -0.529780413526, 1e-6);
    close("ci hi", s.ci95[1], 2.029780413526, 1e-6);
}

#[test]
fn welch_on_r_sleep_data() {
    // R: t.test(extra ~ group, data = sleep): t = -1.8608, df = 17.776, p-value = 0.07939
    let t = stats::welch(&SLEEP_1, &SLEEP_2).unwrap();
    close("t", t.statistic, -1.86081346749, 1e-6);
    close("df", t.df, 17.7764735162, 1e-6);
    close("p", t.p_value, 0.0793941401874, 1e-6);
    // Swapping the samples flips the sign and nothing else.
    let r = stats::welch(&SLEEP_2, &SLEEP_1).unwrap();
    close("t swapped", r.statistic, 1.86081346749, 1e-6);
    close("p swapped", r.p_value, t.p_value, 1e-12);
}

#[test]
fn welch_on_wikipedia_example_1() {
    // Wikipedia, "Welch's t-test", example 1: t = -2.46, df = 24.99, p = 0.021.
    let a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4];
    let a2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4];
    let t = stats::welch(&a1, &a2).unwrap();
    close("t", t.statistic, -2.45535639829, 1e-6);
    close("df", t.df, 24.9885292902, 1e-6);
    close("p", t.p_value, 0.0213780014629, 1e-6);
}

#[test]
fn paired_on_r_sleep_data() {
    // R: t.test(sleep$extra[1:10], sleep$extra[11:20], paired = TRUE):
    // t = -4.0621, df = 9, p-value = 0.002833
    let t = stats::paired(&SLEEP_1, &SLEEP_2).unwrap();
    close("t", t.statistic, -4.06212768338, 1e-6);
    assert_eq!(t.df, 9.0);
    close("p", t.p_value, 0.00283289019738, 1e-8);
}

#[test]
fn tiny_p_keeps_its_digits() {
    // A huge, clean difference: p is far below machine epsilon relative to 1, and computing it
    // as 1 − cdf would give exactly 0.
    let a = [10.0, 10.1, 9.9, 10.0, 10.05, 9.95, 10.0, 10.02, 9.98, 10.0];
    let b: Vec<f64> = a.iter().map(|x| x - 1.0).collect();
    let p = stats::welch(&a, &b).unwrap().p_value;
    assert!(p > 0.0 && p < 1e-15, "p = {p}");
}

#[test]
fn zero_variance_is_handled_not_nan() {
    let same = stats::welch(&[1.0, 1.0, 1.0], &[1.0, 1.0]).unwrap();
    assert_eq!((same.statistic, same.p_value), (0.0, 1.0));
    let differ = stats::welch(&[2.0, 2.0, 2.0], &[1.0, 1.0]).unwrap();
    assert_eq!((differ.statistic, differ.p_value), (f64::INFINITY, 0.0));
    assert_eq!(differ.df, 3.0);
    let p = stats::paired(&[2.0, 3.0, 4.0], &[1.0, 2.0, 3.0]).unwrap();
    assert_eq!((p.statistic, p.p_value), (f64::INFINITY, 0.0));
    let s = stats::speedup(&[2.0, 2.0], &[1.0, 1.0]).unwrap();
    assert_eq!((s.pct, s.ci95), (100.0, [100.0, 100.0]));
}

#[test]
fn bad_input_is_an_error() {
    assert_eq!(stats::summarize(&[1.0]), Err(Error::TooFewRuns(1)));
    assert_eq!(stats::welch(&[], &[1.0, 2.0]), Err(Error::TooFewRuns(0)));
    assert_eq!(stats::summarize(&[1.0, f64::NAN]).unwrap_err().to_string(), "run 1 is not finite (NaN)");
    assert_eq!(stats::paired(&[1.0, 2.0, 3.0], &[1.0, 2.0]), Err(Error::LengthMismatch(3, 2)));
    assert_eq!(stats::speedup(&[1.0, 2.0], &[-1.0, -2.0]), Err(Error::NonPositiveMean(-1.5)));
}

#[test]
fn speedup_point_and_interval() {
    // Baseline twice as slow: +100%.
    let base = [2.0, 2.1, 1.9, 2.0, 2.05, 1.95, 2.0, 2.0, 2.02, 1.98];
    let cand: Vec<f64> = base.iter().map(|x| x / 2.0).collect();
    let s = stats::speedup(&base, &cand).unwrap();
    close("pct", s.pct, 100.0, 1e-9);
    assert!(s.ci95[0] < 100.0 && 100.0 < s.ci95[1], "{s:?}");
    // Candidate slower: a negative speed-up, bounded below by -100%.
    let s = stats::speedup(&cand, &base).unwrap();
    close("pct", s.pct, -50.0, 1e-9);
    assert!(s.ci95[0] > -100.0 && s.ci95[0] < -50.0 && s.ci95[1] > -50.0, "{s:?}");
}

#[test]
fn compare_bundles_everything() {
    let c = stats::compare(&SLEEP_2, &SLEEP_1, true).unwrap();
    close("baseline mean", c.baseline.mean, 2.33, 1e-12);
    close("candidate mean", c.candidate.mean, 0.75, 1e-12);
    close("speed-up", c.speedup.pct, (2.33 / 0.75 - 1.0) * 100.0, 1e-9);
    close("decision p is Welch's", c.p_value(), 0.0793941401874, 1e-6);
    close("paired p", c.paired.unwrap().p_value, 0.00283289019738, 1e-8);
    assert!(stats::compare(&SLEEP_2, &SLEEP_1, false).unwrap().paired.is_none());
}

/// Fraction of `trials` simulated experiments whose speed-up CI covers the true speed-up.
fn speedup_coverage(seed: u64, trials: usize, n: usize, base_mean: f64, cand_mean: f64, cv: f64) -> f64 {
    let mut rng = Normals::new(seed);
    let truth = (base_mean / cand_mean - 1.0) * 100.0;
    let mut covered = 0;
    for _ in 0..trials {
        let b = rng.sample(n, base_mean, cv * base_mean);
        let c = rng.sample(n, cand_mean, 2.0 * cv * cand_mean); // unequal variances on purpose
        let s = stats::speedup(&b, &c).unwrap();
        covered += usize::from(s.ci95[0] <= truth && truth <= s.ci95[1]);
    }
    covered as f64 / trials as f64
}

#[test]
fn speedup_ci_covers_95_percent() {
    // 4000 trials: the binomial sd of the coverage is 0.34 points, so 93–97% is a 6-sd window
    // around the nominal 95%, and the fixed seed makes the outcome reproducible anyway. (With
    // 40,000 trials per case the coverage is 94.9–95.7%, up to a coefficient of variation of
    // 30%.)
    for (seed, n, cv) in [(1, 10, 0.03), (2, 10, 0.10), (3, 20, 0.05), (4, 10, 0.30)] {
        let cov = speedup_coverage(seed, 4000, n, 1.0, 0.85, cv);
        assert!((0.93..=0.97).contains(&cov), "n = {n}, cv = {cv}: coverage {cov}");
    }
}

#[test]
fn mean_ci_covers_95_percent() {
    let mut rng = Normals::new(7);
    let covered = (0..2000)
        .filter(|_| {
            let s = stats::summarize(&rng.sample(10, 3.0, 0.5)).unwrap();
            s.ci95[0] <= 3.0 && 3.0 <= s.ci95[1]
        })
        .count();
    let cov = covered as f64 / 2000.0;
    assert!((0.93..=0.97).contains(&cov), "coverage {cov}");
}

#[test]
fn welch_false_positive_rate_is_alpha() {
    // Under the null (equal means, unequal variances) p < 0.05 should happen ~5% of the time.
    let mut rng = Normals::new(11);
    let hits = (0..2000)
        .filter(|_| {
            let a = rng.sample(10, 1.0, 0.05);
            let b = rng.sample(12, 1.0, 0.15);
            stats::welch(&a, &b).unwrap().p_value < 0.05
        })
        .count();
    let rate = hits as f64 / 2000.0;
    assert!((0.03..=0.07).contains(&rate), "false-positive rate {rate}");
}

#[test]
fn rank_among_a_grid() {
    let grid = [0.5, 1.0, f64::NAN, 2.0, 1.5, 1.0];
    let r = stats::rank_among(&grid, 2.0);
    assert_eq!((r.rank, r.of, r.percentile), (1, 5, 100.0));
    let r = stats::rank_among(&grid, 1.0);
    assert_eq!((r.rank, r.of, r.percentile), (3, 5, 60.0));
    let r = stats::rank_among(&grid, 0.0);
    assert_eq!((r.rank, r.of, r.percentile), (6, 5, 0.0));
    assert!(stats::rank_among(&[], 1.0).percentile.is_nan());
}
