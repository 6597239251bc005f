//! Tests of the defining property of each mask method and sparsity schedule of issue 5, on
//! tiny plans: ERK, EAST's cyclic density, SET / RigL, SNIP, GraSP, SynFlow and the lottery.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::fixtures::{blobs, mlp, opts, plan, sgd_train, sparsity, temp_dir};
use super::graph::{Batch, Graph, Mode, Objective};
use super::params;
use super::run;
use super::sparsity::scores::{grasp, Probe};
use super::train::{Lottery, Trainer};
use crate::data::{epoch_order, fill_batch, DataSet};
use crate::diagnostics::Span;
use crate::ir::plan::*;
use crate::sparsity::mask::count_zeros;
use crate::sparsity::{zeros_for, SparsitySchedule};

fn tiny(sp: Sparsity) -> (Plan, DataSet) {
    (plan(mlp([1, 4, 4], &[24, 12, 3]), sp, sgd_train(2, 16, 0.1)), blobs([1, 4, 4], 3, 192, 60, 1))
}

fn masked(tr: &Trainer) -> Vec<usize> {
    (0..tr.params.len()).filter(|&i| tr.params[i].spec.masked).collect()
}

fn zeros(tr: &Trainer) -> usize {
    tr.params.iter().filter(|p| p.spec.masked).map(|p| count_zeros(&p.mask)).sum()
}

#[test]
fn erk_realised_density_equals_the_target() {
    let mut sp = sparsity(0.9, Schedule::Constant, Update::Hard);
    sp.distribution = Distribution::Erk;
    sp.mask = MaskMethod::Random;
    let (mut p, data) = tiny(sp);
    crate::ir::lower::assign_targets(&mut p);
    let o = opts("erk");
    let tr = Trainer::new(&p, &data, &o, 1).unwrap();
    let mut n_total = 0;
    for i in masked(&tr) {
        let q = &tr.params[i];
        let t = q.spec.target.unwrap();
        assert_eq!(count_zeros(&q.mask), zeros_for(t, q.raw.len()), "{}", q.spec.name);
        n_total += q.raw.len();
    }
    // Each tensor rounds once, so the whole is within one weight per tensor of the target.
    let want = 0.9 * n_total as f64;
    assert!((zeros(&tr) as f64 - want).abs() <= 3.0, "{} zeros, want {want}", zeros(&tr));
    // ERK: density proportional to (fan_in + fan_out) / (fan_in * fan_out) where not dense.
    let dens: Vec<(f64, f64)> = masked(&tr)
        .iter()
        .map(|&i| {
            let q = &tr.params[i];
            (1.0 - q.spec.target.unwrap(), q.spec.shape.iter().sum::<usize>() as f64 / q.raw.len() as f64)
        })
        .collect();
    let sparse: Vec<_> = dens.iter().filter(|(d, _)| *d < 1.0).collect();
    assert!(sparse.len() >= 2);
    for w in sparse.windows(2) {
        assert!((w[0].0 / w[0].1 - w[1].0 / w[1].1).abs() < 1e-9, "{sparse:?}");
    }
}

