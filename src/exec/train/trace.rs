//! What the plots need from the loop. In: the trainer at a step. Out: [`Trace`] points (the
//! learning rate, and target and realised sparsity per masked tensor) about 200 times over the
//! run and at every evaluation, and the plot files at the end. A point counts the zeros of the
//! masked tensors once, so sampling costs about 200 passes over the weights per run.

use super::Trainer;
use crate::exec::error::RunError;
use crate::ir::plan::MaskMethod;
use crate::report::plots::{write_plots, TracePoint};
use crate::report::LayerSparsity;

/// Points sampled over a run (besides one per evaluation).
const SAMPLES: u64 = 200;

impl Trainer<'_> {
    /// The step counted over the whole run: lottery rounds one after another, then the final
    /// training.
    pub(crate) fn run_step(&self) -> u64 {
        let round = match (&self.lottery, &self.plan.sparsity.mask) {
            (Some(l), _) => l.round as u64 - 1,
            (None, MaskMethod::Lottery { rounds, .. }) => *rounds as u64,
            (None, _) => 0,
        };
        round * self.step_limit() + self.step
    }

    /// At the sampling cadence, records the sparsity of the effective weights the step is about
    /// to use (call after `load_weights`).
    pub(crate) fn sample_trace(&mut self) {
        if !self.plan.output.plots || !self.step.is_multiple_of((self.step_limit() / SAMPLES).max(1)) {
            return;
        }
        let (_, layers) = self.realised();
        self.record_trace(&layers);
    }

    /// Records a point from the per-tensor sparsity just measured.
    pub(crate) fn record_trace(&mut self, layers: &[LayerSparsity]) {
        if !self.plan.output.plots {
            return;
        }
        if self.trace.names.is_empty() {
            self.trace.names = layers.iter().map(|l| l.name.clone()).collect();
        }
        let point = TracePoint {
            step: self.run_step(),
            lr: self.lr.at(self.step),
            target: layers.iter().map(|l| l.target).collect(),
            realised: layers.iter().map(|l| l.realised).collect(),
        };
        // An evaluation at the step just sampled adds nothing.
        if self.trace.points.last().is_some_and(|p| p.step == point.step) {
            self.trace.points.pop();
        }
        self.trace.points.push(point);
    }

    /// Writes the plots into the run directory, unless the recipe turned them off.
    pub(crate) fn write_plots(&mut self, layers: &[LayerSparsity]) -> Result<(), RunError> {
        if !self.plan.output.plots {
            return Ok(());
        }
        self.record_trace(layers);
        write_plots(&self.rundir.path, &self.plan.recipe, &self.evaluations, &self.trace)
            .map(|_| ())
            .map_err(RunError::io(self.rundir.path.join("loss.svg")))
    }
}
