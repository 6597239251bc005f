//! ToST's graph techniques (Jaiswal et al., ICML 2022) in the layer tree. In: the nodes built
//! from the plan's layers, the plan's techniques and the run's [`Clock`]. Out: the nodes with
//! ghost neurons (every ReLU a soft activation early in training, blended linearly into ReLU)
//! and ghost skip branches (per residual block, 1x1 conv + BN branches faded out and then no
//! longer evaluated).
//!
//! The official code (VITA-Group/ToST) trains with the soft activation throughout
//! (`soft_activation/models/resnet.py`) and keeps the branches at full weight
//! (`skip_connection/models/resnet_modified.py`; `resnet_modified2.py` has an `alpha` factor
//! that no script varies). The switch back to ReLU and the fade follow the paper's description
//! instead, so that the trained network is a plain sparse ReLU ResNet.

use dfdx::prelude::*;

use super::error::RunError;
use super::net::{run, Mode, Node, ParamTensor};
use super::ops::act::{act, activation, pointwise};
use super::ops::conv::ConvGeom;
use super::ops::norm::{BnGeom, BnStats};
use super::ops::Tensor2;
use super::Clock;
use crate::ir::lower::{ghost_branches, ghost_split, GhostBranch};
use crate::ir::plan::{Activation, Layer, LayerKind, Model, Technique};

/// Ghost neurons' schedule: the soft activation until `start`, then
/// `(1 - t) soft(x) + t relu(x)` with `t = (step - start) / (end - start)`, plain ReLU from `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blend {
    pub start: u64,
    pub end: u64,
}

impl Blend {
    /// The weight `t` of ReLU at `step`, in [0, 1].
    pub fn relu_weight(&self, step: u64) -> f32 {
        if step >= self.end {
            1.0
        } else if step < self.start {
            0.0
        } else {
            (step - self.start) as f32 / (self.end - self.start) as f32
        }
    }
}

/// Ghost skips' fade: the branch output is multiplied by 1 until `start`, by
/// `(end - step) / (end - start)` inside the window, and the branch is gone from `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fade {
    pub start: u64,
    pub end: u64,
}

impl Fade {
    pub fn factor(&self, step: u64) -> f32 {
        if step >= self.end {
            0.0
        } else if step <= self.start {
            1.0
        } else {
            (self.end - step) as f32 / (self.end - self.start) as f32
        }
    }
}

/// A residual block with ghost branches. The body is split at its first activation `act`:
/// branch 0 adds to the output of `head` (from the block input), branch 1 to the output of
/// `tail` (from the activation's output). Without an activation `head` is the whole body and
/// the one branch spans it.
#[derive(Debug, Clone, PartialEq)]
pub struct GhostBlock {
    pub head: Vec<Node>,
    pub act: Vec<Node>,
    pub tail: Vec<Node>,
    pub shortcut: Vec<Node>,
    /// Each branch: a 1x1 `Node::Conv` and a `Node::BatchNorm`.
    pub branches: Vec<Vec<Node>>,
    pub fade: Fade,
}

/// `(1 - t) soft(x) + t relu(x)`; exactly dfdx's ReLU at `t = 1` and the soft activation at 0.
pub fn ghost_act<T: Tape<f32, Cpu>>(x: Tensor2<T>, soft: Activation, t: f32) -> Tensor2<T> {
    if t >= 1.0 {
        return x.relu();
    }
    if t <= 0.0 {
        return act(x, soft);
    }
    pointwise(x, |v| {
        let (s, ds) = activation(soft, v);
        let (r, dr) = activation(Activation::Relu, v);
        ((1.0 - t) * s + t * r, (1.0 - t) * ds + t * dr)
    })
}

/// Forward of a ghost block; after the fade only the plain block runs.
pub fn run_ghost_block<T: Tape<f32, Cpu>>(
    b: &GhostBlock,
    p: &[ParamTensor],
    bn: &mut [(String, BnStats)],
    x: Tensor2<T>,
    mode: &mut Mode,
) -> Tensor2<T> {
    let side = run(&b.shortcut, p, bn, x.retaped::<T>(), mode);
    let f = b.fade.factor(mode.step);
    let branch = |i: usize, input: Tensor2<T>, bn: &mut [(String, BnStats)], mode: &mut Mode| {
        let y = run(&b.branches[i], p, bn, input, mode);
        if f == 1.0 {
            y
        } else {
            y * f
        }
    };
    let body = if f == 0.0 || b.branches.is_empty() {
        let h = run(&b.head, p, bn, x, mode);
        let m = run(&b.act, p, bn, h, mode);
        run(&b.tail, p, bn, m, mode)
    } else if b.branches.len() == 1 {
        let xb = x.retaped::<T>();
        let h = run(&b.head, p, bn, x, mode);
        h + branch(0, xb, bn, mode)
    } else {
        let xb = x.retaped::<T>();
        let h = run(&b.head, p, bn, x, mode);
        let h = h + branch(0, xb, bn, mode);
        let m = run(&b.act, p, bn, h, mode);
        let mb = m.retaped::<T>();
        let t = run(&b.tail, p, bn, m, mode);
        t + branch(1, mb, bn, mode)
    };
    body + side
}

