//! The three products of a sparse layer's training step, on activations with the batch
//! contiguous (`[row][bp]`, `bp` the batch rounded up to [`LANES`], padding lanes zero):
//! - [`forward`]: `y[o,p,:] = bias[o] + sum_k w_k x[base_k + off_p, :]` (register-blocked rows);
//! - [`input_grad`]: `dx[key_j + off_p, :] += sum_{t in column j} w_t dy[row_t, p, :]`, the
//!   columns of one input channel on one task;
//! - [`weight_grad`]: `dw_k = sum_p dot(dy[o,p,:], x[base_k + off_p, :])`, only for kept `k`
//!   (an SDDMM), and the bias gradient (row sums of `dy`).
//!
//! A dense layer is the case of one output position (`offs == [0]`). Each output element is
//! written by exactly one task in a fixed order, so results do not depend on the thread count.
//! Every kernel exists twice: compiled for AVX2 + FMA (chosen at run time when the CPU has
//! them) and portable; [`Isa::detect`] picks one.
#![allow(unsafe_code)]

use crate::exec::backend::pool::PoolGeom;

/// `f32` lanes of one AVX2 register; activations are padded to a multiple of it.
pub const LANES: usize = 8;
/// Batch columns held in registers at once (8 AVX2 registers of accumulators).
const BLOCK: usize = 64;

/// Which compiled variant runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX2 + FMA (fused multiply-add: one rounding per product-sum).
    Avx2,
    /// Any CPU: separate multiply and add.
    Portable,
}

impl Isa {
    /// AVX2 + FMA when this CPU has both.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }
}

/// The weights by output row (CSR): `base` is each kept weight's input row before the output
/// position's offset is added.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub ptr: &'a [u32],
    pub base: &'a [u32],
    pub vals: &'a [f32],
}

/// The weights by input row (CSC), columns grouped by input channel: column `j` reads input row
/// `key[j]` (channel-plane relative) and holds `(row[t], vals[t])` for `t in ptr[j]..ptr[j+1]`.
#[derive(Clone, Copy)]
pub struct Cols<'a> {
    pub ptr: &'a [u32],
    pub key: &'a [u32],
    pub row: &'a [u32],
    pub vals: &'a [f32],
}

trait Fma {
    fn fma(a: f32, b: f32, c: f32) -> f32;
}

