//! Pooling: max and average over `size x size` windows with a stride (no padding), and global
//! average pooling. In: `(batch, c*h*w)`. Out: `(batch, c*oh*ow)` or `(batch, c)`.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::{read, with_backward, Tensor2};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub size: usize,
    pub stride: usize,
}

impl PoolGeom {
    pub fn oh(&self) -> usize {
        (self.h - self.size) / self.stride + 1
    }
    pub fn ow(&self) -> usize {
        (self.w - self.size) / self.stride + 1
    }
    #[cfg(test)]
    pub fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    pub fn out_len(&self) -> usize {
        self.c * self.oh() * self.ow()
    }

    /// Calls `f(output index, input index)` for every window element, in order.
    fn for_each(&self, batch: usize, mut f: impl FnMut(usize, usize)) {
        let (oh, ow) = (self.oh(), self.ow());
        for plane in 0..batch * self.c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let o = (plane * oh + oy) * ow + ox;
                    for i in 0..self.size {
                        let row = (plane * self.h + oy * self.stride + i) * self.w;
                        for j in 0..self.size {
                            f(o, row + ox * self.stride + j);
                        }
                    }
                }
            }
        }
    }
}

/// Max pooling; the first maximum of a window takes the gradient. Planes (one channel of one
/// sample) run in parallel; each output and its gradient stay inside its plane, so the bits do
/// not depend on the thread count.
pub fn max_pool<T: Tape<f32, Cpu>>(x: Tensor2<T>, g: PoolGeom) -> Tensor2<T> {
    pool_max(x, g, false)
}

/// A ReLU then [`max_pool`], bit for bit, in one pass: the pool of the ReLU's output is the
/// ReLU of the pool (each window's first maximum, or 0 where it is not positive), and the
/// gradient reaches the first maximum only where it is positive (elsewhere the ReLU's
/// derivative is 0, wherever the unfused pool sent it). The ReLU's output and its gradient are
/// never made: on LeNet-5-Caffe's first two layers, a serial pass over 1.5M and 0.4M floats
/// each way, and a copy.
pub fn relu_max_pool<T: Tape<f32, Cpu>>(x: Tensor2<T>, g: PoolGeom) -> Tensor2<T> {
    pool_max(x, g, true)
}

/// [`max_pool`], after a ReLU when `relu`.
fn pool_max<T: Tape<f32, Cpu>>(x: Tensor2<T>, g: PoolGeom, relu: bool) -> Tensor2<T> {
    let (x, tape) = x.split_tape();
    let batch = x.shape().0;
    let xs = read(&x);
    let (oh, ow) = (g.oh(), g.ow());
    let (plane_in, plane_out) = (g.h * g.w, oh * ow);
    let mut y = vec![0.0; batch * g.out_len()];
    // Per output, the input index of its window's first maximum, relative to its plane
    // (`NONE` where a ReLU before zeroed it: no gradient).
    let mut arg = vec![0u32; y.len()];
    if plane_out > 0 {
        y.par_chunks_mut(plane_out)
            .zip(arg.par_chunks_mut(plane_out))
            .zip(xs.par_chunks(plane_in))
            .with_min_len(8)
            .for_each(|((yp, ap), xp)| {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let start = oy * g.stride * g.w + ox * g.stride;
                        let (mut best, mut at) = (xp[start], start);
                        for i in 0..g.size {
                            let row = start + i * g.w;
                            for (j, &v) in xp[row..row + g.size].iter().enumerate() {
                                if v > best {
                                    (best, at) = (v, row + j);
                                }
                            }
                        }
                        let zeroed = relu && best.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater);
                        (yp[oy * ow + ox], ap[oy * ow + ox]) = if zeroed { (0.0, NONE) } else { (best, at as u32) };
                    }
                }
            });
    }
    let out = x.device().tensor_from_vec(y, (batch, g.out_len()));
    let xg = x.ghost();
    with_backward(out, tape, move |gy, grads| {
        let dx = grads.get_or_alloc_mut(&xg)?;
        if plane_out > 0 {
            dx.par_chunks_mut(plane_in)
                .zip(arg.par_chunks(plane_out))
                .zip(gy.par_chunks(plane_out))
                .with_min_len(8)
                .for_each(|((dxp, ap), gp)| {
                    for (&i, &gv) in ap.iter().zip(gp) {
                        if i != NONE {
                            dxp[i as usize] += gv;
                        }
                    }
                });
        }
        Ok(())
    })
}

/// No input: a window a ReLU before zeroed.
const NONE: u32 = u32::MAX;

/// Average pooling over full windows.
pub fn avg_pool<T: Tape<f32, Cpu>>(x: Tensor2<T>, g: PoolGeom) -> Tensor2<T> {
    let (x, tape) = x.split_tape();
    let batch = x.shape().0;
    let xs = read(&x);
    let inv = 1.0 / (g.size * g.size) as f32;
    let mut y = vec![0.0; batch * g.out_len()];
    g.for_each(batch, |o, i| y[o] += xs[i] * inv);
    let out = x.device().tensor_from_vec(y, (batch, g.out_len()));
    let xg = x.ghost();
    with_backward(out, tape, move |gy, grads| {
        let dx = grads.get_or_alloc_mut(&xg)?;
        g.for_each(batch, |o, i| dx[i] += gy[o] * inv);
        Ok(())
    })
}

