//! The allocator's settings for a training run. Every step allocates and frees the same large
//! buffers (activations, im2col columns, gradients). With glibc's defaults, buffers over its
//! dynamic mmap threshold are mapped and unmapped each time and the heap top is trimmed back to
//! the OS, so every step pays page faults on fresh pages: 8% of a LeNet-5-Caffe step in `perf`.
//! Raising both thresholds keeps the pages in the process between steps (held memory stays
//! at the run's peak). Measured (`bench_step`, 1 thread): LeNet-5-Caffe dense 41 -> 32 ms,
//! LeNet-300-100 dense 2.30 -> 1.59 ms. `SPRSC_SYSTEM_MALLOC=1` keeps glibc's defaults, for
//! measuring the difference. Other C libraries: nothing to do.

use std::sync::Once;

/// Allocations at least this large still get their own mapping (a data set, not a step buffer).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 256 << 20;
/// Free memory at the heap top returned to the OS only past this much.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 1 << 30;

/// Applies the settings once per process, before the first run allocates its buffers.
pub(crate) fn keep_step_buffers_mapped() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("SPRSC_SYSTEM_MALLOC").is_some_and(|v| !v.is_empty() && v != "0") {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        #[allow(unsafe_code)]
        // SAFETY: `mallopt` only changes glibc's tuning parameters; it is thread-safe and
        // returns 0 (ignored here: the defaults stay) when a value is refused.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    });
}