/// Cyclic density under `hard`: after every step the zeros equal the formula's, and weights that
/// come back start at zero and are the pruned ones with the largest last gradient.
#[test]
fn cyclic_density_follows_its_formula_and_regrows_by_gradient() {
    let schedule = Schedule::Cyclic { cycles: 2, length: Time::Steps(8), peak: 3.0, shape: CycleShape::Triangular };
    let mut sp = sparsity(0.9, schedule.clone(), Update::Hard);
    sp.mask = MaskMethod::Random;
    let (p, data) = tiny(sp);
    let o = opts("cyclic");
    let mut tr = Trainer::new(&p, &data, &o, 1).unwrap();
    let n: usize = masked(&tr).iter().map(|&i| tr.params[i].raw.len()).sum();
    let (mut grew, mut pruned) = (0, 0);
    for idx in epoch_order(192, 0, 0).chunks_exact(16).chain(epoch_order(192, 0, 1).chunks_exact(16)) {
        let t = tr.step;
        let before: Vec<Vec<f32>> = tr.params.iter().map(|q| q.mask.clone()).collect();
        let grads: Vec<Vec<f32>> = tr.params.iter().map(|q| q.grad.clone()).collect();
        tr.load_weights().unwrap();
        // The formula, written out: density 0.1 * (1 + 2 * triangle(phase)) for 16 steps.
        let phase = (t % 8) as f64 / 8.0;
        let density = if t >= 16 { 0.1 } else { 0.1 * (1.0 + 2.0 * (1.0 - (2.0 * phase - 1.0).abs())) };
        assert_eq!(zeros(&tr), ((1.0 - density) * n as f64).round() as usize, "step {t}");
        let (mut grown_min, mut still_max) = (f32::INFINITY, 0.0f32);
        for i in masked(&tr) {
            let q = &tr.params[i];
            for j in 0..q.mask.len() {
                match (before[i][j], q.mask[j]) {
                    (0.0, 1.0) => {
                        assert_eq!((q.raw[j], q.m1[j]), (0.0, 0.0), "step {t}: a regrown weight starts at zero");
                        grown_min = grown_min.min(grads[i][j].abs());
                        grew += 1;
                    }
                    (0.0, 0.0) => still_max = still_max.max(grads[i][j].abs()),
                    (1.0, 0.0) => pruned += 1,
                    _ => {}
                }
            }
        }
        assert!(grown_min >= still_max, "step {t}: regrown by gradient ({grown_min} < {still_max})");
        tr.train_step(idx).unwrap();
    }
    assert!(grew > 0 && pruned > 0, "density rose ({grew}) and fell ({pruned})");
    assert_eq!(SparsitySchedule::resolve(&schedule, 12, 24).sparsity(30, 0.9), 0.9);
}

