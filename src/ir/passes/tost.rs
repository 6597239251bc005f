//! ToST's graph techniques (Jaiswal et al., ICML 2022) as lowering passes: ghost skips and
//! ghost neurons. In: the plan's layers. Out: the layers that train.
//!
//! The official code (VITA-Group/ToST) trains with the soft activation throughout
//! (`soft_activation/models/resnet.py`) and keeps the branches at full weight
//! (`skip_connection/models/resnet_modified.py`; `resnet_modified2.py` has an `alpha` factor
//! that no script varies). The switch back to ReLU and the fade follow the paper's description
//! instead, so that the trained network is a plain sparse ReLU ResNet.

use super::channels;
use crate::ir::lower::LowerError;
use crate::ir::plan::{Activation, AddedBy, Init, Layer, LayerKind, Param, ParamKind, Plan, Ramp, Shape};

/// One ghost skip branch of a residual block: a 1x1 conv (stride `stride`, no bias) and a
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
    body.iter().position(|l| l.kind.is_activation())
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

/// The conv and batchnorm layers of a branch, and their params (weight filled with `init`,
/// ToST's `conv_jump.weight.data.fill_(0.0001)`; batchnorm at scale 1, shift 0).
fn branch_layers(b: &GhostBranch, init: f64, span: crate::diagnostics::Span) -> (Vec<Layer>, Vec<Param>) {
    let (cin, cout) = (channels(&b.input), channels(&b.output));
    let bn = format!("{}_bn", b.name);
    let mid: Shape = match b.output.as_slice() {
        [_, h, w] => vec![cout, *h, *w],
        _ => b.output.clone(),
    };
    let conv = LayerKind::Conv { out: cout, kernel: 1, stride: b.stride, padding: 0, bias: false, groups: 1 };
    // PyTorch's BatchNorm2d defaults, as in ToST's `conv_jump*_bn`.
    let norm = LayerKind::BatchNorm { eps: 1e-5, momentum: 0.1 };
    let layers = vec![
        Layer { name: b.name.clone(), kind: conv, input: b.input.clone(), output: mid.clone(), span },
        Layer { name: bn.clone(), kind: norm, input: mid, output: b.output.clone(), span },
    ];
    let param = |layer: &str, suffix: &str, kind, shape, init| Param {
        name: format!("{layer}.{suffix}"),
        layer: layer.to_string(),
        kind,
        shape,
        masked: false,
        target: None,
        init,
        added_by: Some(AddedBy::GhostSkip),
    };
    let params = vec![
        param(&b.name, "weight", ParamKind::Weight, vec![cout, cin, 1, 1], Init::Const(init)),
        param(&bn, "scale", ParamKind::BnScale, vec![cout], Init::Const(1.0)),
        param(&bn, "shift", ParamKind::BnShift, vec![cout], Init::Const(0.0)),
    ];
    (layers, params)
}

/// A residual around `body` whose shortcut is a ghost branch scaled by `fade`.
fn around(name: String, body: Vec<Layer>, input: Shape, output: Shape, branch: Vec<Layer>, fade: Ramp) -> Layer {
    let span = branch[0].span;
    Layer { name, kind: LayerKind::Residual { body, shortcut: branch, scale: Some(fade) }, input, output, span }
}

/// Ghost skips: each top-level residual block's body, split at its first activation, gets a
/// skip over each half (`BLOCK.ghost1` over the head, `BLOCK.ghost2` over the tail; one over the
/// whole body when it has no activation), each a 1x1 conv + BN shortcut scaled by `fade`. The
/// branch tensors go after the model's own (their initialisation draws nothing). Returns the
/// blocks no 1x1 convolution can bridge.
pub fn ghost_skip(plan: &mut Plan, init: f64, fade: Ramp) -> Vec<LowerError> {
    let mut errors = Vec::new();
    let mut added = Vec::new();
    for block in plan.model.layers.iter_mut() {
        let branches = match ghost_branches(block) {
            Ok(b) if !b.is_empty() => b,
            Ok(_) => continue,
            Err(e) => {
                errors.push(LowerError { span: block.span, msg: format!("block `{}`: {e}", block.name) });
                continue;
            }
        };
        let LayerKind::Residual { body, .. } = &mut block.kind else { continue };
        let mut built: Vec<Vec<Layer>> = Vec::new();
        for b in &branches {
            let (layers, params) = branch_layers(b, init, block.span);
            built.push(layers);
            added.extend(params);
        }
        let mut head = std::mem::take(body);
        let span_name = |i: usize| format!("{}.ghost{i}_skip", block.name);
        *body = match ghost_split(&head) {
            Some(k) => {
                let mut rest = head.split_off(k);
                let tail = rest.split_off(1);
                let act = rest.remove(0);
                let (b1, b2) = (built.remove(0), built.remove(0));
                let (a_in, a_out) = (act.input.clone(), act.output.clone());
                let last = tail.last().map_or(a_out.clone(), |l| l.output.clone());
                vec![
                    around(span_name(1), head, block.input.clone(), a_in, b1, fade),
                    act,
                    around(span_name(2), tail, a_out, last, b2, fade),
                ]
            }
            None => {
                let out = head.last().map_or(block.input.clone(), |l| l.output.clone());
                vec![around(span_name(1), head, block.input.clone(), out, built.remove(0), fade)]
            }
        };
    }
    plan.model.params.extend(added);
    errors
}

/// Ghost neurons: every ReLU becomes a blend from `soft` into ReLU along `ramp` (0 -> 1), in
/// nested blocks too.
pub fn ghost_neurons(layers: &mut [Layer], soft: Activation, ramp: Ramp) {
    super::for_each_layer_mut(layers, &mut |l| {
        if l.kind == LayerKind::Act(Activation::Relu) {
            l.kind = LayerKind::ActBlend { from: soft, to: Activation::Relu, ramp };
        }
    });
}
