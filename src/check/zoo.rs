//! The built-in architectures as layer lists (shapes are filled in by `model::infer`).
//! CIFAR-style stems for 32x32 inputs; `width` multiplies every hidden width.

use crate::diagnostics::Span;
use crate::ir::plan::{Activation, Layer, LayerKind};

pub const ZOO: &[&str] = &[
    "lenet300_100",
    "lenet5_caffe",
    "vgg16",
    "resnet20",
    "resnet32",
    "resnet56",
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v1",
];

struct Builder {
    span: Span,
    layers: Vec<Layer>,
}

impl Builder {
    fn push(&mut self, name: impl Into<String>, kind: LayerKind) {
        let l = Layer { name: name.into(), kind, input: vec![], output: vec![], span: self.span };
        self.layers.push(l);
    }
    fn conv(&mut self, name: &str, out: usize, kernel: usize, stride: usize, bias: bool) {
        let padding = kernel / 2;
        self.push(name, LayerKind::Conv { out, kernel, stride, padding, bias, groups: 1 });
    }
    /// A 3x3 depthwise conv over `channels` channels, without bias.
    fn depthwise(&mut self, name: &str, channels: usize, stride: usize) {
        let kind = LayerKind::Conv { out: channels, kernel: 3, stride, padding: 1, bias: false, groups: channels };
        self.push(name, kind);
    }
    fn bn(&mut self, name: &str) {
        self.push(name, LayerKind::BatchNorm { eps: 1e-5, momentum: 0.1 });
    }
    fn relu(&mut self, name: &str) {
        self.push(name, LayerKind::Act(Activation::Relu));
    }
    fn dense(&mut self, name: &str, out: usize) {
        self.push(name, LayerKind::Dense { out, bias: true });
    }
}

fn scaled(c: usize, width: f64) -> usize {
    ((c as f64 * width).round() as usize).max(1)
}

/// The layers of zoo model `name`, or `None` for a name this build cannot construct (every name
/// in [`ZOO`] is constructed; a test keeps it so).
pub fn build(name: &str, width: f64, classes: usize, span: Span) -> Option<Vec<Layer>> {
    let mut b = Builder { span, layers: Vec::new() };
    match name {
        "lenet300_100" => {
            b.push("flatten", LayerKind::Flatten);
            b.dense("fc1", scaled(300, width));
            b.relu("relu1");
            b.dense("fc2", scaled(100, width));
            b.relu("relu2");
            b.dense("fc3", classes);
        }
        "lenet5_caffe" => {
            b.push(
                "conv1",
                LayerKind::Conv { out: scaled(20, width), kernel: 5, stride: 1, padding: 0, bias: true, groups: 1 },
            );
            b.relu("relu1");
            b.push("pool1", LayerKind::MaxPool { size: 2, stride: 2 });
            b.push(
                "conv2",
                LayerKind::Conv { out: scaled(50, width), kernel: 5, stride: 1, padding: 0, bias: true, groups: 1 },
            );
            b.relu("relu2");
            b.push("pool2", LayerKind::MaxPool { size: 2, stride: 2 });
            b.push("flatten", LayerKind::Flatten);
            b.dense("fc1", scaled(500, width));
            b.relu("relu3");
            b.dense("fc2", classes);
        }
        "vgg16" => {
            let cfg = [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0];
            let (mut i, mut p) = (0, 0);
            for c in cfg {
                if c == 0 {
                    p += 1;
                    b.push(format!("pool{p}"), LayerKind::MaxPool { size: 2, stride: 2 });
                } else {
                    i += 1;
                    b.conv(&format!("conv{i}"), scaled(c, width), 3, 1, false);
                    b.bn(&format!("bn{i}"));
                    b.relu(&format!("relu{i}"));
                }
            }
            b.push("flatten", LayerKind::Flatten);
            b.dense("fc", classes);
        }
        "resnet20" | "resnet32" | "resnet56" => {
            let n = match name {
                "resnet20" => 3,
                "resnet32" => 5,
                _ => 9,
            };
            resnet(&mut b, &[16, 32, 64], &[n, n, n], false, width, classes);
        }
        "resnet18" => resnet(&mut b, &[64, 128, 256, 512], &[2, 2, 2, 2], false, width, classes),
        "resnet34" => resnet(&mut b, &[64, 128, 256, 512], &[3, 4, 6, 3], false, width, classes),
        "resnet50" => resnet(&mut b, &[64, 128, 256, 512], &[3, 4, 6, 3], true, width, classes),
        "mobilenet_v1" => mobilenet_v1(&mut b, width, classes),
        _ => return None,
    }
    Some(b.layers)
}