/// Rewrites the top-level `nodes` (one per layer of `model`) for the plan's ToST techniques.
pub fn apply(
    mut nodes: Vec<Node>,
    model: &Model,
    techniques: &[Technique],
    clock: Clock,
    bn: &mut Vec<(String, BnStats)>,
) -> Result<Vec<Node>, RunError> {
    for t in techniques {
        match t {
            Technique::GhostSkip { fade_start, fade_end, span, .. } => {
                let fade = Fade { start: clock.at(*fade_start), end: clock.at(*fade_end) };
                let plan_error = |msg: String| RunError::Plan { msg, span: *span };
                for (layer, node) in model.layers.iter().zip(nodes.iter_mut()) {
                    if let Node::Residual { body, shortcut } = node {
                        let branches = ghost_branches(layer).map_err(plan_error)?;
                        let built = branches.iter().map(|g| branch_nodes(g, model, bn)).collect::<Result<_, _>>()?;
                        let mut head = std::mem::take(body);
                        let (act, tail) = match ghost_split(residual_body(layer)) {
                            Some(k) => {
                                let mut rest = head.split_off(k);
                                let tail = rest.split_off(1);
                                (rest, tail)
                            }
                            None => (vec![], vec![]),
                        };
                        let shortcut = std::mem::take(shortcut);
                        *node =
                            Node::GhostSkip(Box::new(GhostBlock { head, act, tail, shortcut, branches: built, fade }));
                    }
                }
            }
            Technique::GhostNeurons { activation, until, blend, .. } => {
                let start = clock.at(*until);
                let end = start + clock.at(*blend);
                ghost_neurons(&mut nodes, *activation, Blend { start, end });
            }
            _ => {}
        }
    }
    Ok(nodes)
}

fn residual_body(layer: &Layer) -> &[Layer] {
    match &layer.kind {
        LayerKind::Residual { body, .. } => body,
        _ => &[],
    }
}

/// Every ReLU in `nodes` (nested blocks and ghost branches included) becomes a ghost neuron.
fn ghost_neurons(nodes: &mut [Node], soft: Activation, blend: Blend) {
    for n in nodes {
        match n {
            Node::Act(Activation::Relu) => *n = Node::Ghost { soft, blend },
            Node::Residual { body, shortcut } => {
                ghost_neurons(body, soft, blend);
                ghost_neurons(shortcut, soft, blend);
            }
            Node::GhostSkip(b) => {
                for list in [&mut b.head, &mut b.act, &mut b.tail, &mut b.shortcut] {
                    ghost_neurons(list, soft, blend);
                }
            }
            _ => {}
        }
    }
}

/// The conv and batchnorm nodes of one ghost branch, over the params lowering added.
fn branch_nodes(g: &GhostBranch, model: &Model, bn: &mut Vec<(String, BnStats)>) -> Result<Vec<Node>, RunError> {
    let index = |name: String| {
        model.params.iter().position(|p| p.name == name).ok_or_else(|| RunError::Plan {
            msg: format!("ghost skip parameter `{name}` is missing from the plan"),
            span: model.span,
        })
    };
    let chw = |s: &[usize]| match s {
        [c, h, w] => (*c, *h, *w),
        _ => (s.iter().product(), 1, 1),
    };
    let ((c, h, w), (out, oh, ow)) = (chw(&g.input), chw(&g.output));
    let geom = ConvGeom { c, h, w, out, k: 1, stride: g.stride, pad: 0, groups: 1 };
    let bn_name = format!("{}_bn", g.name);
    bn.push((bn_name.clone(), BnStats::new(out)));
    // PyTorch's BatchNorm2d defaults, as in ToST's `conv_jump*_bn`.
    let bn_geom = BnGeom { c: out, hw: oh * ow, eps: 1e-5, momentum: 0.1 };
    Ok(vec![
        Node::Conv { w: index(format!("{}.weight", g.name))?, b: None, geom, input_grad: true, scale: None },
        Node::BatchNorm {
            scale: index(format!("{bn_name}.scale"))?,
            shift: index(format!("{bn_name}.shift"))?,
            stats: bn.len() - 1,
            geom: bn_geom,
        },
    ])
}

impl super::train::Trainer<'_> {
    /// Initialisation the techniques own before the first step: GradInit (it sees the ghost
    /// branches as they start, see [`fill_ghost_init`]).
    pub(super) fn init_techniques(&mut self) -> Result<(), RunError> {
        self.gradinit()
    }
}

/// Ghost skip branch weights are filled with `init` (ToST's `conv_jump.weight.data.fill_(0.0001)`;
/// their batchnorms start at scale 1, shift 0). Runs right after the weights are drawn, so masks
/// scored from the network (SNIP, GraSP, SynFlow) see the branches as training starts them.
pub(super) fn fill_ghost_init(plan: &crate::ir::plan::Plan, params: &mut [super::params::ParamBuf]) {
    let init = plan.techniques.iter().find_map(|t| match t {
        Technique::GhostSkip { init, .. } => Some(*init as f32),
        _ => None,
    });
    if let Some(init) = init {
        for p in params.iter_mut() {
            if p.spec.added_by == Some("ghost_skip") && p.spec.kind == crate::ir::plan::ParamKind::Weight {
                p.raw.fill(init);
            }
        }
    }
}
