//! The network as a tree of nodes over dfdx tensors. In: the plan's layers and params.
//! Out: [`Net`], whose `forward` runs a batch `(batch, c*h*w)` to logits `(batch, classes)`,
//! recording backward ops when the input carries a tape.

use dfdx::prelude::*;
use rand_chacha::ChaCha8Rng;

use super::east::{scaled_weight, DyRelu, EastConfig};
use super::error::RunError;
use super::ops::act::{act, dense, dropout};
use super::ops::conv::{conv2d, ConvGeom};
use super::ops::norm::{batch_norm, BnGeom, BnStats};
use super::ops::pool::{avg_pool, global_avg_pool, max_pool, PoolGeom};
use super::ops::{Grads, Tensor1, Tensor2};
use super::tost::{self, ghost_act, run_ghost_block, Blend, GhostBlock};
use super::Clock;
use crate::ir::plan::{Activation, Layer, LayerKind, Model, ParamKind, Technique};

/// A parameter as dfdx sees it: weights as `(out, fan_in)` matrices, the rest as vectors.
pub enum ParamTensor {
    Matrix(Tensor2),
    Vector(Tensor1),
}

impl ParamTensor {
    fn new(dev: &Cpu, kind: ParamKind, shape: &[usize]) -> ParamTensor {
        let n: usize = shape.iter().product();
        match kind {
            ParamKind::Weight => ParamTensor::Matrix(dev.zeros_like(&(shape[0], n / shape[0].max(1)))),
            _ => ParamTensor::Vector(dev.zeros_like(&(n,))),
        }
    }

    pub fn copy_from(&mut self, src: &[f32]) {
        match self {
            ParamTensor::Matrix(t) => t.copy_from(src),
            ParamTensor::Vector(t) => t.copy_from(src),
        }
    }

    /// This parameter's gradient after `backward` (zeros if it took no part).
    pub fn grad<'g>(&self, grads: &'g mut Grads) -> Result<&'g mut [f32], CpuError> {
        Ok(match self {
            ParamTensor::Matrix(t) => grads.get_or_alloc_mut(t)?,
            ParamTensor::Vector(t) => grads.get_or_alloc_mut(t)?,
        })
    }

    // The builder pairs each node with tensors of the right kind, so a mismatch is a bug here.
    pub(super) fn matrix(&self) -> &Tensor2 {
        match self {
            ParamTensor::Matrix(t) => t,
            ParamTensor::Vector(_) => unreachable!("weights are built as matrices"),
        }
    }
    pub(super) fn vector(&self) -> &Tensor1 {
        match self {
            ParamTensor::Vector(t) => t,
            ParamTensor::Matrix(_) => unreachable!("vectors are built as vectors"),
        }
    }
}

/// One layer; `usize` fields index `Net::params` (the plan's param order) or `Net::bn`.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Dense {
        w: usize,
        b: Option<usize>,
    },
    /// `scale`: a shared weight (`w` is the owner's tensor) times this scalar param.
    Conv {
        w: usize,
        b: Option<usize>,
        geom: ConvGeom,
        input_grad: bool,
        scale: Option<usize>,
    },
    MaxPool(PoolGeom),
    AvgPool(PoolGeom),
    GlobalAvgPool {
        c: usize,
        hw: usize,
    },
    BatchNorm {
        scale: usize,
        shift: usize,
        stats: usize,
        geom: BnGeom,
    },
    Act(Activation),
    DyRelu(DyRelu),
    Flatten,
    Dropout(f32),
    Residual {
        body: Vec<Node>,
        shortcut: Vec<Node>,
    },
    // ToST (`tost.rs`): a ReLU under ghost neurons, a residual block with ghost skip branches.
    Ghost {
        soft: Activation,
        blend: Blend,
    },
    GhostSkip(Box<GhostBlock>),
}

