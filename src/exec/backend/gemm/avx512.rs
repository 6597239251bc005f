//! A single-precision matrix product for AVX-512 CPUs, in the usual blocked form (Goto & van de
//! Geijn): panels of `b` (`KC x NC`) and `a` (`MC x KC`) are packed into contiguous buffers and
//! a register-blocked micro-kernel computes `MR x NR` tiles of `c` from them. The `gemm` crate
//! uses AVX-512 only on nightly Rust; AVX-512 intrinsics are stable since Rust 1.89, and on this
//! machine they double the width of the dense products that PyTorch's own kernels use.
//!
//! Each element of `c` is summed over `k` in one fixed order (blocks of `KC`, each in order, one
//! fused multiply-add per term), whatever the threads: callers split `c` by rows or columns and
//! every split gives the same bits.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::Mat;

/// Rows of a micro-tile (12 x 2 registers of accumulators).
const MR: usize = 12;
/// Columns of a micro-tile: two 16-lane registers.
pub const NR: usize = 32;
/// Depth of a packed panel: a `KC x NR` panel of `b` (32 KiB) stays in L1 across a column of
/// micro-tiles.
const KC: usize = 256;
/// Rows of a packed panel of `a` (96 KiB, in L2).
const MC: usize = 96;
/// Columns of a packed panel of `b` (1 MiB at most, in L2).
const NC: usize = 1024;

/// Whether this CPU runs [`matmul`].
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// `c (m x n, row-major) = (accumulate ? c : 0) + a (m x k) * b (k x n)`; `k > 0`.
pub fn matmul(c: &mut [f32], a: Mat, b: Mat, accumulate: bool) {
    debug_assert!(c.len() == a.rows * b.cols);
    // SAFETY: `c` is an exclusively borrowed m x n row-major block: every element written
    // (row i < m, column j < n at i * n + j) lies inside it and nothing else accesses it.
    unsafe { matmul_raw(c.as_mut_ptr(), b.cols, a, b, accumulate) }
}

/// [`matmul`] into the m x n block at `c` with row stride `ldc` (>= n).
///
/// # Safety
/// `c.add(i * ldc + j)` must be valid for reads and writes for every `i < m`, `j < n`, and no
/// other access to those elements may happen during the call (other threads may use the other
/// elements of the rows: only these are read or written).
pub unsafe fn matmul_raw(c: *mut f32, ldc: usize, a: Mat, b: Mat, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    debug_assert!(available() && b.rows == k && k > 0 && ldc >= n);
    thread_local! {
        static PACKS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    PACKS.with(|packs| {
        let (pa, pb) = &mut *packs.borrow_mut();
        pa.resize(MC.div_ceil(MR) * MR * KC, 0.0);
        pb.resize(NC * KC, 0.0);
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                pack_b(pb, b, pc, kc, jc, nc);
                let load_c = accumulate || pc > 0;
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    pack_a(pa, a, ic, mc, pc, kc);
                    for jr in (0..nc).step_by(NR) {
                        let cols = NR.min(nc - jr);
                        for ir in (0..mc).step_by(MR) {
                            let rows = MR.min(mc - ir);
                            // SAFETY: AVX-512F is present (`available`, asserted by the caller's
                            // dispatch); the packed panels hold `kc` rows of MR (NR) values at
                            // the offsets read; the tile's `rows x cols` elements from
                            // `(ic + ir, jc + jr)` are inside the block the caller vouches for,
                            // and masked lanes outside `cols` are neither read nor written.
                            unsafe {
                                kernel(
                                    kc,
                                    pa[ir * KC..].as_ptr(),
                                    pb[jr * KC..].as_ptr(),
                                    c.add((ic + ir) * ldc + jc + jr),
                                    ldc,
                                    rows,
                                    cols,
                                    load_c,
                                )
                            };
                        }
                    }
                }
            }
        }
    });
}

