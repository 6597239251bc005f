//! The one way to run a batch through the network: training steps, pruning scores, GradInit and
//! evaluation all call [`Graph::loss_and_grads`] or [`Graph::loss`]. In: a [`Batch`] and the
//! objective. Out: the objective's value, the number of correct predictions, and (traced) each
//! parameter's gradient.

use rand_chacha::ChaCha8Rng;

use super::walk::{reads_input_in_place, run, Input};
use super::{Graph, Mode};
use crate::data::{fill_batch, Split};
use crate::diagnostics::Span;
use crate::exec::backend::loss::cross_entropy;
use crate::exec::backend::{backward, input, input_carrier, input_carrier_untraced, scale, sum_all, value};
use crate::exec::error::RunError;
use crate::ir::plan::{Augment, SmoothingStyle};

/// Examples `(b, c*h*w)` flattened, and their labels.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<usize>,
}

impl Batch {
    /// The examples `idx` of `split`, with `augment` drawn from `rng`.
    pub fn fill(split: &Split, shape: [usize; 3], idx: &[usize], augment: &[Augment], rng: &mut ChaCha8Rng) -> Batch {
        let n: usize = shape.iter().product();
        if augment.is_empty() {
            // The examples as they are, copied without zeroing the buffer first.
            let mut images = Vec::with_capacity(idx.len() * n);
            idx.iter().for_each(|&i| images.extend_from_slice(split.image(i, shape)));
            let labels = idx.iter().map(|&i| split.labels[i] as usize).collect();
            return Batch { images, labels };
        }
        let (mut images, mut labels) = (vec![0.0; idx.len() * n], vec![0usize; idx.len()]);
        fill_batch(split, shape, idx, augment, rng, &mut images, &mut labels);
        Batch { images, labels }
    }

    pub fn concat(a: &Batch, b: &Batch) -> Batch {
        Batch { images: [&a.images[..], &b.images].concat(), labels: [&a.labels[..], &b.labels].concat() }
    }
}

/// What is differentiated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// Mean cross-entropy of `logits / temperature` against the labels, with label smoothing.
    CrossEntropy { smoothing: Option<(f32, SmoothingStyle)>, temperature: f32 },
    /// The sum of every output (SynFlow's `R`); the labels are not read.
    SumOfOutputs,
}

/// A parameter's gradient from [`Graph::loss_and_grads`]: dense, or only at the kept positions
/// of a weight that ran on the sparse kernels (zero elsewhere); `layout` names the set of kept
/// positions (the same `layout`, the same `index`).
pub enum ParamGrad<'a> {
    Dense(&'a [f32]),
    Kept { len: usize, index: &'a [u32], values: &'a [f32], layout: u64 },
}

impl ParamGrad<'_> {
    /// Writes the whole gradient into `dst`, where `support` is what the last call returned for
    /// this `dst` (`None`: unknown). A kept gradient on the same layout as the last one writes
    /// the kept positions only: the rest of `dst` is still zero, unless something other than
    /// scaling wrote it since (then pass `None`). Returns the layout now in `dst`.
    pub fn write_over(&self, dst: &mut [f32], support: Option<u64>) -> Option<u64> {
        match self {
            ParamGrad::Kept { index, values, layout, .. } if support == Some(*layout) => {
                for (&i, &v) in index.iter().zip(values.iter()) {
                    dst[i as usize] = v;
                }
                Some(*layout)
            }
            ParamGrad::Kept { layout, .. } => {
                self.write_into(dst);
                Some(*layout)
            }
            ParamGrad::Dense(_) => {
                self.write_into(dst);
                None
            }
        }
    }

    /// Writes the whole gradient into `dst`.
    pub fn write_into(&self, dst: &mut [f32]) {
        match self {
            ParamGrad::Dense(g) => crate::exec::backend::copy_par(dst, g),
            ParamGrad::Kept { index, values, .. } => {
                dst.fill(0.0);
                for (&i, &v) in index.iter().zip(values.iter()) {
                    dst[i as usize] = v;
                }
            }
        }
    }

    /// Adds the gradient into `dst`.
    pub fn add_into(&self, dst: &mut [f32]) {
        match self {
            ParamGrad::Dense(g) => dst.iter_mut().zip(g.iter()).for_each(|(a, b)| *a += b),
            ParamGrad::Kept { index, values, .. } => {
                index.iter().zip(values.iter()).for_each(|(&i, v)| dst[i as usize] += v)
            }
        }
    }

    /// The whole gradient as a new vector.
    pub fn to_vec(&self) -> Vec<f32> {
        let len = match self {
            ParamGrad::Dense(g) => g.len(),
            ParamGrad::Kept { len, .. } => *len,
        };
        let mut v = vec![0.0; len];
        self.write_into(&mut v);
        v
    }
}

impl Objective {
    pub const PLAIN: Objective = Objective::CrossEntropy { smoothing: None, temperature: 1.0 };
}

