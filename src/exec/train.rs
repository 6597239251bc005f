//! The training loop. In: plan, data, options. Out: trained buffers, metrics lines, summary.
//! Each step: sparsify (masks or thresholds), write effective weights into the dfdx
//! parameter tensors, forward, cross-entropy, backward, read gradients, clip, update (one JIT
//! kernel call per parameter).

use std::io::IsTerminal;
use std::time::Instant;

use dfdx::prelude::*;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand_chacha::ChaCha8Rng;

use super::error::RunError;
use super::jit::{call_failed, optimizer_scalars, StepKernels};
use super::lr::Lr;
use super::net::{Mode, Net};
use super::ops::loss::cross_entropy;
use super::ops::norm::BnStats;
use super::params::{self, ParamBuf};
use super::prune::{self, Probe};
use super::sparsify::Sparsifier;
use super::{RunOptions, Stream};
use crate::data::{epoch_order, fill_batch, DataSet};
use crate::diagnostics::Span;
use crate::ir::plan::{MaskMethod, Optimizer, ParamKind, Plan, SmoothingStyle, Technique};
use crate::report::{Metrics, RunDir, RunSummary};

/// Every param's raw weights and every batchnorm layer's running statistics at one step.
pub(super) type Snapshot = (Vec<Vec<f32>>, Vec<(String, BnStats)>);

pub struct Trainer<'a> {
    pub(super) plan: &'a Plan,
    pub(super) data: &'a DataSet,
    pub(super) opts: &'a RunOptions,
    pub(super) threads: usize,
    pub(super) dev: Cpu,
    pub(super) net: Net,
    pub(super) params: Vec<ParamBuf>,
    pub(super) sparsifier: Sparsifier,
    /// Compiled once per run; their code is freed when the trainer is dropped.
    kernels: StepKernels,
    lr: Lr,
    pub(super) steps_per_epoch: u64,
    pub(super) total_steps: u64,
    pub(super) step: u64,
    rng_augment: ChaCha8Rng,
    rng_dropout: ChaCha8Rng,
    smoothing: Option<(f32, SmoothingStyle)>,
    pub(super) losses: Vec<f32>,
    /// Lottery: the round being trained (1-based; `None` in the final training), the step whose
    /// weights rounds rewind to, and those weights with the batchnorm statistics once reached.
    pub(super) round: Option<usize>,
    pub(super) rewind_step: u64,
    pub(super) rewind_snapshot: Option<Snapshot>,
    pub(super) rundir: RunDir,
    pub(super) started: Instant,
}

/// Rejects what does not fit the data; returns the label smoothing to apply.
fn check(plan: &Plan, data: &DataSet) -> Result<Option<(f32, SmoothingStyle)>, RunError> {
    let smoothing = plan.techniques.iter().find_map(|t| match t {
        Technique::LabelSmoothing { alpha, style, .. } => Some((*alpha as f32, *style)),
        _ => None,
    });
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
    Ok(smoothing)
}

