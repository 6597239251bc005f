//! The training loop. In: plan, data, options. Out: trained buffers, metrics lines, summary.
//! Each step: the sparsifier brings masks or thresholds to the step, effective weights go into
//! the graph, one batch runs forward and backward (`Graph::loss_and_grads`), gradients are
//! clipped and the optimizer updates every param (one JIT kernel call each).
//!
//! The parts each live in their own file: `params` (buffers and initialisation), `optimizer`
//! (clipping and the update), `sparsity` (masks and update rules), `graph` (the network),
//! `techniques` (run-time techniques), `lottery` (rounds and rewinding), `finish` (evaluation,
//! summary, saved tensors), `checkpoint` (the state between two steps, saved and restored:
//! `--resume`).

mod checkpoint;
mod finish;
mod lottery;
mod trace;

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand_chacha::ChaCha8Rng;

use super::awake::Awake;
use super::error::RunError;
use super::graph::{Batch, Graph, Mode, Objective};
use super::jit::{KeptScratch, StepKernels};
use super::lr::Lr;
use super::optimizer;
use super::params::{self, ParamBuf};
use super::sparsity::{self, Sparsifier};
use super::techniques::RunTechniques;
use super::{RunOptions, Stream};
use crate::data::{epoch_order, DataSet};
use crate::diagnostics::Diagnostic;
use crate::ir::plan::{Checkpoint, Clock, Plan, Time};
use crate::report::plots::{Evaluation, Trace};
use crate::report::{Metrics, RunDir, RunSummary};

pub use checkpoint::checkpoint_threads;
pub use lottery::Lottery;

use checkpoint::Position;

/// Testing hook: with this set to N, the process aborts (no cleanup, as a kill would) before
/// the step N of the whole run, just after any checkpoint due there is written.
pub const ABORT_VAR: &str = "SPRSC_ABORT_AT_STEP";

pub struct Trainer<'a> {
    pub(crate) plan: &'a Plan,
    pub(crate) data: &'a DataSet,
    pub(crate) opts: &'a RunOptions,
    threads: usize,
    /// Keeps the pool's other threads awake through the steps.
    awake: Awake,
    pub(crate) graph: Graph,
    pub(crate) params: Vec<ParamBuf>,
    pub(crate) sparsifier: Sparsifier,
    /// Compiled once per run; their code is freed when the trainer is dropped.
    kernels: StepKernels,
    lr: Lr,
    pub(crate) clock: Clock,
    pub(crate) step: u64,
    rng_augment: ChaCha8Rng,
    rng_dropout: ChaCha8Rng,
    pub(crate) techniques: RunTechniques,
    pub(crate) losses: Vec<f32>,
    /// Lottery rounds in progress (`None` in the final training).
    pub(crate) lottery: Option<Lottery>,
    /// Whether the run was looked at for not learning (once per run).
    learning_checked: bool,
    /// Warnings raised while training (W0701), and why the run ended early, if it did.
    pub(crate) warnings: Vec<Diagnostic>,
    pub(crate) stopped: Option<String>,
    rundir: RunDir,
    started: Instant,
    /// Every evaluation line at its step of the whole run, and the sampled sparsity and
    /// learning rate: what the plots draw.
    pub(crate) evaluations: Vec<Evaluation>,
    pub(crate) trace: Trace,
    /// Where a resumed run continues (taken by the next `train_epochs`).
    resume_at: Option<Position>,
    /// Whether this run continues from a checkpoint.
    resumed: bool,
    /// [`ABORT_VAR`].
    abort_at: Option<u64>,
    /// Wall-clock milliseconds of each training step.
    step_ms: Vec<f32>,
    /// Gathered arrays of the sparse layers' optimizer update, reused across steps.
    update_scratch: Vec<KeptScratch>,
    /// Per param, the sparse layout whose kept positions are the only nonzeros of its `grad`
    /// ([`super::graph::ParamGrad::write_over`]); `None` when unknown.
    grad_support: Vec<Option<u64>>,
}

/// Rejects what does not fit the data.
fn check(plan: &Plan, data: &DataSet) -> Result<(), RunError> {
    let m = &plan.model;
    if m.input != data.shape || m.classes != data.classes {
        let msg = format!(
            "the model takes {:?} inputs and {} classes, `{}` has {:?} and {}",
            m.input, m.classes, data.name, data.shape, data.classes
        );
        return Err(RunError::DataMismatch { msg, span: m.span });
    }
    let batch = plan.train.batch;
    if batch == 0 || data.train.len < batch || plan.train.epochs == 0 {
        let msg = format!("{} epochs of {} training examples in batches of {batch}", plan.train.epochs, data.train.len);
        return Err(RunError::NoSteps { msg, span: plan.data.span });
    }
    Ok(())
}

