//! Safe matrix product over the `gemm` crate. In: row-major slices (or transposed views of
//! them). Out: `dst = [dst +] a * b`, single-threaded (callers parallelise over the batch).
//!
//! This is the crate's only `unsafe` outside the JIT: `gemm::gemm` takes raw pointers and
//! strides, so every view is bounds-checked here before the call.
#![allow(unsafe_code)]

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
}
