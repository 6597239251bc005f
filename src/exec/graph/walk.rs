//! The forward walk: each node calls its backend op; residuals fork the activation and add the
//! branches (a ramped shortcut is scaled, and skipped where its ramp is 0).

use super::{Mode, Node, ReluUnits, SparseSlot};
use crate::exec::backend::act::{act, blend, dense, dropout};
use crate::exec::backend::conv::conv2d;
use crate::exec::backend::dyrelu::{dyrelu, scaled_weight, DyReluParams};
use crate::exec::backend::norm::{batch_norm, BnStats};
use crate::exec::backend::pool::{avg_pool, global_avg_pool, max_pool, relu_max_pool};
use crate::exec::backend::sparse::{sparse_chain, sparse_layer, ChainItem};
use crate::exec::backend::{add, carried, fork, read, scale, ParamTensor, Tape, Tensor2};
use crate::ir::plan::Activation;

/// What the walk starts from: a tensor, or an input carrier (`backend::input_carrier`) and the
/// rows it stands for, which a sparse chain at the start reads in place (anything else first
/// makes them a tensor; see [`reads_input_in_place`]).
pub(super) enum Input<'v, T: Tape> {
    Tensor(Tensor2<T>),
    Carried(Tensor2<T>, &'v [f32]),
}

/// `nodes` on `input`.
pub(super) fn run<T: Tape>(
    nodes: &[Node],
    p: &[ParamTensor],
    sp: &[SparseSlot],
    bn: &mut [(String, BnStats)],
    input: Input<T>,
    mode: &mut Mode,
    mut watch: Option<&mut [ReluUnits]>,
) -> Tensor2<T> {
    let (mut x, mut values) = match input {
        Input::Tensor(x) => (x, None),
        Input::Carried(x, v) => (x, Some(v)),
    };
    let mut i = 0;
    while i < nodes.len() {
        if watch.is_none() {
            if let Some((layers, input_grad, used)) = chain_at(&nodes[i..], p, sp) {
                // The chain reads a carrier's values in place when it needs no input gradient.
                x = match values.take() {
                    Some(v) if !input_grad => sparse_chain(x, Some(v), &layers, false),
                    Some(v) => sparse_chain(carried(x, v), None, &layers, true),
                    None => sparse_chain(x, None, &layers, input_grad),
                };
                i += used;
                continue;
            }
        }
        let node = &nodes[i];
        i += 1;
        if let Some(v) = values.take() {
            if matches!(node, Node::Flatten) {
                values = Some(v);
                continue;
            }
            x = carried(x, v);
        }
        x = match node {
            Node::Dense { w, b, input_grad } => match &sp[*w].active {
                Some(s) => sparse_layer(x, p[*w].matrix(), s, b.map(|b| p[b].vector()), *input_grad),
                None => dense(x, p[*w].matrix(), b.map(|b| p[b].vector()), *input_grad),
            },
            Node::Conv { w, b, geom, input_grad, scale: None } => match &sp[*w].active {
                Some(s) => sparse_layer(x, p[*w].matrix(), s, b.map(|b| p[b].vector()), *input_grad),
                None => conv2d(x, p[*w].matrix(), b.map(|b| p[b].vector()), *geom, *input_grad),
            },
            Node::Conv { w, b, geom, input_grad, scale: Some(s) } => {
                let (x, w) = scaled_weight(x, p[*w].matrix(), p[*s].vector());
                conv2d(x, &w, b.map(|b| p[b].vector()), *geom, *input_grad)
            }
            // A ReLU right before a max pool runs with it (not when watching: the ReLU's
            // output is what the watch counts).
            Node::Act(Activation::Relu, _) if watch.is_none() && matches!(nodes.get(i), Some(Node::MaxPool(_))) => {
                let Some(Node::MaxPool(g)) = nodes.get(i) else { unreachable!("matched above") };
                i += 1;
                relu_max_pool(x, *g)
            }
            Node::MaxPool(g) => max_pool(x, *g),
            Node::AvgPool(g) => avg_pool(x, *g),
            Node::GlobalAvgPool { c, hw } => global_avg_pool(x, *c, *hw),
            Node::BatchNorm { scale, shift, stats, geom } => {
                batch_norm(x, p[*scale].vector(), p[*shift].vector(), *geom, &mut bn[*stats].1, mode.train)
            }
            Node::Act(a, relu) => observe(act(x, *a), *relu, watch.as_deref_mut()),
            Node::ActBlend { from, to, ramp, relu } => {
                observe(blend(x, *from, *to, ramp.at(mode.step)), *relu, watch.as_deref_mut())
            }
            Node::DyRelu { fc1, fc2, c, hw, phase_out } => {
                let fc1 = (p[fc1.0].matrix(), p[fc1.1].vector());
                let fc2 = (p[fc2.0].matrix(), p[fc2.1].vector());
                dyrelu(x, &DyReluParams { fc1, fc2, c: *c, hw: *hw }, phase_out.at(mode.step))
            }
            // Activations are already `(batch, features)`; the geometry lives in the nodes.
            Node::Flatten => x,
            Node::Dropout(rate) if mode.train && mode.dropout && *rate > 0.0 => dropout(x, *rate, mode.rng),
            Node::Dropout(_) => x,
            Node::Residual { body, shortcut, scale: ramp } => {
                let k = ramp.map_or(1.0, |r| r.at(mode.step));
                if k == 0.0 {
                    run(body, p, sp, bn, Input::Tensor(x), mode, watch.as_deref_mut())
                } else {
                    // Both branches record on tapes that merge at the add; both add into x's grad.
                    let side = run(shortcut, p, sp, bn, Input::Tensor(fork(&x)), mode, watch.as_deref_mut());
                    let side = if k == 1.0 { side } else { scale(side, k) };
                    add(run(body, p, sp, bn, Input::Tensor(x), mode, watch.as_deref_mut()), side)
                }
            }
        };
    }
    // Nodes that were all flattens leave the rows still carried.
    match values {
        Some(v) => carried(x, v),
        None => x,
    }
}

