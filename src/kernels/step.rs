//! The fused step kernels a plan needs, by role: built once per plan by
//! [`StepPrograms::for_plan`], printed by `sprsc check --emit kernels` and compiled by the engine
//! (`exec::jit`) into a [`Step`] of kernels of the same shape.
//!
//! Every parameter's update is one fused kernel: `hard` for masked weights, under
//! `soft_threshold` the raw-weight update (straight-through gradient, gated by `eff != 0` under
//! `ste: masked`), and for dense parameters (biases, batch-norm, weights in `dense [...]`) the
//! optimizer without a mask. ST-3 adds the effective-weight and masked-scale passes.

use super::update::{
    effective_program, masked_scaled_program, prelude, raw_update_program, remask_program, update_program,
};
use super::{KernelError, Optimizer, Program, UpdateRule};
use crate::diagnostics::Span;
use crate::ir::kernel::KernelDef;
use crate::ir::plan::{self, Plan, Ste, Update};

/// One `T` per step-kernel role.
#[derive(Debug, Clone, PartialEq)]
pub struct Step<T> {
    /// Masked weights under `hard` (and under `soft_threshold` once frozen).
    pub hard: T,
    /// Parameters without a mask (the raw update under `ste: dense`).
    pub dense: T,
    pub remask: T,
    pub soft: Option<SoftStep<T>>,
}

/// ST-3's passes. Two passes, the raw update at the end of a step and `effective` at the start
/// of the next, not one fused kernel: `tau` is a quantile of the raw weights *after* the
/// update, unknown until they have been written.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftStep<T> {
    pub effective: T,
    pub masked_scaled: T,
    /// The raw update gated by `eff != 0` (`ste: masked`).
    pub gated_raw: Option<T>,
}

impl<T> Step<T> {
    /// Every role in listing (and compile) order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        let soft = self.soft.iter().flat_map(|s| [Some(&s.effective), Some(&s.masked_scaled), s.gated_raw.as_ref()]);
        [&self.hard, &self.dense, &self.remask].into_iter().chain(soft.flatten())
    }

    /// A step of the same shape whose roles take, in [`Step::iter`]'s order, the items of `it`.
    pub fn refill<U>(&self, it: impl IntoIterator<Item = U>) -> Option<Step<U>> {
        let mut it = it.into_iter();
        let mut next = || it.next();
        let (hard, dense, remask) = (next()?, next()?, next()?);
        let soft = match &self.soft {
            Some(s) => {
                let (effective, masked_scaled) = (next()?, next()?);
                let gated_raw = match s.gated_raw {
                    Some(_) => Some(next()?),
                    None => None,
                };
                Some(SoftStep { effective, masked_scaled, gated_raw })
            }
            None => None,
        };
        Some(Step { hard, dense, remask, soft })
    }
}

/// The programs of a plan's step kernels.
pub type StepPrograms = Step<Program>;

/// Why a plan's step kernels cannot be built: a kernel the plan names is missing (a bug in
/// a hand-built plan), or a program does not build.
#[derive(Debug, Clone, PartialEq)]
pub struct StepError {
    pub missing: bool,
    pub msg: String,
    pub span: Span,
}

/// The kernel compiler's optimizer for the plan's.
pub fn optimizer(o: &plan::Optimizer) -> Optimizer {
    match *o {
        plan::Optimizer::Sgd { nesterov, .. } => Optimizer::Sgd { nesterov },
        plan::Optimizer::Adam { decoupled, .. } => Optimizer::Adam { decoupled_decay: decoupled },
    }
}

/// The threshold kernel named by `update soft_threshold(kernel: NAME)`: the plan's definition,
/// or the prelude's `soft_threshold` for plans built without their kernels (tests).
fn threshold_def(plan: &Plan, name: &str) -> Result<KernelDef, StepError> {
    if let Some(def) = plan.kernels.iter().find(|k| k.name == name) {
        return Ok(def.clone());
    }
    if name == "soft_threshold" {
        return Ok(prelude::soft_threshold());
    }
    let msg = format!("the threshold kernel `{name}` is not among the plan's kernels");
    Err(StepError { missing: true, msg, span: plan.sparsity.span })
}

/// Where a step kernel that fails to build is blamed: the threshold kernel under
/// `soft_threshold` (a user's kernel), else the `sparsity` block.
pub fn blame_span(plan: &Plan) -> Span {
    match &plan.sparsity.update {
        Update::SoftThreshold { kernel, .. } => threshold_def(plan, kernel).map_or(plan.sparsity.span, |d| d.span),
        Update::Hard | Update::PruneRegrow { .. } => plan.sparsity.span,
    }
}

impl StepPrograms {
    pub fn for_plan(plan: &Plan) -> Result<StepPrograms, StepError> {
        let opt = optimizer(&plan.train.optimizer);
        let adam = matches!(opt, Optimizer::Adam { .. });
        let soft = match &plan.sparsity.update {
            Update::SoftThreshold { kernel, ste, .. } => Some((threshold_def(plan, kernel)?, *ste == Ste::Masked)),
            Update::Hard | Update::PruneRegrow { .. } => None,
        };
        // A program that does not build is a bug, blamed on the user kernel when there is one.
        let span = blame_span(plan);
        let failed = |e: KernelError| StepError { missing: false, msg: e.to_string(), span };
        let soft = match soft {
            Some((def, gated)) => Some(SoftStep {
                effective: effective_program(&def).map_err(failed)?,
                masked_scaled: masked_scaled_program().map_err(failed)?,
                gated_raw: if gated { Some(raw_update_program(opt, true).map_err(failed)?) } else { None },
            }),
            None => None,
        };
        Ok(Step {
            hard: update_program(UpdateRule::Hard, opt, None).map_err(failed)?,
            dense: raw_update_program(opt, false).map_err(failed)?,
            remask: remask_program(adam).map_err(failed)?,
            soft,
        })
    }
}
