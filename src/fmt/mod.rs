//! The formatter (`sprsc fmt`): source text -> the one canonical layout, every comment kept.
//!
//! It lays out the parser's own tokens ([`tokens`]): two-space indentation by bracket depth,
//! one statement per line (a block the user wrote on one line stays on one line), single spaces
//! between tokens except around `,` `:` `;` brackets and calls, at most one blank line, trailing
//! comments of consecutive lines aligned. New lines are only added where the grammar allows a
//! separator, and never removed. Before answering, the result is parsed again and must give the
//! same syntax tree (spans aside) and the same comments; otherwise the formatter refuses.

mod layout;
mod same;
mod tokens;

use crate::diagnostics::Diagnostic;
use crate::syntax;

#[derive(Debug)]
pub enum FmtError {
    /// The file does not parse; nothing is formatted.
    Syntax(Vec<Diagnostic>),
    /// The layout would have changed the file's meaning or lost a comment (a formatter bug).
    Unstable(String),
}

impl std::fmt::Display for FmtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FmtError::Syntax(d) => write!(f, "the file has {} syntax error(s)", d.len()),
            FmtError::Unstable(why) => write!(f, "formatting would change the file ({why}); left as it is"),
        }
    }
}

/// Formats a whole file.
pub fn format(text: &str) -> Result<String, FmtError> {
    let before = syntax::parse(text, 0).map_err(FmtError::Syntax)?;
    let toks = tokens::tokens(text).ok_or_else(|| FmtError::Unstable("cannot tokenize".into()))?;
    let out = layout::layout(&toks);
    let after = syntax::parse(&out, 0).map_err(|_| FmtError::Unstable("the result does not parse".into()))?;
    if !same::same_file(&before, &after) {
        return Err(FmtError::Unstable("the syntax tree differs".into()));
    }
    let comments = |t: &[tokens::Tok]| -> Vec<String> {
        t.iter().filter_map(|t| if let tokens::Tok::Comment(c) = t { Some(c.clone()) } else { None }).collect()
    };
    let out_toks = tokens::tokens(&out).ok_or_else(|| FmtError::Unstable("cannot tokenize the result".into()))?;
    if comments(&toks) != comments(&out_toks) {
        return Err(FmtError::Unstable("a comment would be lost".into()));
    }
    Ok(out)
}

/// A unified diff from `old` to `new`, headed with `name`.
pub fn diff(name: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new).unified_diff().context_radius(2).header(name, name).to_string()
}
