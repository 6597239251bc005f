//! EAST's techniques ("Pushing the Limits of Sparsity: A Bag of Tricks for Extreme Pruning";
//! official code TensorStrike/ES2) as lowering passes. In: a plan whose per-tensor targets are
//! assigned. Out: the same plan with DyReLU layers and their branch tensors (`added_by`), the
//! shared conv weights removed and mapped in `Model::shared`, and the density target corrected
//! for sharing.

use super::{channels, for_each_layer, for_each_layer_mut};
use crate::ir::plan::{
    Activation, AddedBy, Distribution, Init, Layer, LayerKind, Param, ParamKind, Plan, Ramp, SharedWeight,
};

/// The coefficients per channel of DyReLU-B with two pieces: `a1, a2, b1, b2`.
pub const DYRELU_COEFS: usize = 4;

/// Makes every ReLU layer a DyReLU-B layer with `phase_out`, and adds its squeeze branch to the
/// params (after the model's own, so their initial values do not change): `fc1 [C/r, C]`,
/// `fc1 bias`, `fc2 [4C, C/r]`, `fc2 bias`, unmasked. ES2 puts DyReLU-B on every ReLU of its
/// ResNets (the stem's, and both of each basic block); here every ReLU of any model.
pub fn dyrelu(plan: &mut Plan, reduction: usize, phase_out: Ramp) {
    let mut added = Vec::new();
    for_each_layer(&plan.model.layers, &mut |l| {
        if l.kind == LayerKind::Act(Activation::Relu) {
            let c = channels(&l.input);
            let hidden = (c / reduction.max(1)).max(1);
            let fc = |n: usize, kind, suffix: &str, shape| Param {
                name: format!("{}.dyrelu.fc{n}.{suffix}", l.name),
                layer: format!("{}.dyrelu.fc{n}", l.name),
                kind,
                shape,
                masked: false,
                target: None,
                // ES2's branch is two `nn.Linear`s: PyTorch's default init.
                init: Init::pytorch(kind, if n == 1 { c } else { hidden }),
                added_by: Some(AddedBy::DyRelu),
            };
            added.push(fc(1, ParamKind::Weight, "weight", vec![hidden, c]));
            added.push(fc(1, ParamKind::Bias, "bias", vec![hidden]));
            added.push(fc(2, ParamKind::Weight, "weight", vec![DYRELU_COEFS * c, hidden]));
            added.push(fc(2, ParamKind::Bias, "bias", vec![DYRELU_COEFS * c]));
        }
    });
    plan.model.params.extend(added);
    for_each_layer_mut(&mut plan.model.layers, &mut |l| {
        if l.kind == LayerKind::Act(Activation::Relu) {
            l.kind = LayerKind::DyRelu { reduction, phase_out };
        }
    });
}

