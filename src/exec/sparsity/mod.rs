//! Sparsity state in one place. `masks` makes the initial masks (one function, one `match`
//! over the mask methods), `scores` scores the network for SNIP, GraSP and SynFlow, and
//! [`Sparsifier`] applies the update rule before each step. In: the plan's `Sparsity`, the
//! step, the [`ParamBuf`]s. Out: masks, re-masked weights and optimizer state
//! (`hard`, `prune_regrow`), or thresholds and effective weights (`soft_threshold`). The math is
//! in `crate::sparsity`, the elementwise passes are the run's JIT kernels ([`StepKernels`]); this
//! file only walks the groups.
//!
//! Under `hard` a group's mask follows its scheduled number of zeros: when the schedule asks
//! for more zeros the smallest live weights go (magnitude); when it asks for fewer (EAST's cyclic
//! density rising) the pruned positions with the largest last gradient come back, at zero.
//! The update rules are policies behind one interface ([`rules::UpdateRule`]): `Scheduled`
//! (`hard`, any schedule), `PruneRegrow` (SET / RigL), `Fixed` (the lottery owns the masks),
//! `SoftThreshold` (ST-3) and `Frozen` (after `freeze at`).
//! `prune_regrow` (SET / RigL) additionally swaps, every `every` steps until `until`, a fraction
//! of each tensor's live weights: the smallest by magnitude go, as many come back (random or by
//! gradient), starting at zero with zero momentum; the fraction is `drop * (1 + cos(pi t /
//! until)) / 2` (RigL's cosine annealing).

mod masks;
mod rules;
pub mod scores;

pub use masks::set_initial_masks;
pub use rules::{Regrow, RuleState};

use rules::{magnitude_group, Fixed, Frozen, PruneRegrow, Scheduled, SoftThreshold, UpdateRule};

use super::error::RunError;
use super::jit::{call_failed, StepKernels};
use super::params::ParamBuf;
use super::Stream;
use crate::diagnostics::Span;
use crate::ir::plan::{Clock, MaskMethod, Plan, Scope, Update};
use crate::sparsity::mask::count_zeros;
use crate::sparsity::{groups, zeros_for, Group, SparsitySchedule};

pub struct Sparsifier {
    groups: Vec<Group>,
    schedule: SparsitySchedule,
    rule: Box<dyn UpdateRule>,
    freeze_at: Option<u64>,
    /// The `sparsity` block, blamed if a kernel call fails.
    span: Span,
    /// Counts the changes of any mask: the graph's sparse layouts are rebuilt when it moves.
    generation: u64,
    /// The step `prepare` last ran for: an evaluation and the next training step both load
    /// the weights at the same step, and a SET/RigL swap must happen once.
    prepared: Option<u64>,
}

/// Weights in group `g`.
fn group_len(params: &[ParamBuf], g: &Group) -> usize {
    g.members.iter().map(|&i| params[i].raw.len()).sum()
}

impl Sparsifier {
    /// The update rule of `plan`; every mask starts all-ones ([`set_initial_masks`] sets them).
    pub fn new(plan: &Plan, clock: Clock) -> Sparsifier {
        let sp = &plan.sparsity;
        let scope = match &sp.update {
            Update::SoftThreshold { scope, .. } => *scope,
            Update::Hard | Update::PruneRegrow { .. } => Scope::Global,
        };
        let groups = groups(&plan.model.params, sp.target, scope);
        let scheduled = Scheduled { applied: vec![None; groups.len()] };
        let rule: Box<dyn UpdateRule> = match (&sp.update, &sp.mask) {
            (Update::SoftThreshold { rescale, sigma, .. }, mask) => {
                // ST-3's quantile buffers, one per masked param, when masks or sigma make the
                // quantile's values differ from the raw weights.
                let magnitudes = (*sigma || *mask != MaskMethod::Dense).then(|| {
                    plan.model.params.iter().map(|p| vec![0.0; if p.masked { p.numel() } else { 0 }]).collect()
                });
                Box::new(SoftThreshold { rescale: *rescale, sigma: *sigma, magnitudes })
            }
            (Update::Hard | Update::PruneRegrow { .. }, MaskMethod::Lottery { .. }) => Box::new(Fixed),
            (Update::Hard, _) => Box::new(scheduled),
            (Update::PruneRegrow { every, drop, grow, until }, _) => {
                let until = until.map_or(clock.total_steps, |u| clock.at(u));
                let regrow = Regrow { every: clock.at(*every).max(1), drop: *drop, grow: *grow, until };
                Box::new(PruneRegrow { scheduled, regrow, rng: Stream::Regrowth.rng(plan.seed) })
            }
        };
        Sparsifier {
            groups,
            schedule: SparsitySchedule::resolve(&sp.schedule, clock.steps_per_epoch, clock.total_steps),
            rule,
            freeze_at: sp.freeze_at.map(|t| clock.at(t)),
            span: sp.span,
            generation: 0,
            prepared: None,
        }
    }

