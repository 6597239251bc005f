//! The JIT kernels of one run. In: the plan's [`StepPrograms`]. Out: [`StepKernels`], compiled
//! once into one Cranelift module (its code is freed when the trainer drops them), and the calls
//! that run them on a [`ParamBuf`]: the optimizer step, re-masking, and ST-3's effective weights.
//!
//! Measured with `examples/bench_update.rs` against the plain loop the kernels replaced: the
//! loop is faster below ~1,000 elements by the kernel's call overhead (15-250 ns per call, noise
//! against a step); from 30,000 up one thread is on par for SGD (0.9x) and faster for Adam
//! (1.2x), and two threads give 1.6-2.4x from `kernels::PARALLEL_THRESHOLD`. Dense parameters
//! use the optimizer without a mask rather than `hard` with a ones mask (one array less to
//! stream: 1.3x faster from 30,000 elements).

use super::error::RunError;
use super::params::ParamBuf;
use crate::diagnostics::Span;
use crate::ir::plan::{self, Plan};
use crate::kernels::step::{blame_span, optimizer, Step, StepPrograms};
use crate::kernels::{Kernel, KernelError, KernelModule, UpdateKernel, UpdateRule};

/// Kept weights per chunk of [`StepKernels::update_kept`] from which the chunks go to the pool's
/// threads. Measured on LeNet-300-100 (`bench_step`, two threads, fc1 4,704-26,600 kept):
/// 90% 0.66-0.67 -> 0.57-0.59 ms, 98% 0.29 -> 0.27-0.28 (one chunk against chunks of 2048); at
/// 99% chunks of 512 (2,660 kept) changed nothing measurable.
const KEPT_CHUNK: usize = 1024;

/// The gathered arrays of one chunk of [`StepKernels::update_kept`]: weights, gradients, first
/// and second moments, mask.
pub type KeptScratch = [Vec<f32>; 5];

/// One chunk of [`StepKernels::update_kept`]: its kept indices (ascending, all at or past
/// `base`) and the dense arrays from `base` up to the next chunk's start.
struct KeptChunk<'a> {
    base: usize,
    kept: &'a [u32],
    raw: &'a mut [f32],
    /// Empty when the kept gradients are `given`.
    grad: &'a [f32],
    given: Option<&'a [f32]>,
    m1: &'a mut [f32],
    /// Empty without Adam.
    m2: &'a mut [f32],
}

pub struct StepKernels {
    hard: UpdateKernel,
    kernels: Step<Kernel>,
}

impl StepKernels {
    pub fn compile(plan: &Plan) -> Result<StepKernels, RunError> {
        let programs = StepPrograms::for_plan(plan).map_err(|e| match e.missing {
            true => RunError::Plan { msg: e.msg, span: e.span },
            false => RunError::KernelCompile { msg: e.msg, span: e.span },
        })?;
        let span = blame_span(plan);
        let failed = |e: KernelError| RunError::KernelCompile { msg: e.to_string(), span };
        let module = KernelModule::compile(programs.iter().cloned().collect()).map_err(failed)?;
        let kernels = programs
            .refill(module.into_kernels())
            .ok_or_else(|| failed(KernelError::Host("a kernel is missing".into())))?;
        let hard =
            UpdateKernel::from_kernel(UpdateRule::Hard, optimizer(&plan.train.optimizer), None, kernels.hard.clone())
                .map_err(failed)?;
        Ok(StepKernels { hard, kernels })
    }

    /// One optimizer step of `p` with `scalars` from [`optimizer_scalars`]: the raw-weight update
    /// if `p` has effective weights, else `hard` if it has a mask, else the dense update.
    pub fn update(&self, p: &mut ParamBuf, scalars: &[f32]) -> Result<(), KernelError> {
        let ParamBuf { raw, grad, m1, m2, mask, eff, .. } = p;
        let mut arrays: Vec<&mut [f32]> = vec![raw, grad, m1];
        if !m2.is_empty() {
            arrays.push(m2);
        }
        match &self.kernels.soft {
            Some(soft) if !eff.is_empty() => match &soft.gated_raw {
                Some(gated) => {
                    arrays.push(eff);
                    gated.run(&mut arrays, scalars)
                }
                None => self.kernels.dense.run(&mut arrays, scalars),
            },
            _ if !mask.is_empty() => {
                arrays.push(mask);
                self.hard.run(&mut arrays, scalars)
            }
            _ => self.kernels.dense.run(&mut arrays, scalars),
        }
    }

