//! Walk-forward segmentation (design-notes section 9): K folds over K+1 segments.

use std::ops::Range;

use crate::Error;

/// One walk-forward fold, as session indices relative to the range's first session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fold {
    /// The sessions the search runs on.
    pub train: Range<usize>,
    /// The sessions the fold's best is tested on: the segment right after `train`.
    pub test: Range<usize>,
}

/// The K = `folds` folds of a range of `sessions` sessions.
///
/// The sessions are cut into K+1 consecutive segments of ⌊T/(K+1)⌋ sessions, and the
/// remainder T mod (K+1) goes to the first segment. Fold i = 0..K−1 trains on segment i
/// (rolling) or on segments 0..=i (`anchored`), and tests on segment i+1. For example
/// T = 1,258 and K = 3 give segments of 316, 314, 314 and 314 sessions.
///
/// Errors: K < 1 is [`Error::NoFolds`]; a segment shorter than `min_segment_sessions` (or
/// empty) is [`Error::SegmentTooShort`]. The caller passes the sessions its longest
/// indicator window needs.
pub fn segments(
    sessions: usize,
    folds: usize,
    anchored: bool,
    min_segment_sessions: usize,
) -> Result<Vec<Fold>, Error> {
    if folds < 1 {
        return Err(Error::NoFolds(folds));
    }
    let count = folds + 1;
    let (base, rem) = (sessions / count, sessions % count);
    let needed = min_segment_sessions.max(1);
    if base < needed {
        return Err(Error::SegmentTooShort { folds, sessions, segments: count, segment: base, needed });
    }
    // bounds[s]..bounds[s+1] is segment s.
    let bounds: Vec<usize> = (0..=count).map(|s| if s == 0 { 0 } else { rem + s * base }).collect();
    Ok((0..folds)
        .map(|i| Fold {
            train: if anchored { 0 } else { bounds[i] }..bounds[i + 1],
            test: bounds[i + 1]..bounds[i + 2],
        })
        .collect())
}
