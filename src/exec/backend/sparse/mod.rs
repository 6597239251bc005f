//! Sparse kernels for masked dense layers and convolutions: a layer's kept weights in two
//! layouts ([`SparseWeight`]: by output row and by input row) and one op, [`sparse_layer`], whose
//! forward, input gradient and weight gradient touch only the kept weights. In: `(batch, c*h*w)`
//! like every op. Out: `(batch, out*oh*ow)`, the same values as [`super::conv::conv2d`] /
//! [`super::act::dense`] on the masked weights up to summation order.
//!
//! The op moves activations to a batch-contiguous, zero-padded layout (`[c][hp][wp][bp]`), so
//! every kernel is a sequence of 8-lane FMAs over the batch with no bounds tests, and moves the
//! output back. A dense layer is a 1x1 convolution of a 1x1 image. The weight gradient is an
//! SDDMM (kept weights only) unless [`SparseWeight::dense_weight_grad`] asks for the dense one
//! (ST-3's straight-through estimator, RigL's and EAST's growth by gradient).

mod chain;
pub mod kernels;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dfdx::prelude::*;
use rayon::prelude::*;

pub use chain::{sparse_chain, ChainItem};
pub use kernels::Isa;
use kernels::{Cols, Rows, LANES};

use super::conv::{self, ConvGeom};
use super::gemm::{matmul, Mat};
use super::{add_into, Param1, Param2, Tensor2};

/// Activation-sized buffers for the layouts, reused across steps: allocating and zeroing them
/// afresh every step cost more than the kernels at high sparsity (page faults and memsets).
static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A buffer of `n` floats from the pool: zeros when `zero`, else stale values the caller
/// overwrites entirely. A step asks for the same sizes every time, so after the first step the
/// pool holds a buffer at least `n` long for each request and nothing is zeroed or reallocated
/// that the caller does not ask to be.
fn take(n: usize, zero: bool) -> Vec<f32> {
    let mut v = {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        // The shortest buffer already `n` long (truncating it writes nothing), else the one
        // with the least capacity that holds `n` (it grows in place), else any.
        let long = pool.iter().enumerate().filter(|(_, v)| v.len() >= n).min_by_key(|(_, v)| v.len());
        let roomy = || pool.iter().enumerate().filter(|(_, v)| v.capacity() >= n).min_by_key(|(_, v)| v.capacity());
        match long.or_else(roomy).map(|(i, _)| i) {
            Some(i) => pool.swap_remove(i),
            None => pool.pop().unwrap_or_default(),
        }
    };
    if v.len() >= n {
        v.truncate(n);
        if zero {
            v.fill(0.0);
        }
    } else {
        if zero {
            v.clear();
        }
        v.resize(n, 0.0);
    }
    v
}

/// Returns a buffer to the pool (which keeps at most 32).
fn give(v: Vec<f32>) {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < 32 {
        pool.push(v);
    }
}

/// Items of a parallel loop over `len` items with `work` floats touched in all, per rayon task:
/// below 2^19 floats one task does all. Measured on LeNet-300-100 at two threads with the
/// workers kept awake (`exec::awake`), where fc1's products touch 340K floats at 99% and 640K
/// at 98%: at 2^18 the 99% step was 0.21-0.22 ms, at 2^19 0.19-0.20 (98% 0.26-0.28 at both;
/// at 2^20, one task, 0.28-0.29); 2^15-2^16 were slower at 98-99.9%. Before the workers were
/// kept awake 2^20 was best (a parked worker took longer to wake).
fn min_len(len: usize, work: usize) -> usize {
    if work < 1 << 19 {
        len.max(1)
    } else {
        1
    }
}

