//! The `sparsity` block: target, distribution, dense selectors, per-layer overrides, and the
//! mask method, schedule and update rule with all their defaults.

use super::reader::{self as r, check_block_use, count, missing, single, time_arg, Args, BlockReader, Sink};
use crate::diagnostics::{Diagnostic, Span};
use crate::ir::names::Named;
use crate::ir::plan::*;
use crate::syntax::ast::{Statement, Value, ValueKind};

pub struct SparsitySpec {
    pub sparsity: Sparsity,
    /// `dense [...]` selectors with their spans, checked against the model later.
    pub dense: Vec<(String, Span)>,
}

pub const SPARSITY_KEYS: &[&str] =
    &["target", "distribution", "dense", "layer", "mask", "schedule", "update", "freeze"];

pub fn no_sparsity(span: Span) -> SparsitySpec {
    SparsitySpec {
        sparsity: Sparsity {
            target: 0.0,
            distribution: Distribution::Uniform,
            dense: vec![],
            overrides: vec![],
            mask: MaskMethod::Dense,
            schedule: Schedule::Constant,
            update: Update::Hard,
            freeze_at: None,
            span,
        },
        dense: vec![],
    }
}

pub fn sparsity(sink: &mut Sink, s: &Statement) -> Option<SparsitySpec> {
    check_block_use(sink, s, true);
    let block = s.block.as_ref()?;
    let b = BlockReader::new(sink, block, "sparsity", SPARSITY_KEYS, &["layer"]);
    let mut spec = no_sparsity(s.span);
    let sp = &mut spec.sparsity;
    match b.one("target") {
        Some(t) => {
            let mut a = Args::of_statement(sink, t);
            let v = a.require(sink, 0, "value", "target 98%");
            a.finish(sink, &["value"]);
            let v = v?;
            sp.target = r::fraction(sink, v, "the sparsity target", false).unwrap_or(0.9);
            if sp.target < 0.5 && !matches!(v.kind, ValueKind::Number { value, .. } if value >= 1.0) {
                sink.push(
                    Diagnostic::warning("W0201", format!("a sparsity target of {} keeps most weights", r::show_pct(sp.target)))
                        .at(v.span, "fraction of zeros")
                        .with_help(format!(
                            "`target` is the fraction of weights set to zero; if you meant a density of {}, write `target {}`",
                            r::show_pct(sp.target),
                            r::show_pct(1.0 - sp.target)
                        )),
                );
            }
        }
        None => missing(sink, block.span, "`sparsity`", "target", "target 98%"),
    }
    if let Some(st) = b.one("distribution") {
        let v = single(sink, st, "distribution uniform")?;
        let (name, a) = r::variant(sink, v, "distribution", &Distribution::names())?;
        a.finish(sink, &[]);
        sp.distribution = Distribution::from_name(name)?;
    }
    if let Some(st) = b.one("dense") {
        let v = single(sink, st, "dense [first, last]")?;
        for item in r::list(sink, v)? {
            match &item.kind {
                ValueKind::Ident(n) | ValueKind::Str(n) => spec.dense.push((n.clone(), item.span)),
                ValueKind::Path(p) => spec.dense.push((p.join("."), item.span)),
                _ => sink.push(
                    Diagnostic::error(
                        "E0201",
                        format!("expected a layer name or selector, found {}", item.kind.describe()),
                    )
                    .at(item.span, "not a selector")
                    .with_help("use `first`, `last`, `batchnorm`, `bias`, a layer name or a glob in quotes"),
                ),
            }
        }
        spec.sparsity.dense = spec.dense.iter().map(|(n, _)| n.clone()).collect();
    }
    let sp = &mut spec.sparsity;
    for st in b.all("layer") {
        let mut a = Args::of_statement(sink, st);
        let name = a.require(sink, 0, "layer name", "layer \"fc3\" 90%").and_then(|v| r::string(sink, v));
        let target = a
            .require(sink, 1, "target", "layer \"fc3\" 90%")
            .and_then(|v| r::fraction(sink, v, "a layer's target", false));
        a.finish(sink, &["name", "target"]);
        if let (Some(layer), Some(target)) = (name, target) {
            if let Some(prev) = sp.overrides.iter().find(|o| o.layer == layer) {
                sink.push(
                    Diagnostic::error("E0309", format!("layer `{layer}` has two overrides"))
                        .at(st.span, "second override")
                        .with_secondary(prev.span, "first override"),
                );
                continue;
            }
            sp.overrides.push(LayerOverride { layer: layer.to_string(), target, span: st.span });
        }
    }
    if let Some(st) = b.one("mask") {
        if let Some(m) = single(sink, st, "mask magnitude").and_then(|v| mask(sink, v)) {
            sp.mask = m;
        }
    }
    if let Some(st) = b.one("schedule") {
        if let Some(s) = single(sink, st, "schedule cubic(start: 1 epoch, end: 60%)").and_then(|v| schedule(sink, v)) {
            sp.schedule = s;
        }
    }
    if let Some(st) = b.one("update") {
        if let Some(u) = single(sink, st, "update hard").and_then(|v| update(sink, v)) {
            sp.update = u;
        }
    }
    if let Some(st) = b.one("freeze") {
        let mut a = Args::of_statement(sink, st);
        let at = a.positional(0);
        let when = a.require(sink, 1, "time", "freeze at 160 epochs");
        a.finish(sink, &["at", "time"]);
        match at.map(|v| &v.kind) {
            Some(ValueKind::Ident(w)) if w == "at" => {}
            _ => {
                sink.push(
                    Diagnostic::error("E0201", "`freeze` is written `freeze at TIME`")
                        .at(st.span, "expected `at` and a time")
                        .with_help("for example `freeze at 160 epochs`"),
                );
                return None;
            }
        }
        sp.freeze_at = Some(r::time(sink, when?)?);
    }
    Some(spec)
}

