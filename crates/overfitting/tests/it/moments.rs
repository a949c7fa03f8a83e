//! The statistics from per-trial moments (what a worker sends) against those from the series.

use overfitting::{Error, TrialMoments, best_trial, compute, compute_from_moments};
use proptest::prelude::*;

use crate::noise;

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Moments give the same bits as the series, whatever N, T (with and without dropped
    /// rows) and S, flat trials included.
    #[test]
    fn moments_give_the_same_statistics_as_the_series(
        seed in any::<u64>(),
        trials in 2usize..30,
        extra in 0usize..7,
        blocks in prop_oneof![Just(4usize), Just(8), Just(16)],
        flat in any::<bool>(),
    ) {
        let returns = 2 * blocks * 4 + extra;
        let mut m = noise(seed, trials, returns, 0.01, |n| n as f64 * 1e-4);
        if flat {
            let mut series: Vec<Vec<f64>> = m.iter().map(<[f64]>::to_vec).collect();
            series[0] = vec![0.0; returns];
            m = overfitting::ReturnMatrix::from_trials(&series).unwrap();
        }
        let moments = TrialMoments::of_matrix(&m, blocks).unwrap();
        let best = best_trial(&moments);
        let from_moments = compute_from_moments(&moments, blocks, m.trial(best));
        let from_series = compute(&m, blocks);
        prop_assert_eq!(&from_moments, &from_series);
        if let Ok(o) = from_series {
            prop_assert_eq!(o.best_trial, best);
        }
    }
}

#[test]
fn moments_refuse_what_the_series_refuse_and_a_wrong_best() {
    let m = noise(3, 5, 64, 0.01, |n| n as f64 * 1e-4);
    let moments = TrialMoments::of_matrix(&m, 8).unwrap();
    let best = best_trial(&moments);
    let other = (best + 1) % 5;
    let e = compute_from_moments(&moments, 8, m.trial(other)).unwrap_err();
    assert!(matches!(e, Error::BestReturnsMismatch { expected: 64, .. }), "{e}");
    // Too few returns for 16 blocks (2 per block): the same refusal either way.
    let s = noise(3, 5, 30, 0.01, |n| n as f64 * 1e-4);
    let short = TrialMoments::of_matrix(&s, 16).unwrap();
    let e = compute_from_moments(&short, 16, s.trial(best_trial(&short))).unwrap_err();
    assert_eq!(e, compute(&s, 16).unwrap_err());
    assert!(matches!(e, Error::TooFewReturns { got: 30, needed: 32, .. }), "{e}");
    assert!(matches!(compute_from_moments(&moments[..1], 8, m.trial(0)), Err(Error::TooFewTrials(1))));
    let e = compute_from_moments(&TrialMoments::of_matrix(&m, 4).unwrap(), 8, m.trial(best)).unwrap_err();
    assert!(matches!(e, Error::InvalidMoments { blocks: 4, expected: 8, .. }), "{e}");
    let e = TrialMoments::of(&[0.1, f64::NAN, 0.2, 0.0, 0.1, 0.1, 0.3, 0.2], 4).unwrap_err();
    assert!(matches!(e, Error::NonFiniteReturn { index: 1, .. }), "{e}");
    assert!(matches!(TrialMoments::of(&[0.0; 16], 5), Err(Error::InvalidBlocks { got: 5 })));
}
