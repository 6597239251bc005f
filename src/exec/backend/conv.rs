//! 2-D convolution as im2col + `gemm`, rayon over the batch. In: `(batch, c*h*w)`, weight
//! `(out, c/groups*k*k)`, optional bias `(out,)`. Out: `(batch, out*oh*ow)`.
//!
//! Grouped convolution reuses the full im2col matrix: its rows are ordered by input channel, so
//! group `i`'s rows, its weight rows and its output rows are each one contiguous block, and the
//! product is one gemm per group (a block-diagonal weight). Depthwise convolution
//! (`groups == c == out`) takes the direct kernel of [`super::depthwise`] instead.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::depthwise;
use super::gemm::{matmul, Mat};
use super::{add_into, fixed_chunks, read, with_backward, Param1, Param2, Tensor2};

/// Input geometry and hyper-parameters of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    /// Input and output channels split into this many independent groups (1: a full conv).
    pub groups: usize,
}

impl ConvGeom {
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    pub fn out_len(&self) -> usize {
        self.out * self.oh() * self.ow()
    }
    /// Depthwise: one input channel per output channel, taken by the direct kernel.
    pub fn depthwise(&self) -> bool {
        self.groups == self.c && self.groups == self.out
    }
    /// Length of one weight row: `c/groups * k*k`.
    pub fn fan_in(&self) -> usize {
        self.c / self.groups * self.k * self.k
    }
    /// im2col matrix: `c*k*k` rows by `oh*ow` columns (group `i` owns rows
    /// `i*fan_in .. (i+1)*fan_in`).
    fn col_rows(&self) -> usize {
        self.c * self.k * self.k
    }
    /// A 1x1 conv with stride 1 and no padding: the image is its own column matrix, so
    /// im2col and col2im are skipped (MobileNet's pointwise convs).
    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
    /// Scratch for the column matrix (none when it is not needed).
    fn col_buffer(&self) -> Vec<f32> {
        if self.depthwise() || self.pointwise() {
            Vec::new()
        } else {
            vec![0.0; self.col_rows() * self.col_cols()]
        }
    }
    /// Sample `x`'s column matrix: `x` itself for a pointwise conv, else im2col into `col`.
    fn columns<'a>(&self, x: &'a [f32], col: &'a mut [f32]) -> &'a [f32] {
        if self.pointwise() {
            return x;
        }
        im2col(self, x, col);
        col
    }
    /// Output channels per group.
    fn out_per_group(&self) -> usize {
        self.out / self.groups
    }
    fn col_cols(&self) -> usize {
        self.oh() * self.ow()
    }

    /// With stride 1, the output columns `lo..hi` of a row of `ow` read inside the input at
    /// kernel column `kj` (input column `ox + kj - pad`); the rest read padding.
    fn unit_stride_span(&self, kj: usize, ow: usize) -> (usize, usize) {
        let lo = self.pad.saturating_sub(kj).min(ow);
        let hi = (self.w + self.pad).saturating_sub(kj).min(ow).max(lo);
        (lo, hi)
    }

    /// Input coordinate read by output coordinate `o` at kernel offset `kk`, if inside.
    pub(super) fn src(&self, o: usize, kk: usize, size: usize) -> Option<usize> {
        (o * self.stride + kk).checked_sub(self.pad).filter(|&i| i < size)
    }
}

