//! Safe matrix product. In: row-major slices (or transposed views of them). Out: `dst = [dst +]
//! a * b`. On a CPU with AVX-512 the product is `avx512` (its own packed, blocked kernel);
//! elsewhere the `gemm` crate's, whose AVX-512 path needs nightly Rust.
//!
//! `gemm::gemm` takes raw pointers and strides, so every view is bounds-checked here before the
//! call.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
mod avx512;

/// Whether [`matmul`] runs the AVX-512 kernel on this CPU (checked once).
fn use_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX512.get_or_init(|| avx512::available() && std::env::var_os("SPRSC_NO_AVX512").is_none())
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A `rows x cols` matrix view of a slice, with explicit strides (in elements).
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Mat<'a> {
        let m = Mat { data, rows, cols, row_stride: cols, col_stride: 1 };
        m.check(data.len());
        m
    }

    /// The transpose, without copying.
    pub fn t(self) -> Mat<'a> {
        Mat { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    fn check(&self, len: usize) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(last < len, "matrix view out of bounds");
        }
    }
}

/// `dst (m x n, row-major) = (accumulate ? dst : 0) + a (m x k) * b (k x n)`.
pub fn matmul(dst: &mut [f32], a: Mat, b: Mat, accumulate: bool) {
    matmul_with(dst, a, b, accumulate, gemm::Parallelism::None)
}

/// [`matmul`] split over the current rayon pool's threads (output blocks, so each element's
/// sum keeps one order: deterministic for a thread count).
pub fn matmul_par(dst: &mut [f32], a: Mat, b: Mat, accumulate: bool) {
    let threads = rayon::current_num_threads();
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    matmul_with(dst, a, b, accumulate, par)
}

fn matmul_with(dst: &mut [f32], a: Mat, b: Mat, accumulate: bool, parallelism: gemm::Parallelism) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    assert_eq!(dst.len(), m * n, "destination size");
    a.check(a.data.len());
    b.check(b.data.len());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    if use_avx512() {
        return matmul_avx512(dst, a, b, accumulate, parallelism);
    }
    // SAFETY: the three views were bounds-checked above against their slices (`dst` is a
    // dense m x n row-major block); the slices outlive the call and `dst` is borrowed
    // mutably, so it cannot alias `a` or `b`. gemm computes dst = alpha*dst + beta*a*b,
    // reading dst only when `accumulate`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The AVX-512 product of views [`matmul_with`] has checked (non-empty, `k > 0`), split over