struct Fused;
impl Fma for Fused {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

struct Separate;
impl Fma for Separate {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// Calls `$avx` (the body compiled for AVX2 + FMA) or the portable `$generic::<$portable>`
/// (`Separate` multiply-adds unless named).
macro_rules! dispatch {
    ($isa:expr, $avx:ident, $generic:ident, ($($arg:expr),*)) => {
        dispatch!($isa, $avx, $generic::<Separate>, ($($arg),*))
    };
    ($isa:expr, $avx:ident, $generic:ident::<$portable:ty>, ($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if $isa == Isa::Avx2 {
                // SAFETY: `Isa::Avx2` is only returned by `Isa::detect` when the CPU reports
                // AVX2 and FMA (tests construct it only after the same check).
                return unsafe { $avx($($arg),*) };
            }
        }
        $generic::<$portable>($($arg),*)
    }};
}

// The kernels take their operands one by one (not bundled) so each call site reads like the
// formula in the module header.
#[allow(clippy::too_many_arguments)]
/// One output row: `y[p*bp..]` for every output position `p` (`offs[p]` is its input offset),
/// through a ReLU (`v.max(0.0)`) when `relu`.
pub fn forward(isa: Isa, w: Rows, o: usize, offs: &[u32], x: &[f32], bp: usize, bias: f32, relu: bool, y: &mut [f32]) {
    dispatch!(isa, forward_avx2, forward_row, (w, o, offs, x, bp, bias, relu, y))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_avx2(w: Rows, o: usize, offs: &[u32], x: &[f32], bp: usize, bias: f32, relu: bool, y: &mut [f32]) {
    forward_row::<Fused>(w, o, offs, x, bp, bias, relu, y)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_row<F: Fma>(w: Rows, o: usize, offs: &[u32], x: &[f32], bp: usize, bias: f32, relu: bool, y: &mut [f32]) {
    let (s, e) = (w.ptr[o] as usize, w.ptr[o + 1] as usize);
    let (base, vals) = (&w.base[s..e], &w.vals[s..e]);
    for (&off, yp) in offs.iter().zip(y.chunks_exact_mut(bp)) {
        let mut b0 = 0;
        while b0 + BLOCK <= bp {
            gather_block::<F, BLOCK>(base, vals, off, x, bp, b0, bias, &mut yp[b0..b0 + BLOCK]);
            b0 += BLOCK;
        }
        while b0 < bp {
            gather_block::<F, LANES>(base, vals, off, x, bp, b0, bias, &mut yp[b0..b0 + LANES]);
            b0 += LANES;
        }
        if relu {
            yp.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
}

/// `out = init + sum_k vals[k] * x[(idx[k] + off) * bp + b0 ..][..N]`, accumulated in registers.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gather_block<F: Fma, const N: usize>(
    idx: &[u32],
    vals: &[f32],
    off: u32,
    x: &[f32],
    bp: usize,
    b0: usize,
    init: f32,
    out: &mut [f32],
) {
    let mut acc = [init; N];
    for (&c, &v) in idx.iter().zip(vals) {
        let start = (c + off) as usize * bp + b0;
        let xs: &[f32; N] = x[start..start + N].try_into().expect("block inside the activation");
        for l in 0..N {
            acc[l] = F::fma(v, xs[l], acc[l]);
        }
    }
    out.copy_from_slice(&acc);
}

/// One input channel: adds into `plane` (the channel's `[pixel][bp]` block of the padded input
/// gradient) the columns `cols` of `w` at every output position.
pub fn input_grad(
    isa: Isa,
    w: Cols,
    cols: std::ops::Range<usize>,
    offs: &[u32],
    dy: &[f32],
    bp: usize,
    plane: &mut [f32],
) {
    dispatch!(isa, input_grad_avx2, input_grad_channel, (w, cols, offs, dy, bp, plane))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_grad_avx2(
    w: Cols,
    cols: std::ops::Range<usize>,
    offs: &[u32],
    dy: &[f32],
    bp: usize,
    plane: &mut [f32],
) {
    input_grad_channel::<Fused>(w, cols, offs, dy, bp, plane)
}

#[inline(always)]
fn input_grad_channel<F: Fma>(
    w: Cols,
    cols: std::ops::Range<usize>,
    offs: &[u32],
    dy: &[f32],
    bp: usize,
    plane: &mut [f32],
) {
    let positions = offs.len() as u32;
    let mut rows: Vec<u32> = Vec::new();
    for j in cols {
        let (s, e) = (w.ptr[j] as usize, w.ptr[j + 1] as usize);
        let vals = &w.vals[s..e];
        // dy's row of (output row, position p) is `row * positions + p`.
        rows.clear();
        rows.extend(w.row[s..e].iter().map(|r| r * positions));
        for (p, &off) in offs.iter().enumerate() {
            let dst = (w.key[j] + off) as usize * bp;
            let mut b0 = 0;
            while b0 + BLOCK <= bp {
                add_block::<F, BLOCK>(&rows, vals, p as u32, dy, bp, b0, &mut plane[dst + b0..dst + b0 + BLOCK]);
                b0 += BLOCK;
            }
            while b0 < bp {
                add_block::<F, LANES>(&rows, vals, p as u32, dy, bp, b0, &mut plane[dst + b0..dst + b0 + LANES]);
                b0 += LANES;
            }
        }
    }
}

/// `out += sum_t vals[t] * dy[(rows[t] + p) * bp + b0 ..][..N]`.
#[inline(always)]
fn add_block<F: Fma, const N: usize>(
    rows: &[u32],
    vals: &[f32],
    p: u32,
    dy: &[f32],
    bp: usize,
    b0: usize,
    out: &mut [f32],
) {
    let mut acc = [0.0f32; N];
    for (&r, &v) in rows.iter().zip(vals) {
        let start = (r + p) as usize * bp + b0;
        let ys: &[f32; N] = dy[start..start + N].try_into().expect("block inside the gradient");
        for l in 0..N {
            acc[l] = F::fma(v, ys[l], acc[l]);
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        *o += a;
    }
}

/// One output row's kept-weight gradients into `dw` (`dw[k - ptr[o]]`), and its bias gradient
/// (the sum of `dy` over positions and batch) as the return value.
#[allow(clippy::too_many_arguments)]
pub fn weight_grad(isa: Isa, w: Rows, o: usize, offs: &[u32], dy: &[f32], x: &[f32], bp: usize, dw: &mut [f32]) -> f32 {
    dispatch!(isa, weight_grad_avx2, weight_grad_row, (w, o, offs, dy, x, bp, dw))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weight_grad_avx2(w: Rows, o: usize, offs: &[u32], dy: &[f32], x: &[f32], bp: usize, dw: &mut [f32]) -> f32 {
    weight_grad_row::<Fused>(w, o, offs, dy, x, bp, dw)
}

#[inline(always)]
fn weight_grad_row<F: Fma>(w: Rows, o: usize, offs: &[u32], dy: &[f32], x: &[f32], bp: usize, dw: &mut [f32]) -> f32 {
    let (s, e) = (w.ptr[o] as usize, w.ptr[o + 1] as usize);
    let dyo = &dy[o * offs.len() * bp..(o + 1) * offs.len() * bp];
    // Kept weights in groups of GROUP share each load of `dy` (a load per product instead of
    // two); each weight's sum is the same whatever group it falls in.
    let base = &w.base[s..e];
    let mut groups = base.chunks_exact(GROUP);
    let mut out = dw.chunks_exact_mut(GROUP);
    for (bases, d) in (&mut groups).zip(&mut out) {
        d.copy_from_slice(&dots::<F, GROUP>(bases.try_into().expect("a group"), offs, dyo, x, bp));
    }
    for (&b, d) in groups.remainder().iter().zip(out.into_remainder()) {
        *d = dots::<F, 1>(&[b], offs, dyo, x, bp)[0];
    }
    let mut acc = [0.0f32; 2 * LANES];
    for dyp in dyo.chunks_exact(bp) {
        for chunk in dyp.chunks_exact(LANES) {
            for l in 0..LANES {
                acc[l] += chunk[l];
            }
        }
    }
    hsum(&acc)
}

/// Kept weights sharing each load of the output gradient in [`weight_grad`].
const GROUP: usize = 4;

/// `sum_p dot(dy[p], x[bases[j] + offs[p]])` for each `j < G`: per weight two chains of
/// [`LANES`] accumulators (even and odd lane groups of the batch), summed by [`hsum`].
#[inline(always)]
fn dots<F: Fma, const G: usize>(bases: &[u32; G], offs: &[u32], dyo: &[f32], x: &[f32], bp: usize) -> [f32; G] {
    let mut acc = [[0.0f32; 2 * LANES]; G];
    for (&off, dyp) in offs.iter().zip(dyo.chunks_exact(bp)) {
        let xr: [&[f32]; G] = std::array::from_fn(|j| &x[(bases[j] + off) as usize * bp..][..bp]);
        let wide = bp / (2 * LANES) * (2 * LANES);
        let mut b = 0;
        while b < wide {
            let d: &[f32; 2 * LANES] = dyp[b..b + 2 * LANES].try_into().expect("two lane groups");
            for j in 0..G {
                let xs: &[f32; 2 * LANES] = xr[j][b..b + 2 * LANES].try_into().expect("two lane groups");
                for l in 0..2 * LANES {
                    acc[j][l] = F::fma(d[l], xs[l], acc[j][l]);
                }
            }
            b += 2 * LANES;
        }
        if b < bp {
            let d: &[f32; LANES] = dyp[b..b + LANES].try_into().expect("a lane group");
            for j in 0..G {
                let xs: &[f32; LANES] = xr[j][b..b + LANES].try_into().expect("a lane group");
                for l in 0..LANES {
                    acc[j][l] = F::fma(d[l], xs[l], acc[j][l]);
                }
            }
        }
    }
    std::array::from_fn(|j| hsum(&acc[j]))
}

/// The sum of the lanes in a fixed order.
#[inline(always)]
fn hsum(acc: &[f32; 2 * LANES]) -> f32 {
    let mut v = [0.0f32; LANES];
    for q in acc.chunks_exact(LANES) {
        for l in 0..LANES {
            v[l] += q[l];
        }
    }
    ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
}

/// Max pooling of one channel `[h][w][bp]` into `[oh][ow][bp]`: each window's first maximum (a
/// later element wins only if greater).
pub fn pool_forward(isa: Isa, g: &PoolGeom, x: &[f32], bp: usize, y: &mut [f32]) {
    dispatch!(isa, pool_forward_avx2, pool_forward_plane, (g, x, bp, y))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pool_forward_avx2(g: &PoolGeom, x: &[f32], bp: usize, y: &mut [f32]) {
    pool_forward_plane::<Fused>(g, x, bp, y)
}

#[inline(always)]
fn pool_forward_plane<F: Fma>(g: &PoolGeom, x: &[f32], bp: usize, y: &mut [f32]) {
    let (oh, ow) = (g.oh(), g.ow());
    for oy in 0..oh {
        for ox in 0..ow {
            let o = (oy * ow + ox) * bp;
            let start = oy * g.stride * g.w + ox * g.stride;
            let best = &mut y[o..o + bp];
            best.copy_from_slice(&x[start * bp..(start + 1) * bp]);
            for k in 1..g.size * g.size {
                let row = start + k / g.size * g.w + k % g.size;
                for (b, &v) in best.iter_mut().zip(&x[row * bp..(row + 1) * bp]) {
                    *b = if v > *b { v } else { *b };
                }
            }
        }
    }
}

/// The operands of [`pool_backward`] on one channel: the pool's input `x`, output `y` and
/// output gradient `dy` (`[pixel][bp]` each); whether a ReLU produced `x` (`relu_before`); whether
/// every input element lies in exactly one window (`tiles`).
#[derive(Clone, Copy)]
pub struct PoolGrad<'a> {
    pub g: &'a PoolGeom,
    pub x: &'a [f32],
    pub y: &'a [f32],
    pub dy: &'a [f32],
    pub bp: usize,
    pub relu_before: bool,
    pub tiles: bool,
}

/// The input gradient of [`pool_forward`] on one channel into `dx`: each output's gradient to
/// the first element of its window equal to the maximum (the one the forward picked, for any
/// finite input), in output order; with `relu_before` only where the input is positive. With
/// `tiles` each element is written once (`v + 0.0`: the bits of `0.0 + v`), else added to.
pub fn pool_backward(isa: Isa, p: PoolGrad, dx: &mut [f32]) {
    dispatch!(isa, pool_backward_avx2, pool_backward_plane, (p, dx))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pool_backward_avx2(p: PoolGrad, dx: &mut [f32]) {
    pool_backward_plane::<Fused>(p, dx)
}

#[inline(always)]
fn pool_backward_plane<F: Fma>(p: PoolGrad, dx: &mut [f32]) {
    let PoolGrad { g, x, y, dy, bp, relu_before, tiles } = p;
    let (oh, ow) = (g.oh(), g.ow());
    for oy in 0..oh {
        for ox in 0..ow {
            let o = (oy * ow + ox) * bp;
            let start = oy * g.stride * g.w + ox * g.stride;
            for b0 in (0..bp).step_by(LANES) {
                let dyl: &[f32; LANES] = dy[o + b0..o + b0 + LANES].try_into().expect("a lane group");
                let yl: &[f32; LANES] = y[o + b0..o + b0 + LANES].try_into().expect("a lane group");
                // All ones in a lane until its maximum is found.
                let mut open = [u32::MAX; LANES];
                for k in 0..g.size * g.size {
                    let at = (start + k / g.size * g.w + k % g.size) * bp + b0;
                    let xl: &[f32; LANES] = x[at..at + LANES].try_into().expect("a lane group");
                    let d: &mut [f32; LANES] = (&mut dx[at..at + LANES]).try_into().expect("a lane group");
                    for l in 0..LANES {
                        let eq = if xl[l] == yl[l] { u32::MAX } else { 0 };
                        let pos = if !relu_before || xl[l] > 0.0 { u32::MAX } else { 0 };
                        let v = f32::from_bits(dyl[l].to_bits() & eq & open[l] & pos);
                        open[l] &= !eq;
                        d[l] = if tiles { v + 0.0 } else { d[l] + v };
                    }
                }
            }
        }
    }
}

/// `dst[j * ds + i] = src[i * ss + j]` (or `+=` when `add`) for `i, j < 8`: an 8x8 tile
/// transposed. The layout changes below run whole strips of tiles in one call compiled for
/// AVX2 (not a call and an ISA check per tile); the transposes are bound by memory, so this
/// gained little (LeNet-300-100 99.9%, two threads, 0.114-0.131 -> 0.110-0.122 ms).
trait Tile {
    fn tile(src: &[f32], ss: usize, dst: &mut [f32], ds: usize, add: bool);
}

struct ScalarTile;
impl Tile for ScalarTile {
    #[inline(always)]
    fn tile(src: &[f32], ss: usize, dst: &mut [f32], ds: usize, add: bool) {
        for i in 0..LANES {
            for j in 0..LANES {
                let v = src[i * ss + j];
                let d = &mut dst[j * ds + i];
                *d = if add { *d + v } else { v };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
struct Avx2Tile;
#[cfg(target_arch = "x86_64")]
impl Tile for Avx2Tile {
    #[inline(always)]
    fn tile(src: &[f32], ss: usize, dst: &mut [f32], ds: usize, add: bool) {
        assert!(src.len() > 7 * ss + 7 && dst.len() > 7 * ds + 7, "an 8x8 tile inside both buffers");
        // SAFETY: only the `_avx2` strip functions below and the tests' `transpose8` under
        // `Isa::Avx2` use this tile, so it runs only on CPUs with AVX2; the eight 8-float rows read from `src` and written to
        // `dst` lie inside the slices (asserted above).
        unsafe { transpose8_avx2(src, ss, dst, ds, add) }
    }
}

/// One 8x8 tile, as the layout changes transpose them (tests compare the two variants).
#[cfg(test)]
pub fn transpose8(isa: Isa, src: &[f32], ss: usize, dst: &mut [f32], ds: usize, add: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx2 {
            return Avx2Tile::tile(src, ss, dst, ds, add);
        }
    }
    ScalarTile::tile(src, ss, dst, ds, add)
}

/// `dst[j * bp + b] = src[b * stride + j]` for `j < n`, `b < batch`: a strip of the
/// `(batch, features)` layout into the batch-contiguous one, in 8x8 tiles (the padding lanes
/// `batch..bp` are not written).
pub fn to_batch_minor(isa: Isa, src: &[f32], stride: usize, n: usize, batch: usize, dst: &mut [f32], bp: usize) {
    dispatch!(isa, to_batch_minor_avx2, to_batch_minor_strip::<ScalarTile>, (src, stride, n, batch, dst, bp))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn to_batch_minor_avx2(src: &[f32], stride: usize, n: usize, batch: usize, dst: &mut [f32], bp: usize) {
    to_batch_minor_strip::<Avx2Tile>(src, stride, n, batch, dst, bp)
}

#[inline(always)]
fn to_batch_minor_strip<T: Tile>(src: &[f32], stride: usize, n: usize, batch: usize, dst: &mut [f32], bp: usize) {
    for b0 in (0..batch).step_by(LANES) {
        let bn = LANES.min(batch - b0);
        let mut j0 = 0;
        while j0 + LANES <= n {
            if bn == LANES {
                T::tile(&src[b0 * stride + j0..], stride, &mut dst[j0 * bp + b0..], bp, false);
            } else {
                let mut tile = [[0.0f32; LANES]; LANES];
                for (bb, t) in tile.iter_mut().enumerate().take(bn) {
                    *t = src[(b0 + bb) * stride + j0..][..LANES].try_into().expect("a tile row");
                }
                for jj in 0..LANES {
                    let d: &mut [f32; LANES] =
                        (&mut dst[(j0 + jj) * bp + b0..][..LANES]).try_into().expect("a tile column");
                    for bb in 0..LANES {
                        d[bb] = tile[bb][jj];
                    }
                }
            }
            j0 += LANES;
        }
        for j in j0..n {
            for bb in 0..bn {
                dst[j * bp + b0 + bb] = src[(b0 + bb) * stride + j];
            }
        }
    }
}

/// A strip of the batch-contiguous layout `src` (`n` rows from row `s0`, lanes `b0..` of
/// `bp`) that [`add_strip`] adds into rows of `(batch, stride)` at column `d0`.
#[derive(Clone, Copy)]
pub struct Strip<'a> {
    pub src: &'a [f32],
    pub s0: usize,
    pub n: usize,
    pub bp: usize,
    pub stride: usize,
    pub d0: usize,
    pub b0: usize,
}

/// `rows[bb * stride + d0 + j] += src[(s0 + j) * bp + b0 + bb]` for `j < n`, `bb < bn` (`bn`
/// rows in `rows`): adds a strip of the batch-contiguous layout into `(batch, stride)` rows.
pub fn add_strip(isa: Isa, s: Strip, rows: &mut [f32]) {
    dispatch!(isa, add_strip_avx2, add_strip_tiles::<ScalarTile>, (s, rows))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_strip_avx2(s: Strip, rows: &mut [f32]) {
    add_strip_tiles::<Avx2Tile>(s, rows)
}

#[inline(always)]
fn add_strip_tiles<T: Tile>(s: Strip, rows: &mut [f32]) {
    let Strip { src, s0, n, bp, stride, d0, b0 } = s;
    let bn = rows.len() / stride.max(1);
    let mut j0 = 0;
    while j0 + LANES <= n {
        if bn == LANES {
            T::tile(&src[(s0 + j0) * bp + b0..], bp, &mut rows[d0 + j0..], stride, true);
        } else {
            let mut tile = [[0.0f32; LANES]; LANES];
            for (jj, t) in tile.iter_mut().enumerate() {
                *t = src[(s0 + j0 + jj) * bp + b0..][..LANES].try_into().expect("a tile row");
            }
            for bb in 0..bn {
                let d: &mut [f32; LANES] =
                    (&mut rows[bb * stride + d0 + j0..][..LANES]).try_into().expect("a tile column");
                for jj in 0..LANES {
                    d[jj] += tile[jj][bb];
                }
            }
        }
        j0 += LANES;
    }
    for j in j0..n {
        for bb in 0..bn {
            rows[bb * stride + d0 + j] += src[(s0 + j) * bp + b0 + bb];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn transpose8_avx2(src: &[f32], ss: usize, dst: &mut [f32], ds: usize, add: bool) {
    use std::arch::x86_64::*;
    let s = src.as_ptr();
    let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(s.add(i * ss)));
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    let out = [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ];
    let d = dst.as_mut_ptr();
    for (j, v) in out.into_iter().enumerate() {
        let p = d.add(j * ds);
        let v = if add { _mm256_add_ps(_mm256_loadu_ps(p), v) } else { v };
        _mm256_storeu_ps(p, v);
    }
}
