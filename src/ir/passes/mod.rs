//! The techniques that change the network, as lowering passes `Plan -> Plan`. In: a plan whose
//! per-tensor targets are assigned. Out: the layers and params that train, so `--emit ir` shows
//! the graph the engine runs and the engine's graph builder knows no paper by name:
//! - DyReLU (EAST) turns each ReLU layer into a `dyrelu` layer with its branch's params;
//! - weight sharing (EAST) maps later blocks' conv weights onto an owner's, times a scale;
//! - ghost skips (ToST) wrap each half of a residual body in a residual with a 1x1 conv + BN
//!   shortcut scaled by a fading ramp;
//! - ghost neurons (ToST) turn each remaining ReLU into a blend from a soft activation to ReLU.
//!
//! Techniques that act at run time (label smoothing, GradInit) stay in `Plan::techniques` for
//! the engine; the graph techniques stay listed there too, for the printed plan.

pub mod east;
pub mod tost;

use super::lower::LowerError;
use super::plan::{Layer, LayerKind, Plan, Ramp, RampEnd, Technique};

/// Applies every graph technique of the plan, in the order the passes compose.
pub fn apply(plan: &mut Plan) -> Vec<LowerError> {
    let techniques = plan.techniques.clone();
    let mut errors = Vec::new();
    for t in &techniques {
        if let Technique::DyRelu { reduction, phase_start, phase_end, .. } = t {
            let phase_out = Ramp { from: 1.0, to: 0.0, start: *phase_start, end: RampEnd::At(*phase_end) };
            east::dyrelu(plan, *reduction, phase_out);
        }
    }
    for t in &techniques {
        if let Technique::WeightSharing { from_block, .. } = t {
            east::share_weights(plan, *from_block);
        }
    }
    for t in &techniques {
        if let Technique::GhostSkip { init, fade_start, fade_end, .. } = t {
            let fade = Ramp { from: 1.0, to: 0.0, start: *fade_start, end: RampEnd::At(*fade_end) };
            errors.extend(tost::ghost_skip(plan, *init, fade));
        }
    }
    for t in &techniques {
        if let Technique::GhostNeurons { activation, until, blend, .. } = t {
            let ramp = Ramp { from: 0.0, to: 1.0, start: *until, end: RampEnd::After(*blend) };
            tost::ghost_neurons(&mut plan.model.layers, *activation, ramp);
        }
    }
    errors
}

/// Visits every layer, parents before their bodies, bodies before shortcuts.
pub fn for_each_layer<'a>(layers: &'a [Layer], f: &mut impl FnMut(&'a Layer)) {
    for l in layers {
        f(l);
        if let LayerKind::Residual { body, shortcut, .. } = &l.kind {
            for_each_layer(body, f);
            for_each_layer(shortcut, f);
        }
    }
}

/// [`for_each_layer`], mutably.
pub fn for_each_layer_mut(layers: &mut [Layer], f: &mut impl FnMut(&mut Layer)) {
    for l in layers {
        f(l);
        if let LayerKind::Residual { body, shortcut, .. } = &mut l.kind {
            for_each_layer_mut(body, f);
            for_each_layer_mut(shortcut, f);
        }
    }
}

/// Channels of an activation: `c` of `[c, h, w]`, `n` of a dense `[n]`.
pub fn channels(shape: &[usize]) -> usize {
    super::plan::chw(shape).0
}
