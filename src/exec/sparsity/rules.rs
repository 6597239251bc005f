//! The update rules, one policy each behind [`UpdateRule`]. In: the groups, each group's
//! scheduled sparsity at step `t`, the params. Out: masks, re-masked weights and optimizer state,
//! or thresholds and effective weights.

use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use crate::exec::jit::StepKernels;
use crate::exec::params::ParamBuf;
use crate::ir::plan::Growth;
use crate::kernels::KernelError;
use crate::sparsity::mask::{count_zeros, magnitude_masks};
use crate::sparsity::threshold::{kth_smallest_abs, rescale_rows, unscaled_threshold};
use crate::sparsity::{zeros_for, Group};

/// What a sparsity update rule does before each step.
pub trait UpdateRule {
    /// Brings group `i` of `groups` to sparsity `sparsity[i]` at step `t`; returns whether a
    /// mask (or, for soft rules, the effective weights' zeros) may have changed.
    fn prepare(
        &mut self,
        groups: &[Group],
        sparsity: &[f64],
        t: u64,
        params: &mut [ParamBuf],
        kernels: &StepKernels,
    ) -> Result<bool, KernelError>;

    /// Whether `prepare` at step `next` grows weights by the previous step's gradient at
    /// pruned positions (so that step needs the dense weight gradient). `sparsity` is each
    /// group's scheduled sparsity at `next`.
    fn grows_by_gradient(&self, _groups: &[Group], _sparsity: &[f64], _next: u64, _params: &[ParamBuf]) -> bool {
        false
    }

    /// Masks were set from outside (the initial masks): the zeros each group now holds.
    fn masks_set(&mut self, _zeros: Vec<Option<usize>>) {}

    /// Makes the current sparsity permanent (`freeze at`); the rule is then [`Frozen`].
    fn freeze(&mut self, _params: &mut [ParamBuf], _kernels: &StepKernels) -> Result<(), KernelError> {
        Ok(())
    }

    fn is_soft(&self) -> bool {
        false
    }

    fn is_frozen(&self) -> bool {
        false
    }

    /// What the next steps depend on beyond the params (a checkpoint's share).
    fn save(&self) -> RuleState {
        RuleState::default()
    }

    /// Back to a state [`UpdateRule::save`] returned.
    fn load(&mut self, _state: &RuleState) {}
}

/// An update rule's own state in a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RuleState {
    /// `Scheduled`'s zeros in place per group.
    pub applied: Option<Vec<Option<usize>>>,
    /// SET's random stream: its word position (a `u128` as text).
    pub regrowth: Option<String>,
    /// Past `freeze at`.
    pub frozen: bool,
    /// The step the rule was last brought to (it runs once per step).
    #[serde(default)]
    pub prepared: Option<u64>,
}

/// `hard` under any schedule: each group's mask follows its scheduled number of zeros. When the
/// schedule asks for more zeros the smallest live weights go (magnitude); when it asks for
/// fewer (EAST's cyclic density rising) the pruned positions with the largest last gradient come
/// back, at zero.
pub struct Scheduled {
    /// Zeros in place per group; `None` makes the next `prepare` recompute the group's mask by
    /// magnitude.
    pub applied: Vec<Option<usize>>,
}

impl UpdateRule for Scheduled {
    fn prepare(
        &mut self,
        groups: &[Group],
        sparsity: &[f64],
        _t: u64,
        params: &mut [ParamBuf],
        kernels: &StepKernels,
    ) -> Result<bool, KernelError> {
        let mut changed = false;
        for (gi, g) in groups.iter().enumerate() {
            let k = zeros_for(sparsity[gi], super::group_len(params, g));
            let mut ps = g.members_mut(params);
            match self.applied[gi] {
                Some(cur) if cur == k => continue,
                Some(cur) if k < cur => grow_by_gradient(&mut ps, cur - k),
                _ => magnitude_group(&mut ps, k),
            }
            for q in ps {
                kernels.remask(q)?;
            }
            self.applied[gi] = Some(k);
            changed = true;
        }
        Ok(changed)
    }

    fn masks_set(&mut self, zeros: Vec<Option<usize>>) {
        self.applied = zeros;
    }

    fn grows_by_gradient(&self, groups: &[Group], sparsity: &[f64], _next: u64, params: &[ParamBuf]) -> bool {
        groups
            .iter()
            .zip(sparsity)
            .zip(&self.applied)
            .any(|((g, s), cur)| cur.is_some_and(|cur| zeros_for(*s, super::group_len(params, g)) < cur))
    }

    fn save(&self) -> RuleState {
        RuleState { applied: Some(self.applied.clone()), ..RuleState::default() }
    }

