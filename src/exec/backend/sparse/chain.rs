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

/// `items` in sequence on `x`; `input_grad: false` skips `dL/dx`. Panics unless
/// [`ChainItem::fits`].
pub fn sparse_chain<T: Tape<f32, Cpu>>(x: Tensor2<T>, items: &[ChainItem], input_grad: bool) -> Tensor2<T> {
    assert!(ChainItem::fits(items), "a chain starts with a sparse layer and each item takes the last one's output");
    let ChainItem::Layer { sw: first, .. } = &items[0] else { unreachable!("checked by fits") };
    let first = first.geom;
    let (x, mut tape) = x.split_tape();
    let batch = x.shape().0;
    assert_eq!(x.shape().1, first.in_len(), "sparse chain input size");
    let bp = batch.div_ceil(LANES) * LANES;
    let mut xs = take(batch * first.in_len(), false);
    x.copy_into(&mut xs);
    // acts[i]: item i's input (empty where a ReLU took it over in place); acts[len]: the output.
    let mut acts = vec![input_layout(&first, &xs, batch, bp)];
    give(xs);
    // Per max pool, the window position of each output's maximum.
    let mut args: Vec<Vec<u8>> = Vec::new();
    let mut rows = first.in_len();
    for item in items {
        let last = acts.len() - 1;
        let y = match item {
            ChainItem::Layer { sw, bias } => {
                rows = sw.geom.out_len();
                sw.forward(&acts[last], bias.map(|b| b.values().as_slice()), bp)
            }
            ChainItem::Relu => {
                let mut y = std::mem::take(&mut acts[last]);
                y.iter_mut().for_each(|v| *v = v.max(0.0));
                y
            }
            ChainItem::MaxPool(g) => {
                rows = g.out_len();
                let (y, arg) = pool_forward(g, &acts[last], bp);
                args.push(arg);
                y
            }
        };
        acts.push(y);
    }
    let mut y = vec![0.0; batch * rows];
    from_batch_minor(&acts[items.len()], rows, bp, &mut y);
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
        let mut dyt = output_grad_layout(grads.get_or_alloc_mut(&yg)?, rows, batch, bp);
        for (i, item) in back.iter().enumerate().rev() {
            match item {
                Back::Relu => {
                    dyt.iter_mut().zip(&acts[i + 1]).for_each(|(d, y)| *d = if *y > 0.0 { *d } else { 0.0 });
                }
                Back::MaxPool(g) => {
                    let arg = args.pop().expect("one argmax per pool");
                    let dxt = pool_backward(g, &dyt, &arg, bp);
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
            add_input_grad(&first, &dyt, bp, grads.get_or_alloc_mut(&xg)?);
        }
        give(dyt);
        std::mem::take(&mut acts).into_iter().for_each(give);
        Ok(())
    });
    out.put_tape(tape)
}

/// Max pooling of `[c][h][w][bp]`: `[c][oh][ow][bp]` and, per output and lane, the window
/// position of the first maximum (as [`crate::exec::backend::pool::max_pool`] picks it).
fn pool_forward(g: &PoolGeom, xt: &[f32], bp: usize) -> (Vec<f32>, Vec<u8>) {
    let (oh, ow) = (g.oh(), g.ow());
    let plane_out = oh * ow * bp;
    let mut y = take(g.c * plane_out, false);
    let mut arg = vec![0u8; g.c * plane_out];
    let min = min_len(g.c, xt.len());
    y.par_chunks_mut(plane_out.max(1))
        .zip(arg.par_chunks_mut(plane_out.max(1)))
        .enumerate()
        .with_min_len(min)
        .for_each(|(c, (yp, ap))| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let o = (oy * ow + ox) * bp;
                    let start = (c * g.h + oy * g.stride) * g.w + ox * g.stride;
                    let (best, at) = (&mut yp[o..o + bp], &mut ap[o..o + bp]);
                    best.copy_from_slice(&xt[start * bp..(start + 1) * bp]);
                    at.fill(0);
                    for k in 1..g.size * g.size {
                        let row = start + k / g.size * g.w + k % g.size;
                        for ((b, a), &v) in best.iter_mut().zip(at.iter_mut()).zip(&xt[row * bp..(row + 1) * bp]) {
                            if v > *b {
                                (*b, *a) = (v, k as u8);
                            }
                        }
                    }
                }
            }
        });
    (y, arg)
}

/// The input gradient `[c][h][w][bp]` of [`pool_forward`]: each output's gradient to its
/// window's maximum, added in output order (as the dense op does, so overlapping windows sum
/// in the same order).
fn pool_backward(g: &PoolGeom, dyt: &[f32], arg: &[u8], bp: usize) -> Vec<f32> {
    let (oh, ow) = (g.oh(), g.ow());
    let (plane_in, plane_out) = (g.h * g.w * bp, oh * ow * bp);
    let mut dxt = take(g.c * plane_in, true);
    let min = min_len(g.c, dxt.len());
    dxt.par_chunks_mut(plane_in.max(1)).enumerate().with_min_len(min).for_each(|(c, dp)| {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = c * plane_out + (oy * ow + ox) * bp;
                let (dy, at) = (&dyt[o..o + bp], &arg[o..o + bp]);
                let start = oy * g.stride * g.w + ox * g.stride;
                for k in 0..g.size * g.size {
                    let row = start + k / g.size * g.w + k % g.size;
                    for ((d, &v), &a) in dp[row * bp..(row + 1) * bp].iter_mut().zip(dy).zip(at) {
                        // Adding zero leaves every other sum as it was (a gradient here is
                        // never -0.0: it starts at +0.0, and +0.0 + -0.0 is +0.0).
                        *d += if a as usize == k { v } else { 0.0 };
                    }
                }
            }
        }
    });
    dxt
}
