//! Lowering details that need the whole plan: per-tensor sparsity targets from the
//! distribution and the per-layer overrides.

use crate::ir::plan::{Distribution, Plan, Technique};

/// Applies the techniques that change the model's tensors (after [`assign_targets`], whose
/// targets weight sharing corrects): DyReLU's branches, then weight sharing.
pub fn lower_techniques(plan: &mut Plan) {
    let techniques = plan.techniques.clone();
    for t in &techniques {
        if let Technique::DyRelu { reduction, .. } = t {
            super::east::add_dyrelu_params(plan, *reduction);
        }
    }
    for t in &techniques {
        if let Technique::WeightSharing { from_block, .. } = t {
            super::east::share_weights(plan, *from_block);
        }
    }
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
