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
//! `prune_regrow` (SET / RigL) additionally swaps, every `every` steps until `until`, a fraction
//! of each tensor's live weights: the smallest by magnitude go, as many come back (random or by
//! gradient), starting at zero with zero momentum; the fraction is `drop * (1 + cos(pi t /
//! until)) / 2` (RigL's cosine annealing).

mod masks;
pub mod scores;

pub use masks::set_initial_masks;

use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use super::error::RunError;
use super::jit::{call_failed, StepKernels};
use super::params::ParamBuf;
use super::Stream;
use crate::diagnostics::Span;
use crate::ir::plan::{Clock, Growth, MaskMethod, Plan, Scope, Ste, Update};
use crate::kernels::KernelError;
use crate::sparsity::mask::{count_zeros, magnitude_masks};
use crate::sparsity::threshold::{kth_smallest_abs, rescale_rows, unscaled_threshold};
use crate::sparsity::{groups, zeros_for, Group, SparsitySchedule};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    Hard,
    Soft { ste: Ste, rescale: bool, sigma: bool },
}

/// SET / RigL's periodic drop-and-grow, resolved to steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Regrow {
    pub every: u64,
    pub drop: f64,
    pub grow: Growth,
    pub until: u64,
}

impl Regrow {
    /// Fraction of each tensor's live weights swapped before step `t` (0 when no swap is due).
    pub fn fraction(&self, t: u64) -> f64 {
        if t == 0 || self.every == 0 || !t.is_multiple_of(self.every) || t >= self.until {
            return 0.0;
        }
        self.drop * (1.0 + (std::f64::consts::PI * t as f64 / self.until as f64).cos()) / 2.0
    }
}

pub struct Sparsifier {
    pub rule: Rule,
    groups: Vec<Group>,
    schedule: SparsitySchedule,
    /// Zeros in place per group (`hard`); `None` forces the next `prepare` to recompute the
    /// group's mask by magnitude.
    applied: Vec<Option<usize>>,
    /// The mask method owns the masks (`lottery`: each round's mask is set by `lottery_prune`),
    /// so `prepare` leaves them as they are.
    fixed: bool,
    regrow: Option<Regrow>,
    /// Random growth (SET).
    rng: ChaCha8Rng,
    freeze_at: Option<u64>,
    frozen: bool,
    /// Per param, `raw * mask * scale` for ST-3's quantile when masks or sigma make it differ
    /// from `raw`; `None` when the quantile is taken over the raw weights directly.
    magnitudes: Option<Vec<Vec<f32>>>,
    /// The `sparsity` block, blamed if a kernel call fails.
    span: Span,
}

fn group_len(params: &[ParamBuf], g: &Group) -> usize {
    g.members.iter().map(|&i| params[i].raw.len()).sum()
}

impl Sparsifier {
    /// The update rule of `plan`; every mask starts all-ones ([`set_initial_masks`] sets them).
    pub fn new(plan: &Plan, clock: Clock) -> Sparsifier {
        let sp = &plan.sparsity;
        let (rule, scope, regrow) = match &sp.update {
            Update::Hard => (Rule::Hard, Scope::Global, None),
            Update::SoftThreshold { ste, rescale, scope, sigma, .. } => {
                (Rule::Soft { ste: *ste, rescale: *rescale, sigma: *sigma }, *scope, None)
            }
            Update::PruneRegrow { every, drop, grow, until } => {
                let until = until.map_or(clock.total_steps, |u| clock.at(u));
                let regrow = Regrow { every: clock.at(*every).max(1), drop: *drop, grow: *grow, until };
                (Rule::Hard, Scope::Global, Some(regrow))
            }
        };
        let schedule = SparsitySchedule::resolve(&sp.schedule, clock.steps_per_epoch, clock.total_steps);
        // ST-3's quantile buffers, one per param with effective weights (soft and masked).
        let magnitudes = match rule {
            Rule::Soft { sigma, .. } if sigma || sp.mask != MaskMethod::Dense => {
                Some(plan.model.params.iter().map(|p| vec![0.0; if p.masked { p.numel() } else { 0 }]).collect())
            }
            Rule::Soft { .. } | Rule::Hard => None,
        };
        let groups = groups(&plan.model.params, sp.target, scope);
        Sparsifier {
            rule,
            applied: vec![None; groups.len()],
            fixed: matches!(sp.mask, MaskMethod::Lottery { .. }),
            groups,
            schedule,
            regrow,
            rng: Stream::Regrowth.rng(plan.seed),
            freeze_at: sp.freeze_at.map(|t| clock.at(t)),
            frozen: false,
            magnitudes,
            span: sp.span,
        }
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
        for (gi, g) in self.groups.iter().enumerate() {
            self.applied[gi] = Some(g.members.iter().map(|&i| count_zeros(&params[i].mask)).sum());
        }
        Ok(())
    }

