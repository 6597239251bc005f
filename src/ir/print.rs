//! The stable text form of plans and sweeps (`--emit ir`): ordered, one fact per line, floats in
//! Rust's shortest round-trip form, percentages as `98%`.

use std::fmt::{self, Display, Formatter, Write};

use super::memory::human;
use super::names::Named;
use super::plan::*;
use super::Sweep;

fn pct(x: f64) -> String {
    format!("{}%", (x * 1e6).round() / 1e4)
}

impl Display for Time {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Time::Steps(s) => write!(f, "{s} steps"),
            Time::Epochs(e) => write!(f, "{e} epochs"),
            Time::Fraction(x) => f.write_str(&pct(*x)),
        }
    }
}

fn shape(d: &[usize]) -> String {
    d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("x")
}

fn layer_kind(k: &LayerKind) -> String {
    match k {
        LayerKind::Dense { out, bias } => format!("dense {out} bias: {bias}"),
        LayerKind::Conv { out, kernel, stride, padding, bias, groups } => {
            // `groups: 1` is left out so plans of ordinary convs print as they always have.
            let groups = if *groups == 1 { String::new() } else { format!(" groups: {groups}") };
            format!("conv {out} kernel: {kernel} stride: {stride} padding: {padding} bias: {bias}{groups}")
        }
        LayerKind::MaxPool { size, stride } => format!("maxpool {size} stride: {stride}"),
        LayerKind::AvgPool { size, stride } => format!("avgpool {size} stride: {stride}"),
        LayerKind::GlobalAvgPool => "global_avgpool".into(),
        LayerKind::BatchNorm { eps, momentum } => format!("batchnorm eps: {eps} momentum: {momentum}"),
        LayerKind::Act(a) => a.name().into(),
        LayerKind::Flatten => "flatten".into(),
        LayerKind::Dropout { p } => format!("dropout {p}"),
        LayerKind::Residual { .. } => "residual".into(),
        LayerKind::ActBlend { from, to, ramp } => format!("blend {} -> {} weight {ramp}", from.name(), to.name()),
        LayerKind::DyRelu { reduction, phase_out } => format!("dyrelu reduction: {reduction} weight {phase_out}"),
    }
}

/// Four significant digits: the bounds are derived numbers, not what the recipe wrote.
fn sig(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let digits = 3 - x.abs().log10().floor() as i32;
    let k = 10f64.powi(digits.max(0));
    format!("{}", (x * k).round() / k)
}

impl Display for Init {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Init::Normal { std } => write!(f, "normal(std: {})", sig(*std)),
            Init::Uniform { bound } => write!(f, "uniform(+-{})", sig(*bound)),
            Init::Orthogonal { gain } => write!(f, "orthogonal(gain: {gain})"),
            Init::Uniform01 => f.write_str("uniform(0, 1)"),
            Init::Const(c) => write!(f, "{c}"),
        }
    }
}

impl Display for WeightInit {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let kind = |normal: bool| if normal { "normal" } else { "uniform" };
        match self {
            WeightInit::Pytorch => f.write_str("pytorch"),
            WeightInit::Kaiming { normal, fan, gain } => {
                let fan = if *fan == Fan::In { "fan_in" } else { "fan_out" };
                write!(f, "kaiming_{}(mode: {fan}, gain: {})", kind(*normal), sig(*gain))
            }
            WeightInit::Xavier { normal, gain } => write!(f, "xavier_{}(gain: {gain})", kind(*normal)),
            WeightInit::Orthogonal { gain } => write!(f, "orthogonal(gain: {gain})"),
            WeightInit::Normal { std } => write!(f, "normal(std: {std})"),
        }
    }
}

impl Display for Ramp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.end {
            RampEnd::At(end) => write!(f, "{} -> {} over {} .. {end}", self.from, self.to, self.start),
            RampEnd::After(len) => write!(f, "{} -> {} over {} .. +{len}", self.from, self.to, self.start),
        }
    }
}

fn layers(out: &mut String, ls: &[Layer], depth: usize) -> fmt::Result {
    for l in ls {
        let pad = "  ".repeat(depth);
        writeln!(out, "{pad}{:<24} {:<44} {} -> {}", l.name, layer_kind(&l.kind), shape(&l.input), shape(&l.output))?;
        if let LayerKind::Residual { body, shortcut, scale } = &l.kind {
            writeln!(out, "{pad}  body")?;
            layers(out, body, depth + 2)?;
            let scale = scale.map_or(String::new(), |r| format!(" times {r}, not run at 0"));
            writeln!(out, "{pad}  shortcut{}{scale}", if shortcut.is_empty() { " identity" } else { "" })?;
            layers(out, shortcut, depth + 2)?;
        }
    }
    Ok(())
}

