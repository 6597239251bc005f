//! Masks found at initialisation from the network itself: SNIP, GraSP and SynFlow scores.
//! In: the freshly initialised network ([`Graph`]) and weights ([`ParamBuf`]), training batches
//! (SNIP, GraSP) or none (SynFlow). Out: one score per weight (SNIP, GraSP), or the masks
//! themselves (SynFlow, which prunes in rounds).
//!
//! Scores follow the official implementations the ToST paper used (`pruning_utils.py`, after
//! the SNIP, GraSP and SynFlow authors' code); the lowest scores are pruned:
//! - SNIP: `|w * g|` with `g` the gradient summed over the first `batches` training batches.
//! - GraSP: `w * Hg`, where `g` is the gradient of the loss of `logits / temperature` summed over
//!   the batches and `Hg` its Hessian-vector product. dfdx has no double backward, so `Hg` is the
//!   central difference `(grad(w + e g) - grad(w - e g)) / 2e` (two more backward passes per
//!   batch), with `e` chosen so the step moves the weights by 1% of their norm.
//! - SynFlow: data-free; weights replaced by `|w|` (times the mask), batchnorm in eval mode, an
//!   all-ones input of batch 1, `R = sum(logits)`, score `|w * dR/dw|`; `rounds` rounds, round
//!   `r` keeping density `d^(r / rounds)` of the group (the exponential schedule).
//!
//! Scoring never changes what training sees: batchnorm running statistics are restored after.

use crate::data::{epoch_order, DataSet};
use crate::diagnostics::Span;
use crate::exec::graph::{Batch, Graph, Mode, Objective, ParamGrad};
use crate::exec::params::ParamBuf;
use crate::exec::Stream;
use crate::sparsity::mask::{magnitude_masks, score_masks};
use crate::sparsity::{zeros_for, Group};

/// What scoring needs: the network, the data, the batch size and the seed.
pub struct Probe<'a> {
    pub graph: &'a mut Graph,
    pub data: &'a DataSet,
    pub batch: usize,
    pub seed: u64,
}

impl Probe<'_> {
    fn load(&mut self, weights: &[Vec<f32>]) {
        let values: Vec<&[f32]> = weights.iter().map(|w| &w[..]).collect();
        self.graph.load(&values);
    }

    /// The first `batches` batches of epoch 0's order (no augmentation).
    fn batches(&self, batches: usize) -> Vec<Batch> {
        let order = epoch_order(self.data.train.len, self.seed, 0);
        let mut rng = Stream::Scoring.rng(self.seed); // unused: no augmentation
        order
            .chunks_exact(self.batch.min(self.data.train.len).max(1))
            .take(batches)
            .map(|idx| Batch::fill(&self.data.train, self.data.shape, idx, &[], &mut rng))
            .collect()
    }

    /// Gradient of the cross-entropy of `logits / temperature` at `weights`, summed over `batches`
    /// (training mode, dropout from a fixed stream so repeated calls see the same network).
    fn gradient(&mut self, weights: &[Vec<f32>], batches: &[Batch], temperature: f32) -> Vec<Vec<f32>> {
        self.load(weights);
        let saved = self.graph.bn.clone();
        let mut total: Vec<Vec<f32>> = weights.iter().map(|w| vec![0.0; w.len()]).collect();
        let objective = Objective::CrossEntropy { smoothing: None, temperature };
        for batch in batches {
            let mut rng = Stream::Scoring.rng(self.seed);
            let mut mode = Mode { train: true, dropout: true, rng: &mut rng, step: 0 };
            let add = |i: usize, g: ParamGrad| g.add_into(&mut total[i]);
            // A gradient that cannot be read scores nothing rather than stopping the run.
            let _ = self.graph.loss_and_grads(batch.clone(), objective, &mut mode, Span::default(), add);
        }
        self.graph.bn = saved;
        total
    }
}

/// The weights as the network sees them (masked).
fn masked_weights(params: &[ParamBuf]) -> Vec<Vec<f32>> {
    params
        .iter()
        .map(|p| match p.mask() {
            Some(m) => p.raw.iter().zip(m).map(|(w, m)| w * m).collect(),
            None => p.raw.clone(),
        })
        .collect()
}

/// SNIP's `|w * g|`, zero for unmasked params.
pub fn snip(probe: &mut Probe, params: &[ParamBuf], batches: usize) -> Vec<Vec<f32>> {
    let w = masked_weights(params);
    let data = probe.batches(batches);
    let g = probe.gradient(&w, &data, 1.0);
    params
        .iter()
        .zip(w.iter().zip(&g))
        .map(|(p, (w, g))| if p.spec.masked { w.iter().zip(g).map(|(w, g)| (w * g).abs()).collect() } else { vec![] })
        .collect()
}

/// GraSP's `w * Hg` (signed; the lowest are pruned), zero-length for unmasked params.
pub fn grasp(probe: &mut Probe, params: &[ParamBuf], batches: usize, temperature: f64) -> Vec<Vec<f32>> {
    grasp_with_step(probe, params, batches, temperature, 0.01)
}

