//! Elementwise activations with closed-form derivatives (swish, mish, GELU; ReLU is dfdx's),
//! seeded inverted dropout, and the dense layer (dfdx matmul plus a broadcast bias).
//! In and out: `(batch, n)`.

use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::gemm::{matmul_par, Mat};
use super::{read, with_backward, Param1, Param2, Tensor2};
use crate::ir::plan::Activation;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `ln(1 + e^x)` without overflow.
fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

const GELU_C: f32 = 0.797_884_6; // sqrt(2 / pi)

/// Value and derivative of an activation at `x`. GELU is the tanh approximation.
pub fn activation(act: Activation, x: f32) -> (f32, f32) {
    match act {
        Activation::Relu => (x.max(0.0), if x > 0.0 { 1.0 } else { 0.0 }),
        Activation::Swish => {
            let s = sigmoid(x);
            (x * s, s + x * s * (1.0 - s))
        }
        Activation::Mish => {
            let t = softplus(x).tanh();
            (x * t, t + x * (1.0 - t * t) * sigmoid(x))
        }
        Activation::Gelu => {
            let t = (GELU_C * (x + 0.044715 * x * x * x)).tanh();
            let du = GELU_C * (1.0 + 3.0 * 0.044715 * x * x);
            (0.5 * x * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)
        }
    }
}

pub fn act<T: Tape<f32, Cpu>>(x: Tensor2<T>, a: Activation) -> Tensor2<T> {
    if a == Activation::Relu {
        return x.relu();
    }
    pointwise(x, |v| activation(a, v))
}

/// `(1 - t) from(x) + t to(x)`; exactly `to` at `t >= 1` and `from` at `t <= 0` (ToST's ghost
/// neurons blend a soft activation into ReLU).
pub fn blend<T: Tape<f32, Cpu>>(x: Tensor2<T>, from: Activation, to: Activation, t: f32) -> Tensor2<T> {
    if t >= 1.0 {
        return act(x, to);
    }
    if t <= 0.0 {
        return act(x, from);
    }
    pointwise(x, |v| {
        let (s, ds) = activation(from, v);
        let (r, dr) = activation(to, v);
        ((1.0 - t) * s + t * r, (1.0 - t) * ds + t * dr)
    })
}

/// `y = f(x)` elementwise, where `f` returns the value and its derivative at each element; the
/// backward pass multiplies the output gradient by the stored derivatives.
pub fn pointwise<T: Tape<f32, Cpu>>(x: Tensor2<T>, mut f: impl FnMut(f32) -> (f32, f32)) -> Tensor2<T> {
    let (x, tape) = x.split_tape();
    let (y, dy): (Vec<f32>, Vec<f32>) = read(&x).iter().map(|&v| f(v)).unzip();
    let out = x.device().tensor_from_vec(y, *x.shape());
    let xg = x.ghost();
    with_backward(out, tape, move |gy, grads| {
        let dx = grads.get_or_alloc_mut(&xg)?;
        for ((d, g), s) in dx.iter_mut().zip(gy).zip(&dy) {
            *d += g * s;
        }
        Ok(())
    })
}

/// Inverted dropout: zero with probability `p`, scale the rest by `1/(1-p)`.
pub fn dropout<T: Tape<f32, Cpu>>(x: Tensor2<T>, p: f32, rng: &mut ChaCha8Rng) -> Tensor2<T> {
    let keep = 1.0 / (1.0 - p);
    pointwise(x, |v| {
        let m = if rng.gen::<f32>() < p { 0.0 } else { keep };
        (v * m, m)
    })
}

