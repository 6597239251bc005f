//! Composite update kernels. In: a mask update rule, an optimizer and optionally a user
//! threshold `KernelDef`. Out: one fused [`Program`] (and its compiled [`UpdateKernel`]) that
//! does the whole per-step update of a layer in one pass over memory; and the smaller programs
//! the training engine runs beside it (the last four rows below).
//!
//! Argument order (arrays; scalars), as in `program().arrays` / `program().scalars`:
//!
//! | rule, optimizer | arrays | scalars |
//! |---|---|---|
//! | hard, SGD | `w, g, m, mask` | `lr, momentum, weight_decay` |
//! | hard, Adam(W) | `w, g, m, v, mask` | `lr, beta1, beta2, eps, weight_decay, bc1, bc2_sqrt` |
//! | soft_threshold, SGD | `raw, eff, g, m, mask` | `lr, momentum, weight_decay, tau, scale` |
//! | soft_threshold, Adam(W) | `raw, eff, g, m, v, mask` | Adam's seven, then `tau, scale` |
//! | [`raw_update_program`] | `raw, g, m[, v][, eff]` | the optimizer's (as `hard`) |
//! | [`effective_program`] | `raw, mask, eff` | `tau, scale` |
//! | [`remask_program`] | `w, m[, v], mask` | none |
//! | [`masked_scaled_program`] | `raw, mask, out` | `scale` |
//!
//! The training engine runs ST-3 in two passes, [`raw_update_program`] at the end of a step and
//! [`effective_program`] at the start of the next, because its `tau` is a quantile of the raw
//! weights *after* the update: the fused [`UpdateRule::SoftThreshold`] kernel, which needs `tau`
//! before it runs, could only use the previous step's `tau` and would miss the schedule's exact
//! sparsity.
//!
//! `bc1` is the scalar `bias_correction1 = 1 - beta1^t`, `bc2_sqrt` is
//! `bias_correction2_sqrt = sqrt(1 - beta2^t)`, for step `t`
//! (1-based), computed by the engine once per step. Adam follows PyTorch's formulas:
//! `m = b1*m + (1-b1)*g` (PyTorch's `lerp` may differ in the last bit), `v = b2*v + (1-b2)*g*g`,
//! `w -= (lr / bc1) * m / (sqrt(v) / bc2_sqrt + eps)`; AdamW first scales `w` by
//! `1 - lr * weight_decay`, plain Adam adds `weight_decay * w` to the gradient.

use super::program::{Expr, Let, Program, Store};
use super::{Kernel, KernelError};
use crate::ir::kernel::{BinOp, KernelDef};

/// How masked weights are updated (the `sparsity { update ... }` statement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateRule {
    /// Gradient, momentum and weights multiplied by the mask in the same pass.
    Hard,
    /// ST-3: dense raw weights take the straight-through gradient; the pass also writes the
    /// effective weights `eff = mask * threshold(raw, tau) * scale`.
    /// With `tau` fixed before the pass, so the engine, whose `tau` depends on the updated
    /// weights, runs two passes instead (see the module docs).
    SoftThreshold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimizer {
    Sgd {
        nesterov: bool,
    },
    /// `decoupled_decay: true` is AdamW.
    Adam {
        decoupled_decay: bool,
    },
}

/// Per-weight saliency scores used to find masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    /// `abs(w)`; arrays `w, out`.
    Magnitude,
    /// SNIP `abs(w * g)`; arrays `w, g, out`.
    Snip,
}

/// The prelude kernels the built-in methods use, as the front end would resolve them.
pub mod prelude {
    use crate::diagnostics::Span;
    use crate::ir::kernel::{BinOp, KExpr, KernelDef, UnOp};

    fn def(name: &str, arrays: &[&str], scalars: &[&str], body: KExpr) -> KernelDef {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        KernelDef { name: name.into(), arrays: names(arrays), scalars: names(scalars), body, span: Span::default() }
    }

    fn un(op: UnOp, a: KExpr) -> KExpr {
        KExpr::Unary(op, Box::new(a))
    }

    fn bin(op: BinOp, a: KExpr, b: KExpr) -> KExpr {
        KExpr::Binary(op, Box::new(a), Box::new(b))
    }

    /// `kernel soft_threshold(w; tau) = sign(w) * max(abs(w) - tau, 0)`
    pub fn soft_threshold() -> KernelDef {
        let w = || KExpr::Array(0);
        let shrunk = bin(BinOp::Max, bin(BinOp::Sub, un(UnOp::Abs, w()), KExpr::Scalar(0)), KExpr::Const(0.0));
        def("soft_threshold", &["w"], &["tau"], bin(BinOp::Mul, un(UnOp::Sign, w()), shrunk))
    }