impl Display for MaskMethod {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            MaskMethod::Dense => f.write_str("dense"),
            MaskMethod::Random => f.write_str("random"),
            MaskMethod::Magnitude => f.write_str("magnitude"),
            MaskMethod::Snip { batches } => write!(f, "snip(batches: {batches})"),
            MaskMethod::Grasp { temperature, batches } => {
                write!(f, "grasp(temperature: {temperature}, batches: {batches})")
            }
            MaskMethod::Synflow { rounds } => write!(f, "synflow(rounds: {rounds})"),
            MaskMethod::Lottery { rounds, rate, rewind } => {
                write!(f, "lottery(rounds: {rounds}, rate: {}, rewind: {rewind})", pct(*rate))
            }
        }
    }
}

impl Display for Schedule {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Constant => f.write_str("constant"),
            Schedule::Linear { start, end, every } => write!(f, "linear(start: {start}, end: {end}, every: {every})"),
            Schedule::Cubic { start, end, every } => write!(f, "cubic(start: {start}, end: {end}, every: {every})"),
            Schedule::Cyclic { cycles, length, peak, shape } => {
                write!(f, "cyclic(cycles: {cycles}, length: {length}, peak: {peak}x, shape: {})", shape.name())
            }
        }
    }
}

impl Display for Update {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Update::Hard => f.write_str("hard"),
            Update::SoftThreshold { ste, rescale, scope, sigma, kernel } => write!(
                f,
                "soft_threshold(ste: {}, rescale: {rescale}, scope: {}, sigma: {sigma}, kernel: {kernel})",
                ste.name(),
                scope.name()
            ),
            Update::PruneRegrow { every, drop, grow, until } => {
                write!(f, "prune_regrow(every: {every}, drop: {}, grow: {}", pct(*drop), grow.name())?;
                match until {
                    Some(u) => write!(f, ", until: {u})"),
                    None => f.write_str(")"),
                }
            }
        }
    }
}

impl Display for Technique {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Technique::GhostNeurons { activation, until, blend, .. } => {
                write!(f, "ghost_neurons(activation: {}, until: {until}, blend: {blend})", activation.name())
            }
            Technique::GhostSkip { init, fade_start, fade_end, .. } => {
                write!(f, "ghost_skip(init: {init}, fade: {fade_start} .. {fade_end})")
            }
            Technique::LabelSmoothing { alpha, style, .. } => {
                write!(f, "label_smoothing({alpha}, style: {})", style.name())
            }
            Technique::GradInit { iters, lr, eta, min_scale, .. } => {
                write!(f, "gradinit(iters: {iters}, lr: {lr}, eta: {eta}, min_scale: {min_scale})")
            }
            Technique::DyRelu { phase_start, phase_end, reduction, .. } => {
                write!(f, "dyrelu(phase_out: {phase_start} .. {phase_end}, reduction: {reduction})")
            }
            Technique::WeightSharing { from_block, .. } => write!(f, "weight_sharing(from_block: {from_block})"),
        }
    }
}

impl Display for Optimizer {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Optimizer::Sgd { lr, momentum, nesterov, weight_decay } => {
                write!(f, "sgd(lr: {lr}, momentum: {momentum}, nesterov: {nesterov}, weight_decay: {weight_decay})")
            }
            Optimizer::Adam { lr, beta1, beta2, eps, weight_decay, decoupled } => write!(
                f,
                "{}(lr: {lr}, beta1: {beta1}, beta2: {beta2}, eps: {eps}, weight_decay: {weight_decay})",
                if *decoupled { "adamw" } else { "adam" }
            ),
        }
    }
}

impl Display for LrSchedule {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            LrSchedule::Constant => f.write_str("constant"),
            LrSchedule::Cosine { warmup } => write!(f, "cosine(warmup: {warmup})"),
            LrSchedule::Step { at, factor } => {
                let at: Vec<String> = at.iter().map(|t| t.to_string()).collect();
                write!(f, "step(at: [{}], factor: {factor})", at.join(", "))
            }
        }
    }
}

