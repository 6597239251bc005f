//! Batch normalisation per channel. In: `(batch, c*hw)`, scale and shift `(c,)`, running
//! statistics owned by the engine. Out: `(batch, c*hw)`. Training uses the batch statistics
//! and updates the running ones (PyTorch convention: `run = (1-m) run + m batch`, unbiased
//! variance); evaluation uses the running statistics.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::{add_into, read, with_backward, Param1, Tensor2};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BnGeom {
    pub c: usize,
    pub hw: usize,
    pub eps: f32,
    pub momentum: f32,
}

/// Running mean and variance of one batchnorm layer.
#[derive(Debug, Clone, PartialEq)]
pub struct BnStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
}

impl BnStats {
    pub fn new(c: usize) -> BnStats {
        BnStats { mean: vec![0.0; c], var: vec![1.0; c] }
    }
}

/// Per-channel mean and biased variance over batch and positions (accumulated in f64). Channels
/// run in parallel; each sums its planes in batch order, so the bits do not depend on threads.
fn batch_stats(xs: &[f32], batch: usize, g: &BnGeom) -> (Vec<f32>, Vec<f32>) {
    let n = (batch * g.hw) as f64;
    let sums: Vec<(f64, f64)> = (0..g.c)
        .into_par_iter()
        .map(|ch| {
            let (mut sum, mut sq) = (0.0f64, 0.0f64);
            for b in 0..batch {
                for &v in &xs[(b * g.c + ch) * g.hw..][..g.hw] {
                    sum += v as f64;
                    sq += (v as f64) * (v as f64);
                }
            }
            (sum, sq)
        })
        .collect();
    let mean: Vec<f64> = sums.iter().map(|(s, _)| s / n).collect();
    let var = sums.iter().zip(&mean).map(|((_, q), m)| (q / n - m * m).max(0.0) as f32).collect();
    (mean.into_iter().map(|m| m as f32).collect(), var)
}

