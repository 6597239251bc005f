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
                // Kaiming normal, fan_in mode, ReLU gain: std = sqrt(2 / fan_in).
                Init::KaimingNormal => {
                    let std = (2.0 / (n / rows).max(1) as f32).sqrt();
                    (0..n).map(|_| normal(&mut rng) * std).collect()
                }
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
            init: Init::default_for(kind),
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
}
