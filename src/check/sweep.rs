//! Field paths (`sparsity.target`, `train.optimizer.lr`) for `--set` and sweeps, and the
//! `sweep` item: every recipe x value combination is checked like a recipe of its own.

use super::reader::{self as r, unknown_name, BlockReader, Sink};
use super::recipe::{check_recipe, RECIPE_KEYS};
use super::techniques::technique_names;
use crate::diagnostics::Diagnostic;
use crate::ir::kernel::KernelDef;
use crate::ir::{Sweep, Vary};
use crate::syntax::ast::{Arg, Block, Ident, RecipeItem, Statement, SweepItem, Value, ValueKind};

pub const SWEEP_KEYS: &[&str] = &["recipes", "vary", "seeds", "report"];

fn block_keys(block: &str) -> Vec<&'static str> {
    match block {
        "sparsity" => vec!["target", "distribution", "dense", "layer", "mask", "schedule", "update", "freeze"],
        "train" => super::train::TRAIN_KEYS.to_vec(),
        "techniques" => technique_names(),
        "init" => super::init::INIT_KEYS.to_vec(),
        "output" => super::train::OUTPUT_KEYS.to_vec(),
        _ => vec![],
    }
}

fn bad_path(path: &[String], value: &Value, why: String) -> Diagnostic {
    Diagnostic::error("E0307", format!("unknown field `{}`", path.join(".")))
        .at(value.span, "the value for this field")
        .with_help(why)
}

fn stmt(keyword: &str, value: &Value) -> Statement {
    Statement {
        keyword: Ident { name: keyword.to_string(), span: value.span },
        args: vec![Arg { key: None, value: value.clone() }],
        block: None,
        span: value.span,
    }
}

/// Sets the field `path` of a recipe's statements to `value`, creating statements as needed.
pub fn set_field(stmts: &mut Vec<Statement>, path: &[String], value: &Value) -> Result<(), Diagnostic> {
    let top = path.first().map(String::as_str).unwrap_or("");
    if !RECIPE_KEYS.contains(&top) {
        return Err(bad_path(path, value, format!("a path starts with one of: {}", RECIPE_KEYS.join(", "))));
    }
    let keys = block_keys(top);
    let pos = match stmts.iter().position(|s| s.keyword.name == top) {
        Some(p) => p,
        None => {
            let mut s = stmt(top, value);
            if !keys.is_empty() {
                s.args.clear();
                s.block = Some(Block { statements: vec![], span: value.span });
            }
            stmts.push(s);
            stmts.len() - 1
        }
    };
    let s = &mut stmts[pos];
    match (path.len(), &mut s.block) {
        (1, None) => {
            s.args = vec![Arg { key: None, value: value.clone() }];
            Ok(())
        }
        (1, Some(_)) => Err(bad_path(
            path,
            value,
            format!("`{top}` is a block; name a field inside it, such as `{top}.{}`", keys.first().unwrap_or(&"x")),
        )),
        (_, Some(block)) => {
            let inner = path[1].as_str();
            if !keys.contains(&inner) {
                return Err(bad_path(path, value, format!("`{top}` has the fields: {}", keys.join(", "))));
            }
            match block.statements.iter_mut().find(|x| x.keyword.name == inner) {
                Some(x) if path.len() == 2 => *x = stmt(inner, value),
                None if path.len() == 2 => block.statements.push(stmt(inner, value)),
                Some(x) if path.len() == 3 => return set_call_arg(x, path, value),
                _ => {
                    return Err(bad_path(
                        path,
                        value,
                        format!("`{top}.{inner}` has no sub-field `{}`", path[2..].join(".")),
                    ))
                }
            }
            Ok(())
        }
        (3.., None) => Err(bad_path(path, value, "a field path has at most two parts after a statement".into())),
        (_, None) => set_call_arg(s, path, value),
    }
}