    /// The `hard` update of `p` at its `kept` positions only (ascending indices where the mask
    /// is 1): pruned weights and their optimizer state are zero and a `hard` step keeps them
    /// zero, so this is the whole update at O(kept) instead of O(size). `kept_grad`, when
    /// given, is `p.grad` at `kept` (in that order). `scratch` holds the gathered arrays
    /// between calls, one set per chunk: from `KEPT_CHUNK` kept weights a chunk each goes to
    /// the pool's threads (gathers and scatters are a third of the update, and serial they
    /// were a seventh of LeNet-300-100's 98% step at two threads). Each element is computed by
    /// the same code whatever the chunks, so the result does not depend on the thread count.
    pub fn update_kept(
        &self,
        p: &mut ParamBuf,
        kept: &[u32],
        kept_grad: Option<&[f32]>,
        scalars: &[f32],
        scratch: &mut Vec<KeptScratch>,
    ) -> Result<(), KernelError> {
        self.update_kept_in_chunks(p, kept, kept_grad, scalars, scratch, KEPT_CHUNK)
    }

    /// [`Self::update_kept`] in chunks of at least `min_chunk` kept weights.
    pub(crate) fn update_kept_in_chunks(
        &self,
        p: &mut ParamBuf,
        kept: &[u32],
        kept_grad: Option<&[f32]>,
        scalars: &[f32],
        scratch: &mut Vec<KeptScratch>,
        min_chunk: usize,
    ) -> Result<(), KernelError> {
        if kept.is_empty() {
            return Ok(());
        }
        let chunks = rayon::current_num_threads().min(kept.len() / min_chunk.max(1)).max(1);
        let per = kept.len().div_ceil(chunks).max(1);
        scratch.resize_with(chunks, Default::default);
        // Each chunk's indices lie in their own range of the dense arrays: cut them there.
        let adam = !p.m2.is_empty();
        let ParamBuf { raw, grad, m1, m2, .. } = p;
        let (mut raw, mut m1, mut m2, mut grad) = (&mut raw[..], &mut m1[..], &mut m2[..], &grad[..]);
        let mut parts = Vec::with_capacity(chunks);
        let mut base = 0;
        for (c, ks) in kept.chunks(per).enumerate() {
            let end = kept.get((c + 1) * per).map_or(base + raw.len(), |&k| k as usize);
            let cut = end - base;
            let (r, rest) = std::mem::take(&mut raw).split_at_mut(cut);
            raw = rest;
            let (a, rest) = std::mem::take(&mut m1).split_at_mut(cut);
            m1 = rest;
            let (b, rest) = std::mem::take(&mut m2).split_at_mut(if adam { cut } else { 0 });
            m2 = rest;
            let (g, rest) = grad.split_at(if kept_grad.is_some() { 0 } else { cut });
            grad = rest;
            let given = kept_grad.map(|g| &g[c * per..c * per + ks.len()]);
            parts.push(KeptChunk { base, kept: ks, raw: r, grad: g, given, m1: a, m2: b });
            base = end;
        }
        if chunks == 1 {
            let part = parts.pop().expect("one chunk");
            return self.update_kept_chunk(part, scalars, &mut scratch[0]);
        }
        use rayon::prelude::*;
        parts
            .into_par_iter()
            .zip(scratch.par_iter_mut())
            .try_for_each(|(part, s)| self.update_kept_chunk(part, scalars, s))
    }

