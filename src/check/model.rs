//! The `model` statement: a zoo name or an explicit layer list, with shape inference from the
//! data's input shape through every layer. A shape error points at the layer that cannot accept
//! its input.

use std::collections::HashMap;

use super::reader::{self, check_block_use, unknown_name, Args, Sink};
use super::zoo;
use crate::diagnostics::{Diagnostic, Span};
use crate::ir::plan::{Activation, Layer, LayerKind, Model, Shape};
use crate::syntax::ast::{Block, Statement, ValueKind};

pub const LAYER_KEYWORDS: &[&str] = &[
    "input",
    "conv",
    "dense",
    "maxpool",
    "avgpool",
    "global_avgpool",
    "batchnorm",
    "relu",
    "swish",
    "mish",
    "gelu",
    "flatten",
    "dropout",
    "residual",
    "shortcut",
];

/// Reads `model ...` and infers every shape; `input` and `classes` come from the data.
pub fn check_model(sink: &mut Sink, s: &Statement, input: [usize; 3], classes: usize) -> Option<Model> {
    let span = s.span;
    let (name, mut layers) = match (&s.block, s.args.first()) {
        (Some(block), None) => ("custom".to_string(), explicit(sink, block, input)?),
        (Some(b), Some(_)) => {
            sink.push(
                Diagnostic::error("E0112", "a model is either a zoo name or a layer list, not both")
                    .at(b.span, "layer list after a zoo name"),
            );
            return None;
        }
        (None, _) => zoo_model(sink, s, classes)?,
    };
    let mut cx = Infer { sink, names: HashMap::new() };
    let out = cx.infer_list(&mut layers, input.to_vec())?;
    let want: Shape = vec![classes];
    if out != want {
        let last = layers.last().map_or(span, |l| l.span);
        sink.push(
            Diagnostic::error(
                "E0403",
                format!("the model's output is {}, but the data has {classes} classes", show(&out)),
            )
            .at(last, format!("outputs {}", show(&out)))
            .with_help(format!("end the model with `dense {classes}`")),
        );
        return None;
    }
    let params = super::params::collect(&layers);
    Some(Model { name, input, classes, layers, params, shared: vec![], span })
}

fn zoo_model(sink: &mut Sink, s: &Statement, classes: usize) -> Option<(String, Vec<Layer>)> {
    let v = match s.args.first() {
        Some(a) => &a.value,
        None => {
            sink.push(
                Diagnostic::error("E0109", "`model` needs a zoo name or a layer list")
                    .at(s.span, "no model given")
                    .with_help("for example `model lenet300_100` or `model { input 1x28x28 ... }`"),
            );
            return None;
        }
    };
    let (name, mut args) = reader::variant(sink, v, "model", zoo::ZOO)?;
    let mut extra = Args::of_statement(sink, s);
    extra.positional(0);
    extra.finish(sink, &[]);
    let width = args.named("width").and_then(|v| reader::positive(sink, v, "width")).unwrap_or(1.0);
    let classes_arg = args.named("classes").and_then(|v| reader::int(sink, v, "classes", 2, 100_000));
    args.finish(sink, &["width", "classes"]);
    if let Some(c) = classes_arg {
        if c as usize != classes {
            sink.push(
                Diagnostic::error("E0403", format!("`classes: {c}` but the data has {classes} classes"))
                    .at(v.span, "class count differs from the data")
                    .with_help(format!("use `classes: {classes}` or leave it out")),
            );
            return None;
        }
    }
    match zoo::build(name, width, classes, s.span) {
        Some(layers) => Some((name.to_string(), layers)),
        None => {
            sink.push(
                Diagnostic::error("E0406", format!("zoo model `{name}` is not available in this build"))
                    .at(v.span, "not implemented yet")
                    .with_help("write the model as an explicit layer list, or pick another zoo model"),
            );
            None
        }
    }
}

