//! Fused program IR. In: [`KernelDef`]s (user and prelude kernels) and the composite update
//! rules built in `update.rs`. Out: a [`Program`], the per-element body of one pass over
//! several arrays: `let`s followed by stores, which codegen and the interpreter both consume.
//!
//! Semantics: for every index `i` in `0..n`, every `Array(a)` reads the value of array `a` at
//! `i` *before* any store of this element, the `let`s are evaluated in order, then each store
//! writes its array at `i`. So a program may update its inputs in place (`w <- w - lr * m`).

use std::fmt;
use std::ops;

use super::native::MAX_ARRAYS;
use super::KernelError;
use crate::ir::kernel::{BinOp, KExpr, KernelDef, UnOp};

/// An elementwise `f32` expression: [`KExpr`] plus references to earlier `let`s.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Const(f32),
    Array(usize),
    Scalar(usize),
    /// The value of the `let` with this index (only earlier `let`s are visible).
    Local(usize),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
}

/// `let NAME = VALUE`, referred to as `Expr::Local(index)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Let {
    pub name: String,
    pub value: Expr,
}

/// `ARRAY <- VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Store {
    pub array: usize,
    pub value: Expr,
}

/// A fused elementwise kernel: reads any of `arrays` and `scalars`, writes the stored arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub name: String,
    pub arrays: Vec<String>,
    pub scalars: Vec<String>,
    pub lets: Vec<Let>,
    pub stores: Vec<Store>,
}

impl Expr {
    pub fn unary(op: UnOp, a: Expr) -> Expr {
        Expr::Unary(op, Box::new(a))
    }

    pub fn binary(op: BinOp, a: Expr, b: Expr) -> Expr {
        Expr::Binary(op, Box::new(a), Box::new(b))
    }

    pub fn select(c: Expr, a: Expr, b: Expr) -> Expr {
        Expr::Select(Box::new(c), Box::new(a), Box::new(b))
    }

    pub fn abs(self) -> Expr {
        Expr::unary(UnOp::Abs, self)
    }

    pub fn sqrt(self) -> Expr {
        Expr::unary(UnOp::Sqrt, self)
    }

    pub fn max(self, b: Expr) -> Expr {
        Expr::binary(BinOp::Max, self, b)
    }

    /// Converts a `KExpr`, replacing its `Array(i)` by `arrays[i]` and `Scalar(i)` by
    /// `scalars[i]`: this is how a `KernelDef` is inlined into a larger program.
    pub fn from_kexpr(def: &KernelDef, arrays: &[Expr], scalars: &[Expr]) -> Result<Expr, KernelError> {
        check_arity(def, "arrays", def.arrays.len(), arrays.len())?;
        check_arity(def, "scalars", def.scalars.len(), scalars.len())?;
        substitute(&def.name, &def.body, arrays, scalars)
    }

    /// True if the value is the same for every element (no arrays, no locals).
    pub fn is_invariant(&self) -> bool {
        match self {
            Expr::Const(_) | Expr::Scalar(_) => true,
            Expr::Array(_) | Expr::Local(_) => false,
            Expr::Unary(_, a) => a.is_invariant(),
            Expr::Binary(_, a, b) => a.is_invariant() && b.is_invariant(),
            Expr::Select(c, a, b) => c.is_invariant() && a.is_invariant() && b.is_invariant(),
        }
    }

