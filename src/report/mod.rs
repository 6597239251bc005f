//! Run outputs. In: per-evaluation [`Metrics`] and the final [`RunSummary`] from the engine.
//! Out: the run directory (`metrics.jsonl`, `summary.json`, safetensors files, see
//! [`rundir`]; plots, see [`plots`]), FLOP counts ([`flops`]), and the text report printed at
//! the end.

pub mod checkpoint;
pub mod flops;
pub mod plots;
pub mod rundir;
pub mod sweep;

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub use rundir::RunDir;

/// Target and realised sparsity of one masked tensor (realised: zeros of the effective weights).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSparsity {
    pub name: String,
    pub target: f64,
    pub realised: f64,
    pub numel: usize,
    /// Training steps this tensor's products ran on the sparse kernels.
    pub sparse_steps: u64,
}

/// A ReLU layer's dead units on the evaluated split: units (channels of a convolution's
/// activation, features of a dense one) that output 0 for every example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadUnits {
    pub layer: String,
    pub units: usize,
    /// Fraction of `units` that never fired.
    pub dead: f64,
}

/// One line of `metrics.jsonl`, written at each evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The lottery round (1-based) this line's training belongs to; absent for the final run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round: Option<usize>,
    pub epoch: u64,
    pub step: u64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_accuracy: Option<f64>,
    /// Mean cross-entropy on the validation split (when there is one).
    pub val_loss: Option<f64>,
    pub test_accuracy: Option<f64>,
    /// Mean cross-entropy on the test split (when there is no validation split).
    pub test_loss: Option<f64>,
    pub sparsity: f64,
    pub lr: f64,
    pub seconds: f64,
    /// Dead ReLU units per ReLU layer on the split evaluated (validation, else test).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dead_units: Vec<DeadUnits>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub recipe: String,
    /// Fraction of the test split classified correctly.
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub val_accuracy: Option<f64>,
    /// Realised fraction of zeros over all masked weights.
    pub sparsity: f64,
    pub layers: Vec<LayerSparsity>,
    /// Dead ReLU units per ReLU layer on the test split at the end.
    pub dead_units: Vec<DeadUnits>,
    pub params_dense: usize,
    /// Non-zero effective parameters (all params, masked or not).
    pub params_nonzero: usize,
    /// Forward FLOPs per example of the conv and dense layers (2 per multiply-add).
    pub flops_dense: u64,
    pub flops_sparse: u64,
    pub epochs: u64,
    pub steps: u64,
    pub threads: usize,
    pub seconds: f64,
    pub seconds_per_epoch: f64,
    /// Median wall-clock milliseconds of one training step (forward, backward, update).
    pub step_ms: f64,
    pub final_train_loss: f64,
    /// Peak memory the plan was estimated to need (`ir::memory`), in bytes.
    pub memory_estimate: u64,
    /// Peak resident memory the run reached (`VmHWM`), in bytes, where the system tells.
    pub memory_peak: Option<u64>,
    /// Why the run ended before its last epoch (`not_learning(action: stop)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Train loss after each step, for tests and plots.
    #[serde(skip)]
    pub losses: Vec<f32>,
    /// Warnings raised while training (W0701), rendered by the driver.
    #[serde(skip)]
    pub warnings: Vec<crate::diagnostics::Diagnostic>,
}

/// The human-readable report printed at the end of a run.
pub fn text_report(s: &RunSummary) -> String {
    let mut out = String::new();
    let _ =
        writeln!(out, "recipe {}: test accuracy {:.2}% (loss {:.4})", s.recipe, s.test_accuracy * 100.0, s.test_loss);
    if let Some(v) = s.val_accuracy {
        let _ = writeln!(out, "validation accuracy {:.2}%", v * 100.0);
    }
    let _ = writeln!(out, "sparsity {:.2}% over masked weights", s.sparsity * 100.0);
    if !s.layers.is_empty() {
        let _ = writeln!(out, "  {:<28} {:>10} {:>9} {:>9}  kernels", "tensor", "size", "target", "realised");
        for l in &s.layers {
            let kernels = match l.sparse_steps {
                0 => "dense".to_string(),
                n if n >= s.steps => "sparse".to_string(),
                n => format!("sparse {:.0}% of steps", 100.0 * n as f64 / s.steps.max(1) as f64),
            };
            let _ = writeln!(
                out,
                "  {:<28} {:>10} {:>8.2}% {:>8.2}%  {kernels}",
                l.name,
                l.numel,
                l.target * 100.0,
                l.realised * 100.0
            );
        }
    }
    if !s.dead_units.is_empty() {
        let layers: Vec<String> =
            s.dead_units.iter().map(|d| format!("{} {:.1}% of {}", d.layer, 100.0 * d.dead, d.units)).collect();
        let _ = writeln!(out, "dead ReLU units (never fire on the test split): {}", layers.join(", "));
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 1.0 };
    let _ = writeln!(
        out,
        "params {} dense, {} non-zero ({:.1}x smaller)",
        s.params_dense,
        s.params_nonzero,
        ratio(s.params_dense as f64, s.params_nonzero as f64)
    );
    let _ = writeln!(
        out,
        "FLOPs/example {} dense, {} sparse ({:.1}x fewer)",
        s.flops_dense,
        s.flops_sparse,
        ratio(s.flops_dense as f64, s.flops_sparse as f64)
    );
    let human = crate::ir::memory::human;
    let measured = s.memory_peak.map_or(String::new(), |p| format!(", measured {}", human(p)));
    let _ = writeln!(out, "memory peak {} estimated{measured}", human(s.memory_estimate));
    let _ = writeln!(
        out,
        "{} epochs, {} steps on {} threads in {:.1}s ({:.2}s per epoch, {:.2} ms per step)",
        s.epochs, s.steps, s.threads, s.seconds, s.seconds_per_epoch, s.step_ms
    );
    out
}
