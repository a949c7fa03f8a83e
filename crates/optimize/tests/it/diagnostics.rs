//! Fidelity diagnostics: rank correlations between successive budgets.

use std::collections::BTreeMap;

use optimize::{SearchOptions, fidelity, spearman};

use crate::{mem, run_bohb_co};

#[test]
fn spearman_matches_hand_computed_values() {
    // Perfectly monotone: 1; reversed: -1.
    assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
    assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
    // x ranks 1 2 3 4, y = [1, 3, 2, 4] ranks 1 3 2 4: d² = 0+1+1+0 = 2, ρ = 1 − 6·2/(4·15) = 0.8.
    let r = spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
    assert!((r - 0.8).abs() < 1e-15, "{r}");
    // Ties share their average rank: y = [1, 1, 2] ranks 1.5 1.5 3 against x ranks 1 2 3;
    // Pearson of ranks: means 2 and 2; Σdxdy = (−1)(−.5)+0+1·1 = 1.5, Σdx² = 2, Σdy² = 1.5.
    let r = spearman(&[1.0, 2.0, 3.0], &[1.0, 1.0, 2.0]).unwrap();
    assert!((r - 1.5 / (2.0f64 * 1.5).sqrt()).abs() < 1e-15, "{r}");
    // No spread, or too few points: no correlation.
    assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
    assert_eq!(spearman(&[1.0], &[1.0]), None);
}

/// The diagnostics of a BOHB run on counting-ones equal a computation written here from the
/// trials: for each pair of successive budgets, the configs with a loss at both.
#[test]
fn bracket_search_fidelity_equals_the_hand_computation() {
    let s = run_bohb_co(
        4,
        3,
        4,
        SearchOptions { deterministic: true, reuse_results: false, streaming: false },
        &mut mem(),
        None,
    )
    .unwrap();
    let got = fidelity(&s.trials);
    let mut budgets: Vec<f64> = s.trials.iter().map(|t| t.budget).collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup();
    assert!(budgets.len() >= 3, "several budgets: {budgets:?}");
    assert_eq!(got.len(), budgets.len() - 1);
    for (pair, w) in got.iter().zip(budgets.windows(2)) {
        assert_eq!((pair.low, pair.high), (w[0], w[1]));
        let at = |b: f64| -> BTreeMap<String, f64> {
            let mut m = BTreeMap::new();
            for t in s.trials.iter().filter(|t| t.budget == b) {
                if let Some(l) = t.loss {
                    m.entry(format!("{:?}", t.config)).or_insert(l);
                }
            }
            m
        };
        let (lo, hi) = (at(w[0]), at(w[1]));
        let both: Vec<(f64, f64)> = lo.iter().filter_map(|(k, a)| Some((*a, *hi.get(k)?))).collect();
        assert_eq!(pair.pairs, both.len());
        assert!(pair.pairs >= 2, "promoted configs exist at both budgets");
        // Ranks by counting (counting-ones losses tie often: a tie shares the average rank),
        // then the Pearson correlation of the ranks.
        let rank = |v: &[f64]| -> Vec<f64> {
            v.iter()
                .map(|x| {
                    let below = v.iter().filter(|y| *y < x).count() as f64;
                    let equal = v.iter().filter(|y| *y == x).count() as f64;
                    1.0 + below + (equal - 1.0) / 2.0
                })
                .collect()
        };
        let (a, b): (Vec<f64>, Vec<f64>) = both.iter().copied().unzip();
        let (ra, rb) = (rank(&a), rank(&b));
        let n = a.len() as f64;
        let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
        let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = ra.iter().map(|x| (x - ma) * (x - ma)).sum();
        let vb: f64 = rb.iter().map(|y| (y - mb) * (y - mb)).sum();
        let want = cov / (va * vb).sqrt();
        let rho = pair.spearman.unwrap();
        assert!((rho - want).abs() < 1e-12, "{rho} vs {want}");
    }
    // And the JSON carries the same numbers, with trial ids, brackets and stages.
    let json = s.to_json();
    assert_eq!(json["fidelity"].as_array().unwrap().len(), got.len());
    assert_eq!(json["fidelity"][0]["pairs"], got[0].pairs);
    let t0 = &json["trials"][0];
    assert!(t0["trial_id"].is_u64() && t0["bracket"].is_u64() && t0["stage"].is_u64(), "{t0}");
}
