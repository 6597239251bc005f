//! The `train` and `output` blocks: epochs, batch, optimizer, learning-rate schedule, loss,
//! clipping; the run directory and checkpoints.

use super::reader::{self as r, check_block_use, missing, single, time_arg, Args, BlockReader, Sink};
use crate::diagnostics::Diagnostic;
use crate::ir::plan::*;
use crate::syntax::ast::{Statement, Value, ValueKind};

pub const OUTPUT_KEYS: &[&str] = &["dir", "checkpoint", "plots"];

pub const TRAIN_KEYS: &[&str] =
    &["epochs", "batch", "optimizer", "lr", "loss", "clip_grad_norm", "eval_every", "not_learning"];

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
    let not_learning = match b.one("not_learning") {
        None => Some(NotLearning { after: Time::Epochs(1.0), stop: false, span: None }),
        Some(st) => {
            let mut a = Args::of_statement(sink, st);
            let after = time_arg(sink, &mut a, "after", Some(Time::Epochs(1.0)), "not_learning(after: 2 epochs)");
            let stop = r::choice(sink, &mut a, "action", "action", &[("warn", false), ("stop", true)], false);
            a.finish(sink, &["after", "action"]);
            (|| Some(NotLearning { after: after?, stop: stop?, span: Some(st.span) }))()
        }
    };
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
        not_learning: not_learning.unwrap_or(NotLearning { after: Time::Epochs(1.0), stop: false, span: None }),
        span: b.one("optimizer").map_or(s.span, |o| o.span),
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

pub fn output(sink: &mut Sink, s: Option<&Statement>, recipe: &str) -> Option<Output> {
    let mut out = Output { dir: format!("runs/{recipe}"), checkpoint: None, plots: true };
    let Some(s) = s else { return Some(out) };
    check_block_use(sink, s, true);
    let block = s.block.as_ref()?;
    let b = BlockReader::new(sink, block, "output", OUTPUT_KEYS, &[]);
    if let Some(st) = b.one("dir") {
        out.dir = single(sink, st, "dir \"runs/x\"").and_then(|v| r::string(sink, v))?.to_string();
    }
    if let Some(st) = b.one("checkpoint") {
        let mut a = Args::of_statement(sink, st);
        let every = a.require(sink, 0, "every", "checkpoint every: 10 epochs");
        let keep = a.named("keep").map_or(Some(2), |v| r::int(sink, v, "keep", 1, 1000));
        a.finish(sink, &["every", "keep"]);
        let every_value = every?;
        let every = match &every_value.kind {
            ValueKind::Duration(n, unit) if *n >= 1.0 && n.fract() == 0.0 => match unit {
                crate::syntax::ast::TimeUnit::Epochs => Some(Time::Epochs(*n)),
                crate::syntax::ast::TimeUnit::Steps => Some(Time::Steps(*n as u64)),
            },
            _ => None,
        };
        let Some(every) = every else {
            sink.push(
                Diagnostic::error("E0202", "checkpoints are taken every whole number of steps or epochs")
                    .at(every_value.span, "expected a whole number of steps or epochs")
                    .with_help("for example `checkpoint every: 10 epochs` or `checkpoint every: 500 steps, keep: 3`"),
            );
            return None;
        };
        out.checkpoint = Some(Checkpoint { every, keep: keep? as usize, span: st.span });
    }
    if let Some(st) = b.one("plots") {
        out.plots = single(sink, st, "plots true").and_then(|v| r::boolean(sink, v))?;
    }
    Some(out)
}
