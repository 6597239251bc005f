//! Reference interpreter. In: a [`Program`], arrays and scalars. Out: the arrays updated
//! in place, element by element in plain scalar Rust. It defines the semantics the JIT must
//! match bit for bit, and serves as a fallback where native code is unavailable.

use super::program::{Expr, Program};
use super::{check_call, KernelError};
use crate::ir::kernel::{BinOp, UnOp};

/// Runs `program` over all elements. Argument order is `program.arrays` and `program.scalars`.
pub fn interpret(program: &Program, arrays: &mut [&mut [f32]], scalars: &[f32]) -> Result<(), KernelError> {
    program.validate()?;
    let n = check_call(program, arrays, scalars)?;
    let mut inputs = vec![0.0f32; arrays.len()];
    let mut locals = Vec::with_capacity(program.lets.len());
    let mut outputs = Vec::with_capacity(program.stores.len());
    for i in 0..n {
        // All loads of an element before its stores, as in the compiled code.
        for (v, a) in inputs.iter_mut().zip(arrays.iter()) {
            *v = a[i];
        }
        locals.clear();
        for l in &program.lets {
            let v = eval(&l.value, &inputs, scalars, &locals);
            locals.push(v);
        }
        outputs.clear();
        outputs.extend(program.stores.iter().map(|s| eval(&s.value, &inputs, scalars, &locals)));
        for (s, v) in program.stores.iter().zip(&outputs) {
            arrays[s.array][i] = *v;
        }
    }
    Ok(())
}

/// Evaluates one expression for one element; indices were validated by the caller.
pub fn eval(e: &Expr, arrays: &[f32], scalars: &[f32], locals: &[f32]) -> f32 {
    match e {
        Expr::Const(c) => *c,
        Expr::Array(i) => arrays[*i],
        Expr::Scalar(i) => scalars[*i],
        Expr::Local(i) => locals[*i],
        Expr::Unary(op, a) => unary(*op, eval(a, arrays, scalars, locals)),
        Expr::Binary(op, a, b) => binary(*op, eval(a, arrays, scalars, locals), eval(b, arrays, scalars, locals)),
        Expr::Select(c, a, b) => {
            let c = eval(c, arrays, scalars, locals);
            let (a, b) = (eval(a, arrays, scalars, locals), eval(b, arrays, scalars, locals));
            // `!=` is true for NaN, so a NaN condition selects `a`.
            if c != 0.0 {
                a
            } else {
                b
            }
        }
    }
}

pub fn unary(op: UnOp, x: f32) -> f32 {
    match op {
        UnOp::Neg => -x,
        UnOp::Abs => x.abs(),
        UnOp::Sign => {
            if x == 0.0 || x.is_nan() {
                x
            } else {
                1.0f32.copysign(x)
            }
        }
        UnOp::Sqrt => x.sqrt(),
        UnOp::Exp => x.exp(),
        UnOp::Log => x.ln(),
    }
}

pub fn binary(op: BinOp, a: f32, b: f32) -> f32 {
    let truth = |c: bool| if c { 1.0 } else { 0.0 };
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Min => {
            if b < a {
                b
            } else {
                a
            }
        }
        BinOp::Max => {
            if b > a {
                b
            } else {
                a
            }
        }
        BinOp::Lt => truth(a < b),
        BinOp::Le => truth(a <= b),
        BinOp::Gt => truth(a > b),
        BinOp::Ge => truth(a >= b),
        BinOp::Eq => truth(a == b),
        BinOp::Ne => truth(a != b),
    }
}

#[cfg(test)]
mod tests {
    use super::{binary, unary};
    use crate::ir::kernel::{BinOp, UnOp};

    #[test]
    fn sign_keeps_zeros_and_nan() {
        assert_eq!(unary(UnOp::Sign, -0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(unary(UnOp::Sign, 0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(unary(UnOp::Sign, -1e-45), -1.0);
        assert_eq!(unary(UnOp::Sign, f32::INFINITY), 1.0);
        assert!(unary(UnOp::Sign, f32::NAN).is_nan());
    }

    #[test]
    fn min_max_ignore_nan_in_second_operand_only() {
        assert_eq!(binary(BinOp::Min, 1.0, f32::NAN), 1.0);
        assert!(binary(BinOp::Min, f32::NAN, 1.0).is_nan());
        assert_eq!(binary(BinOp::Max, 1.0, f32::NAN), 1.0);
        assert!(binary(BinOp::Max, f32::NAN, 1.0).is_nan());
        // Equal operands: the first one, so the sign of zero is the first's.
        assert_eq!(binary(BinOp::Max, -0.0, 0.0).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn comparisons_with_nan() {
        assert_eq!(binary(BinOp::Ne, f32::NAN, f32::NAN), 1.0);
        assert_eq!(binary(BinOp::Eq, f32::NAN, f32::NAN), 0.0);
        assert_eq!(binary(BinOp::Le, f32::NAN, 1.0), 0.0);
    }
}
