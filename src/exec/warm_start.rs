//! Warm starts: `init { from "weights.safetensors" }`. In: the plan's params, their freshly drawn
//! buffers, the batchnorm running statistics, and a safetensors file. Out: the buffers holding
//! the file's tensors, before the initial masks are found (so GMP or a lottery ticket prunes the
//! trained network).
//!
//! Names are PyTorch's `state_dict` names, which the zoo models and explicit layers use already
//! (`fc1.weight`, `conv1.bias`, conv weights `(out, in, k, k)`); a batchnorm layer's affine
//! params are `NAME.weight` / `NAME.bias` in PyTorch and `NAME.scale` / `NAME.shift` in sprsc, and
//! either is read. Its running statistics are `NAME.running_mean` / `NAME.running_var`;
//! `NAME.num_batches_tracked` is ignored. A residual block's projection shortcut
//! (`layer2.0.shortcut.conv`, `.shortcut.bn`) is also read as `shortcut.0` / `shortcut.1` or
//! torchvision's `downsample.0` / `downsample.1`. Params a lowering pass added (ghost skips, DyReLU) are
//! not in a trained file and keep their drawn values. Only f32 tensors are read.

use std::collections::BTreeMap;

use safetensors::tensor::Dtype;
use safetensors::SafeTensors;

use super::backend::norm::BnStats;
use super::error::RunError;
use super::params::ParamBuf;
use crate::ir::plan::{ParamKind, Plan};

/// Replaces the drawn values with the file's when the plan's `init` block says `from`.
pub fn load(plan: &Plan, params: &mut [ParamBuf], bn: &mut [(String, BnStats)]) -> Result<(), RunError> {
    let Some((path, span)) = &plan.init.from else { return Ok(()) };
    let file_error = |why: String| RunError::WarmStartFile { path: path.clone(), why, span: *span };
    let bytes = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| file_error(format!("not a safetensors file ({e})")))?;
    let mut file: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    for (name, view) in st.tensors() {
        if name.ends_with(".num_batches_tracked") {
            continue;
        }
        if view.dtype() != Dtype::F32 {
            return Err(file_error(format!("tensor `{name}` is {:?}; only F32 tensors are read", view.dtype())));
        }
        let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        file.insert(name, (view.shape().to_vec(), values));
    }
    let mut problems = Vec::new();
    let mut take = |names: &[String], shape: &[usize], what: &str| -> Option<Vec<f32>> {
        let Some(name) = names.iter().find(|n| file.contains_key(*n)) else {
            problems.push(format!("the model's {what} `{}` ({}) is not in the file", names[0], dims(shape)));
            return None;
        };
        let (got, values) = file.remove(name)?;
        if got != shape {
            problems.push(format!(
                "the file's tensor `{name}` is {}, the model's {what} `{}` is {}",
                dims(&got),
                names[0],
                dims(shape)
            ));
            return None;
        }
        Some(values)
    };
    for p in params.iter_mut().filter(|p| p.spec.added_by.is_none()) {
        if let Some(values) = take(&names(&p.spec.name, p.spec.kind), &p.spec.shape, "parameter") {
            if !p.eff.is_empty() {
                p.eff.copy_from_slice(&values);
            }
            p.raw = values;
        }
    }
    for (layer, stats) in bn.iter_mut() {
        let n = stats.mean.len();
        let stat = |s: &str| {
            let name = format!("{layer}.{s}");
            std::iter::once(name.clone()).chain(shortcut_aliases(&name)).collect::<Vec<_>>()
        };
        let mean = take(&stat("running_mean"), &[n], "batchnorm statistic");
        let var = take(&stat("running_var"), &[n], "batchnorm statistic");
        if let (Some(mean), Some(var)) = (mean, var) {
            *stats = BnStats { mean, var };
        }
    }
    for (name, (shape, _)) in &file {
        problems.push(format!("the file's tensor `{name}` ({}) is no parameter of the model", dims(shape)));
    }
    match problems.split_first() {
        None => Ok(()),
        Some((first, rest)) => Err(RunError::WarmStartMismatch {
            path: path.clone(),
            first: first.clone(),
            rest: rest.to_vec(),
            span: *span,
        }),
    }
}

/// The names a param may have in a trained file: sprsc's, then PyTorch's (batchnorm's affine
/// params; a residual block's projection shortcut as `shortcut.0` / `shortcut.1`, the CIFAR
/// ResNets' common naming, or torchvision's `downsample.0` / `downsample.1`).
fn names(name: &str, kind: ParamKind) -> Vec<String> {
    let renamed = match kind {
        ParamKind::BnScale => name.strip_suffix(".scale").map(|l| format!("{l}.weight")),
        ParamKind::BnShift => name.strip_suffix(".shift").map(|l| format!("{l}.bias")),
        _ => None,
    };
    let mut out = vec![name.to_string()];
    for n in std::iter::once(name.to_string()).chain(renamed.clone()) {
        out.extend(shortcut_aliases(&n));
    }
    out.extend(renamed);
    out.dedup();
    out
}

/// `layerX.Y.shortcut.conv.*` and `layerX.Y.shortcut.bn.*` as PyTorch code names them.
fn shortcut_aliases(name: &str) -> Vec<String> {
    [(".shortcut.conv.", [".shortcut.0.", ".downsample.0."]), (".shortcut.bn.", [".shortcut.1.", ".downsample.1."])]
        .iter()
        .filter(|(from, _)| name.contains(from))
        .flat_map(|(from, to)| to.iter().map(move |t| name.replace(from, t)))
        .collect()
}

fn dims(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "a scalar".into();
    }
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytorch_names_are_accepted_beside_sprsc_names() {
        assert_eq!(names("fc1.weight", ParamKind::Weight), ["fc1.weight"]);
        assert_eq!(names("bn1.scale", ParamKind::BnScale), ["bn1.scale", "bn1.weight"]);
        assert_eq!(
            names("layer2.0.shortcut.bn.shift", ParamKind::BnShift),
            [
                "layer2.0.shortcut.bn.shift",
                "layer2.0.shortcut.1.shift",
                "layer2.0.downsample.1.shift",
                "layer2.0.shortcut.1.bias",
                "layer2.0.downsample.1.bias",
                "layer2.0.shortcut.bn.bias"
            ]
        );
        assert_eq!(
            names("layer2.0.shortcut.conv.weight", ParamKind::Weight),
            ["layer2.0.shortcut.conv.weight", "layer2.0.shortcut.0.weight", "layer2.0.downsample.0.weight"]
        );
    }
}
