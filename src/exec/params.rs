//! Engine-owned parameter buffers: raw weights, masks, effective weights, gradients and
//! optimizer state as plain `Vec<f32>`s. In: the plan's params and seed. Out: [`ParamBuf`]s
//! initialised deterministically from each param's `Init`, in plan order from one stream.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::Stream;
use crate::ir::plan::{Init, Optimizer, Param, ParamKind, Plan, Update};

pub struct ParamBuf {
    pub spec: Param,
    /// Elements per output channel (row); vectors are one row.
    pub cols: usize,
    /// The trained weights; under `hard` they are kept on the mask (and are the effective ones).
    pub raw: Vec<f32>,
    /// `1.0` kept, `0.0` pruned; empty for params without a mask.
    pub mask: Vec<f32>,
    /// Effective weights under soft thresholding; empty otherwise (then `raw` is effective).
    pub eff: Vec<f32>,
    pub grad: Vec<f32>,
    /// Momentum (SGD) or first moment (Adam).
    pub m1: Vec<f32>,
    /// Second moment (Adam only, else empty).
    pub m2: Vec<f32>,
    /// Per-output-channel rescale under soft thresholding (ones without `rescale`).
    pub row_scale: Vec<f32>,
}

impl ParamBuf {
    pub fn effective(&self) -> &[f32] {
        if self.eff.is_empty() {
            &self.raw
        } else {
            &self.eff
        }
    }

    pub fn mask(&self) -> Option<&[f32]> {
        (!self.mask.is_empty()).then_some(&self.mask[..])
    }
}

/// A standard normal draw (Box-Muller), so init depends on `rand_chacha` alone.
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// A `rows x cols` matrix with orthonormal rows (or columns, when there are more rows than
/// columns) times `gain`, as PyTorch's `orthogonal_`: Gram-Schmidt (twice, for accuracy) on a
/// standard normal matrix, each vector's sign fixed by its draw so the result is uniform.
fn orthogonal(rows: usize, cols: usize, gain: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let (n, m) = if rows < cols { (rows, cols) } else { (cols, rows) };
    // `n` vectors of length `m` to orthonormalise (n <= m).
    let mut v: Vec<Vec<f64>> = (0..n).map(|_| (0..m).map(|_| normal(rng) as f64).collect()).collect();
    for i in 0..n {
        for _ in 0..2 {
            for j in 0..i {
                let d: f64 = v[i].iter().zip(&v[j]).map(|(a, b)| a * b).sum();
                let vj = v[j].clone();
                v[i].iter_mut().zip(&vj).for_each(|(a, b)| *a -= d * b);
            }
        }
        let norm = v[i].iter().map(|a| a * a).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
        v[i].iter_mut().for_each(|a| *a /= norm);
    }
    let mut out = vec![0.0f32; rows * cols];
    for (i, vi) in v.iter().enumerate() {
        for (j, x) in vi.iter().enumerate() {
            let (r, c) = if rows < cols { (i, j) } else { (j, i) };
            out[r * cols + c] = (gain * x) as f32;
        }
    }
    out
}

/// Evci et al. (2022)'s sparse init: each output unit's kept weights scaled by
/// `sqrt(fan_in / kept)`, so a unit's variance matches its real fan-in under its mask.
pub fn rescale_to_kept_fan_in(params: &mut [ParamBuf]) {
    for p in params.iter_mut().filter(|p| p.spec.masked && p.spec.kind == ParamKind::Weight) {
        let cols = p.cols.max(1);
        for (w, m) in p.raw.chunks_mut(cols).zip(p.mask.chunks(cols)) {
            let kept = m.iter().filter(|x| **x != 0.0).count();
            if kept > 0 && kept < cols {
                let k = (cols as f32 / kept as f32).sqrt();
                w.iter_mut().for_each(|x| *x *= k);
            }
        }
    }
}

/// Buffers for every param of `plan`, with the optimizer state and (under soft thresholding)
/// effective weights its update rule needs.
pub fn init(plan: &Plan) -> Vec<ParamBuf> {
    let soft = matches!(plan.sparsity.update, Update::SoftThreshold { .. });
    let adam = matches!(plan.train.optimizer, Optimizer::Adam { .. });
    buffers(&plan.model.params, plan.seed, soft, adam)
}