    /// `kernel snip_score(w, g) = abs(w * g)`
    pub fn snip_score() -> KernelDef {
        let body = un(UnOp::Abs, bin(BinOp::Mul, KExpr::Array(0), KExpr::Array(1)));
        def("snip_score", &["w", "g"], &[], body)
    }

    /// `kernel magnitude_score(w) = abs(w)`
    pub fn magnitude_score() -> KernelDef {
        def("magnitude_score", &["w"], &[], un(UnOp::Abs, KExpr::Array(0)))
    }
}

/// Builds a program statement by statement.
struct Builder {
    program: Program,
}

impl Builder {
    fn new(name: String) -> Builder {
        let program = Program { name, arrays: vec![], scalars: vec![], lets: vec![], stores: vec![] };
        Builder { program }
    }

    fn array(&mut self, name: &str) -> usize {
        self.program.arrays.push(name.into());
        self.program.arrays.len() - 1
    }

    fn scalar(&mut self, name: &str) -> Expr {
        self.program.scalars.push(name.into());
        Expr::Scalar(self.program.scalars.len() - 1)
    }

    fn bind(&mut self, name: &str, value: Expr) -> Expr {
        self.program.lets.push(Let { name: name.into(), value });
        Expr::Local(self.program.lets.len() - 1)
    }

    fn store(&mut self, array: usize, value: Expr) {
        self.program.stores.push(Store { array, value });
    }
}

/// Arrays of the optimizer state plus the weights it updates.
struct State {
    w: usize,
    g: usize,
    m: usize,
    v: Option<usize>,
}

/// Where 0/1 factors enter the optimizer's arithmetic (`None`: nowhere).
#[derive(Clone, Copy, Default)]
struct Gates<'a> {
    /// The gradient, L2 decay included.
    grad: Option<&'a Expr>,
    /// AdamW's decoupled decay.
    decay: Option<&'a Expr>,
    /// The new momentum and moments.
    state: Option<&'a Expr>,
}

fn masked(mask: Option<&Expr>, x: Expr) -> Expr {
    match mask {
        Some(mask) => mask.clone() * x,
        None => x,
    }
}

/// SGD with momentum and L2 weight decay (PyTorch's order); stores `m`, returns the new `w`.
fn sgd(b: &mut Builder, s: &State, gates: Gates, nesterov: bool) -> Expr {
    let (lr, mu, wd) = (b.scalar("lr"), b.scalar("momentum"), b.scalar("weight_decay"));
    let (w, g, m) = (Expr::Array(s.w), Expr::Array(s.g), Expr::Array(s.m));
    let grad = b.bind("grad", masked(gates.grad, g + wd * w.clone()));
    let m_new = b.bind("m_new", masked(gates.state, mu.clone() * m + grad.clone()));
    b.store(s.m, m_new.clone());
    let step = if nesterov { grad + mu * m_new } else { m_new };
    w - lr * step
}

/// Adam or AdamW with PyTorch's arithmetic; stores `m` and `v`, returns the new `w`.
fn adam(b: &mut Builder, s: &State, gates: Gates, decoupled: bool) -> Expr {
    let names = ["lr", "beta1", "beta2", "eps", "weight_decay", "bias_correction1", "bias_correction2_sqrt"];
    let [lr, b1, b2, eps, wd, bc1, bc2_sqrt] = names.map(|n| b.scalar(n));
    let (w, g, m) = (Expr::Array(s.w), Expr::Array(s.g), Expr::Array(s.m));
    let v = Expr::Array(s.v.unwrap_or(s.m));
    let grad = if decoupled { g } else { g + wd.clone() * w.clone() };
    let grad = b.bind("grad", masked(gates.grad, grad));
    let one = || Expr::Const(1.0);
    let m_new = b.bind("m_new", masked(gates.state, b1.clone() * m + (one() - b1) * grad.clone()));
    let v_new = b.bind("v_new", masked(gates.state, b2.clone() * v + (one() - b2) * (grad.clone() * grad)));
    b.store(s.m, m_new.clone());
    if let Some(v) = s.v {
        b.store(v, v_new.clone());
    }
    let denom = v_new.sqrt() / bc2_sqrt + eps;
    let w = if decoupled { w * (one() - masked(gates.decay, lr.clone() * wd)) } else { w };
    w - (lr / bc1) * (m_new / denom)
}

