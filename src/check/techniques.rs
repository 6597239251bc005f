//! The `techniques` block: the papers' training tricks with their defaults.

use super::reader::{self as r, check_block_use, count, time_arg, Args, BlockReader, Sink};
use crate::diagnostics::Diagnostic;
use crate::ir::names::{Named, TechniqueKind};
use crate::ir::plan::*;
use crate::syntax::ast::Statement;

/// The statement keywords of the `techniques` block.
pub fn technique_names() -> Vec<&'static str> {
    TechniqueKind::names()
}

pub fn techniques(sink: &mut Sink, s: &Statement) -> Vec<Technique> {
    check_block_use(sink, s, true);
    let Some(block) = &s.block else { return vec![] };
    let names = technique_names();
    let b = BlockReader::new(sink, block, "techniques", &names, &[]);
    let mut out = Vec::new();
    for &k in TechniqueKind::ALL {
        let Some(st) = b.one(k.name()) else { continue };
        check_block_use(sink, st, false);
        let mut a = Args::of_statement(sink, st);
        let span = st.span;
        let (t, known): (Option<Technique>, &[&str]) = match k {
            TechniqueKind::GhostNeurons => {
                let activation = r::choice(
                    sink,
                    &mut a,
                    "activation",
                    "soft activation",
                    &Activation::table().into_iter().filter(|(_, a)| *a != Activation::Relu).collect::<Vec<_>>(),
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
            TechniqueKind::GhostSkip => {
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
            TechniqueKind::LabelSmoothing => {
                let alpha =
                    a.require(sink, 0, "alpha", "label_smoothing(0.1)").and_then(|v| r::probability(sink, v, "alpha"));
                let style = r::choice(
                    sink,
                    &mut a,
                    "style",
                    "smoothing style",
                    &SmoothingStyle::table(),
                    SmoothingStyle::Uniform,
                );
                if alpha == Some(1.0) {
                    sink.push(
                        Diagnostic::error("E0206", "alpha must be below 1").at(span, "removes all label information"),
                    );
                }
                ((|| Some(Technique::LabelSmoothing { alpha: alpha?, style: style?, span }))(), &["alpha", "style"])
            }
            TechniqueKind::GradInit => {
                let iters = count(sink, &mut a, "iters", 180, 1_000_000);
                let lr = a.named("lr").map_or(Some(1e-2), |v| r::positive(sink, v, "lr"));
                let eta = a.named("eta").map_or(Some(0.1), |v| r::positive(sink, v, "eta"));
                let min_scale = a.named("min_scale").map_or(Some(0.01), |v| r::positive(sink, v, "min_scale"));
                (
                    (|| Some(Technique::GradInit { iters: iters?, lr: lr?, eta: eta?, min_scale: min_scale?, span }))(),
                    &["iters", "lr", "eta", "min_scale"],
                )
            }
            TechniqueKind::DyRelu => {
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
            TechniqueKind::WeightSharing => {
                let from = a.named("from_block").map_or(Some(1), |v| r::int(sink, v, "from_block", 1, 1000));
                (from.map(|f| Technique::WeightSharing { from_block: f as usize, span }), &["from_block"])
            }
        };
        a.finish(sink, known);
        out.extend(t);
    }
    out
}