pub struct Net {
    pub nodes: Vec<Node>,
    pub params: Vec<ParamTensor>,
    /// Running statistics per batchnorm layer, with the layer's name.
    pub bn: Vec<(String, BnStats)>,
}

/// Forward-pass context: training mode (batch statistics, dropout), the dropout rng and the
/// optimizer step (techniques that change over training read it).
pub struct Mode<'a> {
    pub train: bool,
    pub rng: &'a mut ChaCha8Rng,
    pub step: u64,
}

impl Net {
    /// The network of `model` with the `techniques` that change its graph; `clock` resolves
    /// their windows to steps.
    pub fn build(model: &Model, techniques: &[Technique], clock: Clock, dev: &Cpu) -> Result<Net, RunError> {
        let east = EastConfig::new(techniques, clock);
        let params = model.params.iter().map(|p| ParamTensor::new(dev, p.kind, &p.shape)).collect();
        let mut net = Net { nodes: Vec::new(), params, bn: Vec::new() };
        let nodes = build_nodes(&model.layers, model, &mut net.bn, true, east)?;
        net.nodes = tost::apply(nodes, model, techniques, clock, &mut net.bn)?;
        Ok(net)
    }

    pub fn forward<T: Tape<f32, Cpu>>(&mut self, x: Tensor2<T>, mode: &mut Mode) -> Tensor2<T> {
        run(&self.nodes, &self.params, &mut self.bn, x, mode)
    }
}

/// The index of `LAYER.suffix`; a weight shared by `weight_sharing` resolves to its owner's.
fn param(model: &Model, layer: &Layer, suffix: &str) -> Result<usize, RunError> {
    let name = format!("{}.{suffix}", layer.name);
    let owner = model.shared.iter().find(|s| s.param == name).map_or(&name, |s| &s.owner);
    model.params.iter().position(|p| &p.name == owner).ok_or_else(|| RunError::Plan {
        msg: format!("layer `{}` has no parameter `{name}`", layer.name),
        span: layer.span,
    })
}

/// The scalar of a conv whose weight is shared, if it is.
fn shared_scale(model: &Model, layer: &Layer) -> Result<Option<usize>, RunError> {
    let name = format!("{}.weight", layer.name);
    match model.shared.iter().find(|s| s.param == name) {
        None => Ok(None),
        Some(s) => model.params.iter().position(|p| p.name == s.scale).map(Some).ok_or_else(|| RunError::Plan {
            msg: format!("shared weight `{name}` has no scale `{}`", s.scale),
            span: layer.span,
        }),
    }
}

/// `[c, h, w]` of an image-shaped activation (`[n]` counts as `n` channels of 1x1).
fn chw(shape: &[usize]) -> (usize, usize, usize) {
    match shape {
        [c, h, w] => (*c, *h, *w),
        _ => (shape.iter().product(), 1, 1),
    }
}

