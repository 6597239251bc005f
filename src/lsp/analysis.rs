//! One open document compiled as `sprsc check` compiles it, except that files the editor has
//! open are read from the editor, not the disk. The result's diagnostics become LSP diagnostics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lsp_types as lt;

use super::pos::{path_to_uri, LineIndex};
use crate::diagnostics::{Severity, Span};
use crate::syntax::ast::Item;
use crate::Compilation;

/// The main file's index in the source map (0 is the prelude), as in `compile_source`.
pub const MAIN: u32 = 1;

/// Texts of the open documents by path; everything else is read from the disk.
pub type Overlay = HashMap<PathBuf, String>;

/// Compiles `text` as the file `path`, as `sprsc check` does (no `--set`), with `use`d files
/// read from the open documents first.
pub fn compile(path: &Path, text: String, overlay: &Overlay) -> Compilation {
    let read = |target: &Path| match overlay.iter().find(|(p, _)| same_file(p, target)) {
        Some((_, t)) => Ok(t.clone()),
        None => std::fs::read_to_string(target),
    };
    crate::compile_source_with(path, text, &[], &read)
}

pub use crate::same_file;

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
