//! The training engine: runs a `Plan` on a loaded `DataSet`. In: [`Plan`], [`DataSet`],
//! [`RunOptions`]. Out: [`RunSummary`] plus the run directory.
//!
//! Layers, from the bottom: `backend/` the tensor type and every op with its backward pass (all
//! dfdx use lives there); `graph/` the network as nodes, its walker and the one way to run a
//! batch; above it the training loop (`train/`) over named parts: `params` (buffers and
//! initialisation), `optimizer`, `sparsity/` (initial masks, scores, update rules), `jit` (the
//! run's compiled step kernels), `lr`, `techniques/` (run-time techniques: GradInit, label
//! smoothing), `warm_start` (`init { from }`: trained tensors in place of the drawn ones).
//! Everything but [`run`], [`RunOptions`] and [`RunError`] is crate-internal.

pub(crate) mod alloc;
pub(crate) mod awake;
pub(crate) mod backend;
pub mod error;
pub(crate) mod graph;
pub(crate) mod jit;
pub(crate) mod lr;
pub(crate) mod memory;
pub(crate) mod optimizer;
pub(crate) mod params;
pub(crate) mod sparsity;
pub(crate) mod techniques;
pub(crate) mod train;
pub(crate) mod warm_start;

use std::path::PathBuf;

pub use error::RunError;

use crate::data::DataSet;
use crate::ir::plan::Plan;
use crate::report::RunSummary;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOptions {
    /// Run directory; `None` uses the plan's `output.dir`.
    pub out_dir: Option<PathBuf>,
    /// Worker threads (default: all cores).
    pub threads: Option<usize>,
    /// No progress bar and no printed report.
    pub quiet: bool,
    /// Stop after this many steps (tests); GradInit then runs at most as many iterations.
    pub max_steps: Option<u64>,
    /// Evaluate on at most this many examples of each split (tests).
    pub max_eval: Option<usize>,
    /// Continue from the run directory's newest good checkpoint (`sprsc run --resume`), with
    /// its thread count unless `threads` says otherwise.
    pub resume: bool,
    /// Dense or sparse products for masked layers.
    pub kernels: LayerKernels,
}

/// Which products masked dense layers and convolutions run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LayerKernels {
    /// Sparse where the layer's density is at or below its measured crossover.
    #[default]
    Auto,
    /// Always the dense products (masked weights multiply as zeros).
    Dense,
    /// Always the sparse kernels for masked layers.
    Sparse,
}

/// The run's independent random streams: ChaCha8 streams of the recipe's seed. Every draw of a
/// run goes through this table, so no two uses share a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Initial weights (`params::init`).
    Weights = 0,
    /// Random initial masks.
    Masks = 1,
    /// Crop and flip of training batches.
    Augment = 2,
    Dropout = 3,
    /// GradInit's batches.
    GradInit = 4,
    /// SET's random regrowth.
    Regrowth = 5,
    /// Dropout while scoring the network for SNIP and GraSP.
    Scoring = 6,
}

impl Stream {
    pub fn rng(self, seed: u64) -> rand_chacha::ChaCha8Rng {
        use rand::SeedableRng;
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        r.set_stream(self as u64);
        r
    }
}

/// Trains `plan` on `data`, evaluates, and writes the run directory.
pub fn run(plan: &Plan, data: &DataSet, opts: &RunOptions) -> Result<RunSummary, RunError> {
    // Before the first allocation the size of the model: a refusal, not an abort.
    memory::check(plan, data)?;
    alloc::keep_step_buffers_mapped();
    let dir = opts.out_dir.clone().unwrap_or_else(|| plan.output.dir.clone().into());
    let resumed_threads = if opts.resume { train::checkpoint_threads(&dir) } else { None };
    let threads =
        opts.threads.or(resumed_threads).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // dfdx's matmul and our ops use rayon's current pool, so installing a local pool fixes
    // the thread count (and with it the summation order) for the whole run.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| RunError::Io { path: "<thread pool>".into(), source: std::io::Error::other(e) })?;
    pool.install(|| train::Trainer::new(plan, data, opts, threads)?.run())
}

#[cfg(test)]
mod east_tests;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod golden;
#[cfg(test)]
mod learning_tests;
#[cfg(test)]
mod methods;
#[cfg(test)]
mod sparse_tests;
#[cfg(test)]
mod tost_tests;
#[cfg(test)]
mod update;
