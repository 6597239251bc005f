//! Cranelift code generation. In: validated [`Program`]s. Out: one `JITModule` holding one
//! native function per program, `extern "C" fn(arrays: *const *mut f32, scalars: *const f32,
//! n: usize)`, which runs the program over elements `0..n`.
//!
//! Shape of each function: array bases, scalars, constants and every loop-invariant
//! subexpression are computed once in the entry block (scalar, then splatted); an `F32X4`
//! bottom-tested main loop covers `n & !3` elements; a scalar tail does the rest. Per element,
//! all loads come before all stores, so programs may update their inputs in place.
//! Operations follow TECH-NOTES: abs/neg by bit masks with a hoisted `-0.0` splat, sign by a
//! clamp, min/max/select by `bitselect(fcmp)`, comparisons by `band(fcmp, 1.0)`, no FMA
//! (results must match the interpreter bit for bit).

use std::collections::HashMap;

use cranelift::prelude::*;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};

use super::program::{Expr, Program};
use super::KernelError;
use crate::ir::kernel::{BinOp, UnOp};

/// 2^127, applied twice by `sign`.
const SIGN_SCALE: f32 = f32::from_bits(254 << 23);
const EXPF: &str = "sprsc_expf";
const LOGF: &str = "sprsc_logf";

// Called from JIT code for `exp`/`log`, which Cranelift has no instruction for; the
// interpreter calls the same `f32` methods, so results match bit for bit.
extern "C" fn sprsc_expf(x: f32) -> f32 {
    x.exp()
}

extern "C" fn sprsc_logf(x: f32) -> f32 {
    x.ln()
}

/// Compiles `programs` (already validated) into one module; returns it with one id each.
pub(super) fn compile_module(programs: &[Program]) -> Result<(JITModule, Vec<FuncId>), KernelError> {
    let mut module = new_module()?;
    let result = define_all(&mut module, programs);
    match result {
        Ok(ids) => Ok((module, ids)),
        Err(e) => {
            super::native::free_module(module);
            Err(e)
        }
    }
}

fn define_all(module: &mut JITModule, programs: &[Program]) -> Result<Vec<FuncId>, KernelError> {
    let libm = declare_libm(module)?;
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut ids = Vec::with_capacity(programs.len());
    for (index, program) in programs.iter().enumerate() {
        let codegen_err = |message: String| KernelError::Codegen { kernel: program.name.clone(), message };
        let ptr = module.target_config().pointer_type();
        ctx.func.signature = module.make_signature();
        for _ in 0..3 {
            ctx.func.signature.params.push(AbiParam::new(ptr));
        }
        let id = module
            .declare_function(&format!("sprsc_kernel_{index}"), Linkage::Export, &ctx.func.signature)
            .map_err(|e| codegen_err(e.to_string()))?;
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let expf = module.declare_func_in_func(libm[0], b.func);
            let logf = module.declare_func_in_func(libm[1], b.func);
            Emitter::build(&mut b, program, ptr, [expf, logf]);
            b.finalize(module.target_config());
        }
        module.define_function(id, &mut ctx).map_err(|e| codegen_err(format!("{e:?}")))?;
        module.clear_context(&mut ctx);
        ids.push(id);
    }
    module
        .finalize_definitions()
        .map_err(|e| KernelError::Codegen { kernel: "<module>".into(), message: e.to_string() })?;
    Ok(ids)
}

fn new_module() -> Result<JITModule, KernelError> {
    let host = |e: &dyn std::fmt::Display| KernelError::Host(e.to_string());
    let mut flags = settings::builder();
    for (name, value) in [("opt_level", "speed"), ("is_pic", "false"), ("use_colocated_libcalls", "false")] {
        flags.set(name, value).map_err(|e| host(&e))?;
    }
    let isa =
        cranelift_native::builder().map_err(|e| host(&e))?.finish(settings::Flags::new(flags)).map_err(|e| host(&e))?;
    let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
    builder.symbol(EXPF, sprsc_expf as *const u8);
    builder.symbol(LOGF, sprsc_logf as *const u8);
    Ok(JITModule::new(builder))
}

fn declare_libm(module: &mut JITModule) -> Result<[FuncId; 2], KernelError> {
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(types::F32));
    sig.returns.push(AbiParam::new(types::F32));
    let declare = |m: &mut JITModule, name: &str| {
        m.declare_function(name, Linkage::Import, &sig)
            .map_err(|e| KernelError::Codegen { kernel: "<module>".into(), message: e.to_string() })
    };
    Ok([declare(module, EXPF)?, declare(module, LOGF)?])
}

