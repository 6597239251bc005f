//! The one way to run a batch through the network: training steps, pruning scores, GradInit and
//! evaluation all call [`Graph::loss_and_grads`] or [`Graph::loss`]. In: a [`Batch`] and the
//! objective. Out: the objective's value, the number of correct predictions, and (traced) each
//! parameter's gradient.

use rand_chacha::ChaCha8Rng;

use super::walk::run;
use super::{Graph, Mode};
use crate::data::{fill_batch, Split};
use crate::diagnostics::Span;
use crate::exec::backend::loss::cross_entropy;
use crate::exec::backend::{backward, input, input_untraced, scale, sum_all, value};
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
        mut grad: impl FnMut(usize, &[f32]),
    ) -> Result<(f32, usize), RunError> {
        let x = input(&self.dev, batch.images, batch.labels.len());
        let out = run(&self.nodes, &self.params, &self.sparse, &mut self.bn, x, mode);
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
            let g = t.grad(&mut grads).map_err(|e| RunError::Plan { msg: format!("gradient: {e:?}"), span })?;
            grad(i, g);
        }
        Ok((v, correct))
    }

    /// Forward without recording: the logits `(batch, classes)`.
    #[cfg(test)]
    pub fn logits(&mut self, images: &[f32], b: usize, mode: &mut Mode) -> Vec<f32> {
        let x = input_untraced(&self.dev, images.to_vec(), b);
        crate::exec::backend::read(&run(&self.nodes, &self.params, &self.sparse, &mut self.bn, x, mode))
    }

    /// Forward without recording: the mean cross-entropy and the number correct.
    pub fn loss(&mut self, batch: &Batch, mode: &mut Mode) -> (f32, usize) {
        let x = input_untraced(&self.dev, batch.images.clone(), batch.labels.len());
        let logits = run(&self.nodes, &self.params, &self.sparse, &mut self.bn, x, mode);
        let (loss, correct) = cross_entropy(logits, &batch.labels, None);
        (value(&loss), correct)
    }
}