fn regrow_run(grow: Growth) -> Vec<Vec<f32>> {
    let update = Update::PruneRegrow { every: Time::Steps(3), drop: 0.5, grow, until: None };
    let mut sp = sparsity(0.8, Schedule::Constant, update);
    sp.mask = MaskMethod::Random;
    let (p, data) = tiny(sp);
    let o = opts("regrow");
    let mut tr = Trainer::new(&p, &data, &o, 1).unwrap();
    let live = |tr: &Trainer| -> Vec<usize> {
        masked(tr).iter().map(|&i| tr.params[i].mask.len() - count_zeros(&tr.params[i].mask)).collect()
    };
    let live0 = live(&tr);
    let mut swaps = 0;
    for idx in epoch_order(192, 0, 0).chunks_exact(16).chain(epoch_order(192, 0, 1).chunks_exact(16)) {
        let t = tr.step;
        let before: Vec<Vec<f32>> = tr.params.iter().map(|q| q.mask.clone()).collect();
        let raw: Vec<Vec<f32>> = tr.params.iter().map(|q| q.raw.clone()).collect();
        let grads: Vec<Vec<f32>> = tr.params.iter().map(|q| q.grad.clone()).collect();
        tr.load_weights().unwrap();
        assert_eq!(live(&tr), live0, "step {t}: each tensor keeps its count");
        let f = 0.5 * (1.0 + (std::f64::consts::PI * t as f64 / 24.0).cos()) / 2.0;
        for i in masked(&tr) {
            let q = &tr.params[i];
            let changed = (0..q.mask.len()).filter(|&j| before[i][j] != q.mask[j]).count();
            if t == 0 || !t.is_multiple_of(3) {
                assert_eq!(changed, 0, "step {t}: no swap between `every`s");
                continue;
            }
            let m = (f * (q.mask.len() - count_zeros(&before[i])) as f64).round() as usize;
            // Dropped: the m smallest live weights (some may come straight back).
            let mut live_w: Vec<f32> =
                (0..q.mask.len()).filter(|&j| before[i][j] == 1.0).map(|j| raw[i][j].abs()).collect();
            live_w.sort_by(f32::total_cmp);
            let cut = live_w[m.saturating_sub(1)];
            for j in 0..q.mask.len() {
                if before[i][j] == 1.0 && q.mask[j] == 0.0 {
                    assert!(raw[i][j].abs() <= cut, "step {t}: dropped a large weight");
                }
                if before[i][j] == 0.0 && q.mask[j] == 1.0 {
                    assert_eq!((q.raw[j], q.m1[j]), (0.0, 0.0), "new weights start at zero");
                }
            }
            if grow == Growth::Gradient && m > 0 {
                // Revived (incl. straight back) are the pruned-after-drop positions with top |g|.
                let dropped_or_pruned = |j: usize| before[i][j] == 0.0 || raw[i][j].abs() <= cut;
                let grown: Vec<f32> = (0..q.mask.len())
                    .filter(|&j| q.mask[j] == 1.0 && dropped_or_pruned(j) && before[i][j] == 0.0)
                    .map(|j| grads[i][j].abs())
                    .collect();
                let still: Vec<f32> =
                    (0..q.mask.len()).filter(|&j| q.mask[j] == 0.0).map(|j| grads[i][j].abs()).collect();
                let lo = grown.iter().cloned().fold(f32::INFINITY, f32::min);
                let hi = still.iter().cloned().fold(0.0, f32::max);
                assert!(lo >= hi, "step {t}: RigL grows the largest gradients ({lo} < {hi})");
            }
            swaps += usize::from(changed > 0);
        }
        // An evaluation loads the weights at this step too: the swap happens once.
        let once: Vec<Vec<f32>> = tr.params.iter().map(|q| q.mask.clone()).collect();
        tr.load_weights().unwrap();
        assert!(tr.params.iter().zip(&once).all(|(q, m)| &q.mask == m), "step {t}: swapped twice");
        tr.train_step(idx).unwrap();
    }
    assert!(swaps > 0);
    tr.params.iter().map(|q| q.mask.clone()).collect()
}

#[test]
fn rigl_and_set_swap_on_schedule_at_constant_counts() {
    regrow_run(Growth::Gradient);
    let set = regrow_run(Growth::Random);
    assert_eq!(set, regrow_run(Growth::Random), "SET is seeded");
}

/// The first `n` training batches as SNIP and GraSP see them.
fn first_batches(data: &DataSet, n: usize) -> Vec<(Vec<f32>, Vec<usize>)> {
    let order = epoch_order(data.train.len, 0, 0);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    order
        .chunks_exact(16)
        .take(n)
        .map(|idx| {
            let (mut x, mut y) = (vec![0.0; 16 * 16], vec![0; 16]);
            fill_batch(&data.train, data.shape, idx, &[], &mut rng, &mut x, &mut y);
            (x, y)
        })
        .collect()
}