    /// Gathers one chunk's kept entries, runs `hard` on them and scatters them back.
    fn update_kept_chunk(&self, c: KeptChunk, scalars: &[f32], scratch: &mut KeptScratch) -> Result<(), KernelError> {
        let base = c.base as u32;
        let gather = |src: &[f32], dst: &mut Vec<f32>| {
            dst.clear();
            dst.extend(c.kept.iter().map(|&i| src[(i - base) as usize]));
        };
        let [raw, grad, m1, m2, mask] = scratch;
        gather(c.raw, raw);
        match c.given {
            // The gradient at the kept positions, in their order: a copy, not a gather.
            Some(g) => {
                grad.clear();
                grad.extend_from_slice(g);
            }
            None => gather(c.grad, grad),
        }
        gather(c.m1, m1);
        // The mask is 1 at every kept position.
        mask.clear();
        mask.resize(c.kept.len(), 1.0);
        let adam = !c.m2.is_empty();
        let mut arrays: Vec<&mut [f32]> = vec![raw, grad, m1];
        if adam {
            gather(c.m2, m2);
            arrays.push(m2);
        }
        arrays.push(mask);
        self.hard.run(&mut arrays, scalars)?;
        let scatter = |src: &[f32], dst: &mut [f32]| {
            c.kept.iter().zip(src).for_each(|(&i, v)| dst[(i - base) as usize] = *v);
        };
        scatter(&scratch[0], c.raw);
        scatter(&scratch[2], c.m1);
        if adam {
            scatter(&scratch[3], c.m2);
        }
        Ok(())
    }

    /// Multiplies weights and optimizer state by the mask.
    pub fn remask(&self, p: &mut ParamBuf) -> Result<(), KernelError> {
        let ParamBuf { raw, m1, m2, mask, .. } = p;
        let mut arrays: Vec<&mut [f32]> = vec![raw, m1];
        if !m2.is_empty() {
            arrays.push(m2);
        }
        arrays.push(mask);
        self.kernels.remask.run(&mut arrays, &[])
    }

    /// `out = raw * mask * scale`, the values ST-3's `tau` is a quantile of.
    pub fn masked_scaled(&self, p: &mut ParamBuf, scale: f32, out: &mut [f32]) -> Result<(), KernelError> {
        let soft = self.soft_kernels()?;
        soft.masked_scaled.run(&mut [&mut p.raw, &mut p.mask, out], &[scale])
    }

    /// `eff = mask * threshold(raw, tau) * row_scale[row]`, row by row when `rescale`
    /// (the scales are then not all 1).
    pub fn effective(&self, p: &mut ParamBuf, tau: f32, rescale: bool) -> Result<(), KernelError> {
        let soft = self.soft_kernels()?;
        let ParamBuf { raw, mask, eff, row_scale, cols, .. } = p;
        let arrays: &mut [&mut [f32]] = &mut [raw, mask, eff];
        if rescale {
            soft.effective.run_rows(arrays, &[tau, 1.0], *cols, 1, row_scale)
        } else {
            soft.effective.run(arrays, &[tau, 1.0])
        }
    }

    fn soft_kernels(&self) -> Result<&crate::kernels::step::SoftStep<Kernel>, KernelError> {
        let reason = "soft-threshold kernels were not compiled for a `hard` plan".to_string();
        self.kernels.soft.as_ref().ok_or(KernelError::BadProgram { kernel: "effective".into(), reason })
    }
}

/// The error for a kernel call that refused its arguments: the engine's buffers disagree with
/// the plan, a bug (E0706) blamed on `span`.
pub fn call_failed(span: Span) -> impl Fn(KernelError) -> RunError {
    move |e| RunError::Plan { msg: format!("kernel call: {e}"), span }
}

/// The update kernels' scalars at 0-based step `step`, in their programs' order (see
/// `kernels::update`), with `weight_decay` as given (the caller passes 0 for non-weights).
/// Adam's bias corrections are computed in `f64`, as PyTorch does.
pub fn optimizer_scalars(o: &plan::Optimizer, lr: f32, step: u64, weight_decay: f32) -> Vec<f32> {
    match *o {
        plan::Optimizer::Sgd { momentum, .. } => vec![lr, momentum as f32, weight_decay],
        plan::Optimizer::Adam { beta1, beta2, eps, .. } => {
            let t = (step + 1).min(i32::MAX as u64) as i32;
            let bias_correction1 = 1.0 - beta1.powi(t);
            let bias_correction2_sqrt = (1.0 - beta2.powi(t)).sqrt();
            let (b1, b2, eps) = (beta1 as f32, beta2 as f32, eps as f32);
            vec![lr, b1, b2, eps, weight_decay, bias_correction1 as f32, bias_correction2_sqrt as f32]
        }
    }
}
