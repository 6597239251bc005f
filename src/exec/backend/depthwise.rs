//! Depthwise convolution (`groups == in == out`) computed directly, one sample at a time:
//! each output channel reads one input channel through `k*k` taps, so im2col + gemm would
//! multiply `1 x k*k` by `k*k x oh*ow` per channel, a shape gemm handles poorly. Here every tap
//! is one `axpy` over an output row (contiguous when the stride is 1, so it vectorises). Small
//! planes (rows under 8 outputs) take a channel-last path instead: the sample is transposed to
//! `(h*w, c)` and every (tap, pixel) is one `axpy` across the channels.
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

/// Channel-last is used where output rows are too short to vectorise along (the late,
/// small planes: MobileNet's 4x4 and 2x2) and there are enough channels to vectorise across.
fn channel_last(g: &ConvGeom) -> bool {
    g.ow() < 8 && g.c >= 8
}

/// Per-task buffers: the sample in channel-last layout `(h*w, c)` and its output `(oh*ow, c)`,
/// and a tap-major weight gradient `(k*k, c)`; empty on the channel-first path.
pub struct Scratch {
    x: Vec<f32>,
    y: Vec<f32>,
    dw: Vec<f32>,
}

impl Scratch {
    pub fn new(g: &ConvGeom) -> Scratch {
        if channel_last(g) {
            Scratch { x: vec![0.0; g.in_len()], y: vec![0.0; g.out_len()], dw: vec![0.0; g.c * g.k * g.k] }
        } else {
            Scratch { x: Vec::new(), y: Vec::new(), dw: Vec::new() }
        }
    }
}

/// The weight `(c, k*k)` as `(k*k, c)` for the channel-last path (empty otherwise); computed once
/// per call, shared by the batch.
pub fn tap_major(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    if !channel_last(g) {
        return Vec::new();
    }
    let mut t = vec![0.0; w.len()];
    transpose(w, g.c, g.k * g.k, &mut t);
    t
}

/// `dst (cols x rows) = src (rows x cols)^T`.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    for (r, line) in src.chunks_exact(cols.max(1)).enumerate().take(rows) {
        for (j, v) in line.iter().enumerate() {
            dst[j * rows + r] = *v;
        }
    }
}

/// Visits every (tap, output pixel, input pixel) inside the image, channel-last indices.
fn pixel_taps(g: &ConvGeom, mut f: impl FnMut(usize, usize, usize)) {
    let (oh, ow, k) = (g.oh(), g.ow(), g.k);
    for oy in 0..oh {
        for ki in 0..k {
            let Some(iy) = g.src(oy, ki, g.h) else { continue };
            for ox in 0..ow {
                for kj in 0..k {
                    if let Some(ix) = g.src(ox, kj, g.w) {
                        f(ki * k + kj, oy * ow + ox, iy * g.w + ix);
                    }
                }
            }
        }
    }
}

/// `a += w * b`, elementwise over equal lengths.
fn axpy(a: &mut [f32], w: &[f32], b: &[f32]) {
    a.iter_mut().zip(w).zip(b).for_each(|((a, w), b)| *a += w * b);
}

/// `y = bias + depthwise(x)` for one sample; `wt` is [`tap_major`]`(w)`.
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], wt: &[f32], bias: Option<&[f32]>, y: &mut [f32], s: &mut Scratch) {
    let plane = g.oh() * g.ow();
    if channel_last(g) {
        let c = g.c;
        transpose(x, c, g.h * g.w, &mut s.x);
        for px in s.y.chunks_exact_mut(c) {
            match bias {
                Some(b) => px.copy_from_slice(b),
                None => px.fill(0.0),
            }
        }
        pixel_taps(g, |tap, p, q| axpy(&mut s.y[p * c..][..c], &wt[tap * c..][..c], &s.x[q * c..][..c]));
        transpose(&s.y, plane, c, y);
        return;
    }
    for (c, line) in y.chunks_mut(plane.max(1)).enumerate() {
        line.fill(bias.map_or(0.0, |b| b[c]));
    }
    let (kk, st) = (g.k * g.k, g.stride);
    runs(g, |c, tap, y0, x0, n| {
        let wv = w[c * kk + tap];
        let out = &mut y[y0..y0 + n];
        if st == 1 {
            out.iter_mut().zip(&x[x0..x0 + n]).for_each(|(o, v)| *o += wv * v);
        } else {
            out.iter_mut().enumerate().for_each(|(i, o)| *o += wv * x[x0 + i * st]);
        }
    });
}

/// `dx += depthwise^T(gy)` for one sample; `wt` is [`tap_major`]`(w)`.
pub fn input_grad(g: &ConvGeom, w: &[f32], wt: &[f32], gy: &[f32], dx: &mut [f32], s: &mut Scratch) {
    if channel_last(g) {
        let c = g.c;
        transpose(gy, c, g.oh() * g.ow(), &mut s.y);
        s.x.fill(0.0);
        pixel_taps(g, |tap, p, q| axpy(&mut s.x[q * c..][..c], &wt[tap * c..][..c], &s.y[p * c..][..c]));
        // dx (c, hw) += s.x (hw, c)^T
        for (q, px) in s.x.chunks_exact(c).enumerate() {
            for (ch, v) in px.iter().enumerate() {
                dx[ch * g.h * g.w + q] += v;
            }
        }
        return;
    }
    let (kk, st) = (g.k * g.k, g.stride);
    runs(g, |c, tap, y0, x0, n| {
        let wv = w[c * kk + tap];
        let gy = &gy[y0..y0 + n];
        if st == 1 {
            dx[x0..x0 + n].iter_mut().zip(gy).for_each(|(d, v)| *d += wv * v);
        } else {
            gy.iter().enumerate().for_each(|(i, v)| dx[x0 + i * st] += wv * v);
        }
    });
}

/// `dw += sum over positions of gy * x` for one sample (`dw` is `(c, k*k)`).
pub fn weight_grad(g: &ConvGeom, x: &[f32], gy: &[f32], dw: &mut [f32], s: &mut Scratch) {
    let kk = g.k * g.k;
    if channel_last(g) {
        let c = g.c;
        transpose(x, c, g.h * g.w, &mut s.x);
        transpose(gy, c, g.oh() * g.ow(), &mut s.y);
        s.dw.fill(0.0);
        pixel_taps(g, |tap, p, q| axpy(&mut s.dw[tap * c..][..c], &s.y[p * c..][..c], &s.x[q * c..][..c]));
        for (tap, line) in s.dw.chunks_exact(c).enumerate() {
            for (ch, v) in line.iter().enumerate() {
                dw[ch * kk + tap] += v;
            }
        }
        return;
    }
    let st = g.stride;
    runs(g, |c, tap, y0, x0, n| {
        let gy = &gy[y0..y0 + n];
        let acc: f32 = if st == 1 {
            gy.iter().zip(&x[x0..x0 + n]).map(|(a, b)| a * b).sum()
        } else {
            gy.iter().enumerate().map(|(i, a)| a * x[x0 + i * st]).sum()
        };
        dw[c * kk + tap] += acc;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conv tests cover both layouts through these shapes.
    #[test]
    fn small_planes_with_many_channels_go_channel_last() {
        let g = |c, hw| ConvGeom { c, h: hw, w: hw, out: c, k: 3, stride: 1, pad: 1, groups: c };
        assert!(channel_last(&g(8, 4)) && channel_last(&g(512, 2)));
        assert!(!channel_last(&g(8, 9)) && !channel_last(&g(3, 4)) && !channel_last(&g(32, 32)));
    }

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