/// `train.optimizer.lr`: a named argument of the call the statement holds.
fn set_call_arg(s: &mut Statement, path: &[String], value: &Value) -> Result<(), Diagnostic> {
    let key = path.last().expect("paths are non-empty").clone();
    let Some(first) = s.args.first_mut() else {
        return Err(bad_path(path, value, format!("`{}` has no value to set `{key}` on", s.keyword.name)));
    };
    if let ValueKind::Ident(name) = &first.value.kind {
        first.value.kind = ValueKind::Call(Ident { name: name.clone(), span: first.value.span }, vec![]);
    }
    match &mut first.value.kind {
        ValueKind::Call(_, args) => {
            let new = Arg { key: Some(Ident { name: key.clone(), span: value.span }), value: value.clone() };
            match args.iter_mut().find(|a| a.key.as_ref().is_some_and(|k| k.name == key)) {
                Some(a) => *a = new,
                None => args.push(new),
            }
            Ok(())
        }
        _ => Err(bad_path(path, value, format!("`{}` takes no named arguments", s.keyword.name))),
    }
}

pub fn check_sweep(
    sink: &mut Sink,
    s: &SweepItem,
    recipes: &[(&RecipeItem, Vec<Statement>)],
    declared: &[&str],
    kernels: &[KernelDef],
) -> Option<Sweep> {
    let b = BlockReader::new(sink, &s.body, "sweep", SWEEP_KEYS, &["vary"]);
    let mut names = Vec::new();
    match b.one("recipes") {
        Some(st) => {
            for v in super::reader::single(sink, st, "recipes [a, b]").and_then(|v| r::list(sink, v)).unwrap_or(&[]) {
                let ValueKind::Ident(n) = &v.kind else {
                    sink.push(Diagnostic::error("E0201", "expected a recipe name").at(v.span, "not a name"));
                    continue;
                };
                if !recipes.iter().any(|(r, _)| &r.name.name == n) {
                    if declared.contains(&n.as_str()) {
                        // Declared, but its `extends` failed: that error is already reported.
                        continue;
                    }
                    let known: Vec<&str> = recipes.iter().map(|(r, _)| r.name.name.as_str()).collect();
                    let id = Ident { name: n.clone(), span: v.span };
                    let mut d = unknown_name("E0306", "recipe", &id, &known);
                    d.message = format!("sweep `{}` names unknown recipe `{n}`", s.name.name);
                    sink.push(d);
                    continue;
                }
                names.push(n.clone());
            }
        }
        None => r::missing(sink, s.body.span, &format!("sweep `{}`", s.name.name), "recipes", "recipes [a, b]"),
    }
    let mut vary = Vec::new();
    for st in b.all("vary") {
        let mut a = r::Args::of_statement(sink, st);
        let path = a.require(sink, 0, "field", "vary sparsity.target [90%, 99%]");
        let values = a.require(sink, 1, "values", "vary sparsity.target [90%, 99%]");
        a.finish(sink, &["field", "values"]);
        let (Some(path), Some(values)) = (path, values) else { continue };
        let path: Vec<String> = match &path.kind {
            ValueKind::Path(p) => p.clone(),
            ValueKind::Ident(p) => vec![p.clone()],
            _ => {
                sink.push(
                    Diagnostic::error("E0201", "expected a field path such as `sparsity.target`")
                        .at(path.span, "not a field path"),
                );
                continue;
            }
        };
        let Some(values) = r::list(sink, values) else { continue };
        vary.push(Vary { path, values: values.to_vec() });
    }
    let seeds = match b.one("seeds") {
        Some(st) => {
            let items =
                super::reader::single(sink, st, "seeds [0, 1, 2]").and_then(|v| r::list(sink, v)).unwrap_or(&[]);
            items.iter().filter_map(|v| r::int(sink, v, "seed", 0, u32::MAX as u64)).collect()
        }
        None => vec![],
    };
    let report = match b.one("report") {
        Some(st) => {
            super::reader::single(sink, st, "report \"name\"").and_then(|v| r::string(sink, v)).map(str::to_string)
        }
        None => Some(s.name.name.clone()),
    };
    // Each combination must check: a value of the wrong type or a path the recipe lacks is
    // reported at the sweep's value.
    for name in &names {
        let Some((item, stmts)) = recipes.iter().find(|(r, _)| &r.name.name == name) else { continue };
        for v in &vary {
            for value in &v.values {
                let mut stmts = stmts.clone();
                match set_field(&mut stmts, &v.path, value) {
                    Err(d) => sink.push(d),
                    Ok(()) => {
                        check_recipe(sink, name, item.span, &stmts, kernels);
                    }
                }
            }
        }
    }
    Some(Sweep { name: s.name.name.clone(), recipes: names, vary, seeds, report: report?, span: s.span })
}