/// An explicit layer list; the `input` statement, if any, must match the data.
fn explicit(sink: &mut Sink, block: &Block, data_input: [usize; 3]) -> Option<Vec<Layer>> {
    let mut counters: HashMap<&str, usize> = HashMap::new();
    let mut layers = Vec::new();
    for s in &block.statements {
        if s.keyword.name == "input" {
            check_input(sink, s, data_input);
            continue;
        }
        if let Some(l) = layer(sink, s, &mut counters) {
            layers.push(l);
        }
    }
    if layers.is_empty() {
        sink.push(
            Diagnostic::error("E0406", "the model has no layers")
                .at(block.span, "empty layer list")
                .with_help("add layers such as `flatten`, `dense 10`"),
        );
        return None;
    }
    Some(layers)
}

fn check_input(sink: &mut Sink, s: &Statement, data_input: [usize; 3]) {
    let mut args = Args::of_statement(sink, s);
    if let Some(v) = args.require(sink, 0, "shape", "input 1x28x28") {
        match &v.kind {
            ValueKind::Shape(dims) if dims.as_slice() != data_input => sink.push(
                Diagnostic::error(
                    "E0404",
                    format!("the model's input is {}, but the data is {}", show(dims), show(&data_input)),
                )
                .at(v.span, "does not match the data")
                .with_help(format!("write `input {}`", show(&data_input))),
            ),
            ValueKind::Shape(_) => {}
            _ => sink.push(
                Diagnostic::error("E0201", format!("expected a shape, found {}", v.kind.describe()))
                    .at(v.span, "expected a shape such as `1x28x28`"),
            ),
        }
    }
    args.finish(sink, &["shape"]);
}

fn layer(sink: &mut Sink, s: &Statement, counters: &mut HashMap<&str, usize>) -> Option<Layer> {
    let Some(&kw) = LAYER_KEYWORDS.iter().find(|k| **k == s.keyword.name) else {
        sink.push(unknown_name("E0101", "layer", &s.keyword, LAYER_KEYWORDS));
        return None;
    };
    check_block_use(sink, s, matches!(kw, "residual" | "shortcut"));
    let mut a = Args::of_statement(sink, s);
    let name_arg = a.named("name").and_then(|v| reader::string(sink, v)).map(str::to_string);
    let (prefix, kind, known): (&str, Option<LayerKind>, &[&str]) = match kw {
        "conv" => {
            let out = a
                .require(sink, 0, "out channels", "conv 20 kernel: 5")
                .and_then(|v| reader::int(sink, v, "out channels", 1, 1 << 16));
            let kernel =
                a.require(sink, 1, "kernel", "conv 20 kernel: 5").and_then(|v| reader::int(sink, v, "kernel", 1, 64));
            let stride = a.named("stride").map_or(Some(1), |v| reader::int(sink, v, "stride", 1, 64));
            let padding = a.named("padding").map_or(Some(0), |v| reader::int(sink, v, "padding", 0, 64));
            let bias = a.named("bias").map_or(Some(true), |v| reader::boolean(sink, v));
            let groups = a.named("groups").map_or(Some(1), |v| reader::int(sink, v, "groups", 1, 1 << 16));
            let kind = (|| {
                Some(LayerKind::Conv {
                    out: out? as usize,
                    kernel: kernel? as usize,
                    stride: stride? as usize,
                    padding: padding? as usize,
                    bias: bias?,
                    groups: groups? as usize,
                })
            })();
            ("conv", kind, &["out", "kernel", "stride", "padding", "bias", "groups", "name"])
        }
        "dense" => {
            let out =
                a.require(sink, 0, "out", "dense 500").and_then(|v| reader::int(sink, v, "output size", 1, 1 << 20));
            let bias = a.named("bias").map_or(Some(true), |v| reader::boolean(sink, v));
            ("fc", (|| Some(LayerKind::Dense { out: out? as usize, bias: bias? }))(), &["out", "bias", "name"])
        }
        "maxpool" | "avgpool" => {
            let size = a.require(sink, 0, "size", "maxpool 2").and_then(|v| reader::int(sink, v, "pool size", 1, 64));
            let stride = a.named("stride").map(|v| reader::int(sink, v, "stride", 1, 64));
            let kind = size.and_then(|size| {
                let stride = stride.unwrap_or(Some(size))? as usize;
                let size = size as usize;
                Some(if kw == "maxpool" {
                    LayerKind::MaxPool { size, stride }
                } else {
                    LayerKind::AvgPool { size, stride }
                })
            });
            ("pool", kind, &["size", "stride", "name"])
        }
        "global_avgpool" => ("pool", Some(LayerKind::GlobalAvgPool), &["name"]),
        "batchnorm" => ("bn", Some(LayerKind::BatchNorm { eps: 1e-5, momentum: 0.1 }), &["name"]),
        "relu" => ("relu", Some(LayerKind::Act(Activation::Relu)), &["name"]),
        "swish" => ("swish", Some(LayerKind::Act(Activation::Swish)), &["name"]),
        "mish" => ("mish", Some(LayerKind::Act(Activation::Mish)), &["name"]),
        "gelu" => ("gelu", Some(LayerKind::Act(Activation::Gelu)), &["name"]),
        "flatten" => ("flatten", Some(LayerKind::Flatten), &["name"]),
        "dropout" => {
            let p = a
                .require(sink, 0, "p", "dropout 0.5")
                .and_then(|v| reader::probability(sink, v, "dropout probability"));
            ("dropout", p.map(|p| LayerKind::Dropout { p }), &["p", "name"])
        }
        "residual" => {
            let kind = s.block.as_ref().and_then(|b| residual(sink, b, counters));
            ("res", kind, &["name"])
        }
        _ => {
            sink.push(
                Diagnostic::error("E0101", "`shortcut` is only allowed inside `residual { ... }`")
                    .at(s.keyword.span, "outside a residual block"),
            );
            return None;
        }
    };
    a.finish(sink, known);
    let n = counters.entry(prefix).or_insert(0);
    *n += 1;
    let name = name_arg.unwrap_or_else(|| format!("{prefix}{n}"));
    Some(Layer { name, kind: kind?, input: vec![], output: vec![], span: s.span })
}

