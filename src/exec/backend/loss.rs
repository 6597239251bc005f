//! Softmax cross-entropy against (optionally smoothed) labels, fused with accuracy counting.
//! In: logits `(batch, classes)` and labels. Out: the mean loss as a scalar tensor.

use dfdx::prelude::*;

use super::{add_into, read, with_backward, Tensor2};
use crate::ir::plan::SmoothingStyle;

/// The target distribution for one example of class `label`.
pub fn target_probs(label: usize, classes: usize, smoothing: Option<(f32, SmoothingStyle)>, out: &mut [f32]) {
    let (on, off) = match smoothing {
        None => (1.0, 0.0),
        Some((a, SmoothingStyle::Uniform)) => (1.0 - a + a / classes as f32, a / classes as f32),
        Some((a, SmoothingStyle::Others)) => (1.0 - a, a / (classes - 1).max(1) as f32),
    };
    out.fill(off);
    out[label] = on;
}

/// Loss tensor plus the number of examples whose arg-max logit is the label.
pub fn cross_entropy<T: Tape<f32, Cpu>>(
    logits: Tensor2<T>,
    labels: &[usize],
    smoothing: Option<(f32, SmoothingStyle)>,
) -> (Tensor<(), f32, Cpu, T>, usize) {
    let (x, tape) = logits.split_tape();
    let (batch, classes) = *x.shape();
    let mut probs = read(&x);
    let mut targets = vec![0.0; probs.len()];
    let (mut loss, mut correct) = (0.0f64, 0);
    for ((row, t), &label) in probs.chunks_mut(classes).zip(targets.chunks_mut(classes)).zip(labels) {
        let (arg, max) = row.iter().enumerate().fold(
            (0, f32::NEG_INFINITY),
            |(ai, am), (i, &v)| {
                if v > am {
                    (i, v)
                } else {
                    (ai, am)
                }
            },
        );
        correct += usize::from(arg == label);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
        target_probs(label, classes, smoothing, t);
        for (p, tv) in row.iter_mut().zip(t.iter()) {
            loss -= (*tv * (*p - lse)) as f64;
            *p = (*p - lse).exp();
        }
    }
    let out = x.device().tensor_from_vec(vec![(loss / batch as f64) as f32], ());
    let xg = x.ghost();
    let loss = with_backward(out, tape, move |gy, grads| {
        let scale = gy[0] / batch as f32;
        let delta: Vec<f32> = probs.iter().zip(&targets).map(|(p, t)| (p - t) * scale).collect();
        add_into(grads.get_or_alloc_mut(&xg)?, &delta);
        Ok(())
    });
    (loss, correct)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_close, numeric_grad, random};
    use super::*;

    fn reference(x: &[f32], labels: &[usize], c: usize, s: Option<(f32, SmoothingStyle)>) -> f64 {
        let mut t = vec![0.0; c];
        let mut total = 0.0f64;
        for (row, &l) in x.chunks(c).zip(labels) {
            let z: f64 = row.iter().map(|v| (*v as f64).exp()).sum();
            target_probs(l, c, s, &mut t);
            total -= row.iter().zip(&t).map(|(v, t)| *t as f64 * ((*v as f64).exp() / z).ln()).sum::<f64>();
        }
        total / labels.len() as f64
    }

    #[test]
    fn loss_and_gradient_match_reference_with_each_smoothing() {
        let dev = Cpu::default();
        let x = random(3 * 5, 4);
        let labels = [4, 0, 2];
        for s in [None, Some((0.1, SmoothingStyle::Uniform)), Some((0.2, SmoothingStyle::Others))] {
            let xt: Tensor2 = dev.tensor_from_vec(x.clone(), (3, 5));
            let (loss, _) = cross_entropy(xt.leaky_trace(), &labels, s);
            assert!((loss.array() as f64 - reference(&x, &labels, 5, s)).abs() < 1e-5);
            let grads = loss.backward();
            let numeric = numeric_grad(&x, |x| reference(x, &labels, 5, s));
            assert_close(&grads.get(&xt).as_vec(), &numeric, 1e-3);
        }
        let mut t = vec![0.0; 5];
        target_probs(1, 5, Some((0.2, SmoothingStyle::Others)), &mut t);
        assert_eq!(t, vec![0.05, 0.8, 0.05, 0.05, 0.05]);
    }

    #[test]
    fn smoothed_labels_sum_to_one_and_favour_the_label() {
        for classes in [2, 3, 10, 100] {
            for alpha in [0.0f32, 0.1, 0.3] {
                for style in [SmoothingStyle::Uniform, SmoothingStyle::Others] {
                    let mut t = vec![9.0; classes];
                    target_probs(classes / 2, classes, Some((alpha, style)), &mut t);
                    let sum: f32 = t.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-5, "{classes} {alpha} {style:?}: {sum}");
                    let other = match style {
                        SmoothingStyle::Uniform => alpha / classes as f32,
                        SmoothingStyle::Others => alpha / (classes - 1) as f32,
                    };
                    assert!(t.iter().enumerate().all(|(i, p)| i == classes / 2 || *p == other));
                    assert!(t[classes / 2] > other || alpha == 0.0 && classes == 1);
                }
            }
        }
    }

    #[test]
    fn counts_correct_predictions() {
        let dev = Cpu::default();
        let x: Tensor2 = dev.tensor_from_vec(vec![0.0, 2.0, 1.0, 3.0, 0.0, 0.0], (2, 3));
        assert_eq!(cross_entropy(x, &[1, 1], None).1, 1);
    }
}