/// One sample's image `(c, h, w)` to its column matrix (zeros where the window hits padding).
fn im2col(g: &ConvGeom, x: &[f32], col: &mut [f32]) {
    let (oh, ow) = (g.oh(), g.ow());
    for ci in 0..g.c {
        for ki in 0..g.k {
            for kj in 0..g.k {
                let row = (ci * g.k + ki) * g.k + kj;
                let dst = &mut col[row * oh * ow..(row + 1) * oh * ow];
                for oy in 0..oh {
                    let line = &mut dst[oy * ow..(oy + 1) * ow];
                    let Some(iy) = g.src(oy, ki, g.h) else {
                        line.fill(0.0);
                        continue;
                    };
                    let src = &x[(ci * g.h + iy) * g.w..(ci * g.h + iy + 1) * g.w];
                    if g.stride == 1 {
                        // One contiguous run of the input row, zeros where the window hangs over.
                        let (lo, hi) = g.unit_stride_span(kj, ow);
                        line[..lo].fill(0.0);
                        line[hi..].fill(0.0);
                        if lo < hi {
                            line[lo..hi].copy_from_slice(&src[lo + kj - g.pad..hi + kj - g.pad]);
                        }
                        continue;
                    }
                    for (ox, v) in line.iter_mut().enumerate() {
                        *v = g.src(ox, kj, g.w).map_or(0.0, |ix| src[ix]);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each column entry back into the image it was read from.
fn col2im(g: &ConvGeom, col: &[f32], dx: &mut [f32]) {
    let (oh, ow) = (g.oh(), g.ow());
    for ci in 0..g.c {
        for ki in 0..g.k {
            for kj in 0..g.k {
                let row = (ci * g.k + ki) * g.k + kj;
                for oy in 0..oh {
                    let Some(iy) = g.src(oy, ki, g.h) else {
                        continue;
                    };
                    let base = (ci * g.h + iy) * g.w;
                    let line = &col[row * oh * ow + oy * ow..][..ow];
                    if g.stride == 1 {
                        let (lo, hi) = g.unit_stride_span(kj, ow);
                        if lo < hi {
                            let dst = &mut dx[base + lo + kj - g.pad..base + hi + kj - g.pad];
                            dst.iter_mut().zip(&line[lo..hi]).for_each(|(d, v)| *d += v);
                        }
                        continue;
                    }
                    for (ox, v) in line.iter().enumerate() {
                        if let Some(ix) = g.src(ox, kj, g.w) {
                            dx[base + ix] += v;
                        }
                    }
                }
            }
        }
    }
}

/// Convolution forward; `input_grad: false` skips `dL/dx` (the network's input needs none).
pub fn conv2d<T: Tape<f32, Cpu>>(
    x: Tensor2<T>,
    weight: &Param2,
    bias: Option<&Param1>,
    g: ConvGeom,
    input_grad: bool,
) -> Tensor2<T> {
    let (x, tape) = x.split_tape();
    let batch = x.shape().0;
    assert_eq!(x.shape().1, g.in_len(), "conv input size");
    assert_eq!(*weight.tensor().shape(), (g.out, g.fan_in()), "conv weight shape");
    let (xs, ws) = (read(&x), weight.values().clone());
    let y = forward(&g, &xs, &ws, bias.map(|b| b.values().as_slice()), batch);
    let out = x.device().tensor_from_vec(y, (batch, g.out_len()));
    let (xg, wg, bg) = (x.ghost(), weight.tensor().ghost(), bias.map(|b| b.tensor().ghost()));
    with_backward(out, tape, move |gy, grads| {
        let (dw, db) = param_grads(&g, &xs, gy, batch);
        add_into(grads.get_or_alloc_mut(&wg)?, &dw);
        if let Some(bg) = bg {
            add_into(grads.get_or_alloc_mut(&bg)?, &db);
        }
        if input_grad {
            let dx = grads.get_or_alloc_mut(&xg)?;
            input_grads(&g, &ws, gy, dx);
        }
        Ok(())
    })
}

/// `y_b = bias + W * im2col(x_b)` per group, one sample per rayon task.
fn forward(g: &ConvGeom, xs: &[f32], ws: &[f32], bs: Option<&[f32]>, batch: usize) -> Vec<f32> {
    let mut y = vec![0.0; batch * g.out_len()];
    let samples = y.par_chunks_mut(g.out_len().max(1)).zip(xs.par_chunks(g.in_len().max(1)));
    if g.depthwise() {
        let wt = depthwise::tap_major(g, ws);
        samples
            .for_each_init(|| depthwise::Scratch::new(g), |s, (yb, xb)| depthwise::forward(g, xb, ws, &wt, bs, yb, s));
        return y;
    }
    let cols = g.col_cols();
    let (og, fan) = (g.out_per_group(), g.fan_in());
    samples.for_each_init(
        || g.col_buffer(),
        |col, (yb, xb)| {
            let col = g.columns(xb, col);
            for ((yg, wg), cg) in yb.chunks_mut(og * cols).zip(ws.chunks(og * fan)).zip(col.chunks(fan * cols)) {
                matmul(yg, Mat::new(wg, og, fan), Mat::new(cg, fan, cols), false);
            }
            if let Some(bs) = bs {
                for (line, b) in yb.chunks_mut(cols).zip(bs) {
                    line.iter_mut().for_each(|v| *v += b);
                }
            }
        },
    );
    y
}

/// `dW_i = sum_b gy_{b,i} col_{b,i}^T` per group and `db = sum_b rowsum(gy_b)`, summed in a
/// fixed chunk order.
pub(super) fn param_grads(g: &ConvGeom, xs: &[f32], gy: &[f32], batch: usize) -> (Vec<f32>, Vec<f32>) {
    let cols = g.col_cols();
    let (og, fan) = (g.out_per_group(), g.fan_in());
    let chunks = fixed_chunks(batch, rayon::current_num_threads());
    let partials: Vec<(Vec<f32>, Vec<f32>)> = chunks
        .into_par_iter()
        .map(|range| {
            let mut dw = vec![0.0; g.out * fan];
            let mut db = vec![0.0; g.out];
            let mut col = g.col_buffer();
            let mut scratch = depthwise::Scratch::new(g);
            for b in range {
                let xb = &xs[b * g.in_len()..(b + 1) * g.in_len()];
                let gyb = &gy[b * g.out_len()..(b + 1) * g.out_len()];
                if g.depthwise() {
                    depthwise::weight_grad(g, xb, gyb, &mut dw, &mut scratch);
                } else {
                    let col = g.columns(xb, &mut col);
                    let blocks = dw.chunks_mut(og * fan).zip(gyb.chunks(og * cols)).zip(col.chunks(fan * cols));
                    for ((dwg, gyg), cg) in blocks {
                        matmul(dwg, Mat::new(gyg, og, cols), Mat::new(cg, fan, cols).t(), true);
                    }
                }
                for (d, line) in db.iter_mut().zip(gyb.chunks(cols.max(1))) {
                    *d += line.iter().sum::<f32>();
                }
            }
            (dw, db)
        })
        .collect();
    let mut it = partials.into_iter();
    let (mut dw, mut db) = it.next().unwrap_or_else(|| (vec![0.0; g.out * fan], vec![0.0; g.out]));
    for (pw, pb) in it {
        dw.iter_mut().zip(&pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(&pb).for_each(|(a, b)| *a += b);
    }
    (dw, db)
}

/// `dx_b += col2im(W_i^T gy_{b,i})` per group, one sample per rayon task.
fn input_grads(g: &ConvGeom, ws: &[f32], gy: &[f32], dx: &mut [f32]) {
    let samples = dx.par_chunks_mut(g.in_len().max(1)).zip(gy.par_chunks(g.out_len().max(1)));
    if g.depthwise() {
        let wt = depthwise::tap_major(g, ws);
        samples.for_each_init(
            || depthwise::Scratch::new(g),
            |s, (dxb, gyb)| depthwise::input_grad(g, ws, &wt, gyb, dxb, s),
        );
        return;
    }
    let cols = g.col_cols();
    let (og, fan) = (g.out_per_group(), g.fan_in());
    // Pointwise: the column gradient is the input gradient, so accumulate straight into it.
    let pointwise = g.pointwise();
    samples.for_each_init(
        || g.col_buffer(),
        |col, (dxb, gyb)| {
            let dst: &mut [f32] = if pointwise { dxb } else { col };
            for ((cg, wg), gyg) in dst.chunks_mut(fan * cols).zip(ws.chunks(og * fan)).zip(gyb.chunks(og * cols)) {
                matmul(cg, Mat::new(wg, og, fan).t(), Mat::new(gyg, og, cols), pointwise);
            }
            if !pointwise {
                col2im(g, col, dxb);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_close, check_input_grad, numeric_grad, random};
    use super::*;

    /// Direct definition of the (grouped) convolution, for reference.
    fn naive(g: &ConvGeom, x: &[f32], w: &[f32], b: &[f32], batch: usize) -> Vec<f32> {
        let (oh, ow) = (g.oh(), g.ow());
        let (cg, og) = (g.c / g.groups, g.out / g.groups);
        let mut y = vec![0.0; batch * g.out_len()];
        for n in 0..batch {
            for o in 0..g.out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = b[o];
                        for j in 0..cg {
                            let ci = o / og * cg + j;
                            for ki in 0..g.k {
                                for kj in 0..g.k {
                                    let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                                    let ix = (ox * g.stride + kj) as isize - g.pad as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                        continue;
                                    }
                                    let xi = n * g.in_len() + (ci * g.h + iy as usize) * g.w + ix as usize;
                                    s += x[xi] * w[((o * cg + j) * g.k + ki) * g.k + kj];
                                }
                            }
                        }
                        y[n * g.out_len() + (o * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    const GEOM: ConvGeom = ConvGeom { c: 2, h: 7, w: 6, out: 3, k: 3, stride: 2, pad: 1, groups: 1 };
    /// Two groups of 2 input and 3 output channels each.
    const GROUPED: ConvGeom = ConvGeom { c: 4, h: 6, w: 5, out: 6, k: 3, stride: 1, pad: 1, groups: 2 };
    const DEPTHWISE: ConvGeom = ConvGeom { c: 3, h: 7, w: 6, out: 3, k: 3, stride: 1, pad: 1, groups: 3 };
    const DEPTHWISE_STRIDED: ConvGeom = ConvGeom { c: 3, h: 7, w: 6, out: 3, k: 3, stride: 2, pad: 1, groups: 3 };
    /// Depthwise with channel multiplier 2: goes through the grouped gemm path.
    const MULTIPLIER: ConvGeom = ConvGeom { c: 2, h: 5, w: 5, out: 4, k: 3, stride: 2, pad: 1, groups: 2 };

    const ALL: [ConvGeom; 12] = [
        // Depthwise, channel-last (small planes) with stride 1 and 2, and channel-first with
        // many channels.
        ConvGeom { c: 8, h: 5, w: 4, out: 8, k: 3, stride: 1, pad: 1, groups: 8 },
        ConvGeom { c: 9, h: 6, w: 5, out: 9, k: 3, stride: 2, pad: 1, groups: 9 },
        ConvGeom { c: 8, h: 9, w: 10, out: 8, k: 3, stride: 1, pad: 1, groups: 8 },
        GEOM,
        // Pointwise (no im2col), full and grouped.
        ConvGeom { c: 4, h: 3, w: 5, out: 6, k: 1, stride: 1, pad: 0, groups: 1 },
        ConvGeom { c: 4, h: 3, w: 5, out: 6, k: 1, stride: 1, pad: 0, groups: 2 },
        ConvGeom { c: 1, h: 5, w: 5, out: 2, k: 5, stride: 1, pad: 0, groups: 1 },
        GROUPED,
        DEPTHWISE,
        DEPTHWISE_STRIDED,
        ConvGeom { c: 4, h: 4, w: 5, out: 4, k: 5, stride: 3, pad: 2, groups: 4 },
        MULTIPLIER,
    ];

    /// im2col and col2im by definition, one entry at a time.
    fn columns_by_definition(g: &ConvGeom, x: &[f32]) -> Vec<f32> {
        let (oh, ow) = (g.oh(), g.ow());
        let mut col = vec![f32::NAN; g.col_rows() * oh * ow];
        for ci in 0..g.c {
            for ki in 0..g.k {
                for kj in 0..g.k {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let v = match (g.src(oy, ki, g.h), g.src(ox, kj, g.w)) {
                                (Some(iy), Some(ix)) => x[(ci * g.h + iy) * g.w + ix],
                                _ => 0.0,
                            };
                            col[((ci * g.k + ki) * g.k + kj) * oh * ow + oy * ow + ox] = v;
                        }
                    }
                }
            }
        }
        col
    }

    #[test]
    fn unit_stride_columns_and_their_adjoint_match_the_definition() {
        // Padding wider than the kernel and than the image, no padding, a kernel as wide as the
        // image, and a strided one for the general path.
        let geoms = [
            ConvGeom { c: 1, h: 3, w: 2, out: 1, k: 3, stride: 1, pad: 3, groups: 1 },
            ConvGeom { c: 2, h: 6, w: 5, out: 1, k: 3, stride: 1, pad: 1, groups: 1 },
            ConvGeom { c: 3, h: 5, w: 7, out: 1, k: 5, stride: 1, pad: 0, groups: 1 },
            ConvGeom { c: 1, h: 4, w: 4, out: 1, k: 4, stride: 1, pad: 0, groups: 1 },
            ConvGeom { c: 2, h: 7, w: 6, out: 1, k: 3, stride: 2, pad: 2, groups: 1 },
        ];
        for g in geoms {
            let x = random(g.in_len(), 9);
            let mut col = vec![f32::NAN; g.col_rows() * g.col_cols()];
            im2col(&g, &x, &mut col);
            assert_eq!(col, columns_by_definition(&g, &x), "{g:?}");
            // <im2col(x), c> == <x, col2im(c)> for any c.
            let c = random(col.len(), 10);
            let mut dx = vec![0.0; g.in_len()];
            col2im(&g, &c, &mut dx);
            let lhs: f64 = col.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| (a * b) as f64).sum();
            assert!((lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0), "{g:?}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn forward_matches_naive_on_odd_sizes() {
        for g in ALL {
            let batch = 3;
            let dev = Cpu::default();
            let (x, w, b) = (random(batch * g.in_len(), 1), random(g.out * g.fan_in(), 2), random(g.out, 3));
            let xt: Tensor2 = dev.tensor_from_vec(x.clone(), (batch, g.in_len()));
            let wt = Param2::new(dev.tensor_from_vec(w.clone(), (g.out, g.fan_in())));
            let bt = Param1::new(dev.tensor_from_vec(b.clone(), (g.out,)));
            let y = read(&conv2d(xt, &wt, Some(&bt), g, true));
            assert_close(&y, &naive(&g, &x, &w, &b, batch), 1e-5);
        }
    }

    /// A grouped conv equals separate convs on each group's channels: the groups do not mix.
    #[test]
    fn groups_do_not_mix_channels() {
        let g = GROUPED;
        let (x, w) = (random(g.in_len(), 1), random(g.out * g.fan_in(), 2));
        let dev = Cpu::default();
        let xt: Tensor2 = dev.tensor_from_vec(x.clone(), (1, g.in_len()));
        let wt = Param2::new(dev.tensor_from_vec(w.clone(), (g.out, g.fan_in())));
        let y = read(&conv2d(xt, &wt, None, g, true));
        let half = ConvGeom { c: 2, out: 3, groups: 1, ..g };
        for i in 0..2 {
            let xi: Tensor2 = dev.tensor_from_vec(x[i * half.in_len()..][..half.in_len()].to_vec(), (1, half.in_len()));
            let wi = Param2::new(dev.tensor_from_vec(w[i * 3 * 18..][..3 * 18].to_vec(), (3, 18)));
            let yi = read(&conv2d(xi, &wi, None, half, true));
            assert_close(&y[i * half.out_len()..][..half.out_len()], &yi, 1e-6);
        }
    }

    #[test]
    fn input_gradient_matches_finite_differences() {
        for g in ALL {
            let dev = Cpu::default();
            let w = Param2::new(dev.tensor_from_vec(random(g.out * g.fan_in(), 2), (g.out, g.fan_in())));
            let x = random(2 * g.in_len(), 1);
            let (a, n) = check_input_grad(
                &x,
                (2, g.in_len()),
                |x| conv2d(x, &w, None, g, true),
                |x| conv2d(x, &w, None, g, true),
            );
            assert_close(&a, &n, 1e-2);
        }
    }

    #[test]
    fn weight_and_bias_gradients_match_finite_differences() {
        for g in ALL {
            let batch = 3;
            let dev = Cpu::default();
            let x = random(batch * g.in_len(), 1);
            let (w, b) = (random(g.out * g.fan_in(), 2), random(g.out, 3));
            let r = random(batch * g.out_len(), 4);
            let xt: Tensor2 = dev.tensor_from_vec(x.clone(), (batch, g.in_len()));
            let wt = Param2::new(dev.tensor_from_vec(w.clone(), (g.out, g.fan_in())));
            let bt = Param1::new(dev.tensor_from_vec(b.clone(), (g.out,)));
            let rt: Tensor2 = dev.tensor_from_vec(r.clone(), (batch, g.out_len()));
            let y = conv2d(xt.leaky_trace(), &wt, Some(&bt), g, false);
            let grads = (y * rt).sum::<(), _>().backward();
            let loss = |w: &[f32], b: &[f32]| -> f64 {
                let y = naive(&g, &x, w, b, batch);
                y.iter().zip(&r).map(|(a, b)| (*a as f64) * (*b as f64)).sum()
            };
            assert_close(&grads.get(wt.tensor()).as_vec(), &numeric_grad(&w, |w| loss(w, &b)), 1e-2);
            assert_close(&grads.get(bt.tensor()).as_vec(), &numeric_grad(&b, |b| loss(&w, b)), 1e-2);
        }
    }
}
