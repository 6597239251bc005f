//! The token stream the formatter lays out: the parser's own atoms (names, numbers, strings,
//! durations, ...) and operators, with the punctuation, literal keywords, comments and new lines
//! between them. Atom boundaries come from the pest parse, so the formatter cannot split or join
//! a token differently from the parser.

use pest::iterators::Pair;
use pest::Parser;

use crate::syntax::{Rule, SprsParser};

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A value or name, printed as written (a duration with one space before its unit).
    Atom {
        text: String,
        ident: bool,
    },
    /// A literal keyword of the grammar (`recipe`, `extends`, `use`, `kernel`, `sweep`).
    Word(String),
    /// A bracket, separator or `..`, `=`, `:`.
    Punct(&'static str),
    /// A kernel operator; `unary` for a leading minus.
    Op {
        text: String,
        unary: bool,
    },
    /// `// ...` with trailing white space removed.
    Comment(String),
    Newline,
}

impl Tok {
    pub fn is(&self, p: &str) -> bool {
        matches!(self, Tok::Punct(q) if *q == p)
    }

    pub fn text(&self) -> &str {
        match self {
            Tok::Atom { text, .. } | Tok::Word(text) | Tok::Op { text, .. } | Tok::Comment(text) => text,
            Tok::Punct(p) => p,
            Tok::Newline => "\n",
        }
    }
}

/// Tokens of a file that parses; `None` if pest refuses it.
pub fn tokens(text: &str) -> Option<Vec<Tok>> {
    let root = SprsParser::parse(Rule::file, text).ok()?.next()?;
    let mut atoms = Vec::new();
    collect(root, &mut atoms);
    let mut out = Vec::new();
    let mut pos = 0;
    for (start, end, tok) in atoms {
        gap(&text[pos..start], &mut out)?;
        out.push(tok);
        pos = end;
    }
    gap(&text[pos..], &mut out)?;
    Some(out)
}

fn collect(pair: Pair<Rule>, out: &mut Vec<(usize, usize, Tok)>) {
    let span = pair.as_span();
    let (start, end) = (span.start(), span.end());
    let tok = match pair.as_rule() {
        Rule::ident => Tok::Atom { text: pair.as_str().to_string(), ident: true },
        Rule::number | Rule::string | Rule::percent | Rule::shape | Rule::multiplier | Rule::path | Rule::knumber => {
            Tok::Atom { text: pair.as_str().to_string(), ident: false }
        }
        Rule::duration => {
            let parts: Vec<&str> = pair.clone().into_inner().map(|p| p.as_str()).collect();
            Tok::Atom { text: parts.join(" "), ident: false }
        }
        Rule::add_op | Rule::mul_op | Rule::cmp_op => Tok::Op { text: pair.as_str().to_string(), unary: false },
        Rule::neg => Tok::Op { text: "-".to_string(), unary: true },
        Rule::EOI => return,
        _ => {
            for inner in pair.into_inner() {
                collect(inner, out);
            }
            return;
        }
    };
    out.push((start, end, tok));
}

const PUNCT: &[&str] = &["..", "{", "}", "(", ")", "[", "]", ",", ":", ";", "="];

/// The text between two atoms: white space, new lines, comments, punctuation, literal keywords.
fn gap(mut s: &str, out: &mut Vec<Tok>) -> Option<()> {
    while let Some(c) = s.chars().next() {
        if c == '\n' {
            out.push(Tok::Newline);
            s = &s[1..];
        } else if c.is_whitespace() {
            s = &s[c.len_utf8()..];
        } else if s.starts_with("//") {
            // The grammar's NEWLINE (which ends a comment) includes a lone `\r`.
            let end = s.find(['\n', '\r']).unwrap_or(s.len());
            out.push(Tok::Comment(s[..end].trim_end().to_string()));
            s = &s[end..];
        } else if c.is_ascii_alphabetic() {
            let end = s.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(s.len());
            out.push(Tok::Word(s[..end].to_string()));
            s = &s[end..];
        } else {
            let p = PUNCT.iter().find(|p| s.starts_with(**p))?;
            out.push(Tok::Punct(p));
            s = &s[p.len()..];
        }
    }
    Some(())
}
