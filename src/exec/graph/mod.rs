//! The network as a tree of nodes over the backend's tensors. In: the plan's layers and params
//! (techniques already lowered into them) and the run's [`Clock`]. Out: [`Graph`], which runs a
//! batch `(batch, c*h*w)` to logits `(batch, classes)` (`walk`) and is the one way to get a loss
//! and gradients or an evaluation from the network (`batch`). The graph knows no paper: every
//! node is a layer kind of the plan.

mod batch;
mod sparse;
mod walk;

pub use batch::{Batch, Objective, ParamGrad};
pub use sparse::SparseSlot;

use rand_chacha::ChaCha8Rng;

use super::backend::conv::ConvGeom;
use super::backend::norm::{BnGeom, BnStats};
use super::backend::pool::PoolGeom;
use super::backend::{Device, ParamTensor};
use super::error::RunError;
use crate::ir::plan::{chw, Activation, Clock, Layer, LayerKind, Model, StepRamp};

/// One layer; `usize` fields index `Graph::params` (the plan's param order) or `Graph::bn`.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `input_grad: false` skips `dL/dx` (the network's input needs none).
    Dense {
        w: usize,
        b: Option<usize>,
        input_grad: bool,
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
    /// `relu`: the index in `Graph::relus` of a ReLU layer (watched for dead units).
    Act(Activation, Option<usize>),
    ActBlend {
        from: Activation,
        to: Activation,
        ramp: StepRamp,
        relu: Option<usize>,
    },
    DyRelu {
        fc1: (usize, usize),
        fc2: (usize, usize),
        c: usize,
        hw: usize,
        phase_out: StepRamp,
    },
    Flatten,
    Dropout(f32),
    Residual {
        body: Vec<Node>,
        shortcut: Vec<Node>,
        scale: Option<StepRamp>,
    },
}

pub struct Graph {
    pub nodes: Vec<Node>,
    pub params: Vec<ParamTensor>,
    /// Running statistics per batchnorm layer, with the layer's name.
    pub bn: Vec<(String, BnStats)>,
    /// Per param: whether and how its layer runs on sparse kernels ([`Graph::load_step`]).
    pub sparse: Vec<SparseSlot>,
    /// The ReLU layers (and activation blends that end as ReLU), in build order.
    pub relus: Vec<ReluUnits>,
    /// Whether [`Graph::loss`] records which ReLU units fire ([`Graph::watch_relus`]).
    watching: bool,
    pub dev: Device,
}

/// A ReLU layer's units (a conv activation's channels, a dense activation's features) and
/// which of them fired (output > 0) on some example since [`Graph::watch_relus`]. A unit that
/// never fires on a whole split is dead: it passes no gradient to the layer before it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReluUnits {
    pub name: String,
    pub c: usize,
    pub hw: usize,
    fired: Vec<bool>,
}

impl ReluUnits {
    pub fn new(name: &str, c: usize, hw: usize) -> ReluUnits {
        ReluUnits { name: name.to_string(), c, hw, fired: vec![false; c] }
    }

    /// Starts over: no unit has fired.
    pub fn watch(&mut self) {
        self.fired = vec![false; self.c];
    }

    /// Marks the units firing in `y`, a batch `(b, c*hw)` of this layer's outputs.
    pub fn observe(&mut self, y: &[f32]) {
        let unit = self.hw.max(1);
        for example in y.chunks_exact(self.c * unit) {
            for (fired, plane) in self.fired.iter_mut().zip(example.chunks_exact(unit)) {
                *fired = *fired || plane.iter().any(|&v| v > 0.0);
            }
        }
    }

    /// The fraction of units that have not fired.
    pub fn dead(&self) -> f64 {
        self.fired.iter().filter(|f| !**f).count() as f64 / self.c.max(1) as f64
    }
}

/// Forward-pass context: training mode (batch statistics), dropout (off for GradInit and the
/// pruning scores' fixed networks), the dropout rng and the optimizer step (ramps read it).
pub struct Mode<'a> {
    pub train: bool,
    pub dropout: bool,
    pub rng: &'a mut ChaCha8Rng,
    pub step: u64,
}