    /// Lottery round `round` of `rounds` (1-based): prunes each group by magnitude of the trained
    /// weights to `1 - (1 - rate)^round` of its weights (at most its target), or to its target in
    /// the last round, by setting the masks. Pruned weights are already zero, so they stay pruned.
    pub fn lottery_prune(&mut self, params: &mut [ParamBuf], round: usize, rounds: usize, rate: f64) {
        for g in &self.groups {
            let s = if round >= rounds { g.target } else { (1.0 - (1.0 - rate).powi(round as i32)).min(g.target) };
            let mut ps = g.members_mut(params);
            let n: usize = ps.iter().map(|p| p.raw.len()).sum();
            magnitude_group(&mut ps, zeros_for(s, n));
        }
    }

    /// Target sparsity of each masked param's group after `t` steps, by param index.
    pub fn targets(&self, t: u64) -> Vec<(usize, f64)> {
        let mut out: Vec<(usize, f64)> = self
            .groups
            .iter()
            .flat_map(|g| {
                let s = if self.frozen { g.target } else { self.schedule.sparsity(t, g.target) };
                g.members.iter().map(move |&i| (i, s))
            })
            .collect();
        out.sort_by_key(|(i, _)| *i);
        out
    }

    /// Brings masks / effective weights to the schedule's sparsity after `t` steps.
    pub fn prepare(&mut self, t: u64, params: &mut [ParamBuf], kernels: &StepKernels) -> Result<(), RunError> {
        if self.frozen {
            return Ok(());
        }
        let call = call_failed(self.span);
        let freeze = self.freeze_at.is_some_and(|f| t >= f);
        let sparsity = |g: &Group| if freeze { g.target } else { self.schedule.sparsity(t, g.target) };
        match self.rule {
            Rule::Hard if self.fixed => {}
            Rule::Hard => {
                for (gi, g) in self.groups.iter().enumerate() {
                    let n = group_len(params, g);
                    let k = zeros_for(sparsity(g), n);
                    let mut ps = g.members_mut(params);
                    match self.applied[gi] {
                        Some(cur) if cur == k => continue,
                        Some(cur) if k < cur => grow_by_gradient(&mut ps, cur - k),
                        _ => magnitude_group(&mut ps, k),
                    }
                    for q in ps {
                        kernels.remask(q).map_err(&call)?;
                    }
                    self.applied[gi] = Some(k);
                }
                if let Some(r) = self.regrow {
                    let f = r.fraction(t);
                    if f > 0.0 {
                        for p in params.iter_mut().filter(|p| p.spec.masked) {
                            swap(p, f, r.grow, &mut self.rng, kernels).map_err(&call)?;
                        }
                    }
                }
            }
            Rule::Soft { rescale, sigma, .. } => {
                for g in &self.groups {
                    let magnitudes = self.magnitudes.as_mut().map(|m| g.members_mut(m));
                    let s = sparsity(g);
                    let mut ps = g.members_mut(params);
                    soft_group(&mut ps, magnitudes, s, rescale, sigma, kernels).map_err(&call)?;
                }
            }
        }
        if freeze {
            self.freeze(params, kernels).map_err(&call)?;
        }
        Ok(())
    }

    /// ST-3's `fix()`: fold the threshold into the raw weights and keep the mask from now on.
    fn freeze(&mut self, params: &mut [ParamBuf], kernels: &StepKernels) -> Result<(), KernelError> {
        if let Rule::Soft { .. } = self.rule {
            for p in params.iter_mut().filter(|p| !p.eff.is_empty()) {
                p.raw = std::mem::take(&mut p.eff);
                p.mask.iter_mut().zip(&p.raw).for_each(|(m, w)| *m = if *w == 0.0 { 0.0 } else { *m });
                p.row_scale.clear();
                kernels.remask(p)?;
            }
        }
        self.rule = Rule::Hard;
        self.frozen = true;
        self.magnitudes = None;
        Ok(())
    }
}

