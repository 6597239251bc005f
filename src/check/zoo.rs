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
        self.push(name, LayerKind::Conv { out, kernel, stride, padding, bias });
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

/// The layers of zoo model `name`, or `None` for a name this build cannot construct yet.
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
            b.push("conv1", LayerKind::Conv { out: scaled(20, width), kernel: 5, stride: 1, padding: 0, bias: true });
            b.relu("relu1");
            b.push("pool1", LayerKind::MaxPool { size: 2, stride: 2 });
            b.push("conv2", LayerKind::Conv { out: scaled(50, width), kernel: 5, stride: 1, padding: 0, bias: true });
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
            b.push(p.clone(), LayerKind::Residual { body: body.layers, shortcut: shortcut.layers });
            b.relu(&format!("{p}.relu"));
            channels = w * expansion;
        }
    }
    b.push("pool", LayerKind::GlobalAvgPool);
    b.dense("fc", classes);
}