impl<'a> Trainer<'a> {
    pub fn new(
        plan: &'a Plan,
        data: &'a DataSet,
        opts: &'a RunOptions,
        threads: usize,
    ) -> Result<Trainer<'a>, RunError> {
        let smoothing = check(plan, data)?;
        let steps_per_epoch = (data.train.len / plan.train.batch) as u64;
        let total_steps = steps_per_epoch * plan.train.epochs;
        let soft = matches!(plan.sparsity.update, crate::ir::plan::Update::SoftThreshold { .. });
        let adam = matches!(plan.train.optimizer, Optimizer::Adam { .. });
        let mut params = params::init(&plan.model.params, plan.seed, soft, adam);
        super::tost::fill_ghost_init(plan, &mut params);
        let kernels = StepKernels::compile(plan)?;
        let dev = Cpu::default();
        let clock = super::Clock { steps_per_epoch, total_steps };
        let mut net = Net::build(&plan.model, &plan.techniques, clock, &dev)?;
        let mut sparsifier = Sparsifier::new(plan, clock, &mut params, &kernels)?;
        let mut probe = Probe { net: &mut net, dev: &dev, data, batch: plan.train.batch, seed: plan.seed };
        if let Some(masks) = prune::initial_masks(plan, &mut probe, &params, &sparsifier.initial_zeros(&params))? {
            sparsifier.set_masks(&mut params, masks, &kernels)?;
        }
        let lr = Lr::new(&plan.train.lr, plan.train.optimizer.lr(), steps_per_epoch, total_steps);
        let dir = opts.out_dir.clone().unwrap_or_else(|| plan.output.dir.clone().into());
        let rundir = RunDir::create(&dir).map_err(RunError::io(&dir))?;
        Ok(Trainer {
            plan,
            data,
            opts,
            threads,
            dev,
            net,
            params,
            sparsifier,
            kernels,
            lr,
            steps_per_epoch,
            total_steps,
            step: 0,
            rng_augment: Stream::Augment.rng(plan.seed),
            rng_dropout: Stream::Dropout.rng(plan.seed),
            smoothing,
            losses: Vec::new(),
            round: None,
            rewind_step: 0,
            rewind_snapshot: None,
            rundir,
            started: Instant::now(),
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

    fn step_limit(&self) -> u64 {
        self.opts.max_steps.map_or(self.total_steps, |m| m.min(self.total_steps))
    }

    pub fn run(mut self) -> Result<RunSummary, RunError> {
        self.init_techniques()?;
        if let MaskMethod::Lottery { rounds, rate, rewind } = self.plan.sparsity.mask {
            // A rewind point past the run rewinds to the last step's weights.
            self.rewind_step = rewind.to_steps(self.steps_per_epoch, self.total_steps).min(self.step_limit() - 1);
            for round in 1..=rounds {
                self.round = Some(round);
                self.train_epochs()?;
                self.sparsifier.lottery_prune(&mut self.params, round, rounds, rate);
                self.rewind()?;
            }
            self.round = None;
        }
        let epochs_run = self.train_epochs()?;
        self.finish(epochs_run)
    }

    /// Lottery: back to the weights (times the new masks) and batchnorm statistics stored at the rewind
    /// step, optimizer state and random streams reset, so the next round trains the sparse
    /// network from that point exactly as the dense one went through it.
    pub(super) fn rewind(&mut self) -> Result<(), RunError> {
        let Some((weights, bn)) = self.rewind_snapshot.take() else {
            return Err(RunError::Plan {
                msg: "the lottery rewind point was not reached".into(),
                span: self.plan.sparsity.span,
            });
        };
        for (p, w) in self.params.iter_mut().zip(weights) {
            p.raw = w;
            p.raw.iter_mut().zip(&p.mask).for_each(|(w, m)| *w *= m);
            p.m1.fill(0.0);
            p.m2.fill(0.0);
        }
        self.net.bn = bn;
        self.step = 0;
        self.losses.clear();
        (self.rng_augment, self.rng_dropout) =
            (Stream::Augment.rng(self.plan.seed), Stream::Dropout.rng(self.plan.seed));
        Ok(())
    }

    /// The whole training schedule once; returns the epochs run.
    pub(super) fn train_epochs(&mut self) -> Result<u64, RunError> {
        let pb = self.progress_bar();
        let (batch, n) = (self.plan.train.batch, self.data.train.len);
        let mut epochs_run = 0;
        for epoch in 0..self.plan.train.epochs {
            if self.step >= self.step_limit() {
                break;
            }
            let order = epoch_order(n, self.plan.seed, epoch);
            let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
            for idx in order.chunks_exact(batch) {
                if self.step >= self.step_limit() {
                    break;
                }
                let (loss, ok) = self.train_step(idx)?;
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
            }
            if let Some(every) = self.plan.output.checkpoint_every {
                if (epoch + 1).is_multiple_of(every.max(1)) && !last {
                    self.load_weights()?;
                    self.save_weights(&format!("weights-epoch{}.safetensors", epoch + 1))?;
                }
            }
        }
        pb.finish_and_clear();
        Ok(epochs_run)
    }

    /// Evaluation line: accuracy on validation (or test when there is none).
    fn metrics(&mut self, epoch: u64, train_loss: f64, train_accuracy: f64) -> Result<Metrics, RunError> {
        let (val_accuracy, test_accuracy) = match &self.data.val {
            Some(val) => (Some(self.evaluate(val)?.0), None),
            None => (None, Some(self.evaluate(&self.data.test)?.0)),
        };
        Ok(Metrics {
            round: self.round,
            epoch,
            step: self.step,
            train_loss,
            train_accuracy,
            val_accuracy,
            test_accuracy,
            sparsity: self.realised().0,
            lr: self.lr.at(self.step.saturating_sub(1)),
            seconds: self.started.elapsed().as_secs_f64(),
        })
    }

    /// Brings masks/thresholds to the current step and writes effective weights into dfdx.
    pub(super) fn load_weights(&mut self) -> Result<(), RunError> {
        self.sparsifier.prepare(self.step, &mut self.params, &self.kernels)?;
        for (buf, t) in self.params.iter().zip(self.net.params.iter_mut()) {
            t.copy_from(buf.effective());
        }
        Ok(())
    }

    /// One optimizer step on the examples `idx`; returns the loss and the number correct.
    pub(super) fn train_step(&mut self, idx: &[usize]) -> Result<(f32, usize), RunError> {
        self.load_weights()?;
        if self.round.is_some() && self.step == self.rewind_step {
            self.rewind_snapshot = Some((self.params.iter().map(|p| p.raw.clone()).collect(), self.net.bn.clone()));
        }
        let (shape, b) = (self.data.shape, idx.len());
        let n: usize = shape.iter().product();
        let (mut images, mut labels) = (vec![0.0; b * n], vec![0usize; b]);
        let augment = &self.plan.data.augment;
        fill_batch(&self.data.train, shape, idx, augment, &mut self.rng_augment, &mut images, &mut labels);
        let x = self.dev.tensor_from_vec(images, (b, n)).leaky_traced();
        let logits = self.net.forward(x, &mut Mode { train: true, rng: &mut self.rng_dropout, step: self.step });
        let (loss, correct) = cross_entropy(logits, &labels, self.smoothing);
        let value = loss.array();
        if !value.is_finite() {
            let epoch = self.step / self.steps_per_epoch;
            return Err(RunError::NonFiniteLoss { value, step: self.step, epoch, span: self.blame_span() });
        }
        let mut grads = loss.backward();
        for (buf, t) in self.params.iter_mut().zip(&self.net.params) {
            let g = t
                .grad(&mut grads)
                .map_err(|e| RunError::Plan { msg: format!("gradient: {e:?}"), span: self.plan.span })?;
            buf.grad.copy_from_slice(g);
        }
        drop(grads);
        self.clip_gradients();
        self.update()?;
        self.losses.push(value);
        self.step += 1;
        Ok((value, correct))
    }

    /// The recipe line to blame for a diverging loss: a technique if any (they change the
    /// loss landscape), else the optimizer statement (its learning rate).
    fn blame_span(&self) -> Span {
        self.plan
            .techniques
            .iter()
            .map(|t| match t {
                Technique::GhostNeurons { span, .. }
                | Technique::GhostSkip { span, .. }
                | Technique::LabelSmoothing { span, .. }
                | Technique::GradInit { span, .. }
                | Technique::DyRelu { span, .. }
                | Technique::WeightSharing { span, .. } => *span,
            })
            .next()
            .unwrap_or(self.plan.train.span)
    }

    fn clip_gradients(&mut self) {
        let Some(max) = self.plan.train.clip_grad_norm else {
            return;
        };
        let norm = self.params.iter().flat_map(|p| &p.grad).map(|g| (*g as f64) * (*g as f64)).sum::<f64>().sqrt();
        if norm > max {
            let k = (max / (norm + 1e-6)) as f32;
            self.params.iter_mut().flat_map(|p| &mut p.grad).for_each(|g| *g *= k);
        }
    }

    /// One kernel call per parameter; weight decay applies to weights only.
    fn update(&mut self) -> Result<(), RunError> {
        let lr = self.lr.at(self.step) as f32;
        let optimizer = &self.plan.train.optimizer;
        let weight_decay = match *optimizer {
            Optimizer::Sgd { weight_decay, .. } | Optimizer::Adam { weight_decay, .. } => weight_decay as f32,
        };
        let weights = optimizer_scalars(optimizer, lr, self.step, weight_decay);
        let others = optimizer_scalars(optimizer, lr, self.step, 0.0);
        for p in &mut self.params {
            let scalars = if p.spec.kind == ParamKind::Weight { &weights } else { &others };
            self.kernels.update(p, scalars).map_err(call_failed(self.plan.span))?;
        }
        Ok(())
    }
}