impl Display for DataSpec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let name = match &self.dataset {
            Dataset::Mnist => "mnist".to_string(),
            Dataset::FashionMnist => "fashion_mnist".to_string(),
            Dataset::Cifar10 => "cifar10".to_string(),
            Dataset::Cifar100 => "cifar100".to_string(),
            Dataset::SyntheticDigits { train, test } => format!("synthetic_digits(train: {train}, test: {test})"),
            Dataset::Idx { train_images, train_labels, test_images, test_labels } => format!(
                "idx(train_images: {train_images:?}, train_labels: {train_labels:?}, test_images: {test_images:?}, test_labels: {test_labels:?})"
            ),
        };
        let path = match &self.path {
            Some(p) => format!("{p:?}"),
            None if matches!(self.dataset, Dataset::SyntheticDigits { .. } | Dataset::Idx { .. }) => "none".into(),
            None => format!("search $SPRS_DATA/{0}, ./data/{0}", self.dataset.dir_name()),
        };
        let aug: Vec<String> = self
            .augment
            .iter()
            .map(|a| match a {
                Augment::Crop { size, pad } => format!("crop({size}, pad: {pad})"),
                Augment::Flip => "flip".into(),
            })
            .collect();
        write!(f, "{name}\n    path {path}\n    val {}\n    augment [{}]", self.val, aug.join(", "))
    }
}

/// The weight-sharing map and its density correction: how many masked weights the unique
/// tensors stand for, and the nonzeros they keep.
fn shared(s: &mut String, plan: &Plan) -> fmt::Result {
    let m = &plan.model;
    if m.shared.is_empty() {
        return Ok(());
    }
    let find = |name: &str| m.params.iter().find(|p| p.name == name);
    let unique: usize = m.params.iter().filter(|p| p.masked).map(Param::numel).sum();
    let reused: usize = m.shared.iter().filter_map(|sh| find(&sh.owner)).filter(|p| p.masked).map(Param::numel).sum();
    let kept: f64 = m
        .params
        .iter()
        .filter(|p| p.masked)
        .map(|p| (1.0 - p.target.unwrap_or(plan.sparsity.target)) * p.numel() as f64)
        .sum();
    let mut owners: Vec<&str> = m.shared.iter().map(|sh| sh.owner.as_str()).collect();
    owners.sort_unstable();
    owners.dedup();
    writeln!(
        s,
        "  shared {} weights read {} tensors: {unique} masked weights stand for {} unshared and keep {} nonzeros as \
         they would (density {})",
        m.shared.len(),
        owners.len(),
        unique + reused,
        kept.round(),
        pct(kept / unique.max(1) as f64)
    )?;
    for sh in &m.shared {
        writeln!(s, "    {:<32} = {} * {}", sh.param, sh.owner, sh.scale)?;
    }
    Ok(())
}

/// The memory estimate (`ir::memory`): the parts, the three layers with the largest
/// activations, and the peak.
fn memory(s: &mut String, plan: &Plan) -> fmt::Result {
    let m = super::memory::estimate(plan, None);
    writeln!(s, "  memory estimate, batch {}", m.batch)?;
    writeln!(
        s,
        "    params {}, gradients {}, masks {}, optimizer {}",
        human(m.params),
        human(m.gradients),
        human(m.masks),
        human(m.optimizer)
    )?;
    let largest: Vec<String> = m.largest_layers(3).iter().map(|l| format!("{} {}", l.name, human(l.bytes))).collect();
    writeln!(
        s,
        "    activations {} training ({}), {} evaluation",
        human(m.activations),
        largest.join(", "),
        human(m.eval_activations)
    )?;
    if m.sparse_layouts > 0 {
        writeln!(s, "    sparse kernel layouts {}", human(m.sparse_layouts))?;
    }
    let data = m.data.map_or("size known once loaded".to_string(), human);
    writeln!(s, "    data {data}, runtime {}", human(m.runtime))?;
    writeln!(s, "    peak {}", human(m.peak()))
}

