//! `kernel` items: names resolved to parameters, calls to known functions with the right arity.
//! In: kernel items. Out: [`KernelDef`]s (the expression IR).

use super::reader::{unknown_name, Sink};
use crate::diagnostics::{did_you_mean, Diagnostic};
use crate::ir::kernel::{BinOp, KExpr, KernelDef, UnOp};
use crate::syntax::ast::{Expr, ExprKind, KernelItem};

pub const FUNCTIONS: &[(&str, usize)] =
    &[("abs", 1), ("sign", 1), ("sqrt", 1), ("exp", 1), ("log", 1), ("min", 2), ("max", 2), ("select", 3)];

pub fn check_kernel(sink: &mut Sink, k: &KernelItem) -> Option<KernelDef> {
    let mut seen: Vec<&str> = Vec::new();
    let mut ok = true;
    for p in k.arrays.iter().chain(&k.scalars) {
        if seen.contains(&p.name.as_str()) {
            sink.push(
                Diagnostic::error("E0504", format!("parameter `{}` is declared twice", p.name))
                    .at(p.span, "declared again here")
                    .with_help("give each parameter its own name"),
            );
            ok = false;
        }
        seen.push(&p.name);
    }
    let def = KernelDef {
        name: k.name.name.clone(),
        arrays: k.arrays.iter().map(|i| i.name.clone()).collect(),
        scalars: k.scalars.iter().map(|i| i.name.clone()).collect(),
        body: KExpr::Const(0.0),
        span: k.span,
    };
    let body = lower(sink, &k.body, &def);
    if def.arrays.is_empty() {
        sink.push(
            Diagnostic::error("E0505", format!("kernel `{}` has no array parameter", def.name))
                .at(k.name.span, "nothing to apply it to")
                .with_help("an elementwise kernel reads at least one array: `kernel f(w; tau) = ...`"),
        );
        ok = false;
    }
    Some(KernelDef { body: body?, ..def }).filter(|_| ok)
}

fn lower(sink: &mut Sink, e: &Expr, def: &KernelDef) -> Option<KExpr> {
    Some(match &e.kind {
        ExprKind::Number(x) => KExpr::Const(*x as f32),
        ExprKind::Name(n) => {
            if let Some(i) = def.arrays.iter().position(|a| a == n) {
                KExpr::Array(i)
            } else if let Some(i) = def.scalars.iter().position(|a| a == n) {
                KExpr::Scalar(i)
            } else {
                let names: Vec<&str> = def.arrays.iter().chain(&def.scalars).map(String::as_str).collect();
                let mut d = Diagnostic::error("E0501", format!("`{n}` is not a parameter of kernel `{}`", def.name))
                    .at(e.span, "unknown name");
                d = match did_you_mean(n, names.iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!("a kernel may use only its parameters: {}", names.join(", "))),
                };
                sink.push(d);
                return None;
            }
        }
        ExprKind::Neg(a) => KExpr::Unary(UnOp::Neg, Box::new(lower(sink, a, def)?)),
        ExprKind::Binary(op, a, b) => {
            let (a, b) = (lower(sink, a, def), lower(sink, b, def));
            let op = match op.as_str() {
                "+" => BinOp::Add,
                "-" => BinOp::Sub,
                "*" => BinOp::Mul,
                "/" => BinOp::Div,
                "<" => BinOp::Lt,
                "<=" => BinOp::Le,
                ">" => BinOp::Gt,
                ">=" => BinOp::Ge,
                "==" => BinOp::Eq,
                _ => BinOp::Ne,
            };
            KExpr::Binary(op, Box::new(a?), Box::new(b?))
        }
        ExprKind::Call(f, args) => {
            let names: Vec<&str> = FUNCTIONS.iter().map(|(n, _)| *n).collect();
            let Some(&(name, arity)) = FUNCTIONS.iter().find(|(n, _)| *n == f.name) else {
                sink.push(unknown_name("E0502", "function", f, &names));
                return None;
            };
            if args.len() != arity {
                sink.push(
                    Diagnostic::error("E0503", format!("`{name}` takes {arity} argument(s), found {}", args.len()))
                        .at(e.span, "wrong number of arguments"),
                );
                return None;
            }
            let lowered: Vec<Option<KExpr>> = args.iter().map(|a| lower(sink, a, def)).collect();
            let mut it = lowered.into_iter().collect::<Option<Vec<KExpr>>>()?.into_iter().map(Box::new);
            let mut next = || it.next().expect("arity checked above");
            match name {
                "abs" => KExpr::Unary(UnOp::Abs, next()),
                "sign" => KExpr::Unary(UnOp::Sign, next()),
                "sqrt" => KExpr::Unary(UnOp::Sqrt, next()),
                "exp" => KExpr::Unary(UnOp::Exp, next()),
                "log" => KExpr::Unary(UnOp::Log, next()),
                "min" => KExpr::Binary(BinOp::Min, next(), next()),
                "max" => KExpr::Binary(BinOp::Max, next(), next()),
                _ => KExpr::Select(next(), next(), next()),
            }
        }
    })
}
