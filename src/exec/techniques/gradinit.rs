//! GradInit (Zhu et al., 2021) as ToST runs it (`LRsI/gradinit_utils.py`, README command):
//! before training, learn one scale `alpha_i` per parameter tensor so that the loss after one
//! optimizer step is small, then fold the scales into the weights. In: the trainer with its
//! masks in place. Out: rescaled weights (pruned weights stay exactly zero: a scale multiplies
//! a whole tensor).
//!
//! Each iteration draws training batches `b0, b1, b2`; `A = b0 + b1`, `B = b0 + b2`.
//! With `theta = alpha * w` (w the initial tensors) and `g` the masked gradient of the loss on A,
//! - if `|g| > gamma` (ToST: 1), a constraint step lowers `|g|`:
//!   `d|g|/d alpha_i = <H_A g/|g|, w_i>`;
//! - else the objective `J = L_B(theta - eta g/|g|) / eta` (the normalised SGD step of the
//!   README's `--gradinit-normalize-grad`) has
//!   `dJ/d alpha_i = <u, w_i>/eta - <H_A M (u - ĝ<ĝ,u>)/|g|, w_i>`, `u = grad L_B` at the
//!   stepped point, `M` the masks.
//!
//! The Hessian-vector products `H_A v` are central finite differences of two more backward
//! passes (`(g(theta + e v) - g(theta - e v)) / 2e`, `|e v| = 1e-3 max(|theta|, 1)`); dfdx has
//! no double backward, where PyTorch's `create_graph=True` differentiates exactly.
//! The scales take ToST's `RescaleAdam` steps: Adam (0.9, 0.999, 1e-8) on each scalar, its
//! gradient clipped to +-1 (`--gradinit-grad-clip 1`), constraint steps with their own first
//! moment, `alpha >= min_scale` for weights and batchnorm scales and `>= 0` for biases and
//! shifts; tensors that are zero at the start (biases) are left alone.
//!
//! Differences from the official code, on purpose: it runs GradInit on the dense network and
//! applies the mask afterwards; here the masked network is initialised, the one that trains,
//! and the lookahead step is masked like a `hard` update. The loss is plain cross-entropy (as
//! theirs); batchnorm uses batch statistics and its running statistics are restored after;
//! dropout is off (their `net.eval()`).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{epoch_order, DataSet};
use crate::diagnostics::Span;
use crate::exec::error::RunError;
use crate::exec::graph::{Batch, Mode, Objective};
use crate::exec::train::Trainer;
use crate::exec::Stream;
use crate::ir::plan::ParamKind;

/// GradInit's hyper-parameters; the recipe sets the first four, ToST's README the rest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub iters: usize,
    pub lr: f32,
    pub eta: f32,
    pub min_scale: f32,
    /// The gradient-norm constraint (`--gradinit-gamma 1`).
    pub gamma: f32,
    /// Per-scale gradient clipping (`--gradinit-grad-clip 1`).
    pub grad_clip: f32,
}

/// What one iteration computes at the current scales.
#[derive(Debug, Clone, PartialEq)]
pub enum Eval {
    /// `|g| > gamma`: the gradient norm and its derivative by the scales.
    Constraint { gnorm: f32, grad: Vec<f32> },
    /// The lookahead objective `J` and `dJ/d alpha`.
    Objective { j: f32, grad: Vec<f32> },
    /// A zero gradient: nothing to learn from these batches.
    Flat,
}

/// What a GradInit run did, for tests and the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Log {
    /// `J` at each objective iteration, before its step.
    pub objective: Vec<f32>,
    pub constraint_steps: usize,
    pub scales: Vec<f32>,
}

/// ToST's `RescaleAdam` over one scale per tensor.
struct ScaleAdam {
    alpha: Vec<f32>,
    min: Vec<f32>,
    live: Vec<bool>,
    m: Vec<f32>,
    m_constraint: Vec<f32>,
    v: Vec<f32>,
    steps: i32,
    constraint_steps: i32,
}

impl ScaleAdam {
    fn new(w0: &[Vec<f32>], kinds: &[ParamKind], min_scale: f32) -> ScaleAdam {
        let n = w0.len();
        let min = kinds
            .iter()
            .map(|k| match k {
                ParamKind::Weight | ParamKind::BnScale | ParamKind::Scale => min_scale,
                ParamKind::Bias | ParamKind::BnShift => 0.0,
            })
            .collect();
        let live = w0.iter().map(|w| w.iter().any(|x| *x != 0.0)).collect();
        ScaleAdam {
            alpha: vec![1.0; n],
            min,
            live,
            m: vec![0.0; n],
            m_constraint: vec![0.0; n],
            v: vec![0.0; n],
            steps: 0,
            constraint_steps: 0,
        }
    }