/// Packs rows `ic..ic+mc`, columns `pc..pc+kc` of `a` as `MR`-row micro-panels, each stored
/// `kc x MR` (column `p` of the panel contiguous), rows past `mc` zero.
fn pack_a(dst: &mut [f32], a: Mat, ic: usize, mc: usize, pc: usize, kc: usize) {
    for ir in (0..mc).step_by(MR) {
        let rows = MR.min(mc - ir);
        let panel = &mut dst[ir * KC..ir * KC + kc * MR];
        if a.row_stride == 1 {
            // A transposed view: each column of the panel is contiguous.
            for (p, out) in panel.chunks_exact_mut(MR).enumerate() {
                let start = (pc + p) * a.col_stride + ic + ir;
                out[..rows].copy_from_slice(&a.data[start..start + rows]);
                out[rows..].fill(0.0);
            }
        } else {
            if rows < MR {
                panel.fill(0.0);
            }
            for i in 0..rows {
                let start = (ic + ir + i) * a.row_stride + pc * a.col_stride;
                if a.col_stride == 1 {
                    for (p, &v) in a.data[start..start + kc].iter().enumerate() {
                        panel[p * MR + i] = v;
                    }
                } else {
                    for p in 0..kc {
                        panel[p * MR + i] = a.data[start + p * a.col_stride];
                    }
                }
            }
        }
    }
}

/// Packs rows `pc..pc+kc`, columns `jc..jc+nc` of `b` as `NR`-column micro-panels, each stored
/// `kc x NR` (row `p` of the panel contiguous), columns past `nc` zero.
fn pack_b(dst: &mut [f32], b: Mat, pc: usize, kc: usize, jc: usize, nc: usize) {
    for jr in (0..nc).step_by(NR) {
        let cols = NR.min(nc - jr);
        let panel = &mut dst[jr * KC..jr * KC + kc * NR];
        if b.col_stride == 1 {
            for (p, out) in panel.chunks_exact_mut(NR).enumerate() {
                let start = (pc + p) * b.row_stride + jc + jr;
                out[..cols].copy_from_slice(&b.data[start..start + cols]);
                out[cols..].fill(0.0);
            }
        } else {
            // A transposed view: each column of `b` is a contiguous run of the slice.
            if cols < NR {
                panel.fill(0.0);
            }
            for j in 0..cols {
                let start = (jc + jr + j) * b.col_stride + pc * b.row_stride;
                if b.row_stride == 1 {
                    for (p, &v) in b.data[start..start + kc].iter().enumerate() {
                        panel[p * NR + j] = v;
                    }
                } else {
                    for p in 0..kc {
                        panel[p * NR + j] = b.data[start + p * b.row_stride];
                    }
                }
            }
        }
    }
}

/// One `rows x cols` tile (at most `MR x NR`) of `c`, row stride `ldc`: `c (+)= a_panel *
/// b_panel` over `kc` terms.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    load_c: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for p in 0..kc {
        let b0 = _mm512_loadu_ps(b.add(p * NR));
        let b1 = _mm512_loadu_ps(b.add(p * NR + 16));
        let ap = a.add(p * MR);
        for (i, acc) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*ap.add(i));
            acc[0] = _mm512_fmadd_ps(ai, b0, acc[0]);
            acc[1] = _mm512_fmadd_ps(ai, b1, acc[1]);
        }
    }
    let mask = |from: usize| -> __mmask16 {
        let n = cols.saturating_sub(from).min(16);
        ((1u32 << n) - 1) as __mmask16
    };
    let (m0, m1) = (mask(0), mask(16));
    for (i, acc) in acc.iter().enumerate() {
        if i < rows {
            let row = c.add(i * ldc);
            let (mut v0, mut v1) = (acc[0], acc[1]);
            if load_c {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row.wrapping_add(16)));
            }
            _mm512_mask_storeu_ps(row, m0, v0);
            // With 16 or fewer columns the mask is empty and nothing past the tile is touched.
            _mm512_mask_storeu_ps(row.wrapping_add(16), m1, v1);
        }
    }
}