    /// Changes whenever a mask (or under a soft rule, the effective weights' zeros) may have.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the weight gradient of step `t` must be dense: the soft threshold's
    /// straight-through estimator trains every raw weight, and growth by gradient before step
    /// `t + 1` ranks pruned positions by it.
    pub fn needs_dense_grad(&self, t: u64, params: &[ParamBuf]) -> bool {
        if self.rule.is_frozen() {
            return false;
        }
        if self.rule.is_soft() {
            return true;
        }
        let next = t + 1;
        let freeze = self.freeze_at.is_some_and(|f| next >= f);
        let sparsity: Vec<f64> = self
            .groups
            .iter()
            .map(|g| if freeze { g.target } else { self.schedule.sparsity(next, g.target) })
            .collect();
        self.rule.grows_by_gradient(&self.groups, &sparsity, next, params)
    }

    /// Whether effective weights come from a soft threshold (then the realised mask is where
    /// they survive).
    pub fn is_soft(&self) -> bool {
        self.rule.is_soft()
    }

    /// Each group with the number of zeros the schedule asks for at step 0.
    pub fn initial_zeros(&self, params: &[ParamBuf]) -> Vec<(Group, usize)> {
        self.groups
            .iter()
            .map(|g| (g.clone(), zeros_for(self.schedule.sparsity(0, g.target), group_len(params, g))))
            .collect()
    }

    /// Installs masks found from the network (one per param, empty for unmasked ones) and
    /// re-masks weights; the schedule's later changes start from them.
    pub fn set_masks(
        &mut self,
        params: &mut [ParamBuf],
        masks: Vec<Vec<f32>>,
        kernels: &StepKernels,
    ) -> Result<(), RunError> {
        for (p, m) in params.iter_mut().zip(masks) {
            if p.spec.masked {
                p.mask = m;
                kernels.remask(p).map_err(call_failed(self.span))?;
            }
        }
        let zeros = self.groups.iter().map(|g| Some(g.members.iter().map(|&i| count_zeros(&params[i].mask)).sum()));
        self.note_zeros(zeros.collect());
        Ok(())
    }

    /// The zeros each group holds after masks were set in place (`None`: unknown).
    pub fn note_zeros(&mut self, zeros: Vec<Option<usize>>) {
        self.generation += 1;
        self.prepared = None;
        self.rule.masks_set(zeros);
    }

    /// Lottery round `round` of `rounds` (1-based): prunes each group by magnitude of the trained
    /// weights to `1 - (1 - rate)^round` of its weights (at most its target), or to its target in
    /// the last round, by setting the masks. Pruned weights are already zero, so they stay pruned.
    pub fn lottery_prune(&mut self, params: &mut [ParamBuf], round: usize, rounds: usize, rate: f64) {
        self.generation += 1;
        self.prepared = None;
        for g in &self.groups {
            let s = if round >= rounds { g.target } else { (1.0 - (1.0 - rate).powi(round as i32)).min(g.target) };
            let mut ps = g.members_mut(params);
            let n: usize = ps.iter().map(|p| p.raw.len()).sum();
            magnitude_group(&mut ps, zeros_for(s, n));
        }
    }

    /// The update rule's state, for a checkpoint.
    pub fn save(&self) -> RuleState {
        RuleState { prepared: self.prepared, ..self.rule.save() }
    }

    /// Back to a checkpoint's state (past `freeze at`, the rule is [`Frozen`]).
    pub fn load(&mut self, state: &RuleState) {
        if state.frozen {
            self.rule = Box::new(Frozen);
        }
        self.rule.load(state);
        self.prepared = state.prepared;
    }

    /// Target sparsity of each masked param's group after `t` steps, by param index.
    pub fn targets(&self, t: u64) -> Vec<(usize, f64)> {
        let frozen = self.rule.is_frozen();
        let mut out: Vec<(usize, f64)> = self
            .groups
            .iter()
            .flat_map(|g| {
                let s = if frozen { g.target } else { self.schedule.sparsity(t, g.target) };
                g.members.iter().map(move |&i| (i, s))
            })
            .collect();
        out.sort_by_key(|(i, _)| *i);
        out
    }

    /// Brings masks / effective weights to the schedule's sparsity after `t` steps.
    pub fn prepare(&mut self, t: u64, params: &mut [ParamBuf], kernels: &StepKernels) -> Result<(), RunError> {
        if self.rule.is_frozen() || self.prepared == Some(t) {
            return Ok(());
        }
        self.prepared = Some(t);
        let call = call_failed(self.span);
        let freeze = self.freeze_at.is_some_and(|f| t >= f);
        let sparsity: Vec<f64> =
            self.groups.iter().map(|g| if freeze { g.target } else { self.schedule.sparsity(t, g.target) }).collect();
        if self.rule.prepare(&self.groups, &sparsity, t, params, kernels).map_err(&call)? {
            self.generation += 1;
        }
        if freeze {
            self.rule.freeze(params, kernels).map_err(&call)?;
            self.rule = Box::new(Frozen);
            self.generation += 1;
        }
        Ok(())
    }
}
