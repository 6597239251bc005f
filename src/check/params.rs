//! The trainable tensors of a model, and the `dense [...]` selectors that keep some of them
//! unmasked. Weights of conv and dense layers are masked by default; biases and batchnorm
//! parameters are always dense (the selectors `bias` and `batchnorm` say so explicitly).

use crate::ir::plan::{Init, Layer, LayerKind, Param, ParamKind};

pub fn collect(layers: &[Layer]) -> Vec<Param> {
    let mut out = Vec::new();
    walk(layers, &mut out);
    out
}

fn walk(layers: &[Layer], out: &mut Vec<Param>) {
    for l in layers {
        let fan_in = match &l.kind {
            LayerKind::Dense { .. } => l.input.iter().product(),
            LayerKind::Conv { kernel, groups, .. } => l.input[0] / groups.max(&1) * kernel * kernel,
            _ => 1,
        };
        let mut push = |kind: ParamKind, suffix: &str, shape: Vec<usize>| {
            out.push(Param {
                name: format!("{}.{suffix}", l.name),
                layer: l.name.clone(),
                kind,
                shape,
                masked: kind == ParamKind::Weight,
                target: None,
                // PyTorch's default (the `init` block is applied when the plan is lowered).
                init: Init::pytorch(kind, fan_in),
                added_by: None,
            })
        };
        match &l.kind {
            LayerKind::Dense { out: o, bias } => {
                push(ParamKind::Weight, "weight", vec![*o, l.input[0]]);
                if *bias {
                    push(ParamKind::Bias, "bias", vec![*o]);
                }
            }
            LayerKind::Conv { out: o, kernel, bias, groups, .. } => {
                push(ParamKind::Weight, "weight", vec![*o, l.input[0] / groups, *kernel, *kernel]);
                if *bias {
                    push(ParamKind::Bias, "bias", vec![*o]);
                }
            }
            LayerKind::BatchNorm { .. } => {
                push(ParamKind::BnScale, "scale", vec![l.input[0]]);
                push(ParamKind::BnShift, "shift", vec![l.input[0]]);
            }
            LayerKind::Residual { body, shortcut, .. } => {
                walk(body, out);
                walk(shortcut, out);
            }
            _ => {}
        }
    }
}

/// Selector keywords besides layer names and globs.
pub const SELECTORS: &[&str] = &["first", "last", "batchnorm", "bias"];

/// Whether selector `sel` picks `p`; `first`/`last` are the first and last weighted layers.
pub fn selects(sel: &str, p: &Param, params: &[Param]) -> bool {
    let weights = || params.iter().filter(|q| q.kind == ParamKind::Weight);
    match sel {
        "first" => weights().next().is_some_and(|q| q.layer == p.layer),
        "last" => weights().next_back().is_some_and(|q| q.layer == p.layer),
        "batchnorm" => matches!(p.kind, ParamKind::BnScale | ParamKind::BnShift),
        "bias" => p.kind == ParamKind::Bias,
        pattern => glob(pattern, &p.layer) || glob(pattern, &p.name),
    }
}

/// `*` matches any run of characters (dots included), `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("layer1.*", "layer1.0.conv1"));
        assert!(glob("*.conv?", "layer1.0.conv2"));
        assert!(!glob("layer2.*", "layer1.0.conv1"));
        assert!(glob("fc", "fc"));
    }
}