#[test]
fn snip_keeps_the_largest_weight_times_gradient() {
    let mut sp = sparsity(0.8, Schedule::Constant, Update::Hard);
    sp.mask = MaskMethod::Snip { batches: 2 };
    let (p, data) = tiny(sp);
    let o = opts("snip");
    let tr = Trainer::new(&p, &data, &o, 1).unwrap();
    // Independently: the gradient at the dense init, summed over the first two batches.
    let init = params::init(&p);
    let mut net = Graph::build(&p.model, Clock { steps_per_epoch: 12, total_steps: 24 }).unwrap();
    net.load(&init.iter().map(|q| &q.raw[..]).collect::<Vec<_>>());
    let mut g: Vec<Vec<f32>> = init.iter().map(|q| vec![0.0; q.raw.len()]).collect();
    for (images, labels) in first_batches(&data, 2) {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut mode = Mode { train: true, dropout: true, rng: &mut rng, step: 0 };
        let add = |i: usize, gr: super::graph::ParamGrad| gr.add_into(&mut g[i]);
        net.loss_and_grads(Batch { images, labels }, Objective::PLAIN, &mut mode, Span::default(), add).unwrap();
    }
    let (mut kept_min, mut cut_max) = (f32::INFINITY, 0.0f32);
    for i in masked(&tr) {
        for (j, (w, g)) in init[i].raw.iter().zip(&g[i]).enumerate() {
            let s = (w * g).abs();
            if tr.params[i].mask[j] == 1.0 {
                kept_min = kept_min.min(s);
                assert_eq!(tr.params[i].raw[j], *w, "kept weights keep their init");
            } else {
                cut_max = cut_max.max(s);
            }
        }
    }
    assert!(kept_min >= cut_max, "SNIP keeps the top |w g|: {kept_min} < {cut_max}");
    assert_eq!(zeros(&tr), zeros_for(0.8, 24 * 16 + 12 * 24 + 3 * 12));
}

#[test]
fn synflow_masks_do_not_depend_on_the_data() {
    let mut sp = sparsity(0.9, Schedule::Constant, Update::Hard);
    sp.mask = MaskMethod::Synflow { rounds: 10 };
    let (p, data) = tiny(sp);
    let other = blobs([1, 4, 4], 3, 192, 60, 99);
    let o = opts("synflow");
    let a = Trainer::new(&p, &data, &o, 1).unwrap();
    let b = Trainer::new(&p, &other, &o, 1).unwrap();
    let masks = |tr: &Trainer| tr.params.iter().map(|q| q.mask.clone()).collect::<Vec<_>>();
    assert_eq!(masks(&a), masks(&b));
    assert_eq!(zeros(&a), zeros_for(0.9, 24 * 16 + 12 * 24 + 3 * 12));
    // Iterative pruning avoids layer collapse: every layer keeps some weights.
    for i in masked(&a) {
        assert!(count_zeros(&a.params[i].mask) < a.params[i].mask.len(), "{}", a.params[i].spec.name);
    }
}

/// GraSP's finite-difference `Hg` is a Hessian-vector product: it agrees with a difference of
/// gradients taken with a ten times smaller step, and the mask prunes the lowest `w * Hg`.
#[test]
fn grasp_prunes_the_lowest_weight_times_hessian_gradient() {
    let mut sp = sparsity(0.8, Schedule::Constant, Update::Hard);
    sp.mask = MaskMethod::Grasp { temperature: 2.0, batches: 1 };
    let (mut p, data) = tiny(sp);
    // A smooth network, so differences of gradients converge (ReLU's kinks would not).
    for l in &mut p.model.layers {
        if let LayerKind::Act(a) = &mut l.kind {
            *a = Activation::Swish;
        }
    }
    let o = opts("grasp");
    let tr = Trainer::new(&p, &data, &o, 1).unwrap();
    let init = params::init(&p);
    let mut net = Graph::build(&p.model, Clock { steps_per_epoch: 12, total_steps: 24 }).unwrap();
    let mut probe = Probe { graph: &mut net, data: &data, batch: 16, seed: 0 };
    let scores = grasp(&mut probe, &init, 1, 2.0);
    let (mut kept_min, mut cut_max) = (f32::INFINITY, f32::NEG_INFINITY);
    for i in masked(&tr) {
        for (j, s) in scores[i].iter().enumerate() {
            if tr.params[i].mask[j] == 1.0 {
                kept_min = kept_min.min(*s);
            } else {
                cut_max = cut_max.max(*s);
            }
        }
    }
    assert!(kept_min >= cut_max, "{kept_min} < {cut_max}");
    assert!(scores.iter().flatten().any(|s| *s < 0.0) && scores.iter().flatten().any(|s| *s > 0.0));
    // Smaller step: same scores up to the difference error.
    let scale = scores.iter().flatten().map(|s| s.abs()).fold(0.0, f32::max);
    let again = super::sparsity::scores::grasp_with_step(&mut probe, &init, 1, 2.0, 0.002);
    for (a, b) in scores.iter().flatten().zip(again.iter().flatten()) {
        assert!((a - b).abs() <= 0.05 * scale, "{a} vs {b} (scale {scale})");
    }
}

