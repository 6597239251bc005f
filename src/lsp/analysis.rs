//! One open document compiled as `sprsc check` compiles it, except that files the editor has
//! open are read from the editor, not the disk. The result's diagnostics become LSP diagnostics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lsp_types as lt;

use super::pos::{path_to_uri, LineIndex};
use crate::check::{self, Checked};
use crate::diagnostics::{Diagnostic, Severity, SourceMap, Span};
use crate::syntax::{self, ast::File, ast::Item};
use crate::Compilation;

/// The main file's index in the source map (0 is the prelude), as in `compile_source`.
pub const MAIN: u32 = 1;

/// Texts of the open documents by path; everything else is read from the disk.
pub type Overlay = HashMap<PathBuf, String>;

/// Compiles `text` as the file `path`. This mirrors `crate::compile_source` (parse, follow `use`,
/// check, lower), which reads `use`d files from the disk only, so that unsaved edits of a used
/// file count; it adds no `--set`. `tests/lsp.rs` checks that both agree on every recipe and UI
/// case, so a change to one that the other lacks fails there.
pub fn compile(path: &Path, text: String, overlay: &Overlay) -> Compilation {
    let mut sources = SourceMap::default();
    let mut diagnostics = Vec::new();
    let prelude_id = sources.add(PathBuf::from("<prelude>"), crate::PRELUDE.to_string());
    let prelude = syntax::parse(crate::PRELUDE, prelude_id).expect("the embedded prelude parses");
    let mut files = Vec::new();
    load(path, text, overlay, &mut sources, &mut files, &mut diagnostics);
    let mut checked = Checked::default();
    if diagnostics.is_empty() {
        let (c, d) = check::check(&files, &prelude, &[]);
        checked = c;
        diagnostics = d;
        diagnostics.extend(checked.plans.iter_mut().flat_map(crate::ir::lower::lower).map(|e| e.to_diagnostic()));
    }
    crate::diagnostics::sort(&mut diagnostics);
    Compilation { sources, files, checked, diagnostics }
}

fn load(
    path: &Path,
    text: String,
    overlay: &Overlay,
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
        let read = match overlay.iter().find(|(p, _)| same_file(p, &target)) {
            Some((_, t)) => Ok(t.clone()),
            None => std::fs::read_to_string(&target),
        };
        match read {
            Ok(t) => load(&target, t, overlay, sources, files, diags),
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

/// The location of a span in any file of the compilation.
pub fn location(comp: &Compilation, span: Span) -> Option<lt::Location> {
    let f = comp.sources.file(span.file)?;
    if span.file < MAIN {
        return None;
    }
    let idx = LineIndex::new(&f.text);
    Some(lt::Location { uri: path_to_uri(&f.path)?, range: idx.range(&f.text, span.start, span.end) })
}

/// The main file's diagnostics as the editor shows them: the message as `sprsc check` prints it,
/// the primary label and secondary labels as related information, help and notes appended. A
/// diagnostic in a `use`d file is shown on the `use` line that brings it in.
pub fn lsp_diagnostics(comp: &Compilation) -> Vec<lt::Diagnostic> {
    let Some(main) = comp.sources.file(MAIN) else { return Vec::new() };
    let idx = LineIndex::new(&main.text);
    let first_use = comp.files.first().and_then(|f| {
        f.items.iter().find_map(|i| match i {
            Item::Use(u) => Some(u.span),
            _ => None,
        })
    });
    comp.diagnostics
        .iter()
        .map(|d| {
            let mut message = d.message.clone();
            let mut related = Vec::new();
            let range = match d.span {
                Some(s) if s.file == MAIN => idx.range(&main.text, s.start, s.end),
                Some(s) => {
                    let name = comp.sources.file(s.file).map_or("?", |f| f.name.as_str());
                    message = format!("in `{name}`: {message}");
                    first_use.map_or_else(lt::Range::default, |u| idx.range(&main.text, u.start, u.end))
                }
                None => lt::Range::default(),
            };
            if let (Some(s), Some(label)) = (d.span, &d.label) {
                related.extend(
                    location(comp, s)
                        .map(|location| lt::DiagnosticRelatedInformation { location, message: label.clone() }),
                );
            }
            for (s, label) in &d.secondary {
                related.extend(
                    location(comp, *s)
                        .map(|location| lt::DiagnosticRelatedInformation { location, message: label.clone() }),
                );
            }
            if let Some(h) = &d.help {
                message.push_str(&format!("\nhelp: {h}"));
            }
            for n in &d.notes {
                message.push_str(&format!("\nnote: {n}"));
            }
            lt::Diagnostic {
                range,
                severity: Some(match d.severity {
                    Severity::Error => lt::DiagnosticSeverity::ERROR,
                    Severity::Warning => lt::DiagnosticSeverity::WARNING,
                }),
                code: Some(lt::NumberOrString::String(d.code.to_string())),
                code_description: explanation_uri(d.code).map(|href| lt::CodeDescription { href }),
                source: Some("sprsc".to_string()),
                message,
                related_information: (!related.is_empty()).then_some(related),
                tags: None,
                data: None,
            }
        })
        .collect()
}

/// The explanation file of a code, where the sources this binary was built from still are.
fn explanation_uri(code: &str) -> Option<lt::Uri> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/diagnostics/explain").join(format!("{code}.md"));
    path.exists().then(|| path_to_uri(&path)).flatten()
}