/// Buffers for `params`, drawn in order from the weights' stream.
pub fn buffers(params: &[Param], seed: u64, soft: bool, adam: bool) -> Vec<ParamBuf> {
    let mut rng = Stream::Weights.rng(seed);
    params
        .iter()
        .map(|p| {
            let n = p.numel();
            let rows = if p.kind == ParamKind::Weight { p.shape[0].max(1) } else { 1 };
            let raw = match p.init {
                Init::Normal { std } => (0..n).map(|_| normal(&mut rng) * std as f32).collect(),
                Init::Uniform { bound } => {
                    let b = bound as f32;
                    (0..n).map(|_| rng.gen_range(-b..b)).collect()
                }
                Init::Orthogonal { gain } => orthogonal(rows, n / rows, gain, &mut rng),
                Init::Uniform01 => (0..n).map(|_| rng.gen::<f32>()).collect(),
                Init::Const(c) => vec![c as f32; n],
            };
            let soft_here = soft && p.masked;
            ParamBuf {
                spec: p.clone(),
                cols: n / rows,
                eff: if soft_here { raw.clone() } else { Vec::new() },
                raw,
                mask: if p.masked { vec![1.0; n] } else { Vec::new() },
                grad: vec![0.0; n],
                m1: vec![0.0; n],
                m2: if adam { vec![0.0; n] } else { Vec::new() },
                row_scale: if soft_here { vec![1.0; rows] } else { Vec::new() },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::plan::ParamKind;

    fn param(kind: ParamKind, shape: Vec<usize>) -> Param {
        Param {
            name: "p".into(),
            layer: "l".into(),
            kind,
            shape,
            masked: kind == ParamKind::Weight,
            target: None,
            init: match kind {
                ParamKind::Weight => Init::Normal { std: (2.0f64 / 450.0).sqrt() },
                ParamKind::Bias => Init::Const(0.0),
                _ => Init::pytorch(kind, 450),
            },
            added_by: None,
        }
    }

    #[test]
    fn kaiming_init_is_deterministic_with_the_right_scale() {
        let ps = [
            param(ParamKind::Weight, vec![200, 50, 3, 3]),
            param(ParamKind::Bias, vec![200]),
            param(ParamKind::BnScale, vec![4]),
        ];
        let a = buffers(&ps, 7, false, false);
        let b = buffers(&ps, 7, false, false);
        assert_eq!(a[0].raw, b[0].raw);
        let var = a[0].raw.iter().map(|w| w * w).sum::<f32>() / a[0].raw.len() as f32;
        assert!((var - 2.0 / 450.0).abs() < 2.0 / 450.0 * 0.05, "variance {var}");
        assert_eq!(a[0].cols, 450);
        assert!(a[1].raw.iter().all(|v| *v == 0.0) && a[1].mask.is_empty());
        assert_eq!(a[2].raw, vec![1.0; 4]);
    }

    fn weight(shape: Vec<usize>, init: Init) -> Param {
        Param { init, ..param(ParamKind::Weight, shape) }
    }

    fn stats(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n;
        (mean, (v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt())
    }

    #[test]
    fn pytorch_default_and_kaiming_draws_have_their_bounds_and_spread() {
        // LeNet-5-Caffe's fc1: fan-in 800, PyTorch's bound 1/sqrt(800).
        let bound = 1.0 / 800f64.sqrt();
        let p = weight(vec![500, 800], crate::ir::plan::WeightInit::Pytorch.resolve(800, 500));
        let b = buffers(&[p], 3, false, false).remove(0);
        assert!(b.raw.iter().all(|w| (w.abs() as f64) <= bound));
        let (mean, std) = stats(&b.raw);
        assert!(mean.abs() < 1e-3 && (std - bound / 3f64.sqrt()).abs() < 0.01 * bound, "{mean} {std}");
        // Kaiming normal, fan_out, ReLU gain on a conv `[20, 1, 5, 5]`: std sqrt(2 / (20 * 25)).
        let w =
            crate::ir::plan::WeightInit::Kaiming { normal: true, fan: crate::ir::plan::Fan::Out, gain: 2f64.sqrt() };
        let (fi, fo) = crate::ir::plan::fans(&[20, 1, 5, 5]);
        assert_eq!((fi, fo), (25, 500));
        let b = buffers(&[weight(vec![200, 10, 5, 5], w.resolve(fi, fo))], 4, false, false).remove(0);
        let (_, std) = stats(&b.raw);
        assert!((std - (2.0f64 / 500.0).sqrt()).abs() < 0.02 * (2.0f64 / 500.0).sqrt(), "{std}");
    }

    #[test]
    fn orthogonal_rows_or_columns_are_orthonormal_times_the_gain() {
        for (rows, cols) in [(4, 9), (9, 4), (5, 5)] {
            let b = buffers(&[weight(vec![rows, cols], Init::Orthogonal { gain: 2.0 })], 1, false, false).remove(0);
            let at = |r: usize, c: usize| b.raw[r * cols + c] as f64;
            let (n, m) = if rows <= cols { (rows, cols) } else { (cols, rows) };
            for i in 0..n {
                for j in 0..n {
                    let d: f64 =
                        (0..m).map(|k| if rows <= cols { at(i, k) * at(j, k) } else { at(k, i) * at(k, j) }).sum();
                    let want = if i == j { 4.0 } else { 0.0 };
                    assert!((d - want).abs() < 1e-4, "{rows}x{cols} ({i},{j}): {d}");
                }
            }
        }
    }

    #[test]
    fn sparse_init_scales_each_unit_to_its_kept_fan_in() {
        let mut b = buffers(&[weight(vec![2, 4], Init::Const(1.0))], 0, false, false);
        b[0].mask = vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        b[0].raw = vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        rescale_to_kept_fan_in(&mut b);
        assert_eq!(b[0].raw, vec![2.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    }
}
