//! The elementwise per-parameter arithmetic of one training step, one function per rule.
//! In: slices of one parameter (weights, optimizer state, gradient, mask) and f32 scalars.
//! Out: the slices updated in place.
//!
//! These are plain loops on purpose: each will be replaced by a Cranelift-JIT fused kernel
//! with the same signature and semantics, so they take only `&mut [f32]`/`&[f32]` and
//! scalars, and rows (output channels, `cols` long) are explicit where a rule needs them.
//! A mask is `1.0` (kept) or `0.0` (pruned); `None` means dense.

use crate::sparsity::threshold::soft_threshold;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
}

/// `bias1 = 1 - beta1^t`, `bias2 = 1 - beta2^t` for the current step `t` (from 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled: bool,
    pub bias1: f32,
    pub bias2: f32,
}

fn gate(mask: Option<&[f32]>, i: usize) -> f32 {
    mask.map_or(1.0, |m| m[i])
}

/// One SGD step on a weight vector `w` that lives on the mask: `g' = (g + wd w) m`,
/// `b = mu b + g'`, `w = (w - lr (g' + mu b | b)) m`, `b = b m`. With `mask = None` this is
/// plain SGD (dense params). Momentum ends exactly zero wherever `m = 0`.
pub fn sgd_hard(w: &mut [f32], buf: &mut [f32], grad: &[f32], mask: Option<&[f32]>, h: Sgd) {
    for i in 0..w.len() {
        let m = gate(mask, i);
        let g = (grad[i] + h.weight_decay * w[i]) * m;
        let b = h.momentum * buf[i] + g;
        let step = if h.nesterov { g + h.momentum * b } else { b };
        w[i] = (w[i] - h.lr * step) * m;
        buf[i] = b * m;
    }
}

/// SGD on the raw weights of a soft-threshold layer: the gradient of the effective weights
/// reaches the raw ones straight through (dense STE), or only where `gate` is 1 (masked STE:
/// the engine passes `eff != 0`). Raw weights are never re-masked.
pub fn sgd_raw(raw: &mut [f32], buf: &mut [f32], grad: &[f32], gate_mask: Option<&[f32]>, h: Sgd) {
    for i in 0..raw.len() {
        let m = gate(gate_mask, i);
        let g = (grad[i] + h.weight_decay * raw[i]) * m;
        let b = h.momentum * buf[i] + g;
        let step = if h.nesterov { g + h.momentum * b } else { b };
        raw[i] -= h.lr * step;
        buf[i] = b;
    }
}

/// Adam step for one element; returns the new weight. `m` gates the gradient.
fn adam_elem(w: f32, g: f32, mask: f32, m1: &mut f32, m2: &mut f32, h: Adam) -> f32 {
    let mut w = w;
    let mut g = g;
    if h.decoupled {
        w -= h.lr * h.weight_decay * w * mask;
    } else {
        g += h.weight_decay * w;
    }
    g *= mask;
    *m1 = h.beta1 * *m1 + (1.0 - h.beta1) * g;
    *m2 = h.beta2 * *m2 + (1.0 - h.beta2) * g * g;
    w - h.lr * (*m1 / h.bias1) / ((*m2 / h.bias2).sqrt() + h.eps)
}

/// Adam/AdamW on weights that live on the mask; weights and both moments are re-masked.
pub fn adam_hard(w: &mut [f32], m1: &mut [f32], m2: &mut [f32], grad: &[f32], mask: Option<&[f32]>, h: Adam) {
    for i in 0..w.len() {
        let m = gate(mask, i);
        w[i] = adam_elem(w[i], grad[i], m, &mut m1[i], &mut m2[i], h) * m;
        m1[i] *= m;
        m2[i] *= m;
    }
}

