//! What a plan needs in memory to train. In: a lowered [`Plan`] (and, once the data is loaded,
//! the number of examples). Out: a [`Memory`] estimate in bytes, by part and per layer, and its
//! peak: what `sprsc check --emit ir` prints, the run report shows, and `sprsc run` checks
//! against the memory available before it allocates anything (E0710).
//!
//! The parts follow what the engine holds (f32 everywhere):
//! - every param's raw values, the graph's copy of the effective weights, and two gradients (the
//!   engine's buffer and the backward pass's);
//! - a mask per masked tensor, effective weights and a row scale under soft thresholding, and a
//!   copy of the raw weights for a lottery rewind;
//! - the optimizer's moments (one for SGD, two for Adam);
//! - activations: at training each layer's output is kept for the backward pass (some ops keep
//!   a copy of their input too) and the backward pass adds gradients, at the batch size;
//!   evaluation runs batches of up to [`EVAL_BATCH`] without a tape;
//! - the sparse kernels' batch-contiguous layouts (input, padded, and output, forward and
//!   backward) of every masked dense layer and convolution when the target leaves at most half
//!   the weights (where they run sparse), kept for reuse across steps;
//! - the data set as f32 pixels, and a fixed runtime (code, threads, allocator).
//!
//! Measured against the peak resident memory of real runs in `tests/run_outputs.rs`.

use super::plan::{Dataset, Layer, LayerKind, MaskMethod, Optimizer, Plan, Update};

/// Examples per evaluation batch (the engine's `finish::EVAL_BATCH`).
pub const EVAL_BATCH: usize = 500;
/// Code, thread stacks, the JIT and allocator overhead of a running `sprsc`, measured on a run
/// of a 10-way linear model (about 14 MB resident in all).
pub const RUNTIME: u64 = 12 << 20;
/// Floats a training step holds per activation value at its peak: outputs and the input copies
/// ops keep for their backward pass, less what the backward pass frees as it goes, plus
/// gradients. Fitted to measured peaks (`tests/run_outputs.rs`): LeNet-5 needs about 1.8,
/// ResNet-20 about 1.1, so a single factor is within about 20% of both.
const TRAIN_COPIES: f64 = 1.4;
/// An evaluation (no tape) holds the largest activation about three times: a layer's output,
/// the next op's output and the copy of its input that op reads.
const EVAL_COPIES: u64 = 3;
const F32: u64 = 4;

/// One layer's activations at the training batch.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerMemory {
    pub name: String,
    pub bytes: u64,
}

/// A plan's memory in bytes, by part.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    pub batch: usize,
    /// Raw values, the graph's copy and two gradients of every param.
    pub params: u64,
    pub gradients: u64,
    /// Masks, soft-threshold buffers and lottery rewind weights.
    pub masks: u64,
    pub optimizer: u64,
    /// A training step's activations (all layers, kept for the backward pass).
    pub activations: u64,
    /// An evaluation batch's activations (no backward pass: the largest layer's, a few times).
    pub eval_activations: u64,
    /// The sparse kernels' layouts, resident from the first step.
    pub sparse_layouts: u64,
    pub layers: Vec<LayerMemory>,
    /// The data set's pixels and labels; `None` where the size is known only once loaded.
    pub data: Option<u64>,
    pub runtime: u64,
}

impl Memory {
    /// The most the run holds at once: everything resident, plus the larger of a training step
    /// and an evaluation batch.
    pub fn peak(&self) -> u64 {
        // Saturating: the checker bounds every size, but an estimate must never overflow.
        [
            self.params,
            self.gradients,
            self.masks,
            self.optimizer,
            self.activations.max(self.eval_activations),
            self.sparse_layouts,
            self.data.unwrap_or(0),
            self.runtime,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// The `n` layers with the largest activations, largest first.
    pub fn largest_layers(&self, n: usize) -> Vec<&LayerMemory> {
        let mut ls: Vec<&LayerMemory> = self.layers.iter().collect();
        ls.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.name.cmp(&b.name)));
        ls.truncate(n);
        ls
    }
}

/// Examples the plan's data set holds (train, validation and test together), where the plan
/// alone tells.
fn examples(data: &Dataset) -> Option<u64> {
    match data {
        Dataset::Mnist | Dataset::FashionMnist => Some(70_000),
        Dataset::Cifar10 | Dataset::Cifar100 => Some(60_000),
        Dataset::SyntheticDigits { train, test } => Some((*train + *test) as u64),
        Dataset::Idx { .. } => None,
    }
}

