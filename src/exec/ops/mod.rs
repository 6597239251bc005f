//! Custom dfdx ops with their own backward passes. In: dfdx CPU tensors laid out as
//! `(batch, features)` (images flattened as `c*h*w`, the geometry travels beside the tensor).
//! Out: the result tensor with a backward closure pushed on the tape.
//!
//! Every op follows the same pattern: `split_tape`, copy the input out, compute, wrap the output
//! with `tensor_from_vec`, and push a closure that reads the output's gradient and *adds* into
//! the input's (and parameters') gradients, since several consumers may share one input.

pub mod act;
pub mod conv;
mod depthwise;
pub mod gemm;
pub mod loss;
pub mod norm;
pub mod pool;

use dfdx::prelude::*;

/// Activations: `(batch, features)`, with a tape `T` while training.
pub type Tensor2<T = NoneTape> = Tensor<(usize, usize), f32, Cpu, T>;
/// Vector parameters (biases, batchnorm scale and shift).
pub type Tensor1 = Tensor<(usize,), f32, Cpu>;
pub type Grads = Gradients<f32, Cpu>;
pub type OpResult = Result<(), CpuError>;

/// The tensor's contents (a memcpy; `as_vec` is much slower).
pub fn read<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Vec<f32> {
    let mut v = vec![0.0; t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

/// Wraps `out` with `tape` and, when the tape records, pushes `backward`, which receives the
/// output gradient (a copy: the gradient map cannot lend two entries at once).
pub fn with_backward<S: Shape, T: Tape<f32, Cpu>>(
    out: Tensor<S, f32, Cpu>,
    mut tape: T,
    backward: impl FnOnce(&[f32], &mut Grads) -> OpResult + 'static,
) -> Tensor<S, f32, Cpu, T> {
    if T::OWNS_TAPE {
        let out_ghost = out.ghost();
        tape.add_backward_op(move |grads| {
            let gy = grads.get_or_alloc_mut(&out_ghost)?.to_vec();
            backward(&gy, grads)
        });
    }
    out.put_tape(tape)
}

/// `dst += delta`, for accumulating into a gradient (`grads.get_or_alloc_mut(&ghost)?`).
pub fn add_into(dst: &mut [f32], delta: &[f32]) {
    for (g, d) in dst.iter_mut().zip(delta) {
        *g += d;
    }
}

/// Splits `0..len` into `parts` contiguous ranges; used for reductions over the batch whose
/// summation order must not depend on rayon's scheduling (determinism per thread count).
pub fn fixed_chunks(len: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, len.max(1));
    let size = len.div_ceil(parts);
    (0..parts).map(|i| (i * size).min(len)..((i + 1) * size).min(len)).filter(|r| !r.is_empty()).collect()
}

#[cfg(test)]
pub mod testing {
    //! Finite-difference gradient checks shared by the op tests.
    use super::*;
    use rand::{Rng, SeedableRng};

    pub fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    /// `L = sum(f(x) * r)`: returns `dL/dx` from the op's backward pass and the numeric one.
    pub fn check_input_grad(
        x: &[f32],
        shape: (usize, usize),
        f: impl Fn(Tensor2<OwnedTape<f32, Cpu>>) -> Tensor2<OwnedTape<f32, Cpu>>,
        g: impl Fn(Tensor2) -> Tensor2,
    ) -> (Vec<f32>, Vec<f32>) {
        let dev = Cpu::default();
        let xt: Tensor2 = dev.tensor_from_vec(x.to_vec(), shape);
        let y = f(xt.leaky_trace());
        let r = random(y.shape().num_elements(), 99);
        let rt: Tensor2 = dev.tensor_from_vec(r.clone(), *y.shape());
        let grads = (y * rt).sum::<(), _>().backward();
        let analytic = grads.get(&xt).as_vec();
        let loss = |x: &[f32]| -> f64 {
            let y = read(&g(dev.tensor_from_vec(x.to_vec(), shape)));
            y.iter().zip(&r).map(|(a, b)| (*a as f64) * (*b as f64)).sum()
        };
        let numeric = numeric_grad(x, loss);
        (analytic, numeric)
    }

    pub fn numeric_grad(x: &[f32], loss: impl Fn(&[f32]) -> f64) -> Vec<f32> {
        let h = 1e-2f32;
        let mut xp = x.to_vec();
        (0..x.len())
            .map(|i| {
                xp[i] = x[i] + h;
                let up = loss(&xp);
                xp[i] = x[i] - h;
                let down = loss(&xp);
                xp[i] = x[i];
                ((up - down) / (2.0 * h as f64)) as f32
            })
            .collect()
    }

    pub fn assert_close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let scale = 1.0f32.max(x.abs()).max(y.abs());
            assert!((x - y).abs() <= tol * scale, "index {i}: {x} vs {y}");
        }
    }
}