/// A layer's kept weights, with the layouts the three kernels read.
#[derive(Debug, Clone)]
pub struct SparseWeight {
    pub geom: ConvGeom,
    /// By output row: `row_ptr` (out + 1), each kept weight's input row `base` (padded pixel
    /// index of its input channel and kernel tap), its index in the dense weight, its value.
    row_ptr: Vec<u32>,
    base: Vec<u32>,
    dense: Vec<u32>,
    vals: Vec<f32>,
    /// By input row: columns (distinct `base`s) in order, grouped by input channel
    /// (`chan_cols`, c + 1 entries); each entry's output row and its position in `vals`.
    col_ptr: Vec<u32>,
    col_key: Vec<u32>,
    chan_cols: Vec<u32>,
    t_row: Vec<u32>,
    t_src: Vec<u32>,
    t_vals: Vec<f32>,
    /// Input offset of each output position (`[0]` for a dense layer).
    offs: Vec<u32>,
    /// Compute the whole weight gradient (dense, into the tensor's gradient) instead of the
    /// kept entries only (into `kept_grad`).
    pub dense_weight_grad: bool,
    /// The last backward pass's kept-weight gradients, in `vals` order.
    kept_grad: Arc<Mutex<Vec<f32>>>,
    pub isa: Isa,
    /// Distinct for every structure built in this process (clones share it): two gradients with
    /// the same `layout` have the same kept positions.
    pub layout: u64,
}

/// The next [`SparseWeight::layout`].
static LAYOUTS: AtomicU64 = AtomicU64::new(0);

/// The geometry of a dense layer `in -> out` as a 1x1 convolution.
pub fn linear_geom(inputs: usize, out: usize) -> ConvGeom {
    ConvGeom { c: inputs, h: 1, w: 1, out, k: 1, stride: 1, pad: 0, groups: 1 }
}

fn padded(g: &ConvGeom) -> (usize, usize) {
    (g.h + 2 * g.pad, g.w + 2 * g.pad)
}

impl SparseWeight {
    /// The structure of the nonzeros of `pattern` (a mask, or the effective weights), `(out,
    /// fan_in)` row-major; values are filled by [`SparseWeight::refresh`].
    pub fn new(geom: ConvGeom, pattern: &[f32], isa: Isa) -> SparseWeight {
        let g = geom;
        let fan = g.fan_in();
        assert_eq!(pattern.len(), g.out * fan, "sparse weight pattern size");
        let (hp, wp) = padded(&g);
        let (cpg, opg, kk) = (g.c / g.groups, g.out / g.groups, g.k * g.k);
        let mut row_ptr = Vec::with_capacity(g.out + 1);
        let (mut base, mut dense) = (Vec::new(), Vec::new());
        row_ptr.push(0u32);
        for o in 0..g.out {
            let group = o / opg;
            for (f, v) in pattern[o * fan..(o + 1) * fan].iter().enumerate() {
                if *v != 0.0 {
                    let (cl, ki, kj) = (f / kk, f / g.k % g.k, f % g.k);
                    let ci = group * cpg + cl;
                    base.push(((ci * hp + ki) * wp + kj) as u32);
                    dense.push((o * fan + f) as u32);
                }
            }
            row_ptr.push(base.len() as u32);
        }
        // By input row: a counting sort of the kept weights on `base` (stable: rows ascend).
        let plane = hp * wp;
        let mut count = vec![0u32; g.c * plane + 1];
        for &b in &base {
            count[b as usize + 1] += 1;
        }
        let mut col_ptr = vec![0u32];
        let mut col_key = Vec::new();
        let mut chan_cols = vec![0u32; g.c + 1];
        let mut start = vec![0u32; g.c * plane];
        let mut next = 0u32;
        for key in 0..g.c * plane {
            start[key] = next;
            let n = count[key + 1];
            if n > 0 {
                next += n;
                col_key.push((key % plane) as u32);
                col_ptr.push(next);
                chan_cols[key / plane + 1] = col_key.len() as u32;
            }
        }
        for c in 1..=g.c {
            chan_cols[c] = chan_cols[c].max(chan_cols[c - 1]);
        }
        let mut t_row = vec![0u32; base.len()];
        let mut t_src = vec![0u32; base.len()];
        for o in 0..g.out {
            for k in row_ptr[o] as usize..row_ptr[o + 1] as usize {
                let slot = &mut start[base[k] as usize];
                t_row[*slot as usize] = o as u32;
                t_src[*slot as usize] = k as u32;
                *slot += 1;
            }
        }
        let offs = (0..g.oh())
            .flat_map(|oy| (0..g.ow()).map(move |ox| ((oy * g.stride) * wp + ox * g.stride) as u32))
            .collect();
        let nnz = base.len();
        SparseWeight {
            geom,
            row_ptr,
            base,
            dense,
            vals: vec![0.0; nnz],
            col_ptr,
            col_key,
            chan_cols,
            t_row,
            t_src,
            t_vals: vec![0.0; nnz],
            offs,
            dense_weight_grad: false,
            kept_grad: Arc::new(Mutex::new(vec![0.0; nnz])),
            isa,
            layout: LAYOUTS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Takes the kept weights' current values from the dense weight `w`.
    pub fn refresh(&mut self, w: &[f32]) {
        for (v, &i) in self.vals.iter_mut().zip(&self.dense) {
            *v = w[i as usize];
        }
        for (v, &k) in self.t_vals.iter_mut().zip(&self.t_src) {
            *v = self.vals[k as usize];
        }
    }

    /// The kept weights' positions in the dense weight and their gradients from the last
    /// backward pass (`None` when the gradient went to the dense tensor).
    pub fn kept_grad(&self) -> Option<(&[u32], MutexGuard<'_, Vec<f32>>)> {
        if self.dense_weight_grad {
            return None;
        }
        Some((&self.dense, self.kept_grad.lock().unwrap_or_else(|e| e.into_inner())))
    }

    /// The kept weights' positions in the dense weight (row-major), ascending.
    pub fn kept(&self) -> &[u32] {
        &self.dense
    }

    pub fn nnz(&self) -> usize {
        self.vals.len()
    }

    /// Whether the structure is exactly the nonzeros of `pattern`.
    pub fn matches(&self, pattern: &[f32]) -> bool {
        pattern.iter().filter(|v| **v != 0.0).count() == self.nnz()
            && self.dense.iter().all(|&i| pattern[i as usize] != 0.0)
    }

    fn rows(&self) -> Rows<'_> {
        Rows { ptr: &self.row_ptr, base: &self.base, vals: &self.vals }
    }

    fn cols(&self) -> Cols<'_> {
        Cols { ptr: &self.col_ptr, key: &self.col_key, row: &self.t_row, vals: &self.t_vals }
    }

