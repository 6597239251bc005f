//! The schema of a recipe's blocks: `data`, `sparsity`, `techniques`, `train`, `output`.
//! Each reader turns statements into the typed plan pieces, making every default explicit.

use super::reader::{self as r, check_block_use, missing, Args, BlockReader, Sink};
use crate::diagnostics::{Diagnostic, Span};
use crate::ir::plan::*;
use crate::syntax::ast::{Statement, Value, ValueKind};

pub const DATASETS: &[&str] = &["mnist", "fashion_mnist", "cifar10", "cifar100", "synthetic_digits", "idx"];

pub fn data(sink: &mut Sink, s: &Statement) -> Option<DataSpec> {
    check_block_use(sink, s, false);
    let mut outer = Args::of_statement(sink, s);
    let v = outer.require(sink, 0, "dataset", "data mnist(val: 5000)")?;
    outer.finish(sink, &["dataset"]);
    let (name, mut a) = r::variant(sink, v, "dataset", DATASETS)?;
    let path = a.named("path").and_then(|v| r::string(sink, v)).map(str::to_string);
    let val = a.named("val").map_or(Some(0), |v| r::int(sink, v, "val", 0, 10_000_000));
    let augment = a.named("augment").map_or(Some(vec![]), |v| augments(sink, v));
    let mut files = |a: &mut Args, k: &str| {
        a.require(sink, usize::MAX, k, "idx(train_images: \"...\", ...)")
            .and_then(|v| r::string(sink, v))
            .map(str::to_string)
    };
    let dataset = match name {
        "mnist" => Some(Dataset::Mnist),
        "fashion_mnist" => Some(Dataset::FashionMnist),
        "cifar10" => Some(Dataset::Cifar10),
        "cifar100" => Some(Dataset::Cifar100),
        "synthetic_digits" => {
            let train = a.named("train").map_or(Some(6000), |v| r::int(sink, v, "train", 10, 1_000_000));
            let test = a.named("test").map_or(Some(1000), |v| r::int(sink, v, "test", 10, 1_000_000));
            (|| Some(Dataset::SyntheticDigits { train: train? as usize, test: test? as usize }))()
        }
        _ => {
            let ti = files(&mut a, "train_images");
            let tl = files(&mut a, "train_labels");
            let si = files(&mut a, "test_images");
            let sl = files(&mut a, "test_labels");
            (|| Some(Dataset::Idx { train_images: ti?, train_labels: tl?, test_images: si?, test_labels: sl? }))()
        }
    };
    let known: &[&str] = match name {
        "synthetic_digits" => &["train", "test", "val", "augment"],
        "idx" => &["train_images", "train_labels", "test_images", "test_labels", "val", "augment"],
        _ => &["path", "val", "augment"],
    };
    a.finish(sink, known);
    if let (Some(Dataset::SyntheticDigits { train, .. }), Some(val)) = (&dataset, val) {
        if val as usize >= *train {
            sink.push(
                Diagnostic::error("E0204", format!("`val: {val}` leaves no training data out of {train}"))
                    .at(v.span, "hold-out too large")
                    .with_help("hold out fewer examples than the training split has"),
            );
        }
    }
    Some(DataSpec { dataset: dataset?, path, val: val? as usize, augment: augment?, span: s.span })
}

fn augments(sink: &mut Sink, v: &Value) -> Option<Vec<Augment>> {
    let mut out = Vec::new();
    for item in r::list(sink, v)? {
        let (name, mut a) = r::variant(sink, item, "augmentation", &["crop", "flip"])?;
        match name {
            "crop" => {
                let size =
                    a.require(sink, 0, "size", "crop(32, pad: 4)").and_then(|v| r::int(sink, v, "crop size", 1, 4096));
                let pad = a.named("pad").map_or(Some(0), |v| r::int(sink, v, "pad", 0, 64));
                a.finish(sink, &["size", "pad"]);
                out.push(Augment::Crop { size: size? as usize, pad: pad? as usize });
            }
            _ => {
                a.finish(sink, &[]);
                out.push(Augment::Flip);
            }
        }
    }
    Some(out)
}

// ---------------------------------------------------------------- sparsity

