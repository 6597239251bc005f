//! The training engine: runs a `Plan` on a loaded `DataSet` with dfdx CPU tensors.
//! In: [`Plan`], [`DataSet`], [`RunOptions`]. Out: [`RunSummary`] plus the run directory.
//! All dfdx use lives in this module; nothing outside it names a dfdx type.
//!
//! Layout: `ops/` custom ops with backward passes, `net` the layer tree (`east` its EAST
//! nodes: DyReLU-B and shared conv weights; `tost` its ToST nodes: ghost neurons and skips),
//! `params` the engine-owned buffers, `jit` the run's compiled elementwise kernels (optimizer
//! steps, re-masking, effective weights; `update` holds their plain references for tests),
//! `sparsify` masks and thresholds per step, `prune` masks scored from the network (SNIP,
//! GraSP, SynFlow), `lr` learning-rate schedules, `train` the loop (with lottery rounds),
//! `gradinit` ToST's GradInit before the first step, `error` [`RunError`].

mod east;
pub mod error;
mod finish;
mod gradinit;
pub mod jit;
pub mod lr;
pub mod net;
pub mod ops;
pub mod params;
pub mod prune;
pub mod sparsify;
pub mod tost;
mod train;

use std::path::PathBuf;

pub use error::RunError;

use crate::data::DataSet;
use crate::ir::plan::{Plan, Time};
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
}

/// The run's independent random streams: ChaCha8 streams of the recipe's seed (the weights are
/// drawn from stream 0, see `params::init`). One table, so no two uses share a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Random initial masks.
    Masks = 1,
    /// Crop and flip of training batches.
    Augment = 2,
    Dropout = 3,
    /// GradInit's batches.
    GradInit = 4,
    /// SET's random regrowth.
    Regrowth = 5,
}

impl Stream {
    pub fn rng(self, seed: u64) -> rand_chacha::ChaCha8Rng {
        use rand::SeedableRng;
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        r.set_stream(self as u64);
        r
    }
}

/// Training time of one run: resolves the plan's symbolic [`Time`]s to steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub steps_per_epoch: u64,
    pub total_steps: u64,
}

impl Clock {
    pub fn at(&self, t: Time) -> u64 {
        t.to_steps(self.steps_per_epoch, self.total_steps)
    }
}

/// Trains `plan` on `data`, evaluates, and writes the run directory.
pub fn run(plan: &Plan, data: &DataSet, opts: &RunOptions) -> Result<RunSummary, RunError> {
    let threads = opts.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // dfdx's matmul and our ops use rayon's current pool, so installing a local pool fixes
    // the thread count (and with it the summation order) for the whole run.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| RunError::Io { path: "<thread pool>".into(), source: std::io::Error::other(e) })?;
    pool.install(|| train::Trainer::new(plan, data, opts, threads)?.run())
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod golden;
#[cfg(test)]
mod methods;
#[cfg(test)]
mod tost_tests;
#[cfg(test)]
mod update;