/// Mean over each channel's `hw` positions.
pub fn global_avg_pool<T: Tape<f32, Cpu>>(x: Tensor2<T>, c: usize, hw: usize) -> Tensor2<T> {
    let (x, tape) = x.split_tape();
    let batch = x.shape().0;
    let xs = read(&x);
    let inv = 1.0 / hw as f32;
    let y: Vec<f32> = xs.chunks(hw).map(|p| p.iter().sum::<f32>() * inv).collect();
    let out = x.device().tensor_from_vec(y, (batch, c));
    let xg = x.ghost();
    with_backward(out, tape, move |gy, grads| {
        let dx = grads.get_or_alloc_mut(&xg)?;
        for (plane, g) in dx.chunks_mut(hw).zip(gy) {
            plane.iter_mut().for_each(|d| *d += g * inv);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_close, check_input_grad, random};
    use super::*;

    const G: PoolGeom = PoolGeom { c: 2, h: 7, w: 5, size: 3, stride: 2 };

    fn naive(x: &[f32], batch: usize, max: bool) -> Vec<f32> {
        let mut y = Vec::new();
        for plane in 0..batch * G.c {
            for oy in 0..G.oh() {
                for ox in 0..G.ow() {
                    let win: Vec<f32> =
                        (0..9).map(|t| x[(plane * G.h + oy * 2 + t / 3) * G.w + ox * 2 + t % 3]).collect();
                    y.push(if max {
                        win.iter().cloned().fold(f32::NEG_INFINITY, f32::max)
                    } else {
                        win.iter().sum::<f32>() / 9.0
                    });
                }
            }
        }
        y
    }

    #[test]
    fn max_and_avg_forward_match_naive() {
        let dev = Cpu::default();
        let x = random(3 * G.in_len(), 5);
        let t = || -> Tensor2 { dev.tensor_from_vec(x.clone(), (3, G.in_len())) };
        assert_eq!(read(&max_pool(t(), G)), naive(&x, 3, true));
        assert_close(&read(&avg_pool(t(), G)), &naive(&x, 3, false), 1e-6);
        let gap = read(&global_avg_pool(t(), G.c, G.h * G.w));
        let want: Vec<f32> = x.chunks(35).map(|p| p.iter().sum::<f32>() / 35.0).collect();
        assert_close(&gap, &want, 1e-6);
    }

    #[test]
    fn a_tied_window_gives_its_gradient_to_the_first_maximum_only() {
        // One 2x2 plane of equal values, one 2x2 window, plus a plane whose maximum comes last.
        let dev = Cpu::default();
        let g = PoolGeom { c: 2, h: 2, w: 2, size: 2, stride: 2 };
        let x: Tensor2 = dev.tensor_from_vec(vec![1.0, 1.0, 1.0, 1.0, 0.0, 2.0, 3.0, 3.0], (1, 8));
        let y = max_pool(x.leaky_trace(), g);
        assert_eq!(read(&y), vec![1.0, 3.0]);
        let grads = y.sum().backward();
        assert_eq!(grads.get(&x).as_vec(), vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    }

    /// `relu_max_pool` is dfdx's ReLU then `max_pool`, values and input gradients bit for bit:
    /// windows all negative, mixed, tied at zero and tied positive.
    #[test]
    fn a_fused_relu_and_max_pool_is_the_two_ops() {
        let dev = Cpu::default();
        let mut x: Vec<f32> = random(3 * G.in_len(), 8);
        // A plane of zeros and negatives, and ties at a positive value.
        x[..35].iter_mut().enumerate().for_each(|(i, v)| *v = if i % 3 == 0 { 0.0 } else { -1.0 - i as f32 });
        x[35..70].iter_mut().for_each(|v| *v = 0.5);
        let r = random(3 * G.out_len(), 9);
        let run = |fused: bool| {
            let xt: Tensor2 = dev.tensor_from_vec(x.clone(), (3, G.in_len()));
            let y = if fused {
                relu_max_pool(xt.leaky_trace(), G)
            } else {
                max_pool(crate::exec::backend::act::act(xt.leaky_trace(), crate::ir::plan::Activation::Relu), G)
            };
            let yv = read(&y);
            let rt: Tensor2 = dev.tensor_from_vec(r.clone(), (3, G.out_len()));
            let grads = (y * rt).sum::<(), _>().backward();
            (yv, grads.get(&xt).as_vec())
        };
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        let ((y0, d0), (y1, d1)) = (run(false), run(true));
        assert_eq!(bits(&y1), bits(&y0), "values");
        assert_eq!(bits(&d1), bits(&d0), "input gradients");
        assert!(y1.contains(&0.0) && d1.iter().any(|d| *d != 0.0), "both cases are reached");
    }

    #[test]
    fn gradients_match_finite_differences() {
        // Distinct, well separated values keep max pooling away from its kinks.
        let x: Vec<f32> = (0..2 * G.in_len()).map(|i| ((i * 37) % 70) as f32 * 0.1).collect();
        let shape = (2, G.in_len());
        let (a, n) = check_input_grad(&x, shape, |x| max_pool(x, G), |x| max_pool(x, G));
        assert_close(&a, &n, 1e-2);
        let (a, n) = check_input_grad(&x, shape, |x| avg_pool(x, G), |x| avg_pool(x, G));
        assert_close(&a, &n, 1e-2);
        let gap = |x| global_avg_pool(x, G.c, G.h * G.w);
        let (a, n) = check_input_grad(&x, shape, gap, |x| global_avg_pool(x, G.c, G.h * G.w));
        assert_close(&a, &n, 1e-2);
    }
}
