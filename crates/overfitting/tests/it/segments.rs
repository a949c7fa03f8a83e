//! Walk-forward segments: K = 1, 3 and 7, rolling and anchored, and the remainder rule.

use overfitting::{Error, Fold, segments};

/// A fold as ((train start, train end), (test start, test end)).
type Bounds = ((usize, usize), (usize, usize));

/// The one place the cases call the API: the folds as (train, test) index ranges.
fn check(sessions: usize, folds: usize, anchored: bool, expect: &[Bounds]) {
    let got = segments(sessions, folds, anchored, 1).unwrap();
    let want: Vec<Fold> = expect.iter().map(|&((a, b), (c, d))| Fold { train: a..b, test: c..d }).collect();
    assert_eq!(got, want);
}

#[test]
fn one_fold() {
    // 1258 / 2 = 629, remainder 0.
    check(1258, 1, false, &[((0, 629), (629, 1258))]);
    check(1258, 1, true, &[((0, 629), (629, 1258))]);
    // 1259 / 2 = 629 remainder 1: the first segment takes it.
    check(1259, 1, false, &[((0, 630), (630, 1259))]);
}

#[test]
fn three_folds_remainder_to_the_first_segment() {
    // 1258 / 4 = 314 remainder 2: segments of 316, 314, 314, 314 at 0, 316, 630, 944, 1258.
    check(1258, 3, false, &[((0, 316), (316, 630)), ((316, 630), (630, 944)), ((630, 944), (944, 1258))]);
    check(1258, 3, true, &[((0, 316), (316, 630)), ((0, 630), (630, 944)), ((0, 944), (944, 1258))]);
}

#[test]
fn seven_folds() {
    // 1258 / 8 = 157 remainder 2: the first segment has 159, then 157 each:
    // bounds 0, 159, 316, 473, 630, 787, 944, 1101, 1258.
    let b = [0, 159, 316, 473, 630, 787, 944, 1101, 1258];
    let rolling: Vec<_> = (0..7).map(|i| ((b[i], b[i + 1]), (b[i + 1], b[i + 2]))).collect();
    let anchored: Vec<_> = (0..7).map(|i| ((0, b[i + 1]), (b[i + 1], b[i + 2]))).collect();
    check(1258, 7, false, &rolling);
    check(1258, 7, true, &anchored);
    // Tests tile the range after the first segment, with no gap or overlap.
    let folds = segments(1258, 7, false, 1).unwrap();
    assert!(folds.windows(2).all(|w| w[0].test.end == w[1].test.start));
    assert_eq!(folds.iter().map(|f| f.test.len()).sum::<usize>(), 1258 - 159);
}

#[test]
fn too_few_folds_or_sessions_are_refused() {
    assert_eq!(segments(1258, 0, false, 1).unwrap_err(), Error::NoFolds(0));
    assert!(segments(1258, 7, false, 157).is_ok());
    let e = segments(1258, 7, true, 200).unwrap_err();
    assert_eq!(e, Error::SegmentTooShort { folds: 7, sessions: 1258, segments: 8, segment: 157, needed: 200 });
    assert_eq!(e.to_string(), "7 folds cut 1258 sessions into 8 segments of 157 sessions, fewer than the 200 needed");
    // Even with no minimum, a segment must not be empty.
    assert!(matches!(segments(3, 3, false, 0), Err(Error::SegmentTooShort { segment: 0, needed: 1, .. })));
}