pub struct SparsitySpec {
    pub sparsity: Sparsity,
    /// `dense [...]` selectors with their spans, checked against the model later.
    pub dense: Vec<(String, Span)>,
}

const SPARSITY_KEYS: &[&str] = &["target", "distribution", "dense", "layer", "mask", "schedule", "update", "freeze"];

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
        let (name, a) = r::variant(sink, v, "distribution", &["uniform", "erk", "global"])?;
        a.finish(sink, &[]);
        sp.distribution = match name {
            "uniform" => Distribution::Uniform,
            "erk" => Distribution::Erk,
            _ => Distribution::Global,
        };
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

/// The one positional argument of a statement.
pub fn single<'a>(sink: &mut Sink, st: &'a Statement, example: &str) -> Option<&'a Value> {
    check_block_use(sink, st, false);
    let mut a = Args::of_statement(sink, st);
    let v = a.require(sink, 0, "value", example);
    a.finish(sink, &["value"]);
    v
}

fn count(sink: &mut Sink, a: &mut Args, key: &str, default: u64, hi: u64) -> Option<usize> {
    a.named(key).map_or(Some(default), |v| r::int(sink, v, key, 1, hi)).map(|x| x as usize)
}

fn time_arg(sink: &mut Sink, a: &mut Args, key: &str, default: Option<Time>, example: &str) -> Option<Time> {
    match (a.named(key), default) {
        (Some(v), _) => r::time(sink, v),
        (None, Some(d)) => Some(d),
        (None, None) => {
            a.require(sink, usize::MAX, key, example);
            None
        }
    }
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
        _ => {
            let rounds = count(sink, &mut a, "rounds", 5, 1000);
            let rate = a.named("rate").map_or(Some(0.2), |v| r::fraction(sink, v, "the pruning rate", false));
            let rewind = time_arg(sink, &mut a, "rewind", Some(Time::Steps(0)), "");
            (
                (|| Some(MaskMethod::Lottery { rounds: rounds?, rate: rate?, rewind: rewind? }))(),
                &["rounds", "rate", "rewind"],
            )
        }
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
        _ => {
            let example = "cyclic(cycles: 2, length: 50 epochs, peak: 3x)";
            let cycles = count(sink, &mut a, "cycles", 1, 10_000);
            let length = time_arg(sink, &mut a, "length", None, example);
            let peak = a.named("peak").map_or(Some(2.0), |v| r::multiplier(sink, v, "peak"));
            let shape = match a.named("shape") {
                None => Some(CycleShape::Cosine),
                Some(v) => r::variant(sink, v, "cycle shape", &["cosine", "triangular"]).map(|(n, a)| {
                    a.finish(sink, &[]);
                    if n == "cosine" {
                        CycleShape::Cosine
                    } else {
                        CycleShape::Triangular
                    }
                }),
            };
            (
                (|| Some(Schedule::Cyclic { cycles: cycles?, length: length?, peak: peak?, shape: shape? }))(),
                &["cycles", "length", "peak", "shape"],
            )
        }
    };
    a.finish(sink, known);
    s
}

