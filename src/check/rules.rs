//! Cross-field rules: schedule windows inside the run, `freeze at` after the ramp, layer
//! overrides and `dense [...]` selectors naming real layers, techniques the model can carry.
//! Times in different units are compared in epochs when the data size is known statically.

use super::model::find_layer;
use super::params::{selects, SELECTORS};
use super::reader::Sink;
use super::recipe::Spans;
use crate::diagnostics::{did_you_mean, Diagnostic, Span};
use crate::ir::plan::*;

/// Training examples per epoch when known before loading (standard sizes, less `val`).
pub fn static_train_size(d: &DataSpec) -> Option<usize> {
    let n = match d.dataset {
        Dataset::Mnist | Dataset::FashionMnist => 60_000,
        Dataset::SyntheticDigits { train, .. } => train,
        // CIFAR may be a partial copy and IDX files are arbitrary: known only at run time.
        _ => return None,
    };
    Some(n.saturating_sub(d.val))
}

pub fn check(sink: &mut Sink, plan: &mut Plan, dense: &[(String, Span)], spans: &Spans) {
    let epochs = plan.train.epochs as f64;
    // Whole batches, as the engine's `Clock` counts them; unknown when the data decides.
    let steps_per_epoch = static_train_size(&plan.data).map(|n| (n / plan.train.batch.max(1)) as f64);
    let run_span = spans.epochs;
    let schedule_span = spans.schedule.unwrap_or(plan.sparsity.span);
    let inside = |sink: &mut Sink, t: Time, span: Span, what: &str| {
        if let Some(e) = t.to_epochs(epochs, steps_per_epoch) {
            if e > epochs + 1e-9 {
                let mut d = Diagnostic::error(
                    "E0301",
                    format!("{what} ({}) is after the end of training ({} epochs)", show_time(t), epochs),
                )
                .at(span, "outside the training run")
                .with_help("move it inside the run, or train for longer");
                if let Some(r) = run_span {
                    d = d.with_secondary(r, "the run ends here");
                }
                sink.push(d);
            }
        }
    };
    let window = |sink: &mut Sink, a: Time, b: Time, span: Span, what: &str| {
        if let (Some(x), Some(y)) = (a.to_epochs(epochs, steps_per_epoch), b.to_epochs(epochs, steps_per_epoch)) {
            if y <= x {
                sink.push(
                    Diagnostic::error(
                        "E0302",
                        format!("{what} ends ({}) before it starts ({})", show_time(b), show_time(a)),
                    )
                    .at(span, "empty window")
                    .with_help("the end must come after the start"),
                );
            }
        }
        inside(sink, b, span, what);
    };
    let mut schedule_end = None;
    match &plan.sparsity.schedule {
        Schedule::Constant => {}
        Schedule::Linear { start, end, every } | Schedule::Cubic { start, end, every } => {
            window(sink, *start, *end, schedule_span, "the sparsity schedule");
            positive_time(sink, *every, schedule_span, "`every`");
            schedule_end = Some(*end);
        }
        Schedule::Cyclic { cycles, length, .. } => {
            positive_time(sink, *length, schedule_span, "the cycle length");
            if let Some(l) = length.to_epochs(epochs, steps_per_epoch) {
                let total = l * *cycles as f64;
                if total > epochs + 1e-9 {
                    sink.push(
                        Diagnostic::error(
                            "E0301",
                            format!(
                                "{cycles} cycles of {} need {total} epochs, but training has {}",
                                show_time(*length),
                                epochs
                            ),
                        )
                        .at(schedule_span, "outside the training run")
                        .with_help("use fewer or shorter cycles, or train for longer"),
                    );
                }
            }
        }
    }
    if let Some(f) = plan.sparsity.freeze_at {
        let span = spans.freeze.unwrap_or(plan.sparsity.span);
        inside(sink, f, span, "`freeze at`");
        if let (Some(end), Some(fe)) =
            (schedule_end.and_then(|e| e.to_epochs(epochs, steps_per_epoch)), f.to_epochs(epochs, steps_per_epoch))
        {
            if fe < end {
                sink.push(
                    Diagnostic::error("E0303", "`freeze at` comes before the sparsity schedule ends")
                        .at(span, format!("freezes at epoch {fe}"))
                        .with_secondary(schedule_span, format!("the schedule ends at epoch {end}"))
                        .with_help("freeze the mask only once the target sparsity is reached"),
                );
            }
        }
    }
    if let MaskMethod::Lottery { rewind, .. } = &plan.sparsity.mask {
        inside(sink, *rewind, plan.sparsity.span, "the lottery's `rewind`");
        // Each round's mask comes from the round before; a schedule or a moving mask would
        // overwrite it.
        let (what, span) = match (&plan.sparsity.schedule, &plan.sparsity.update) {
            (Schedule::Constant, Update::Hard) => ("", plan.sparsity.span),
            (Schedule::Constant, _) => ("update", spans.update.unwrap_or(plan.sparsity.span)),
            _ => ("schedule", schedule_span),
        };
        if !what.is_empty() {
            sink.push(
                Diagnostic::error("E0312", format!("the `lottery` mask needs a fixed mask, but this {what} changes it"))
                    .at(span, format!("this {what} moves the mask during training"))
                    .with_help("use `schedule constant` and `update hard` with `mask lottery(...)`: each round prunes the last round's trained weights"),
            );
        }
    }
    if let Update::PruneRegrow { every, .. } = &plan.sparsity.update {
        positive_time(sink, *every, spans.update.unwrap_or(plan.sparsity.span), "`every`");
    }
    let lr_span = spans.lr.unwrap_or(plan.span);
    match &plan.train.lr {
        LrSchedule::Cosine { warmup } => inside(sink, *warmup, lr_span, "the warmup"),
        LrSchedule::Step { at, .. } => at.iter().for_each(|t| inside(sink, *t, lr_span, "a learning-rate step")),
        LrSchedule::Constant => {}
    }
    for t in &plan.techniques {
        match t {
            Technique::GhostNeurons { until, span, .. } => inside(sink, *until, *span, "`until`"),
            Technique::GhostSkip { fade_start, fade_end, span, .. } => {
                window(sink, *fade_start, *fade_end, *span, "the fade");
                needs_residual(sink, plan, *span, "ghost_skip");
            }
            Technique::DyRelu { phase_start, phase_end, span, .. } => {
                window(sink, *phase_start, *phase_end, *span, "the phase-out")
            }
            Technique::WeightSharing { span, .. } => needs_residual(sink, plan, *span, "weight_sharing"),
            Technique::LabelSmoothing { .. } | Technique::GradInit { .. } => {}
        }
    }
    for a in &plan.data.augment {
        let side = plan.model.input[1];
        if let Augment::Crop { size, .. } = a {
            if *size != side || plan.model.input[2] != side {
                sink.push(
                    Diagnostic::error("E0311", format!("`crop({size})` does not match the {side}x{side} images"))
                        .at(plan.data.span, "crop size differs from the image size")
                        .with_help(format!("random crops keep the image size: write `crop({side}, pad: 4)`")),
                );
            }
        }
    }
    overrides(sink, plan);
    selectors(sink, plan, dense);
}