    fn step(&mut self, grad: &[f32], constraint: bool, s: &Settings) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        if constraint {
            self.constraint_steps += 1;
        } else {
            self.steps += 1;
        }
        for (i, g) in grad.iter().enumerate() {
            if !self.live[i] || self.alpha[i] == 0.0 {
                continue;
            }
            let g = g.clamp(-s.grad_clip, s.grad_clip);
            let (m, k) = if constraint {
                (&mut self.m_constraint[i], self.constraint_steps)
            } else {
                (&mut self.m[i], self.steps)
            };
            *m = b1 * *m + (1.0 - b1) * g;
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g * g;
            let bc1 = 1.0 - b1.powi(k);
            let bc2 = 1.0 - b2.powi(self.steps + self.constraint_steps);
            let update = s.lr / bc1 * *m / ((self.v[i] / bc2).sqrt() + eps);
            self.alpha[i] = (self.alpha[i] - update).max(self.min[i]);
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

fn norm(v: &[Vec<f32>]) -> f64 {
    v.iter().map(|t| dot(t, t)).sum::<f64>().sqrt()
}

/// `a + k b`, tensor by tensor.
fn axpy(a: &[Vec<f32>], k: f32, b: &[Vec<f32>]) -> Vec<Vec<f32>> {
    a.iter().zip(b).map(|(x, y)| x.iter().zip(y).map(|(p, q)| p + k * q).collect()).collect()
}

/// Training batches for GradInit from their own shuffles of the training split.
struct Batches<'d> {
    data: &'d DataSet,
    batch: usize,
    seed: u64,
    augment: Vec<crate::ir::plan::Augment>,
    rng: ChaCha8Rng,
    order: Vec<usize>,
    pos: usize,
    epoch: u64,
}

impl Batches<'_> {
    fn next(&mut self) -> Batch {
        if self.pos + self.batch > self.order.len() {
            // A domain of its own so GradInit's batches are not the training run's first ones.
            self.order = epoch_order(self.data.train.len, self.seed ^ 0x6772_6164_696e_6974, self.epoch);
            self.epoch += 1;
            self.pos = 0;
        }
        let idx = &self.order[self.pos..self.pos + self.batch];
        self.pos += self.batch;
        Batch::fill(&self.data.train, self.data.shape, idx, &self.augment, &mut self.rng)
    }
}

