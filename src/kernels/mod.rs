//! Kernel compiler. In: kernel expressions ([`KernelDef`]s from the front end, and the
//! composite update rules of sparse training). Out: native code (Cranelift JIT) behind safe
//! handles, a reference interpreter of the same semantics, and the exact top-k threshold.
//!
//! Pipeline: `KernelDef` / update rule -> [`Program`] (fused IR, `program.rs`) -> native
//! function (`codegen.rs`, `native.rs`) -> [`Kernel::run`] (parallel driver, `driver.rs`).

mod codegen;
mod driver;
mod error;
pub mod interp;
mod native;
pub mod program;
pub mod step;
pub mod topk;
pub mod update;

use std::sync::Arc;

pub use driver::PARALLEL_THRESHOLD;
pub use error::KernelError;
pub use native::MAX_ARRAYS;
pub use program::{Expr, Let, Program, Store};
pub use topk::{keep_threshold, kth_largest_abs, mask_by_threshold, sparsity_threshold, Threshold};
pub use update::{prelude, score_program, Optimizer, Score, UpdateKernel, UpdateRule};

use crate::ir::kernel::KernelDef;
use native::NativeFn;

/// A set of kernels compiled together into one JIT module. The module's code is freed when
/// this value and every [`Kernel`] cloned out of it have been dropped.
pub struct KernelModule {
    kernels: Vec<Kernel>,
}

impl KernelModule {
    /// Validates and compiles `programs`; kernel `i` of the result is `programs[i]`.
    pub fn compile(programs: Vec<Program>) -> Result<KernelModule, KernelError> {
        for p in &programs {
            p.validate()?;
        }
        let (module, ids) = codegen::compile_module(&programs)?;
        let shapes: Vec<(usize, usize)> = programs.iter().map(|p| (p.arrays.len(), p.scalars.len())).collect();
        let natives = native::wrap_module(module, &ids, &shapes);
        let kernels = programs
            .into_iter()
            .zip(natives)
            .map(|(program, native)| Kernel { program: Arc::new(program), native })
            .collect();
        Ok(KernelModule { kernels })
    }

    pub fn kernels(&self) -> &[Kernel] {
        &self.kernels
    }

    pub fn into_kernels(self) -> Vec<Kernel> {
        self.kernels
    }
}

/// One compiled program. Cheap to clone, `Send + Sync`; keeps its module's code alive.
#[derive(Clone)]
pub struct Kernel {
    program: Arc<Program>,
    native: NativeFn,
}

impl Kernel {
    /// Compiles one program in a module of its own.
    pub fn compile(program: Program) -> Result<Kernel, KernelError> {
        let mut kernels = KernelModule::compile(vec![program])?.into_kernels();
        kernels.pop().ok_or_else(|| KernelError::Host("module compiled no kernel".into()))
    }

    /// Compiles a user kernel; its arrays come first, then the output array (see
    /// [`Program::from_kernel_def`]).
    pub fn from_def(def: &KernelDef) -> Result<Kernel, KernelError> {
        Kernel::compile(Program::from_kernel_def(def)?)
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Runs the kernel over all elements, in parallel on the current rayon pool for arrays of
    /// at least [`PARALLEL_THRESHOLD`] elements. `arrays` in the order of
    /// `program().arrays`, `scalars` in the order of `program().scalars`; all arrays must have
    /// the same length. Arrays the program only reads are left unchanged.
    pub fn run(&self, arrays: &mut [&mut [f32]], scalars: &[f32]) -> Result<(), KernelError> {
        let n = check_call(&self.program, arrays, scalars)?;
        self.refused(driver::run_chunked(&self.native, arrays, scalars, n))
    }

    /// As [`Kernel::run`], always on the calling thread.
    pub fn run_serial(&self, arrays: &mut [&mut [f32]], scalars: &[f32]) -> Result<(), KernelError> {
        check_call(&self.program, arrays, scalars)?;
        self.refused(self.native.call(arrays, scalars))
    }

    /// Runs the kernel on consecutive rows of `row_len` elements, with scalar number
    /// `per_row` taking `values[r]` in row `r` (the value in `scalars` is ignored): ST-3's
    /// per-output-channel `scale`. The array length must be `row_len * values.len()`.
    pub fn run_rows(
        &self,
        arrays: &mut [&mut [f32]],
        scalars: &[f32],
        row_len: usize,
        per_row: usize,
        values: &[f32],
    ) -> Result<(), KernelError> {
        let n = check_call(&self.program, arrays, scalars)?;
        if per_row >= scalars.len() {
            let (kernel, len) = (self.program.name.clone(), scalars.len());
            return Err(KernelError::IndexOutOfRange { kernel, what: "scalar", index: per_row, len });
        }
        if row_len.checked_mul(values.len()) != Some(n) {
            let kernel = self.program.name.clone();
            let array = self.program.arrays.first().cloned().unwrap_or_default();
            let expected = row_len.saturating_mul(values.len());
            return Err(KernelError::Length { kernel, array, expected, found: n });
        }
        if n == 0 {
            return Ok(());
        }
        self.refused(driver::run_rows(&self.native, arrays, scalars, row_len, per_row, values))
    }

    /// Runs the reference interpreter instead of native code (same results, bit for bit).
    pub fn interpret(&self, arrays: &mut [&mut [f32]], scalars: &[f32]) -> Result<(), KernelError> {
        interp::interpret(&self.program, arrays, scalars)
    }

    fn refused(&self, ok: bool) -> Result<(), KernelError> {
        // Unreachable after `check_call`; kept as an error rather than a panic.
        ok.then_some(()).ok_or_else(|| KernelError::BadProgram {
            kernel: self.program.name.clone(),
            reason: "native call refused its arguments".into(),
        })
    }
}

/// Checks the argument counts and that all arrays have one length, which it returns.
pub(crate) fn check_call(program: &Program, arrays: &[&mut [f32]], scalars: &[f32]) -> Result<usize, KernelError> {
    let arity = |what, expected, found| KernelError::Arity { kernel: program.name.clone(), what, expected, found };
    if arrays.len() != program.arrays.len() {
        return Err(arity("arrays", program.arrays.len(), arrays.len()));
    }
    if scalars.len() != program.scalars.len() {
        return Err(arity("scalars", program.scalars.len(), scalars.len()));
    }
    let n = arrays.first().map_or(0, |a| a.len());
    for (a, name) in arrays.iter().zip(&program.arrays) {
        if a.len() != n {
            let (kernel, array) = (program.name.clone(), name.clone());
            return Err(KernelError::Length { kernel, array, expected: n, found: a.len() });
        }
    }
    Ok(n)
}
