//! Lowering details that need the whole plan: per-tensor sparsity targets from the
//! distribution and the per-layer overrides, and the tensors techniques add to the model
//! (ToST's ghost skip branches).

use crate::diagnostics::Span;
use crate::ir::plan::{Distribution, Layer, LayerKind, Param, ParamKind, Plan, Shape, Technique};

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

/// One ToST ghost skip branch of a residual block: a 1x1 conv (stride `stride`, no bias) and a
/// batchnorm from the activation of shape `input` to one of shape `output`.
#[derive(Debug, Clone, PartialEq)]
pub struct GhostBranch {
    /// `BLOCK.ghost1`, `BLOCK.ghost2`; the batchnorm is `NAME_bn`.
    pub name: String,
    pub input: Shape,
    pub output: Shape,
    pub stride: usize,
}

/// Where a residual body is split for ghost skips: the index of its first activation.
pub fn ghost_split(body: &[Layer]) -> Option<usize> {
    body.iter().position(|l| matches!(l.kind, LayerKind::Act(_)))
}

/// The ghost branches of residual block `block` (ToST's `conv_jump1/2` + BN): with a first
/// activation at `k` in the body, one from the block input to the input of `body[k]` and one
/// from the output of `body[k]` to the body's output; without one, a single branch over the
/// whole body. `Err` names the pair of shapes no 1x1 strided convolution maps between.
pub fn ghost_branches(block: &Layer) -> Result<Vec<GhostBranch>, String> {
    let LayerKind::Residual { body, .. } = &block.kind else { return Ok(vec![]) };
    let Some(last) = body.last() else { return Ok(vec![]) };
    let ends = match ghost_split(body) {
        Some(k) => vec![(&block.input, &body[k].input), (&body[k].output, &last.output)],
        None => vec![(&block.input, &last.output)],
    };
    ends.into_iter()
        .enumerate()
        .map(|(i, (input, output))| {
            let stride = one_by_one_stride(input, output)
                .ok_or_else(|| format!("no 1x1 convolution maps {} to {}", show(input), show(output)))?;
            Ok(GhostBranch {
                name: format!("{}.ghost{}", block.name, i + 1),
                input: input.clone(),
                output: output.clone(),
                stride,
            })
        })
        .collect()
}

fn show(shape: &[usize]) -> String {
    shape.iter().map(usize::to_string).collect::<Vec<_>>().join("x")
}

/// The stride of a 1x1 convolution (no padding) from `input` to `output` spatially.
fn one_by_one_stride(input: &[usize], output: &[usize]) -> Option<usize> {
    let hw = |s: &[usize]| match s {
        [_, h, w] => (*h, *w),
        _ => (1, 1),
    };
    let ((h, w), (oh, ow)) = (hw(input), hw(output));
    (1..=h.max(w).max(1)).find(|s| (h.max(1) - 1) / s + 1 == oh && (w.max(1) - 1) / s + 1 == ow)
}

/// Channels of an activation (`[n]` counts as `n` channels of 1x1).
fn channels(shape: &[usize]) -> usize {
    match shape {
        [c, _, _] => *c,
        _ => shape.iter().product(),
    }
}

/// Adds the tensors of ToST's ghost skip branches to `plan.model.params` (after the model's
/// own, so their initialisation does not shift the model's random draws): per top-level
/// residual block, each branch's `weight` `[out, in, 1, 1]` and its batchnorm's `scale` and
/// `shift`, dense and marked `added_by: ghost_skip`. Returns the blocks it cannot bridge.
pub fn add_ghost_skip(plan: &mut Plan) -> Vec<(Span, String)> {
    if !plan.techniques.iter().any(|t| matches!(t, Technique::GhostSkip { .. })) {
        return vec![];
    }
    let mut errors = Vec::new();
    let mut added = Vec::new();
    for block in &plan.model.layers {
        let branches = match ghost_branches(block) {
            Ok(b) => b,
            Err(e) => {
                errors.push((block.span, format!("block `{}`: {e}", block.name)));
                continue;
            }
        };
        for b in branches {
            let (cin, cout) = (channels(&b.input), channels(&b.output));
            let bn = format!("{}_bn", b.name);
            let param = |layer: &str, suffix: &str, kind, shape| Param {
                name: format!("{layer}.{suffix}"),
                layer: layer.to_string(),
                kind,
                shape,
                masked: false,
                target: None,
                added_by: Some("ghost_skip"),
            };
            added.push(param(&b.name, "weight", ParamKind::Weight, vec![cout, cin, 1, 1]));
            added.push(param(&bn, "scale", ParamKind::BnScale, vec![cout]));
            added.push(param(&bn, "shift", ParamKind::BnShift, vec![cout]));
        }
    }
    plan.model.params.extend(added);
    errors
}