impl<'a> Trainer<'a> {
    pub fn new(
        plan: &'a Plan,
        data: &'a DataSet,
        opts: &'a RunOptions,
        threads: usize,
    ) -> Result<Trainer<'a>, RunError> {
        check(plan, data)?;
        let steps_per_epoch = (data.train.len / plan.train.batch) as u64;
        let clock = Clock { steps_per_epoch, total_steps: steps_per_epoch * plan.train.epochs };
        let mut params = params::init(plan);
        let kernels = StepKernels::compile(plan)?;
        let mut graph = Graph::build(&plan.model, clock)?;
        super::warm_start::load(plan, &mut params, &mut graph.bn)?;
        let mut sparsifier = Sparsifier::new(plan, clock);
        sparsity::set_initial_masks(plan, &mut sparsifier, &mut params, &mut graph, data, &kernels)?;
        if plan.init.sparse {
            params::rescale_to_kept_fan_in(&mut params);
        }
        let lr = Lr::new(&plan.train.lr, plan.train.optimizer.lr(), steps_per_epoch, clock.total_steps);
        let dir = opts.out_dir.clone().unwrap_or_else(|| plan.output.dir.clone().into());
        let rundir = RunDir::create(&dir, opts.resume).map_err(RunError::io(&dir))?;
        Ok(Trainer {
            plan,
            data,
            opts,
            threads,
            awake: Awake::new(),
            graph,
            params,
            sparsifier,
            kernels,
            lr,
            clock,
            step: 0,
            rng_augment: Stream::Augment.rng(plan.seed),
            rng_dropout: Stream::Dropout.rng(plan.seed),
            techniques: RunTechniques::new(plan),
            losses: Vec::new(),
            lottery: None,
            learning_checked: false,
            warnings: Vec::new(),
            stopped: None,
            rundir,
            started: Instant::now(),
            evaluations: Vec::new(),
            trace: Trace::default(),
            resume_at: None,
            resumed: false,
            abort_at: std::env::var(ABORT_VAR).ok().and_then(|v| v.parse().ok()),
            step_ms: Vec::new(),
            update_scratch: Default::default(),
            grad_support: Vec::new(),
        })
    }

    fn progress_bar(&self) -> ProgressBar {
        let pb = ProgressBar::new(self.step_limit());
        if self.opts.quiet || !std::io::stderr().is_terminal() {
            pb.set_draw_target(ProgressDrawTarget::hidden());
        }
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}<{eta}] {msg}") {
            pb.set_style(style);
        }
        pb
    }

    pub(crate) fn step_limit(&self) -> u64 {
        self.opts.max_steps.map_or(self.clock.total_steps, |m| m.min(self.clock.total_steps))
    }

    pub fn run(mut self) -> Result<RunSummary, RunError> {
        self.resumed = self.resume()?;
        // A checkpoint is taken after GradInit: its result is in the weights.
        if !self.resumed {
            super::techniques::before_training(&mut self)?;
        }
        self.lottery_rounds()?;
        let epochs_run = if self.stopped.is_none() { self.train_epochs()? } else { 0 };
        self.finish(epochs_run)
    }

    /// Restarts the step counter and the training streams (a lottery rewind).
    pub(crate) fn restart(&mut self) {
        self.step = 0;
        self.losses.clear();
        (self.rng_augment, self.rng_dropout) =
            (Stream::Augment.rng(self.plan.seed), Stream::Dropout.rng(self.plan.seed));
    }

    /// The whole training schedule once; returns the epochs run.
    pub(crate) fn train_epochs(&mut self) -> Result<u64, RunError> {
        let pb = self.progress_bar();
        let (batch, n) = (self.plan.train.batch, self.data.train.len);
        let start = self.resume_at.take();
        let first_epoch = start.map_or(0, |p| p.epoch);
        let mut epochs_run = first_epoch;
        for epoch in first_epoch..self.plan.train.epochs {
            if self.step >= self.step_limit() {
                break;
            }
            let order = epoch_order(n, self.plan.seed, epoch);
            let resumed_here = start.filter(|p| p.epoch == epoch);
            let (mut loss_sum, mut correct, mut seen) =
                resumed_here.map_or((0.0f64, 0usize, 0usize), |p| (p.loss_sum, p.correct, p.seen));
            pb.set_position(self.step);
            for (index, idx) in order.chunks_exact(batch).enumerate().skip(resumed_here.map_or(0, |p| p.index)) {
                if self.step >= self.step_limit() {
                    break;
                }
                // The checkpoint a resumed run started from is not written again.
                if self.checkpoint_due() && resumed_here.is_none_or(|p| p.index != index) {
                    self.save_checkpoint(Position { epoch, index, loss_sum, correct, seen })?;
                }
                if self.abort_at == Some(self.run_step()) {
                    std::process::abort();
                }
                let t0 = Instant::now();
                let (loss, ok) = self.train_step(idx)?;
                self.step_ms.push(t0.elapsed().as_secs_f32() * 1e3);
                loss_sum += loss as f64;
                correct += ok;
                seen += idx.len();
                pb.inc(1);
                if self.step.is_multiple_of(10) {
                    let s = self.sparsifier.targets(self.step).iter().map(|(_, s)| s).cloned().fold(0.0, f64::max);
                    pb.set_message(format!(
                        "loss {:.4} acc {:.1}% sparsity {:.1}%",
                        loss,
                        100.0 * correct as f64 / seen as f64,
                        100.0 * s
                    ));
                }
            }
            epochs_run += 1;
            let last = epoch + 1 == self.plan.train.epochs || self.step >= self.step_limit();
            if (epoch + 1) % self.plan.train.eval_every.max(1) == 0 || last {
                let steps = (seen / batch).max(1) as f64;
                let m = self.metrics(epoch + 1, loss_sum / steps, correct as f64 / seen.max(1) as f64)?;
                self.rundir.append_metrics(&m).map_err(RunError::io(self.rundir.path.join("metrics.jsonl")))?;
                self.evaluations.push((self.run_step(), m));
            }
            if self.stopped.is_none() && !self.learning_checked {
                self.check_learning(correct as f64 / seen.max(1) as f64);
                if self.stopped.is_some() {
                    break;
                }
            }
            // An epoch cadence also saves the effective weights of each checkpointed epoch.
            if let Some(Checkpoint { every: Time::Epochs(e), .. }) = &self.plan.output.checkpoint {
                if (epoch + 1).is_multiple_of((*e as u64).max(1)) && !last {
                    self.load_weights()?;
                    self.save_weights(&format!("weights-epoch{}.safetensors", epoch + 1))?;
                }
            }
        }
        pb.finish_and_clear();
        Ok(epochs_run)
    }

    /// W0701 when, at the end of the first epoch past `not_learning.after`, the training
    /// accuracy of that epoch is below 1.5x chance or the last steps' loss is within 1% of the
    /// first steps'; with `action: stop` the run then ends.
    fn check_learning(&mut self, epoch_accuracy: f64) {
        let nl = self.plan.train.not_learning;
        if self.step < self.clock.at(nl.after).max(1) {
            return;
        }
        self.learning_checked = true;
        // The first steps against the last ones (up to 10 each, at most a quarter of the steps,
        // so that the two never overlap).
        let n = self.losses.len();
        let k = (n / 4).clamp(1, 10);
        let mean = |l: &[f32]| l.iter().map(|l| *l as f64).sum::<f64>() / l.len().max(1) as f64;
        let (start, end) = (mean(&self.losses[..k.min(n)]), mean(&self.losses[n.saturating_sub(k)..]));
        let chance = 1.0 / self.plan.model.classes.max(1) as f64;
        let moved = (start - end) / start.abs().max(1e-12);
        let why = if epoch_accuracy < 1.5 * chance {
            format!("training accuracy {:.1}% is at chance ({:.1}%)", 100.0 * epoch_accuracy, 100.0 * chance)
        } else if moved.abs() < 0.01 {
            format!("the training loss moved {:.2}% (from {start:.4} to {end:.4})", 100.0 * moved)
        } else {
            return;
        };
        // Dead ReLUs are the usual cause: say so when this epoch's evaluation saw them.
        let dead: Vec<String> = match self.evaluations.last() {
            Some((_, m)) if m.step == self.step => m
                .dead_units
                .iter()
                .filter(|d| d.dead >= 0.5)
                .map(|d| format!("{:.0}% of {}", 100.0 * d.dead, d.layer))
                .collect(),
            _ => Vec::new(),
        };
        let dead = if dead.is_empty() { String::new() } else { format!("; dead ReLU units: {}", dead.join(", ")) };
        let epochs = self.step as f64 / self.clock.steps_per_epoch as f64;
        let epochs = if epochs == 1.0 { "1 epoch".to_string() } else { format!("{epochs} epochs") };
        let d = self.not_learning_warning(format!("the run is not learning: {why} after {epochs}{dead}"));
        if !self.opts.quiet {
            eprintln!("warning[W0701]: {}", d.message);
        }
        self.warnings.push(d);
        if nl.stop {
            self.stopped = Some(format!("not learning: {why}"));
        }
    }

    /// W0701 with `message`, pointing at the optimizer, the `init` block and `not_learning`.
    fn not_learning_warning(&self, message: String) -> Diagnostic {
        let mut d =
            Diagnostic::warning("W0701", message).at(self.plan.train.span, "trained with this optimizer").with_help(
                "lower the learning rate or warm it up (`lr cosine(warmup: 1 epoch)`), or start from PyTorch's \
             default init (`init { weights pytorch }`: logits start small, so ReLUs do not die); \
             `not_learning(action: stop)` ends such runs early",
            );
        if let Some(span) = self.plan.init.span {
            d = d.with_secondary(span, "from this initialisation");
        }
        if let Some(span) = self.plan.train.not_learning.span {
            d = d.with_secondary(span, "checked here");
        }
        d
    }

    /// Evaluation line: accuracy on validation (or test when there is none).
    fn metrics(&mut self, epoch: u64, train_loss: f64, train_accuracy: f64) -> Result<Metrics, RunError> {
        let ((val_accuracy, val_loss), (test_accuracy, test_loss)) = match &self.data.val {
            Some(val) => (self.evaluate(val).map(|(a, l)| (Some(a), Some(l)))?, (None, None)),
            None => ((None, None), self.evaluate(&self.data.test).map(|(a, l)| (Some(a), Some(l)))?),
        };
        let (sparsity, layers) = self.realised();
        self.record_trace(&layers);
        Ok(Metrics {
            round: self.lottery.as_ref().map(|l| l.round),
            epoch,
            step: self.step,
            train_loss,
            train_accuracy,
            val_accuracy,
            val_loss,
            test_accuracy,
            test_loss,
            sparsity,
            lr: self.lr.at(self.step.saturating_sub(1)),
            seconds: self.started.elapsed().as_secs_f64(),
            dead_units: self.dead_units(),
        })
    }

    /// Brings masks/thresholds to the current step and writes effective weights into the graph.
    pub(crate) fn load_weights(&mut self) -> Result<(), RunError> {
        self.sparsifier.prepare(self.step, &mut self.params, &self.kernels)?;
        let values: Vec<&[f32]> = self.params.iter().map(ParamBuf::effective).collect();
        // A weight's kept positions: where a soft threshold leaves it nonzero, else its mask.
        let patterns: Vec<Option<&[f32]>> =
            self.params.iter().map(|p| if p.eff.is_empty() { p.mask() } else { Some(&p.eff[..]) }).collect();
        let dense_grad = self.sparsifier.needs_dense_grad(self.step, &self.params);
        let generation = self.sparsifier.generation();
        self.graph.load_step(&values, &patterns, self.opts.kernels, generation, dense_grad);
        Ok(())
    }

    /// One optimizer step on the examples `idx`; returns the loss and the number correct.
    pub(crate) fn train_step(&mut self, idx: &[usize]) -> Result<(f32, usize), RunError> {
        self.awake.keep();
        self.load_weights()?;
        self.sample_trace();
        self.lottery_snapshot();
        let batch = Batch::fill(&self.data.train, self.data.shape, idx, &self.plan.data.augment, &mut self.rng_augment);
        let objective = Objective::CrossEntropy { smoothing: self.techniques.smoothing, temperature: 1.0 };
        let mut mode = Mode { train: true, dropout: true, rng: &mut self.rng_dropout, step: self.step };
        let params = &mut self.params;
        let support = &mut self.grad_support;
        support.resize(params.len(), None);
        let (value, correct) = self.graph.loss_and_grads(batch, objective, &mut mode, self.plan.span, |i, g| {
            support[i] = g.write_over(&mut params[i].grad, support[i]);
        })?;
        if !value.is_finite() {
            let epoch = self.step / self.clock.steps_per_epoch;
            return Err(RunError::NonFiniteLoss { value, step: self.step, epoch, span: self.techniques.blame_span });
        }
        optimizer::clip_gradients(&mut self.params, self.plan.train.clip_grad_norm);
        // The sparse layers' kept positions, with their gradients there unless clipping has
        // scaled `grad` since.
        let clipped = self.plan.train.clip_grad_norm.is_some();
        let held: Vec<_> = self
            .graph
            .sparse
            .iter()
            .map(|s| {
                s.active.as_ref().map(|sw| match sw.kept_grad() {
                    Some((index, values)) if !clipped => (index, Some(values)),
                    _ => (sw.kept(), None),
                })
            })
            .collect();
        let kept: Vec<Option<optimizer::Kept>> =
            held.iter().map(|k| k.as_ref().map(|(index, values)| (*index, values.as_ref().map(|v| &v[..])))).collect();
        optimizer::update(
            &mut self.params,
            &kept,
            &self.plan.train.optimizer,
            self.lr.at(self.step),
            self.step,
            &self.kernels,
            &mut self.update_scratch,
        )
        .map_err(super::jit::call_failed(self.plan.span))?;
        // Only `update_kept` is known to leave `grad` alone.
        for (support, kept) in self.grad_support.iter_mut().zip(&kept) {
            if kept.is_none() {
                *support = None;
            }
        }
        self.losses.push(value);
        self.step += 1;
        Ok((value, correct))
    }
}
