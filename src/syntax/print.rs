//! The AST printed back as canonical source (`--emit ast`): one statement per line, two-space
//! indentation, numbers in shortest form. Parsing the output gives the same tree.

use std::fmt::{self, Display, Formatter};

use super::ast::*;

fn num(x: f64) -> String {
    format!("{x}")
}

impl Display for Value {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ValueKind::Number { value, .. } => f.write_str(&num(*value)),
            ValueKind::Percent(p) => write!(f, "{}%", num((p * 1e8).round() / 1e6)),
            ValueKind::Duration(n, TimeUnit::Epochs) => write!(f, "{} epochs", num(*n)),
            ValueKind::Duration(n, TimeUnit::Steps) => write!(f, "{} steps", num(*n)),
            ValueKind::Multiplier(m) => write!(f, "{}x", num(*m)),
            ValueKind::Shape(d) => {
                let parts: Vec<String> = d.iter().map(|x| x.to_string()).collect();
                f.write_str(&parts.join("x"))
            }
            ValueKind::Str(s) => write!(f, "{s:?}"),
            ValueKind::Ident(s) => f.write_str(s),
            ValueKind::Path(p) => f.write_str(&p.join(".")),
            ValueKind::List(items) => {
                let parts: Vec<String> = items.iter().map(|v| v.to_string()).collect();
                write!(f, "[{}]", parts.join(", "))
            }
            ValueKind::Range(a, b) => write!(f, "{a} .. {b}"),
            ValueKind::Call(name, args) => write!(f, "{}({})", name.name, args_text(args, ", ")),
        }
    }
}

fn args_text(args: &[Arg], sep: &str) -> String {
    let parts: Vec<String> = args
        .iter()
        .map(|a| match &a.key {
            Some(k) => format!("{}: {}", k.name, a.value),
            None => a.value.to_string(),
        })
        .collect();
    parts.join(sep)
}

fn block(f: &mut Formatter<'_>, b: &Block, depth: usize) -> fmt::Result {
    f.write_str("{\n")?;
    for s in &b.statements {
        statement(f, s, depth + 1)?;
    }
    write!(f, "{}}}", "  ".repeat(depth))
}

fn statement(f: &mut Formatter<'_>, s: &Statement, depth: usize) -> fmt::Result {
    write!(f, "{}{}", "  ".repeat(depth), s.keyword.name)?;
    if !s.args.is_empty() {
        write!(f, " {}", args_text(&s.args, ", "))?;
    }
    if let Some(b) = &s.block {
        f.write_str(" ")?;
        block(f, b, depth)?;
    }
    f.write_str("\n")
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Number(x) => f.write_str(&num(*x)),
            ExprKind::Name(n) => f.write_str(n),
            ExprKind::Neg(e) => write!(f, "(-{e})"),
            ExprKind::Binary(op, a, b) => write!(f, "({a} {op} {b})"),
            ExprKind::Call(name, args) => {
                let parts: Vec<String> = args.iter().map(|a| a.to_string()).collect();
                write!(f, "{}({})", name.name, parts.join(", "))
            }
        }
    }
}

impl Display for File {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            match item {
                Item::Use(u) => writeln!(f, "use {:?}", u.path)?,
                Item::Kernel(k) => {
                    let names = |v: &[Ident]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>().join(", ");
                    writeln!(f, "kernel {}({}; {}) = {}", k.name.name, names(&k.arrays), names(&k.scalars), k.body)?
                }
                Item::Recipe(r) => {
                    write!(f, "recipe {}", r.name.name)?;
                    if let Some(e) = &r.extends {
                        write!(f, " extends {}", e.name)?;
                    }
                    f.write_str(" ")?;
                    block(f, &r.body, 0)?;
                    f.write_str("\n")?;
                }
                Item::Sweep(s) => {
                    write!(f, "sweep {} ", s.name.name)?;
                    block(f, &s.body, 0)?;
                    f.write_str("\n")?;
                }
            }
        }
        Ok(())
    }
}
