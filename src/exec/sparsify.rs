//! Applies the sparsity plan to the engine's buffers before each step. In: the plan's
//! `Sparsity`, the step, the [`ParamBuf`]s. Out: masks, re-masked weights and optimizer state
//! (`hard`), or thresholds and effective weights (`soft_threshold`). The math is in
//! `crate::sparsity`, the elementwise passes are the run's JIT kernels ([`StepKernels`]); this
//! file only walks the groups.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::error::RunError;
use super::jit::{call_failed, StepKernels};
use super::params::ParamBuf;
use crate::diagnostics::Span;
use crate::ir::plan::{Distribution, MaskMethod, Scope, Ste, Update};
use crate::kernels::KernelError;
use crate::sparsity::mask::{magnitude_masks, random_masks};
use crate::sparsity::threshold::{kth_smallest_abs, rescale_rows, unscaled_threshold};
use crate::sparsity::{groups, zeros_for, Group, SparsitySchedule};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    Hard,
    Soft { ste: Ste, rescale: bool, sigma: bool },
}

pub struct Sparsifier {
    pub rule: Rule,
    groups: Vec<Group>,
    schedule: SparsitySchedule,
    /// Progress whose masks are in place (`hard`); `None` forces the next `prepare` to apply.
    applied: Option<f64>,
    freeze_at: Option<u64>,
    frozen: bool,
    /// Per param, `raw * mask * scale` for ST-3's quantile when masks or sigma make it differ
    /// from `raw`; `None` when the quantile is taken over the raw weights directly.
    magnitudes: Option<Vec<Vec<f32>>>,
    /// The `sparsity` block, blamed if a kernel call fails.
    span: Span,
}

/// Mutable items (buffers of params) of a group's members, in member order.
fn members<'a, T>(items: &'a mut [T], g: &Group) -> Vec<&'a mut T> {
    items.iter_mut().enumerate().filter(|(i, _)| g.members.contains(i)).map(|(_, p)| p).collect()
}

impl Sparsifier {
    /// Checks the plan is supported and sets the initial masks.
    pub fn new(
        plan: &crate::ir::plan::Plan,
        spe: u64,
        total: u64,
        params: &mut [ParamBuf],
        kernels: &StepKernels,
    ) -> Result<Sparsifier, RunError> {
        let sp = &plan.sparsity;
        let unsupported = |what: &str| Err(RunError::NotImplemented { what: what.into(), span: sp.span });
        let (rule, scope) = match &sp.update {
            Update::Hard => (Rule::Hard, Scope::Global),
            Update::SoftThreshold { ste, rescale, scope, sigma, .. } => {
                (Rule::Soft { ste: *ste, rescale: *rescale, sigma: *sigma }, *scope)
            }
            Update::PruneRegrow { .. } => return unsupported("the `prune_regrow` update"),
        };
        if sp.distribution == Distribution::Erk {
            return unsupported("the `erk` distribution");
        }
        let Some(schedule) = SparsitySchedule::resolve(&sp.schedule, spe, total) else {
            return unsupported("the `cyclic` schedule");
        };
        let magnitudes = match rule {
            Rule::Soft { sigma, .. } if sigma || sp.mask != MaskMethod::Dense => {
                Some(params.iter().map(|p| vec![0.0; if p.eff.is_empty() { 0 } else { p.raw.len() }]).collect())
            }
            _ => None,
        };
        let mut s = Sparsifier {
            rule,
            groups: groups(&plan.model.params, sp.target, scope),
            schedule,
            applied: None,
            freeze_at: sp.freeze_at.map(|t| t.to_steps(spe, total)),
            frozen: false,
            magnitudes,
            span: sp.span,
        };
        let p0 = schedule.progress(0);
        let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
        rng.set_stream(1);
        for g in &s.groups {
            let mut ps = members(params, g);
            let n: usize = ps.iter().map(|p| p.raw.len()).sum();
            let k = zeros_for(p0 * g.target, n);
            match &sp.mask {
                MaskMethod::Dense => {}
                MaskMethod::Random => {
                    random_masks(k, &mut ps.iter_mut().map(|p| &mut p.mask[..]).collect::<Vec<_>>(), &mut rng)
                }
                MaskMethod::Magnitude => magnitude_group(&mut ps, k),
                MaskMethod::Snip { .. } => return unsupported("the `snip` mask"),
                MaskMethod::Grasp { .. } => return unsupported("the `grasp` mask"),
                MaskMethod::Synflow { .. } => return unsupported("the `synflow` mask"),
                MaskMethod::Lottery { .. } => return unsupported("the `lottery` mask"),
            }
            for p in ps {
                kernels.remask(p).map_err(call_failed(sp.span))?;
            }
        }
        if sp.mask == MaskMethod::Random {
            s.applied = Some(p0);
        }
        Ok(s)
    }

    /// Target sparsity of each masked param's group after `t` steps, by param index.
    pub fn targets(&self, t: u64) -> Vec<(usize, f64)> {
        let p = if self.frozen { 1.0 } else { self.schedule.progress(t) };
        let mut out: Vec<(usize, f64)> =
            self.groups.iter().flat_map(|g| g.members.iter().map(move |&i| (i, p * g.target))).collect();
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
        let p = if freeze { 1.0 } else { self.schedule.progress(t) };
        match self.rule {
            Rule::Hard if self.applied != Some(p) => {
                for g in &self.groups {
                    let mut ps = members(params, g);
                    let n: usize = ps.iter().map(|p| p.raw.len()).sum();
                    magnitude_group(&mut ps, zeros_for(p * g.target, n));
                    for q in ps {
                        kernels.remask(q).map_err(&call)?;
                    }
                }
                self.applied = Some(p);
            }
            Rule::Hard => {}
            Rule::Soft { rescale, sigma, .. } => {
                for g in &self.groups {
                    let magnitudes = self.magnitudes.as_mut().map(|m| members(m, g));
                    let mut ps = members(params, g);
                    soft_group(&mut ps, magnitudes, p * g.target, rescale, sigma, kernels).map_err(&call)?;
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
