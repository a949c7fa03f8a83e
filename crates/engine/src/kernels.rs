//! Vectorisable loops over f64 slices, compiled twice: for the baseline target and with
//! AVX, chosen at run time.
//!
//! Both versions give bit-identical results: they use only IEEE add, mul, div and min,
//! which round the same at any vector width, in the same fixed lane order (min and max are
//! written as compares, which are exact), and Rust never
//! contracts `a*b + c` into an FMA. AVX only lets each instruction do four lanes instead of
//! two, which matters most for the divisions.

#[cfg(test)]
thread_local! {
    /// Unit tests set this to run the baseline copies on an AVX machine.
    static FORCE_BASELINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether to take the AVX copies: the CPU has AVX (and, in unit tests, the baseline is not
/// forced).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn use_avx() -> bool {
    #[cfg(test)]
    if FORCE_BASELINE.with(|f| f.get()) {
        return false;
    }
    std::arch::is_x86_feature_detected!("avx")
}

/// Runs `$body` through an AVX-compiled copy when the CPU has AVX.
macro_rules! dispatch {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$m])*
        #[inline]
        pub(crate) fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn generic($($arg: $ty),*) -> $ret $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx")]
                fn avx($($arg: $ty),*) -> $ret {
                    generic($($arg),*)
                }
                if use_avx() {
                    // SAFETY: the CPU supports AVX, checked just above.
                    return unsafe { avx($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

dispatch! {
    /// `r_out[i] = equity[i] / equity[i-1] − 1`, with `prev` before `equity[0]`.
    fn returns_into(prev: f64, equity: &[f64], r_out: &mut [f64]) -> () {
        if let (Some(&first), Some(r0)) = (equity.first(), r_out.first_mut()) {
            *r0 = first / prev - 1.0;
        }
        for ((r, &e), &p) in r_out.iter_mut().skip(1).zip(&equity[1.min(equity.len())..]).zip(equity) {
            *r = e / p - 1.0;
        }
    }
}

/// Lanes per sum. Element `i` goes to lane `i mod LANES`; see [`combine`] for the order in
/// which lanes meet. Eight lanes are two AVX vectors, so the two add chains overlap.
pub(crate) const LANES: usize = 8;

/// Combines lane sums in a fixed tree order.
pub(crate) fn combine(l: [f64; LANES]) -> f64 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

dispatch! {
    /// Lane sums of `r` and of `min(r, 0)²`.
    fn sum_and_downside(returns: &[f64]) -> ([f64; LANES], [f64; LANES]) {
        let (mut sum, mut down) = ([0.0_f64; LANES], [0.0_f64; LANES]);
        let mut blocks = returns.chunks_exact(LANES);
        for q in &mut blocks {
            for j in 0..LANES {
                sum[j] += q[j];
                let neg = if q[j] < 0.0 { q[j] } else { 0.0 };
                down[j] += neg * neg;
            }
        }
        for (j, &r) in blocks.remainder().iter().enumerate() {
            sum[j] += r;
            let neg = if r < 0.0 { r } else { 0.0 };
            down[j] += neg * neg;
        }
        (sum, down)
    }
}

dispatch! {
    /// Lane sums of `(r − mean)²`.
    fn squared_deviations(returns: &[f64], mean: f64) -> [f64; LANES] {
        let mut ss = [0.0_f64; LANES];
        let mut blocks = returns.chunks_exact(LANES);
        for q in &mut blocks {
            for j in 0..LANES {
                let d = q[j] - mean;
                ss[j] += d * d;
            }
        }
        for (j, &r) in blocks.remainder().iter().enumerate() {
            ss[j] += (r - mean) * (r - mean);
        }
        ss
    }
}

dispatch! {
    /// Advances the drawdown state `(peak, trough, min_ratio)` over `equity` (see
    /// `metrics`): blocks of 8 bars that set no new peak reduce with a min tree.
    fn drawdown(equity: &[f64], peak: f64, trough: f64, min_ratio: f64) -> (f64, f64, f64) {
        #[inline(always)]
        fn min2(a: f64, b: f64) -> f64 {
            if a < b { a } else { b }
        }
        #[inline(always)]
        fn max2(a: f64, b: f64) -> f64 {
            if a > b { a } else { b }
        }
        let (mut peak, mut trough, mut min_ratio) = (peak, trough, min_ratio);
        let mut serial = |block: &[f64], peak: &mut f64, trough: &mut f64| {
            for &e in block {
                if e > *peak {
                    min_ratio = min2(min_ratio, *trough / *peak);
                    *peak = e;
                    *trough = e;
                } else {
                    *trough = min2(*trough, e);
                }
            }
        };
        let mut blocks = equity.chunks_exact(8);
        for b in &mut blocks {
            let hi = max2(max2(max2(b[0], b[1]), max2(b[2], b[3])), max2(max2(b[4], b[5]), max2(b[6], b[7])));
            if hi > peak {
                serial(b, &mut peak, &mut trough);
            } else {
                let lo = min2(min2(min2(b[0], b[1]), min2(b[2], b[3])), min2(min2(b[4], b[5]), min2(b[6], b[7])));
                trough = min2(trough, lo);
            }
        }
        serial(blocks.remainder(), &mut peak, &mut trough);
        (peak, trough, min_ratio)
    }
}

/// MA-crossover decisions as bitmasks, bit `i` of word `i / 64` for bar `i`:
/// `to_long` where `s > l·kup`, `to_flat` where `s < l·kdn` and not `to_long`.
///
/// The AVX version uses explicit intrinsics (four compares and a `movemask` per four bars);
/// comparisons are exact, so both versions give the same bits.
pub(crate) fn crossover_masks(s: &[f64], l: &[f64], kup: f64, kdn: f64, to_long: &mut [u64], to_flat: &mut [u64]) {
    assert!(s.len() == l.len() && to_long.len() * 64 >= s.len() && to_flat.len() * 64 >= s.len());
    #[cfg(target_arch = "x86_64")]
    if use_avx() {
        // SAFETY: the CPU supports AVX, checked just above.
        unsafe { crossover_masks_avx(s, l, kup, kdn, to_long, to_flat) };
        return;
    }
    crossover_masks_scalar(0, s, l, kup, kdn, to_long, to_flat);
}

/// Scalar masks for bars `from..`, OR-ed into zeroed or partly filled words.
fn crossover_masks_scalar(
    from: usize,
    s: &[f64],
    l: &[f64],
    kup: f64,
    kdn: f64,
    to_long: &mut [u64],
    to_flat: &mut [u64],
) {
    if from.is_multiple_of(64) {
        let words = s.len().div_ceil(64);
        to_long[from / 64..words].fill(0);
        to_flat[from / 64..words].fill(0);
    }
    for i in from..s.len() {
        // Two strict comparisons, not `>=`: inside the band the target holds.
        let up = s[i] > l[i] * kup;
        let down = s[i] < l[i] * kdn;
        to_long[i / 64] |= (up as u64) << (i % 64);
        to_flat[i / 64] |= ((down & !up) as u64) << (i % 64);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn crossover_masks_avx(s: &[f64], l: &[f64], kup: f64, kdn: f64, to_long: &mut [u64], to_flat: &mut [u64]) {
    use std::arch::x86_64::{
        _CMP_GT_OQ, _CMP_LT_OQ, _mm256_andnot_pd, _mm256_cmp_pd, _mm256_loadu_pd, _mm256_movemask_pd, _mm256_mul_pd,
        _mm256_set1_pd,
    };
    let (vkup, vkdn) = (_mm256_set1_pd(kup), _mm256_set1_pd(kdn));
    let quads = s.len() / 4;
    let (mut up_word, mut flat_word) = (0_u64, 0_u64);
    for g in 0..quads {
        let (sq, lq) = (&s[4 * g..4 * g + 4], &l[4 * g..4 * g + 4]);
        // SAFETY: `sq` and `lq` hold exactly four f64 each; loadu has no alignment needs.
        let (vs, vl) = unsafe { (_mm256_loadu_pd(sq.as_ptr()), _mm256_loadu_pd(lq.as_ptr())) };
        // Ordered quiet compares: false on NaN, exactly like `>` and `<` on f64.
        let up = _mm256_cmp_pd::<_CMP_GT_OQ>(vs, _mm256_mul_pd(vl, vkup));
        let down = _mm256_cmp_pd::<_CMP_LT_OQ>(vs, _mm256_mul_pd(vl, vkdn));
        let shift = (g % 16) * 4;
        up_word |= (_mm256_movemask_pd(up) as u64) << shift;
        flat_word |= (_mm256_movemask_pd(_mm256_andnot_pd(up, down)) as u64) << shift;
        if g % 16 == 15 {
            (to_long[g / 16], to_flat[g / 16]) = (up_word, flat_word);
            (up_word, flat_word) = (0, 0);
        }
    }
    let done = quads * 4;
    if !done.is_multiple_of(64) {
        (to_long[done / 64], to_flat[done / 64]) = (up_word, flat_word);
    }
    crossover_masks_scalar(done, s, l, kup, kdn, to_long, to_flat);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(mut x: u64) -> impl FnMut() -> f64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn baseline<T>(f: impl FnOnce() -> T) -> T {
        FORCE_BASELINE.with(|b| b.set(true));
        let out = f();
        FORCE_BASELINE.with(|b| b.set(false));
        out
    }

    fn bits(x: &[f64]) -> Vec<u64> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// Every dispatched loop gives the same bits on the baseline and the AVX path.
    #[test]
    fn baseline_and_avx_paths_agree_to_the_bit() {
        let mut rnd = xorshift(0x9e37_79b9_7f4a_7c15);
        for len in [1_usize, 2, 5, 8, 63, 64, 65, 1000, 2049] {
            let eq: Vec<f64> = (0..len).map(|_| 0.5 + rnd()).collect();
            let (mut ra, mut rb) = (vec![0.0; len], vec![0.0; len]);
            returns_into(1.0, &eq, &mut ra);
            baseline(|| returns_into(1.0, &eq, &mut rb));
            assert_eq!(bits(&ra), bits(&rb), "returns, len {len}");
            let (sa, da) = sum_and_downside(&ra);
            let (sb, db) = baseline(|| sum_and_downside(&ra));
            assert_eq!((bits(&sa), bits(&da)), (bits(&sb), bits(&db)), "sums, len {len}");
            let qa = squared_deviations(&ra, 0.01);
            let qb = baseline(|| squared_deviations(&ra, 0.01));
            assert_eq!(bits(&qa), bits(&qb), "squares, len {len}");
            let wa = drawdown(&eq, 1.0, f64::INFINITY, 1.0);
            let wb = baseline(|| drawdown(&eq, 1.0, f64::INFINITY, 1.0));
            assert_eq!(bits(&[wa.0, wa.1, wa.2]), bits(&[wb.0, wb.1, wb.2]), "drawdown, len {len}");
            let s: Vec<f64> = (0..len).map(|_| 100.0 + rnd()).collect();
            let l: Vec<f64> = (0..len).map(|_| 100.0 + rnd()).collect();
            let words = len.div_ceil(64);
            let (mut a1, mut a2, mut b1, mut b2) = (vec![0; words], vec![0; words], vec![0; words], vec![0; words]);
            crossover_masks(&s, &l, 1.002, 0.998, &mut a1, &mut a2);
            baseline(|| crossover_masks(&s, &l, 1.002, 0.998, &mut b1, &mut b2));
            assert_eq!((a1, a2), (b1, b2), "masks, len {len}");
        }
    }

    /// The intrinsics path must give exactly the scalar bits, NaN and ties included.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx_masks_equal_scalar_masks() {
        if !std::arch::is_x86_feature_detected!("avx") {
            return;
        }
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for len in [0_usize, 1, 3, 4, 63, 64, 65, 130, 2048] {
            let s: Vec<f64> = (0..len).map(|_| 100.0 + (next() % 7) as f64).collect();
            let mut l: Vec<f64> = (0..len).map(|_| 100.0 + (next() % 7) as f64).collect();
            if len > 2 {
                l[1] = f64::NAN;
            }
            for (kup, kdn) in [(1.0, 1.0), (1.01, 0.99)] {
                let words = len.div_ceil(64).max(1);
                let (mut a1, mut a2) = (vec![!0; words], vec![!0; words]);
                let (mut b1, mut b2) = (vec![!0; words], vec![!0; words]);
                crossover_masks_scalar(0, &s, &l, kup, kdn, &mut a1, &mut a2);
                // SAFETY: AVX support checked above.
                unsafe { crossover_masks_avx(&s, &l, kup, kdn, &mut b1, &mut b2) };
                let used = len.div_ceil(64);
                assert_eq!((&a1[..used], &a2[..used]), (&b1[..used], &b2[..used]), "len {len}");
            }
        }
    }
}
