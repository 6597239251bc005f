//! EAST's ops: DyReLU-B blended into ReLU, and the scaled shared conv weights of weight
//! sharing. In: activations `(batch, c*hw)` and the tensors `ir::passes::east` added to the
//! plan. Out: activations, with backward ops on the tape.
//!
//! DyReLU-B (Chen et al., "Dynamic ReLU"; as in ES2's `DyReLUB` with `k = 2`): per example
//! and channel, `y = max(a1 x + b1, a2 x + b2)`, where the coefficients come from a squeeze
//! branch: `theta = mean over h, w of x` (for a dense `[n]` activation, the features
//! themselves), `z = fc2(relu(fc1(theta)))` with `4C` outputs laid out `[a1, a2, b1, b2]` per
//! channel, and `coef = (2 sigmoid(z) - 1) * lambda + init`, `lambda = [1, 1, 0.5, 0.5]`,
//! `init = [1, 0, 0, 0]`. Zero branch output makes it exactly ReLU.
//!
//! Phase-out over `a .. b`: `y = beta * dyrelu(x) + (1 - beta) * relu(x)`, `beta` falling
//! linearly from 1 at step `a` to 0 at step `b`; from `b` on the node is dfdx's ReLU and the
//! branch is not computed. ES2 blends the *coefficients* instead (`coef * beta + relu_coef *
//! (1 - beta)`) and changes beta once per epoch; we blend outputs per step, so every point of
//! the phase-out is a convex combination of the two activations (the recipe's definition).
//! ES2 also returns plain ReLU while `beta == 1` (before the phase-out starts), which looks
//! like a slip: DyReLU would then only ever act during the phase-out. Here DyReLU acts from
//! the first step, as the paper describes.

use dfdx::prelude::*;

use super::act::dense;
use super::{add_into, read, with_backward, Param1, Param2, Tensor2};
use crate::ir::passes::east::DYRELU_COEFS;

const LAMBDA: [f32; DYRELU_COEFS] = [1.0, 1.0, 0.5, 0.5];
const INIT: [f32; DYRELU_COEFS] = [1.0, 0.0, 0.0, 0.0];

/// A DyReLU-B layer's branch tensors and geometry: `c` channels of `hw` values each.
pub struct DyReluParams<'a> {
    pub fc1: (&'a Param2, &'a Param1),
    pub fc2: (&'a Param2, &'a Param1),
    pub c: usize,
    pub hw: usize,
}

/// `beta * dyrelu(x) + (1 - beta) * relu(x)`; dfdx's ReLU (and no branch) at `beta == 0`.
pub fn dyrelu<T: Tape<f32, Cpu>>(x: Tensor2<T>, p: &DyReluParams, beta: f32) -> Tensor2<T> {
    if beta == 0.0 {
        return x.relu();
    }
    let batch = x.shape().0;
    let (x, tape) = x.split_tape();
    // The squeeze branch records on x's tape; `apply` adds into x's gradient directly.
    let theta = if p.hw == 1 {
        x.clone().put_tape(tape)
    } else {
        x.clone().put_tape(tape).reshape_like(&(batch, p.c, p.hw)).mean::<(usize, usize), Axis<2>>()
    };
    let z = dense(dense(theta, p.fc1.0, Some(p.fc1.1), true).relu(), p.fc2.0, Some(p.fc2.1), true);
    apply(x, z, p.c, p.hw, beta)
}

