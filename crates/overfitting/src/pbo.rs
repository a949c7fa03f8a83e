//! The probability of backtest overfitting by combinatorially symmetric cross-validation
//! (Bailey, Borwein, López de Prado & Zhu), design-notes section 9.
//!
//! How it is fast. The C(S, S/2) splits are never recomputed from rows. Each (block, trial)
//! is reduced once to its mean and M2 (sum of squared deviations); a set of blocks is their
//! combination by Chan's pairwise update, folded in ascending block order. Two facts cut the
//! work further:
//! - In lexicographic order of block sets, the complement of set i is set C−1−i, so the sets
//!   that contain block 0 (the first C/2) pair up with the rest: one pass over those C/2
//!   pairs yields both splits of each pair (in-sample c / out-of-sample c̄ and the reverse)
//!   from the same two sharpe vectors.
//! - Successive sets share a prefix; the partial combinations are kept per depth and only the
//!   changed suffix is folded again. This is a cache, not a different sum: the moments of a
//!   set are always "fold its blocks in ascending order", whatever set came before.
//!
//! Exactness and ties. Every sharpe, in-sample and out-of-sample, comes from the same block
//! moments by the same fold, so equal data give bit-equal sharpes (identical trials tie
//! exactly) and the tie rules (lowest id for n*, the half count in r) are deterministic. These
//! sharpes equal the row-by-row definition up to rounding (Chan's update is numerically
//! stable); a difference could only flip a comparison between two trials whose sharpes agree
//! to about 1e-15. A constant block has its value as mean and M2 = 0 exactly, so a set of
//! blocks whose rows are all equal (a strategy that stayed out of the market) has sharpe
//! exactly 0, as the contract's "0 when std = 0" asks.

use crate::{Error, ReturnMatrix, TrialMoments};

/// The default number of CSCV blocks S.
pub const DEFAULT_CSCV_BLOCKS: usize = 16;

/// The largest S accepted: C(24, 12) = 2,704,156 splits. Beyond it the number of splits
/// (C(26, 13) ≈ 10.4M, growing about 4× per step of 2) would make the cost unbounded.
pub const MAX_CSCV_BLOCKS: usize = 24;

/// The result of CSCV.
#[derive(Clone, Debug, PartialEq)]
pub struct Pbo {
    /// #{λ ≤ 0} / C(S, S/2).
    pub pbo: f64,
    /// λ of every split, in lexicographic order of the in-sample block sets (split 0 is
    /// blocks 0..S/2 in-sample). For histograms in reports.
    pub logits: Vec<f64>,
    /// The first T mod S rows, left out so that the S blocks are equal.
    pub dropped_rows: usize,
    /// Rows per block, ⌊T / S⌋.
    pub block_rows: usize,
}

/// Checks S: even, at least 4 and at most [`MAX_CSCV_BLOCKS`].
pub fn check_blocks(blocks: usize) -> Result<(), Error> {
    if blocks < 4 || !blocks.is_multiple_of(2) || blocks > MAX_CSCV_BLOCKS {
        return Err(Error::InvalidBlocks { got: blocks });
    }
    Ok(())
}

/// C(S, S/2), the number of splits. S must pass [`check_blocks`].
pub fn splits(blocks: usize) -> usize {
    let h = blocks / 2;
    // C(n, k) = prod_{i=1..k} (n-k+i)/i, exact at every step in integers.
    (1..=h).fold(1usize, |c, i| c * (blocks - h + i) / i)
}

/// PBO by CSCV over the trials of `m` with S = `blocks`, exactly as design-notes section 9
/// states it:
///
/// - drop the first (T mod S) rows and cut the rest into S equal contiguous blocks;
/// - for each set c of S/2 blocks: R_m, R̄_m = trial m's per-period sharpe on the rows of c
///   (in-sample) and of the rest (out-of-sample); n* = argmax R (the lowest id on a tie);
///   r = 1 + #{m: R̄_m < R̄_n*} + #{m ≠ n*: R̄_m = R̄_n*}/2; ω = r/(N+1); λ = ln(ω/(1−ω));
/// - pbo = #{λ ≤ 0} / C(S, S/2).
///
/// Needs a valid S ([`Error::InvalidBlocks`]), N ≥ 2 ([`Error::TooFewTrials`]) and T ≥ 2·S,
/// so that every block has at least 2 rows ([`Error::TooFewReturns`]).
pub fn pbo(m: &ReturnMatrix, blocks: usize) -> Result<Pbo, Error> {
    pbo_on_threads(m, blocks, None)
}

