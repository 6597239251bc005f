//! Syntax errors: pest's error turned into a diagnostic with an absolute byte span and the
//! grammar's rule names in words.

use pest::error::{ErrorVariant, InputLocation};

use super::Rule;
use crate::diagnostics::{Diagnostic, Span};

pub(super) fn syntax_error(e: pest::error::Error<Rule>, text: &str, file: u32, base: usize) -> Diagnostic {
    let (start, end) = match e.location {
        InputLocation::Pos(p) => (p, next_char_end(text, p)),
        InputLocation::Span((s, e)) => (s, e.max(s)),
    };
    let found = describe_found(text, start);
    let (message, label) = match &e.variant {
        ErrorVariant::ParsingError { positives, negatives } => {
            let mut expected: Vec<&str> = positives.iter().map(|r| rule_name(*r)).collect();
            expected.sort_unstable();
            expected.dedup();
            let mut msg = if expected.is_empty() {
                format!("unexpected {found}")
            } else {
                format!("expected {}, found {found}", join_or(&expected))
            };
            if !negatives.is_empty() {
                let neg: Vec<&str> = negatives.iter().map(|r| rule_name(*r)).collect();
                msg.push_str(&format!(" (not {})", join_or(&neg)));
            }
            (msg, format!("unexpected {found}"))
        }
        ErrorVariant::CustomError { message } => (message.clone(), "here".to_string()),
    };
    let mut diag = Diagnostic::error("E0001", format!("syntax error: {message}"))
        .at(Span::new(file, base + start, base + end), label);
    if let Some(help) = hint(text, start) {
        diag = diag.with_help(help);
    }
    diag
}

fn next_char_end(text: &str, p: usize) -> usize {
    text[p.min(text.len())..].chars().next().map_or(p, |c| p + c.len_utf8())
}

fn describe_found(text: &str, p: usize) -> String {
    match text[p.min(text.len())..].chars().next() {
        None => "end of file".to_string(),
        Some('\n') => "end of line".to_string(),
        Some(c) => format!("`{c}`"),
    }
}

/// Help for the common slips.
fn hint(text: &str, p: usize) -> Option<String> {
    let rest = &text[p.min(text.len())..];
    let c = rest.chars().next()?;
    if c.is_ascii_uppercase() {
        return Some("names are lower case: letters, digits and `_`".to_string());
    }
    let word_end = rest.find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')).unwrap_or(rest.len());
    if c == '=' || (word_end > 0 && rest[word_end..].trim_start_matches([' ', '\t']).starts_with('=')) {
        return Some("arguments are written `key: value`, not `key = value`".to_string());
    }
    if c == '\'' {
        return Some("strings use double quotes: \"...\"".to_string());
    }
    None
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Human names for grammar rules. Exhaustive with no `_` arm: a new rule cannot ship without one.
pub(super) fn rule_name(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of file",
        Rule::WHITESPACE => "whitespace",
        Rule::COMMENT => "a comment",
        Rule::nl => "a new line",
        Rule::sep => "a new line or `;`",
        Rule::file => "a file",
        Rule::item => "an item (`use`, `kernel`, `recipe` or `sweep`)",
        Rule::use_item => "`use \"FILE\"`",
        Rule::kernel_item => "a kernel definition",
        Rule::kernel_params => "kernel parameters",
        Rule::kernel_arrays => "array parameters",
        Rule::kernel_scalars => "scalar parameters",
        Rule::recipe_item => "a recipe",
        Rule::extends => "`extends NAME`",
        Rule::sweep_item => "a sweep",
        Rule::block => "a block `{ ... }`",
        Rule::statement => "a statement",
        Rule::keyword => "a keyword",
        Rule::arg_list => "arguments",
        Rule::paren_args => "arguments `(...)`",
        Rule::arg => "an argument",
        Rule::named_arg => "`key: value`",
        Rule::value => "a value",
        Rule::atom => "a value",
        Rule::call => "a call `name(...)`",
        Rule::call_arg => "an argument",
        Rule::list => "a list `[...]`",
        Rule::duration => "a duration (`5 epochs`, `100 steps`)",
        Rule::time_unit => "`epochs` or `steps`",
        Rule::percent => "a percentage",
        Rule::shape => "a shape (`1x28x28`)",
        Rule::multiplier => "a multiplier (`3x`)",
        Rule::number => "a number",
        Rule::int => "an integer",
        Rule::string => "a string",
        Rule::string_inner => "string contents",
        Rule::path => "a field path",
        Rule::ident => "a name",
        Rule::ident_char => "a letter, digit or `_`",
        Rule::expr => "an expression",
        Rule::sum => "an expression",
        Rule::product => "an expression",
        Rule::unary => "an expression",
        Rule::neg => "`-`",
        Rule::primary => "a number, name, call or `(`",
        Rule::kcall => "a function call",
        Rule::knumber => "a number",
        Rule::cmp_op => "a comparison",
        Rule::add_op => "`+` or `-`",
        Rule::mul_op => "`*` or `/`",
    }
}

/// Nesting deeper than this (brackets, or a run of unary minus signs) is refused before parsing:
/// recursive descent and the tree walks after it would otherwise overflow the stack.
pub(super) const MAX_DEPTH: usize = 64;

pub(super) fn too_deep(text: &str, file: u32) -> Option<Diagnostic> {
    let (mut depth, mut minus_run) = (0usize, 0usize);
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' | '\n' => break,
                        _ => {}
                    }
                }
            }
            '/' if chars.peek().is_some_and(|(_, c)| *c == '/') => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '-' => minus_run += 1,
            c if c.is_whitespace() => {}
            _ => minus_run = 0,
        }
        if depth > MAX_DEPTH || minus_run > MAX_DEPTH {
            return Some(
                Diagnostic::error("E0005", format!("nesting deeper than {MAX_DEPTH} levels"))
                    .at(Span::new(file, i, i + c.len_utf8()), "too deep")
                    .with_help("split the expression or list into simpler parts"),
            );
        }
    }
    None
}