/// Output values per example of `ls` in order, residual bodies and shortcuts included.
fn outputs(ls: &[Layer], out: &mut Vec<(String, u64)>) {
    for l in ls {
        if let LayerKind::Residual { body, shortcut, .. } = &l.kind {
            outputs(body, out);
            outputs(shortcut, out);
        }
        out.push((l.name.clone(), l.output.iter().product::<usize>() as u64));
    }
}

/// Values per example of the sparse kernels' layouts of `ls` (input padded, and output) for
/// masked dense layers and convolutions.
fn layouts(ls: &[Layer], masked: &dyn Fn(&str) -> bool) -> u64 {
    ls.iter()
        .map(|l| match &l.kind {
            LayerKind::Residual { body, shortcut, .. } => layouts(body, masked) + layouts(shortcut, masked),
            LayerKind::Dense { .. } | LayerKind::Conv { .. } if masked(&l.name) => {
                let pad = match l.kind {
                    LayerKind::Conv { padding, .. } => padding,
                    _ => 0,
                };
                let (c, h, w) = super::plan::chw(&l.input);
                ((c * (h + 2 * pad) * (w + 2 * pad)) + l.output.iter().product::<usize>()) as u64
            }
            _ => 0,
        })
        .sum()
}

/// The estimate for `plan`; `examples` is the number of examples loaded (train, validation and
/// test), else taken from the data set's known size.
pub fn estimate(plan: &Plan, examples_loaded: Option<usize>) -> Memory {
    let m = &plan.model;
    let values: u64 = m.params.iter().map(|p| p.numel() as u64).sum();
    let masked: u64 = m.params.iter().filter(|p| p.masked).map(|p| p.numel() as u64).sum();
    let soft = matches!(plan.sparsity.update, Update::SoftThreshold { .. });
    let lottery = matches!(plan.sparsity.mask, MaskMethod::Lottery { .. });
    let moments = match plan.train.optimizer {
        Optimizer::Sgd { .. } => 1,
        Optimizer::Adam { .. } => 2,
    };
    let mut masks = masked + if soft { masked } else { 0 };
    if lottery {
        masks += values;
    }
    let batch = plan.train.batch as u64;
    let mut per_example = Vec::new();
    outputs(&m.layers, &mut per_example);
    let input: u64 = m.input.iter().product::<usize>() as u64;
    let train_values: u64 = per_example.iter().map(|(_, n)| n).sum::<u64>() + input;
    let largest = per_example.iter().map(|(_, n)| *n).fold(input, u64::max);
    let layers =
        per_example.iter().map(|(name, n)| LayerMemory { name: name.clone(), bytes: n * batch * F32 }).collect();
    let masked_layer = |name: &str| m.params.iter().any(|p| p.masked && p.layer == name);
    let sparse_values = if plan.sparsity.target >= 0.5 { 2 * layouts(&m.layers, &masked_layer) } else { 0 };
    let batch_lanes = plan.train.batch.div_ceil(8) as u64 * 8;
    let examples = examples_loaded.map(|n| n as u64).or_else(|| examples(&plan.data.dataset));
    let data = examples.map(|n| n * (input * F32 + 1));
    let eval_batch = examples.map_or(EVAL_BATCH as u64, |n| n.min(EVAL_BATCH as u64));
    Memory {
        batch: plan.train.batch,
        params: 2 * values * F32,
        gradients: 2 * values * F32,
        masks: masks * F32,
        optimizer: moments * values * F32,
        activations: (TRAIN_COPIES * train_values.saturating_mul(batch).saturating_mul(F32) as f64) as u64,
        eval_activations: (EVAL_COPIES * F32).saturating_mul(largest).saturating_mul(eval_batch),
        sparse_layouts: sparse_values.saturating_mul(batch_lanes).saturating_mul(F32),
        layers,
        data,
        runtime: RUNTIME,
    }
}

/// `bytes` for people: `812 KB`, `45.3 MB`, `14.4 GB` (powers of 1000, as `free -h` does not,
/// but as allocation failures and data sheets do).
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=999_999 => format!("{:.0} KB", b / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.1} GB", b / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_in_powers_of_1000() {
        assert_eq!(human(0), "0 KB");
        assert_eq!(human(401_408), "401 KB");
        assert_eq!(human(45_600_000), "45.6 MB");
        assert_eq!(human(14_400_000_000), "14.4 GB");
        assert_eq!(human(u64::MAX), "18446744073.7 GB");
    }
}
