//! Depthwise convolution (`groups == in == out`) computed directly, one sample at a time:
//! each output channel reads one input channel through `k*k` taps, so im2col + gemm would
//! multiply `1 x k*k` by `k*k x oh*ow` per channel, a shape gemm handles poorly. Here every tap
//! is one `axpy` over an output row (contiguous when the stride is 1, so it vectorises).
//! In: one sample's `(c, h, w)` slice and the weight `(c, k*k)`. Out: `(c, oh, ow)`.

use std::ops::Range;

use super::conv::ConvGeom;

/// Output columns whose input column `o * stride + kk - pad` lies inside `0..size`.
fn valid(g: &ConvGeom, kk: usize, size: usize, out: usize) -> Range<usize> {
    let s = g.stride;
    let lo = g.pad.saturating_sub(kk).div_ceil(s);
    let hi = (size + g.pad).checked_sub(kk).map_or(0, |end| end.div_ceil(s)).min(out);
    lo..hi.max(lo)
}

/// Visits every (channel, tap, output row) with its run of valid output columns:
/// `f(channel, tap, first output index, first input index, run length)`; output `i` of the run
/// reads input `first input index + i * stride`.
fn runs(g: &ConvGeom, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    let (oh, ow, k) = (g.oh(), g.ow(), g.k);
    for c in 0..g.c {
        for ki in 0..k {
            let rows = valid(g, ki, g.h, oh);
            for kj in 0..k {
                let cols = valid(g, kj, g.w, ow);
                if cols.is_empty() {
                    continue;
                }
                let ix = cols.start * g.stride + kj - g.pad;
                for oy in rows.clone() {
                    let iy = oy * g.stride + ki - g.pad;
                    let y0 = (c * oh + oy) * ow + cols.start;
                    let x0 = (c * g.h + iy) * g.w + ix;
                    f(c, ki * k + kj, y0, x0, cols.len());
                }
            }
        }
    }
}

/// `y = bias + depthwise(x)` for one sample.
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let plane = g.oh() * g.ow();
    for (c, line) in y.chunks_mut(plane.max(1)).enumerate() {
        line.fill(bias.map_or(0.0, |b| b[c]));
    }
    let (kk, s) = (g.k * g.k, g.stride);
    runs(g, |c, tap, y0, x0, n| {
        let wv = w[c * kk + tap];
        let out = &mut y[y0..y0 + n];
        if s == 1 {
            out.iter_mut().zip(&x[x0..x0 + n]).for_each(|(o, v)| *o += wv * v);
        } else {
            out.iter_mut().enumerate().for_each(|(i, o)| *o += wv * x[x0 + i * s]);
        }
    });
}

/// `dx += depthwise^T(gy)` for one sample.
pub fn input_grad(g: &ConvGeom, w: &[f32], gy: &[f32], dx: &mut [f32]) {
    let (kk, s) = (g.k * g.k, g.stride);
    runs(g, |c, tap, y0, x0, n| {
        let wv = w[c * kk + tap];
        let gy = &gy[y0..y0 + n];
        if s == 1 {
            dx[x0..x0 + n].iter_mut().zip(gy).for_each(|(d, v)| *d += wv * v);
        } else {
            gy.iter().enumerate().for_each(|(i, v)| dx[x0 + i * s] += wv * v);
        }
    });
}

/// `dw += sum over positions of gy * x` for one sample (`dw` is `(c, k*k)`).
pub fn weight_grad(g: &ConvGeom, x: &[f32], gy: &[f32], dw: &mut [f32]) {
    let (kk, s) = (g.k * g.k, g.stride);
    runs(g, |c, tap, y0, x0, n| {
        let gy = &gy[y0..y0 + n];
        let acc: f32 = if s == 1 {
            gy.iter().zip(&x[x0..x0 + n]).map(|(a, b)| a * b).sum()
        } else {
            gy.iter().enumerate().map(|(i, a)| a * x[x0 + i * s]).sum()
        };
        dw[c * kk + tap] += acc;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The valid output range agrees with testing every output column.
    #[test]
    fn valid_ranges_match_brute_force() {
        for (size, k, stride, pad) in
            [(7, 3, 1, 1), (7, 3, 2, 1), (6, 3, 2, 1), (5, 5, 1, 0), (4, 3, 3, 2), (2, 5, 1, 2)]
        {
            let g = ConvGeom { c: 1, h: size, w: size, out: 1, k, stride, pad, groups: 1 };
            let out = g.ow();
            for kk in 0..k {
                let want: Vec<usize> =
                    (0..out).filter(|o| (o * stride + kk).checked_sub(pad).is_some_and(|i| i < size)).collect();
                let got: Vec<usize> = valid(&g, kk, size, out).collect();
                assert_eq!(got, want, "size {size} k {k} stride {stride} pad {pad} tap {kk}");
            }
        }
    }
}
