//! A run of sparse layers (dense layers and unpadded convolutions after the first), ReLUs and
//! max pools as one op that keeps the activations batch-contiguous (`[row][bp]`) from the first
//! layer's input to the last item's output: one layout change in and one out per direction,
//! where [`super::sparse_layer`] pays two per layer and the dense ReLU and pooling ops a copy of
//! each activation. In: `(batch, c*h*w)`. Out: `(batch, rows)`, the same values and gradients,
//! bit for bit, as the items run one by one through [`super::sparse_layer`],
//! [`super::super::act::act`] and [`super::super::pool::max_pool`].
//!
//! The padding lanes of the layout carry garbage forward (a lane is one example, and the bias
//! lands in every lane) but zeros backward: the output gradient's padding lanes are zero, so
//! every product back from it is zero there too, and the weight and bias gradients sum zeros.

use std::sync::Arc;

use dfdx::prelude::*;
use rayon::prelude::*;

use super::kernels::{self, Isa};
use super::{
    add_input_grad, from_batch_minor, give, input_layout, min_len, output_grad_layout, take, SparseWeight, LANES,
};
use crate::exec::backend::pool::PoolGeom;
use crate::exec::backend::{add_into, Param1, Tensor2};

/// One item of a [`sparse_chain`].
pub enum ChainItem<'a> {
    /// A dense layer or convolution on the sparse kernels. Its weight takes part through `sw`
    /// alone: the kept gradients go to [`SparseWeight::kept_grad`] (so `sw.dense_weight_grad`
    /// must be off), never to the weight tensor's gradient. After the first item a convolution
    /// must be unpadded (its input is the previous item's output as it is).
    Layer {
        sw: &'a Arc<SparseWeight>,
        bias: Option<&'a Param1>,
    },
    Relu,
    /// At most 256 elements per window (the argmax is a byte per output and example).
    MaxPool(PoolGeom),
}

impl ChainItem<'_> {
    /// Rows of the output when the input has `rows`; `None` when the item cannot take them.
    fn out_rows(&self, rows: usize, first: bool) -> Option<usize> {
        match self {
            ChainItem::Layer { sw, .. } => {
                let g = sw.geom;
                (g.in_len() == rows && (first || g.pad == 0) && !sw.dense_weight_grad).then(|| g.out_len())
            }
            ChainItem::Relu => Some(rows),
            ChainItem::MaxPool(g) => {
                (g.c * g.h * g.w == rows && g.size * g.size <= 256 && g.size > 0).then(|| g.out_len())
            }
        }
    }

    /// Whether `items` make a chain: a layer first, each item taking the previous one's output.
    pub fn fits(items: &[ChainItem]) -> bool {
        let Some(ChainItem::Layer { sw, .. }) = items.first() else {
            return false;
        };
        let mut rows = Some(sw.geom.in_len());
        for (i, item) in items.iter().enumerate() {
            rows = rows.and_then(|r| item.out_rows(r, i == 0));
        }
        rows.is_some()
    }
}

