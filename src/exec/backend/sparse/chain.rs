//! Consecutive sparse dense layers (each optionally followed by a ReLU) as one op that keeps
//! the activations batch-contiguous from the first layer's input to the last layer's output:
//! one layout change in and one out per direction, where [`super::sparse_layer`] pays two per
//! layer (and dfdx's ReLU a copy of each activation). In: `(batch, in)`. Out: `(batch, out)`,
//! the same values and gradients, bit for bit, as the layers run one by one through
//! [`super::sparse_layer`] and [`super::super::act::act`].
//!
//! The padding lanes of the layout carry garbage forward (a lane is one example, and the bias
//! lands in every lane) but zeros backward: the output gradient's padding lanes are zero, so
//! every product back from it is zero there too, and the weight and bias gradients sum zeros.

use std::sync::Arc;

use dfdx::prelude::*;

use super::{add_input_grad, from_batch_minor, give, input_layout, output_grad_layout, take, SparseWeight, LANES};
use crate::exec::backend::{add_into, Param1, Tensor2};

/// One layer of a [`sparse_chain`]: a dense layer on the sparse kernels. Its weight takes part
/// through `sw` alone: the kept gradients go to [`SparseWeight::kept_grad`] (so
/// `sw.dense_weight_grad` must be off), never to the weight tensor's gradient.
pub struct ChainLayer<'a> {
    pub sw: &'a Arc<SparseWeight>,
    pub bias: Option<&'a Param1>,
    /// Whether a ReLU follows the layer.
    pub relu: bool,
}

/// `layers` in sequence on `x`; `input_grad: false` skips `dL/dx`.
pub fn sparse_chain<T: Tape<f32, Cpu>>(x: Tensor2<T>, layers: &[ChainLayer], input_grad: bool) -> Tensor2<T> {
    assert!(!layers.is_empty(), "a chain of at least one layer");
    for (l, next) in layers.iter().zip(layers.iter().skip(1)) {
        assert_eq!(l.sw.geom.out, next.sw.geom.c, "chained layers' sizes");
    }
    for l in layers {
        let g = l.sw.geom;
        assert!(g.h == 1 && g.w == 1 && g.k == 1 && !l.sw.dense_weight_grad, "a chain of sparse dense layers");
    }
    let (x, mut tape) = x.split_tape();
    let batch = x.shape().0;
    let first = layers[0].sw.geom;
    assert_eq!(x.shape().1, first.c, "sparse chain input size");
    let bp = batch.div_ceil(LANES) * LANES;
    let mut xs = take(batch * first.c, false);
    x.copy_into(&mut xs);
    // acts[l]: layer l's input; acts[len]: the output (after its ReLU, if any).
    let mut acts = vec![input_layout(&first, &xs, batch, bp)];
    give(xs);
    for l in layers {
        let mut yt = l.sw.forward(&acts[acts.len() - 1], l.bias.map(|b| b.values().as_slice()), bp);
        if l.relu {
            yt.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        acts.push(yt);
    }
    let rows = layers[layers.len() - 1].sw.geom.out;
    let mut y = vec![0.0; batch * rows];
    from_batch_minor(&acts[layers.len()], rows, bp, &mut y);
    let out = x.device().tensor_from_vec(y, (batch, rows));
    if !T::OWNS_TAPE {
        acts.into_iter().for_each(give);
        return out.put_tape(tape);
    }
    let (xg, yg) = (x.ghost(), out.ghost());
    let sws: Vec<Arc<SparseWeight>> = layers.iter().map(|l| Arc::clone(l.sw)).collect();
    let relus: Vec<bool> = layers.iter().map(|l| l.relu).collect();
    let bias_ghosts: Vec<_> = layers.iter().map(|l| l.bias.map(|b| b.tensor().ghost())).collect();
    tape.add_backward_op(move |grads| {
        let mut dyt = output_grad_layout(grads.get_or_alloc_mut(&yg)?, rows, batch, bp);
        for l in (0..sws.len()).rev() {
            // dyt: the gradient of layer l's output after its ReLU; through the ReLU.
            if relus[l] {
                dyt.iter_mut().zip(&acts[l + 1]).for_each(|(d, y)| *d = if *y > 0.0 { *d } else { 0.0 });
            }
            let (dw, db) = sws[l].weight_grad(&dyt, &acts[l], bp, true);
            *sws[l].kept_grad.lock().unwrap_or_else(|e| e.into_inner()) = dw;
            if let Some(bg) = &bias_ghosts[l] {
                add_into(grads.get_or_alloc_mut(bg)?, &db);
            }
            if l > 0 || input_grad {
                let dxt = sws[l].input_grad(&dyt, bp);
                give(std::mem::replace(&mut dyt, dxt));
            }
        }
        if input_grad {
            add_input_grad(&first, &dyt, bp, grads.get_or_alloc_mut(&xg)?);
        }
        give(dyt);
        std::mem::take(&mut acts).into_iter().for_each(give);
        Ok(())
    });
    out.put_tape(tape)
}