pub(crate) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// `y = beta * max(a1 x + b1, a2 x + b2) + (1 - beta) * relu(x)` per channel, with the
/// coefficients normalised from the branch output `z: (batch, 4c)`. Gradients go to `x`
/// (whose tape was split off by the caller) and to `z`.
pub fn apply<T: Tape<f32, Cpu>>(x: Tensor2, z: Tensor2<T>, c: usize, hw: usize, beta: f32) -> Tensor2<T> {
    let (z, tape) = z.split_tape();
    let batch = x.shape().0;
    assert_eq!((x.shape().1, z.shape().1), (c * hw, DYRELU_COEFS * c), "dyrelu shapes");
    let (xs, zs) = (read(&x), read(&z));
    let coef: Vec<f32> =
        zs.iter().enumerate().map(|(i, &v)| (2.0 * sigmoid(v) - 1.0) * LAMBDA[i % 4] + INIT[i % 4]).collect();
    let mut y = vec![0.0; xs.len()];
    for (bc, (yc, xc)) in y.chunks_mut(hw.max(1)).zip(xs.chunks(hw.max(1))).enumerate() {
        let k = &coef[bc * DYRELU_COEFS..(bc + 1) * DYRELU_COEFS];
        for (o, &v) in yc.iter_mut().zip(xc) {
            let dy = (k[0] * v + k[2]).max(k[1] * v + k[3]);
            *o = if beta == 1.0 { dy } else { beta * dy + (1.0 - beta) * v.max(0.0) };
        }
    }
    let out = x.device().tensor_from_vec(y, (batch, c * hw));
    let (xg, zg) = (x.ghost(), z.ghost());
    with_backward(out, tape, move |gy, grads| {
        let mut dx = vec![0.0; xs.len()];
        let mut dz = vec![0.0; zs.len()];
        for bc in 0..batch * c {
            let k = &coef[bc * DYRELU_COEFS..(bc + 1) * DYRELU_COEFS];
            let mut dk = [0.0f32; DYRELU_COEFS];
            for i in bc * hw..(bc + 1) * hw {
                let (v, g) = (xs[i], gy[i]);
                // Ties go to the first piece, as `max` picks it.
                let piece = if k[0] * v + k[2] >= k[1] * v + k[3] { 0 } else { 1 };
                dk[piece] += beta * g * v;
                dk[piece + 2] += beta * g;
                let relu = if v > 0.0 { 1.0 } else { 0.0 };
                dx[i] = beta * g * k[piece] + (1.0 - beta) * g * relu;
            }
            for j in 0..DYRELU_COEFS {
                let s = sigmoid(zs[bc * DYRELU_COEFS + j]);
                dz[bc * DYRELU_COEFS + j] = dk[j] * 2.0 * s * (1.0 - s) * LAMBDA[j];
            }
        }
        add_into(grads.get_or_alloc_mut(&xg)?, &dx);
        add_into(grads.get_or_alloc_mut(&zg)?, &dz);
        Ok(())
    })
}

/// `scale * w` as a new tensor for a shared conv, recording on `x`'s tape how its gradient
/// flows back: `dL/dw += scale * G` and `dL/dscale += <G, w>`, where `G` is the gradient the
/// conv leaves on the scaled tensor. The op is recorded before the conv that reads the result,
/// so it runs after it in the backward pass; every block using `w` adds into the same gradient.
pub fn scaled_weight<T: Tape<f32, Cpu>>(x: Tensor2<T>, w: &Param2, scale: &Param1) -> (Tensor2<T>, Param2) {
    let (x, mut tape) = x.split_tape();
    let (ws, s) = (w.values().clone(), scale.values()[0]);
    let scaled =
        Param2::new(w.tensor().device().tensor_from_vec(ws.iter().map(|v| v * s).collect(), *w.tensor().shape()));
    if T::OWNS_TAPE {
        let (gs, gw, gscale) = (scaled.tensor().ghost(), w.tensor().ghost(), scale.tensor().ghost());
        tape.add_backward_op(move |grads| {
            let g = grads.get_or_alloc_mut(&gs)?.to_vec();
            let dw = grads.get_or_alloc_mut(&gw)?;
            for (d, gi) in dw.iter_mut().zip(&g) {
                *d += s * gi;
            }
            let dot: f64 = g.iter().zip(ws.iter()).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            grads.get_or_alloc_mut(&gscale)?[0] += dot as f32;
            Ok(())
        });
    }
    (x.put_tape(tape), scaled)
}
