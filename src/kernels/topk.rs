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

/// Inputs up to this size are selected by `select_nth_unstable` on a copy of the keys instead,
/// which is faster below ~50,000 elements (the radix select's fixed cost is zeroing and
/// scanning its histograms).
const SMALL: usize = 1 << 16;
/// Fewest elements per counting task: each task zeroes and merges its own 65,536-bucket
/// histogram, which costs about as much as counting this many elements. There is one task per
/// thread at most: four per thread (for balance when a core is busy) cost 3x at LeNet-300's
/// 266,200 weights on one thread, where each extra histogram took ~0.1 ms of page faults.
const MIN_TASK: usize = 1 << 16;
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
    if u32::try_from(n).is_ok() {
        Some(radix_select::<u32>(slices, k))
    } else {
        Some(radix_select::<usize>(slices, k))
    }
}

/// A histogram counter: `u32` (half the cache footprint of `usize`) unless there are 2^32
/// elements or more.
trait Count: Copy + Default + Send + Sync + AddAssign + From<u8> {
    fn get(self) -> usize;
}

impl Count for u32 {
    fn get(self) -> usize {
        self as usize
    }
}

impl Count for usize {
    fn get(self) -> usize {
        self
    }
}

/// The two passes described in the module docs; `k` is in `1..=n`.
fn radix_select<C: Count>(slices: &[&[f32]], k: usize) -> (u32, usize) {
    let high = histogram::<C>(slices, 1 << (31 - HIGH_BITS), |key| Some(key >> HIGH_BITS));
    let (bucket, rank, above_bucket) = pick(&high, k);
    let low = histogram::<C>(slices, 1 << HIGH_BITS, |key| {
        (key >> HIGH_BITS == bucket).then_some(key & ((1 << HIGH_BITS) - 1))
    });
    let (low_key, _, above_in_bucket) = pick(&low, rank);
    ((bucket << HIGH_BITS) | low_key, above_bucket + above_in_bucket)
}

/// Counts `bucket_of(key)` over all elements, split over the current rayon pool when there
/// are enough elements for the tasks' own histograms to pay off.
fn histogram<C: Count>(slices: &[&[f32]], buckets: usize, bucket_of: impl Fn(u32) -> Option<u32> + Sync) -> Vec<C> {
    let count = |run: &[&[f32]]| {
        let mut hist = vec![C::default(); buckets];
        for piece in run {
            for x in piece.iter() {
                if let Some(b) = bucket_of(key(*x)) {
                    hist[b as usize] += C::from(1);
                }
            }
        }
        hist
    };
    let n: usize = slices.iter().map(|s| s.len()).sum();
    let tasks = rayon::current_num_threads().min(n / MIN_TASK).max(1);
    if tasks == 1 {
        return count(slices);
    }
    let merge = |mut a: Vec<C>, b: Vec<C>| {
        a.iter_mut().zip(&b).for_each(|(a, b)| *a += *b);
        a
    };
    let runs = split(slices, n.div_ceil(tasks));
    runs.par_iter().map(|run| count(run)).reduce_with(merge).unwrap_or_else(|| vec![C::default(); buckets])
}

/// Cuts the concatenation of `slices` into runs of `len` elements (the last one shorter), each
/// a list of pieces of the slices, so that every task counts about as many elements.
fn split<'a>(slices: &[&'a [f32]], len: usize) -> Vec<Vec<&'a [f32]>> {
    let mut runs = vec![Vec::new()];
    let mut room = len.max(1);
    for slice in slices {
        let mut rest = *slice;
        while !rest.is_empty() {
            if room == 0 {
                runs.push(Vec::new());
                room = len.max(1);
            }
            let (piece, tail) = rest.split_at(room.min(rest.len()));
            runs.last_mut().into_iter().for_each(|run| run.push(piece));
            room -= piece.len();
            rest = tail;
        }
    }
    runs
}

/// The bucket holding the k-th largest element, its rank inside the bucket (1-based, from the
/// top), and the number of elements in higher buckets. `k` is at most the histogram's total.
fn pick<C: Count>(hist: &[C], k: usize) -> (u32, usize, usize) {
    let mut above = 0;
    for (bucket, count) in hist.iter().map(|c| c.get()).enumerate().rev() {
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
    keep_threshold(slices, n - zeros)
}

/// The threshold that keeps exactly `keep` of the weights (all of them if `keep` is larger).
pub fn keep_threshold(slices: &[&[f32]], keep: usize) -> Threshold {
    let n: usize = slices.iter().map(|s| s.len()).sum();
    let keep = keep.min(n);
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
    fn split_cuts_across_slices_into_equal_runs() {
        let (a, b, c) = ([1.0; 5], [2.0; 0], [3.0; 4]);
        let runs = split(&[&a, &b, &c], 4);
        let lens: Vec<Vec<usize>> = runs.iter().map(|r| r.iter().map(|p| p.len()).collect()).collect();
        assert_eq!(lens, vec![vec![4], vec![1, 3], vec![1]]);
        assert_eq!(split(&[], 4).len(), 1);
    }

    #[test]
    fn pick_counts_from_the_top() {
        let hist = [2usize, 0, 3, 1];
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