/// Vector (`F32X4`, main loop) or scalar (`F32`, tail and hoisted values).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Width {
    Vector,
    Scalar,
}

/// A value hoisted to the entry block, in both widths.
#[derive(Clone, Copy)]
struct Pair {
    scalar: Value,
    vector: Value,
}

impl Pair {
    fn get(self, w: Width) -> Value {
        match w {
            Width::Vector => self.vector,
            Width::Scalar => self.scalar,
        }
    }
}

struct Emitter<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    program: &'a Program,
    libm: [codegen::ir::FuncRef; 2],
    consts: HashMap<u32, Pair>,
    scalars: Vec<Pair>,
    /// Loop-invariant subexpressions, keyed by node address (the program is not mutated).
    invariants: HashMap<*const Expr, Pair>,
    bases: Vec<Option<Value>>,
}

/// Per-iteration values: the loaded array elements and the `let`s computed so far.
struct Frame {
    loads: Vec<Option<Value>>,
    locals: Vec<Value>,
}

fn mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

impl<'a, 'b> Emitter<'a, 'b> {
    fn build(b: &'a mut FunctionBuilder<'b>, program: &'a Program, ptr: Type, libm: [codegen::ir::FuncRef; 2]) {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let (arrays_ptr, scalars_ptr, n) = (params[0], params[1], params[2]);
        let mut e = Emitter {
            b,
            program,
            libm,
            consts: HashMap::new(),
            scalars: Vec::new(),
            invariants: HashMap::new(),
            bases: Vec::new(),
        };
        e.hoist_entry_values(arrays_ptr, scalars_ptr, ptr);
        e.emit_loops(n, ptr);
    }

    fn hoist_entry_values(&mut self, arrays_ptr: Value, scalars_ptr: Value, ptr: Type) {
        let p = self.program;
        let used = used_arrays(p);
        self.bases = (0..p.arrays.len())
            .map(|i| {
                let offset = (i * ptr.bytes() as usize) as i32;
                used[i].then(|| self.b.ins().load(ptr, mem(), arrays_ptr, offset))
            })
            .collect();
        self.scalars = (0..p.scalars.len())
            .map(|i| {
                let s = self.b.ins().load(types::F32, mem(), scalars_ptr, (i * 4) as i32);
                self.splat_pair(s)
            })
            .collect();
        for c in [0.0f32, 1.0, -1.0, -0.0, SIGN_SCALE] {
            self.constant(c);
        }
        let frame = Frame { loads: Vec::new(), locals: Vec::new() };
        let roots = p.lets.iter().map(|l| &l.value).chain(p.stores.iter().map(|s| &s.value));
        for root in roots {
            self.hoist_invariants(root, &frame);
        }
    }

    fn splat_pair(&mut self, scalar: Value) -> Pair {
        let vector = self.b.ins().splat(types::F32X4, scalar);
        Pair { scalar, vector }
    }

    fn constant(&mut self, c: f32) -> Pair {
        if let Some(p) = self.consts.get(&c.to_bits()) {
            return *p;
        }
        let scalar = self.b.ins().f32const(c);
        let pair = self.splat_pair(scalar);
        self.consts.insert(c.to_bits(), pair);
        pair
    }

    /// Computes each maximal invariant compound subexpression once, in the entry block.
    fn hoist_invariants(&mut self, e: &Expr, frame: &Frame) {
        let compound = !matches!(e, Expr::Const(_) | Expr::Scalar(_) | Expr::Array(_) | Expr::Local(_));
        if compound && e.is_invariant() {
            let scalar = self.lower(e, Width::Scalar, frame);
            let pair = self.splat_pair(scalar);
            self.invariants.insert(e as *const Expr, pair);
            return;
        }
        match e {
            Expr::Unary(_, a) => self.hoist_invariants(a, frame),
            Expr::Binary(_, a, b) => {
                self.hoist_invariants(a, frame);
                self.hoist_invariants(b, frame);
            }
            Expr::Select(c, a, b) => {
                self.hoist_invariants(c, frame);
                self.hoist_invariants(a, frame);
                self.hoist_invariants(b, frame);
            }
            _ => {}
        }
        if let Expr::Const(c) = e {
            self.constant(*c);
        }
    }

