//! A run that is not learning says so (W0701), and every evaluation reports the ReLU units that
//! never fire on the evaluated split (issue 10).

use super::fixtures::{blobs, convnet, mlp, opts, plan, sgd_train, sparsity};
use super::graph::ReluUnits;
use super::run;
use crate::ir::plan::*;
use crate::report::RunSummary;

fn dense() -> Sparsity {
    sparsity(0.0, Schedule::Constant, Update::Hard)
}

fn dead(s: &RunSummary, layer: &str) -> f64 {
    s.dead_units.iter().find(|d| d.layer == layer).map(|d| d.dead).expect(layer)
}

#[test]
fn units_are_channels_of_a_conv_activation_and_features_of_a_dense_one() {
    // Two examples of 3 channels x 2 positions: channel 1 fires once, at one position.
    let mut conv = ReluUnits::new("r", 3, 2);
    conv.observe(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, /* example 2 */ 0.0, 0.0, 0.0, 0.5, 0.0, 0.0]);
    assert!((conv.dead() - 2.0 / 3.0).abs() < 1e-12);
    // Negative outputs (a blend on its way to ReLU) do not fire.
    let mut dense = ReluUnits::new("r", 4, 1);
    dense.observe(&[1.0, -0.5, 0.0, 2.0]);
    assert_eq!(dense.dead(), 0.5);
    dense.watch();
    assert_eq!(dense.dead(), 1.0, "watching starts from no unit fired");
}

/// An MLP 784-64-32-10 on 1024 synthetic digits, Kaiming-normal weights, SGD (momentum 0.9,
/// weight decay 5e-4) at `lr`, 2 epochs.
fn digits_run(lr: f64, name: &str) -> RunSummary {
    let spec = DataSpec {
        dataset: Dataset::SyntheticDigits { train: 1024, test: 256 },
        path: None,
        val: 0,
        augment: vec![],
        span: Default::default(),
    };
    let data = crate::data::load(&spec, 0).unwrap();
    let mut p = plan(mlp([1, 28, 28], &[64, 32, 10]), dense(), sgd_train(2, 32, lr));
    p.train.optimizer = Optimizer::Sgd { lr, momentum: 0.9, nesterov: false, weight_decay: 5e-4 };
    run(&p, &data, &opts(name)).unwrap()
}

#[test]
fn a_learning_rate_that_kills_the_relus_is_reported_with_its_dead_units() {
    // Measured: lr 0.3 ends at 11% with half of relu1 dead, 0.5 and 1.0 at chance with relu2
    // all dead, 2.0 diverges; 0.05 learns (78.5%, 3% of relu1 dead).
    let stuck = digits_run(1.0, "dead-relu");
    let w = stuck.warnings.iter().find(|d| d.code == "W0701").expect("W0701");
    assert!(w.message.contains("dead ReLU units"), "{}", w.message);
    assert!(dead(&stuck, "relu1") >= 0.5 || dead(&stuck, "relu2") >= 0.5, "{:?}", stuck.dead_units);
    assert_eq!(dead(&stuck, "relu2"), 1.0, "{:?}", stuck.dead_units);
    // The same network at a sane learning rate learns, with (almost) every unit alive.
    let fine = digits_run(0.05, "live-relu");
    assert!(fine.warnings.is_empty(), "{:?}", fine.warnings);
    assert!(fine.test_accuracy > 0.6, "{}", fine.test_accuracy);
    assert!(dead(&fine, "relu1") < 0.2 && dead(&fine, "relu2") < 0.2, "{:?}", fine.dead_units);
    // Each evaluation line carries them too.
    let lines = std::fs::read_to_string(super::fixtures::temp_dir("live-relu").join("metrics.jsonl")).unwrap();
    assert!(lines.lines().all(|l| l.contains("\"dead_units\":[{\"layer\":\"relu1\"")), "{lines}");
}

#[test]
fn a_conv_network_reports_dead_channels_per_relu_layer() {
    let data = blobs([1, 8, 8], 4, 128, 64, 5);
    let s = run(&plan(convnet(4), dense(), sgd_train(1, 32, 0.02)), &data, &opts("dead-conv")).unwrap();
    let layers: Vec<(&str, usize)> = s.dead_units.iter().map(|d| (d.layer.as_str(), d.units)).collect();
    assert_eq!(layers, [("relu1", 6), ("relu2", 8), ("relu3", 16)]);
}
