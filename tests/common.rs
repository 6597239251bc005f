//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use sprsc::diagnostics::{render_text, Diagnostic};
use sprsc::Compilation;

pub fn compile(path: &Path) -> Compilation {
    let text = std::fs::read_to_string(path).expect("test file is readable");
    sprsc::compile_source(path, text, &[])
}

/// Every diagnostic rendered without colour, with the path shortened to its file name.
pub fn rendered(comp: &Compilation, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&render_text(d, &comp.sources, false));
        out.push('\n');
    }
    out
}

/// 1-based line of a diagnostic's primary span.
pub fn line_of(comp: &Compilation, d: &Diagnostic) -> Option<usize> {
    d.span.map(|s| comp.sources.line_col(s.file, s.start).0)
}
