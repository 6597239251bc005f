//! The syntax tree of a `.sprs` file: items, blocks, statements and values, each with its byte
//! span. Generic on purpose: the checker decides which keywords and arguments exist.

use crate::diagnostics::Span;

#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Use(UseItem),
    Kernel(KernelItem),
    Recipe(RecipeItem),
    Sweep(SweepItem),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UseItem {
    pub path: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KernelItem {
    pub name: Ident,
    pub arrays: Vec<Ident>,
    pub scalars: Vec<Ident>,
    pub body: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecipeItem {
    pub name: Ident,
    pub extends: Option<Ident>,
    pub body: Block,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SweepItem {
    pub name: Ident,
    pub body: Block,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub statements: Vec<Statement>,
    pub span: Span,
}

/// `keyword ARGS [{ ... }]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub keyword: Ident,
    pub args: Vec<Arg>,
    pub block: Option<Block>,
    pub span: Span,
}

/// A positional value (`key: None`) or a `key: value` pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub key: Option<Ident>,
    pub value: Value,
}

impl Arg {
    pub fn span(&self) -> Span {
        match &self.key {
            Some(k) => k.span.to(self.value.span),
            None => self.value.span,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Epochs,
    Steps,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// `is_int`: written without a fraction or exponent.
    Number {
        value: f64,
        is_int: bool,
    },
    /// `98%` as the fraction `0.98`.
    Percent(f64),
    Duration(f64, TimeUnit),
    Multiplier(f64),
    Shape(Vec<usize>),
    Str(String),
    Ident(String),
    Path(Vec<String>),
    List(Vec<Value>),
    Range(Box<Value>, Box<Value>),
    Call(Ident, Vec<Arg>),
}

impl ValueKind {
    /// What the value is, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match self {
            ValueKind::Number { is_int: true, .. } => "an integer",
            ValueKind::Number { .. } => "a number",
            ValueKind::Percent(_) => "a percentage",
            ValueKind::Duration(..) => "a duration",
            ValueKind::Multiplier(_) => "a multiplier",
            ValueKind::Shape(_) => "a shape",
            ValueKind::Str(_) => "a string",
            ValueKind::Ident(_) => "a name",
            ValueKind::Path(_) => "a field path",
            ValueKind::List(_) => "a list",
            ValueKind::Range(..) => "a range",
            ValueKind::Call(..) => "a call",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Number(f64),
    Name(String),
    Neg(Box<Expr>),
    Binary(String, Box<Expr>, Box<Expr>),
    Call(Ident, Vec<Expr>),
}
