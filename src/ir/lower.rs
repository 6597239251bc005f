//! Lowering: a checked plan -> the plan that trains. In: a [`Plan`] as the checker built it
//! (the model as written, the recipe's techniques). Out: the same plan with per-tensor sparsity
//! targets assigned and every technique that changes the network applied as a pass
//! (`ir::passes`), so the layers are the graph the engine runs.

use crate::diagnostics::{Diagnostic, Span};
use crate::ir::plan::{fans, BiasInit, Distribution, Init, InitSpec, Param, ParamKind, Plan};

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

/// Lowers `plan` in place: inits and targets first (weight sharing corrects the targets), then
/// the passes (the tensors they add carry their own inits).
pub fn lower(plan: &mut Plan) -> Vec<LowerError> {
    assign_inits(plan);
    assign_targets(plan);
    super::passes::apply(plan)
}

/// Resolves the `init` block to each of the model's tensors: weights by their layer's entry or
/// the block's `weights`, biases by `bias` (PyTorch's bound is the layer weight's fan-in).
pub fn assign_inits(plan: &mut Plan) {
    resolve_inits(&mut plan.model.params, &plan.init);
}

/// [`assign_inits`] over a list of the model's own tensors (plans built in code use it too).
pub fn resolve_inits(params: &mut [Param], spec: &InitSpec) {
    let weight_fans: Vec<(String, (usize, usize))> =
        params.iter().filter(|p| p.kind == ParamKind::Weight).map(|p| (p.layer.clone(), fans(&p.shape))).collect();
    let fan_of = |layer: &str| weight_fans.iter().find(|(l, _)| l == layer).map_or((1, 1), |(_, f)| *f);
    for p in params.iter_mut().filter(|p| p.added_by.is_none()) {
        let (fan_in, fan_out) = fan_of(&p.layer);
        p.init = match p.kind {
            ParamKind::Weight => {
                let how = spec.layers.iter().find(|(l, _, _)| *l == p.layer).map_or(spec.weights, |(_, w, _)| *w);
                how.resolve(fan_in, fan_out)
            }
            ParamKind::Bias => match spec.bias {
                BiasInit::Pytorch => Init::pytorch(ParamKind::Bias, fan_in),
                BiasInit::Zeros => Init::Const(0.0),
                BiasInit::Normal { std } => Init::Normal { std },
            },
            ParamKind::BnScale | ParamKind::BnShift | ParamKind::Scale => p.init,
        };
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

#[cfg(test)]
mod tests {
    use crate::ir::plan::{Init, Plan};

    fn plan(init: &str) -> Plan {
        let src = format!(
            "recipe r {{\n data synthetic_digits(train: 64, test: 16)\n model lenet300_100\n {init}\n train {{ epochs 1 }}\n}}"
        );
        let c = crate::compile_source(std::path::Path::new("t.sprs"), src, &[]);
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
        c.checked.plans.into_iter().next().expect("one plan")
    }

    fn init_of(p: &Plan, name: &str) -> Init {
        p.model.params.iter().find(|q| q.name == name).expect("param").init
    }

    #[test]
    fn the_default_is_pytorchs_and_the_block_overrides_it() {
        let p = plan("");
        let b784 = 1.0 / 784f64.sqrt();
        assert_eq!(init_of(&p, "fc1.weight"), Init::Uniform { bound: b784 });
        assert_eq!(init_of(&p, "fc1.bias"), Init::Uniform { bound: b784 });
        assert_eq!(init_of(&p, "fc3.bias"), Init::Uniform { bound: 1.0 / 100f64.sqrt() });
        let p = plan(
            "init {\n weights kaiming_normal(mode: fan_in)\n bias zeros\n layer \"fc3\" xavier_uniform(gain: 1)\n }",
        );
        let kaiming = (2.0f64 / 784.0).sqrt();
        assert!(matches!(init_of(&p, "fc1.weight"), Init::Normal { std } if (std - kaiming).abs() < 1e-12));
        assert_eq!(init_of(&p, "fc1.bias"), Init::Const(0.0));
        let xavier = 3f64.sqrt() * (2.0f64 / 110.0).sqrt();
        assert!(matches!(init_of(&p, "fc3.weight"), Init::Uniform { bound } if (bound - xavier).abs() < 1e-12));
    }
}