    fn emit_loops(&mut self, n: Value, ptr: Type) {
        let vloop = self.b.create_block();
        let tail_check = self.b.create_block();
        let tail = self.b.create_block();
        let exit = self.b.create_block();
        for block in [vloop, tail_check, tail] {
            self.b.append_block_param(block, ptr);
        }
        let zero = self.b.ins().iconst(ptr, 0);
        let n4 = self.b.ins().band_imm_s(n, -4i64);
        let any_vector = self.b.ins().icmp_imm_u(IntCC::NotEqual, n4, 0);
        self.b.ins().brif(any_vector, vloop, &[zero.into()], tail_check, &[zero.into()]);

        self.b.switch_to_block(vloop);
        let i = self.b.block_params(vloop)[0];
        self.emit_element(i, Width::Vector);
        let next = self.b.ins().iadd_imm_u(i, 4);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, next, n4);
        self.b.ins().brif(more, vloop, &[next.into()], tail_check, &[next.into()]);

        self.b.switch_to_block(tail_check);
        let i = self.b.block_params(tail_check)[0];
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, i, n);
        self.b.ins().brif(more, tail, &[i.into()], exit, &[]);

        self.b.switch_to_block(tail);
        let i = self.b.block_params(tail)[0];
        self.emit_element(i, Width::Scalar);
        let next = self.b.ins().iadd_imm_u(i, 1);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, next, n);
        self.b.ins().brif(more, tail, &[next.into()], exit, &[]);

        self.b.switch_to_block(exit);
        self.b.ins().return_(&[]);
        self.b.seal_all_blocks();
    }

    /// Loads, lets, then stores of the element(s) at index `i`.
    fn emit_element(&mut self, i: Value, w: Width) {
        let ty = match w {
            Width::Vector => types::F32X4,
            Width::Scalar => types::F32,
        };
        let offset = self.b.ins().ishl_imm_u(i, 2);
        let read = read_arrays(self.program);
        let addrs: Vec<Option<Value>> =
            self.bases.clone().into_iter().map(|base| base.map(|b| self.b.ins().iadd(b, offset))).collect();
        let loads = addrs
            .iter()
            .zip(&read)
            .map(|(a, r)| a.filter(|_| *r).map(|a| self.b.ins().load(ty, mem(), a, 0)))
            .collect();
        let mut frame = Frame { loads, locals: Vec::new() };
        for l in &self.program.lets {
            let v = self.lower(&l.value, w, &frame);
            frame.locals.push(v);
        }
        let values: Vec<Value> = self.program.stores.iter().map(|s| self.lower(&s.value, w, &frame)).collect();
        for (s, v) in self.program.stores.iter().zip(values) {
            if let Some(addr) = addrs[s.array] {
                self.b.ins().store(mem(), v, addr, 0);
            }
        }
    }

    fn lower(&mut self, e: &Expr, w: Width, f: &Frame) -> Value {
        if let Some(p) = self.invariants.get(&(e as *const Expr)) {
            return p.get(w);
        }
        match e {
            Expr::Const(c) => self.constant(*c).get(w),
            // Indices were validated and every read array was loaded.
            Expr::Array(i) => f.loads[*i].expect("read array is loaded"),
            Expr::Scalar(i) => self.scalars[*i].get(w),
            Expr::Local(i) => f.locals[*i],
            Expr::Unary(op, a) => {
                let a = self.lower(a, w, f);
                self.unary(*op, a, w)
            }
            Expr::Binary(op, a, b) => {
                let (a, b) = (self.lower(a, w, f), self.lower(b, w, f));
                self.binary(*op, a, b, w)
            }
            Expr::Select(c, a, b) => {
                let (c, a, b) = (self.lower(c, w, f), self.lower(a, w, f), self.lower(b, w, f));
                let zero = self.constant(0.0).get(w);
                // `ne` is unordered-or-not-equal, so a NaN condition selects `a`.
                let cond = self.b.ins().fcmp(FloatCC::NotEqual, c, zero);
                self.choose(cond, a, b, w)
            }
        }
    }

    /// `a` where `cond` holds, else `b`: `select` on scalars, `bitselect` on vectors.
    fn choose(&mut self, cond: Value, a: Value, b: Value, w: Width) -> Value {
        match w {
            Width::Scalar => self.b.ins().select(cond, a, b),
            Width::Vector => {
                let mask = self.b.ins().bitcast(types::F32X4, MemFlagsData::new(), cond);
                self.b.ins().bitselect(mask, a, b)
            }
        }
    }

    fn unary(&mut self, op: UnOp, x: Value, w: Width) -> Value {
        let sign = self.constant(-0.0).get(w);
        match op {
            UnOp::Neg => self.b.ins().bxor(x, sign),
            UnOp::Abs => self.b.ins().band_not(x, sign),
            UnOp::Sign => {
                // clamp(x * 2^127 * 2^127, -1, 1): the products keep +-0 and NaN and push any
                // other value (down to 2^-149) past +-1. Four ops and no select mask, and the
                // same bits as the interpreter's `copysign(1, x)`; see the edge-value tests.
                let big = self.constant(SIGN_SCALE).get(w);
                let scaled = self.b.ins().fmul(x, big);
                let scaled = self.b.ins().fmul(scaled, big);
                let one = self.constant(1.0).get(w);
                let below_one = self.binary(BinOp::Min, scaled, one, w);
                let minus_one = self.constant(-1.0).get(w);
                self.binary(BinOp::Max, below_one, minus_one, w)
            }
            UnOp::Sqrt => self.b.ins().sqrt(x),
            UnOp::Exp => self.libm_call(0, x, w),
            UnOp::Log => self.libm_call(1, x, w),
        }
    }

    /// Calls `expf`/`logf`, one lane at a time on vectors.
    fn libm_call(&mut self, which: usize, x: Value, w: Width) -> Value {
        let f = self.libm[which];
        let call = |b: &mut FunctionBuilder, v: Value| {
            let inst = b.ins().call(f, &[v]);
            b.inst_results(inst)[0]
        };
        match w {
            Width::Scalar => call(self.b, x),
            Width::Vector => {
                let mut out = x;
                for lane in 0..4u8 {
                    let v = self.b.ins().extractlane(x, lane);
                    let r = call(self.b, v);
                    out = self.b.ins().insertlane(out, r, lane);
                }
                out
            }
        }
    }

    fn binary(&mut self, op: BinOp, a: Value, b: Value, w: Width) -> Value {
        let cc = match op {
            BinOp::Add => return self.b.ins().fadd(a, b),
            BinOp::Sub => return self.b.ins().fsub(a, b),
            BinOp::Mul => return self.b.ins().fmul(a, b),
            BinOp::Div => return self.b.ins().fdiv(a, b),
            BinOp::Min => {
                let lt = self.b.ins().fcmp(FloatCC::LessThan, b, a);
                return self.choose(lt, b, a, w);
            }
            BinOp::Max => {
                // `b > a` written as `a < b`: the operand order that lowers to one `maxps`.
                let lt = self.b.ins().fcmp(FloatCC::LessThan, a, b);
                return self.choose(lt, b, a, w);
            }
            BinOp::Lt => FloatCC::LessThan,
            BinOp::Le => FloatCC::LessThanOrEqual,
            BinOp::Gt => FloatCC::GreaterThan,
            BinOp::Ge => FloatCC::GreaterThanOrEqual,
            BinOp::Eq => FloatCC::Equal,
            BinOp::Ne => FloatCC::NotEqual,
        };
        let cond = self.b.ins().fcmp(cc, a, b);
        let (one, zero) = (self.constant(1.0).get(w), self.constant(0.0).get(w));
        match w {
            Width::Scalar => self.b.ins().select(cond, one, zero),
            Width::Vector => {
                // All-ones lanes keep the bits of 1.0, zero lanes give +0.0.
                let mask = self.b.ins().bitcast(types::F32X4, MemFlagsData::new(), cond);
                self.b.ins().band(mask, one)
            }
        }
    }
}

/// Arrays that are read (loaded each element).
fn read_arrays(p: &Program) -> Vec<bool> {
    let mut read = vec![false; p.arrays.len()];
    let roots = p.lets.iter().map(|l| &l.value).chain(p.stores.iter().map(|s| &s.value));
    for root in roots {
        root.visit(&mut |e| {
            if let Expr::Array(i) = e {
                read[*i] = true;
            }
        });
    }
    read
}

/// Arrays that are read or written (their base pointer is needed).
fn used_arrays(p: &Program) -> Vec<bool> {
    let mut used = read_arrays(p);
    for s in &p.stores {
        used[s.array] = true;
    }
    used
}