    fn chan(&self, c: usize) -> Range<usize> {
        self.chan_cols[c] as usize..self.chan_cols[c + 1] as usize
    }

    /// `[out][positions][bp]`: the forward product on the batch-contiguous input `xt`.
    /// With `relu`, through a ReLU.
    fn forward(&self, xt: &[f32], bias: Option<&[f32]>, bp: usize, relu: bool) -> Vec<f32> {
        let row_len = self.offs.len() * bp;
        // Every row and lane is written.
        let mut yt = take(self.geom.out * row_len, false);
        let rows = self.rows();
        let work = (self.nnz() + self.geom.out) * row_len;
        yt.par_chunks_mut(row_len.max(1)).enumerate().with_min_len(min_len(self.geom.out, work)).for_each(|(o, y)| {
            let b = bias.map_or(0.0, |b| b[o]);
            kernels::forward(self.isa, rows, o, &self.offs, xt, bp, b, relu, y);
        });
        yt
    }

    /// The padded, batch-contiguous input gradient of `dyt`.
    fn input_grad(&self, dyt: &[f32], bp: usize) -> Vec<f32> {
        let (hp, wp) = padded(&self.geom);
        let plane = hp * wp * bp;
        let mut dxt = take(self.geom.c * plane, true);
        let cols = self.cols();
        let work = (self.nnz() + self.geom.c) * self.offs.len() * bp;
        dxt.par_chunks_mut(plane.max(1)).enumerate().with_min_len(min_len(self.geom.c, work)).for_each(|(c, p)| {
            kernels::input_grad(self.isa, cols, self.chan(c), &self.offs, dyt, bp, p);
        });
        dxt
    }