/// [`pbo()`] on exactly `threads` threads (`None`: one for small problems, else the machine's
/// parallelism). The result is the same at every thread count; tests hold it to that.
#[doc(hidden)]
pub fn pbo_on_threads(m: &ReturnMatrix, blocks: usize, threads: Option<usize>) -> Result<Pbo, Error> {
    check_blocks(blocks)?;
    pbo_from_moments(&TrialMoments::of_matrix(m, blocks)?, blocks, threads)
}

/// [`pbo()`] from each trial's [`TrialMoments`] (all of the same T, built for S = `blocks`),
/// on `threads` threads as [`pbo_on_threads`]: the same bits as from the series.
pub fn pbo_from_moments(trials: &[TrialMoments], blocks: usize, threads: Option<usize>) -> Result<Pbo, Error> {
    check_blocks(blocks)?;
    let n = trials.len();
    if n < 2 {
        return Err(Error::TooFewTrials(n));
    }
    let t = trials[0].returns;
    if let Some((trial, m)) = trials.iter().enumerate().find(|(_, m)| m.returns != t) {
        return Err(Error::RaggedReturns { trial, got: m.returns, expected: t });
    }
    if let Some((trial, m)) = trials.iter().enumerate().find(|(_, m)| m.blocks() != blocks) {
        return Err(Error::InvalidMoments { trial, blocks: m.blocks(), expected: blocks });
    }
    if t < 2 * blocks {
        return Err(Error::TooFewReturns { got: t, needed: 2 * blocks, why: "cscv needs 2 per block" });
    }
    let (rows, dropped) = (t / blocks, t % blocks);

    // Block-major moments: [b * n + trial], so the per-split loops run over contiguous trials.
    let mut mean = vec![0.0; blocks * n];
    let mut m2 = vec![0.0; blocks * n];
    for (trial, tm) in trials.iter().enumerate() {
        for b in 0..blocks {
            mean[b * n + trial] = tm.block_mean[b];
            m2[b * n + trial] = tm.block_m2[b];
        }
    }
    let moments = BlockMoments { trials: n, rows, mean, m2 };

    let total = splits(blocks);
    let mut logits = vec![0.0; total];
    // Pair i (the i-th set containing block 0, and its complement) fills logits[i] and
    // logits[total − 1 − i]. Contiguous ranges of pairs go to scoped threads, each with its own
    // folds, writing disjoint slots: the same logits at any thread count.
    let pairs = total / 2;
    let threads = threads.unwrap_or_else(|| workers_for(pairs, n)).clamp(1, pairs.max(1));
    let per = pairs.div_ceil(threads);
    let chunks = pairs.div_ceil(per);
    let (front, back) = logits.split_at_mut(pairs);
    let moments = &moments;
    std::thread::scope(|scope| {
        for (k, (front, back)) in front.chunks_mut(per).zip(back.rchunks_mut(per)).enumerate() {
            if k + 1 < chunks {
                scope.spawn(move || split_pairs(moments, blocks, k * per, front, back));
            } else {
                // The last range on this thread, which would otherwise only wait.
                split_pairs(moments, blocks, k * per, front, back);
            }
        }
    });
    let overfit = logits.iter().filter(|&&l| l <= 0.0).count();
    Ok(Pbo { pbo: overfit as f64 / total as f64, logits, dropped_rows: dropped, block_rows: rows })
}

/// Trial-pairs (pairs × trials) below which PBO runs on the calling thread alone.
const SERIAL_WORK: usize = 1 << 20;

/// How many threads share `pairs` split pairs of `trials` trials: one for small problems, else
/// the machine's parallelism.
fn workers_for(pairs: usize, trials: usize) -> usize {
    if pairs.saturating_mul(trials) < SERIAL_WORK {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, pairs.max(1))
}

/// The logits of the pairs `first..first + front.len()`: pair `first + j` writes `front[j]`
/// (in-sample = its set) and `back[front.len() − 1 − j]` (in-sample = the complement).
fn split_pairs(moments: &BlockMoments, blocks: usize, first: usize, front: &mut [f64], back: &mut [f64]) {
    let (h, n) = (blocks / 2, moments.trials);
    let count = h * moments.rows;
    let mut c: Vec<usize> = (0..h).collect();
    for _ in 0..first {
        next_combination(&mut c, blocks);
    }
    let (mut fold_in, mut fold_out) = (Fold::new(h, n), Fold::new(h, n));
    let (mut sr_in, mut sr_out) = (vec![0.0; n], vec![0.0; n]);
    let mut complement = vec![0; h];
    let len = front.len();
    for j in 0..len {
        fill_complement(&c, blocks, &mut complement);
        fold_in.set(&c, moments);
        fold_out.set(&complement, moments);
        fold_in.sharpes(count, &mut sr_in);
        fold_out.sharpes(count, &mut sr_out);
        front[j] = logit(&sr_in, &sr_out);
        back[len - 1 - j] = logit(&sr_out, &sr_in);
        next_combination(&mut c, blocks);
    }
}

