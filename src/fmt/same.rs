//! Syntax trees compared with their spans ignored: what "the same meaning" checks.

use crate::diagnostics::Span;
use crate::syntax::ast::*;

pub fn same_file(a: &File, b: &File) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    strip_file(&mut a);
    strip_file(&mut b);
    a == b
}

pub fn strip_file(f: &mut File) {
    for item in &mut f.items {
        match item {
            Item::Use(u) => u.span = Span::default(),
            Item::Kernel(k) => {
                k.span = Span::default();
                ident(&mut k.name);
                k.arrays.iter_mut().chain(k.scalars.iter_mut()).for_each(ident);
                expr(&mut k.body);
            }
            Item::Recipe(r) => {
                r.span = Span::default();
                ident(&mut r.name);
                if let Some(e) = r.extends.as_mut() {
                    ident(e);
                }
                block(&mut r.body);
            }
            Item::Sweep(s) => {
                s.span = Span::default();
                ident(&mut s.name);
                block(&mut s.body);
            }
        }
    }
}

fn ident(i: &mut Ident) {
    i.span = Span::default();
}

fn block(b: &mut Block) {
    b.span = Span::default();
    for s in &mut b.statements {
        s.span = Span::default();
        ident(&mut s.keyword);
        args(&mut s.args);
        if let Some(b) = s.block.as_mut() {
            block(b);
        }
    }
}

fn args(args: &mut [Arg]) {
    for a in args {
        if let Some(k) = a.key.as_mut() {
            ident(k);
        }
        value(&mut a.value);
    }
}

fn value(v: &mut Value) {
    v.span = Span::default();
    match &mut v.kind {
        ValueKind::List(items) => items.iter_mut().for_each(value),
        ValueKind::Range(a, b) => {
            value(a);
            value(b);
        }
        ValueKind::Call(name, a) => {
            ident(name);
            args(a);
        }
        _ => {}
    }
}

fn expr(e: &mut Expr) {
    e.span = Span::default();
    match &mut e.kind {
        ExprKind::Neg(x) => expr(x),
        ExprKind::Binary(_, a, b) => {
            expr(a);
            expr(b);
        }
        ExprKind::Call(name, a) => {
            ident(name);
            a.iter_mut().for_each(expr);
        }
        ExprKind::Number(_) | ExprKind::Name(_) => {}
    }
}
