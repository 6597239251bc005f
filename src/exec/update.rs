//! Plain scalar references of the per-parameter update rules: the loops the engine ran before
//! its JIT kernels (`jit.rs`), kept to pin the semantics. The tests at the end check every JIT
//! path of the engine against them on random data.
//!
//! A mask is `1.0` (kept) or `0.0` (pruned); `None` means dense. Rows (output channels, `cols`
//! long) are explicit where a rule needs them.

use crate::sparsity::threshold::soft_threshold;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
}

/// `bias1 = 1 - beta1^t`, `bias2 = 1 - beta2^t` for the current step `t` (from 1).
/// The kernels take `bias1` and `sqrt(bias2)` and use PyTorch's arithmetic, so Adam agrees with
/// this reference to rounding, SGD exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled: bool,
    pub bias1: f32,
    pub bias2: f32,
}

fn gate(mask: Option<&[f32]>, i: usize) -> f32 {
    mask.map_or(1.0, |m| m[i])
}

/// One SGD step on a weight vector `w` that lives on the mask: `g' = (g + wd w) m`,
/// `b = mu b + g'`, `w = (w - lr (g' + mu b | b)) m`, `b = b m`. With `mask = None` this is
/// plain SGD (dense params). Momentum ends exactly zero wherever `m = 0`.
pub fn sgd_hard(w: &mut [f32], buf: &mut [f32], grad: &[f32], mask: Option<&[f32]>, h: Sgd) {
    for i in 0..w.len() {
        let m = gate(mask, i);
        let g = (grad[i] + h.weight_decay * w[i]) * m;
        let b = h.momentum * buf[i] + g;
        let step = if h.nesterov { g + h.momentum * b } else { b };
        w[i] = (w[i] - h.lr * step) * m;
        buf[i] = b * m;
    }
}

/// SGD on the raw weights of a soft-threshold layer: the gradient of the effective weights
/// reaches the raw ones straight through (dense STE), or only where `gate` is 1 (masked STE:
/// the engine passes `eff != 0`). Raw weights are never re-masked.
pub fn sgd_raw(raw: &mut [f32], buf: &mut [f32], grad: &[f32], gate_mask: Option<&[f32]>, h: Sgd) {
    for i in 0..raw.len() {
        let m = gate(gate_mask, i);
        let g = (grad[i] + h.weight_decay * raw[i]) * m;
        let b = h.momentum * buf[i] + g;
        let step = if h.nesterov { g + h.momentum * b } else { b };
        raw[i] -= h.lr * step;
        buf[i] = b;
    }
}

/// Adam step for one element; returns the new weight. `m` gates the gradient.
fn adam_elem(w: f32, g: f32, mask: f32, m1: &mut f32, m2: &mut f32, h: Adam) -> f32 {
    let mut w = w;
    let mut g = g;
    if h.decoupled {
        w -= h.lr * h.weight_decay * w * mask;
    } else {
        g += h.weight_decay * w;
    }
    g *= mask;
    *m1 = h.beta1 * *m1 + (1.0 - h.beta1) * g;
    *m2 = h.beta2 * *m2 + (1.0 - h.beta2) * g * g;
    w - h.lr * (*m1 / h.bias1) / ((*m2 / h.bias2).sqrt() + h.eps)
}

/// Adam/AdamW on weights that live on the mask; weights and both moments are re-masked.
pub fn adam_hard(w: &mut [f32], m1: &mut [f32], m2: &mut [f32], grad: &[f32], mask: Option<&[f32]>, h: Adam) {
    for i in 0..w.len() {
        let m = gate(mask, i);
        w[i] = adam_elem(w[i], grad[i], m, &mut m1[i], &mut m2[i], h) * m;
        m1[i] *= m;
        m2[i] *= m;
    }
}

/// Adam/AdamW on the raw weights of a soft-threshold layer (see [`sgd_raw`]).
pub fn adam_raw(raw: &mut [f32], m1: &mut [f32], m2: &mut [f32], grad: &[f32], gate_mask: Option<&[f32]>, h: Adam) {
    for i in 0..raw.len() {
        raw[i] = adam_elem(raw[i], grad[i], gate(gate_mask, i), &mut m1[i], &mut m2[i], h);
    }
}

