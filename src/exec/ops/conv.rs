//! 2-D convolution as im2col + `gemm`, rayon over the batch. In: `(batch, c*h*w)`, weight
//! `(out, c*k*k)`, optional bias `(out,)`. Out: `(batch, out*oh*ow)`.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::gemm::{matmul, Mat};
use super::{add_into, fixed_chunks, read, with_backward, Tensor1, Tensor2};

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
    /// im2col matrix: `c*k*k` rows by `oh*ow` columns.
    fn col_rows(&self) -> usize {
        self.c * self.k * self.k
    }
    fn col_cols(&self) -> usize {
        self.oh() * self.ow()
    }

    /// Input coordinate read by output coordinate `o` at kernel offset `kk`, if inside.
    fn src(&self, o: usize, kk: usize, size: usize) -> Option<usize> {
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
                    for ox in 0..ow {
                        if let Some(ix) = g.src(ox, kj, g.w) {
                            dx[base + ix] += col[row * oh * ow + oy * ow + ox];
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
    weight: &Tensor2,
    bias: Option<&Tensor1>,
    g: ConvGeom,
    input_grad: bool,
) -> Tensor2<T> {
    let (x, tape) = x.split_tape();
    let batch = x.shape().0;
    assert_eq!(x.shape().1, g.in_len(), "conv input size");
    let (xs, ws, bs) = (read(&x), read(weight), bias.map(read));
    let mut y = vec![0.0; batch * g.out_len()];
    let (rows, cols) = (g.col_rows(), g.col_cols());
    y.par_chunks_mut(g.out_len().max(1)).zip(xs.par_chunks(g.in_len().max(1))).for_each_init(
        || vec![0.0; rows * cols],
        |col, (yb, xb)| {
            im2col(&g, xb, col);
            matmul(yb, Mat::new(&ws, g.out, rows), Mat::new(col, rows, cols), false);
            if let Some(bs) = &bs {
                for (line, b) in yb.chunks_mut(cols).zip(bs) {
                    line.iter_mut().for_each(|v| *v += b);
                }
            }
        },
    );
    let out = x.device().tensor_from_vec(y, (batch, g.out_len()));
    let (xg, wg, bg) = (x.ghost(), weight.ghost(), bias.map(|b| b.ghost()));
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

/// `dW = sum_b gy_b col_b^T` and `db = sum_b rowsum(gy_b)`, summed in a fixed chunk order.
fn param_grads(g: &ConvGeom, xs: &[f32], gy: &[f32], batch: usize) -> (Vec<f32>, Vec<f32>) {
    let (rows, cols) = (g.col_rows(), g.col_cols());
    let chunks = fixed_chunks(batch, rayon::current_num_threads());
    let partials: Vec<(Vec<f32>, Vec<f32>)> = chunks
        .into_par_iter()
        .map(|range| {
            let mut dw = vec![0.0; g.out * rows];
            let mut db = vec![0.0; g.out];
            let mut col = vec![0.0; rows * cols];
            for b in range {
                im2col(g, &xs[b * g.in_len()..(b + 1) * g.in_len()], &mut col);
                let gyb = &gy[b * g.out_len()..(b + 1) * g.out_len()];
                matmul(&mut dw, Mat::new(gyb, g.out, cols), Mat::new(&col, rows, cols).t(), true);
                for (d, line) in db.iter_mut().zip(gyb.chunks(cols.max(1))) {
                    *d += line.iter().sum::<f32>();
                }
            }
            (dw, db)
        })
        .collect();
    let mut it = partials.into_iter();
    let (mut dw, mut db) = it.next().unwrap_or_else(|| (vec![0.0; g.out * rows], vec![0.0; g.out]));
    for (pw, pb) in it {
        dw.iter_mut().zip(&pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(&pb).for_each(|(a, b)| *a += b);
    }
    (dw, db)
}

/// `dx_b += col2im(W^T gy_b)`, one sample per rayon task.
fn input_grads(g: &ConvGeom, ws: &[f32], gy: &[f32], dx: &mut [f32]) {
    let (rows, cols) = (g.col_rows(), g.col_cols());
    dx.par_chunks_mut(g.in_len().max(1)).zip(gy.par_chunks(g.out_len().max(1))).for_each_init(
        || vec![0.0; rows * cols],
        |col, (dxb, gyb)| {
            matmul(col, Mat::new(ws, g.out, rows).t(), Mat::new(gyb, g.out, cols), false);
            col2im(g, col, dxb);
        },
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_close, check_input_grad, numeric_grad, random};
    use super::*;

    /// Direct definition of the convolution, for reference.
    fn naive(g: &ConvGeom, x: &[f32], w: &[f32], b: &[f32], batch: usize) -> Vec<f32> {
        let (oh, ow) = (g.oh(), g.ow());
        let mut y = vec![0.0; batch * g.out_len()];
        for n in 0..batch {
            for o in 0..g.out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = b[o];
                        for ci in 0..g.c {
                            for ki in 0..g.k {
                                for kj in 0..g.k {
                                    let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                                    let ix = (ox * g.stride + kj) as isize - g.pad as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                        continue;
                                    }
                                    let xi = n * g.in_len() + (ci * g.h + iy as usize) * g.w + ix as usize;
                                    s += x[xi] * w[((o * g.c + ci) * g.k + ki) * g.k + kj];
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

    const GEOM: ConvGeom = ConvGeom { c: 2, h: 7, w: 6, out: 3, k: 3, stride: 2, pad: 1 };

    #[test]
    fn forward_matches_naive_on_odd_sizes() {
        for g in [GEOM, ConvGeom { c: 1, h: 5, w: 5, out: 2, k: 5, stride: 1, pad: 0 }] {
            let batch = 3;
            let dev = Cpu::default();
            let (x, w, b) = (random(batch * g.in_len(), 1), random(g.out * g.c * g.k * g.k, 2), random(g.out, 3));
            let xt: Tensor2 = dev.tensor_from_vec(x.clone(), (batch, g.in_len()));
            let wt: Tensor2 = dev.tensor_from_vec(w.clone(), (g.out, g.c * g.k * g.k));
            let bt: Tensor1 = dev.tensor_from_vec(b.clone(), (g.out,));
            let y = read(&conv2d(xt, &wt, Some(&bt), g, true));
            assert_close(&y, &naive(&g, &x, &w, &b, batch), 1e-5);
        }
    }

    #[test]
    fn input_gradient_matches_finite_differences() {
        let g = GEOM;
        let dev = Cpu::default();
        let w: Tensor2 = dev.tensor_from_vec(random(g.out * 18, 2), (g.out, 18));
        let x = random(2 * g.in_len(), 1);
        let (a, n) =
            check_input_grad(&x, (2, g.in_len()), |x| conv2d(x, &w, None, g, true), |x| conv2d(x, &w, None, g, true));
        assert_close(&a, &n, 1e-2);
    }

    #[test]
    fn weight_and_bias_gradients_match_finite_differences() {
        let (g, batch) = (GEOM, 3);
        let dev = Cpu::default();
        let x = random(batch * g.in_len(), 1);
        let (w, b) = (random(g.out * 18, 2), random(g.out, 3));
        let r = random(batch * g.out_len(), 4);
        let xt: Tensor2 = dev.tensor_from_vec(x.clone(), (batch, g.in_len()));
        let wt: Tensor2 = dev.tensor_from_vec(w.clone(), (g.out, 18));
        let bt: Tensor1 = dev.tensor_from_vec(b.clone(), (g.out,));
        let rt: Tensor2 = dev.tensor_from_vec(r.clone(), (batch, g.out_len()));
        let y = conv2d(xt.leaky_trace(), &wt, Some(&bt), g, false);
        let grads = (y * rt).sum::<(), _>().backward();
        let loss = |w: &[f32], b: &[f32]| -> f64 {
            let y = naive(&g, &x, w, b, batch);
            y.iter().zip(&r).map(|(a, b)| (*a as f64) * (*b as f64)).sum()
        };
        assert_close(&grads.get(&wt).as_vec(), &numeric_grad(&w, |w| loss(w, &b)), 1e-2);
        assert_close(&grads.get(&bt).as_vec(), &numeric_grad(&b, |b| loss(&w, b)), 1e-2);
    }
}