impl Graph {
    /// Forward (recording), the objective, backward; `grad(i, g)` receives the gradient of
    /// param `i` (the plan's order). Returns the objective's value and the number of examples
    /// whose arg-max logit is the label. The value may be non-finite: callers decide.
    /// The batch is taken by value: the step loop hands over its freshly filled batch without a
    /// copy; callers that reuse one pass a clone.
    pub fn loss_and_grads(
        &mut self,
        batch: Batch,
        objective: Objective,
        mode: &mut Mode,
        span: Span,
        mut grad: impl FnMut(usize, ParamGrad),
    ) -> Result<(f32, usize), RunError> {
        let b = batch.labels.len();
        let out = if reads_input_in_place(&self.nodes, &self.params, &self.sparse) {
            let x = input_carrier(&self.dev, b);
            run(&self.nodes, &self.params, &self.sparse, &mut self.bn, Input::Carried(x, &batch.images), mode, None)
        } else {
            let x = input(&self.dev, batch.images, b);
            run(&self.nodes, &self.params, &self.sparse, &mut self.bn, Input::Tensor(x), mode, None)
        };
        let (loss, correct) = match objective {
            Objective::CrossEntropy { smoothing, temperature } => {
                let logits = if temperature == 1.0 { out } else { scale(out, 1.0 / temperature) };
                cross_entropy(logits, &batch.labels, smoothing)
            }
            Objective::SumOfOutputs => (sum_all(out), 0),
        };
        let v = value(&loss);
        let mut grads = backward(loss);
        for (i, t) in self.params.iter().enumerate() {
            if let Some(sw) = &self.sparse[i].active {
                if let Some((index, values)) = sw.kept_grad() {
                    let len = sw.geom.out * sw.geom.fan_in();
                    grad(i, ParamGrad::Kept { len, index, values: &values, layout: sw.layout });
                    continue;
                }
            }
            let g = t.grad(&mut grads).map_err(|e| RunError::Plan { msg: format!("gradient: {e:?}"), span })?;
            grad(i, ParamGrad::Dense(g));
        }
        Ok((v, correct))
    }

    /// Forward without recording: the logits `(batch, classes)`.
    #[cfg(test)]
    pub fn logits(&mut self, images: &[f32], b: usize, mode: &mut Mode) -> Vec<f32> {
        let x = input_carrier_untraced(&self.dev, b);
        crate::exec::backend::read(&run(
            &self.nodes,
            &self.params,
            &self.sparse,
            &mut self.bn,
            Input::Carried(x, images),
            mode,
            None,
        ))
    }

    /// Forward without recording: the mean cross-entropy and the number correct (and, after
    /// [`Graph::watch_relus`], which ReLU units fired).
    pub fn loss(&mut self, batch: &Batch, mode: &mut Mode) -> (f32, usize) {
        let x = input_carrier_untraced(&self.dev, batch.labels.len());
        let watch = if self.watching { Some(&mut self.relus[..]) } else { None };
        let logits =
            run(&self.nodes, &self.params, &self.sparse, &mut self.bn, Input::Carried(x, &batch.images), mode, watch);
        let (loss, correct) = cross_entropy(logits, &batch.labels, None);
        (value(&loss), correct)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::{Batch, ParamGrad};
    use crate::data::{fill_batch, Split};

    #[test]
    fn a_batch_without_augmentation_is_the_examples_in_order() {
        let shape = [1, 2, 3];
        let split = Split { images: (0..5 * 6).map(|v| v as f32).collect(), labels: vec![4, 3, 2, 1, 0], len: 5 };
        let idx = [3, 0, 4];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let batch = Batch::fill(&split, shape, &idx, &[], &mut rng);
        let (mut images, mut labels) = (vec![0.0; 18], vec![0; 3]);
        fill_batch(&split, shape, &idx, &[], &mut rng, &mut images, &mut labels);
        assert_eq!((batch.images, batch.labels), (images.clone(), labels));
        assert_eq!(images[..6], [18.0, 19.0, 20.0, 21.0, 22.0, 23.0]);
    }

    #[test]
    fn a_kept_gradient_on_the_same_layout_writes_only_its_positions() {
        let (index, values) = ([1u32, 3], [5.0f32, 6.0]);
        let kept = |layout| ParamGrad::Kept { len: 5, index: &index, values: &values, layout };
        // Unknown support: the whole vector is written.
        let mut dst = vec![9.0; 5];
        assert_eq!(kept(7).write_over(&mut dst, None), Some(7));
        assert_eq!(dst, [0.0, 5.0, 0.0, 6.0, 0.0]);
        // The same layout: only the kept positions (a stray value elsewhere shows it).
        dst[0] = 1.0;
        assert_eq!(kept(7).write_over(&mut dst, Some(7)), Some(7));
        assert_eq!(dst, [1.0, 5.0, 0.0, 6.0, 0.0]);
        // Another layout: zeroed again.
        assert_eq!(kept(8).write_over(&mut dst, Some(7)), Some(8));
        assert_eq!(dst, [0.0, 5.0, 0.0, 6.0, 0.0]);
        // A dense gradient: copied, support unknown.
        assert_eq!(ParamGrad::Dense(&[1.0; 5]).write_over(&mut dst, Some(8)), None);
        assert_eq!(dst, [1.0; 5]);
    }
}
