//! FLOP counts from the plan's model. In: the `Model` and each weight's density.
//! Out: forward FLOPs per example of conv and dense layers (2 per multiply-add), dense and
//! sparse; other layers are elementwise and left out.

use crate::ir::plan::{Layer, LayerKind, Model};

/// `(dense, sparse)` FLOPs; `density(weight name)` is the fraction of non-zero weights.
pub fn flops(model: &Model, density: &dyn Fn(&str) -> f64) -> (u64, u64) {
    let mut acc = (0.0, 0.0);
    walk(&model.layers, density, &mut acc);
    (acc.0 as u64, acc.1 as u64)
}

fn walk(layers: &[Layer], density: &dyn Fn(&str) -> f64, acc: &mut (f64, f64)) {
    for l in layers {
        let macs = match &l.kind {
            LayerKind::Dense { out, .. } => (l.input.iter().product::<usize>() * out) as f64,
            LayerKind::Conv { kernel, groups, .. } => {
                // Each output reads the `c/groups` input channels of its group.
                let c = l.input.first().copied().unwrap_or(1) / groups;
                (l.output.iter().product::<usize>() * c * kernel * kernel) as f64
            }
            LayerKind::Residual { body, shortcut, scale } => {
                walk(body, density, acc);
                // A shortcut that fades to nothing (ghost skips) is not part of the trained model.
                if scale.is_none_or(|r| r.to != 0.0) {
                    walk(shortcut, density, acc);
                }
                continue;
            }
            _ => continue,
        };
        acc.0 += 2.0 * macs;
        acc.1 += 2.0 * macs * density(&format!("{}.weight", l.name));
    }
}