/// Whether `nodes`, past any flattens, start with a sparse chain that needs no input gradient:
/// it can read the batch in place ([`Input::Carried`]).
pub(super) fn reads_input_in_place(nodes: &[Node], p: &[ParamTensor], sp: &[SparseSlot]) -> bool {
    let start = nodes.iter().take_while(|n| matches!(n, Node::Flatten)).count();
    chain_at(&nodes[start..], p, sp).is_some_and(|(_, input_grad, _)| !input_grad)
}

/// A sparse layer at the start of `nodes` with kept-weight gradients, and after it the sparse
/// layers, ReLUs and max pools that can run with it in one [`sparse_chain`] (flattens are
/// no-ops): the items, the chain's `input_grad`, and the nodes it replaces; `None` unless the
/// chain has two items or more.
fn chain_at<'a>(
    nodes: &[Node],
    p: &'a [ParamTensor],
    sp: &'a [SparseSlot],
) -> Option<(Vec<ChainItem<'a>>, bool, usize)> {
    let (mut items, mut input_grad, mut used) = (Vec::new(), true, 0);
    for (i, node) in nodes.iter().enumerate() {
        let item = match node {
            Node::Dense { w, b, input_grad: needs } | Node::Conv { w, b, input_grad: needs, scale: None, .. } => {
                let Some(sw) = sp[*w].active.as_ref() else {
                    break;
                };
                if items.is_empty() {
                    input_grad = *needs;
                }
                ChainItem::Layer { sw, bias: b.map(|b| p[b].vector()) }
            }
            Node::Act(Activation::Relu, _) if !items.is_empty() => ChainItem::Relu,
            Node::MaxPool(g) if !items.is_empty() => ChainItem::MaxPool(*g),
            Node::Flatten if !items.is_empty() => {
                used = i + 1;
                continue;
            }
            _ => break,
        };
        items.push(item);
        if !ChainItem::fits(&items) {
            items.pop();
            break;
        }
        used = i + 1;
    }
    (items.len() >= 2).then_some((items, input_grad, used))
}

/// `y` unchanged; records which of ReLU layer `relu`'s units fire in it when watching.
fn observe<T: Tape>(y: Tensor2<T>, relu: Option<usize>, watch: Option<&mut [ReluUnits]>) -> Tensor2<T> {
    if let (Some(i), Some(relus)) = (relu, watch) {
        relus[i].observe(&read(&y));
    }
    y
}
