//! Applies the sparsity plan to the engine's buffers before each step. In: the plan's
//! `Sparsity`, the step, the [`ParamBuf`]s. Out: masks, re-masked weights and optimizer state
//! (`hard`), or thresholds and effective weights (`soft_threshold`). The math is in
//! `crate::sparsity`; this file only walks the groups.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::error::RunError;
use super::params::ParamBuf;
use super::update::soft_threshold_effective;
use crate::ir::plan::{Distribution, MaskMethod, Scope, Ste, Update};
use crate::sparsity::mask::{magnitude_masks, random_masks};
use crate::sparsity::threshold::{kth_smallest_abs, rescale_rows};
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
}

/// Mutable buffers of a group's members, in member order.
fn members<'a>(params: &'a mut [ParamBuf], g: &Group) -> Vec<&'a mut ParamBuf> {
    params.iter_mut().enumerate().filter(|(i, _)| g.members.contains(i)).map(|(_, p)| p).collect()
}

impl Sparsifier {
    /// Checks the plan is supported and sets the initial masks.
    pub fn new(
        plan: &crate::ir::plan::Plan,
        spe: u64,
        total: u64,
        params: &mut [ParamBuf],
    ) -> Result<Sparsifier, RunError> {
        let sp = &plan.sparsity;
        let unsupported = |what: &str| Err(RunError::NotImplemented { what: what.into(), span: sp.span });
        let (rule, scope) = match &sp.update {
            Update::Hard => (Rule::Hard, Scope::Global),
            Update::SoftThreshold { kernel, .. } if kernel != "soft_threshold" => {
                return unsupported(&format!("soft_threshold with the custom kernel `{kernel}`"))
            }
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
        let mut s = Sparsifier {
            rule,
            groups: groups(&plan.model.params, sp.target, scope),
            schedule,
            applied: None,
            freeze_at: sp.freeze_at.map(|t| t.to_steps(spe, total)),
            frozen: false,
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
                p.raw.iter_mut().zip(&p.mask).for_each(|(w, m)| *w *= m);
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
    pub fn prepare(&mut self, t: u64, params: &mut [ParamBuf]) {
        if self.frozen {
            return;
        }
        let freeze = self.freeze_at.is_some_and(|f| t >= f);
        let p = if freeze { 1.0 } else { self.schedule.progress(t) };
        match self.rule {
            Rule::Hard if self.applied != Some(p) => {
                for g in &self.groups {
                    let mut ps = members(params, g);
                    let n: usize = ps.iter().map(|p| p.raw.len()).sum();
                    magnitude_group(&mut ps, zeros_for(p * g.target, n));
                    for q in ps {
                        remask(q);
                    }
                }
                self.applied = Some(p);
            }
            Rule::Hard => {}
            Rule::Soft { rescale, sigma, .. } => {
                for g in &self.groups {
                    soft_group(&mut members(params, g), p * g.target, rescale, sigma);
                }
            }
        }
        if freeze {
            self.freeze(params);
        }
    }

    /// ST-3's `fix()`: fold the threshold into the raw weights and keep the mask from now on.
    fn freeze(&mut self, params: &mut [ParamBuf]) {
        if let Rule::Soft { .. } = self.rule {
            for p in params.iter_mut().filter(|p| !p.eff.is_empty()) {
                p.raw = std::mem::take(&mut p.eff);
                p.mask.iter_mut().zip(&p.raw).for_each(|(m, w)| *m = if *w == 0.0 { 0.0 } else { *m });
                p.row_scale.clear();
                remask(p);
            }
        }
        self.rule = Rule::Hard;
        self.frozen = true;
    }
}

fn magnitude_group(ps: &mut [&mut ParamBuf], k: usize) {
    let (ws, mut ms): (Vec<&[f32]>, Vec<&mut [f32]>) = ps.iter_mut().map(|p| (&p.raw[..], &mut p.mask[..])).unzip();
    magnitude_masks(&ws, k, &mut ms);
}

/// Re-applies the mask to weights and optimizer state (exact zeros at pruned positions).
fn remask(p: &mut ParamBuf) {
    for v in [&mut p.raw, &mut p.m1, &mut p.m2] {
        v.iter_mut().zip(&p.mask).for_each(|(x, m)| *x *= m);
    }
}

/// One threshold for the group at sparsity `s`; ST-3-sigma divides each layer's magnitudes
/// by `sigma_l = 1/sqrt(sum of its dims)` (stthree's `l1std`) before taking the quantile.
fn soft_group(ps: &mut [&mut ParamBuf], s: f64, rescale: bool, sigma: bool) {
    let n: usize = ps.iter().map(|p| p.raw.len()).sum();
    let scale = |p: &ParamBuf| {
        if sigma {
            (p.spec.shape.iter().sum::<usize>() as f32).sqrt()
        } else {
            1.0
        }
    };
    let view: Vec<(&[f32], &[f32], f32)> = ps.iter().map(|p| (&p.raw[..], &p.mask[..], scale(p))).collect();
    let tau = kth_smallest_abs(&view, zeros_for(s, n));
    for p in ps.iter_mut() {
        let tau_l = tau / scale(p);
        if rescale {
            rescale_rows(&p.raw, &p.mask, tau_l, p.cols, &mut p.row_scale);
        }
        soft_threshold_effective(&mut p.eff, &p.raw, &p.mask, tau_l, &p.row_scale, p.cols);
    }
}
