//! ST-3 soft thresholding. In: the magnitudes of a group's weights, the number of zeros
//! wanted. Out: the threshold `tau` and, with `rescale`, one scale per output channel.
//!
//! `soft_threshold(w, tau) = sign(w) * max(|w| - tau, 0)`; choosing `tau` as the k-th smallest
//! `|w * mask|` zeros exactly those `k` weights (plus any exact ties at `tau`: a soft threshold
//! cannot keep a weight equal to it).

use rayon::prelude::*;

use crate::kernels::kth_largest_abs;

/// Fewest weights per rayon task in [`rescale_rows`].
const ROWS_PER_TASK: usize = 1 << 14;

/// The k-th smallest `|v|` over `slices` (an exact radix select); 0 when `k == 0`, which leaves
/// every weight unshrunk, and the largest when `k` exceeds the count. The engine passes the
/// raw weights, or `raw * mask * scale` when masks or ST-3-sigma's per-layer scale apply.
pub fn kth_smallest_abs(slices: &[&[f32]], k: usize) -> f32 {
    let n: usize = slices.iter().map(|s| s.len()).sum();
    if k == 0 || n == 0 {
        return 0.0;
    }
    kth_largest_abs(slices, n - k.min(n) + 1).unwrap_or(0.0)
}

/// The largest `t` with `t * scale <= tau` in `f32` arithmetic: `tau / scale` give or take an
/// ulp, chosen so that `|w| <= t` exactly when `|w| * scale <= tau`. ST-3-sigma takes its
/// quantile `tau` over `|w| * scale` and thresholds each layer's raw weights at `t`; plain
/// `tau / scale` would miss the weight at the quantile about one step in ten. `scale` > 0;
/// with `scale == 1` this is `tau`.
pub fn unscaled_threshold(tau: f32, scale: f32) -> f32 {
    let mut t = tau / scale;
    if !t.is_finite() {
        return t;
    }
    // `t * scale` rounds monotonically in `t`, so one or two ulps of search suffice.
    while t * scale > tau {
        t = t.next_down();
    }
    while t.next_up() * scale <= tau {
        t = t.next_up();
    }
    t
}

/// Scalar reference of the prelude kernel `soft_threshold` (the engine runs the JIT kernel).
pub fn soft_threshold(w: f32, tau: f32) -> f32 {
    let a = (w.abs() - tau).max(0.0);
    if w < 0.0 {
        -a
    } else {
        a
    }
}

/// Per-output-channel rescale, following vanderschuea/stthree (`PrunedLayer.get_scale`):
/// with `r` the fraction of the row's L1 mass `sum |raw|` that survives the threshold (kept:
/// `mask != 0` and `|raw| > tau`), `scale = 1.01 / (r + 0.01)` (each mean offset by 1e-6), so
/// a row that keeps all its mass is unscaled and a heavily pruned row is boosted towards its
/// dense norm, capped at 101x. Rows are `cols` long; the scale is a constant in the backward
/// pass (the gradient goes straight through).
pub fn rescale_rows(raw: &[f32], mask: &[f32], tau: f32, cols: usize, scale: &mut [f32]) {
    // Rows in parallel, each summed in order in one pass: the same sums as two sequential
    // passes, bit for bit, whatever the number of threads.
    let rows = raw.par_chunks(cols.max(1)).zip(mask.par_chunks(cols.max(1))).zip(scale.par_iter_mut());
    rows.with_min_len(ROWS_PER_TASK.div_ceil(cols.max(1))).for_each(|((row, mrow), s)| {
        let (mut total, mut kept) = (0.0f32, 0.0f32);
        for (w, m) in row.iter().zip(mrow) {
            let a = w.abs();
            total += a;
            if *m != 0.0 && a > tau {
                kept += a;
            }
        }
        let n = row.len() as f32;
        let r = (kept / n + 1e-6) / (total / n + 1e-6);
        *s = 1.01 / (r + 0.01);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tau_zeros_exactly_k_weights() {
        let raw = [0.3, -0.1, 0.7, -0.5, 0.2];
        let tau = kth_smallest_abs(&[&raw], 2);
        assert_eq!(tau, 0.2);
        let eff: Vec<f32> = raw.iter().map(|w| soft_threshold(*w, tau)).collect();
        assert_eq!(eff.iter().filter(|v| **v == 0.0).count(), 2);
        assert!((eff[3] + 0.3).abs() < 1e-6);
        assert_eq!(kth_smallest_abs(&[&raw], 0), 0.0);
        assert_eq!(kth_smallest_abs(&[&raw[..2], &raw[2..]], 5), 0.7);
        assert_eq!(kth_smallest_abs(&[&raw], 9), 0.7);
        assert_eq!(kth_smallest_abs(&[], 1), 0.0);
    }

    #[test]
    fn unscaled_threshold_zeros_exactly_the_scaled_quantile() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for scale in [40f32.sqrt(), 6.0, 15f32.sqrt(), 1.0] {
            for _ in 0..200 {
                let w: Vec<f32> = (0..384).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                let scaled: Vec<f32> = w.iter().map(|x| x * scale).collect();
                let tau = kth_smallest_abs(&[&scaled], 300);
                let t = unscaled_threshold(tau, scale);
                assert_eq!(w.iter().filter(|x| x.abs() <= t).count(), 300, "scale {scale}");
            }
        }
        assert_eq!(unscaled_threshold(0.75, 1.0), 0.75);
        assert_eq!(unscaled_threshold(0.0, 3.0), 0.0);
        assert_eq!(unscaled_threshold(f32::INFINITY, 3.0), f32::INFINITY);
    }

    #[test]
    fn rescale_is_one_for_untouched_rows_and_boosts_pruned_ones() {
        let raw = [1.0, -1.0, 0.1, 0.1];
        let mut s = [0.0; 2];
        rescale_rows(&raw, &[1.0; 4], 0.5, 2, &mut s);
        assert!((s[0] - 1.0).abs() < 1e-5);
        assert!(s[1] > 50.0);
    }
}