/// λ of one split from the in-sample and out-of-sample sharpes.
fn logit(is: &[f64], oos: &[f64]) -> f64 {
    let (mut best, mut best_sharpe) = (0, is[0]);
    for (m, &r) in is.iter().enumerate() {
        if r > best_sharpe {
            (best, best_sharpe) = (m, r);
        }
    }
    let target = oos[best];
    let (mut below, mut equal) = (0u32, 0u32);
    for &r in oos {
        below += u32::from(r < target);
        equal += u32::from(r == target);
    }
    // `equal` counts n* itself.
    let rank = 1.0 + below as f64 + (equal - 1) as f64 / 2.0;
    let omega = rank / (is.len() + 1) as f64;
    (omega / (1.0 - omega)).ln()
}

/// Per-(block, trial) mean and M2, block-major.
struct BlockMoments {
    trials: usize,
    rows: usize,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl BlockMoments {
    fn block(&self, b: usize) -> (&[f64], &[f64]) {
        let r = b * self.trials..(b + 1) * self.trials;
        (&self.mean[r.clone()], &self.m2[r])
    }
}

/// Partial combinations of a set of blocks, one level per depth: level d holds the moments
/// of the set's first d + 1 blocks.
struct Fold {
    current: Vec<usize>,
    mean: Vec<Vec<f64>>,
    m2: Vec<Vec<f64>>,
}

impl Fold {
    fn new(depth: usize, trials: usize) -> Fold {
        Fold { current: Vec::new(), mean: vec![vec![0.0; trials]; depth], m2: vec![vec![0.0; trials]; depth] }
    }

    /// Makes the top level the moments of `set` (ascending block ids).
    fn set(&mut self, set: &[usize], bm: &BlockMoments) {
        let same = self.current.iter().zip(set).take_while(|(a, b)| a == b).count();
        let rows = bm.rows as f64;
        for d in same..set.len() {
            let (b_mean, b_m2) = bm.block(set[d]);
            if d == 0 {
                self.mean[0].copy_from_slice(b_mean);
                self.m2[0].copy_from_slice(b_m2);
                continue;
            }
            // Chan et al.: merging n_a = d·L rows with n_b = L rows,
            // mean = mean_a + δ·n_b/(n_a+n_b), M2 = M2_a + M2_b + δ²·n_a·n_b/(n_a+n_b).
            let w_mean = 1.0 / (d + 1) as f64;
            let w_m2 = rows * d as f64 / (d + 1) as f64;
            let (lo_mean, hi_mean) = self.mean.split_at_mut(d);
            let (lo_m2, hi_m2) = self.m2.split_at_mut(d);
            let a = lo_mean[d - 1].iter().zip(&lo_m2[d - 1]);
            let b = b_mean.iter().zip(b_m2);
            let out = hi_mean[0].iter_mut().zip(hi_m2[0].iter_mut());
            for ((out_mean, out_m2), ((&a_mean, &a_m2), (&b_mean, &b_m2))) in out.zip(a.zip(b)) {
                let delta = b_mean - a_mean;
                *out_mean = a_mean + delta * w_mean;
                *out_m2 = a_m2 + b_m2 + delta * delta * w_m2;
            }
        }
        self.current.clear();
        self.current.extend_from_slice(set);
    }

    /// The per-trial sharpes of the current set of `count` rows.
    fn sharpes(&self, count: usize, out: &mut [f64]) {
        let (mean, m2) = (self.mean.last().expect("depth ≥ 2"), self.m2.last().expect("depth ≥ 2"));
        let dof = (count - 1) as f64;
        for ((o, &mu), &ss) in out.iter_mut().zip(mean).zip(m2) {
            // `sharpe_of_moments`, written branch-free so that it vectorises: the quotient of
            // a zero M2 (inf or NaN) is computed and then replaced by 0.
            let s = mu / (ss / dof).sqrt();
            *o = if ss == 0.0 { 0.0 } else { s };
        }
    }
}

/// The blocks of 0..blocks not in `c` (ascending).
fn fill_complement(c: &[usize], blocks: usize, out: &mut [usize]) {
    for (slot, b) in out.iter_mut().zip((0..blocks).filter(|b| !c.contains(b))) {
        *slot = b;
    }
}

/// The next set of |c| blocks out of `blocks` in lexicographic order (wraps past the last).
fn next_combination(c: &mut [usize], blocks: usize) {
    let h = c.len();
    if let Some(i) = (0..h).rev().find(|&i| c[i] < blocks - h + i) {
        c[i] += 1;
        for j in i + 1..h {
            c[j] = c[j - 1] + 1;
        }
    }
}