impl Trainer<'_> {
    /// Runs GradInit with settings `s` and folds the scales into the weights.
    pub(crate) fn gradinit(&mut self, s: Settings, span: Span) -> Result<(), RunError> {
        // A run cut short (`max_steps`, tests) cuts GradInit as short.
        let s = Settings { iters: self.opts.max_steps.map_or(s.iters, |m| s.iters.min(m as usize)), ..s };
        let rng = Stream::GradInit.rng(self.plan.seed);
        let mut batches = Batches {
            data: self.data,
            batch: self.plan.train.batch,
            seed: self.plan.seed,
            augment: self.plan.data.augment.clone(),
            rng,
            order: vec![],
            pos: 0,
            epoch: 0,
        };
        let log = self.gradinit_with(s, span, &mut || batches.next())?;
        if !self.opts.quiet {
            let (lo, hi) = log.scales.iter().fold((f32::INFINITY, 0.0f32), |(a, b), s| (a.min(*s), b.max(*s)));
            let lookahead = match (log.objective.first(), log.objective.last()) {
                (Some(a), Some(b)) => format!(", lookahead loss {a:.4} -> {b:.4}"),
                _ => String::new(),
            };
            eprintln!(
                "gradinit: {} iterations ({} on the gradient-norm constraint){lookahead}, scales {lo:.3} .. {hi:.3}",
                s.iters, log.constraint_steps
            );
        }
        Ok(())
    }

    /// GradInit with batches from `next`; returns its log after folding the scales in.
    pub(crate) fn gradinit_with(
        &mut self,
        s: Settings,
        span: Span,
        next: &mut dyn FnMut() -> Batch,
    ) -> Result<Log, RunError> {
        // Masks and effective weights of step 0; folding keeps them (a scale per tensor).
        self.load_weights()?;
        let saved_bn = self.graph.bn.clone();
        let result = self.learn_scales(s, span, next);
        self.graph.bn = saved_bn;
        let log = result?;
        for (p, a) in self.params.iter_mut().zip(&log.scales) {
            p.raw.iter_mut().for_each(|w| *w *= a);
        }
        self.load_weights()?;
        Ok(log)
    }

    fn learn_scales(&mut self, s: Settings, span: Span, next: &mut dyn FnMut() -> Batch) -> Result<Log, RunError> {
        let w0: Vec<Vec<f32>> = self.params.iter().map(|p| p.effective().to_vec()).collect();
        let kinds: Vec<ParamKind> = self.params.iter().map(|p| p.spec.kind).collect();
        let mut adam = ScaleAdam::new(&w0, &kinds, s.min_scale);
        let mut log = Log::default();
        for _ in 0..s.iters {
            let (b0, b1, b2) = (next(), next(), next());
            let (a, b) = (Batch::concat(&b0, &b1), Batch::concat(&b0, &b2));
            match self.gradinit_eval(&w0, &adam.alpha, &a, &b, &s, span)? {
                Eval::Constraint { grad, .. } => {
                    adam.step(&grad, true, &s);
                    log.constraint_steps += 1;
                }
                Eval::Objective { j, grad } => {
                    log.objective.push(j);
                    adam.step(&grad, false, &s);
                }
                Eval::Flat => {}
            }
        }
        log.scales = adam.alpha;
        Ok(log)
    }

    /// One GradInit evaluation at scales `alpha` over the initial tensors `w0` (see the module
    /// header for the formulas).
    pub(crate) fn gradinit_eval(
        &mut self,
        w0: &[Vec<f32>],
        alpha: &[f32],
        a: &Batch,
        b: &Batch,
        s: &Settings,
        span: Span,
    ) -> Result<Eval, RunError> {
        let theta: Vec<Vec<f32>> = w0.iter().zip(alpha).map(|(w, k)| w.iter().map(|x| x * k).collect()).collect();
        let (_, mut g) = self.loss_and_grads(&theta, a, span)?;
        self.mask(&mut g);
        let gnorm = norm(&g);
        if gnorm == 0.0 || !gnorm.is_finite() {
            return Ok(Eval::Flat);
        }
        let ghat: Vec<Vec<f32>> = g.iter().map(|t| t.iter().map(|x| (*x as f64 / gnorm) as f32).collect()).collect();
        let per_tensor = |v: &[Vec<f32>]| -> Vec<f64> { v.iter().zip(w0).map(|(x, w)| dot(x, w)).collect() };
        if gnorm > s.gamma as f64 {
            let hv = self.hessian_vector(&theta, &ghat, a, span)?;
            let grad = per_tensor(&hv).into_iter().map(|x| x as f32).collect();
            return Ok(Eval::Constraint { gnorm: gnorm as f32, grad });
        }
        let stepped = axpy(&theta, -s.eta, &ghat);
        let (lb, mut u) = self.loss_and_grads(&stepped, b, span)?;
        self.mask(&mut u);
        let c = ghat.iter().zip(&u).map(|(x, y)| dot(x, y)).sum::<f64>() as f32;
        let v: Vec<Vec<f32>> = u
            .iter()
            .zip(&ghat)
            .map(|(ut, gt)| ut.iter().zip(gt).map(|(x, y)| ((x - c * y) as f64 / gnorm) as f32).collect())
            .collect();
        let hv = self.hessian_vector(&theta, &v, a, span)?;
        let grad =
            per_tensor(&u).into_iter().zip(per_tensor(&hv)).map(|(uw, hw)| (uw / s.eta as f64 - hw) as f32).collect();
        Ok(Eval::Objective { j: lb / s.eta, grad })
    }

    /// Gradients of masked tensors are masked (the lookahead step is a `hard` one).
    fn mask(&self, g: &mut [Vec<f32>]) {
        for (t, p) in g.iter_mut().zip(&self.params) {
            if let Some(m) = p.mask() {
                t.iter_mut().zip(m).for_each(|(x, k)| *x *= k);
            }
        }
    }

    /// `H v` of the loss on `batch` at `theta` by central differences of the gradient.
    fn hessian_vector(
        &mut self,
        theta: &[Vec<f32>],
        v: &[Vec<f32>],
        batch: &Batch,
        span: Span,
    ) -> Result<Vec<Vec<f32>>, RunError> {
        let vn = norm(v);
        if vn == 0.0 {
            return Ok(v.to_vec());
        }
        let e = (1e-3 * norm(theta).max(1.0) / vn) as f32;
        let (_, up) = self.loss_and_grads(&axpy(theta, e, v), batch, span)?;
        let (_, down) = self.loss_and_grads(&axpy(theta, -e, v), batch, span)?;
        Ok(up.iter().zip(&down).map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y) / (2.0 * e)).collect()).collect())
    }

    /// Cross-entropy on `batch` with the parameters `theta`, and its gradient per tensor.
    fn loss_and_grads(
        &mut self,
        theta: &[Vec<f32>],
        batch: &Batch,
        span: Span,
    ) -> Result<(f32, Vec<Vec<f32>>), RunError> {
        let values: Vec<&[f32]> = theta.iter().map(|v| &v[..]).collect();
        self.graph.load(&values);
        // Dropout off (ToST's `net.eval()`), batch statistics on.
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut mode = Mode { train: true, dropout: false, rng: &mut rng, step: self.step };
        let mut out = vec![Vec::new(); theta.len()];
        let (value, _) =
            self.graph.loss_and_grads(batch.clone(), Objective::PLAIN, &mut mode, span, |i, g| out[i] = g.to_vec())?;
        if !value.is_finite() {
            return Err(RunError::NonFiniteLoss { value, step: self.step, epoch: 0, span });
        }
        Ok((value, out))
    }
}
