//! The IR: the training plan (`plan`), kernel expressions (`kernel`), sweeps, and their stable
//! text form for `sprsc check --emit ir`. In: checked recipes. Out: `Plan`s for the engine.

pub mod kernel;
pub mod lower;
pub mod memory;
pub mod names;
pub mod passes;
pub mod plan;
mod print;

use crate::diagnostics::Span;
use crate::syntax::ast::Value;

/// A grid of runs: every recipe x every combination of `vary` values x every seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub name: String,
    pub recipes: Vec<String>,
    pub vary: Vec<Vary>,
    /// Empty: each recipe's own seed.
    pub seeds: Vec<u64>,
    pub report: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Vary {
    pub path: Vec<String>,
    pub values: Vec<Value>,
}
