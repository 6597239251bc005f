//! ST-3 soft thresholding. In: raw weights and masks of a group, the number of zeros wanted.
//! Out: the threshold `tau` and, with `rescale`, one scale per output channel.
//!
//! `soft_threshold(w, tau) = sign(w) * max(|w| - tau, 0)`; choosing `tau` as the k-th smallest
//! `|w * mask|` zeros exactly those `k` weights (plus any exact ties at `tau`).

/// The k-th smallest of `|raw * mask| * scale` over the group's tensors (`scale` is 1, or
/// `1/sigma` for ST-3-sigma, whose per-layer threshold is then `tau * sigma`); 0 when `k == 0`,
/// which leaves every weight unshrunk.
pub fn kth_smallest_abs(tensors: &[(&[f32], &[f32], f32)], k: usize) -> f32 {
    if k == 0 {
        return 0.0;
    }
    let mut vals: Vec<f32> = Vec::with_capacity(tensors.iter().map(|t| t.0.len()).sum());
    for (raw, mask, scale) in tensors {
        vals.extend(raw.iter().zip(mask.iter()).map(|(w, m)| (w * m).abs() * scale));
    }
    let k = k.min(vals.len());
    *vals.select_nth_unstable_by(k - 1, |a, b| a.total_cmp(b)).1
}

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
    for ((row, mrow), s) in raw.chunks(cols).zip(mask.chunks(cols)).zip(scale.iter_mut()) {
        let n = row.len() as f32;
        let total: f32 = row.iter().map(|w| w.abs()).sum();
        let kept: f32 = row.iter().zip(mrow).filter(|(w, m)| **m != 0.0 && w.abs() > tau).map(|(w, _)| w.abs()).sum();
        let r = (kept / n + 1e-6) / (total / n + 1e-6);
        *s = 1.01 / (r + 0.01);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tau_zeros_exactly_k_weights() {
        let raw = [0.3, -0.1, 0.7, -0.5, 0.2];
        let ones = [1.0; 5];
        let tau = kth_smallest_abs(&[(&raw, &ones, 1.0)], 2);
        assert_eq!(tau, 0.2);
        let eff: Vec<f32> = raw.iter().map(|w| soft_threshold(*w, tau)).collect();
        assert_eq!(eff.iter().filter(|v| **v == 0.0).count(), 2);
        assert!((eff[3] + 0.3).abs() < 1e-6);
        assert_eq!(kth_smallest_abs(&[(&raw, &ones, 1.0)], 0), 0.0);
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
