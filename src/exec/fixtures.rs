//! Test fixtures: small plans built in Rust and a seeded synthetic data set.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::{DataSet, Split};
use crate::diagnostics::Span;
use crate::ir::plan::*;

fn layer(name: &str, kind: LayerKind, input: Vec<usize>, output: Vec<usize>) -> Layer {
    Layer { name: name.into(), kind, input, output, span: Span::default() }
}

fn param(layer: &str, suffix: &str, kind: ParamKind, shape: Vec<usize>) -> Param {
    let masked = kind == ParamKind::Weight;
    let init = Init::pytorch(kind, shape.iter().skip(1).product());
    Param {
        name: format!("{layer}.{suffix}"),
        layer: layer.into(),
        kind,
        shape,
        masked,
        target: None,
        init,
        added_by: None,
    }
}

/// `flatten`, then `dense` layers with ReLU between them.
pub fn mlp(input: [usize; 3], widths: &[usize]) -> Model {
    let mut n: usize = input.iter().product();
    let mut layers = vec![layer("flatten", LayerKind::Flatten, input.to_vec(), vec![n])];
    let mut params = Vec::new();
    for (i, &w) in widths.iter().enumerate() {
        let name = format!("fc{}", i + 1);
        layers.push(layer(&name, LayerKind::Dense { out: w, bias: true }, vec![n], vec![w]));
        params.push(param(&name, "weight", ParamKind::Weight, vec![w, n]));
        params.push(param(&name, "bias", ParamKind::Bias, vec![w]));
        if i + 1 < widths.len() {
            layers.push(layer(&format!("relu{}", i + 1), LayerKind::Act(Activation::Relu), vec![w], vec![w]));
        }
        n = w;
    }
    Model { name: "custom".into(), input, classes: n, layers, params, shared: vec![], span: Span::default() }
}

/// A plan over `model` with Kaiming-normal weights (fan-in, ReLU gain) and zero biases: the
/// init these tests were written for (the language's default is PyTorch's).
pub fn plan(mut model: Model, sparsity: Sparsity, train: Train) -> Plan {
    let weights = WeightInit::Kaiming { normal: true, fan: Fan::In, gain: 2f64.sqrt() };
    let init = InitSpec { weights, bias: BiasInit::Zeros, ..InitSpec::pytorch() };
    crate::ir::lower::resolve_inits(&mut model.params, &init);
    Plan {
        recipe: "golden".into(),
        span: Span::default(),
        seed: 0,
        data: DataSpec {
            dataset: Dataset::SyntheticDigits { train: 0, test: 0 },
            path: None,
            val: 0,
            augment: vec![],
            span: Span::default(),
        },
        model,
        init,
        sparsity,
        techniques: vec![],
        train,
        output: Output { dir: "runs/golden".into(), checkpoint: None, plots: false },
        kernels: vec![],
    }
}

pub fn sparsity(target: f64, schedule: Schedule, update: Update) -> Sparsity {
    Sparsity {
        target,
        distribution: Distribution::Global,
        dense: vec![],
        overrides: vec![],
        mask: MaskMethod::Dense,
        schedule,
        update,
        freeze_at: None,
        span: Span::default(),
    }
}

pub fn sgd_train(epochs: u64, batch: usize, lr: f64) -> Train {
    Train {
        epochs,
        batch,
        optimizer: Optimizer::Sgd { lr, momentum: 0.9, nesterov: false, weight_decay: 1e-4 },
        lr: LrSchedule::Constant,
        loss: Loss::CrossEntropy,
        clip_grad_norm: None,
        eval_every: 1,
        not_learning: NotLearning { after: Time::Epochs(1.0), stop: false, span: None },
        span: Span::default(),
    }
}

/// Gaussian blobs around one random centre per class.
pub fn blobs(shape: [usize; 3], classes: usize, train: usize, test: usize, seed: u64) -> DataSet {
    let n: usize = shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..classes).map(|_| (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()).collect();
    let mut split = |len: usize| {
        let labels: Vec<u8> = (0..len).map(|i| (i % classes) as u8).collect();
        let images = labels
            .iter()
            .flat_map(|&l| centres[l as usize].iter().map(|c| c + rng.gen_range(-0.8..0.8)).collect::<Vec<_>>())
            .collect();
        Split { images, labels, len }
    };
    let (train, test) = (split(train), split(test));
    DataSet { name: "blobs".into(), shape, classes, train, val: None, test, files: vec![], note: None }
}

pub fn temp_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("sprsc-{name}-{}", std::process::id()))
}

/// A small convolutional network on `[1, 8, 8]`: conv 3x3 (pad 1) -> ReLU -> 2x2 max pool ->
/// conv 3x3 stride 2 -> ReLU -> flatten -> dense 16 -> ReLU -> dense `classes`.
pub fn convnet(classes: usize) -> Model {
    let conv = |out, stride, padding| LayerKind::Conv { out, kernel: 3, stride, padding, bias: true, groups: 1 };
    let relu = LayerKind::Act(Activation::Relu);
    let layers = vec![
        layer("conv1", conv(6, 1, 1), vec![1, 8, 8], vec![6, 8, 8]),
        layer("relu1", relu.clone(), vec![6, 8, 8], vec![6, 8, 8]),
        layer("pool1", LayerKind::MaxPool { size: 2, stride: 2 }, vec![6, 8, 8], vec![6, 4, 4]),
        layer("conv2", conv(8, 2, 0), vec![6, 4, 4], vec![8, 1, 1]),
        layer("relu2", relu.clone(), vec![8, 1, 1], vec![8, 1, 1]),
        layer("flatten", LayerKind::Flatten, vec![8, 1, 1], vec![8]),
        layer("fc1", LayerKind::Dense { out: 16, bias: true }, vec![8], vec![16]),
        layer("relu3", relu, vec![16], vec![16]),
        layer("fc2", LayerKind::Dense { out: classes, bias: true }, vec![16], vec![classes]),
    ];
    let params = vec![
        param("conv1", "weight", ParamKind::Weight, vec![6, 1, 3, 3]),
        param("conv1", "bias", ParamKind::Bias, vec![6]),
        param("conv2", "weight", ParamKind::Weight, vec![8, 6, 3, 3]),
        param("conv2", "bias", ParamKind::Bias, vec![8]),
        param("fc1", "weight", ParamKind::Weight, vec![16, 8]),
        param("fc1", "bias", ParamKind::Bias, vec![16]),
        param("fc2", "weight", ParamKind::Weight, vec![classes, 16]),
        param("fc2", "bias", ParamKind::Bias, vec![classes]),
    ];
    Model { name: "convnet".into(), input: [1, 8, 8], classes, layers, params, shared: vec![], span: Span::default() }
}

/// Options of a quiet one-thread test run writing into a temporary directory `name`.
pub fn opts(name: &str) -> crate::exec::RunOptions {
    crate::exec::RunOptions { out_dir: Some(temp_dir(name)), threads: Some(1), quiet: true, ..Default::default() }
}

/// ST-3's update: soft threshold with the dense straight-through gradient, per-channel rescale,
/// one global threshold, the prelude's `soft_threshold` kernel.
pub fn st3_update() -> Update {
    Update::SoftThreshold {
        ste: Ste::Dense,
        rescale: true,
        scope: Scope::Global,
        sigma: false,
        kernel: "soft_threshold".into(),
    }
}