/// `items` in sequence on `x`; `input_grad: false` skips `dL/dx`. With `values`, `x` is an
/// [`input_carrier`](crate::exec::backend::input_carrier) (its batch size and tape) and `values`
/// are its rows, read in place (no input gradient then). Panics unless [`ChainItem::fits`].
pub fn sparse_chain<T: Tape<f32, Cpu>>(
    x: Tensor2<T>,
    values: Option<&[f32]>,
    items: &[ChainItem],
    input_grad: bool,
) -> Tensor2<T> {
    assert!(ChainItem::fits(items), "a chain starts with a sparse layer and each item takes the last one's output");
    let ChainItem::Layer { sw: first, .. } = &items[0] else { unreachable!("checked by fits") };
    // The pools run the variant the layers were built for (tests build both).
    let (first, isa) = (first.geom, first.isa);
    let (x, mut tape) = x.split_tape();
    let batch = x.shape().0;
    let bp = batch.div_ceil(LANES) * LANES;
    // acts[i]: item i's input (empty where a ReLU took it over in place); acts[len]: the output.
    // A pool's backward reads its input and output again (no argmax is kept).
    let mut acts = match values {
        Some(xs) => {
            assert!(!input_grad, "no input gradient for values read in place");
            assert_eq!(xs.len(), batch * first.in_len(), "sparse chain input size");
            vec![input_layout(isa, &first, xs, batch, bp)]
        }
        None => {
            assert_eq!(x.shape().1, first.in_len(), "sparse chain input size");
            let mut xs = take(batch * first.in_len(), false);
            x.copy_into(&mut xs);
            let xt = input_layout(isa, &first, &xs, batch, bp);
            give(xs);
            vec![xt]
        }
    };
    let mut rows = first.in_len();
    for (i, item) in items.iter().enumerate() {
        let last = acts.len() - 1;
        let y = match item {
            ChainItem::Layer { sw, bias } => {
                rows = sw.geom.out_len();
                // A ReLU right after is applied as the rows are written.
                let relu = matches!(items.get(i + 1), Some(ChainItem::Relu));
                sw.forward(&acts[last], bias.map(|b| b.values().as_slice()), bp, relu)
            }
            ChainItem::Relu => {
                let mut y = std::mem::take(&mut acts[last]);
                if i == 0 || !matches!(items[i - 1], ChainItem::Layer { .. }) {
                    y.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                y
            }
            ChainItem::MaxPool(g) => {
                rows = g.out_len();
                pool_forward(isa, g, &acts[last], bp)
            }
        };
        acts.push(y);
    }
    let mut y = vec![0.0; batch * rows];
    from_batch_minor(isa, &acts[items.len()], rows, bp, &mut y);
    let out = x.device().tensor_from_vec(y, (batch, rows));
    if !T::OWNS_TAPE {
        acts.into_iter().for_each(give);
        return out.put_tape(tape);
    }
    let (xg, yg) = (x.ghost(), out.ghost());
    // (dfdx does not name a ghost's type outside the crate: the bias ghosts sit beside.)
    enum Back {
        Layer(Arc<SparseWeight>),
        Relu,
        MaxPool(PoolGeom),
    }
    let back: Vec<Back> = items
        .iter()
        .map(|item| match item {
            ChainItem::Layer { sw, .. } => Back::Layer(Arc::clone(sw)),
            ChainItem::Relu => Back::Relu,
            ChainItem::MaxPool(g) => Back::MaxPool(*g),
        })
        .collect();
    let bias_ghosts: Vec<_> = items
        .iter()
        .map(|item| match item {
            ChainItem::Layer { bias: Some(b), .. } => Some(b.tensor().ghost()),
            _ => None,
        })
        .collect();
    tape.add_backward_op(move |grads| {
        // dyt: the gradient of item i's output.
        let mut dyt = output_grad_layout(isa, grads.get_or_alloc_mut(&yg)?, rows, batch, bp);
        for (i, item) in back.iter().enumerate().rev() {
            match item {
                // A pool right after has masked its input gradient already.
                Back::Relu if matches!(back.get(i + 1), Some(Back::MaxPool(_))) => {}
                Back::Relu => {
                    dyt.iter_mut().zip(&acts[i + 1]).for_each(|(d, y)| *d = if *y > 0.0 { *d } else { 0.0 });
                }
                Back::MaxPool(g) => {
                    let relu_before = i > 0 && matches!(back[i - 1], Back::Relu);
                    let dxt = pool_backward(isa, g, &dyt, &acts[i], &acts[i + 1], bp, relu_before);
                    give(std::mem::replace(&mut dyt, dxt));
                }
                Back::Layer(sw) => {
                    let (dw, db) = sw.weight_grad(&dyt, &acts[i], bp, true);
                    *sw.kept_grad.lock().unwrap_or_else(|e| e.into_inner()) = dw;
                    if let Some(bg) = &bias_ghosts[i] {
                        add_into(grads.get_or_alloc_mut(bg)?, &db);
                    }
                    if i > 0 || input_grad {
                        let dxt = sw.input_grad(&dyt, bp);
                        give(std::mem::replace(&mut dyt, dxt));
                    }
                }
            }
        }
        if input_grad {
            add_input_grad(isa, &first, &dyt, bp, grads.get_or_alloc_mut(&xg)?);
        }
        give(dyt);
        std::mem::take(&mut acts).into_iter().for_each(give);
        Ok(())
    });
    out.put_tape(tape)
}

/// Max pooling of `[c][h][w][bp]` into `[c][oh][ow][bp]`: each window's first maximum, as
/// [`crate::exec::backend::pool::max_pool`] picks it (a later element wins only if greater).
fn pool_forward(isa: Isa, g: &PoolGeom, xt: &[f32], bp: usize) -> Vec<f32> {
    let (oh, ow) = (g.oh(), g.ow());
    let plane_out = oh * ow * bp;
    let mut y = take(g.c * plane_out, false);
    let min = min_len(g.c, xt.len());
    y.par_chunks_mut(plane_out.max(1)).enumerate().with_min_len(min).for_each(|(c, yp)| {
        kernels::pool_forward(isa, g, &xt[c * g.h * g.w * bp..(c + 1) * g.h * g.w * bp], bp, yp);
    });
    y
}

/// The input gradient `[c][h][w][bp]` of [`pool_forward`] (input `xt`, output `yt`): each
/// output's gradient to the first element of its window equal to the maximum (the one the
/// forward picked, for any finite input), added in output order as the dense op does (so
/// overlapping windows sum in the same order); with `relu_before` (the input is a ReLU's output)
/// only where the input is positive, which is that ReLU's backward. Windows that tile the input
/// exactly write each element once (`v + 0.0`: the bits of `0.0 + v`) instead of zeroing and
/// adding.
fn pool_backward(
    isa: Isa,
    g: &PoolGeom,
    dyt: &[f32],
    xt: &[f32],
    yt: &[f32],
    bp: usize,
    relu_before: bool,
) -> Vec<f32> {
    let (oh, ow) = (g.oh(), g.ow());
    let (plane_in, plane_out) = (g.h * g.w * bp, oh * ow * bp);
    let tiles = g.stride == g.size && g.h.is_multiple_of(g.size) && g.w.is_multiple_of(g.size);
    let mut dxt = take(g.c * plane_in, !tiles);
    let min = min_len(g.c, dxt.len());
    dxt.par_chunks_mut(plane_in.max(1)).enumerate().with_min_len(min).for_each(|(c, dp)| {
        let (xp, out) = (&xt[c * plane_in..(c + 1) * plane_in], c * plane_out..(c + 1) * plane_out);
        let p = kernels::PoolGrad { g, x: xp, y: &yt[out.clone()], dy: &dyt[out], bp, relu_before, tiles };
        kernels::pool_backward(isa, p, dp);
    });
    dxt
}