pub fn batch_norm<T: Tape<f32, Cpu>>(
    x: Tensor2<T>,
    scale: &Param1,
    shift: &Param1,
    g: BnGeom,
    stats: &mut BnStats,
    train: bool,
) -> Tensor2<T> {
    let (x, tape) = x.split_tape();
    let batch = x.shape().0;
    let xs = read(&x);
    let (gamma, beta) = (scale.values().clone(), shift.values().clone());
    let (mean, var) = if train {
        let (mean, var) = batch_stats(&xs, batch, &g);
        let n = (batch * g.hw) as f32;
        let unbias = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
        for ch in 0..g.c {
            stats.mean[ch] = (1.0 - g.momentum) * stats.mean[ch] + g.momentum * mean[ch];
            stats.var[ch] = (1.0 - g.momentum) * stats.var[ch] + g.momentum * var[ch] * unbias;
        }
        (mean, var)
    } else {
        (stats.mean.clone(), stats.var.clone())
    };
    let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + g.eps).sqrt()).collect();
    let mut xhat = xs;
    let mut y = vec![0.0; xhat.len()];
    let hw = g.hw.max(1);
    xhat.par_chunks_mut(hw).zip(y.par_chunks_mut(hw)).enumerate().with_min_len(8).for_each(|(i, (xp, yp))| {
        let ch = i % g.c;
        for (xv, yv) in xp.iter_mut().zip(yp) {
            *xv = (*xv - mean[ch]) * inv_std[ch];
            *yv = gamma[ch] * *xv + beta[ch];
        }
    });
    let out = x.device().tensor_from_vec(y, (batch, g.c * g.hw));
    let (xg, sg, bg) = (x.ghost(), scale.tensor().ghost(), shift.tensor().ghost());
    with_backward(out, tape, move |gy, grads| {
        // Per channel, over its planes in batch order (the bits do not depend on threads).
        let (dgamma, dbeta): (Vec<f32>, Vec<f32>) = (0..g.c)
            .into_par_iter()
            .map(|ch| {
                let (mut dgamma, mut dbeta) = (0.0f32, 0.0f32);
                for b in 0..batch {
                    let at = (b * g.c + ch) * g.hw;
                    for (xv, gv) in xhat[at..at + g.hw].iter().zip(&gy[at..at + g.hw]) {
                        dgamma += gv * xv;
                        dbeta += gv;
                    }
                }
                (dgamma, dbeta)
            })
            .unzip();
        let dx = grads.get_or_alloc_mut(&xg)?;
        let n = (batch * g.hw) as f32;
        let hw = g.hw.max(1);
        dx.par_chunks_mut(hw).zip(xhat.par_chunks(hw)).zip(gy.par_chunks(hw)).enumerate().with_min_len(8).for_each(
            |(i, ((dp, xp), gp))| {
                let ch = i % g.c;
                let k = gamma[ch] * inv_std[ch];
                for ((d, xv), gv) in dp.iter_mut().zip(xp).zip(gp) {
                    *d += if train { k * (gv - (dbeta[ch] + xv * dgamma[ch]) / n) } else { k * gv };
                }
            },
        );
        add_into(grads.get_or_alloc_mut(&sg)?, &dgamma);
        add_into(grads.get_or_alloc_mut(&bg)?, &dbeta);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_close, check_input_grad, numeric_grad, random};
    use super::*;

    const G: BnGeom = BnGeom { c: 3, hw: 5, eps: 1e-5, momentum: 0.1 };

    #[test]
    fn train_forward_normalises_and_updates_running_stats() {
        let dev = Cpu::default();
        let batch = 4;
        let x = random(batch * 15, 7);
        let ones = Param1::new(dev.tensor_from_vec(vec![1.0; 3], (3,)));
        let zeros = Param1::new(dev.tensor_from_vec(vec![0.0; 3], (3,)));
        let mut stats = BnStats::new(3);
        let xt: Tensor2 = dev.tensor_from_vec(x.clone(), (batch, 15));
        let y = read(&batch_norm(xt, &ones, &zeros, G, &mut stats, true));
        for ch in 0..3 {
            let vals: Vec<f32> = (0..batch).flat_map(|b| x[b * 15 + ch * 5..b * 15 + ch * 5 + 5].to_vec()).collect();
            let ys: Vec<f32> = (0..batch).flat_map(|b| y[b * 15 + ch * 5..b * 15 + ch * 5 + 5].to_vec()).collect();
            let m = vals.iter().sum::<f32>() / 20.0;
            let v = vals.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / 20.0;
            assert!((ys.iter().sum::<f32>() / 20.0).abs() < 1e-5);
            assert!((stats.mean[ch] - 0.1 * m).abs() < 1e-6);
            assert!((stats.var[ch] - (0.9 + 0.1 * v * 20.0 / 19.0)).abs() < 1e-5);
        }
    }

    #[test]
    fn outputs_and_gradients_do_not_depend_on_the_thread_count() {
        let g = BnGeom { c: 5, hw: 37, eps: 1e-5, momentum: 0.1 };
        let batch = 9;
        let x = random(batch * g.c * g.hw, 21);
        let r = random(x.len(), 22);
        let run = || {
            let dev = Cpu::default();
            let (s, sh) = (
                Param1::new(dev.tensor_from_vec(random(5, 23), (5,))),
                Param1::new(dev.tensor_from_vec(random(5, 24), (5,))),
            );
            let xt: Tensor2 = dev.tensor_from_vec(x.clone(), (batch, g.c * g.hw));
            let rt: Tensor2 = dev.tensor_from_vec(r.clone(), (batch, g.c * g.hw));
            let mut stats = BnStats::new(g.c);
            let y = batch_norm(xt.leaky_trace(), &s, &sh, g, &mut stats, true);
            let yv = read(&y);
            let grads = (y * rt).sum::<(), _>().backward();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            (bits(&yv), bits(&grads.get(&xt).as_vec()), bits(&grads.get(s.tensor()).as_vec()), bits(&stats.var))
        };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(run);
        let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(run);
        assert!(one == three);
    }

    #[test]
    fn gradients_match_finite_differences_in_both_modes() {
        let dev = Cpu::default();
        let gamma = random(3, 8);
        let beta = random(3, 9);
        let st = Param1::new(dev.tensor_from_vec(gamma.clone(), (3,)));
        let sh = Param1::new(dev.tensor_from_vec(beta.clone(), (3,)));
        let x = random(4 * 15, 10);
        for train in [true, false] {
            let run = BnStats { mean: random(3, 11), var: vec![0.5, 1.5, 2.0] };
            let f = |x| batch_norm(x, &st, &sh, G, &mut run.clone(), train);
            let g = |x| batch_norm(x, &st, &sh, G, &mut run.clone(), train);
            let (a, n) = check_input_grad(&x, (4, 15), f, g);
            assert_close(&a, &n, 2e-2);
        }
        // Scale gradient in training mode.
        let r = random(60, 12);
        let xt: Tensor2 = dev.tensor_from_vec(x.clone(), (4, 15));
        let rt: Tensor2 = dev.tensor_from_vec(r.clone(), (4, 15));
        let y = batch_norm(xt.leaky_trace(), &st, &sh, G, &mut BnStats::new(3), true);
        let grads = (y * rt).sum::<(), _>().backward();
        let loss = |gm: &[f32]| -> f64 {
            let s = Param1::new(dev.tensor_from_vec(gm.to_vec(), (3,)));
            let xt: Tensor2 = dev.tensor_from_vec(x.clone(), (4, 15));
            let y = read(&batch_norm(xt, &s, &sh, G, &mut BnStats::new(3), true));
            y.iter().zip(&r).map(|(a, b)| (*a * *b) as f64).sum()
        };
        assert_close(&grads.get(st.tensor()).as_vec(), &numeric_grad(&gamma, loss), 1e-2);
    }
}
