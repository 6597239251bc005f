//! Run-time errors of the engine (codes E07xx, assigned once, never reused; E0701, "not
//! implemented yet", is retired: every method the language names now runs). Each points at
//! the recipe line responsible where the plan has one.

use std::path::PathBuf;

use thiserror::Error;

use crate::diagnostics::Span;

#[derive(Debug, Error)]
pub enum RunError {
    #[error("the training loss became {value} at step {step} (epoch {epoch})")]
    NonFiniteLoss { value: f32, step: u64, epoch: u64, span: Span },

    #[error("the data set does not fit the model: {msg}")]
    DataMismatch { msg: String, span: Span },

    #[error("cannot write `{}`: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("training has no steps: {msg}")]
    NoSteps { msg: String, span: Span },

    #[error("the `{method}` scores are not finite in 32-bit floats for this network")]
    ScoreOverflow { method: &'static str, span: Span },

    #[error(
        "this run needs about {} of memory, {} is available ({detail})",
        crate::ir::memory::human(*needed),
        crate::ir::memory::human(*available)
    )]
    OutOfMemory { needed: u64, available: u64, detail: String, span: Span },

    #[error("cannot read the trained weights `{path}`: {why}")]
    WarmStartFile { path: String, why: String, span: Span },

    #[error("the trained weights `{path}` do not fit the model: {first}")]
    WarmStartMismatch { path: String, first: String, rest: Vec<String>, span: Span },

    #[error("internal error: the plan is inconsistent: {msg}")]
    Plan { msg: String, span: Span },

    #[error("internal error: a kernel failed to compile: {msg}")]
    KernelCompile { msg: String, span: Span },
}

impl RunError {
    pub fn code(&self) -> &'static str {
        match self {
            RunError::NonFiniteLoss { .. } => "E0702",
            RunError::DataMismatch { .. } => "E0703",
            RunError::Io { .. } => "E0704",
            RunError::NoSteps { .. } => "E0705",
            RunError::Plan { .. } => "E0706",
            RunError::KernelCompile { .. } => "E0707",
            RunError::ScoreOverflow { .. } => "E0708",
            RunError::OutOfMemory { .. } => "E0710",
            RunError::WarmStartFile { .. } => "E0712",
            RunError::WarmStartMismatch { .. } => "E0713",
        }
    }

    pub fn help(&self) -> Option<String> {
        Some(match self {
            RunError::NonFiniteLoss { .. } => {
                "lower the learning rate, add `clip_grad_norm`, or shorten the sparsity ramp".into()
            }
            RunError::DataMismatch { .. } => "make `input` and the last layer match the data set".into(),
            RunError::Io { .. } => "choose another `output { dir ... }` or fix its permissions".into(),
            RunError::NoSteps { .. } => "use a smaller `batch`, more data, or more `epochs`".into(),
            RunError::ScoreOverflow { .. } => {
                "the product of weights along a path overflows: use `snip` or `grasp`, or a shallower model".into()
            }
            RunError::OutOfMemory { .. } => format!(
                "use smaller layers or a smaller `batch`, or run where more memory is free \
                 (`sprsc check --emit ir` prints the estimate; ${} overrides what is available)",
                super::memory::AVAILABLE_VAR
            ),
            RunError::WarmStartFile { .. } => {
                "`init { from \"PATH\" }` reads a safetensors file of f32 tensors (a relative path is from \
                 the working directory)"
                    .into()
            }
            RunError::WarmStartMismatch { .. } => {
                "the file's names and shapes must be the model's (`sprsc check --emit ir` lists its params; \
                 PyTorch `state_dict` names)"
                    .into()
            }
            RunError::Plan { .. } | RunError::KernelCompile { .. } => {
                "this is a bug in sprsc; please report it with the recipe".into()
            }
        })
    }

    pub fn span(&self) -> Option<Span> {
        match self {
            RunError::NonFiniteLoss { span, .. }
            | RunError::DataMismatch { span, .. }
            | RunError::NoSteps { span, .. }
            | RunError::Plan { span, .. }
            | RunError::KernelCompile { span, .. }
            | RunError::ScoreOverflow { span, .. }
            | RunError::OutOfMemory { span, .. }
            | RunError::WarmStartFile { span, .. }
            | RunError::WarmStartMismatch { span, .. } => Some(*span),
            RunError::Io { .. } => None,
        }
    }

    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RunError {
        let path = path.into();
        move |source| RunError::Io { path, source }
    }
}

impl RunError {
    /// The presentation form, pointing at the recipe line responsible (else at `fallback`).
    pub fn to_diagnostic(&self, fallback: Span) -> crate::diagnostics::Diagnostic {
        let label = match self {
            RunError::WarmStartFile { .. } | RunError::WarmStartMismatch { .. } => "starting from this file",
            _ => "while running this",
        };
        let mut d = crate::diagnostics::Diagnostic::error(self.code(), self.to_string())
            .at(self.span().unwrap_or(fallback), label);
        if let RunError::WarmStartMismatch { rest, .. } = self {
            for r in rest.iter().take(20) {
                d = d.with_note(r.clone());
            }
            if rest.len() > 20 {
                d = d.with_note(format!("and {} more", rest.len() - 20));
            }
        }
        match self.help() {
            Some(h) => d.with_help(h),
            None => d,
        }
    }
}