/// He et al.'s residual networks with a 3x3 stem (no max pool) and a 1x1 conv + BN shortcut
/// where the shape changes. `bottleneck` selects 1x1-3x3-1x1 blocks with expansion 4.
fn resnet(b: &mut Builder, widths: &[usize], blocks: &[usize], bottleneck: bool, width: f64, classes: usize) {
    let stem = scaled(widths[0], width);
    b.conv("conv1", stem, 3, 1, false);
    b.bn("bn1");
    b.relu("relu1");
    let expansion = if bottleneck { 4 } else { 1 };
    let mut channels = stem;
    for (s, (&w, &n)) in widths.iter().zip(blocks).enumerate() {
        let w = scaled(w, width);
        for i in 0..n {
            let stride = if s > 0 && i == 0 { 2 } else { 1 };
            let p = format!("layer{}.{i}", s + 1);
            let mut body = Builder { span: b.span, layers: Vec::new() };
            if bottleneck {
                body.conv(&format!("{p}.conv1"), w, 1, 1, false);
                body.bn(&format!("{p}.bn1"));
                body.relu(&format!("{p}.relu1"));
                body.conv(&format!("{p}.conv2"), w, 3, stride, false);
                body.bn(&format!("{p}.bn2"));
                body.relu(&format!("{p}.relu2"));
                body.conv(&format!("{p}.conv3"), w * expansion, 1, 1, false);
                body.bn(&format!("{p}.bn3"));
            } else {
                body.conv(&format!("{p}.conv1"), w, 3, stride, false);
                body.bn(&format!("{p}.bn1"));
                body.relu(&format!("{p}.relu1"));
                body.conv(&format!("{p}.conv2"), w, 3, 1, false);
                body.bn(&format!("{p}.bn2"));
            }
            let mut shortcut = Builder { span: b.span, layers: Vec::new() };
            if stride != 1 || channels != w * expansion {
                shortcut.conv(&format!("{p}.shortcut.conv"), w * expansion, 1, stride, false);
                shortcut.bn(&format!("{p}.shortcut.bn"));
            }
            b.push(p.clone(), LayerKind::Residual { body: body.layers, shortcut: shortcut.layers, scale: None });
            b.relu(&format!("{p}.relu"));
            channels = w * expansion;
        }
    }
    b.push("pool", LayerKind::GlobalAvgPool);
    b.dense("fc", classes);
}

/// MobileNet v1 (Howard et al. 2017) for 32x32 inputs, as in the common CIFAR ports
/// (kuangliu/pytorch-cifar `models/mobilenet.py`): a stride-1 3x3 stem of 32 channels, then 13
/// depthwise-separable blocks (3x3 depthwise conv + BN + ReLU, 1x1 pointwise conv + BN + ReLU),
/// the stride on the depthwise conv; global average pooling (that port's `avg_pool2d(2)` over
/// the final 2x2) and one dense classifier. Convs have no bias. `width` is the paper's width
/// multiplier alpha, applied to every channel count, the stem's included.
fn mobilenet_v1(b: &mut Builder, width: f64, classes: usize) {
    const BLOCKS: [(usize, usize); 13] = [
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (1024, 2),
        (1024, 1),
    ];
    let mut channels = scaled(32, width);
    b.conv("conv1", channels, 3, 1, false);
    b.bn("bn1");
    b.relu("relu1");
    for (i, (out, stride)) in BLOCKS.into_iter().enumerate() {
        let p = format!("layers.{i}");
        b.depthwise(&format!("{p}.dw"), channels, stride);
        b.bn(&format!("{p}.dw_bn"));
        b.relu(&format!("{p}.dw_relu"));
        channels = scaled(out, width);
        b.conv(&format!("{p}.pw"), channels, 1, 1, false);
        b.bn(&format!("{p}.pw_bn"));
        b.relu(&format!("{p}.pw_relu"));
    }
    b.push("pool", LayerKind::GlobalAvgPool);
    b.dense("fc", classes);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::ir::plan::{Model, Plan};

    fn plan(model: &str) -> Plan {
        let text = format!("recipe r {{\n data cifar10\n model {model}\n train {{ epochs 1 }}\n}}");
        let comp = crate::compile_source(Path::new("zoo.sprs"), text, &[]);
        assert!(!comp.has_errors(), "{:?}", comp.diagnostics);
        comp.checked.plans.into_iter().next().expect("one plan")
    }

    fn convs(m: &Model) -> Vec<&Layer> {
        m.layers.iter().filter(|l| matches!(l.kind, LayerKind::Conv { .. })).collect()
    }

    #[test]
    fn every_listed_name_builds() {
        for name in ZOO {
            assert!(build(name, 1.0, 10, Span::default()).is_some(), "{name}");
        }
    }

    /// The CIFAR port's MobileNet: 3,217,226 parameters (kuangliu/pytorch-cifar's count, BN
    /// included), 46.4M multiply-adds, 13 depthwise 3x3 convs each followed by a 1x1 conv.
    #[test]
    fn mobilenet_v1_matches_the_cifar_port() {
        let m = plan("mobilenet_v1").model;
        let params: usize = m.params.iter().map(|p| p.numel()).sum();
        assert_eq!(params, 3_217_226);
        let (dense, _) = crate::report::flops::flops(&m, &|_| 1.0);
        assert_eq!(dense, 2 * 46_354_432);
        let convs = convs(&m);
        assert_eq!(convs.len(), 27);
        for pair in convs[1..].chunks(2) {
            let (dw, pw) = (pair[0], pair[1]);
            let c = dw.input[0];
            assert!(matches!(dw.kind, LayerKind::Conv { kernel: 3, groups, out, .. } if groups == c && out == c));
            assert!(matches!(pw.kind, LayerKind::Conv { kernel: 1, groups: 1, .. }));
            let w = m.params.iter().find(|p| p.name == format!("{}.weight", dw.name)).unwrap();
            assert_eq!(w.shape, vec![c, 1, 3, 3]);
        }
        let pool = m.layers.iter().find(|l| l.name == "pool").unwrap();
        assert_eq!((pool.input.clone(), pool.output.clone()), (vec![1024, 2, 2], vec![1024]));
    }

    #[test]
    fn mobilenet_v1_width_scales_every_channel_count() {
        let m = plan("mobilenet_v1(width: 0.25, classes: 10)").model;
        let outs: Vec<usize> = convs(&m).iter().map(|l| l.output[0]).collect();
        assert_eq!(&outs[..5], &[8, 8, 16, 16, 32]);
        assert_eq!(outs.last(), Some(&256));
        assert_eq!(m.layers.last().unwrap().input, vec![256]);
    }
}