fn positive_time(sink: &mut Sink, t: Time, span: Span, what: &str) {
    let zero = match t {
        Time::Steps(s) => s == 0,
        Time::Epochs(e) | Time::Fraction(e) => e <= 0.0,
    };
    if zero {
        sink.push(Diagnostic::error("E0205", format!("{what} must be longer than zero")).at(span, "zero length"));
    }
}

fn needs_residual(sink: &mut Sink, plan: &Plan, span: Span, what: &str) {
    let has = plan.model.layers.iter().any(|l| matches!(l.kind, LayerKind::Residual { .. }));
    if !has {
        sink.push(
            Diagnostic::error("E0310", format!("`{what}` needs a model with residual blocks"))
                .at(span, format!("`{}` has none", plan.model.name))
                .with_help("use a residual model such as `resnet20`, or remove the technique"),
        );
    }
}

/// Per-layer statements (`sparsity { layer ... }`, `init { layer ... }`) name layers with weights.
fn overrides(sink: &mut Sink, plan: &Plan) {
    let sparsity =
        plan.sparsity.overrides.iter().map(|o| (&o.layer, o.span, "sparsify", "nothing to mask", "overrides"));
    let init = plan.init.layers.iter().map(|(l, _, span)| (l, *span, "initialise", "nothing to initialise", "inits"));
    for (layer, span, what, label, statements) in sparsity.chain(init) {
        let has_weight = plan.model.params.iter().any(|p| &p.layer == layer && p.kind == ParamKind::Weight);
        if find_layer(&plan.model.layers, layer).is_none() {
            let weighted: Vec<&str> =
                plan.model.params.iter().filter(|p| p.kind == ParamKind::Weight).map(|p| p.layer.as_str()).collect();
            let mut d =
                Diagnostic::error("E0304", format!("the model has no layer `{layer}`")).at(span, "unknown layer");
            d = match did_you_mean(layer, weighted.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("layers with weights: {}", weighted.join(", "))),
            };
            sink.push(d);
        } else if !has_weight {
            sink.push(
                Diagnostic::error("E0304", format!("layer `{layer}` has no weights to {what}"))
                    .at(span, label)
                    .with_help(format!("{statements} apply to `conv` and `dense` layers")),
            );
        }
    }
}

fn selectors(sink: &mut Sink, plan: &mut Plan, dense: &[(String, Span)]) {
    for (sel, span) in dense {
        let hits: Vec<usize> =
            (0..plan.model.params.len()).filter(|&i| selects(sel, &plan.model.params[i], &plan.model.params)).collect();
        if hits.is_empty() && !SELECTORS.contains(&sel.as_str()) {
            let mut names: Vec<String> = Vec::new();
            crate::ir::passes::for_each_layer(&plan.model.layers, &mut |l| names.push(l.name.clone()));
            let mut d = Diagnostic::error("E0305", format!("`{sel}` matches no layer of the model"))
                .at(*span, "matches nothing");
            let cands: Vec<&str> = names.iter().map(String::as_str).chain(SELECTORS.iter().copied()).collect();
            d = match did_you_mean(sel, cands.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(
                    "use `first`, `last`, `batchnorm`, `bias`, a layer name, or a glob such as \"layer1.*\"",
                ),
            };
            sink.push(d);
        }
        for i in hits {
            plan.model.params[i].masked = false;
        }
    }
}

pub fn show_time(t: Time) -> String {
    match t {
        Time::Steps(s) => format!("{s} steps"),
        Time::Epochs(e) => format!("{e} epochs"),
        Time::Fraction(f) => format!("{}% of the run", (f * 1e6).round() / 1e4),
    }
}