fn optimizer_step(b: &mut Builder, s: &State, gates: Gates, optimizer: Optimizer) -> Expr {
    match optimizer {
        Optimizer::Sgd { nesterov } => sgd(b, s, gates, nesterov),
        Optimizer::Adam { decoupled_decay } => adam(b, s, gates, decoupled_decay),
    }
}

fn optimizer_name(optimizer: Optimizer) -> &'static str {
    match optimizer {
        Optimizer::Sgd { nesterov: false } => "sgd",
        Optimizer::Sgd { nesterov: true } => "sgd_nesterov",
        Optimizer::Adam { decoupled_decay: false } => "adam",
        Optimizer::Adam { decoupled_decay: true } => "adamw",
    }
}

fn program_name(rule: UpdateRule, optimizer: Optimizer, threshold: Option<&KernelDef>) -> String {
    let rule = match rule {
        UpdateRule::Hard => "hard".to_string(),
        UpdateRule::SoftThreshold => format!("soft_threshold[{}]", threshold.map_or("soft_threshold", |d| &d.name)),
    };
    format!("update_{rule}_{}", optimizer_name(optimizer))
}

/// The fused update program; `threshold` (one array, one scalar) replaces the prelude's
/// `soft_threshold` in [`UpdateRule::SoftThreshold`] and is ignored by [`UpdateRule::Hard`].
pub fn update_program(
    rule: UpdateRule,
    optimizer: Optimizer,
    threshold: Option<&KernelDef>,
) -> Result<Program, KernelError> {
    let mut b = Builder::new(program_name(rule, optimizer, threshold));
    let adam = matches!(optimizer, Optimizer::Adam { .. });
    let w = b.array(if rule == UpdateRule::Hard { "w" } else { "raw" });
    let eff = (rule == UpdateRule::SoftThreshold).then(|| b.array("eff"));
    let (g, m) = (b.array("g"), b.array("m"));
    let v = adam.then(|| b.array("v"));
    let mask = Expr::Array(b.array("mask"));
    let state = State { w, g, m, v };
    match eff {
        None => {
            let gates = Gates { grad: Some(&mask), decay: None, state: Some(&mask) };
            let w_new = optimizer_step(&mut b, &state, gates, optimizer);
            b.store(w, mask * w_new);
        }
        Some(eff) => {
            // Straight-through: the dense gradient updates the raw weights unmasked.
            let raw_new = optimizer_step(&mut b, &state, Gates::default(), optimizer);
            let raw_new = b.bind("raw_new", raw_new);
            b.store(w, raw_new.clone());
            let (tau, scale) = (b.scalar("tau"), b.scalar("scale"));
            let default = prelude::soft_threshold();
            let shrunk = Expr::from_kexpr(threshold.unwrap_or(&default), &[raw_new], &[tau])?;
            b.store(eff, mask * shrunk * scale);
        }
    }
    b.program.validate()?;
    Ok(b.program)
}

/// The optimizer step alone on weights that are never masked: dense parameters, and the raw
/// weights of ST-3 (the first of the engine's two passes, see the module docs). Arrays
/// `raw, g, m[, v]`, scalars as for [`UpdateRule::Hard`]. With `gated` (ST-3's `ste: masked`)
/// a last array `eff` is read and the gradient, L2 decay included, and AdamW's decoupled decay
/// are multiplied by `eff != 0`; momentum and moments are never masked.
pub fn raw_update_program(optimizer: Optimizer, gated: bool) -> Result<Program, KernelError> {
    let name = format!("update_{}_{}", if gated { "gated" } else { "dense" }, optimizer_name(optimizer));
    let mut b = Builder::new(name);
    let (w, g, m) = (b.array("raw"), b.array("g"), b.array("m"));
    let v = matches!(optimizer, Optimizer::Adam { .. }).then(|| b.array("v"));
    let gate = gated.then(|| {
        let eff = Expr::Array(b.array("eff"));
        b.bind("gate", Expr::binary(BinOp::Ne, eff, Expr::Const(0.0)))
    });
    let gates = Gates { grad: gate.as_ref(), decay: gate.as_ref(), state: None };
    let w_new = optimizer_step(&mut b, &State { w, g, m, v }, gates, optimizer);
    b.store(w, w_new);
    b.program.validate()?;
    Ok(b.program)
}