    /// The kept weights' gradients (in `vals` order; none unless `kept`) and the bias gradient.
    fn weight_grad(&self, dyt: &[f32], xt: &[f32], bp: usize, kept: bool) -> (Vec<f32>, Vec<f32>) {
        let mut dw = vec![0.0; if kept { self.nnz() } else { 0 }];
        let mut slices = Vec::with_capacity(self.geom.out);
        let mut rest = &mut dw[..];
        for o in 0..self.geom.out {
            let len = if kept { (self.row_ptr[o + 1] - self.row_ptr[o]) as usize } else { 0 };
            let (a, b) = rest.split_at_mut(len);
            slices.push(a);
            rest = b;
        }
        let rows = self.rows();
        let work = (self.nnz() + self.geom.out) * self.offs.len() * bp;
        let db = slices
            .into_par_iter()
            .enumerate()
            .with_min_len(min_len(self.geom.out, work))
            .map(|(o, d)| kernels::weight_grad(self.isa, rows, o, &self.offs, dyt, xt, bp, d))
            .collect();
        (dw, db)
    }
}

/// The padded input `[c][hp][wp][bp]` of `xs` `(batch, c*h*w)`.
fn input_layout(isa: Isa, g: &ConvGeom, xs: &[f32], batch: usize, bp: usize) -> Vec<f32> {
    let (hp, wp) = padded(g);
    let in_len = g.in_len();
    // Without padding (and with whole lane groups) every element is written.
    let mut xt = take(g.c * hp * wp * bp, g.pad > 0 || !batch.is_multiple_of(LANES));
    if g.h == 1 && g.w == 1 {
        // A dense layer: one strip per block of features.
        let min = min_len(g.c.div_ceil(64), xt.len());
        xt.par_chunks_mut(64 * bp).enumerate().with_min_len(min).for_each(|(i, d)| {
            let n = d.len() / bp;
            kernels::to_batch_minor(isa, &xs[i * 64..], in_len, n, batch, d, bp);
        });
        return xt;
    }
    let min = min_len(g.c, xt.len());
    xt.par_chunks_mut(hp * wp * bp).enumerate().with_min_len(min).for_each(|(c, plane)| {
        for y in 0..g.h {
            let row = &mut plane[((y + g.pad) * wp + g.pad) * bp..];
            kernels::to_batch_minor(isa, &xs[(c * g.h + y) * g.w..], in_len, g.w, batch, row, bp);
        }
    });
    xt
}

/// The batch-contiguous `[rows][bp]` form of an output gradient `gy` `(batch, rows)`, zero in
/// the padding lanes (so nothing flows back from them).
fn output_grad_layout(isa: Isa, gy: &[f32], rows: usize, batch: usize, bp: usize) -> Vec<f32> {
    let mut dyt = take(rows * bp, !batch.is_multiple_of(LANES));
    let min = min_len(rows.div_ceil(64), dyt.len());
    dyt.par_chunks_mut(64 * bp).enumerate().with_min_len(min).for_each(|(i, d)| {
        let n = d.len() / bp;
        kernels::to_batch_minor(isa, &gy[i * 64..], rows, n, batch, d, bp);
    });
    dyt
}

/// Adds `[rows][bp]` into `dst` `(batch, rows)`.
fn from_batch_minor(isa: Isa, src: &[f32], rows: usize, bp: usize, dst: &mut [f32]) {
    let min = min_len(dst.len().div_ceil((LANES * rows).max(1)), dst.len());
    dst.par_chunks_mut((LANES * rows).max(1)).enumerate().with_min_len(min).for_each(|(i, d)| {
        kernels::add_strip(isa, kernels::Strip { src, s0: 0, n: rows, bp, stride: rows, d0: 0, b0: i * LANES }, d);
    });
}

