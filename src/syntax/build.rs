//! Building the AST from pest's parse tree. The grammar already accepted the text, so the
//! shape of every pair is known; `expect`s here state grammar invariants.

use pest::iterators::Pair;

use super::ast::*;
use super::Rule;
use crate::diagnostics::{Diagnostic, Span};

struct Ctx {
    file: u32,
    base: usize,
    /// A limit the text broke that the grammar cannot express (an operator chain too long).
    error: std::cell::RefCell<Option<Diagnostic>>,
}

/// Operators one kernel expression may chain at one level: longer chains make trees deep enough
/// to overflow the stack of every pass that walks them.
const MAX_CHAIN: usize = 256;

impl Ctx {
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        Span::new(self.file, self.base + s.start(), self.base + s.end())
    }

    fn ident(&self, p: Pair<Rule>) -> Ident {
        Ident { name: p.as_str().to_string(), span: self.span(&p) }
    }
}

pub(super) fn file(root: Pair<Rule>, file: u32, base: usize) -> Result<File, Diagnostic> {
    let cx = Ctx { file, base, error: Default::default() };
    let items = root.into_inner().filter(|p| p.as_rule() != Rule::EOI).map(|p| item(&cx, p)).collect();
    match cx.error.into_inner() {
        Some(d) => Err(d),
        None => Ok(File { items }),
    }
}

fn item(cx: &Ctx, p: Pair<Rule>) -> Item {
    let span = cx.span(&p);
    let rule = p.as_rule();
    let mut inner = p.into_inner();
    match rule {
        Rule::use_item => {
            let s = inner.next().expect("use has a string");
            Item::Use(UseItem { path: unescape(string_inner(s)), span })
        }
        Rule::kernel_item => {
            let name = cx.ident(inner.next().expect("kernel name"));
            let params = inner.next().expect("kernel params");
            let (mut arrays, mut scalars) = (Vec::new(), Vec::new());
            for group in params.into_inner() {
                let list: Vec<Ident> = group.clone().into_inner().map(|i| cx.ident(i)).collect();
                match group.as_rule() {
                    Rule::kernel_arrays => arrays = list,
                    _ => scalars = list,
                }
            }
            let body = expr(cx, inner.next().expect("kernel body"));
            Item::Kernel(KernelItem { name, arrays, scalars, body, span })
        }
        Rule::recipe_item => {
            let name = cx.ident(inner.next().expect("recipe name"));
            let mut extends = None;
            let mut body = None;
            for p in inner {
                match p.as_rule() {
                    Rule::extends => extends = Some(cx.ident(p.into_inner().next().expect("extends name"))),
                    _ => body = Some(block(cx, p)),
                }
            }
            Item::Recipe(RecipeItem { name, extends, body: body.expect("recipe block"), span })
        }
        _ => {
            let name = cx.ident(inner.next().expect("sweep name"));
            let body = block(cx, inner.next().expect("sweep block"));
            Item::Sweep(SweepItem { name, body, span })
        }
    }
}

fn block(cx: &Ctx, p: Pair<Rule>) -> Block {
    let span = cx.span(&p);
    let statements = p.into_inner().map(|s| statement(cx, s)).collect();
    Block { statements, span }
}

fn statement(cx: &Ctx, p: Pair<Rule>) -> Statement {
    let span = cx.span(&p);
    let mut inner = p.into_inner();
    let keyword = cx.ident(inner.next().expect("keyword"));
    let mut args = Vec::new();
    let mut blk = None;
    for p in inner {
        match p.as_rule() {
            Rule::arg_list | Rule::paren_args => args.extend(p.into_inner().map(|a| arg(cx, a))),
            _ => blk = Some(block(cx, p)),
        }
    }
    Statement { keyword, args, block: blk, span }
}

fn arg(cx: &Ctx, p: Pair<Rule>) -> Arg {
    match p.as_rule() {
        Rule::named_arg => {
            let mut inner = p.into_inner();
            let key = cx.ident(inner.next().expect("key"));
            Arg { key: Some(key), value: value(cx, inner.next().expect("value")) }
        }
        _ => Arg { key: None, value: value(cx, p) },
    }
}