/// ST-3's effective weights, the engine's second pass: `eff = mask * threshold(raw, tau) *
/// scale`, with `threshold` a kernel of one array and one scalar (the prelude's
/// `soft_threshold` or a user kernel). Run per output channel with [`Kernel::run_rows`] to give
/// each row its own `scale`.
pub fn effective_program(threshold: &KernelDef) -> Result<Program, KernelError> {
    let mut b = Builder::new(format!("effective[{}]", threshold.name));
    let (raw, mask, eff) = (b.array("raw"), b.array("mask"), b.array("eff"));
    let (tau, scale) = (b.scalar("tau"), b.scalar("scale"));
    let shrunk = Expr::from_kexpr(threshold, &[Expr::Array(raw)], &[tau])?;
    b.store(eff, Expr::Array(mask) * shrunk * scale);
    b.program.validate()?;
    Ok(b.program)
}

/// Multiplies weights and optimizer state by a new mask (exact zeros where it is 0): arrays
/// `w, m[, v], mask`.
pub fn remask_program(adam: bool) -> Result<Program, KernelError> {
    let mut b = Builder::new(format!("remask_{}", if adam { "adam" } else { "sgd" }));
    let mut state = vec![b.array("w"), b.array("m")];
    if adam {
        state.push(b.array("v"));
    }
    let mask = Expr::Array(b.array("mask"));
    for a in state {
        b.store(a, Expr::Array(a) * mask.clone());
    }
    b.program.validate()?;
    Ok(b.program)
}

/// `out = raw * mask * scale`: the values whose k-th smallest magnitude is ST-3's `tau` when
/// masks or ST-3-sigma's per-layer scale make them differ from the raw weights.
pub fn masked_scaled_program() -> Result<Program, KernelError> {
    let mut b = Builder::new("masked_scaled".into());
    let (raw, mask, out) = (b.array("raw"), b.array("mask"), b.array("out"));
    let scale = b.scalar("scale");
    b.store(out, Expr::Array(raw) * Expr::Array(mask) * scale);
    b.program.validate()?;
    Ok(b.program)
}

/// The program of a score kernel (arrays as documented on [`Score`], no scalars).
pub fn score_program(score: Score) -> Result<Program, KernelError> {
    match score {
        Score::Magnitude => Program::from_kernel_def(&prelude::magnitude_score()),
        Score::Snip => Program::from_kernel_def(&prelude::snip_score()),
    }
}

/// A compiled fused update: what the training engine calls once per layer (or per row) and step.
#[derive(Clone)]
pub struct UpdateKernel {
    pub rule: UpdateRule,
    pub optimizer: Optimizer,
    kernel: Kernel,
}

impl UpdateKernel {
    pub fn compile(
        rule: UpdateRule,
        optimizer: Optimizer,
        threshold: Option<&KernelDef>,
    ) -> Result<UpdateKernel, KernelError> {
        let kernel = Kernel::compile(update_program(rule, optimizer, threshold)?)?;
        Ok(UpdateKernel { rule, optimizer, kernel })
    }

    /// Wraps `kernel`, compiled (for instance in a [`super::KernelModule`] with others) from
    /// `update_program(rule, optimizer, threshold)`; an error if it was compiled from anything else.
    pub fn from_kernel(
        rule: UpdateRule,
        optimizer: Optimizer,
        threshold: Option<&KernelDef>,
        kernel: Kernel,
    ) -> Result<UpdateKernel, KernelError> {
        let expected = update_program(rule, optimizer, threshold)?;
        if kernel.program() != &expected {
            let reason = format!("it was not compiled from `{}`", expected.name);
            return Err(KernelError::BadProgram { kernel: kernel.program().name.clone(), reason });
        }
        Ok(UpdateKernel { rule, optimizer, kernel })
    }

    pub fn program(&self) -> &Program {
        self.kernel.program()
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Updates in place; argument order as in the module table above. Parallel for large
    /// arrays, see [`Kernel::run`].
    pub fn run(&self, arrays: &mut [&mut [f32]], scalars: &[f32]) -> Result<(), KernelError> {
        self.kernel.run(arrays, scalars)
    }

    /// Soft-threshold update of a layer stored as rows of `row_len` (one per output channel),
    /// row `r` using `scales[r]` as `scale`; the `scale` in `scalars` is ignored.
    pub fn run_rows(
        &self,
        arrays: &mut [&mut [f32]],
        scalars: &[f32],
        row_len: usize,
        scales: &[f32],
    ) -> Result<(), KernelError> {
        let program = self.kernel.program();
        let Some(scale) = program.scalars.iter().position(|s| s == "scale") else {
            let reason = "a hard update has no per-row scale".to_string();
            return Err(KernelError::BadProgram { kernel: program.name.clone(), reason });
        };
        self.kernel.run_rows(arrays, scalars, row_len, scale, scales)
    }
}
