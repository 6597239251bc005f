//! Kernel expression IR: the elementwise arithmetic of `kernel` items (and of the embedded
//! prelude) after name resolution. In: checked `kernel` items. Out: [`KernelDef`]s that
//! `kernels/` compiles to native code or interprets.

use std::fmt;

use crate::diagnostics::Span;

/// A resolved elementwise kernel: `kernel NAME(ARRAYS; SCALARS) = BODY`.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelDef {
    pub name: String,
    /// Per-element inputs, in declaration order; `KExpr::Array(i)` indexes this list.
    pub arrays: Vec<String>,
    /// Per-call values (threshold, learning rate); `KExpr::Scalar(i)` indexes this list.
    pub scalars: Vec<String>,
    pub body: KExpr,
    pub span: Span,
}

/// An elementwise expression over `f32`. Comparisons yield `1.0` or `0.0`;
/// `Select(c, a, b)` is `a` where `c != 0.0` (NaN counts as true) and `b` elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub enum KExpr {
    Const(f32),
    Array(usize),
    Scalar(usize),
    Unary(UnOp, Box<KExpr>),
    Binary(BinOp, Box<KExpr>, Box<KExpr>),
    Select(Box<KExpr>, Box<KExpr>, Box<KExpr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Abs,
    /// `sign(x)`: -1, 0 or 1 (keeps the sign of zero: `sign(-0.0) = -0.0`); NaN stays NaN.
    Sign,
    Sqrt,
    Exp,
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `min(a, b)`: `b` if `b < a`, else `a` (so a NaN in `b` is ignored, one in `a` kept).
    Min,
    /// `max(a, b)`: `b` if `b > a`, else `a`.
    Max,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl UnOp {
    pub fn name(self) -> &'static str {
        match self {
            UnOp::Neg => "neg",
            UnOp::Abs => "abs",
            UnOp::Sign => "sign",
            UnOp::Sqrt => "sqrt",
            UnOp::Exp => "exp",
            UnOp::Log => "log",
        }
    }
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Min => "min",
            BinOp::Max => "max",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
        }
    }
}

/// Prints an expression with array and scalar names, fully parenthesised, floats in `{:?}`
/// form so that the text is stable and round-trips.
pub struct ShowExpr<'a> {
    pub expr: &'a KExpr,
    pub def: &'a KernelDef,
}

impl<'a> fmt::Display for ShowExpr<'a> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sub = |e: &'a KExpr| ShowExpr { expr: e, def: self.def };
        match self.expr {
            KExpr::Const(c) => write!(f, "{c:?}"),
            KExpr::Array(i) => write!(f, "{}", self.def.arrays[*i]),
            KExpr::Scalar(i) => write!(f, "{}", self.def.scalars[*i]),
            KExpr::Unary(UnOp::Neg, a) => write!(f, "(-{})", sub(a)),
            KExpr::Unary(op, a) => write!(f, "{}({})", op.name(), sub(a)),
            KExpr::Binary(op @ (BinOp::Min | BinOp::Max), a, b) => {
                write!(f, "{}({}, {})", op.symbol(), sub(a), sub(b))
            }
            KExpr::Binary(op, a, b) => write!(f, "({} {} {})", sub(a), op.symbol(), sub(b)),
            KExpr::Select(c, a, b) => write!(f, "select({}, {}, {})", sub(c), sub(a), sub(b)),
        }
    }
}

impl fmt::Display for KernelDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel {}({}", self.name, self.arrays.join(", "))?;
        if !self.scalars.is_empty() {
            write!(f, "; {}", self.scalars.join(", "))?;
        }
        write!(f, ") = {}", ShowExpr { expr: &self.body, def: self })
    }
}