/// GraSP with the finite-difference step moving the weights by `step` times their norm.
pub fn grasp_with_step(
    probe: &mut Probe,
    params: &[ParamBuf],
    batches: usize,
    temperature: f64,
    step: f64,
) -> Vec<Vec<f32>> {
    let t = temperature as f32;
    let w = masked_weights(params);
    let data = probe.batches(batches);
    // Only the masked weights are scored, so `g` and the perturbation live on them alone.
    let mut g = probe.gradient(&w, &data, t);
    for (p, g) in params.iter().zip(g.iter_mut()) {
        if !p.spec.masked {
            g.iter_mut().for_each(|v| *v = 0.0);
        }
    }
    let norm = |v: &[Vec<f32>]| v.iter().flatten().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let (wn, gn) = (norm(&w), norm(&g));
    let e = if gn > 0.0 { (step * wn / gn) as f32 } else { 0.0 };
    let shifted = |sign: f32| -> Vec<Vec<f32>> {
        w.iter().zip(&g).map(|(w, g)| w.iter().zip(g).map(|(w, g)| w + sign * e * g).collect()).collect()
    };
    let (plus, minus) = (shifted(1.0), shifted(-1.0));
    let gp = probe.gradient(&plus, &data, t);
    let gm = probe.gradient(&minus, &data, t);
    params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if !p.spec.masked || e == 0.0 {
                return if p.spec.masked { vec![0.0; p.raw.len()] } else { vec![] };
            }
            (0..p.raw.len()).map(|j| w[i][j] * (gp[i][j] - gm[i][j]) / (2.0 * e)).collect()
        })
        .collect()
}

/// SynFlow's scores `|w * dR/dw|` at the current masks (zero where pruned).
fn synflow_scores(probe: &mut Probe, params: &[ParamBuf], masks: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let abs: Vec<Vec<f32>> = params
        .iter()
        .zip(masks)
        .map(|(p, m)| match p.spec.masked {
            true => p.raw.iter().zip(m).map(|(w, m)| (w * m).abs()).collect(),
            false => p.raw.iter().map(|w| w.abs()).collect(),
        })
        .collect();
    probe.load(&abs);
    let saved = probe.graph.bn.clone();
    let n: usize = probe.data.shape.iter().product();
    let ones = Batch { images: vec![1.0; n], labels: vec![0] };
    let mut rng = Stream::Scoring.rng(probe.seed);
    let mut mode = Mode { train: false, dropout: false, rng: &mut rng, step: 0 };
    let mut g: Vec<Vec<f32>> = abs.iter().map(|w| vec![0.0; w.len()]).collect();
    let r = probe
        .graph
        .loss_and_grads(ones, Objective::SumOfOutputs, &mut mode, Span::default(), |i, v| v.write_into(&mut g[i]));
    let finite = r.is_ok_and(|(r, _)| r.is_finite());
    probe.graph.bn = saved;
    params
        .iter()
        .zip(abs.iter().zip(&g))
        .map(|(p, (w, g))| {
            if !p.spec.masked {
                return vec![];
            }
            // An overflowed flow ranks nothing: treat as all-equal rather than NaN.
            w.iter().zip(g).map(|(w, g)| if finite { (w * g).abs() } else { 0.0 }).collect()
        })
        .collect()
}

/// SynFlow masks: `rounds` rounds of scoring and pruning, each group to density
/// `d^(r/rounds)` after round `r` where `d` is its final density (`groups` give `(group, zeros)`).
/// Returns `None` when the flow is not finite in f32 (very deep networks).
pub fn synflow(
    probe: &mut Probe,
    params: &[ParamBuf],
    groups: &[(Group, usize)],
    rounds: usize,
) -> Option<Vec<Vec<f32>>> {
    let mut masks: Vec<Vec<f32>> = params.iter().map(|p| p.mask.clone()).collect();
    masks.iter_mut().for_each(|m| m.fill(1.0));
    let rounds = rounds.max(1);
    for r in 1..=rounds {
        let scores = synflow_scores(probe, params, &masks);
        if scores.iter().flatten().all(|s| *s == 0.0) && scores.iter().any(|s| !s.is_empty()) {
            return None;
        }
        // Pruned weights score 0 and stay pruned; live ones score at least the smallest
        // positive float so a zero flow never revives a pruned weight at a tie.
        let live: Vec<Vec<f32>> = scores
            .iter()
            .zip(&masks)
            .map(|(s, m)| {
                s.iter().zip(m).map(|(s, m)| if *m == 0.0 { 0.0 } else { s.max(f32::from_bits(1)) }).collect()
            })
            .collect();
        for (g, zeros) in groups {
            let n: usize = g.members.iter().map(|&i| params[i].raw.len()).sum();
            let density = 1.0 - *zeros as f64 / n.max(1) as f64;
            let k = if r == rounds { *zeros } else { zeros_for(1.0 - density.powf(r as f64 / rounds as f64), n) };
            cut(g, &live, k, false, &mut masks);
        }
    }
    Some(masks)
}

/// Zeros the `k` lowest `scores` of group `g` in `masks` (both indexed by param): by value when
/// `signed` (GraSP), else by magnitude (radix select).
fn cut(g: &Group, scores: &[Vec<f32>], k: usize, signed: bool, masks: &mut [Vec<f32>]) {
    let refs: Vec<&[f32]> = g.members.iter().map(|&i| &scores[i][..]).collect();
    let mut ms: Vec<&mut [f32]> = g.members_mut(masks).into_iter().map(|m| &mut m[..]).collect();
    if signed {
        score_masks(&refs, k, &mut ms);
    } else {
        magnitude_masks(&refs, k, &mut ms);
    }
}

/// Masks with each group's `k` lowest `scores` cut (one mask per param, empty for unmasked
/// ones): by value when `signed` (GraSP), else by magnitude.
pub fn cut_all(groups: &[(Group, usize)], params: &[ParamBuf], scores: Vec<Vec<f32>>, signed: bool) -> Vec<Vec<f32>> {
    let mut masks: Vec<Vec<f32>> = params.iter().map(|p| p.mask.clone()).collect();
    for (g, k) in groups {
        cut(g, &scores, *k, signed, &mut masks);
    }
    masks
}
