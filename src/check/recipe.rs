//! One recipe, after `extends` is resolved: the top-level statements read into a [`Plan`].

use super::reader::{check_block_use, missing, Args, BlockReader, Sink};
use super::{data, init, model, rules, sparsity, techniques, train};
use crate::diagnostics::{Diagnostic, Span};
use crate::ir::kernel::KernelDef;
use crate::ir::plan::{DataSpec, Dataset, Plan, Update};
use crate::syntax::ast::Statement;

pub const RECIPE_KEYS: &[&str] = &["seed", "data", "model", "init", "sparsity", "techniques", "train", "output"];

/// Spans of statements the cross-field rules point at.
#[derive(Default)]
pub struct Spans {
    pub epochs: Option<Span>,
    pub schedule: Option<Span>,
    pub freeze: Option<Span>,
    pub lr: Option<Span>,
    pub update: Option<Span>,
}

pub fn check_recipe(
    sink: &mut Sink,
    name: &str,
    span: Span,
    stmts: &[Statement],
    kernels: &[KernelDef],
) -> Option<Plan> {
    let block = crate::syntax::ast::Block { statements: stmts.to_vec(), span };
    let b = BlockReader::new(sink, &block, &format!("recipe {name}"), RECIPE_KEYS, &[]);
    let seed = match b.one("seed") {
        Some(st) => super::reader::single(sink, st, "seed 0")
            .and_then(|v| super::reader::int(sink, v, "seed", 0, u32::MAX as u64)),
        None => Some(0),
    };
    let data = match b.one("data") {
        Some(st) => data::data(sink, st),
        None => {
            missing(sink, span, &format!("recipe `{name}`"), "data", "data synthetic_digits(train: 6000, test: 1000)");
            None
        }
    };
    let (input, classes) = data.as_ref().map_or(([1, 28, 28], 10), |d| d.dataset.shape_and_classes());
    let model = match b.one("model") {
        Some(st) => model::check_model(sink, st, input, classes),
        None => {
            missing(sink, span, &format!("recipe `{name}`"), "model", "model lenet300_100");
            None
        }
    };
    let init = init::init(sink, b.one("init"));
    let sparsity = match b.one("sparsity") {
        Some(st) => sparsity::sparsity(sink, st),
        None => Some(sparsity::no_sparsity(span)),
    };
    let techniques = b.one("techniques").map(|st| techniques::techniques(sink, st)).unwrap_or_default();
    let train = match b.one("train") {
        Some(st) => train::train(sink, st),
        None => {
            missing(sink, span, &format!("recipe `{name}`"), "train", "train { epochs 10 }");
            None
        }
    };
    let output = train::output(sink, b.one("output"), name);
    let spans = collect_spans(sink, &b);
    // A broken `data` is already reported; an unknown-size stand-in lets the other rules run.
    let data = data.unwrap_or_else(|| DataSpec {
        dataset: Dataset::Idx {
            train_images: String::new(),
            train_labels: String::new(),
            test_images: String::new(),
            test_labels: String::new(),
        },
        path: None,
        val: 0,
        augment: vec![],
        span,
    });
    let (model, init, sparsity, train, output) = (model?, init?, sparsity?, train?, output?);
    let mut plan = Plan {
        recipe: name.to_string(),
        span,
        seed: seed.unwrap_or(0),
        data,
        model,
        init,
        sparsity: sparsity.sparsity,
        techniques,
        train,
        output,
        kernels: vec![],
    };
    rules::check(sink, &mut plan, &sparsity.dense, &spans);
    plan.kernels = used_kernels(sink, &plan, kernels, spans.update);
    Some(plan)
}

fn collect_spans(sink: &mut Sink, b: &BlockReader) -> Spans {
    let mut spans = Spans::default();
    let inner = |s: &Statement, k: &str| -> Option<Span> {
        s.block.as_ref()?.statements.iter().find(|x| x.keyword.name == k).map(|x| x.span)
    };
    if let Some(t) = b.one("train") {
        spans.epochs = inner(t, "epochs");
        spans.lr = inner(t, "lr");
    }
    if let Some(s) = b.one("sparsity") {
        spans.schedule = inner(s, "schedule");
        spans.freeze = inner(s, "freeze");
        spans.update = inner(s, "update");
    }
    if let Some(s) = b.one("seed") {
        check_block_use(sink, s, false);
        Args::of_statement(sink, s);
    }
    spans
}

/// The kernels the plan's update rule names, checked for the signature that use needs.
fn used_kernels(sink: &mut Sink, plan: &Plan, kernels: &[KernelDef], at: Option<Span>) -> Vec<KernelDef> {
    let mut used: Vec<KernelDef> = Vec::new();
    if let Update::SoftThreshold { kernel, .. } = &plan.sparsity.update {
        let span = at.unwrap_or(plan.sparsity.span);
        match kernels.iter().find(|k| &k.name == kernel) {
            None => {
                let names: Vec<&str> = kernels.iter().map(|k| k.name.as_str()).collect();
                let mut d =
                    Diagnostic::error("E0506", format!("no kernel named `{kernel}`")).at(span, "unknown kernel");
                if let Some(s) = crate::diagnostics::did_you_mean(kernel, names.iter().copied()) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                sink.push(d);
            }
            Some(k) if k.arrays.len() != 1 || k.scalars.len() != 1 => sink.push(
                Diagnostic::error(
                    "E0505",
                    format!(
                        "a threshold kernel takes one array and one scalar, but `{}` takes ({}; {})",
                        k.name,
                        k.arrays.join(", "),
                        k.scalars.join(", ")
                    ),
                )
                .at(span, "used as a threshold here")
                .with_secondary(k.span, "defined here")
                .with_help("declare it as `kernel NAME(w; tau) = ...`"),
            ),
            Some(k) => used.push(k.clone()),
        }
    }
    for name in ["apply_mask", "magnitude", "snip_score"] {
        if let Some(k) = kernels.iter().find(|k| k.name == name) {
            if !used.iter().any(|u| u.name == name) {
                used.push(k.clone());
            }
        }
    }
    used
}