impl Display for Plan {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        writeln!(s, "plan {}", self.recipe)?;
        writeln!(s, "  seed {}", self.seed)?;
        writeln!(s, "  data {}", self.data)?;
        let m = &self.model;
        writeln!(s, "  model {} input {} classes {}", m.name, shape(&m.input), m.classes)?;
        layers(&mut s, &m.layers, 2)?;
        let total: usize = m.params.iter().map(Param::numel).sum();
        let masked: usize = m.params.iter().filter(|p| p.masked).map(Param::numel).sum();
        writeln!(s, "  params {} tensors, {total} values, {masked} masked", m.params.len())?;
        for p in &m.params {
            let how = match (p.masked, p.target) {
                (false, _) if p.added_by.is_some() => {
                    format!("dense, added by {}", p.added_by.map_or("", Named::name))
                }
                (false, _) => "dense".to_string(),
                (true, Some(t)) => format!("masked target {}", pct(t)),
                (true, None) => "masked target global".to_string(),
            };
            writeln!(s, "    {:<32} {:<16} {how}, init {}", p.name, shape(&p.shape), p.init)?;
        }
        shared(&mut s, self)?;
        let init = &self.init;
        writeln!(s, "  init")?;
        writeln!(s, "    weights {}", init.weights)?;
        let bias = match init.bias {
            BiasInit::Pytorch => "pytorch".to_string(),
            BiasInit::Zeros => "zeros".to_string(),
            BiasInit::Normal { std } => format!("normal(std: {std})"),
        };
        writeln!(s, "    bias {bias}")?;
        for (layer, how, _) in &init.layers {
            writeln!(s, "    layer {layer:?} {how}")?;
        }
        writeln!(s, "    sparse {}", init.sparse)?;
        if let Some((path, _)) = &init.from {
            writeln!(s, "    from {path:?}")?;
        }
        let sp = &self.sparsity;
        writeln!(s, "  sparsity")?;
        writeln!(s, "    target {}", pct(sp.target))?;
        writeln!(s, "    distribution {}", sp.distribution.name())?;
        writeln!(s, "    dense [{}]", sp.dense.join(", "))?;
        for o in &sp.overrides {
            writeln!(s, "    layer {:?} {}", o.layer, pct(o.target))?;
        }
        writeln!(s, "    mask {}", sp.mask)?;
        writeln!(s, "    schedule {}", sp.schedule)?;
        writeln!(s, "    update {}", sp.update)?;
        match &sp.freeze_at {
            Some(t) => writeln!(s, "    freeze at {t}")?,
            None => writeln!(s, "    freeze never")?,
        }
        writeln!(s, "  techniques")?;
        for t in &self.techniques {
            writeln!(s, "    {t}")?;
        }
        let t = &self.train;
        writeln!(s, "  train")?;
        writeln!(s, "    epochs {}", t.epochs)?;
        writeln!(s, "    batch {}", t.batch)?;
        writeln!(s, "    optimizer {}", t.optimizer)?;
        writeln!(s, "    lr {}", t.lr)?;
        writeln!(s, "    loss cross_entropy")?;
        match t.clip_grad_norm {
            Some(c) => writeln!(s, "    clip_grad_norm {c}")?,
            None => writeln!(s, "    clip_grad_norm none")?,
        }
        writeln!(s, "    eval_every {} epochs", t.eval_every)?;
        let action = if t.not_learning.stop { "stop" } else { "warn" };
        writeln!(s, "    not_learning(after: {}, action: {action})", t.not_learning.after)?;
        let o = &self.output;
        writeln!(s, "  output")?;
        writeln!(s, "    dir {:?}", o.dir)?;
        match &o.checkpoint {
            Some(c) => writeln!(s, "    checkpoint every {} keep {}", c.every, c.keep)?,
            None => writeln!(s, "    checkpoint at end")?,
        }
        writeln!(s, "    plots {}", o.plots)?;
        writeln!(s, "  kernels")?;
        for k in &self.kernels {
            writeln!(s, "    {k}")?;
        }
        memory(&mut s, self)?;
        f.write_str(&s)
    }
}

impl Display for Sweep {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "sweep {}", self.name)?;
        writeln!(f, "  recipes [{}]", self.recipes.join(", "))?;
        for v in &self.vary {
            let vals: Vec<String> = v.values.iter().map(|x| x.to_string()).collect();
            writeln!(f, "  vary {} [{}]", v.path.join("."), vals.join(", "))?;
        }
        let seeds: Vec<String> = self.seeds.iter().map(|s| s.to_string()).collect();
        writeln!(f, "  seeds [{}]", seeds.join(", "))?;
        writeln!(f, "  report {:?}", self.report)
    }
}
