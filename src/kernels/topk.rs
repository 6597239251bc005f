//! Exact top-k magnitude threshold. In: one slice (a per-layer quantile) or many (a global
//! one) and a rank or a target sparsity. Out: the k-th largest `|w|`, or a [`Threshold`] that
//! keeps exactly the requested number of weights, ties included.
//!
//! Method: keys `w.to_bits() & 0x7fff_ffff` order like `|w|`; a two-pass radix select
//! counts the high 16 bits of every key into 65,536 buckets, then the low 15 bits of the keys
//! in the chosen bucket, with one histogram per rayon task merged at the end. Two reads of the
//! data, no copy, no sort.
//!
//! NaN: a NaN's key is above +inf's, so NaNs rank as the largest magnitudes (the order is
//! `f32::total_cmp` on `|w|`). A NaN weight is thus kept, not silently pruned; the engine is
//! expected to stop on NaN weights anyway. `-0.0` and `+0.0` are the same magnitude.

use std::ops::AddAssign;

use rayon::prelude::*;

/// Inputs up to this size are selected by `select_nth_unstable` on the keys instead.
const SMALL: usize = 1 << 14;
/// Elements per rayon task when counting.
const CHUNK: usize = 1 << 18;
const HIGH_BITS: u32 = 15;

fn key(x: f32) -> u32 {
    x.to_bits() & 0x7fff_ffff
}

/// The k-th largest `|w|` (k = 1 is the maximum) over all `slices`, as a non-negative `f32`
/// (NaN if it is a NaN). `None` if `k` is 0 or larger than the number of elements.
pub fn kth_largest_abs(slices: &[&[f32]], k: usize) -> Option<f32> {
    kth_largest_key(slices, k).map(|(key, _)| f32::from_bits(key))
}

/// The k-th largest key and the number of elements whose key is strictly larger.
fn kth_largest_key(slices: &[&[f32]], k: usize) -> Option<(u32, usize)> {
    let n: usize = slices.iter().map(|s| s.len()).sum();
    if k == 0 || k > n {
        return None;
    }
    if n <= SMALL {
        let mut keys: Vec<u32> = slices.iter().flat_map(|s| s.iter().map(|x| key(*x))).collect();
        let (_, kth, larger) = keys.select_nth_unstable(n - k);
        let kth = *kth;
        return Some((kth, larger.iter().filter(|k| **k > kth).count()));
    }
    let high = histogram(slices, 1 << (31 - HIGH_BITS), |key| Some(key >> HIGH_BITS));
    let (bucket, rank, above_bucket) = pick(&high, k);
    let low =
        histogram(slices, 1 << HIGH_BITS, |key| (key >> HIGH_BITS == bucket).then_some(key & ((1 << HIGH_BITS) - 1)));
    let (low_key, _, above_in_bucket) = pick(&low, rank);
    Some(((bucket << HIGH_BITS) | low_key, above_bucket + above_in_bucket))
}

/// Counts `bucket_of(key)` over all elements, in parallel. `u32` counters (half the cache
/// footprint of `usize`) unless there are 2^32 elements or more.
fn histogram(slices: &[&[f32]], buckets: usize, bucket_of: impl Fn(u32) -> Option<u32> + Sync) -> Vec<usize> {
    let n: usize = slices.iter().map(|s| s.len()).sum();
    if u32::try_from(n).is_ok() {
        let counts = histogram_with::<u32>(slices, buckets, bucket_of);
        counts.into_iter().map(|c| c as usize).collect()
    } else {
        histogram_with::<usize>(slices, buckets, bucket_of)
    }
}

fn histogram_with<C>(slices: &[&[f32]], buckets: usize, bucket_of: impl Fn(u32) -> Option<u32> + Sync) -> Vec<C>
where
    C: Copy + Default + Send + Sync + AddAssign + From<u8>,
{
    let pieces: Vec<&[f32]> = slices.iter().flat_map(|s| s.chunks(CHUNK)).collect();
    let count = |mut hist: Vec<C>, piece: &&[f32]| {
        for x in piece.iter() {
            if let Some(b) = bucket_of(key(*x)) {
                hist[b as usize] += C::from(1);
            }
        }
        hist
    };
    let merge = |mut a: Vec<C>, b: Vec<C>| {
        a.iter_mut().zip(&b).for_each(|(a, b)| *a += *b);
        a
    };
    let zeros = || vec![C::default(); buckets];
    pieces.par_iter().fold(zeros, count).reduce(zeros, merge)
}