/// Effective weights of a soft-threshold layer, row by row (one row per output channel):
/// `eff = mask * soft_threshold(raw, tau) * row_scale[row]`.
pub fn soft_threshold_effective(eff: &mut [f32], raw: &[f32], mask: &[f32], tau: f32, row_scale: &[f32], cols: usize) {
    for (r, scale) in row_scale.iter().enumerate() {
        let span = r * cols..(r + 1) * cols;
        for ((e, w), m) in eff[span.clone()].iter_mut().zip(&raw[span.clone()]).zip(&mask[span]) {
            *e = m * soft_threshold(*w, tau) * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Sgd = Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.01 };

    #[test]
    fn sgd_hard_matches_pytorch_then_remasks() {
        let (mut w, mut b) = (vec![1.0, -2.0], vec![0.5, 0.5]);
        sgd_hard(&mut w, &mut b, &[0.2, 0.3], Some(&[1.0, 0.0]), H);
        let g = 0.2 + 0.01;
        let buf = 0.9 * 0.5 + g;
        assert!((w[0] - (1.0 - 0.1 * buf)).abs() < 1e-6);
        assert!((b[0] - buf).abs() < 1e-6);
        assert_eq!((w[1], b[1]), (0.0, 0.0));
        let nesterov = Sgd { nesterov: true, ..H };
        let (mut w, mut b) = (vec![1.0], vec![0.0]);
        sgd_hard(&mut w, &mut b, &[1.0], None, nesterov);
        assert!((w[0] - (1.0 - 0.1 * (1.01 + 0.9 * 1.01))).abs() < 1e-6);
    }

    #[test]
    fn raw_updates_keep_pruned_weights_moving_under_dense_ste() {
        let (mut r, mut b) = (vec![0.01], vec![0.0]);
        sgd_raw(&mut r, &mut b, &[-1.0], None, Sgd { weight_decay: 0.0, ..H });
        assert!((r[0] - 0.11).abs() < 1e-6);
        let (mut r, mut b) = (vec![0.01], vec![0.0]);
        sgd_raw(&mut r, &mut b, &[-1.0], Some(&[0.0]), H);
        assert_eq!(r[0], 0.01);
    }

    #[test]
    fn adam_first_step_moves_by_lr_and_adamw_decays() {
        let h = Adam {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            bias1: 0.1,
            bias2: 0.001,
        };
        let (mut w, mut m, mut v) = (vec![1.0, 1.0], vec![0.0; 2], vec![0.0; 2]);
        adam_hard(&mut w, &mut m, &mut v, &[3.0, 3.0], Some(&[1.0, 0.0]), h);
        assert!((w[0] - 0.99).abs() < 1e-5);
        assert_eq!((w[1], m[1], v[1]), (0.0, 0.0, 0.0));
        let hw = Adam { weight_decay: 0.1, decoupled: true, ..h };
        let (mut w, mut m, mut v) = (vec![1.0], vec![0.0], vec![0.0]);
        adam_raw(&mut w, &mut m, &mut v, &[0.0], None, hw);
        assert!((w[0] - (1.0 - 0.001)).abs() < 1e-6);
    }

    #[test]
    fn effective_weights_are_masked_thresholded_and_rescaled_per_row() {
        let raw = [0.5, -0.2, 0.1, -0.9];
        let mut eff = [9.0; 4];
        soft_threshold_effective(&mut eff, &raw, &[1.0, 1.0, 0.0, 1.0], 0.15, &[2.0, 1.0], 2);
        let want = [0.7, -0.1, 0.0, -0.75];
        for (e, w) in eff.iter().zip(want) {
            assert!((e - w).abs() < 1e-6);
        }
    }
}

/// The engine's JIT paths against the references above, on a 7 x 10,001 weight (odd, and large
/// enough for the parallel driver) with random values.
#[cfg(test)]
mod jit {
    use super::*;
    use crate::exec::backend::testing::random;
    use crate::exec::fixtures::{mlp, plan, sgd_train, sparsity};
    use crate::exec::jit::{optimizer_scalars, StepKernels};
    use crate::exec::params::{buffers as init, ParamBuf};
    use crate::ir::kernel::{BinOp, KExpr, KernelDef, UnOp};
    use crate::ir::plan::{self, Param, ParamKind, Plan, Schedule, Scope, Update};
    use crate::sparsity::threshold::soft_threshold;

    const ROWS: usize = 7;
    const COLS: usize = 10_001;
    const LR: f32 = 0.05;
    const WD: f32 = 0.01;
    const STEP: u64 = 4;

    fn optimizers() -> [plan::Optimizer; 4] {
        let sgd = |nesterov| plan::Optimizer::Sgd { lr: 0.05, momentum: 0.9, nesterov, weight_decay: 0.01 };
        let adam = |decoupled| plan::Optimizer::Adam {
            lr: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decoupled,
        };
        [sgd(false), sgd(true), adam(false), adam(true)]
    }

    fn soft(ste: plan::Ste, kernel: &str) -> Update {
        Update::SoftThreshold { ste, rescale: true, scope: Scope::Global, sigma: false, kernel: kernel.into() }
    }

    fn test_plan(update: Update, optimizer: &plan::Optimizer) -> Plan {
        let mut train = sgd_train(1, 8, 0.05);
        train.optimizer = optimizer.clone();
        plan(mlp([1, 2, 2], &[3]), sparsity(0.9, Schedule::Constant, update), train)
    }

    /// A weight (or, unmasked, a dense param) with random state; `eff` has exact zeros.
    fn buffers(masked: bool, soft: bool, adam: bool, seed: u64) -> ParamBuf {
        let kind = ParamKind::Weight;
        let spec = Param {
            name: "w".into(),
            layer: "l".into(),
            kind,
            shape: vec![ROWS, COLS],
            masked,
            target: None,
            init: crate::ir::plan::Init::pytorch(kind, COLS),
            added_by: None,
        };
        let mut p = init(&[spec], seed, soft, adam).remove(0);
        let n = ROWS * COLS;
        p.raw = random(n, seed);
        p.grad = random(n, seed + 1);
        p.m1 = random(n, seed + 2);
        if adam {
            p.m2 = random(n, seed + 3).iter().map(|v| v.abs()).collect();
        }
        if masked {
            p.mask = random(n, seed + 4).iter().map(|x| f32::from(*x > 0.0)).collect();
        }
        if soft {
            p.eff = p.raw.iter().map(|w| if w.abs() < 0.3 { 0.0 } else { *w }).collect();
            p.row_scale = (0..ROWS).map(|r| 1.0 + r as f32 * 0.25).collect();
        }
        p
    }

    fn assert_agree(what: &str, jit: &[f32], reference: &[f32], tol: f32) {
        assert_eq!(jit.len(), reference.len());
        for (i, (a, b)) in jit.iter().zip(reference).enumerate() {
            assert!((a - b).abs() <= tol * b.abs().max(1.0), "{what}[{i}]: jit {a} vs reference {b}");
        }
    }

    /// Runs the plan's kernel on `p` and the reference on a copy; SGD must agree exactly.
    fn check_update(optimizer: &plan::Optimizer, update: Update, mut p: ParamBuf, gate: Option<Vec<f32>>) {
        let kernels = StepKernels::compile(&test_plan(update, optimizer)).unwrap();
        let mut r = (p.raw.clone(), p.m1.clone(), p.m2.clone());
        let mask = if p.eff.is_empty() { p.mask().map(<[f32]>::to_vec) } else { gate };
        let soft = !p.eff.is_empty();
        let tol = match *optimizer {
            plan::Optimizer::Sgd { lr, momentum, nesterov, .. } => {
                let h = Sgd { lr: lr as f32, momentum: momentum as f32, nesterov, weight_decay: WD };
                if soft {
                    sgd_raw(&mut r.0, &mut r.1, &p.grad, mask.as_deref(), h);
                } else {
                    sgd_hard(&mut r.0, &mut r.1, &p.grad, mask.as_deref(), h);
                }
                0.0
            }
            plan::Optimizer::Adam { beta1, beta2, eps, decoupled, .. } => {
                // In f64 as the engine does: `1 - 0.999^5` loses 4 digits in f32.
                let t = STEP as i32 + 1;
                let (bias1, bias2) = ((1.0 - beta1.powi(t)) as f32, (1.0 - beta2.powi(t)) as f32);
                let h = Adam {
                    lr: LR,
                    beta1: beta1 as f32,
                    beta2: beta2 as f32,
                    eps: eps as f32,
                    weight_decay: WD,
                    decoupled,
                    bias1,
                    bias2,
                };
                if soft {
                    adam_raw(&mut r.0, &mut r.1, &mut r.2, &p.grad, mask.as_deref(), h);
                } else {
                    adam_hard(&mut r.0, &mut r.1, &mut r.2, &p.grad, mask.as_deref(), h);
                }
                2e-6
            }
        };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        pool.install(|| kernels.update(&mut p, &optimizer_scalars(optimizer, LR, STEP, WD))).unwrap();
        assert_agree("w", &p.raw, &r.0, tol);
        assert_agree("m", &p.m1, &r.1, tol);
        assert_agree("v", &p.m2, &r.2, tol);
    }

    #[test]
    fn hard_and_dense_updates_match_the_loops() {
        for (i, optimizer) in optimizers().iter().enumerate() {
            let adam = matches!(optimizer, plan::Optimizer::Adam { .. });
            check_update(optimizer, Update::Hard, buffers(true, false, adam, 10 * i as u64), None);
            check_update(optimizer, Update::Hard, buffers(false, false, adam, 10 * i as u64 + 5), None);
        }
    }

    /// `update_kept` (gathered from `grad`, or given the kept gradients) is the full `hard`
    /// update, bit for bit, on a weight whose pruned entries and state are zero.
    #[test]
    fn kept_updates_are_the_hard_update() {
        for (i, optimizer) in optimizers().iter().enumerate() {
            let adam = matches!(optimizer, plan::Optimizer::Adam { .. });
            let kernels = StepKernels::compile(&test_plan(Update::Hard, optimizer)).unwrap();
            let mut p = buffers(true, false, adam, 40 + i as u64);
            for (k, m) in p.mask.clone().iter().enumerate() {
                if *m == 0.0 {
                    p.raw[k] = 0.0;
                    p.m1[k] = 0.0;
                    if adam {
                        p.m2[k] = 0.0;
                    }
                }
            }
            let kept: Vec<u32> = (0..p.mask.len() as u32).filter(|k| p.mask[*k as usize] != 0.0).collect();
            let kept_grad: Vec<f32> = kept.iter().map(|k| p.grad[*k as usize]).collect();
            let scalars = optimizer_scalars(optimizer, LR, STEP, WD);
            let mut full = buffers(true, false, adam, 0);
            (full.raw, full.grad, full.m1, full.m2, full.mask) =
                (p.raw.clone(), p.grad.clone(), p.m1.clone(), p.m2.clone(), p.mask.clone());
            kernels.update(&mut full, &scalars).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            // One chunk, and chunks of 1 and 7 kept weights on three threads (cut anywhere,
            // including between neighbours).
            let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
            for (given, min_chunk) in
                [None, Some(&kept_grad[..])].into_iter().flat_map(|g| [(g, usize::MAX), (g, 1), (g, 7)])
            {
                let mut q = buffers(true, false, adam, 0);
                (q.raw, q.grad, q.m1, q.m2, q.mask) =
                    (p.raw.clone(), p.grad.clone(), p.m1.clone(), p.m2.clone(), p.mask.clone());
                let mut scratch = Vec::new();
                pool.install(|| kernels.update_kept_in_chunks(&mut q, &kept, given, &scalars, &mut scratch, min_chunk))
                    .unwrap();
                assert_eq!(scratch.len(), if min_chunk == usize::MAX { 1 } else { 3 });
                let what = format!("{optimizer:?} gradients given: {}, chunks of {min_chunk}", given.is_some());
                assert!(bits(&q.raw) == bits(&full.raw), "{what}: weights");
                assert!(bits(&q.m1) == bits(&full.m1), "{what}: first moment");
                assert!(bits(&q.m2) == bits(&full.m2), "{what}: second moment");
            }
            assert!(full.raw != p.raw, "the step moved the weights");
        }
    }

    #[test]
    fn raw_updates_match_the_loops_under_both_estimators() {
        for (i, optimizer) in optimizers().iter().enumerate() {
            let adam = matches!(optimizer, plan::Optimizer::Adam { .. });
            let p = buffers(true, true, adam, 100 + i as u64);
            check_update(optimizer, soft(plan::Ste::Dense, "soft_threshold"), p, None);
            let p = buffers(true, true, adam, 200 + i as u64);
            let gate = p.eff.iter().map(|e| f32::from(*e != 0.0)).collect();
            check_update(optimizer, soft(plan::Ste::Masked, "soft_threshold"), p, Some(gate));
        }
    }

    #[test]
    fn effective_weights_match_the_loop_with_and_without_row_scales() {
        let kernels =
            StepKernels::compile(&test_plan(soft(plan::Ste::Dense, "soft_threshold"), &optimizers()[0])).unwrap();
        for rescale in [true, false] {
            let mut p = buffers(true, true, false, 7);
            if !rescale {
                p.row_scale.fill(1.0);
            }
            let mut reference = vec![0.0; p.eff.len()];
            soft_threshold_effective(&mut reference, &p.raw, &p.mask, 0.4, &p.row_scale, COLS);
            kernels.effective(&mut p, 0.4, rescale).unwrap();
            assert_agree("eff", &p.eff, &reference, 0.0);
        }
    }

    #[test]
    fn a_user_threshold_kernel_replaces_the_prelude() {
        // kernel half_shrink(w; tau) = select(abs(w) > tau, w - sign(w) * tau * 0.5, 0)
        let (w, tau) = (|| KExpr::Array(0), || KExpr::Scalar(0));
        let bin = |op, a, b| KExpr::Binary(op, Box::new(a), Box::new(b));
        let un = |op, a| KExpr::Unary(op, Box::new(a));
        let shrunk =
            bin(BinOp::Sub, w(), bin(BinOp::Mul, bin(BinOp::Mul, un(UnOp::Sign, w()), tau()), KExpr::Const(0.5)));
        let body = KExpr::Select(
            Box::new(bin(BinOp::Gt, un(UnOp::Abs, w()), tau())),
            Box::new(shrunk),
            Box::new(KExpr::Const(0.0)),
        );
        let def = KernelDef {
            name: "half_shrink".into(),
            arrays: vec!["w".into()],
            scalars: vec!["tau".into()],
            body,
            span: Default::default(),
        };
        let mut plan = test_plan(soft(plan::Ste::Dense, "half_shrink"), &optimizers()[0]);
        plan.kernels.push(def);
        let kernels = StepKernels::compile(&plan).unwrap();
        let mut p = buffers(true, true, false, 9);
        kernels.effective(&mut p, 0.4, true).unwrap();
        for (i, e) in p.eff.iter().enumerate() {
            let (w, m, s) = (p.raw[i], p.mask[i], p.row_scale[i / COLS]);
            let half = if w.abs() > 0.4 { w - w.signum() * 0.4 * 0.5 } else { 0.0 };
            assert_eq!(*e, m * half * s, "eff[{i}]");
        }
        let missing = test_plan(soft(plan::Ste::Dense, "nowhere"), &optimizers()[0]);
        assert_eq!(StepKernels::compile(&missing).err().map(|e| e.code()), Some("E0706"));
    }

    #[test]
    fn remask_and_masked_magnitudes_are_products() {
        let plan = test_plan(soft(plan::Ste::Dense, "soft_threshold"), &optimizers()[2]);
        let kernels = StepKernels::compile(&plan).unwrap();
        let mut p = buffers(true, true, true, 11);
        let mut out = vec![0.0; p.raw.len()];
        kernels.masked_scaled(&mut p, 3.0, &mut out).unwrap();
        let want: Vec<f32> = p.raw.iter().zip(&p.mask).map(|(w, m)| w * m * 3.0).collect();
        assert_agree("masked_scaled", &out, &want, 0.0);
        let before = (p.raw.clone(), p.m1.clone(), p.m2.clone());
        kernels.remask(&mut p).unwrap();
        for (now, was) in [(&p.raw, &before.0), (&p.m1, &before.1), (&p.m2, &before.2)] {
            let want: Vec<f32> = was.iter().zip(&p.mask).map(|(x, m)| x * m).collect();
            assert_agree("remask", now, &want, 0.0);
        }
        assert!(p.raw.iter().zip(&p.mask).all(|(w, m)| *m == 1.0 || *w == 0.0));
        assert_eq!(soft_threshold(-0.5, 0.25), -0.25);
    }
}
