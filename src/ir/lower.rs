//! Lowering: a checked plan -> the plan that trains. In: a [`Plan`] as the checker built it
//! (the model as written, the recipe's techniques). Out: the same plan with per-tensor sparsity
//! targets assigned and every technique that changes the network applied as a pass
//! (`ir::passes`), so the layers are the graph the engine runs.

use crate::diagnostics::{Diagnostic, Span};
use crate::ir::plan::{Distribution, Plan};

/// A technique that cannot be applied to this model (E0313: a ghost skip that no 1x1
/// convolution can bridge), with the layer it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct LowerError {
    pub span: Span,
    pub msg: String,
}

impl LowerError {
    pub fn to_diagnostic(&self) -> Diagnostic {
        Diagnostic::error("E0313", format!("`ghost_skip` cannot bridge a residual block: {}", self.msg))
            .at(self.span, "this block")
            .with_help("ghost skips are 1x1 convolutions; keep each half of the block's body strided, not cropped")
    }
}

/// Lowers `plan` in place: targets first (weight sharing corrects them), then the passes.
pub fn lower(plan: &mut Plan) -> Vec<LowerError> {
    assign_targets(plan);
    super::passes::apply(plan)
}

/// Fills `Param::target` for masked tensors: the override of its layer, else the recipe's
/// target under `uniform`, the ERK allocation under `erk`, and `None` under `global` (found from
/// magnitudes at run time).
pub fn assign_targets(plan: &mut Plan) {
    let target = plan.sparsity.target;
    let erk = match plan.sparsity.distribution {
        Distribution::Erk => erk_densities(plan, 1.0 - target),
        _ => vec![],
    };
    let mut erk_i = 0;
    for p in plan.model.params.iter_mut() {
        if !p.masked {
            p.target = None;
            continue;
        }
        let over = plan.sparsity.overrides.iter().find(|o| o.layer == p.layer).map(|o| o.target);
        p.target = match (over, plan.sparsity.distribution) {
            (Some(t), _) => Some(t),
            (None, Distribution::Uniform) => Some(target),
            (None, Distribution::Global) => None,
            (None, Distribution::Erk) => {
                let d = erk.get(erk_i).copied().unwrap_or(1.0 - target);
                erk_i += 1;
                Some(1.0 - d)
            }
        };
    }
}

/// Erdos-Renyi-Kernel densities for the masked tensors without an override, in order:
/// density_l proportional to sum(shape)/prod(shape); layers that would exceed density 1 are made
/// dense and the rest re-solved, so that the overall density equals `density`.
pub fn erk_densities(plan: &Plan, density: f64) -> Vec<f64> {
    let tensors: Vec<(f64, f64)> = plan
        .model
        .params
        .iter()
        .filter(|p| p.masked && !plan.sparsity.overrides.iter().any(|o| o.layer == p.layer))
        .map(|p| {
            let n = p.numel() as f64;
            (n, p.shape.iter().map(|&d| d as f64).sum::<f64>() / n)
        })
        .collect();
    let total: f64 = tensors.iter().map(|t| t.0).sum();
    let mut dense = vec![false; tensors.len()];
    loop {
        let dense_n: f64 = tensors.iter().zip(&dense).filter(|(_, d)| **d).map(|(t, _)| t.0).sum();
        let budget = density * total - dense_n;
        let weight: f64 = tensors.iter().zip(&dense).filter(|(_, d)| !**d).map(|(t, _)| t.0 * t.1).sum();
        let eps = if weight > 0.0 { budget / weight } else { 0.0 };
        let mut changed = false;
        for (i, t) in tensors.iter().enumerate() {
            if !dense[i] && eps * t.1 > 1.0 {
                dense[i] = true;
                changed = true;
            }
        }
        if !changed {
            return tensors
                .iter()
                .zip(&dense)
                .map(|(t, d)| if *d { 1.0 } else { (eps * t.1).clamp(0.0, 1.0) })
                .collect();
        }
    }
}