pub const MASKS: &[&str] = &["dense", "random", "magnitude", "snip", "grasp", "synflow", "lottery"];

fn mask(sink: &mut Sink, v: &Value) -> Option<MaskMethod> {
    let (name, mut a) = r::variant(sink, v, "mask method", MASKS)?;
    let (m, known): (Option<MaskMethod>, &[&str]) = match name {
        "dense" => (Some(MaskMethod::Dense), &[]),
        "random" => (Some(MaskMethod::Random), &[]),
        "magnitude" => (Some(MaskMethod::Magnitude), &[]),
        "snip" => (count(sink, &mut a, "batches", 1, 10_000).map(|batches| MaskMethod::Snip { batches }), &["batches"]),
        "grasp" => {
            let t = a.named("temperature").map_or(Some(200.0), |v| r::positive(sink, v, "temperature"));
            let b = count(sink, &mut a, "batches", 1, 10_000);
            ((|| Some(MaskMethod::Grasp { temperature: t?, batches: b? }))(), &["temperature", "batches"])
        }
        "synflow" => {
            (count(sink, &mut a, "rounds", 100, 100_000).map(|rounds| MaskMethod::Synflow { rounds }), &["rounds"])
        }
        "lottery" => {
            let rounds = count(sink, &mut a, "rounds", 5, 1000);
            let rate = a.named("rate").map_or(Some(0.2), |v| r::fraction(sink, v, "the pruning rate", false));
            let rewind = time_arg(sink, &mut a, "rewind", Some(Time::Steps(0)), "");
            (
                (|| Some(MaskMethod::Lottery { rounds: rounds?, rate: rate?, rewind: rewind? }))(),
                &["rounds", "rate", "rewind"],
            )
        }
        // `variant` accepted only the names of `MASKS`.
        _ => return None,
    };
    a.finish(sink, known);
    m
}

