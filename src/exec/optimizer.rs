//! The optimizer step over the engine's buffers: gradient-norm clipping, then one fused JIT
//! kernel call per parameter. In: the params with their gradients. Out: updated weights and
//! optimizer state.

use super::jit::{optimizer_scalars, KeptScratch, StepKernels};
use super::params::ParamBuf;
use crate::ir::plan::{Optimizer, ParamKind};
use crate::kernels::KernelError;

/// Scales every gradient so their joint norm is at most `max`.
pub fn clip_gradients(params: &mut [ParamBuf], max: Option<f64>) {
    let Some(max) = max else {
        return;
    };
    let norm = params.iter().flat_map(|p| &p.grad).map(|g| (*g as f64) * (*g as f64)).sum::<f64>().sqrt();
    if norm > max {
        let k = (max / (norm + 1e-6)) as f32;
        params.iter_mut().flat_map(|p| &mut p.grad).for_each(|g| *g *= k);
    }
}

/// A weight's kept positions (ascending) and, when known, its gradient there in that order.
pub type Kept<'a> = (&'a [u32], Option<&'a [f32]>);

/// One kernel call per parameter at learning rate `lr`; weight decay applies to weights only.
/// A param with `kept[i]` (a `hard`-masked weight on the sparse kernels) is updated at those
/// positions only ([`StepKernels::update_kept`]).
pub fn update(
    params: &mut [ParamBuf],
    kept: &[Option<Kept>],
    optimizer: &Optimizer,
    lr: f64,
    step: u64,
    kernels: &StepKernels,
    scratch: &mut Vec<KeptScratch>,
) -> Result<(), KernelError> {
    let lr = lr as f32;
    let weight_decay = match *optimizer {
        Optimizer::Sgd { weight_decay, .. } | Optimizer::Adam { weight_decay, .. } => weight_decay as f32,
    };
    let weights = optimizer_scalars(optimizer, lr, step, weight_decay);
    let others = optimizer_scalars(optimizer, lr, step, 0.0);
    for (i, p) in params.iter_mut().enumerate() {
        let scalars = if p.spec.kind == ParamKind::Weight { &weights } else { &others };
        match kept.get(i).copied().flatten() {
            Some((kept, grad)) if !p.mask.is_empty() && p.eff.is_empty() => {
                kernels.update_kept(p, kept, grad, scalars, scratch)?
            }
            _ => kernels.update(p, scalars)?,
        }
    }
    Ok(())
}
