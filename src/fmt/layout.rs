//! Laying tokens out in lines: indentation, spacing, statement breaks, blank lines and the
//! alignment of trailing comments.

use super::tokens::Tok;

/// One output line: indentation depth, code, and a trailing (or whole-line) comment.
#[derive(Default)]
struct Line {
    indent: usize,
    code: String,
    comment: Option<String>,
    blank: bool,
}

/// An open bracket: the indentation of the line it opened on, that of its contents, and whether
/// it closes on the same source line.
struct Open {
    bracket: &'static str,
    outer: usize,
    inner: usize,
    one_line: bool,
}

struct Layout {
    lines: Vec<Line>,
    cur: Line,
    /// Tokens of the current line so far (for spacing).
    prev: Option<Tok>,
    stack: Vec<Open>,
    /// The next code token starts a new line (after `{`, `}` or a statement-ending `;`).
    break_pending: bool,
    /// New lines seen since the last code or comment.
    newlines: usize,
    /// The previous line ended mid-expression: indent this one a level more.
    continued: bool,
}

pub fn layout(toks: &[Tok]) -> String {
    let one_line = one_line_brackets(toks);
    let mut l = Layout {
        lines: Vec::new(),
        cur: Line::default(),
        prev: None,
        stack: Vec::new(),
        break_pending: false,
        newlines: 0,
        continued: false,
    };
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Newline => {
                // A line ending in `=`, `:` or a binary operator continues on the next one.
                let ends = l.prev.as_ref();
                l.continued = ends.is_some_and(|p| p.is("=") || p.is(":") || matches!(p, Tok::Op { unary: false, .. }));
                l.flush();
                l.break_pending = false;
                l.newlines += 1;
            }
            Tok::Comment(c) => {
                if l.cur.code.is_empty() {
                    l.start_line(false);
                    l.cur.comment = Some(c.clone());
                    l.flush();
                } else {
                    l.cur.comment = Some(c.clone());
                }
            }
            Tok::Punct(p @ ("{" | "(" | "[")) => {
                l.push(t);
                let outer = l.cur.indent;
                l.stack.push(Open { bracket: p, outer, inner: outer + 1, one_line: one_line[i] });
                if *p == "{" && !one_line[i] {
                    l.break_pending = true;
                }
            }
            Tok::Punct(p @ ("}" | ")" | "]")) => {
                let multi_block = *p == "}" && l.stack.last().is_some_and(|o| !o.one_line);
                if multi_block && !l.cur.code.is_empty() {
                    l.flush();
                }
                l.push(t);
                l.stack.pop();
                let in_statements = l.stack.last().is_none_or(|o| o.bracket == "{" && !o.one_line);
                if *p == "}" && in_statements {
                    l.break_pending = true;
                }
            }
            Tok::Punct(";") => {
                let separates_statements = l.stack.last().is_none_or(|o| o.bracket == "{" && !o.one_line);
                if separates_statements {
                    l.break_pending = true;
                } else {
                    l.push(t);
                }
            }
            _ => l.push(t),
        }
    }
    l.flush();
    render(l.lines)
}

/// A block written on one line stays on one line while its contents are at most this wide.
const SHORT_BLOCK: usize = 80;

/// For each opening bracket, whether it stays on one line: its closing bracket is on the same
/// line and, for a block, the block is short.
fn one_line_brackets(toks: &[Tok]) -> Vec<bool> {
    let mut out = vec![false; toks.len()];
    let mut open: Vec<(usize, bool)> = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Punct("{" | "(" | "[") => open.push((i, true)),
            Tok::Punct("}" | ")" | "]") => {
                if let Some((j, same)) = open.pop() {
                    let width: usize = toks[j..=i].iter().map(|t| t.text().len() + 1).sum();
                    out[j] = same && (!t.is("}") || width <= SHORT_BLOCK);
                }
            }
            Tok::Newline => open.iter_mut().for_each(|o| o.1 = false),
            _ => {}
        }
    }
    out
}

impl Layout {
    /// Begins a line: its indentation from the innermost open bracket (a closing bracket goes
    /// back to the indentation of the line that opened it), after at most one blank line.
    fn start_line(&mut self, closer: bool) {
        let top = self.stack.last();
        self.cur.indent = match (top, closer) {
            (Some(o), true) => o.outer,
            (Some(o), false) => o.inner,
            (None, _) => 0,
        } + usize::from(self.continued && !closer);
        self.continued = false;
        let after_open = self.lines.last().is_some_and(|l| l.code.ends_with(['{', '(', '[']));
        if self.newlines >= 2 && !self.lines.is_empty() && !after_open && !closer {
            self.lines.push(Line { blank: true, ..Line::default() });
        }
        self.newlines = 0;
    }

    fn push(&mut self, t: &Tok) {
        if self.break_pending {
            self.flush();
            self.break_pending = false;
        }
        if self.cur.code.is_empty() {
            let closer = t.is("}") || t.is(")") || t.is("]");
            self.start_line(closer);
        } else if spaced(self.prev.as_ref(), t) {
            self.cur.code.push(' ');
        }
        self.cur.code.push_str(t.text());
        self.prev = Some(t.clone());
    }

    fn flush(&mut self) {
        if !self.cur.code.is_empty() || self.cur.comment.is_some() {
            self.lines.push(std::mem::take(&mut self.cur));
        }
        self.prev = None;
    }
}

/// Whether a space goes between two tokens on one line.
fn spaced(prev: Option<&Tok>, next: &Tok) -> bool {
    let Some(prev) = prev else { return false };
    if [",", ";", ":", ")", "]"].iter().any(|p| next.is(p)) || prev.is("(") || prev.is("[") {
        return false;
    }
    if next.is("(") && matches!(prev, Tok::Atom { ident: true, .. }) {
        return false;
    }
    if prev.is("{") && next.is("}") {
        return false;
    }
    !matches!(prev, Tok::Op { unary: true, .. })
}

/// The lines as text; trailing comments of consecutive lines start in one column.
fn render(lines: Vec<Line>) -> String {
    let width = |l: &Line| 2 * l.indent + l.code.chars().count();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let trailing = |l: &Line| !l.code.is_empty() && l.comment.is_some();
        let mut j = i;
        while j < lines.len() && trailing(&lines[j]) {
            j += 1;
        }
        let column = lines[i..j].iter().map(width).max().unwrap_or(0) + 2;
        for l in &lines[i..j.max(i + 1)] {
            if l.blank {
                out.push('\n');
                continue;
            }
            out.push_str(&"  ".repeat(l.indent));
            out.push_str(&l.code);
            if let Some(c) = &l.comment {
                if !l.code.is_empty() {
                    out.push_str(&" ".repeat(column - width(l)));
                }
                out.push_str(c);
            }
            out.push('\n');
        }
        i = j.max(i + 1);
    }
    out
}