/// `x W^T + b` with `W: (out, in)`: three `gemm` products over the rayon pool, and none for
/// `dL/dx` when `input_grad` is false (the network's input).
pub fn dense<T: Tape<f32, Cpu>>(x: Tensor2<T>, weight: &Param2, bias: Option<&Param1>, input_grad: bool) -> Tensor2<T> {
    let (x, tape) = x.split_tape();
    let (batch, inputs) = *x.shape();
    let out = weight.tensor().shape().0;
    assert_eq!(weight.tensor().shape().1, inputs, "dense weight shape");
    let (xs, ws) = (read(&x), weight.values().clone());
    let mut y = vec![0.0; batch * out];
    if let Some(b) = bias {
        y.chunks_mut(out.max(1)).for_each(|row| row.copy_from_slice(b.values()));
    }
    matmul_par(&mut y, Mat::new(&xs, batch, inputs), Mat::new(&ws, out, inputs).t(), bias.is_some());
    let result = x.device().tensor_from_vec(y, (batch, out));
    let (xg, wg, bg) = (x.ghost(), weight.tensor().ghost(), bias.map(|b| b.tensor().ghost()));
    with_backward(result, tape, move |gy, grads| {
        let dw = grads.get_or_alloc_mut(&wg)?;
        matmul_par(dw, Mat::new(gy, batch, out).t(), Mat::new(&xs, batch, inputs), true);
        if let Some(bg) = bg {
            let db = grads.get_or_alloc_mut(&bg)?;
            for row in gy.chunks(out.max(1)) {
                db.iter_mut().zip(row).for_each(|(d, g)| *d += g);
            }
        }
        if input_grad {
            let dx = grads.get_or_alloc_mut(&xg)?;
            matmul_par(dx, Mat::new(gy, batch, out), Mat::new(&ws, out, inputs), true);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_close, check_input_grad, random};
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn activations_match_definitions_and_finite_differences() {
        let x: Vec<f32> = random(21, 3).iter().map(|v| v * 4.0).collect();
        for a in [Activation::Relu, Activation::Swish, Activation::Mish, Activation::Gelu] {
            for &v in &x {
                let want = match a {
                    Activation::Relu => v.max(0.0),
                    Activation::Swish => v / (1.0 + (-v).exp()),
                    Activation::Mish => v * (1.0 + v.exp()).ln().tanh(),
                    Activation::Gelu => 0.5 * v * (1.0 + (0.797_884_6 * (v + 0.044715 * v.powi(3))).tanh()),
                };
                assert!((activation(a, v).0 - want).abs() < 1e-5, "{a:?} at {v}");
            }
            let (an, nu) = check_input_grad(&x, (3, 7), |x| act(x, a), |x| act(x, a));
            assert_close(&an, &nu, 1e-2);
        }
    }

    #[test]
    fn dropout_is_seeded_and_scales_kept_units() {
        let dev = Cpu::default();
        let t: Tensor2 = dev.tensor_from_vec(vec![1.0; 4000], (40, 100));
        let run = |seed| read(&dropout(t.clone(), 0.25, &mut ChaCha8Rng::seed_from_u64(seed)));
        let (a, b) = (run(1), run(1));
        assert_eq!(a, b);
        let zeros = a.iter().filter(|v| **v == 0.0).count();
        assert!((800..1200).contains(&zeros));
        assert!(a.iter().all(|v| *v == 0.0 || (*v - 4.0 / 3.0).abs() < 1e-6));
        let (an, nu) = check_input_grad(
            &random(12, 1),
            (3, 4),
            |x| dropout(x, 0.5, &mut ChaCha8Rng::seed_from_u64(5)),
            |x| dropout(x, 0.5, &mut ChaCha8Rng::seed_from_u64(5)),
        );
        assert_close(&an, &nu, 1e-2);
    }

    #[test]
    fn dense_matches_naive() {
        let dev = Cpu::default();
        let (x, w, b) = (random(3 * 5, 1), random(4 * 5, 2), random(4, 3));
        let xt: Tensor2 = dev.tensor_from_vec(x.clone(), (3, 5));
        let wt = Param2::new(dev.tensor_from_vec(w.clone(), (4, 5)));
        let bt = Param1::new(dev.tensor_from_vec(b.clone(), (4,)));
        let y = read(&dense(xt, &wt, Some(&bt), true));
        let want: Vec<f32> =
            (0..12).map(|i| b[i % 4] + (0..5).map(|j| x[(i / 4) * 5 + j] * w[(i % 4) * 5 + j]).sum::<f32>()).collect();
        assert_close(&y, &want, 1e-5);
        let (an, nu) =
            check_input_grad(&x, (3, 5), |x| dense(x, &wt, Some(&bt), true), |x| dense(x, &wt, Some(&bt), true));
        assert_close(&an, &nu, 1e-2);
    }
}