fn schedule(sink: &mut Sink, v: &Value) -> Option<Schedule> {
    let (name, mut a) = r::variant(sink, v, "schedule", &["constant", "linear", "cubic", "cyclic"])?;
    let (s, known): (Option<Schedule>, &[&str]) = match name {
        "constant" => (Some(Schedule::Constant), &[]),
        "linear" | "cubic" => {
            let example = "cubic(start: 1 epoch, end: 60%)";
            let start = time_arg(sink, &mut a, "start", Some(Time::Steps(0)), example);
            let end = time_arg(sink, &mut a, "end", None, example);
            let every = time_arg(sink, &mut a, "every", Some(Time::Steps(1)), example);
            let s = (|| {
                let (start, end, every) = (start?, end?, every?);
                Some(if name == "linear" {
                    Schedule::Linear { start, end, every }
                } else {
                    Schedule::Cubic { start, end, every }
                })
            })();
            (s, &["start", "end", "every"])
        }
        "cyclic" => {
            let example = "cyclic(cycles: 2, length: 50 epochs, peak: 3x)";
            let cycles = count(sink, &mut a, "cycles", 1, 10_000);
            let length = time_arg(sink, &mut a, "length", None, example);
            let peak = a.named("peak").map_or(Some(2.0), |v| r::multiplier(sink, v, "peak"));
            let shape = r::choice(sink, &mut a, "shape", "cycle shape", &CycleShape::table(), CycleShape::Cosine);
            (
                (|| Some(Schedule::Cyclic { cycles: cycles?, length: length?, peak: peak?, shape: shape? }))(),
                &["cycles", "length", "peak", "shape"],
            )
        }
        _ => return None,
    };
    a.finish(sink, known);
    s
}

fn update(sink: &mut Sink, v: &Value) -> Option<Update> {
    let (name, mut a) = r::variant(sink, v, "update rule", &["hard", "soft_threshold", "prune_regrow"])?;
    let (u, known): (Option<Update>, &[&str]) = match name {
        "hard" => (Some(Update::Hard), &[]),
        "soft_threshold" => {
            let ste = r::choice(sink, &mut a, "ste", "straight-through mode", &Ste::table(), Ste::Dense);
            let rescale = a.named("rescale").map_or(Some(true), |v| r::boolean(sink, v));
            let sigma = a.named("sigma").map_or(Some(false), |v| r::boolean(sink, v));
            let scope = r::choice(sink, &mut a, "scope", "scope", &Scope::table(), Scope::Global);
            let kernel = match a.named("kernel") {
                None => Some("soft_threshold".to_string()),
                Some(Value { kind: ValueKind::Ident(k), .. }) => Some(k.clone()),
                Some(v) => {
                    sink.push(
                        Diagnostic::error("E0201", format!("expected a kernel name, found {}", v.kind.describe()))
                            .at(v.span, "expected a kernel name"),
                    );
                    None
                }
            };
            let u = (|| {
                Some(Update::SoftThreshold {
                    ste: ste?,
                    rescale: rescale?,
                    scope: scope?,
                    sigma: sigma?,
                    kernel: kernel?,
                })
            })();
            (u, &["ste", "rescale", "scope", "sigma", "kernel"])
        }
        "prune_regrow" => {
            let example = "prune_regrow(every: 100 steps, drop: 30%)";
            let every = time_arg(sink, &mut a, "every", None, example);
            let drop = a.named("drop").map_or(Some(0.3), |v| r::fraction(sink, v, "the drop fraction", false));
            let grow = r::choice(sink, &mut a, "grow", "growth rule", &Growth::table(), Growth::Gradient);
            let until = a.named("until").map(|v| r::time(sink, v));
            let u = (|| {
                Some(Update::PruneRegrow {
                    every: every?,
                    drop: drop?,
                    grow: grow?,
                    until: until.map_or(Some(None), |t| t.map(Some))?,
                })
            })();
            (u, &["every", "drop", "grow", "until"])
        }
        _ => return None,
    };
    a.finish(sink, known);
    u
}