impl Graph {
    /// The network of `model`; `clock` resolves its ramps to steps.
    pub fn build(model: &Model, clock: Clock) -> Result<Graph, RunError> {
        let dev = Device::default();
        let params = model.params.iter().map(|p| ParamTensor::new(&dev, p.kind, &p.shape)).collect();
        let (mut bn, mut relus) = (Vec::new(), Vec::new());
        let nodes = build_nodes(&model.layers, model, &mut bn, &mut relus, true, clock)?;
        let sparse = sparse::slots(&nodes, model);
        Ok(Graph { nodes, params, bn, sparse, relus, watching: false, dev })
    }

    /// From now on [`Graph::loss`] records which ReLU units fire, starting from none.
    pub fn watch_relus(&mut self) {
        self.watching = true;
        self.relus.iter_mut().for_each(ReluUnits::watch);
    }

    /// Stops recording; `relus` keep what was seen.
    pub fn unwatch_relus(&mut self) {
        self.watching = false;
    }

    /// Writes each param's values (the plan's order) into the backend's tensors; every layer
    /// runs dense until the next [`Graph::load_step`].
    pub fn load(&mut self, values: &[&[f32]]) {
        for (t, v) in self.params.iter_mut().zip(values) {
            t.copy_from(v);
        }
        self.sparse.iter_mut().for_each(SparseSlot::reset);
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

fn build_nodes(
    layers: &[Layer],
    model: &Model,
    bn: &mut Vec<(String, BnStats)>,
    relus: &mut Vec<ReluUnits>,
    top: bool,
    clock: Clock,
) -> Result<Vec<Node>, RunError> {
    let mut nodes = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let (c, h, w) = chw(&l.input);
        // The network's input (flattened or not) needs no gradient.
        let network_input = top && layers[..i].iter().all(|p| matches!(p.kind, LayerKind::Flatten));
        let opt = |bias: bool, s| {
            if bias {
                param(model, l, s).map(Some)
            } else {
                Ok(None)
            }
        };
        nodes.push(match &l.kind {
            LayerKind::Dense { bias, .. } => {
                Node::Dense { w: param(model, l, "weight")?, b: opt(*bias, "bias")?, input_grad: !network_input }
            }
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
                    input_grad: !network_input,
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
            LayerKind::Act(a) => Node::Act(*a, watch_relu(*a, l, relus)),
            LayerKind::ActBlend { from, to, ramp } => {
                Node::ActBlend { from: *from, to: *to, ramp: ramp.steps(clock), relu: watch_relu(*to, l, relus) }
            }
            LayerKind::DyRelu { phase_out, .. } => Node::DyRelu {
                fc1: (param(model, l, "dyrelu.fc1.weight")?, param(model, l, "dyrelu.fc1.bias")?),
                fc2: (param(model, l, "dyrelu.fc2.weight")?, param(model, l, "dyrelu.fc2.bias")?),
                c,
                hw: h * w,
                phase_out: phase_out.steps(clock),
            },
            LayerKind::Flatten => Node::Flatten,
            LayerKind::Dropout { p } => Node::Dropout(*p as f32),
            LayerKind::Residual { body, shortcut, scale } => Node::Residual {
                body: build_nodes(body, model, bn, relus, false, clock)?,
                shortcut: build_nodes(shortcut, model, bn, relus, false, clock)?,
                scale: scale.map(|r| r.steps(clock)),
            },
        });
    }
    Ok(nodes)
}

/// The index of layer `l` in `relus` when its activation `a` is ReLU (registered here).
fn watch_relu(a: Activation, l: &Layer, relus: &mut Vec<ReluUnits>) -> Option<usize> {
    (a == Activation::Relu).then(|| {
        let (c, h, w) = chw(&l.input);
        relus.push(ReluUnits::new(&l.name, c, h * w));
        relus.len() - 1
    })
}