#[test]
fn lottery_rewinds_to_the_stored_weights_exactly() {
    let mask = MaskMethod::Lottery { rounds: 2, rate: 0.5, rewind: Time::Steps(3) };
    let mut sp = sparsity(0.75, Schedule::Constant, Update::Hard);
    sp.mask = mask;
    let (p, data) = tiny(sp);
    let o = opts("lottery");
    // The weights after 3 dense steps, trained independently.
    let mut dense = Trainer::new(&p, &data, &o, 1).unwrap();
    for idx in epoch_order(192, 0, 0).chunks_exact(16).take(3) {
        dense.train_step(idx).unwrap();
    }
    let mut tr = Trainer::new(&p, &data, &o, 1).unwrap();
    assert_eq!(zeros(&tr), 0, "round 1 trains the dense network");
    tr.lottery = Some(Lottery { round: 1, rewind_step: 3, snapshot: None });
    tr.train_epochs().unwrap();
    assert_eq!(zeros(&tr), 0, "round 1 trained the dense network to the end");
    let (stored, _) = tr.lottery.as_ref().and_then(|l| l.snapshot.clone()).unwrap();
    for (w, q) in stored.iter().zip(&dense.params) {
        assert_eq!(w, &q.raw, "{}: stored at the rewind step", q.spec.name);
    }
    let trained: Vec<Vec<f32>> = tr.params.iter().map(|q| q.raw.clone()).collect();
    tr.sparsifier.lottery_prune(&mut tr.params, 1, 2, 0.5);
    tr.rewind().unwrap();
    let n: usize = masked(&tr).iter().map(|&i| tr.params[i].raw.len()).sum();
    assert_eq!(zeros(&tr), zeros_for(0.5, n), "round 1 prunes `rate` of the weights");
    for (i, q) in tr.params.iter().enumerate() {
        let want: Vec<f32> = match q.spec.masked {
            true => stored[i].iter().zip(&q.mask).map(|(w, m)| w * m).collect(),
            false => stored[i].clone(),
        };
        assert_eq!(q.raw, want, "{}: rewound exactly", q.spec.name);
        assert!(q.m1.iter().all(|m| *m == 0.0) && tr.step == 0);
    }
    // Kept: the largest trained weights over the global group.
    let (mut kept_min, mut cut_max) = (f32::INFINITY, 0.0f32);
    for i in masked(&tr) {
        for (m, w) in tr.params[i].mask.iter().zip(&trained[i]) {
            if *m == 1.0 {
                kept_min = kept_min.min(w.abs());
            } else {
                cut_max = cut_max.max(w.abs());
            }
        }
    }
    assert!(kept_min >= cut_max);
    // Round 2 trains at that mask: the schedule's target (75%) does not move it.
    for idx in epoch_order(192, 0, 0).chunks_exact(16).take(3) {
        tr.train_step(idx).unwrap();
        assert_eq!(zeros(&tr), zeros_for(0.5, n), "round 2 keeps its mask");
    }
    // The whole run: two rounds, then the final training at the target.
    let s = run(&p, &data, &opts("lottery-run")).unwrap();
    assert_eq!(s.sparsity, zeros_for(0.75, n) as f64 / n as f64);
    let metrics = std::fs::read_to_string(temp_dir("lottery-run").join("metrics.jsonl")).unwrap();
    let rounds: Vec<_> = metrics.lines().map(|l| l.contains("\"round\"")).collect();
    assert_eq!(rounds, vec![true, true, true, true, false, false]);
}