fn value(cx: &Ctx, p: Pair<Rule>) -> Value {
    let span = cx.span(&p);
    let mut inner = p.into_inner();
    let first = atom(cx, inner.next().expect("value has an atom"));
    match inner.next() {
        Some(second) => {
            let second = atom(cx, second);
            Value { kind: ValueKind::Range(Box::new(first), Box::new(second)), span }
        }
        None => first,
    }
}

fn atom(cx: &Ctx, p: Pair<Rule>) -> Value {
    let span = cx.span(&p);
    let kind = match p.as_rule() {
        Rule::call => {
            let mut inner = p.into_inner();
            let name = cx.ident(inner.next().expect("call name"));
            ValueKind::Call(name, inner.map(|a| arg(cx, a)).collect())
        }
        Rule::list => ValueKind::List(p.into_inner().map(|v| value(cx, v)).collect()),
        Rule::duration => {
            let mut inner = p.into_inner();
            let n = number(inner.next().expect("duration number").as_str()).0;
            let unit = inner.next().expect("duration unit").as_str();
            let unit = if unit.starts_with("epoch") { TimeUnit::Epochs } else { TimeUnit::Steps };
            ValueKind::Duration(n, unit)
        }
        Rule::percent => {
            let n = number(p.into_inner().next().expect("percent number").as_str()).0;
            ValueKind::Percent(n / 100.0)
        }
        Rule::shape => ValueKind::Shape(p.as_str().split('x').map(|d| d.parse().unwrap_or(usize::MAX)).collect()),
        Rule::multiplier => ValueKind::Multiplier(number(p.into_inner().next().expect("number").as_str()).0),
        Rule::number => {
            let (value, is_int) = number(p.as_str());
            ValueKind::Number { value, is_int }
        }
        Rule::string => ValueKind::Str(unescape(string_inner(p))),
        Rule::path => ValueKind::Path(p.as_str().split('.').map(str::to_string).collect()),
        _ => ValueKind::Ident(p.as_str().to_string()),
    };
    Value { kind, span }
}

fn number(text: &str) -> (f64, bool) {
    let is_int = !text.contains(['.', 'e', 'E']);
    (text.parse().unwrap_or(f64::NAN), is_int)
}

fn string_inner(p: Pair<'_, Rule>) -> &str {
    p.into_inner().next().map_or("", |i| i.as_str())
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn expr(cx: &Ctx, p: Pair<Rule>) -> Expr {
    let span = cx.span(&p);
    match p.as_rule() {
        Rule::expr | Rule::sum | Rule::product => {
            let mut inner = p.into_inner();
            let mut acc = expr(cx, inner.next().expect("operand"));
            let mut chained = 0;
            while let Some(op) = inner.next() {
                chained += 1;
                if chained > MAX_CHAIN {
                    let d = Diagnostic::error("E0005", format!("an expression chains more than {MAX_CHAIN} operators"))
                        .at(cx.span(&op), "too long")
                        .with_help("split the kernel into simpler expressions");
                    cx.error.borrow_mut().get_or_insert(d);
                    break;
                }
                let rhs = expr(cx, inner.next().expect("rhs operand"));
                let s = acc.span.to(rhs.span);
                acc = Expr { kind: ExprKind::Binary(op.as_str().to_string(), Box::new(acc), Box::new(rhs)), span: s };
            }
            acc
        }
        Rule::unary => {
            let parts: Vec<Pair<Rule>> = p.into_inner().collect();
            let (negs, prim) = parts.split_at(parts.len() - 1);
            let mut e = expr(cx, prim[0].clone());
            for _ in negs {
                e = Expr { kind: ExprKind::Neg(Box::new(e)), span };
            }
            e
        }
        Rule::kcall => {
            let mut inner = p.into_inner();
            let name = cx.ident(inner.next().expect("function name"));
            Expr { kind: ExprKind::Call(name, inner.map(|a| expr(cx, a)).collect()), span }
        }
        Rule::knumber => Expr { kind: ExprKind::Number(number(p.as_str()).0), span },
        _ => Expr { kind: ExprKind::Name(p.as_str().to_string()), span },
    }
}