/// The bucket holding the k-th largest element, its rank inside the bucket (1-based, from the
/// top), and the number of elements in higher buckets. `k` is at most the histogram's total.
fn pick(hist: &[usize], k: usize) -> (u32, usize, usize) {
    let mut above = 0;
    for (bucket, &count) in hist.iter().enumerate().rev() {
        if above + count >= k {
            return (bucket as u32, k - above, above);
        }
        above += count;
    }
    (0, k - above, above)
}

/// Which weights to keep so that exactly `keep` of them survive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// Keep every weight with `|w|` ordered above this magnitude (by key, see module docs)...
    pub magnitude: f32,
    /// ...and the first `keep_ties` weights whose `|w|` equals it, in slice order then index
    /// order, so the realised sparsity is exact even with ties (e.g. many zeros).
    pub keep_ties: usize,
    /// Total number of weights kept.
    pub keep: usize,
}

/// The threshold that zeroes `round(sparsity * n)` of the `n` weights (`sparsity` clamped to
/// `0..=1`). With nothing to keep, `magnitude` is the largest NaN key and `keep_ties` 0, so no
/// weight is above or kept at it.
pub fn sparsity_threshold(slices: &[&[f32]], sparsity: f64) -> Threshold {
    let n: usize = slices.iter().map(|s| s.len()).sum();
    let zeros = ((sparsity.clamp(0.0, 1.0) * n as f64).round() as usize).min(n);
    let keep = n - zeros;
    match kth_largest_key(slices, keep) {
        Some((key, above)) => Threshold { magnitude: f32::from_bits(key), keep_ties: keep - above, keep },
        None => Threshold { magnitude: f32::from_bits(0x7fff_ffff), keep_ties: 0, keep: 0 },
    }
}

/// Writes masks (1.0 keep, 0.0 drop) for `slices` by `threshold`; `masks[i]` must have the
/// length of `slices[i]` (extra elements of a longer mask are left alone). Keeps exactly
/// `threshold.keep` weights when `threshold` came from the same slices.
pub fn mask_by_threshold(slices: &[&[f32]], threshold: &Threshold, masks: &mut [&mut [f32]]) {
    let t = key(threshold.magnitude);
    let ties: Vec<usize> = slices.par_iter().map(|s| s.iter().filter(|x| key(**x) == t).count()).collect();
    // Hand out the tie budget in slice order, then fill each slice's mask in parallel.
    let mut budget = threshold.keep_ties;
    let budgets: Vec<usize> = ties
        .iter()
        .map(|&count| {
            let take = count.min(budget);
            budget -= take;
            take
        })
        .collect();
    slices.par_iter().zip(masks.par_iter_mut()).zip(budgets).for_each(|((s, mask), mut ties_left)| {
        for (x, m) in s.iter().zip(mask.iter_mut()) {
            let k = key(*x);
            let tie_kept = k == t && ties_left > 0;
            ties_left -= tie_kept as usize;
            *m = if k > t || tie_kept { 1.0 } else { 0.0 };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_counts_from_the_top() {
        let hist = [2, 0, 3, 1];
        assert_eq!(pick(&hist, 1), (3, 1, 0));
        assert_eq!(pick(&hist, 2), (2, 1, 1));
        assert_eq!(pick(&hist, 4), (2, 3, 1));
        assert_eq!(pick(&hist, 5), (0, 1, 4));
    }

    #[test]
    fn nan_ranks_above_infinity_and_zeros_are_equal() {
        let w = [f32::NEG_INFINITY, -f32::NAN, 0.0, -0.0, 1.0];
        assert!(kth_largest_abs(&[&w], 1).is_some_and(f32::is_nan));
        assert_eq!(kth_largest_abs(&[&w], 2), Some(f32::INFINITY));
        assert_eq!(kth_largest_abs(&[&w], 5), Some(0.0));
        let t = sparsity_threshold(&[&w], 0.2);
        assert_eq!((t.magnitude, t.keep_ties, t.keep), (0.0, 1, 4));
    }
}
