//! Errors of the kernel compiler. In: a failed check, Cranelift error or bad call.
//! Out: [`KernelError`], which the front end turns into a diagnostic at the kernel's span.

use thiserror::Error;

/// Everything that can go wrong when building, compiling or calling a kernel.
/// No input `KernelDef` or `Program` makes this module panic; it returns one of these.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum KernelError {
    /// An expression refers to an array, scalar or `let` that does not exist.
    #[error("kernel `{kernel}`: {what} index {index} out of range (it has {len})")]
    IndexOutOfRange { kernel: String, what: &'static str, index: usize, len: usize },
    /// A kernel is used with a different number of arrays or scalars than it declares.
    #[error("kernel `{kernel}` takes {expected} {what}, but {found} were given")]
    Arity { kernel: String, what: &'static str, expected: usize, found: usize },
    /// Arrays passed to one call have different lengths.
    #[error("kernel `{kernel}`: array `{array}` has length {found}, expected {expected}")]
    Length { kernel: String, array: String, expected: usize, found: usize },
    /// A program writes no array, or writes one array twice.
    #[error("kernel `{kernel}`: {reason}")]
    BadProgram { kernel: String, reason: String },
    /// Cranelift rejected the generated code (verifier, codegen or linking).
    #[error("kernel `{kernel}`: code generation failed: {message}")]
    Codegen { kernel: String, message: String },
    /// The host ISA could not be detected or configured.
    #[error("native code generation is unavailable on this host: {0}")]
    Host(String),
}