/// Revives the `m` pruned positions of the group with the largest `|grad|` (the last step's
/// dense gradient); they start at zero (pruned weights and momentum are already zero).
fn grow_by_gradient(ps: &mut [&mut ParamBuf], m: usize) {
    let scores: Vec<Vec<f32>> = ps
        .iter()
        .map(|p| p.mask.iter().zip(&p.grad).map(|(k, g)| if *k != 0.0 { f32::INFINITY } else { g.abs() }).collect())
        .collect();
    let n: usize = scores.iter().map(Vec::len).sum();
    let zeros = n - ps.iter().map(|p| p.mask.len() - count_zeros(&p.mask)).sum::<usize>() - m;
    let refs: Vec<&[f32]> = scores.iter().map(|s| &s[..]).collect();
    let mut masks: Vec<&mut [f32]> = ps.iter_mut().map(|p| &mut p.mask[..]).collect();
    magnitude_masks(&refs, zeros, &mut masks);
}

/// One SET / RigL swap of `p`: the `round(f * live)` smallest live weights are pruned, then as
/// many pruned positions (the just-pruned included) are revived at zero.
fn swap(
    p: &mut ParamBuf,
    f: f64,
    grow: Growth,
    rng: &mut ChaCha8Rng,
    kernels: &StepKernels,
) -> Result<(), KernelError> {
    let live = p.mask.len() - count_zeros(&p.mask);
    let m = (f * live as f64).round() as usize;
    if m == 0 {
        return Ok(());
    }
    // Live weights rank by magnitude (never below the smallest positive float, so a live zero
    // weight is not confused with a pruned one); pruned ones stay pruned.
    let keyed: Vec<f32> =
        p.raw.iter().zip(&p.mask).map(|(w, k)| if *k != 0.0 { w.abs().max(f32::from_bits(1)) } else { 0.0 }).collect();
    let zeros = p.mask.len() - live + m;
    magnitude_masks(&[&keyed], zeros, &mut [&mut p.mask[..]]);
    kernels.remask(p)?;
    match grow {
        Growth::Gradient => grow_by_gradient(&mut [p], m),
        Growth::Random => {
            let pruned: Vec<usize> = (0..p.mask.len()).filter(|&i| p.mask[i] == 0.0).collect();
            for j in sample(rng, pruned.len(), m.min(pruned.len())) {
                p.mask[pruned[j]] = 1.0;
            }
        }
    }
    Ok(())
}

fn magnitude_group(ps: &mut [&mut ParamBuf], k: usize) {
    let (ws, mut ms): (Vec<&[f32]>, Vec<&mut [f32]>) = ps.iter_mut().map(|p| (&p.raw[..], &mut p.mask[..])).unzip();
    magnitude_masks(&ws, k, &mut ms);
}

/// One threshold for the group at sparsity `s`; ST-3-sigma divides each layer's magnitudes
/// by `sigma_l = 1/sqrt(sum of its dims)` (stthree's `l1std`) before taking the quantile.
/// `magnitudes` (one buffer per member) receive `raw * mask * scale` when the quantile is not
/// over the raw weights themselves.
fn soft_group(
    ps: &mut [&mut ParamBuf],
    magnitudes: Option<Vec<&mut Vec<f32>>>,
    s: f64,
    rescale: bool,
    sigma: bool,
    kernels: &StepKernels,
) -> Result<(), KernelError> {
    let n: usize = ps.iter().map(|p| p.raw.len()).sum();
    let scale = |p: &ParamBuf| {
        if sigma {
            (p.spec.shape.iter().sum::<usize>() as f32).sqrt()
        } else {
            1.0
        }
    };
    let k = zeros_for(s, n);
    let tau = match magnitudes {
        Some(mut bufs) => {
            for (p, buf) in ps.iter_mut().zip(bufs.iter_mut()) {
                kernels.masked_scaled(p, scale(p), buf)?;
            }
            kth_smallest_abs(&bufs.iter().map(|b| &b[..]).collect::<Vec<_>>(), k)
        }
        None => kth_smallest_abs(&ps.iter().map(|p| &p.raw[..]).collect::<Vec<_>>(), k),
    };
    for p in ps.iter_mut() {
        let tau_l = unscaled_threshold(tau, scale(p));
        if rescale {
            rescale_rows(&p.raw, &p.mask, tau_l, p.cols, &mut p.row_scale);
        }
        kernels.effective(p, tau_l, rescale)?;
    }
    Ok(())
}
