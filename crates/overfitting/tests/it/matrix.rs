//! ReturnMatrix: checked on the way in.

use overfitting::{Error, ReturnMatrix};

#[test]
fn ragged_and_non_finite_series_are_refused_with_their_trial() {
    let e = ReturnMatrix::from_trials([vec![0.1, 0.2], vec![0.3]]).unwrap_err();
    assert_eq!(e, Error::RaggedReturns { trial: 1, got: 1, expected: 2 });
    let e = ReturnMatrix::from_trials([vec![0.1, 0.2], vec![0.3, f64::NAN]]).unwrap_err();
    assert!(matches!(e, Error::NonFinite { trial: 1, index: 1, value } if value.is_nan()), "{e}");
    let mut m = ReturnMatrix::with_returns(2);
    m.push(&[1.0, 2.0]).unwrap();
    assert_eq!(m.push(&[f64::INFINITY, 0.0]).unwrap_err().to_string(), "trial 1 has a non-finite return at 0: inf");
    assert_eq!(m.trials(), 1, "a refused series is not added");
}

#[test]
fn select_keeps_the_order_given_and_empty_matrices_count_trials() {
    let m = ReturnMatrix::from_trials([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]).unwrap();
    let s = m.select(&[2, 0]);
    assert_eq!((s.trials(), s.returns()), (2, 2));
    assert_eq!(s.iter().collect::<Vec<_>>(), [&[5.0, 6.0][..], &[1.0, 2.0]]);
    let empty = ReturnMatrix::from_trials([Vec::<f64>::new(), vec![]]).unwrap();
    assert_eq!((empty.trials(), empty.returns()), (2, 0));
}