/// Adds the interior of the padded `[c][hp][wp][bp]` gradient into `dx` `(batch, c*h*w)`.
fn add_input_grad(isa: Isa, g: &ConvGeom, dxt: &[f32], bp: usize, dx: &mut [f32]) {
    let (hp, wp) = padded(g);
    let in_len = g.in_len();
    if g.h == 1 && g.w == 1 {
        return from_batch_minor(isa, dxt, in_len, bp, dx);
    }
    let min = min_len(dx.len().div_ceil((LANES * in_len).max(1)), dx.len());
    dx.par_chunks_mut((LANES * in_len).max(1)).enumerate().with_min_len(min).for_each(|(i, d)| {
        for c in 0..g.c {
            for y in 0..g.h {
                let s0 = (c * hp + y + g.pad) * wp + g.pad;
                let strip =
                    kernels::Strip { src: dxt, s0, n: g.w, bp, stride: in_len, d0: (c * g.h + y) * g.w, b0: i * LANES };
                kernels::add_strip(isa, strip, d);
            }
        }
    });
}

/// A masked dense layer or convolution through `sw`'s kept weights. `weight` is the layer's
/// dense parameter tensor: with `sw.dense_weight_grad` its whole gradient is accumulated there,
/// else the kept weights' gradients replace [`SparseWeight::kept_grad`] (the layer must be the
/// weight's only use). `input_grad: false` skips `dL/dx`.
pub fn sparse_layer<T: Tape<f32, Cpu>>(
    x: Tensor2<T>,
    weight: &Param2,
    sw: &Arc<SparseWeight>,
    bias: Option<&Param1>,
    input_grad: bool,
) -> Tensor2<T> {
    let (x, mut tape) = x.split_tape();
    let batch = x.shape().0;
    let g = sw.geom;
    assert_eq!(x.shape().1, g.in_len(), "sparse layer input size");
    let bp = batch.div_ceil(LANES) * LANES;
    let mut xs = take(batch * g.in_len(), false);
    x.copy_into(&mut xs);
    let xt = input_layout(sw.isa, &g, &xs, batch, bp);
    let yt = sw.forward(&xt, bias.map(|b| b.values().as_slice()), bp, false);
    let rows = g.out_len();
    let mut y = vec![0.0; batch * rows];
    from_batch_minor(sw.isa, &yt, rows, bp, &mut y);
    give(yt);
    let out = x.device().tensor_from_vec(y, (batch, rows));
    if !T::OWNS_TAPE {
        give(xt);
        give(xs);
        return out.put_tape(tape);
    }
    let (xg, wg, bg, yg) = (x.ghost(), weight.tensor().ghost(), bias.map(|b| b.tensor().ghost()), out.ghost());
    let sw = Arc::clone(sw);
    let xs = if sw.dense_weight_grad {
        Some(xs)
    } else {
        give(xs);
        None
    };
    tape.add_backward_op(move |grads| {
        // The output gradient goes straight into the batch-contiguous layout (no copy of it
        // unless the dense weight gradient needs one).
        let gy = grads.get_or_alloc_mut(&yg)?;
        let dyt = output_grad_layout(sw.isa, gy, rows, batch, bp);
        let gy = xs.as_ref().map(|_| gy.to_vec());
        let (dw_kept, db) = sw.weight_grad(&dyt, &xt, bp, xs.is_none());
        match (&xs, &gy) {
            (Some(xs), Some(gy)) if g.h == 1 && g.w == 1 => {
                let dw = grads.get_or_alloc_mut(&wg)?;
                matmul(dw, Mat::new(gy, batch, g.out).t(), Mat::new(xs, batch, g.c), true)
            }
            (Some(xs), Some(gy)) => add_into(grads.get_or_alloc_mut(&wg)?, &conv::param_grads(&g, xs, gy, batch).0),
            _ => *sw.kept_grad.lock().unwrap_or_else(|e| e.into_inner()) = dw_kept,
        }
        if let Some(bg) = bg {
            add_into(grads.get_or_alloc_mut(&bg)?, &db);
        }
        if input_grad {
            let dxt = sw.input_grad(&dyt, bp);
            add_input_grad(sw.isa, &g, &dxt, bp, grads.get_or_alloc_mut(&xg)?);
            give(dxt);
        }
        give(dyt);
        give(xt);
        Ok(())
    });
    out.put_tape(tape)
}

#[cfg(test)]
mod tests;
