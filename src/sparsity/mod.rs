//! Sparsity math, free of any tensor library. In: the plan's `Sparsity` and `Param`s, weights
//! as plain slices. Out: schedule progress per step ([`schedule`]), exact top-k masks
//! ([`mask`]), soft thresholds and per-channel rescales ([`threshold`]), and the grouping of
//! parameters that share one target ([`groups`](mod@groups)).

pub mod groups;
pub mod mask;
pub mod schedule;
pub mod threshold;

pub use groups::{groups, Group};
pub use schedule::SparsitySchedule;

/// Zeros to reach sparsity `s` over `n` weights: `round(s * n)`, clamped to `n`.
pub fn zeros_for(s: f64, n: usize) -> usize {
    ((s * n as f64).round() as usize).min(n)
}
