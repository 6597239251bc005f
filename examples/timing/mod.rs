//! Timing shared by the benchmarks: best average time per call over several batches.

use std::time::{Duration, Instant};

/// Runs `f` in 7 batches of about `batch` each (after a warm-up) and returns the best average
/// time per call, so one descheduling on a shared machine does not decide the result.
pub fn best_time(batch: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    f();
    let once = start.elapsed().max(Duration::from_nanos(50));
    let per_batch = (batch.as_nanos() / once.as_nanos()).max(1) as u32;
    (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            start.elapsed() / per_batch
        })
        .min()
        .unwrap_or(once)
}