    fn load(&mut self, state: &RuleState) {
        if let Some(a) = &state.applied {
            self.applied = a.clone();
        }
    }
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

/// `prune_regrow` (SET / RigL): the schedule as [`Scheduled`], then every `every` steps until
/// `until` each tensor swaps a fraction of its live weights: the smallest by magnitude go, as
/// many come back (random or by gradient), starting at zero with zero momentum; the fraction is
/// `drop * (1 + cos(pi t / until)) / 2` (RigL's cosine annealing).
pub struct PruneRegrow {
    pub scheduled: Scheduled,
    pub regrow: Regrow,
    /// Random growth (SET).
    pub rng: ChaCha8Rng,
}

impl UpdateRule for PruneRegrow {
    fn prepare(
        &mut self,
        groups: &[Group],
        sparsity: &[f64],
        t: u64,
        params: &mut [ParamBuf],
        kernels: &StepKernels,
    ) -> Result<bool, KernelError> {
        let changed = self.scheduled.prepare(groups, sparsity, t, params, kernels)?;
        let f = self.regrow.fraction(t);
        if f > 0.0 {
            for p in params.iter_mut().filter(|p| p.spec.masked) {
                swap(p, f, self.regrow.grow, &mut self.rng, kernels)?;
            }
        }
        Ok(changed || f > 0.0)
    }

    fn masks_set(&mut self, zeros: Vec<Option<usize>>) {
        self.scheduled.masks_set(zeros);
    }

    fn grows_by_gradient(&self, groups: &[Group], sparsity: &[f64], next: u64, params: &[ParamBuf]) -> bool {
        self.scheduled.grows_by_gradient(groups, sparsity, next, params)
            || (self.regrow.grow == Growth::Gradient && self.regrow.fraction(next) > 0.0)
    }

    fn save(&self) -> RuleState {
        RuleState { regrowth: Some(self.rng.get_word_pos().to_string()), ..self.scheduled.save() }
    }

    fn load(&mut self, state: &RuleState) {
        self.scheduled.load(state);
        if let Some(pos) = state.regrowth.as_ref().and_then(|p| p.parse().ok()) {
            self.rng.set_word_pos(pos);
        }
    }
}

/// The mask method owns the masks (`lottery`: each round's mask is set by `lottery_prune`).
pub struct Fixed;

impl UpdateRule for Fixed {
    fn prepare(
        &mut self,
        _: &[Group],
        _: &[f64],
        _: u64,
        _: &mut [ParamBuf],
        _: &StepKernels,
    ) -> Result<bool, KernelError> {
        Ok(false)
    }
}

/// After `freeze at`: masks and weights as they were frozen.
pub struct Frozen;

impl UpdateRule for Frozen {
    fn prepare(
        &mut self,
        _: &[Group],
        _: &[f64],
        _: u64,
        _: &mut [ParamBuf],
        _: &StepKernels,
    ) -> Result<bool, KernelError> {
        Ok(false)
    }

    fn is_frozen(&self) -> bool {
        true
    }

    fn save(&self) -> RuleState {
        RuleState { frozen: true, ..RuleState::default() }
    }
}

/// ST-3: raw weights train; effective = mask * threshold(raw, tau) (* per-channel rescale), with
/// one `tau` per group at the scheduled sparsity.
pub struct SoftThreshold {
    pub rescale: bool,
    pub sigma: bool,
    /// Per param, `raw * mask * scale` for the quantile when masks or sigma make it differ
    /// from `raw`; `None` when the quantile is taken over the raw weights directly.
    pub magnitudes: Option<Vec<Vec<f32>>>,
}

impl UpdateRule for SoftThreshold {
    fn prepare(
        &mut self,
        groups: &[Group],
        sparsity: &[f64],
        _t: u64,
        params: &mut [ParamBuf],
        kernels: &StepKernels,
    ) -> Result<bool, KernelError> {
        for (gi, g) in groups.iter().enumerate() {
            let magnitudes = self.magnitudes.as_mut().map(|m| g.members_mut(m));
            let mut ps = g.members_mut(params);
            soft_group(&mut ps, magnitudes, sparsity[gi], self.rescale, self.sigma, kernels)?;
        }
        Ok(true)
    }

    /// ST-3's `fix()`: fold the threshold into the raw weights and keep the mask from now on.
    fn freeze(&mut self, params: &mut [ParamBuf], kernels: &StepKernels) -> Result<(), KernelError> {
        for p in params.iter_mut().filter(|p| !p.eff.is_empty()) {
            p.raw = std::mem::take(&mut p.eff);
            p.mask.iter_mut().zip(&p.raw).for_each(|(m, w)| *m = if *w == 0.0 { 0.0 } else { *m });
            p.row_scale.clear();
            kernels.remask(p)?;
        }
        Ok(())
    }

    fn is_soft(&self) -> bool {
        true
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

pub fn magnitude_group(ps: &mut [&mut ParamBuf], k: usize) {
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
