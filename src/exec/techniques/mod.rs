//! The techniques that act at run time rather than on the graph (those are lowering passes,
//! `ir::passes`): label smoothing changes the loss, GradInit rescales the initial weights. In:
//! the plan's techniques. Out: [`RunTechniques`], and [`before_training`], the one entry point
//! the training loop calls before its first step.

pub mod gradinit;

use super::error::RunError;
use super::train::Trainer;
use crate::diagnostics::Span;
use crate::ir::plan::{Plan, SmoothingStyle, Technique};

/// What the training loop reads of the plan's techniques.
#[derive(Debug, Clone, PartialEq)]
pub struct RunTechniques {
    /// Label smoothing of the training loss.
    pub smoothing: Option<(f32, SmoothingStyle)>,
    /// GradInit's settings and statement.
    pub gradinit: Option<(gradinit::Settings, Span)>,
    /// The recipe line to blame for a diverging loss: a technique if any (they change the loss
    /// landscape), else the optimizer statement (its learning rate).
    pub blame_span: Span,
}

impl RunTechniques {
    pub fn new(plan: &Plan) -> RunTechniques {
        let mut out = RunTechniques { smoothing: None, gradinit: None, blame_span: plan.train.span };
        for (i, t) in plan.techniques.iter().enumerate() {
            let span = match t {
                Technique::LabelSmoothing { alpha, style, span } => {
                    out.smoothing = out.smoothing.or(Some((*alpha as f32, *style)));
                    *span
                }
                Technique::GradInit { iters, lr, eta, min_scale, span } => {
                    let s = gradinit::Settings {
                        iters: *iters,
                        lr: *lr as f32,
                        eta: *eta as f32,
                        min_scale: *min_scale as f32,
                        gamma: 1.0,
                        grad_clip: 1.0,
                    };
                    out.gradinit = out.gradinit.or(Some((s, *span)));
                    *span
                }
                Technique::GhostNeurons { span, .. }
                | Technique::GhostSkip { span, .. }
                | Technique::DyRelu { span, .. }
                | Technique::WeightSharing { span, .. } => *span,
            };
            if i == 0 {
                out.blame_span = span;
            }
        }
        out
    }
}

/// Runs the techniques that act before the first step (GradInit).
pub fn before_training(tr: &mut Trainer) -> Result<(), RunError> {
    if let Some((settings, span)) = tr.techniques.gradinit {
        tr.gradinit(settings, span)?;
    }
    Ok(())
}
