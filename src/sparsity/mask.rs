//! Exact top-k masks. In: a group's weights (several tensors) and `k`, the number of zeros.
//! Out: masks of `0.0`/`1.0` with exactly `k` zeros over the group.
//!
//! The cut is found by the radix select of [`crate::kernels::topk`]. Weights tied in `|w|` at
//! the cut survive in group order (earlier tensors, then earlier positions, first), so the count
//! is exact and the masks do not depend on the number of threads.

use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use crate::kernels::{keep_threshold, mask_by_threshold};

/// Zeros the `k` smallest-magnitude weights of the group, ones elsewhere.
pub fn magnitude_masks(weights: &[&[f32]], k: usize, masks: &mut [&mut [f32]]) {
    let n: usize = weights.iter().map(|w| w.len()).sum();
    let threshold = keep_threshold(weights, n - k.min(n));
    mask_by_threshold(weights, &threshold, masks);
}

/// Zeros `k` positions of the group drawn uniformly without replacement.
pub fn random_masks(k: usize, masks: &mut [&mut [f32]], rng: &mut ChaCha8Rng) {
    let n: usize = masks.iter().map(|m| m.len()).sum();
    masks.iter_mut().for_each(|m| m.fill(1.0));
    let mut idx = sample(rng, n, k.min(n)).into_vec();
    idx.sort_unstable();
    let (mut t, mut base) = (0, 0);
    for i in idx {
        while i >= base + masks[t].len() {
            base += masks[t].len();
            t += 1;
        }
        masks[t][i - base] = 0.0;
    }
}

/// Zeros the `k` lowest (signed) scores of the group, ones elsewhere; ties at the cut keep
/// earlier positions. A sort: for scores that may be negative (GraSP), found once per run.
pub fn score_masks(scores: &[&[f32]], k: usize, masks: &mut [&mut [f32]]) {
    let mut all: Vec<(f32, usize, usize)> =
        scores.iter().enumerate().flat_map(|(t, s)| s.iter().enumerate().map(move |(i, v)| (*v, t, i))).collect();
    // Lowest first; among equal scores the later position is pruned first.
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then((b.1, b.2).cmp(&(a.1, a.2))));
    masks.iter_mut().for_each(|m| m.fill(1.0));
    for &(_, t, i) in all.iter().take(k) {
        masks[t][i] = 0.0;
    }
}

/// Zeros in a mask (or weights).
pub fn count_zeros(v: &[f32]) -> usize {
    v.iter().filter(|x| **x == 0.0).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    proptest! {
        #[test]
        fn magnitude_masks_are_exact_and_keep_the_largest(
            a in prop::collection::vec(-3.0f32..3.0, 0..40),
            b in prop::collection::vec(prop::sample::select(vec![0.0f32, 0.5, -0.5, 1.0]), 0..40),
            frac in 0.0f64..=1.0,
        ) {
            let n = a.len() + b.len();
            let k = crate::sparsity::zeros_for(frac, n);
            let (mut ma, mut mb) = (vec![9.0; a.len()], vec![9.0; b.len()]);
            magnitude_masks(&[&a, &b], k, &mut [&mut ma, &mut mb]);
            prop_assert_eq!(count_zeros(&ma) + count_zeros(&mb), k);
            let kept = a.iter().zip(&ma).chain(b.iter().zip(&mb));
            let min_kept = kept.clone().filter(|(_, m)| **m == 1.0).map(|(w, _)| w.abs()).fold(f32::INFINITY, f32::min);
            let max_cut = kept.filter(|(_, m)| **m == 0.0).map(|(w, _)| w.abs()).fold(0.0, f32::max);
            prop_assert!(max_cut <= min_kept);
        }
    }

    #[test]
    fn ties_at_the_cut_keep_earlier_positions() {
        let w = [1.0, -1.0, 1.0, 2.0];
        let mut m = [0.0; 4];
        magnitude_masks(&[&w], 2, &mut [&mut m]);
        assert_eq!(m, [1.0, 0.0, 0.0, 1.0]);
        let (a, b) = ([0.0, 3.0], [-0.0, 0.0, 1.0]);
        let (mut ma, mut mb) = ([9.0; 2], [9.0; 3]);
        magnitude_masks(&[&a, &b], 2, &mut [&mut ma, &mut mb]);
        assert_eq!((ma, mb), ([1.0, 1.0], [0.0, 0.0, 1.0]));
    }

    #[test]
    fn score_masks_prune_the_lowest_signed_scores() {
        let (a, b) = ([0.5, -2.0, 3.0], [-0.1, 0.5, 7.0]);
        let (mut ma, mut mb) = ([9.0; 3], [9.0; 3]);
        score_masks(&[&a, &b], 3, &mut [&mut ma, &mut mb]);
        // -2.0, -0.1 and the later of the two 0.5s go.
        assert_eq!((ma, mb), ([1.0, 0.0, 1.0], [0.0, 0.0, 1.0]));
    }

    #[test]
    fn random_masks_are_exact_and_seeded() {
        let run = |seed| {
            let (mut a, mut b) = (vec![0.0; 7], vec![0.0; 13]);
            random_masks(9, &mut [&mut a, &mut b], &mut ChaCha8Rng::seed_from_u64(seed));
            (a, b)
        };
        let (a, b) = run(3);
        assert_eq!(count_zeros(&a) + count_zeros(&b), 9);
        assert_eq!(run(3), (a, b));
    }
}
