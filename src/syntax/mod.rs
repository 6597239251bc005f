//! Parsing: source text -> [`ast::File`] with byte spans (pest, `grammar/sprs.pest`).
//!
//! A syntax error stops pest at the first mistake; to report every broken item of a file in one
//! run, a failed file is re-parsed item by item (items start at column 0 with `use`, `kernel`,
//! `recipe` or `sweep`), so each item contributes its own first error.

pub mod ast;
mod build;
mod errors;
mod print;

use pest::Parser;

use crate::diagnostics::Diagnostic;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/sprs.pest"]
pub(crate) struct SprsParser;

/// Parses one file. `file` is the source-map index written into every span.
pub fn parse(text: &str, file: u32) -> Result<ast::File, Vec<Diagnostic>> {
    if let Some(d) = errors::too_deep(text, file) {
        return Err(vec![d]);
    }
    match parse_range(text, 0, text.len(), file) {
        Ok(f) => Ok(f),
        Err(first) => {
            let mut diags = Vec::new();
            for (start, end) in item_chunks(text) {
                if let Err(d) = parse_range(text, start, end, file) {
                    diags.push(d);
                }
            }
            if diags.is_empty() {
                diags.push(first);
            }
            Err(diags)
        }
    }
}

/// Parses `text[start..end]` as a file, with spans relative to the whole text.
fn parse_range(text: &str, start: usize, end: usize, file: u32) -> Result<ast::File, Diagnostic> {
    let slice = &text[start..end];
    match SprsParser::parse(Rule::file, slice) {
        Ok(mut pairs) => {
            let root = pairs.next().expect("the file rule always yields one pair");
            build::file(root, file, start)
        }
        Err(e) => Err(errors::syntax_error(e, slice, file, start)),
    }
}

/// Byte ranges of top-level items, split at lines that begin an item keyword.
fn item_chunks(text: &str) -> Vec<(usize, usize)> {
    let mut starts = vec![0];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let is_item = ["use ", "use\"", "kernel ", "recipe ", "sweep "].iter().any(|k| line.starts_with(k));
        if is_item && offset > 0 {
            starts.push(offset);
        }
        offset += line.len();
    }
    let mut chunks: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    chunks.push((*starts.last().unwrap_or(&0), text.len()));
    chunks
}

/// Parses a single value (for `--set path=value`), spans in file `file`.
pub fn parse_value(text: &str, file: u32) -> Result<ast::Value, Diagnostic> {
    if let Some(d) = errors::too_deep(text, file) {
        return Err(d);
    }
    // Wrapped in a statement so the same rules (and error messages) apply.
    let wrapped = format!("recipe set {{\n  set {text}\n}}\n");
    let offset = "recipe set {\n  set ".len();
    let shift = |mut d: Diagnostic| {
        if let Some(s) = d.span.as_mut() {
            s.start = s.start.saturating_sub(offset).min(text.len());
            s.end = s.end.saturating_sub(offset).min(text.len()).max(s.start);
        }
        d
    };
    let file_ast = parse_range(&wrapped, 0, wrapped.len(), file).map_err(shift)?;
    let value = match file_ast.items.into_iter().next() {
        Some(ast::Item::Recipe(r)) => r.body.statements.into_iter().next().and_then(|s| {
            let mut args = s.args.into_iter();
            match (args.next(), args.next(), s.block) {
                (Some(a), None, None) if a.key.is_none() => Some(a.value),
                _ => None,
            }
        }),
        _ => None,
    };
    let mut v = value.ok_or_else(|| {
        Diagnostic::error("E0001", format!("syntax error: `{text}` is not a single value"))
            .at(crate::diagnostics::Span::new(file, 0, text.len()), "expected one value")
            .with_help("for example `--set sparsity.target=99%`")
    })?;
    shift_value(&mut v, offset);
    Ok(v)
}

fn shift_value(v: &mut ast::Value, by: usize) {
    v.span.start -= by;
    v.span.end -= by;
    match &mut v.kind {
        ast::ValueKind::List(items) => items.iter_mut().for_each(|i| shift_value(i, by)),
        ast::ValueKind::Range(a, b) => {
            shift_value(a, by);
            shift_value(b, by);
        }
        ast::ValueKind::Call(name, args) => {
            name.span.start -= by;
            name.span.end -= by;
            for a in args {
                if let Some(k) = a.key.as_mut() {
                    k.span.start -= by;
                    k.span.end -= by;
                }
                shift_value(&mut a.value, by);
            }
        }
        _ => {}
    }
}
