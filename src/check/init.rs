//! The `init` block: how the model's own tensors start. PyTorch's defaults unless it says
//! otherwise (the papers' code trains with them unless it states an init).

use super::reader::{self as r, check_block_use, single, Args, BlockReader, Sink};
use crate::diagnostics::Diagnostic;
use crate::ir::plan::{BiasInit, Fan, InitSpec, WeightInit};
use crate::syntax::ast::{Statement, Value};

pub const INIT_KEYS: &[&str] = &["weights", "bias", "layer", "sparse", "from"];
const WEIGHT_INITS: &[&str] =
    &["pytorch", "kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform", "orthogonal", "normal"];

pub fn init(sink: &mut Sink, s: Option<&Statement>) -> Option<InitSpec> {
    let mut spec = InitSpec::pytorch();
    let Some(s) = s else { return Some(spec) };
    spec.span = Some(s.span);
    check_block_use(sink, s, true);
    let block = s.block.as_ref()?;
    let b = BlockReader::new(sink, block, "init", INIT_KEYS, &[]);
    if let Some(st) = b.one("weights") {
        spec.weights = single(sink, st, "weights kaiming_normal(mode: fan_in)").and_then(|v| weight_init(sink, v))?;
    }
    if let Some(st) = b.one("bias") {
        let v = single(sink, st, "bias zeros")?;
        let (name, mut a) = r::variant(sink, v, "bias init", &["pytorch", "zeros", "normal"])?;
        spec.bias = match name {
            "zeros" => BiasInit::Zeros,
            "normal" => BiasInit::Normal { std: std(sink, &mut a)? },
            _ => BiasInit::Pytorch,
        };
        a.finish(sink, &["std"]);
    }
    for st in b.all("layer") {
        let mut a = Args::of_statement(sink, st);
        let name = a.require(sink, 0, "layer name", "layer \"fc3\" xavier_uniform").and_then(|v| r::string(sink, v));
        let how = a.require(sink, 1, "init", "layer \"fc3\" xavier_uniform").and_then(|v| weight_init(sink, v));
        a.finish(sink, &["name", "init"]);
        if let (Some(layer), Some(how)) = (name, how) {
            if let Some((_, _, prev)) = spec.layers.iter().find(|(l, _, _)| l == layer) {
                sink.push(
                    Diagnostic::error("E0309", format!("layer `{layer}` has two inits"))
                        .at(st.span, "second init")
                        .with_secondary(*prev, "first init"),
                );
                continue;
            }
            spec.layers.push((layer.to_string(), how, st.span));
        }
    }
    if let Some(st) = b.one("sparse") {
        spec.sparse = single(sink, st, "sparse true").and_then(|v| r::boolean(sink, v))?;
    }
    if let Some(st) = b.one("from") {
        let path = single(sink, st, "from \"lenet300.safetensors\"").and_then(|v| r::string(sink, v))?;
        spec.from = Some((path.to_string(), st.span));
    }
    Some(spec)
}

/// `std:` of a fixed-std normal (default 1, PyTorch's `normal_`).
fn std(sink: &mut Sink, a: &mut Args) -> Option<f64> {
    a.named("std").map_or(Some(1.0), |v| r::positive(sink, v, "std"))
}

/// `pytorch`, `normal(std: 0.01)`, `kaiming_normal(mode: fan_in, nonlinearity: relu, a: 0)`, `kaiming_uniform(...)`,
/// `xavier_normal(gain: 1)`, `xavier_uniform(gain: 1)`, `orthogonal(gain: 1)`.
fn weight_init(sink: &mut Sink, v: &Value) -> Option<WeightInit> {
    let (name, mut a) = r::variant(sink, v, "weight init", WEIGHT_INITS)?;
    let gain = |sink: &mut Sink, a: &mut Args| a.named("gain").map_or(Some(1.0), |v| r::positive(sink, v, "gain"));
    let (w, known): (Option<WeightInit>, &[&str]) = match name {
        "pytorch" => (Some(WeightInit::Pytorch), &[]),
        "kaiming_normal" | "kaiming_uniform" => {
            let fan =
                r::choice(sink, &mut a, "mode", "fan mode", &[("fan_in", Fan::In), ("fan_out", Fan::Out)], Fan::In);
            let slope = a.named("a").map_or(Some(0.0), |v| r::number(sink, v));
            let nonlinearity = r::choice(
                sink,
                &mut a,
                "nonlinearity",
                "nonlinearity",
                &[("relu", "relu"), ("leaky_relu", "leaky_relu"), ("linear", "linear"), ("tanh", "tanh")],
                "relu",
            );
            // PyTorch's `calculate_gain`.
            let gain = (|| {
                Some(match nonlinearity? {
                    "relu" => 2f64.sqrt(),
                    "leaky_relu" => (2.0 / (1.0 + slope? * slope?)).sqrt(),
                    "tanh" => 5.0 / 3.0,
                    _ => 1.0,
                })
            })();
            let normal = name == "kaiming_normal";
            ((|| Some(WeightInit::Kaiming { normal, fan: fan?, gain: gain? }))(), &["mode", "a", "nonlinearity"])
        }
        "xavier_normal" | "xavier_uniform" => {
            let normal = name == "xavier_normal";
            (gain(sink, &mut a).map(|gain| WeightInit::Xavier { normal, gain }), &["gain"])
        }
        "orthogonal" => (gain(sink, &mut a).map(|gain| WeightInit::Orthogonal { gain }), &["gain"]),
        "normal" => (std(sink, &mut a).map(|std| WeightInit::Normal { std }), &["std"]),
        // `variant` accepted only the names of `WEIGHT_INITS`.
        _ => return None,
    };
    a.finish(sink, known);
    w
}
