//! Models and plans built in Rust for the examples (no recipe parser needed).

#![allow(dead_code)] // each example uses a part

use sprsc::diagnostics::Span;
use sprsc::ir::plan::*;

pub struct Builder {
    layers: Vec<Layer>,
    params: Vec<Param>,
    shape: Vec<usize>,
}

impl Builder {
    fn push(&mut self, name: &str, kind: LayerKind, output: Vec<usize>) {
        let input = std::mem::replace(&mut self.shape, output.clone());
        self.layers.push(Layer { name: name.into(), kind, input, output, span: Span::default() });
    }
    fn param(&mut self, layer: &str, kind: ParamKind, shape: Vec<usize>) {
        let suffix = if kind == ParamKind::Weight { "weight" } else { "bias" };
        let masked = kind == ParamKind::Weight;
        self.params.push(Param {
            name: format!("{layer}.{suffix}"),
            layer: layer.into(),
            kind,
            shape,
            masked,
            target: None,
            init: Init::Const(0.0), // resolved in `plan`
            added_by: None,
        });
    }
    fn dense(&mut self, name: &str, out: usize) {
        let n: usize = self.shape.iter().product();
        self.param(name, ParamKind::Weight, vec![out, n]);
        self.param(name, ParamKind::Bias, vec![out]);
        self.push(name, LayerKind::Dense { out, bias: true }, vec![out]);
    }
    fn conv(&mut self, name: &str, out: usize, k: usize) {
        let (c, h, w) = (self.shape[0], self.shape[1], self.shape[2]);
        self.param(name, ParamKind::Weight, vec![out, c, k, k]);
        self.param(name, ParamKind::Bias, vec![out]);
        self.push(
            name,
            LayerKind::Conv { out, kernel: k, stride: 1, padding: 0, bias: true, groups: 1 },
            vec![out, h - k + 1, w - k + 1],
        );
    }
    fn maxpool(&mut self, name: &str) {
        let s = self.shape.clone();
        self.push(name, LayerKind::MaxPool { size: 2, stride: 2 }, vec![s[0], s[1] / 2, s[2] / 2]);
    }
    fn relu(&mut self, name: &str) {
        let s = self.shape.clone();
        self.push(name, LayerKind::Act(Activation::Relu), s);
    }
    fn flatten(&mut self) {
        let n = self.shape.iter().product();
        self.push("flatten", LayerKind::Flatten, vec![n]);
    }
    fn model(self, name: &str) -> Model {
        Model {
            name: name.into(),
            input: [1, 28, 28],
            classes: 10,
            layers: self.layers,
            params: self.params,
            shared: vec![],
            span: Span::default(),
        }
    }
}

pub fn lenet300() -> Model {
    let mut b = Builder { layers: vec![], params: vec![], shape: vec![1, 28, 28] };
    b.flatten();
    b.dense("fc1", 300);
    b.relu("relu1");
    b.dense("fc2", 100);
    b.relu("relu2");
    b.dense("fc3", 10);
    b.model("lenet300_100")
}

pub fn lenet5_caffe() -> Model {
    let mut b = Builder { layers: vec![], params: vec![], shape: vec![1, 28, 28] };
    b.conv("conv1", 20, 5);
    b.maxpool("pool1");
    b.conv("conv2", 50, 5);
    b.maxpool("pool2");
    b.flatten();
    b.dense("fc1", 500);
    b.relu("relu1");
    b.dense("fc2", 10);
    b.model("lenet5_caffe")
}

/// A plan with SGD (lr 0.01, momentum 0.9, wd 1e-4), a constant schedule at `target` with a
/// global magnitude mask and `hard` update; `target == 0` leaves every param unmasked.
pub fn plan(mut model: Model, target: f64, batch: usize) -> Plan {
    if target == 0.0 {
        model.params.iter_mut().for_each(|p| p.masked = false);
    }
    let sparsity = Sparsity {
        target,
        distribution: Distribution::Global,
        dense: vec![],
        overrides: vec![],
        mask: MaskMethod::Magnitude,
        schedule: Schedule::Constant,
        update: Update::Hard,
        freeze_at: None,
        span: Span::default(),
    };
    let train = Train {
        epochs: 1,
        batch,
        optimizer: Optimizer::Sgd { lr: 0.01, momentum: 0.9, nesterov: false, weight_decay: 1e-4 },
        lr: LrSchedule::Constant,
        loss: Loss::CrossEntropy,
        clip_grad_norm: None,
        eval_every: 1,
        not_learning: NotLearning { after: Time::Epochs(1.0), stop: false, span: None },
        span: Span::default(),
    };
    let data = DataSpec { dataset: Dataset::Mnist, path: None, val: 0, augment: vec![], span: Span::default() };
    let output = Output { dir: "runs/bench".into(), checkpoint: None, plots: false };
    let recipe = model.name.clone();
    let init = InitSpec::pytorch();
    sprsc::ir::lower::resolve_inits(&mut model.params, &init);
    Plan {
        recipe,
        span: Span::default(),
        seed: 0,
        data,
        model,
        init,
        sparsity,
        techniques: vec![],
        train,
        output,
        kernels: vec![],
    }
}
