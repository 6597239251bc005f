//! The backend: the tensor type, the parameter tensors and every op with its backward pass.
//! All dfdx use lives in this folder; the graph above it (`exec::graph`) names only what this
//! module exports. A second backend (sparse kernels, CUDA) plugs in here.
//! In: activations as `(batch, features)` tensors (images flattened as `c*h*w`, the geometry
//! travels beside the tensor). Out: the result tensor with a backward closure on the tape.
//!
//! Every op follows the same pattern: `split_tape`, copy the input out, compute, wrap the output
//! with `tensor_from_vec`, and push a closure that reads the output's gradient and *adds* into
//! the input's (and parameters') gradients, since several consumers may share one input.

pub mod act;
pub mod conv;
mod depthwise;
pub mod dyrelu;
pub mod gemm;
pub mod loss;
pub mod norm;
pub mod pool;
pub mod sparse;

use dfdx::prelude::*;

use crate::ir::plan::ParamKind;

/// Activations: `(batch, features)`, with a tape `T` while training.
pub type Tensor2<T = NoneTape> = Tensor<(usize, usize), f32, Cpu, T>;
pub type Grads = Gradients<f32, Cpu>;
pub type OpResult = Result<(), CpuError>;
pub type Device = Cpu;
/// An activation that records its backward ops (training) or not (evaluation).
pub type Traced = OwnedTape<f32, Cpu>;

/// What the graph's walker is generic over: a tape that records (`Traced`) or none.
pub trait Tape: dfdx::prelude::Tape<f32, Cpu> {}
impl<T: dfdx::prelude::Tape<f32, Cpu>> Tape for T {}

/// A parameter's values beside the dfdx tensor that names it on the tape. The ops read the
/// values (shared, not copied: an op's backward closure keeps a reference) and use the tensor
/// only for its identity and shape, so a step loads each parameter with one copy into `values`
/// and none into dfdx (the tensor's own storage stays as allocated and is never read).
#[derive(Clone)]
pub struct Param<S: Shape> {
    tensor: Tensor<S, f32, Cpu>,
    values: std::sync::Arc<Vec<f32>>,
}

/// A weight matrix `(out, fan_in)`.
pub type Param2 = Param<(usize, usize)>;
/// A vector parameter (bias, batchnorm scale and shift, weight-sharing scale).
pub type Param1 = Param<(usize,)>;

impl<S: Shape> Param<S> {
    /// A parameter holding `tensor`'s current values.
    pub fn new(tensor: Tensor<S, f32, Cpu>) -> Param<S> {
        let values = std::sync::Arc::new(read(&tensor));
        Param { tensor, values }
    }

    /// The tensor that names this parameter on the tape (its gradient's key).
    pub fn tensor(&self) -> &Tensor<S, f32, Cpu> {
        &self.tensor
    }

    /// The values, shared: clone the `Arc` to keep them for a backward pass.
    pub fn values(&self) -> &std::sync::Arc<Vec<f32>> {
        &self.values
    }

    /// Loads new values (copies only when a backward closure still holds the old ones).
    pub fn copy_from(&mut self, src: &[f32]) {
        copy_par(std::sync::Arc::make_mut(&mut self.values).as_mut_slice(), src);
    }
}

/// `dst.copy_from_slice(src)`, in blocks over the pool's threads from 2^16 floats: a step
/// copies every weight into the graph and every gradient out of it (LeNet-300-100's fc1 is
/// 1 MB), and serial these copies were a tenth of its dense step at two threads.
pub fn copy_par(dst: &mut [f32], src: &[f32]) {
    use rayon::prelude::*;
    const BLOCK: usize = 1 << 15;
    assert_eq!(dst.len(), src.len(), "copy of unequal lengths");
    if dst.len() < 2 * BLOCK || rayon::current_num_threads() == 1 {
        dst.copy_from_slice(src);
    } else {
        dst.par_chunks_mut(BLOCK).zip(src.par_chunks(BLOCK)).for_each(|(d, s)| d.copy_from_slice(s));
    }
}

/// A parameter as the backend sees it: weights as `(out, fan_in)` matrices, the rest as vectors.
pub enum ParamTensor {
    Matrix(Param2),
    Vector(Param1),
}

impl ParamTensor {
    pub fn new(dev: &Device, kind: ParamKind, shape: &[usize]) -> ParamTensor {
        let n: usize = shape.iter().product();
        match kind {
            ParamKind::Weight => ParamTensor::Matrix(Param::new(dev.zeros_like(&(shape[0], n / shape[0].max(1))))),
            ParamKind::Bias | ParamKind::BnScale | ParamKind::BnShift | ParamKind::Scale => {
                ParamTensor::Vector(Param::new(dev.zeros_like(&(n,))))
            }
        }
    }

    pub fn copy_from(&mut self, src: &[f32]) {
        match self {
            ParamTensor::Matrix(p) => p.copy_from(src),
            ParamTensor::Vector(p) => p.copy_from(src),
        }
    }

