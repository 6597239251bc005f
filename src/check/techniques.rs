//! The `techniques` block: the papers' training tricks with their defaults.

use super::reader::{self as r, check_block_use, count, time_arg, Args, BlockReader, Sink};
use crate::diagnostics::Diagnostic;
use crate::ir::plan::*;
use crate::syntax::ast::Statement;

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
                let activation = r::choice(
                    sink,
                    &mut a,
                    "activation",
                    "soft activation",
                    &[("swish", Activation::Swish), ("mish", Activation::Mish), ("gelu", Activation::Gelu)],
                    Activation::Swish,
                );
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
                let style = r::choice(
                    sink,
                    &mut a,
                    "style",
                    "smoothing style",
                    &[("uniform", SmoothingStyle::Uniform), ("others", SmoothingStyle::Others)],
                    SmoothingStyle::Uniform,
                );
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