/// Adam/AdamW on the raw weights of a soft-threshold layer (see [`sgd_raw`]).
pub fn adam_raw(raw: &mut [f32], m1: &mut [f32], m2: &mut [f32], grad: &[f32], gate_mask: Option<&[f32]>, h: Adam) {
    for i in 0..raw.len() {
        raw[i] = adam_elem(raw[i], grad[i], gate(gate_mask, i), &mut m1[i], &mut m2[i], h);
    }
}

/// Effective weights of a soft-threshold layer, row by row (one row per output channel):
/// `eff = mask * soft_threshold(raw, tau) * row_scale[row]`.
pub fn soft_threshold_effective(eff: &mut [f32], raw: &[f32], mask: &[f32], tau: f32, row_scale: &[f32], cols: usize) {
    for (r, scale) in row_scale.iter().enumerate() {
        let span = r * cols..(r + 1) * cols;
        for ((e, w), m) in eff[span.clone()].iter_mut().zip(&raw[span.clone()]).zip(&mask[span]) {
            *e = m * soft_threshold(*w, tau) * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Sgd = Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.01 };

    #[test]
    fn sgd_hard_matches_pytorch_then_remasks() {
        let (mut w, mut b) = (vec![1.0, -2.0], vec![0.5, 0.5]);
        sgd_hard(&mut w, &mut b, &[0.2, 0.3], Some(&[1.0, 0.0]), H);
        let g = 0.2 + 0.01;
        let buf = 0.9 * 0.5 + g;
        assert!((w[0] - (1.0 - 0.1 * buf)).abs() < 1e-6);
        assert!((b[0] - buf).abs() < 1e-6);
        assert_eq!((w[1], b[1]), (0.0, 0.0));
        let nesterov = Sgd { nesterov: true, ..H };
        let (mut w, mut b) = (vec![1.0], vec![0.0]);
        sgd_hard(&mut w, &mut b, &[1.0], None, nesterov);
        assert!((w[0] - (1.0 - 0.1 * (1.01 + 0.9 * 1.01))).abs() < 1e-6);
    }

    #[test]
    fn raw_updates_keep_pruned_weights_moving_under_dense_ste() {
        let (mut r, mut b) = (vec![0.01], vec![0.0]);
        sgd_raw(&mut r, &mut b, &[-1.0], None, Sgd { weight_decay: 0.0, ..H });
        assert!((r[0] - 0.11).abs() < 1e-6);
        let (mut r, mut b) = (vec![0.01], vec![0.0]);
        sgd_raw(&mut r, &mut b, &[-1.0], Some(&[0.0]), H);
        assert_eq!(r[0], 0.01);
    }

    #[test]
    fn adam_first_step_moves_by_lr_and_adamw_decays() {
        let h = Adam {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            bias1: 0.1,
            bias2: 0.001,
        };
        let (mut w, mut m, mut v) = (vec![1.0, 1.0], vec![0.0; 2], vec![0.0; 2]);
        adam_hard(&mut w, &mut m, &mut v, &[3.0, 3.0], Some(&[1.0, 0.0]), h);
        assert!((w[0] - 0.99).abs() < 1e-5);
        assert_eq!((w[1], m[1], v[1]), (0.0, 0.0, 0.0));
        let hw = Adam { weight_decay: 0.1, decoupled: true, ..h };
        let (mut w, mut m, mut v) = (vec![1.0], vec![0.0], vec![0.0]);
        adam_raw(&mut w, &mut m, &mut v, &[0.0], None, hw);
        assert!((w[0] - (1.0 - 0.001)).abs() < 1e-6);
    }

    #[test]
    fn effective_weights_are_masked_thresholded_and_rescaled_per_row() {
        let raw = [0.5, -0.2, 0.1, -0.9];
        let mut eff = [9.0; 4];
        soft_threshold_effective(&mut eff, &raw, &[1.0, 1.0, 0.0, 1.0], 0.15, &[2.0, 1.0], 2);
        let want = [0.7, -0.1, 0.0, -0.75];
        for (e, w) in eff.iter().zip(want) {
            assert!((e - w).abs() < 1e-6);
        }
    }
}