/// threads in blocks of `dst`'s rows or columns (every element's sum has one order whatever the
/// split: the bits do not depend on the thread count).
fn matmul_avx512(dst: &mut [f32], a: Mat, b: Mat, accumulate: bool, parallelism: gemm::Parallelism) {
    #[cfg(target_arch = "x86_64")]
    {
        use rayon::prelude::*;
        let (m, k, n) = (a.rows, a.cols, b.cols);
        debug_assert!(m > 0 && n > 0 && k > 0 && b.rows == k && dst.len() == m * n);
        let threads = match parallelism {
            gemm::Parallelism::Rayon(t) => t.max(1),
            _ => 1,
        };
        // Enough work per thread to pay for packing and for waking a thread (measured, see
        // `PARALLEL_MIN`).
        if threads == 1 || m * n * k < PARALLEL_MIN {
            return avx512::matmul(dst, a, b, accumulate);
        }
        if n > m {
            // Split the columns: each thread packs all of `a` (the smaller operand per output
            // element) and only its own columns of `b`.
            let cols = n.div_ceil(threads).next_multiple_of(avx512::NR);
            let base = SharedOut(dst.as_mut_ptr());
            (0..n.div_ceil(cols)).into_par_iter().for_each(|t| {
                let (j0, nt) = (t * cols, cols.min(n - t * cols));
                let b = Mat { data: &b.data[j0 * b.col_stride..], cols: nt, ..b };
                // SAFETY: `dst` (borrowed exclusively for the call) is m x n row-major; task `t`
                // reads and writes only columns j0..j0+nt of its rows, which no other task
                // touches, and all tasks end before this function returns.
                unsafe { avx512::matmul_raw(base.at(j0), n, a, b, accumulate) }
            });
            return;
        }
        let rows = m.div_ceil(threads).max(16);
        dst.par_chunks_mut(rows * n).enumerate().for_each(|(i, dst)| {
            let r = dst.len() / n;
            let a = Mat { data: &a.data[i * rows * a.row_stride..], rows: r, ..a };
            avx512::matmul(dst, a, b, accumulate);
        });
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("AVX-512 is x86-64 only: {dst:p} {accumulate} {parallelism:?} {} {}", a.rows, b.cols)
}

/// Multiply-adds below which [`matmul_par`] stays on one thread: measured at 2 threads with the
/// column split, LeNet-300-100's dense step was 1.39-1.56 ms from 2^22 against 1.58-1.69 ms
/// with rows split from 2^25 (whose fc1 products, 30M multiply-adds, then stayed on one thread).
const PARALLEL_MIN: usize = 1 << 22;

/// The output of a column-split product, shared by its tasks (each writes its own columns).
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: only `matmul_avx512` makes one, for tasks that write disjoint elements of one
// exclusively borrowed buffer and end before the borrow does.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_with_transposes() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.91).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let mut got = vec![0.0; m * n];
        matmul(&mut got, Mat::new(&a, m, k), Mat::new(&b, k, n), false);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5);
        }
        // a^T stored as k x m, b^T stored as n x k.
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut got2 = vec![1.0; m * n];
        matmul(&mut got2, Mat::new(&at, k, m).t(), Mat::new(&bt, n, k).t(), true);
        for (g, w) in got2.iter().zip(&want) {
            assert!((g - (w + 1.0)).abs() < 1e-5);
        }
    }

    /// `rows x cols` values, as a row-major matrix or stored transposed (`cols x rows`).
    fn stored(rows: usize, cols: usize, seed: f32, transposed: bool) -> (Vec<f32>, Vec<f32>) {
        let v: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * seed).sin()).collect();
        let t = (0..rows * cols).map(|i| v[(i % rows) * cols + i / rows]).collect();
        (v.clone(), if transposed { t } else { v })
    }

    #[test]
    fn avx512_kernel_matches_naive_on_edge_shapes_and_transposed_views() {
        #[cfg(target_arch = "x86_64")]
        {
            if !avx512::available() {
                eprintln!("no AVX-512 here: kernel not tested");
                return;
            }
            // Shapes around the micro-tile (12 x 32), the panel depth (256) and NC (1024).
            let dims = [(1, 1, 1), (5, 7, 3), (12, 256, 32), (13, 257, 33), (128, 784, 300), (25, 3, 1030)];
            for &(m, k, n) in &dims {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    let (a, a_st) = stored(m, k, 0.37, ta);
                    let (b, b_st) = stored(k, n, 0.91, tb);
                    fn view(d: &[f32], r: usize, c: usize, t: bool) -> Mat<'_> {
                        if t {
                            Mat::new(d, c, r).t()
                        } else {
                            Mat::new(d, r, c)
                        }
                    }
                    let (av, bv) = (view(&a_st, m, k, ta), view(&b_st, k, n, tb));
                    let want = naive(&a, &b, m, k, n);
                    let mut got = vec![0.5; m * n];
                    avx512::matmul(&mut got, av, bv, false);
                    let tol = 1e-4 * (k as f32).sqrt();
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() < tol, "{m}x{k}x{n} {ta} {tb}: {g} vs {w}");
                    }
                    avx512::matmul(&mut got, av, bv, true);
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - 2.0 * w).abs() < 2.0 * tol, "accumulate {m}x{k}x{n}: {g} vs {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn threads_split_columns_without_changing_a_bit() {
        // Wider than tall: the columns are split, in blocks that do not divide evenly.
        for (m, k, n, threads) in [(130, 400, 700, 3), (128, 1024, 300, 2)] {
            assert!(m * k * n >= PARALLEL_MIN && n > m);
            let (a, _) = stored(m, k, 0.37, false);
            let (b, _) = stored(k, n, 0.91, false);
            for accumulate in [false, true] {
                let mut one = stored(m, n, 0.5, false).0;
                let mut split = one.clone();
                matmul(&mut one, Mat::new(&a, m, k), Mat::new(&b, k, n), accumulate);
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| matmul_par(&mut split, Mat::new(&a, m, k), Mat::new(&b, k, n), accumulate));
                assert!(one.iter().zip(&split).all(|(x, y)| x.to_bits() == y.to_bits()), "{m}x{k}x{n}");
            }
        }
    }

    #[test]
    fn threads_split_rows_without_changing_a_bit() {
        // Above the split threshold (2^25 > `PARALLEL_MIN`), taller than wide (the rows are split),
        // with rows that do not divide evenly.
        let (m, k, n) = (301, 400, 290);
        assert!(m * k * n >= 1 << 25 && m >= n);
        let (a, _) = stored(m, k, 0.37, false);
        let (b, _) = stored(k, n, 0.91, false);
        let mut one = vec![0.0; m * n];
        matmul(&mut one, Mat::new(&a, m, k), Mat::new(&b, k, n), false);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let mut three = vec![0.0; m * n];
        pool.install(|| matmul_par(&mut three, Mat::new(&a, m, k), Mat::new(&b, k, n), false));
        assert!(one.iter().zip(&three).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}
