//! Training on sparse kernels against the same run on dense products: for each way masks are
//! made and move (static magnitude, GMP's cubic ramp, SET, RigL, EAST's cyclic density, ST-3's
//! soft threshold, lottery rounds), on a network with dense and convolutional layers, the two
//! runs stay within a floating-point tolerance over every step, the realised sparsity is the
//! same, and every pruned weight is exactly zero in both.

use super::fixtures::{blobs, convnet, opts, plan, sgd_train, sparsity, st3_update};
use super::train::Trainer;
use super::{LayerKernels, RunOptions};
use crate::data::DataSet;
use crate::ir::plan::*;
use crate::sparsity::mask::count_zeros;

struct Outcome {
    losses: Vec<f32>,
    weights: Vec<Vec<f32>>,
    masks: Vec<Vec<f32>>,
    sparse_steps: u64,
}

fn train(p: &Plan, data: &DataSet, kernels: LayerKernels, name: &str) -> Outcome {
    let o = RunOptions { threads: Some(2), kernels, ..opts(name) };
    let mut tr = Trainer::new(p, data, &o, 2).unwrap();
    tr.lottery_rounds().unwrap();
    tr.train_epochs().unwrap();
    let weights = tr.params.iter().map(|q| q.effective().to_vec()).collect();
    let masks = tr.params.iter().map(|q| q.mask.clone()).collect();
    let sparse_steps = tr.graph.sparse.iter().map(|s| s.sparse_steps).sum();
    Outcome { losses: tr.losses.clone(), weights, masks, sparse_steps }
}

fn compare(name: &str, sp: Sparsity) {
    let p = plan(convnet(3), sp, sgd_train(3, 16, 0.05));
    let data = blobs([1, 8, 8], 3, 160, 40, 2);
    let dense = train(&p, &data, LayerKernels::Dense, &format!("{name}-dense"));
    let sparse = train(&p, &data, LayerKernels::Sparse, &format!("{name}-sparse"));
    assert_eq!(dense.sparse_steps, 0, "{name}: dense products only");
    assert!(sparse.sparse_steps > 0, "{name}: the sparse kernels ran");
    assert_eq!(dense.losses.len(), sparse.losses.len());
    for (t, (a, b)) in dense.losses.iter().zip(&sparse.losses).enumerate() {
        assert!((a - b).abs() <= 1e-3 * a.abs().max(1.0), "{name}: step {t} loss {a} vs {b}");
    }
    let mut differ = 0;
    for (i, (wd, ws)) in dense.weights.iter().zip(&sparse.weights).enumerate() {
        let (md, ms) = (&dense.masks[i], &sparse.masks[i]);
        assert_eq!(count_zeros(md), count_zeros(ms), "{name}: param {i} realised sparsity");
        for (j, (a, b)) in wd.iter().zip(ws).enumerate() {
            if !md.is_empty() && md[j] == 0.0 {
                assert_eq!(*a, 0.0, "{name}: param {i}[{j}] pruned but not zero (dense)");
            }
            if !ms.is_empty() && ms[j] == 0.0 {
                assert_eq!(*b, 0.0, "{name}: param {i}[{j}] pruned but not zero (sparse)");
            }
            if md.get(j) != ms.get(j) {
                differ += 1;
            } else if (a - b).abs() > 2e-3 * a.abs().max(0.1) {
                panic!("{name}: param {i}[{j}] {a} vs {b}");
            }
        }
    }
    // Rounding may flip a tie at a magnitude threshold; never more than a few weights.
    assert!(differ <= 2, "{name}: {differ} mask entries differ");
}

fn sp(target: f64, schedule: Schedule, update: Update, mask: MaskMethod) -> Sparsity {
    Sparsity { mask, ..sparsity(target, schedule, update) }
}

#[test]
fn static_magnitude_masks() {
    compare("static", sp(0.8, Schedule::Constant, Update::Hard, MaskMethod::Magnitude));
}

#[test]
fn gmp_cubic_ramp() {
    let schedule = Schedule::Cubic { start: Time::Steps(2), end: Time::Steps(20), every: Time::Steps(2) };
    compare("gmp", sp(0.9, schedule, Update::Hard, MaskMethod::Dense));
}

#[test]
fn set_and_rigl_regrowth() {
    for grow in [Growth::Random, Growth::Gradient] {
        let update = Update::PruneRegrow { every: Time::Steps(4), drop: 0.3, grow, until: None };
        compare(&format!("regrow-{grow:?}"), sp(0.8, Schedule::Constant, update, MaskMethod::Random));
    }
}

#[test]
fn east_cyclic_density() {
    let schedule = Schedule::Cyclic { cycles: 2, length: Time::Steps(10), peak: 3.0, shape: CycleShape::Triangular };
    compare("cyclic", sp(0.9, schedule, Update::Hard, MaskMethod::Random));
}

#[test]
fn st3_soft_threshold() {
    let update = st3_update();
    let schedule = Schedule::Cubic { start: Time::Steps(0), end: Time::Steps(20), every: Time::Steps(1) };
    compare("st3", sp(0.9, schedule, update, MaskMethod::Dense));
}

#[test]
fn lottery_rounds() {
    let mask = MaskMethod::Lottery { rounds: 2, rate: 0.5, rewind: Time::Steps(3) };
    compare("lottery", sp(0.75, Schedule::Constant, Update::Hard, mask));
}
