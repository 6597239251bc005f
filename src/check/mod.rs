//! Checking: AST -> checked plans, or every diagnostic of the file.
//!
//! Items are collected (duplicate names reported), `extends` chains resolved and merged
//! (a statement replaces the parent's statement with the same keyword, `layer` statements by
//! layer name, blocks merge), `--set` overrides applied, and each recipe read into a `Plan`.

mod data;
mod init;
mod kernels;
mod model;
mod params;
mod reader;
mod recipe;
mod rules;
mod sparsity;
mod sweep;
mod techniques;
mod train;
mod zoo;

// The checker's keyword lists, for tools that offer them (the language server's completion).
pub use init::INIT_KEYS;
pub use model::LAYER_KEYWORDS;
pub use recipe::RECIPE_KEYS;
pub use sparsity::{MASKS, SPARSITY_KEYS};
pub use sweep::SWEEP_KEYS;
pub use train::{OUTPUT_KEYS, TRAIN_KEYS};
pub use zoo::ZOO;

use std::collections::HashMap;

use crate::diagnostics::{Diagnostic, Span};
use crate::ir::kernel::KernelDef;
use crate::ir::plan::Plan;
use crate::ir::Sweep;
use crate::syntax::ast::{File, Item, RecipeItem, Statement, Value, ValueKind};
use reader::Sink;

pub use sweep::set_field;

/// A `--set path=value` override, its value already parsed.
#[derive(Debug, Clone)]
pub struct Override {
    pub path: Vec<String>,
    pub value: Value,
}

#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub plans: Vec<Plan>,
    pub sweeps: Vec<Sweep>,
    pub kernels: Vec<KernelDef>,
}

/// Checks the user's files (the first is the main one) with the prelude's kernels in scope.
pub fn check(files: &[File], prelude: &File, overrides: &[Override]) -> (Checked, Vec<Diagnostic>) {
    let mut sink = Sink::default();
    let mut names: HashMap<String, Span> = HashMap::new();
    let mut recipes: Vec<&RecipeItem> = Vec::new();
    let mut kernels = Vec::new();
    let mut sweeps = Vec::new();
    let items = prelude.items.iter().chain(files.iter().flat_map(|f| &f.items));
    for item in items {
        let name = match item {
            Item::Use(_) => continue,
            Item::Kernel(k) => &k.name,
            Item::Recipe(r) => &r.name,
            Item::Sweep(s) => &s.name,
        };
        if let Some(first) = names.get(&name.name) {
            sink.push(
                Diagnostic::error("E0108", format!("`{}` is defined more than once", name.name))
                    .at(name.span, "defined again here")
                    .with_secondary(*first, "first defined here")
                    .with_help("recipes, kernels and sweeps share one namespace; rename one of them"),
            );
            continue;
        }
        names.insert(name.name.clone(), name.span);
        match item {
            Item::Kernel(k) => kernels.extend(kernels::check_kernel(&mut sink, k)),
            Item::Recipe(r) => recipes.push(r),
            Item::Sweep(s) => sweeps.push(s),
            Item::Use(_) => {}
        }
    }
    let resolved = resolve_all(&mut sink, &recipes);
    let mut checked = Checked { kernels: kernels.clone(), ..Default::default() };
    for (r, stmts) in &resolved {
        let mut stmts = stmts.clone();
        for o in overrides {
            if let Err(d) = set_field(&mut stmts, &o.path, &o.value) {
                sink.push(d);
            }
        }
        let plan = recipe::check_recipe(&mut sink, &r.name.name, r.span, &stmts, &kernels);
        checked.plans.extend(plan);
    }
    let declared: Vec<&str> = recipes.iter().map(|r| r.name.name.as_str()).collect();
    for s in sweeps {
        checked.sweeps.extend(sweep::check_sweep(&mut sink, s, &resolved, &declared, &kernels));
    }
    let mut diags = sink.diags;
    crate::diagnostics::sort(&mut diags);
    (checked, diags)
}

/// Every recipe with its `extends` chain merged, in file order; recipes whose chain is broken
/// are reported and left out.
fn resolve_all<'a>(sink: &mut Sink, recipes: &[&'a RecipeItem]) -> Vec<(&'a RecipeItem, Vec<Statement>)> {
    let by_name: HashMap<&str, &RecipeItem> = recipes.iter().map(|r| (r.name.name.as_str(), *r)).collect();
    let mut out = Vec::new();
    for r in recipes {
        let mut chain = vec![*r];
        let mut ok = true;
        while let Some(parent) = &chain.last().and_then(|c| c.extends.clone()) {
            match by_name.get(parent.name.as_str()) {
                None => {
                    let names: Vec<&str> = by_name.keys().copied().collect();
                    let d = reader::unknown_name("E0106", "recipe", parent, &names);
                    if chain.len() == 1 {
                        sink.push(d);
                    }
                    ok = false;
                    break;
                }
                Some(p) if chain.iter().any(|c| c.name.name == p.name.name) => {
                    if chain.len() == 1 || chain[0].name.name == p.name.name {
                        let path: Vec<&str> =
                            chain.iter().map(|c| c.name.name.as_str()).chain([p.name.name.as_str()]).collect();
                        sink.push(
                            Diagnostic::error(
                                "E0107",
                                format!("`{}` extends itself through {}", r.name.name, path.join(" -> ")),
                            )
                            .at(r.extends.as_ref().map_or(r.name.span, |e| e.span), "cycle starts here")
                            .with_help("break the cycle: one recipe of the chain must not extend another"),
                        );
                    }
                    ok = false;
                    break;
                }
                Some(p) => chain.push(p),
            }
        }
        if !ok {
            continue;
        }
        let mut stmts: Vec<Statement> = Vec::new();
        for c in chain.iter().rev() {
            stmts = merge(&stmts, &c.body.statements, true);
        }
        out.push((*r, stmts));
    }
    out
}

const MERGED_BLOCKS: &[&str] = &["init", "sparsity", "techniques", "train", "output"];

fn key(s: &Statement) -> String {
    match (s.keyword.name.as_str(), s.args.first().map(|a| &a.value.kind)) {
        ("layer", Some(ValueKind::Str(name))) => format!("layer {name}"),
        (k, _) => k.to_string(),
    }
}

/// The parent's statements with the child's applied on top.
fn merge(parent: &[Statement], child: &[Statement], top: bool) -> Vec<Statement> {
    let mut out = parent.to_vec();
    for c in child {
        match out.iter_mut().find(|p| key(p) == key(c)) {
            Some(p) => {
                let mergeable = top && MERGED_BLOCKS.contains(&c.keyword.name.as_str());
                match (&p.block, &c.block) {
                    (Some(pb), Some(cb)) if mergeable => {
                        let mut merged = c.clone();
                        if let Some(b) = merged.block.as_mut() {
                            b.statements = merge(&pb.statements, &cb.statements, false);
                        }
                        *p = merged;
                    }
                    _ => *p = c.clone(),
                }
            }
            None => out.push(c.clone()),
        }
    }
    out
}
