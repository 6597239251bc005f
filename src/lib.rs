//! sprsc: a compiler for sparse neural-network training recipes.
//!
//! The pipeline, one module per phase (see ARCHITECTURE.md):
//! load (`syntax`: text -> AST, following `use`) -> check (`check`: AST -> plans or diagnostics)
//! -> lower (`ir::lower`: the techniques applied, the plan that trains) -> plan kernels
//! (`kernels::StepPrograms`: the fused step kernels a plan needs) -> run (`exec`).
//! [`compile_source`] is the front end up to lowering; `driver` runs plans.

#![deny(unsafe_code)]
// Diagnostics travel only on the error path, where their size costs nothing measurable.
#![allow(clippy::result_large_err)]

pub mod check;
pub mod cli;
pub mod data;
pub mod diagnostics;
pub mod driver;
pub mod exec;
pub mod fmt;
pub mod ir;
pub mod kernels;
pub mod lsp;
pub mod report;
pub mod sparsity;
pub mod syntax;

use std::path::{Path, PathBuf};

use check::{Checked, Override};
use diagnostics::{Diagnostic, SourceMap, Span};
use syntax::ast::{File, Item};

/// The embedded prelude: the built-in kernels, written in the language itself.
pub const PRELUDE: &str = include_str!("prelude.sprs");

/// What the front end made of a file: its sources (for rendering), the parsed files, the
/// checked plans, and every diagnostic, sorted.
pub struct Compilation {
    pub sources: SourceMap,
    pub files: Vec<File>,
    pub checked: Checked,
    pub diagnostics: Vec<Diagnostic>,
}

impl Compilation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Compiles source text as if read from `path` (`use` paths resolve relative to it).
/// `sets` are `--set` overrides as `path=value` strings.
pub fn compile_source(path: &Path, text: String, sets: &[String]) -> Compilation {
    compile_source_with(path, text, sets, &|p| std::fs::read_to_string(p))
}

/// [`compile_source`] with `use`d files read by `read` (the language server reads the editor's
/// unsaved documents before the disk).
pub fn compile_source_with(
    path: &Path,
    text: String,
    sets: &[String],
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Compilation {
    let mut sources = SourceMap::default();
    let mut diagnostics = Vec::new();
    let prelude_id = sources.add(PathBuf::from("<prelude>"), PRELUDE.to_string());
    let prelude = syntax::parse(PRELUDE, prelude_id).expect("the embedded prelude parses");
    let mut files = Vec::new();
    load(path, text, read, &mut sources, &mut files, &mut diagnostics);
    let overrides = parse_sets(sets, &mut sources, &mut diagnostics);
    let mut checked = Checked::default();
    if diagnostics.is_empty() {
        let (c, d) = check::check(&files, &prelude, &overrides);
        checked = c;
        diagnostics = d;
        diagnostics.extend(lower(&mut checked));
    }
    diagnostics::sort(&mut diagnostics);
    Compilation { sources, files, checked, diagnostics }
}

/// Lowers every checked plan; a technique that does not fit its model is an error.
fn lower(checked: &mut Checked) -> Vec<Diagnostic> {
    checked.plans.iter_mut().flat_map(ir::lower::lower).map(|e| e.to_diagnostic()).collect()
}

/// The fused step kernels `plan` needs (the last front-end step; the engine compiles them).
pub fn plan_kernels(plan: &ir::plan::Plan) -> Result<kernels::step::StepPrograms, kernels::step::StepError> {
    kernels::step::StepPrograms::for_plan(plan)
}

/// Reads and compiles a file; `Err` only when the main file itself cannot be read.
pub fn compile_file(path: &Path, sets: &[String]) -> std::io::Result<Compilation> {
    let text = std::fs::read_to_string(path)?;
    Ok(compile_source(path, text, sets))
}

/// Parses `text` and, recursively, the files it `use`s (each once).
fn load(
    path: &Path,
    text: String,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
    sources: &mut SourceMap,
    files: &mut Vec<File>,
    diags: &mut Vec<Diagnostic>,
) {
    let id = sources.add(path.to_path_buf(), text);
    let text = sources.files[id as usize].text.clone();
    let file = match syntax::parse(&text, id) {
        Ok(f) => f,
        Err(d) => {
            diags.extend(d);
            return;
        }
    };
    let uses: Vec<(String, Span)> = file
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Use(u) => Some((u.path.clone(), u.span)),
            _ => None,
        })
        .collect();
    files.push(file);
    for (rel, span) in uses {
        let target = path.parent().unwrap_or(Path::new(".")).join(&rel);
        if sources.files.iter().any(|f| same_file(&f.path, &target)) {
            continue;
        }
        match read(&target) {
            Ok(t) => load(&target, t, read, sources, files, diags),
            Err(e) => diags.push(
                Diagnostic::error("E0003", format!("cannot read `{rel}`: {e}"))
                    .at(span, "used here")
                    .with_help("`use` paths are relative to the file that contains them"),
            ),
        }
    }
}

pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// `--set a.b=value`: each value is parsed as a pseudo-file of its own named `--set a.b`.
fn parse_sets(sets: &[String], sources: &mut SourceMap, diags: &mut Vec<Diagnostic>) -> Vec<Override> {
    let mut out = Vec::new();
    for s in sets {
        let Some((path, value)) = s.split_once('=') else {
            let id = sources.add(PathBuf::from("--set"), s.clone());
            diags.push(
                Diagnostic::error("E0004", format!("`--set {s}` has no `=`"))
                    .at(Span::new(id, 0, s.len()), "expected `field=value`")
                    .with_help("for example `--set sparsity.target=99%`"),
            );
            continue;
        };
        let id = sources.add(PathBuf::from(format!("--set {path}")), value.to_string());
        match syntax::parse_value(value, id) {
            Ok(v) => out.push(Override { path: path.trim().split('.').map(str::to_string).collect(), value: v }),
            Err(d) => diags.push(d),
        }
    }
    out
}