fn update(sink: &mut Sink, v: &Value) -> Option<Update> {
    let (name, mut a) = r::variant(sink, v, "update rule", &["hard", "soft_threshold", "prune_regrow"])?;
    let (u, known): (Option<Update>, &[&str]) = match name {
        "hard" => (Some(Update::Hard), &[]),
        "soft_threshold" => {
            let ste = match a.named("ste") {
                None => Some(Ste::Dense),
                Some(v) => r::variant(sink, v, "straight-through mode", &["dense", "masked"]).map(|(n, a)| {
                    a.finish(sink, &[]);
                    if n == "dense" {
                        Ste::Dense
                    } else {
                        Ste::Masked
                    }
                }),
            };
            let rescale = a.named("rescale").map_or(Some(true), |v| r::boolean(sink, v));
            let sigma = a.named("sigma").map_or(Some(false), |v| r::boolean(sink, v));
            let scope = match a.named("scope") {
                None => Some(Scope::Global),
                Some(v) => r::variant(sink, v, "scope", &["global", "layer"]).map(|(n, a)| {
                    a.finish(sink, &[]);
                    if n == "global" {
                        Scope::Global
                    } else {
                        Scope::Layer
                    }
                }),
            };
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
        _ => {
            let example = "prune_regrow(every: 100 steps, drop: 30%)";
            let every = time_arg(sink, &mut a, "every", None, example);
            let drop = a.named("drop").map_or(Some(0.3), |v| r::fraction(sink, v, "the drop fraction", false));
            let grow = match a.named("grow") {
                None => Some(Growth::Gradient),
                Some(v) => r::variant(sink, v, "growth rule", &["random", "gradient"]).map(|(n, a)| {
                    a.finish(sink, &[]);
                    if n == "random" {
                        Growth::Random
                    } else {
                        Growth::Gradient
                    }
                }),
            };
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
    };
    a.finish(sink, known);
    u
}

// ---------------------------------------------------------------- techniques

pub const TECHNIQUES: &[&str] =
    &["ghost_neurons", "ghost_skip", "label_smoothing", "gradinit", "dyrelu", "weight_sharing"];

pub fn techniques(sink: &mut Sink, s: &Statement) -> Vec<Technique> {
    check_block_use(sink, s, true);
    let Some(block) = &s.block else { return vec![] };
    let b = BlockReader::new(sink, block, "techniques", TECHNIQUES, &[]);
    let mut out = Vec::new();
    for &k in TECHNIQUES {
        let Some(st) = b.one(k) else { continue };
        check_block_use(sink, st, false);
        let mut a = Args::of_statement(sink, st);
        let span = st.span;
        let (t, known): (Option<Technique>, &[&str]) = match k {
            "ghost_neurons" => {
                let activation = match a.named("activation") {
                    None => Some(Activation::Swish),
                    Some(v) => r::variant(sink, v, "soft activation", &["swish", "mish", "gelu"]).map(|(n, a)| {
                        a.finish(sink, &[]);
                        match n {
                            "swish" => Activation::Swish,
                            "mish" => Activation::Mish,
                            _ => Activation::Gelu,
                        }
                    }),
                };
                let until = time_arg(sink, &mut a, "until", Some(Time::Fraction(0.4)), "");
                let blend = time_arg(sink, &mut a, "blend", Some(Time::Epochs(1.0)), "");
                (
                    (|| Some(Technique::GhostNeurons { activation: activation?, until: until?, blend: blend?, span }))(
                    ),
                    &["activation", "until", "blend"],
                )
            }
            "ghost_skip" => {
                let init = a.named("init").map_or(Some(1e-4), |v| r::positive(sink, v, "init"));
                let fade = match a.named("fade") {
                    None => Some((Time::Fraction(0.0), Time::Fraction(0.4))),
                    Some(v) => r::time_range(sink, v).map(|(a, b, _, _)| (a, b)),
                };
                (
                    (|| Some(Technique::GhostSkip { init: init?, fade_start: fade?.0, fade_end: fade?.1, span }))(),
                    &["init", "fade"],
                )
            }
            "label_smoothing" => {
                let alpha =
                    a.require(sink, 0, "alpha", "label_smoothing(0.1)").and_then(|v| r::probability(sink, v, "alpha"));
                let style = match a.named("style") {
                    None => Some(SmoothingStyle::Uniform),
                    Some(v) => r::variant(sink, v, "smoothing style", &["uniform", "others"]).map(|(n, a)| {
                        a.finish(sink, &[]);
                        if n == "uniform" {
                            SmoothingStyle::Uniform
                        } else {
                            SmoothingStyle::Others
                        }
                    }),
                };
                if alpha == Some(1.0) {
                    sink.push(
                        Diagnostic::error("E0206", "alpha must be below 1").at(span, "removes all label information"),
                    );
                }
                ((|| Some(Technique::LabelSmoothing { alpha: alpha?, style: style?, span }))(), &["alpha", "style"])
            }
            "gradinit" => {
                let iters = count(sink, &mut a, "iters", 180, 1_000_000);
                let lr = a.named("lr").map_or(Some(1e-2), |v| r::positive(sink, v, "lr"));
                let eta = a.named("eta").map_or(Some(0.1), |v| r::positive(sink, v, "eta"));
                let min_scale = a.named("min_scale").map_or(Some(0.01), |v| r::positive(sink, v, "min_scale"));
                (
                    (|| Some(Technique::GradInit { iters: iters?, lr: lr?, eta: eta?, min_scale: min_scale?, span }))(),
                    &["iters", "lr", "eta", "min_scale"],
                )
            }
            "dyrelu" => {
                let phase = match a.named("phase_out") {
                    None => Some((Time::Fraction(0.25), Time::Fraction(0.5))),
                    Some(v) => r::time_range(sink, v).map(|(a, b, _, _)| (a, b)),
                };
                let reduction = count(sink, &mut a, "reduction", 4, 1024);
                (
                    (|| {
                        Some(Technique::DyRelu {
                            phase_start: phase?.0,
                            phase_end: phase?.1,
                            reduction: reduction?,
                            span,
                        })
                    })(),
                    &["phase_out", "reduction"],
                )
            }
            _ => {
                let from = a.named("from_block").map_or(Some(1), |v| r::int(sink, v, "from_block", 1, 1000));
                (from.map(|f| Technique::WeightSharing { from_block: f as usize, span }), &["from_block"])
            }
        };
        a.finish(sink, known);
        out.extend(t);
    }
    out
}

// ---------------------------------------------------------------- train

const TRAIN_KEYS: &[&str] = &["epochs", "batch", "optimizer", "lr", "loss", "clip_grad_norm", "eval_every"];

pub fn train(sink: &mut Sink, s: &Statement) -> Option<Train> {
    check_block_use(sink, s, true);
    let block = s.block.as_ref()?;
    let b = BlockReader::new(sink, block, "train", TRAIN_KEYS, &[]);
    let epochs = match b.one("epochs") {
        Some(st) => single(sink, st, "epochs 30").and_then(|v| r::int(sink, v, "epochs", 1, 100_000)),
        None => {
            missing(sink, block.span, "`train`", "epochs", "epochs 30");
            None
        }
    };
    let batch = b
        .one("batch")
        .map_or(Some(128), |st| single(sink, st, "batch 128").and_then(|v| r::int(sink, v, "batch size", 1, 1 << 20)));
    let optimizer = b
        .one("optimizer")
        .map_or(Some(Optimizer::Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.0 }), |st| {
            single(sink, st, "optimizer sgd(lr: 0.1)").and_then(|v| optimizer(sink, v))
        });
    let lr = b
        .one("lr")
        .map_or(Some(LrSchedule::Constant), |st| single(sink, st, "lr cosine").and_then(|v| lr_schedule(sink, v)));
    let loss = b.one("loss").map_or(Some(Loss::CrossEntropy), |st| {
        let v = single(sink, st, "loss cross_entropy")?;
        let (_, a) = r::variant(sink, v, "loss", &["cross_entropy"])?;
        a.finish(sink, &[]);
        Some(Loss::CrossEntropy)
    });
    let clip = match b.one("clip_grad_norm") {
        None => Some(None),
        Some(st) => {
            single(sink, st, "clip_grad_norm 3.0").and_then(|v| r::positive(sink, v, "clip_grad_norm")).map(Some)
        }
    };
    let eval_every = b
        .one("eval_every")
        .map_or(Some(1), |st| single(sink, st, "eval_every 1").and_then(|v| r::int(sink, v, "eval_every", 1, 100_000)));
    // A field that failed is already reported; its default stands in so the cross-field rules
    // still run (the plan is discarded because of the error).
    Some(Train {
        epochs: epochs?,
        batch: batch.unwrap_or(128) as usize,
        optimizer: optimizer.unwrap_or(Optimizer::Sgd { lr: 0.1, momentum: 0.0, nesterov: false, weight_decay: 0.0 }),
        lr: lr.unwrap_or(LrSchedule::Constant),
        loss: loss.unwrap_or(Loss::CrossEntropy),
        clip_grad_norm: clip.unwrap_or(None),
        eval_every: eval_every.unwrap_or(1),
    })
}

fn optimizer(sink: &mut Sink, v: &Value) -> Option<Optimizer> {
    let (name, mut a) = r::variant(sink, v, "optimizer", &["sgd", "adam", "adamw"])?;
    let lr = a.require(sink, usize::MAX, "lr", "sgd(lr: 0.1)").and_then(|v| r::positive(sink, v, "the learning rate"));
    let wd_default = if name == "adamw" { 0.01 } else { 0.0 };
    let wd = a.named("weight_decay").map_or(Some(wd_default), |v| r::non_negative(sink, v, "weight_decay"));
    let (opt, known): (Option<Optimizer>, &[&str]) = if name == "sgd" {
        let momentum = a.named("momentum").map_or(Some(0.0), |v| r::fraction(sink, v, "momentum", false));
        let nesterov = a.named("nesterov").map_or(Some(false), |v| r::boolean(sink, v));
        let o = (|| Some(Optimizer::Sgd { lr: lr?, momentum: momentum?, nesterov: nesterov?, weight_decay: wd? }))();
        (o, &["lr", "momentum", "nesterov", "weight_decay"])
    } else {
        let beta1 = a.named("beta1").map_or(Some(0.9), |v| r::fraction(sink, v, "beta1", false));
        let beta2 = a.named("beta2").map_or(Some(0.999), |v| r::fraction(sink, v, "beta2", false));
        let eps = a.named("eps").map_or(Some(1e-8), |v| r::positive(sink, v, "eps"));
        let o = (|| {
            Some(Optimizer::Adam {
                lr: lr?,
                beta1: beta1?,
                beta2: beta2?,
                eps: eps?,
                weight_decay: wd?,
                decoupled: name == "adamw",
            })
        })();
        (o, &["lr", "beta1", "beta2", "eps", "weight_decay"])
    };
    a.finish(sink, known);
    opt
}

fn lr_schedule(sink: &mut Sink, v: &Value) -> Option<LrSchedule> {
    let (name, mut a) = r::variant(sink, v, "learning-rate schedule", &["constant", "cosine", "step"])?;
    let (s, known): (Option<LrSchedule>, &[&str]) = match name {
        "constant" => (Some(LrSchedule::Constant), &[]),
        "cosine" => (
            time_arg(sink, &mut a, "warmup", Some(Time::Steps(0)), "").map(|warmup| LrSchedule::Cosine { warmup }),
            &["warmup"],
        ),
        _ => {
            let at = a.require(sink, 0, "at", "step(at: [80 epochs, 120 epochs], factor: 0.1)").and_then(|v| {
                let items = r::list(sink, v)?;
                let times: Vec<Option<Time>> = items.iter().map(|i| r::time(sink, i)).collect();
                times.into_iter().collect::<Option<Vec<Time>>>()
            });
            let factor = a.named("factor").map_or(Some(0.1), |v| r::positive(sink, v, "factor"));
            ((|| Some(LrSchedule::Step { at: at?, factor: factor? }))(), &["at", "factor"])
        }
    };
    a.finish(sink, known);
    s
}

// ---------------------------------------------------------------- output

pub fn output(sink: &mut Sink, s: Option<&Statement>, recipe: &str) -> Option<Output> {
    let mut out = Output { dir: format!("runs/{recipe}"), checkpoint_every: None, plots: true };
    let Some(s) = s else { return Some(out) };
    check_block_use(sink, s, true);
    let block = s.block.as_ref()?;
    let b = BlockReader::new(sink, block, "output", &["dir", "checkpoint", "plots"], &[]);
    if let Some(st) = b.one("dir") {
        out.dir = single(sink, st, "dir \"runs/x\"").and_then(|v| r::string(sink, v))?.to_string();
    }
    if let Some(st) = b.one("checkpoint") {
        let mut a = Args::of_statement(sink, st);
        let every = a.require(sink, 0, "every", "checkpoint every: 10 epochs");
        a.finish(sink, &["every"]);
        out.checkpoint_every = match &every?.kind {
            ValueKind::Duration(n, crate::syntax::ast::TimeUnit::Epochs) if *n >= 1.0 && n.fract() == 0.0 => {
                Some(*n as u64)
            }
            _ => {
                sink.push(
                    Diagnostic::error("E0202", "checkpoints are taken every whole number of epochs")
                        .at(every?.span, "expected a number of epochs")
                        .with_help("for example `checkpoint every: 10 epochs`"),
                );
                return None;
            }
        };
    }
    if let Some(st) = b.one("plots") {
        out.plots = single(sink, st, "plots true").and_then(|v| r::boolean(sink, v))?;
    }
    Some(out)
}