    /// Calls `f` on every node, children before parents.
    pub fn visit(&self, f: &mut impl FnMut(&Expr)) {
        match self {
            Expr::Const(_) | Expr::Array(_) | Expr::Scalar(_) | Expr::Local(_) => {}
            Expr::Unary(_, a) => a.visit(f),
            Expr::Binary(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Expr::Select(c, a, b) => {
                c.visit(f);
                a.visit(f);
                b.visit(f);
            }
        }
        f(self);
    }
}

fn check_arity(def: &KernelDef, what: &'static str, expected: usize, found: usize) -> Result<(), KernelError> {
    if expected == found {
        return Ok(());
    }
    Err(KernelError::Arity { kernel: def.name.clone(), what, expected, found })
}

fn substitute(kernel: &str, e: &KExpr, arrays: &[Expr], scalars: &[Expr]) -> Result<Expr, KernelError> {
    let out_of_range = |what, index, len| KernelError::IndexOutOfRange { kernel: kernel.to_string(), what, index, len };
    let sub = |e| substitute(kernel, e, arrays, scalars);
    Ok(match e {
        KExpr::Const(c) => Expr::Const(*c),
        KExpr::Array(i) => arrays.get(*i).cloned().ok_or_else(|| out_of_range("array", *i, arrays.len()))?,
        KExpr::Scalar(i) => scalars.get(*i).cloned().ok_or_else(|| out_of_range("scalar", *i, scalars.len()))?,
        KExpr::Unary(op, a) => Expr::unary(*op, sub(a)?),
        KExpr::Binary(op, a, b) => Expr::binary(*op, sub(a)?, sub(b)?),
        KExpr::Select(c, a, b) => Expr::select(sub(c)?, sub(a)?, sub(b)?),
    })
}

impl Program {
    /// The program of a user kernel: its arrays plus one output array (named `out`, or `out_`
    /// etc. if that name is taken) that receives the body.
    pub fn from_kernel_def(def: &KernelDef) -> Result<Program, KernelError> {
        let arrays: Vec<Expr> = (0..def.arrays.len()).map(Expr::Array).collect();
        let scalars: Vec<Expr> = (0..def.scalars.len()).map(Expr::Scalar).collect();
        let value = Expr::from_kexpr(def, &arrays, &scalars)?;
        let mut out = String::from("out");
        while def.arrays.contains(&out) {
            out.push('_');
        }
        let mut names = def.arrays.clone();
        names.push(out);
        let program = Program {
            name: def.name.clone(),
            arrays: names,
            scalars: def.scalars.clone(),
            lets: Vec::new(),
            stores: vec![Store { array: def.arrays.len(), value }],
        };
        program.validate()?;
        Ok(program)
    }

    /// Checks every index, that something is stored, and that no array is stored twice.
    /// Codegen and the interpreter call this first, so they can index without panicking.
    pub fn validate(&self) -> Result<(), KernelError> {
        let mut result = Ok(());
        let mut check = |e: &Expr, locals: usize| {
            e.visit(&mut |node| {
                let (what, index, len) = match node {
                    Expr::Array(i) => ("array", *i, self.arrays.len()),
                    Expr::Scalar(i) => ("scalar", *i, self.scalars.len()),
                    Expr::Local(i) => ("let", *i, locals),
                    _ => return,
                };
                if index >= len && result.is_ok() {
                    result = Err(KernelError::IndexOutOfRange { kernel: self.name.clone(), what, index, len });
                }
            })
        };
        for (i, l) in self.lets.iter().enumerate() {
            check(&l.value, i);
        }
        for s in &self.stores {
            check(&s.value, self.lets.len());
        }
        result?;
        self.validate_stores()
    }

    fn validate_stores(&self) -> Result<(), KernelError> {
        let bad = |reason: String| Err(KernelError::BadProgram { kernel: self.name.clone(), reason });
        if self.stores.is_empty() {
            return bad("it stores no array".into());
        }
        if self.arrays.len() > MAX_ARRAYS {
            return bad(format!("it takes {} arrays, more than {MAX_ARRAYS}", self.arrays.len()));
        }
        let mut seen = vec![false; self.arrays.len()];
        for s in &self.stores {
            match seen.get_mut(s.array) {
                None => {
                    return Err(KernelError::IndexOutOfRange {
                        kernel: self.name.clone(),
                        what: "array",
                        index: s.array,
                        len: self.arrays.len(),
                    })
                }
                Some(true) => return bad(format!("array `{}` is stored twice", self.arrays[s.array])),
                Some(flag) => *flag = true,
            }
        }
        Ok(())
    }

    /// True for arrays this program writes.
    pub fn is_written(&self, array: usize) -> bool {
        self.stores.iter().any(|s| s.array == array)
    }