/// The residual stages: runs of top-level residual blocks separated only by activations; a
/// block with a projection shortcut (a change of shape) starts a new stage, as each of ES2's
/// `layerN` lists starts with its downsampling block.
fn stages(layers: &[Layer]) -> Vec<Vec<&Layer>> {
    let mut out: Vec<Vec<&Layer>> = Vec::new();
    let mut current: Vec<&Layer> = Vec::new();
    for l in layers {
        match &l.kind {
            LayerKind::Residual { shortcut, .. } => {
                if !shortcut.is_empty() && !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                current.push(l);
            }
            k if k.is_activation() => {}
            _ if !current.is_empty() => out.push(std::mem::take(&mut current)),
            _ => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn body_convs(block: &Layer) -> Vec<&Layer> {
    match &block.kind {
        LayerKind::Residual { body, .. } => body.iter().filter(|l| matches!(l.kind, LayerKind::Conv { .. })).collect(),
        _ => vec![],
    }
}

/// EAST's weight sharing (ES2's `ratio`): in each stage, every block with index `>= from_block`
/// reads the body conv weights of block `from_block - 1` (the i-th conv of the block reads the
/// owner's i-th conv), times a learnable scalar per conv (`LAYER.share_scale`, initialised
/// uniform in [0, 1) as ES2 does). Shortcut convs, biases and batchnorms stay per block, as in
/// ES2. A conv whose weight shape differs from its owner's (the owner is a downsampling block,
/// `from_block: 1`) keeps its own weight; ES2 would reject that configuration.
///
/// Then corrects the density so the unique weights keep as many nonzeros as the unshared
/// network would (ES2's `calculate_adjusted_density`): see [`correct_density`].
pub fn share_weights(plan: &mut Plan, from_block: usize) {
    let k = from_block.max(1);
    let mut shares = Vec::new();
    for stage in stages(&plan.model.layers) {
        let Some(owner) = stage.get(k - 1) else { continue };
        let owner_convs = body_convs(owner);
        for block in stage.iter().skip(k) {
            for (conv, own) in body_convs(block).into_iter().zip(&owner_convs) {
                let (param, owner) = (format!("{}.weight", conv.name), format!("{}.weight", own.name));
                let shape = |name: &str| plan.model.params.iter().find(|p| p.name == name).map(|p| p.shape.clone());
                if shape(&param).is_some() && shape(&param) == shape(&owner) {
                    shares.push(SharedWeight { param, owner, scale: format!("{}.share_scale", conv.name) });
                }
            }
        }
    }
    let unshared = plan.model.params.clone();
    plan.model.params.retain(|p| !shares.iter().any(|s| s.param == p.name));
    for s in &shares {
        let layer = s.scale.trim_end_matches(".share_scale").to_string();
        plan.model.params.push(Param {
            name: s.scale.clone(),
            layer,
            kind: ParamKind::Scale,
            shape: vec![1],
            masked: false,
            target: None,
            init: Init::Uniform01,
            added_by: Some(AddedBy::WeightSharing),
        });
    }
    plan.model.shared = shares;
    correct_density(plan, &unshared);
}

/// Makes the masked unique weights keep as many nonzeros as the masked weights of `unshared`
/// (the network before sharing) would: `kept = sum over unshared tensors of (1 - target) * n`.
///
/// Per-tensor targets (uniform, erk): tensors with a layer override keep their target; the
/// others' densities are scaled by one common factor, each capped at density 1 (the capped
/// budget is redistributed over the rest, as ERK does). Under `global` the plan's target,
/// which covers the tensors without a per-tensor target, is corrected the same way:
/// `density' = min(1, density * n_unshared / n_unique)`.
pub fn correct_density(plan: &mut Plan, unshared: &[Param]) {
    let masked = |ps: &[Param], global: bool| -> f64 {
        ps.iter().filter(|p| p.masked && p.target.is_none() == global).map(|p| p.numel() as f64).sum()
    };
    if plan.sparsity.distribution == Distribution::Global {
        let (before, after) = (masked(unshared, true), masked(&plan.model.params, true));
        if after > 0.0 {
            let density = ((1.0 - plan.sparsity.target) * before / after).min(1.0);
            plan.sparsity.target = 1.0 - density;
        }
    }
    let overridden = |p: &Param| plan.sparsity.overrides.iter().any(|o| o.layer == p.layer);
    let kept = |p: &Param| p.target.map_or(0.0, |t| (1.0 - t) * p.numel() as f64);
    let free = |p: &Param| p.masked && p.target.is_some() && !overridden(p);
    // The budget of the free tensors: the unshared network's, less what overridden ones keep.
    let with_target = |p: &&Param| p.masked && p.target.is_some();
    let fixed: f64 = plan.model.params.iter().filter(with_target).filter(|p| overridden(p)).map(kept).sum();
    let budget = unshared.iter().filter(with_target).map(kept).sum::<f64>() - fixed;
    let idx: Vec<usize> = (0..plan.model.params.len()).filter(|&i| free(&plan.model.params[i])).collect();
    let density: Vec<f64> = idx.iter().map(|&i| 1.0 - plan.model.params[i].target.unwrap_or(0.0)).collect();
    let numel: Vec<f64> = idx.iter().map(|&i| plan.model.params[i].numel() as f64).collect();
    let mut capped = vec![false; idx.len()];
    let factor = loop {
        let fixed: f64 = numel.iter().zip(&capped).filter(|(_, c)| **c).map(|(n, _)| n).sum();
        let weight: f64 = (0..idx.len()).filter(|&j| !capped[j]).map(|j| density[j] * numel[j]).sum();
        let f = if weight > 0.0 { (budget - fixed) / weight } else { 0.0 };
        let mut changed = false;
        for j in 0..idx.len() {
            if !capped[j] && f * density[j] > 1.0 {
                capped[j] = true;
                changed = true;
            }
        }
        if !changed {
            break f;
        }
    };
    for (j, &i) in idx.iter().enumerate() {
        let d = if capped[j] { 1.0 } else { (factor * density[j]).clamp(0.0, 1.0) };
        plan.model.params[i].target = Some(1.0 - d);
    }
}

#[cfg(test)]
mod tests {
    use crate::ir::plan::{AddedBy, Distribution, Plan};

    fn plan(src: &str) -> Plan {
        let c = crate::compile_source(std::path::Path::new("t.sprs"), src.to_string(), &[]);
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
        c.checked.plans.into_iter().next().expect("one plan")
    }

    const RESNET: &str = "recipe r {
      data synthetic_digits(train: 64, test: 16)
      model resnet20(width: 0.25)
      sparsity {
        target 90%
        distribution DIST
      }
      techniques {
        weight_sharing(from_block: 2)
      }
      train {
        epochs 1
        batch 16
      }
    }";

    /// Nonzeros the per-tensor targets keep.
    fn nonzeros(p: &Plan) -> f64 {
        p.model
            .params
            .iter()
            .filter(|p| p.masked)
            .map(|p| (1.0 - p.target.expect("per-tensor")) * p.numel() as f64)
            .sum()
    }

    #[test]
    fn sharing_maps_later_blocks_to_the_owner_and_adds_scales() {
        let p = plan(&RESNET.replace("DIST", "uniform"));
        // resnet20: 3 stages of 3 blocks; blocks 2 share block 1's two convs.
        assert_eq!(p.model.shared.len(), 6);
        let s = &p.model.shared[0];
        assert_eq!((s.param.as_str(), s.owner.as_str()), ("layer1.2.conv1.weight", "layer1.1.conv1.weight"));
        assert!(!p.model.params.iter().any(|q| p.model.shared.iter().any(|s| s.param == q.name)));
        let scales: Vec<_> = p.model.params.iter().filter(|q| q.added_by == Some(AddedBy::WeightSharing)).collect();
        assert_eq!(scales.len(), 6);
        assert!(scales.iter().all(|q| q.shape == vec![1] && !q.masked));
    }

    #[test]
    fn corrected_targets_keep_the_unshared_networks_nonzeros() {
        let over = "distribution uniform\n layer \"layer1.2.conv1\" 50%\n layer \"fc\" 60%";
        for dist in ["distribution uniform", "distribution erk", over] {
            let unshared =
                plan(&RESNET.replace("distribution DIST", dist).replace("weight_sharing(from_block: 2)", ""));
            let shared = plan(&RESNET.replace("distribution DIST", dist));
            let (a, b) = (nonzeros(&unshared), nonzeros(&shared));
            assert!((a - b).abs() < 1e-6 * a, "{dist}: {a} vs {b}");
            let unique: usize = shared.model.params.iter().filter(|p| p.masked).map(|p| p.numel()).sum();
            let all: usize = unshared.model.params.iter().filter(|p| p.masked).map(|p| p.numel()).sum();
            assert!(unique < all);
            assert_eq!(
                shared.model.params.iter().find(|p| p.name == "fc.weight").unwrap().target == Some(0.6),
                dist == over
            );
            if dist == "distribution uniform" {
                let want = 1.0 - 0.1 * all as f64 / unique as f64;
                assert!(shared
                    .model
                    .params
                    .iter()
                    .filter(|p| p.masked)
                    .all(|p| (p.target.unwrap() - want).abs() < 1e-9));
            }
        }
        let unshared = plan(&RESNET.replace("DIST", "global").replace("weight_sharing(from_block: 2)", ""));
        let shared = plan(&RESNET.replace("DIST", "global"));
        assert_eq!(shared.sparsity.distribution, Distribution::Global);
        let count = |p: &Plan| p.model.params.iter().filter(|p| p.masked).map(|p| p.numel() as f64).sum::<f64>();
        let kept = |p: &Plan| (1.0 - p.sparsity.target) * count(p);
        assert!((kept(&unshared) - kept(&shared)).abs() < 1e-6 * kept(&unshared));
    }

    #[test]
    fn from_block_one_shares_matching_shapes_and_caps_density_at_one() {
        let p = plan(
            &RESNET
                .replace("DIST", "uniform")
                .replace("target 90%", "target 30%")
                .replace("from_block: 2", "from_block: 1"),
        );
        // A downsampling stage's first block owns a conv1 of another shape: only conv2 is shared.
        let shared: Vec<&str> = p.model.shared.iter().map(|s| s.param.as_str()).collect();
        assert!(shared.contains(&"layer1.1.conv1.weight") && shared.contains(&"layer2.1.conv2.weight"));
        assert!(!shared.contains(&"layer2.1.conv1.weight"));
        // from_block 1 leaves 63% of the weights unique: 70% density cannot be met.
        let targets: Vec<f64> = p.model.params.iter().filter(|p| p.masked).map(|p| p.target.unwrap()).collect();
        assert!(targets.iter().all(|t| *t == 0.0), "{targets:?}");
    }

    #[test]
    fn dyrelu_adds_a_branch_per_relu() {
        let p =
            plan(&RESNET.replace("DIST", "uniform").replace("weight_sharing(from_block: 2)", "dyrelu(reduction: 4)"));
        let added: Vec<_> = p.model.params.iter().filter(|q| q.added_by == Some(AddedBy::DyRelu)).collect();
        // resnet20: the stem ReLU and two per block, 4 tensors each.
        assert_eq!(added.len(), 4 * (1 + 2 * 9));
        let fc2 = added.iter().find(|q| q.name == "relu1.dyrelu.fc2.weight").unwrap();
        assert_eq!(fc2.shape, vec![4 * 4, 1]);
    }
}