    /// This parameter's gradient after `backward` (zeros if it took no part).
    pub fn grad<'g>(&self, grads: &'g mut Grads) -> Result<&'g mut [f32], CpuError> {
        Ok(match self {
            ParamTensor::Matrix(p) => grads.get_or_alloc_mut(p.tensor())?,
            ParamTensor::Vector(p) => grads.get_or_alloc_mut(p.tensor())?,
        })
    }

    /// The current values.
    #[cfg(test)]
    pub fn values(&self) -> &[f32] {
        match self {
            ParamTensor::Matrix(p) => p.values(),
            ParamTensor::Vector(p) => p.values(),
        }
    }

    // The graph pairs each node with tensors of the right kind, so a mismatch is a bug there.
    pub fn matrix(&self) -> &Param2 {
        match self {
            ParamTensor::Matrix(p) => p,
            ParamTensor::Vector(_) => unreachable!("weights are built as matrices"),
        }
    }
    pub fn vector(&self) -> &Param1 {
        match self {
            ParamTensor::Vector(p) => p,
            ParamTensor::Matrix(_) => unreachable!("vectors are built as vectors"),
        }
    }
}

/// A batch of `b` examples of `n` features as an activation, traced when `train`.
pub fn input(dev: &Device, images: Vec<f32>, b: usize) -> Tensor2<Traced> {
    let n = images.len() / b.max(1);
    dev.tensor_from_vec(images, (b, n)).leaky_traced()
}

/// A `(b, 0)` tensor with a tape: it stands for a batch whose values a sparse chain reads from
/// the batch itself (`walk::Input::Carried`), so they are not copied into a tensor and out again.
pub fn input_carrier(dev: &Device, b: usize) -> Tensor2<Traced> {
    dev.tensor_from_vec(Vec::new(), (b, 0)).leaky_traced()
}

/// The rows `values` of an [`input_carrier`] `x` as a tensor, on `x`'s tape.
pub fn carried<T: Tape>(x: Tensor2<T>, values: &[f32]) -> Tensor2<T> {
    let (x, tape) = x.split_tape();
    let b = x.shape().0;
    x.device().tensor_from_vec(values.to_vec(), (b, values.len() / b.max(1))).put_tape(tape)
}

/// [`input_carrier`] without a tape (evaluation).
pub fn input_carrier_untraced(dev: &Device, b: usize) -> Tensor2 {
    dev.tensor_from_vec(Vec::new(), (b, 0))
}

/// A second handle on `x` whose ops record on a tape of their own, merged at the next binary op.
pub fn fork<T: Tape>(x: &Tensor2<T>) -> Tensor2<T> {
    x.retaped::<T>()
}

/// `a + b` (the tapes merge; both add into their inputs' gradients).
pub fn add<T: Tape>(a: Tensor2<T>, b: Tensor2<T>) -> Tensor2<T> {
    a + b
}

/// `x * k` for a constant `k`.
pub fn scale<T: Tape>(x: Tensor2<T>, k: f32) -> Tensor2<T> {
    x * k
}

/// The scalar value of a 0-d tensor (a loss).
pub fn value<T>(x: &Tensor<(), f32, Cpu, T>) -> f32 {
    x.array()
}

/// `sum(x)` over every element, a scalar to differentiate (SynFlow's `R`).
pub fn sum_all(x: Tensor2<Traced>) -> Tensor<(), f32, Cpu, Traced> {
    x.sum::<(), _>()
}

/// Runs the backward pass of a traced scalar.
pub fn backward(loss: Tensor<(), f32, Cpu, Traced>) -> Grads {
    loss.backward()
}

/// The tensor's contents (a memcpy; `as_vec` is much slower).
pub fn read<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Vec<f32> {
    let mut v = vec![0.0; t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

/// Wraps `out` with `tape` and, when the tape records, pushes `backward`, which receives the
/// output gradient, taken out of the gradient map (it cannot lend two entries at once, and the
/// output's gradient is complete and read by nobody else once its op's backward runs: every op
/// that read `out` was recorded later and ran its backward earlier). Copying it instead was a
/// serial pass over each activation's gradient (5.9 MB for LeNet-5-Caffe's first layer).
pub fn with_backward<S: Shape, T: dfdx::prelude::Tape<f32, Cpu>>(
    out: Tensor<S, f32, Cpu>,
    mut tape: T,
    backward: impl FnOnce(&[f32], &mut Grads) -> OpResult + 'static,
) -> Tensor<S, f32, Cpu, T> {
    if T::OWNS_TAPE {
        let out_ghost = out.ghost();
        tape.add_backward_op(move |grads| {
            let gy: Vec<f32> = std::mem::take(&mut **grads.get_or_alloc_mut(&out_ghost)?);
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

#[cfg(test)]
mod tests {
    #[test]
    fn parallel_copies_copy_every_element() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for n in [0, 5, (1 << 16) - 1, 1 << 16, 100_003] {
            let src: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 7.0).collect();
            let mut dst = vec![f32::NAN; n];
            pool.install(|| super::copy_par(&mut dst, &src));
            assert_eq!(dst, src, "{n} floats");
        }
    }
}