    /// Bytes moved per element: 4 per array read plus 4 per array written.
    pub fn bytes_per_element(&self) -> usize {
        let mut read = vec![false; self.arrays.len()];
        let mut mark = |e: &Expr| {
            e.visit(&mut |n| {
                if let Expr::Array(i) = n {
                    if let Some(r) = read.get_mut(*i) {
                        *r = true;
                    }
                }
            })
        };
        self.lets.iter().for_each(|l| mark(&l.value));
        self.stores.iter().for_each(|s| mark(&s.value));
        4 * (read.iter().filter(|r| **r).count() + self.stores.len())
    }
}

macro_rules! binary_operator {
    ($trait:ident, $method:ident, $op:expr) => {
        impl ops::$trait for Expr {
            type Output = Expr;
            fn $method(self, rhs: Expr) -> Expr {
                Expr::binary($op, self, rhs)
            }
        }
    };
}
binary_operator!(Add, add, BinOp::Add);
binary_operator!(Sub, sub, BinOp::Sub);
binary_operator!(Mul, mul, BinOp::Mul);
binary_operator!(Div, div, BinOp::Div);

impl ops::Neg for Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        Expr::unary(UnOp::Neg, self)
    }
}

/// Prints an expression with names, in the same form as `ShowExpr` for `KExpr`.
struct Show<'a> {
    expr: &'a Expr,
    program: &'a Program,
}

fn name(names: &[String], i: usize, prefix: &str) -> String {
    names.get(i).cloned().unwrap_or_else(|| format!("{prefix}{i}?"))
}

impl fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.program;
        let sub = |e| Show { expr: e, program: p };
        match self.expr {
            Expr::Const(c) => write!(f, "{c:?}"),
            Expr::Array(i) => write!(f, "{}", name(&p.arrays, *i, "array")),
            Expr::Scalar(i) => write!(f, "{}", name(&p.scalars, *i, "scalar")),
            Expr::Local(i) => match p.lets.get(*i) {
                Some(l) => write!(f, "{}", l.name),
                None => write!(f, "let{i}?"),
            },
            Expr::Unary(UnOp::Neg, a) => write!(f, "(-{})", sub(a)),
            Expr::Unary(op, a) => write!(f, "{}({})", op.name(), sub(a)),
            Expr::Binary(op @ (BinOp::Min | BinOp::Max), a, b) => {
                write!(f, "{}({}, {})", op.symbol(), sub(a), sub(b))
            }
            Expr::Binary(op, a, b) => write!(f, "({} {} {})", sub(a), op.symbol(), sub(b)),
            Expr::Select(c, a, b) => write!(f, "select({}, {}, {})", sub(c), sub(a), sub(b)),
        }
    }
}

/// Stable text form for `sprsc check --emit kernels`: floats in `{:?}` form (shortest
/// round-trip), one statement per line, stores marked `<-`.
impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "fused {}({}; {}) {{", self.name, self.arrays.join(", "), self.scalars.join(", "))?;
        for l in &self.lets {
            writeln!(f, "  let {} = {}", l.name, Show { expr: &l.value, program: self })?;
        }
        for s in &self.stores {
            let array = name(&self.arrays, s.array, "array");
            writeln!(f, "  {array} <- {}", Show { expr: &s.value, program: self })?;
        }
        write!(f, "}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::Span;

    fn def(arrays: &[&str], body: KExpr) -> KernelDef {
        let arrays = arrays.iter().map(|s| s.to_string()).collect();
        KernelDef { name: "k".into(), arrays, scalars: vec!["s".into()], body, span: Span::default() }
    }

    #[test]
    fn output_name_avoids_inputs() {
        let body = KExpr::Binary(BinOp::Add, Box::new(KExpr::Array(0)), Box::new(KExpr::Const(1e-8)));
        let p = Program::from_kernel_def(&def(&["out", "out_"], body)).unwrap();
        assert_eq!(p.to_string(), "fused k(out, out_, out__; s) {\n  out__ <- (out + 1e-8)\n}");
    }

    #[test]
    fn lets_see_only_earlier_lets() {
        let mut p = Program::from_kernel_def(&def(&["w"], KExpr::Array(0))).unwrap();
        p.lets.push(Let { name: "a".into(), value: Expr::Local(0) });
        assert!(matches!(p.validate(), Err(KernelError::IndexOutOfRange { what: "let", .. })));
    }

    #[test]
    fn invariance() {
        assert!((Expr::Scalar(0) * Expr::Const(2.0)).is_invariant());
        assert!(!(Expr::Scalar(0) * Expr::Array(0)).is_invariant());
        assert!(!Expr::Local(0).is_invariant());
    }
}
