//! Evaluation and the end of a run. In: the trainer's buffers. Out: accuracies, realised
//! sparsity measured on the effective weights, the summary, and the saved tensors.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Trainer;
use crate::data::Split;
use crate::exec::error::RunError;
use crate::exec::graph::{Batch, Mode};
use crate::ir::plan::AddedBy;
use crate::report::flops::flops;
use crate::report::rundir::Named;
use crate::report::{text_report, DeadUnits, LayerSparsity, RunSummary};
use crate::sparsity::mask::count_zeros;

use crate::ir::memory::EVAL_BATCH;

impl Trainer<'_> {
    /// Accuracy and mean loss on `split` with the current effective weights (eval mode); the
    /// ReLU units that fired on it are left in `graph.relus` ([`Trainer::dead_units`]).
    pub(crate) fn evaluate(&mut self, split: &Split) -> Result<(f64, f64), RunError> {
        self.load_weights()?;
        // Neither augmentation nor dropout draws at evaluation.
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (mut correct, mut loss) = (0usize, 0.0f64);
        let len = self.opts.max_eval.map_or(split.len, |m| m.min(split.len));
        let all: Vec<usize> = (0..len).collect();
        self.graph.watch_relus();
        for idx in all.chunks(EVAL_BATCH) {
            let batch = Batch::fill(split, self.data.shape, idx, &[], &mut rng);
            let mut mode = Mode { train: false, dropout: false, rng: &mut rng, step: self.step };
            let (l, ok) = self.graph.loss(&batch, &mut mode);
            correct += ok;
            loss += l as f64 * idx.len() as f64;
        }
        self.graph.unwatch_relus();
        let len = len.max(1) as f64;
        Ok((correct as f64 / len, loss / len))
    }

    /// Per ReLU layer, the fraction of units that did not fire in the last evaluation.
    pub(crate) fn dead_units(&self) -> Vec<DeadUnits> {
        let relus = &self.graph.relus;
        relus.iter().map(|r| DeadUnits { layer: r.name.clone(), units: r.c, dead: r.dead() }).collect()
    }

    /// Overall realised sparsity over masked weights, and per tensor.
    pub(crate) fn realised(&self) -> (f64, Vec<LayerSparsity>) {
        let targets = self.sparsifier.targets(self.step);
        let (mut zeros, mut total) = (0usize, 0usize);
        let layers = targets
            .iter()
            .map(|&(i, target)| {
                let p = &self.params[i];
                let z = count_zeros(p.effective());
                zeros += z;
                total += p.raw.len();
                LayerSparsity {
                    name: p.spec.name.clone(),
                    target,
                    realised: z as f64 / p.raw.len().max(1) as f64,
                    numel: p.raw.len(),
                    sparse_steps: self.graph.sparse[i].sparse_steps,
                }
            })
            .collect();
        (zeros as f64 / total.max(1) as f64, layers)
    }

    pub(super) fn finish(mut self, epochs_run: u64) -> Result<RunSummary, RunError> {
        let train_seconds = self.started.elapsed().as_secs_f64();
        let (test_accuracy, test_loss) = self.evaluate(&self.data.test)?;
        let dead_units = self.dead_units();
        let val_accuracy = match self.data.val.as_ref() {
            Some(v) => Some(self.evaluate(v)?.0),
            None => None,
        };
        let (sparsity, layers) = self.realised();
        self.write_plots(&layers)?;
        let density = |name: &str| {
            // A shared conv weight (weight sharing) is its owner's tensor times a scalar.
            let shared = self.plan.model.shared.iter().find(|s| s.param == name);
            let name = shared.map_or(name, |s| s.owner.as_str());
            self.params
                .iter()
                .find(|p| p.spec.name == name)
                .map_or(1.0, |p| 1.0 - count_zeros(p.effective()) as f64 / p.raw.len().max(1) as f64)
        };
        let (flops_dense, flops_sparse) = flops(&self.plan.model, &density);
        // Ghost skip branches are gone from the graph once faded: not part of the model.
        let model = || self.params.iter().filter(|p| p.spec.added_by != Some(AddedBy::GhostSkip));
        let params_dense = model().map(|p| p.raw.len()).sum();
        let params_nonzero = model().map(|p| p.raw.len() - count_zeros(p.effective())).sum();
        let epochs = self.step as f64 / self.clock.steps_per_epoch as f64;
        let summary = RunSummary {
            recipe: self.plan.recipe.clone(),
            test_accuracy,
            test_loss,
            val_accuracy,
            sparsity,
            layers,
            dead_units,
            params_dense,
            params_nonzero,
            flops_dense,
            flops_sparse,
            epochs: epochs_run,
            steps: self.step,
            threads: self.threads,
            seconds: train_seconds,
            seconds_per_epoch: if epochs > 0.0 { train_seconds / epochs } else { 0.0 },
            step_ms: median(&mut self.step_ms),
            final_train_loss: self.losses.last().copied().unwrap_or(f32::NAN) as f64,
            memory_estimate: crate::exec::memory::for_data(self.plan, self.data).peak(),
            memory_peak: crate::exec::memory::peak_resident(),
            stopped: self.stopped.take(),
            losses: std::mem::take(&mut self.losses),
            warnings: std::mem::take(&mut self.warnings),
        };
        self.save(&summary)?;
        if !self.opts.quiet {
            print!("{}", text_report(&summary));
        }
        Ok(summary)
    }

    /// Effective weights and batchnorm running statistics, as `file` in the run directory.
    pub(crate) fn save_weights(&self, file: &str) -> Result<(), RunError> {
        let mut weights: Vec<Named> =
            self.params.iter().map(|p| (p.spec.name.clone(), p.spec.shape.clone(), p.effective())).collect();
        for (name, stats) in &self.graph.bn {
            let n = stats.mean.len();
            weights.push((format!("{name}.running_mean"), vec![n], &stats.mean));
            weights.push((format!("{name}.running_var"), vec![n], &stats.var));
        }
        self.rundir.write_tensors(file, &weights).map_err(RunError::io(self.rundir.path.join(file)))
    }

    fn save(&self, summary: &RunSummary) -> Result<(), RunError> {
        let dir = &self.rundir;
        let err = |f: &str| RunError::io(dir.path.join(f));
        self.save_weights("weights.safetensors")?;
        // Under soft thresholding the realised mask is where the effective weight survives.
        let soft = self.sparsifier.is_soft();
        let masks: Vec<(String, Vec<usize>, Vec<f32>)> = self
            .params
            .iter()
            .filter(|p| !p.mask.is_empty())
            .map(|p| {
                let m =
                    if soft { p.effective().iter().map(|w| f32::from(*w != 0.0)).collect() } else { p.mask.clone() };
                (p.spec.name.clone(), p.spec.shape.clone(), m)
            })
            .collect();
        let masks: Vec<Named> = masks.iter().map(|(n, s, m)| (n.clone(), s.clone(), &m[..])).collect();
        dir.write_tensors("masks.safetensors", &masks).map_err(err("masks.safetensors"))?;
        dir.write_summary(summary).map_err(err("summary.json"))
    }
}

/// The median of `v` (0 when empty).
fn median(v: &mut [f32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f32::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0
    }
}