fn build_nodes(
    layers: &[Layer],
    model: &Model,
    bn: &mut Vec<(String, BnStats)>,
    top: bool,
    east: EastConfig,
) -> Result<Vec<Node>, RunError> {
    let mut nodes = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let (c, h, w) = chw(&l.input);
        let opt = |bias: bool, s| {
            if bias {
                param(model, l, s).map(Some)
            } else {
                Ok(None)
            }
        };
        nodes.push(match &l.kind {
            LayerKind::Dense { bias, .. } => Node::Dense { w: param(model, l, "weight")?, b: opt(*bias, "bias")? },
            LayerKind::Conv { out, kernel, stride, padding, bias, groups } => {
                // The checker guarantees this (E0407); a hand-built plan might not.
                if *groups == 0 || c % groups != 0 || out % groups != 0 {
                    return Err(RunError::Plan {
                        msg: format!("layer `{}`: {groups} groups do not divide {c} -> {out} channels", l.name),
                        span: l.span,
                    });
                }
                Node::Conv {
                    w: param(model, l, "weight")?,
                    b: opt(*bias, "bias")?,
                    geom: ConvGeom { c, h, w, out: *out, k: *kernel, stride: *stride, pad: *padding, groups: *groups },
                    // The network's input needs no gradient.
                    input_grad: !(top && i == 0),
                    scale: shared_scale(model, l)?,
                }
            }
            LayerKind::MaxPool { size, stride } => Node::MaxPool(PoolGeom { c, h, w, size: *size, stride: *stride }),
            LayerKind::AvgPool { size, stride } => Node::AvgPool(PoolGeom { c, h, w, size: *size, stride: *stride }),
            LayerKind::GlobalAvgPool => Node::GlobalAvgPool { c, hw: h * w },
            LayerKind::BatchNorm { eps, momentum } => {
                bn.push((l.name.clone(), BnStats::new(c)));
                let geom = BnGeom { c, hw: h * w, eps: *eps as f32, momentum: *momentum as f32 };
                Node::BatchNorm {
                    scale: param(model, l, "scale")?,
                    shift: param(model, l, "shift")?,
                    stats: bn.len() - 1,
                    geom,
                }
            }
            LayerKind::Act(Activation::Relu) if east.dyrelu.is_some() => {
                Node::DyRelu(DyRelu::build(model, l, east.dyrelu.unwrap_or_default())?)
            }
            LayerKind::Act(a) => Node::Act(*a),
            LayerKind::Flatten => Node::Flatten,
            LayerKind::Dropout { p } => Node::Dropout(*p as f32),
            LayerKind::Residual { body, shortcut } => Node::Residual {
                body: build_nodes(body, model, bn, false, east)?,
                shortcut: build_nodes(shortcut, model, bn, false, east)?,
            },
        });
    }
    Ok(nodes)
}

pub(super) fn run<T: Tape<f32, Cpu>>(
    nodes: &[Node],
    p: &[ParamTensor],
    bn: &mut [(String, BnStats)],
    x: Tensor2<T>,
    mode: &mut Mode,
) -> Tensor2<T> {
    let mut x = x;
    for node in nodes {
        x = match node {
            Node::Dense { w, b } => dense(x, p[*w].matrix(), b.map(|b| p[b].vector())),
            Node::Conv { w, b, geom, input_grad, scale: None } => {
                conv2d(x, p[*w].matrix(), b.map(|b| p[b].vector()), *geom, *input_grad)
            }
            Node::Conv { w, b, geom, input_grad, scale: Some(s) } => {
                let (x, w) = scaled_weight(x, p[*w].matrix(), p[*s].vector());
                conv2d(x, &w, b.map(|b| p[b].vector()), *geom, *input_grad)
            }
            Node::MaxPool(g) => max_pool(x, *g),
            Node::AvgPool(g) => avg_pool(x, *g),
            Node::GlobalAvgPool { c, hw } => global_avg_pool(x, *c, *hw),
            Node::BatchNorm { scale, shift, stats, geom } => {
                batch_norm(x, p[*scale].vector(), p[*shift].vector(), *geom, &mut bn[*stats].1, mode.train)
            }
            Node::Act(a) => act(x, *a),
            Node::DyRelu(d) => d.forward(x, p, mode.step),
            // Activations are already `(batch, features)`; the geometry lives in the nodes.
            Node::Flatten => x,
            Node::Dropout(rate) if mode.train && *rate > 0.0 => dropout(x, *rate, mode.rng),
            Node::Dropout(_) => x,
            Node::Residual { body, shortcut } => {
                // Both branches record on tapes that merge at the add; both add into x's grad.
                let side = run(shortcut, p, bn, x.retaped::<T>(), mode);
                run(body, p, bn, x, mode) + side
            }
            Node::Ghost { soft, blend } => ghost_act(x, *soft, blend.relu_weight(mode.step)),
            Node::GhostSkip(block) => run_ghost_block(block, p, bn, x, mode),
        };
    }
    x
}
