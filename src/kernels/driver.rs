//! Parallel driver. In: a compiled kernel and its arguments. Out: the kernel run over the
//! whole arrays, split into disjoint chunks on the current rayon pool when they are large
//! enough for a second thread to pay off. Every element is computed by the same code whatever
//! the split (the vector body and the scalar tail agree bit for bit), so results do not depend
//! on the number of threads.

use rayon::prelude::*;

use super::native::NativeFn;

/// Arrays shorter than this run on the calling thread. Measured with `bench_kernels` on the
/// 2-core development machine: at 1e4 elements a second thread costs more than it saves
/// (rayon wake-up ~5-10 us vs ~2 us of work), from ~1e5 it helps.
pub const PARALLEL_THRESHOLD: usize = 1 << 16;

/// Smallest chunk handed to one rayon task, so per-task overhead stays small.
const MIN_CHUNK: usize = 1 << 14;

/// Runs `native` over `arrays` (already checked: right count, equal lengths `n`).
/// Returns `false` if a call was refused by the native wrapper (a shape error).
pub(super) fn run_chunked(native: &NativeFn, arrays: &mut [&mut [f32]], scalars: &[f32], n: usize) -> bool {
    let threads = rayon::current_num_threads();
    if n < PARALLEL_THRESHOLD || threads < 2 {
        return native.call(arrays, scalars);
    }
    let chunk = chunk_len(n, threads);
    let chunks = n.div_ceil(chunk);
    let mut per_chunk: Vec<Vec<&mut [f32]>> = (0..chunks).map(|_| Vec::with_capacity(arrays.len())).collect();
    for array in arrays.iter_mut() {
        for (pieces, piece) in per_chunk.iter_mut().zip(array.chunks_mut(chunk)) {
            pieces.push(piece);
        }
    }
    per_chunk.into_par_iter().map(|mut pieces| native.call(&mut pieces, scalars)).all(|ok| ok)
}

/// Runs `native` row by row: rows of `row_len` elements (which divides `n`), scalar
/// `per_row` replaced by `values[r]` in row `r`. Rows are spread over the pool when the arrays
/// are large. Arguments already checked as for [`run_chunked`].
pub(super) fn run_rows(
    native: &NativeFn,
    arrays: &mut [&mut [f32]],
    scalars: &[f32],
    row_len: usize,
    per_row: usize,
    values: &[f32],
) -> bool {
    let mut rows: Vec<Vec<&mut [f32]>> = (0..values.len()).map(|_| Vec::with_capacity(arrays.len())).collect();
    for array in arrays.iter_mut() {
        for (pieces, piece) in rows.iter_mut().zip(array.chunks_mut(row_len)) {
            pieces.push(piece);
        }
    }
    let run_row = |(mut pieces, value): (Vec<&mut [f32]>, &f32)| {
        let mut row_scalars = scalars.to_vec();
        row_scalars[per_row] = *value;
        native.call(&mut pieces, &row_scalars)
    };
    let n = row_len * values.len();
    if n < PARALLEL_THRESHOLD || rayon::current_num_threads() < 2 {
        return rows.into_iter().zip(values).all(run_row);
    }
    let rows_per_task = MIN_CHUNK.div_ceil(row_len);
    rows.into_par_iter().zip(values).with_min_len(rows_per_task).map(run_row).all(|ok| ok)
}

/// About four chunks per thread (for load balance when a core is busy), a multiple of the
/// vector width so that only the last chunk has a scalar tail.
fn chunk_len(n: usize, threads: usize) -> usize {
    let even = n.div_ceil(4 * threads).max(MIN_CHUNK);
    even.div_ceil(4) * 4
}

#[cfg(test)]
mod tests {
    use super::chunk_len;

    #[test]
    fn chunks_are_multiples_of_four_and_cover() {
        for n in [1 << 16, 100_003, 1 << 20, 10_000_001] {
            for threads in 1..=8 {
                let c = chunk_len(n, threads);
                assert_eq!(c % 4, 0);
                assert!(c * n.div_ceil(c) >= n);
            }
        }
    }
}