fn residual(sink: &mut Sink, block: &Block, counters: &mut HashMap<&str, usize>) -> Option<LayerKind> {
    let (mut body, mut shortcut) = (Vec::new(), Vec::new());
    let mut ok = true;
    for s in &block.statements {
        if s.keyword.name == "shortcut" {
            check_block_use(sink, s, true);
            for inner in s.block.iter().flat_map(|b| &b.statements) {
                match layer(sink, inner, counters) {
                    Some(l) => shortcut.push(l),
                    None => ok = false,
                }
            }
            continue;
        }
        match layer(sink, s, counters) {
            Some(l) => body.push(l),
            None => ok = false,
        }
    }
    ok.then_some(LayerKind::Residual { body, shortcut, scale: None })
}

struct Infer<'s> {
    sink: &'s mut Sink,
    names: HashMap<String, Span>,
}

impl Infer<'_> {
    fn infer_list(&mut self, layers: &mut [Layer], mut shape: Shape) -> Option<Shape> {
        for l in layers.iter_mut() {
            shape = self.infer(l, shape)?;
        }
        Some(shape)
    }

    fn infer(&mut self, l: &mut Layer, input: Shape) -> Option<Shape> {
        if let Some(first) = self.names.insert(l.name.clone(), l.span) {
            self.sink.push(
                Diagnostic::error("E0405", format!("two layers are named `{}`", l.name))
                    .at(l.span, "second layer with this name")
                    .with_secondary(first, "first one here")
                    .with_help("give each layer its own `name:`"),
            );
        }
        l.input = input.clone();
        let (lname, lspan) = (l.name.clone(), l.span);
        let id = (lname.as_str(), lspan);
        let out = match (&mut l.kind, input.as_slice()) {
            (LayerKind::Dense { out, .. }, [_]) => vec![*out],
            (LayerKind::Conv { out, kernel, stride, padding, groups, .. }, [c, h, w]) => {
                let (k, s, p) = (*kernel, *stride, *padding);
                if h + 2 * p < k || w + 2 * p < k {
                    return self.cannot(id, &input, &format!("kernel {k} is larger than the padded input"));
                }
                if c % *groups != 0 || *out % *groups != 0 {
                    return self.groups_mismatch(id, *c, *out, *groups);
                }
                vec![*out, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1]
            }
            (LayerKind::MaxPool { size, stride } | LayerKind::AvgPool { size, stride }, [c, h, w]) => {
                if h < size || w < size {
                    return self.cannot(id, &input, &format!("pool size {size} is larger than the input"));
                }
                vec![*c, (h - *size) / *stride + 1, (w - *size) / *stride + 1]
            }
            (LayerKind::GlobalAvgPool, [c, _, _]) => vec![*c],
            (LayerKind::Flatten, dims) => vec![dims.iter().product()],
            (LayerKind::BatchNorm { .. } | LayerKind::Act(_) | LayerKind::Dropout { .. }, _) => input.clone(),
            (LayerKind::Residual { body, shortcut, .. }, _) => {
                let b = self.infer_list(body, input.clone())?;
                let s = self.infer_list(shortcut, input.clone())?;
                if b != s {
                    let d = Diagnostic::error(
                        "E0402",
                        format!("residual branches disagree: body gives {}, shortcut gives {}", show(&b), show(&s)),
                    )
                    .at(l.span, "the two branches must have the same shape")
                    .with_help("add a `shortcut { conv ... }` that maps the input to the body's shape");
                    self.sink.push(d);
                    return None;
                }
                b
            }
            (LayerKind::Dense { .. }, _) => {
                return self.cannot(id, &input, "`dense` needs a flat input; add `flatten` before it")
            }
            (_, _) => return self.cannot(id, &input, "it needs an image input (channels x height x width)"),
        };
        if out.contains(&0) {
            return self.cannot(id, &input, "the output would be empty");
        }
        l.output = out.clone();
        Some(out)
    }

    /// E0407: `groups:` must divide both channel counts.
    fn groups_mismatch(&mut self, l: (&str, Span), c: usize, out: usize, groups: usize) -> Option<Shape> {
        let (name, span) = l;
        let which = match (c % groups, out % groups) {
            (0, _) => format!("its {out} output channels"),
            (_, 0) => format!("its {c} input channels"),
            _ => format!("its {c} input and {out} output channels"),
        };
        self.sink.push(
            Diagnostic::error("E0407", format!("layer `{name}` has `groups: {groups}`, which does not divide {which}"))
                .at(span, format!("{c} -> {out} channels in {groups} groups"))
                .with_help(format!(
                    "use a divisor of both {c} and {out}; a depthwise conv is `conv {c} kernel: 3 groups: {c}`"
                )),
        );
        None
    }

    fn cannot(&mut self, l: (&str, Span), input: &[usize], why: &str) -> Option<Shape> {
        let (name, span) = l;
        self.sink.push(
            Diagnostic::error("E0401", format!("layer `{name}` cannot take an input of shape {}", show(input)))
                .at(span, format!("receives {}", show(input)))
                .with_help(why.to_string()),
        );
        None
    }
}

pub fn show(dims: &[usize]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
}

/// A layer name in the model, for `layer "NAME"` and `dense [...]` checks.
pub fn find_layer<'m>(layers: &'m [Layer], name: &str) -> Option<&'m Layer> {
    layers.iter().find_map(|l| {
        if l.name == name {
            return Some(l);
        }
        match &l.kind {
            LayerKind::Residual { body, shortcut, .. } => find_layer(body, name).or_else(|| find_layer(shortcut, name)),
            _ => None,
        }
    })
}
