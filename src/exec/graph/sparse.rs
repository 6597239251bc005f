//! Which layers run on sparse kernels. In: each step's effective weights, their patterns (the
//! mask, or a soft threshold's zeros), the mask generation and the run's [`LayerKernels`]. Out:
//! per weight, a [`SparseWeight`] the walker hands to the sparse op, or none (dense).
//!
//! A layout is rebuilt only when the sparsifier's generation moves (a mask changed); otherwise
//! a step refreshes the kept values (a gather of the nonzeros). Under `auto` a layer runs sparse
//! when its density is at or below the crossover measured for its kind (`bench_kernels`).

use std::sync::Arc;

use super::{Graph, Node};
use crate::exec::backend::conv::ConvGeom;
use crate::exec::backend::sparse::{linear_geom, Isa, SparseWeight};
use crate::exec::LayerKernels;
use crate::ir::plan::Model;

/// Density at or below which `auto` runs a dense layer sparse (measured, see ARCHITECTURE.md).
pub const DENSE_CROSSOVER: f64 = 0.2;
/// The same for a convolution.
pub const CONV_CROSSOVER: f64 = 0.4;

/// One param's sparse state.
#[derive(Debug, Clone, Default)]
pub struct SparseSlot {
    /// The layer's geometry when this param is a weight that can run sparse.
    pub geom: Option<ConvGeom>,
    /// The layout the walker uses this step (`None`: dense).
    pub active: Option<Arc<SparseWeight>>,
    /// The mask generation the choice was made at.
    decided_at: Option<u64>,
    /// Training steps this weight ran sparse.
    pub sparse_steps: u64,
}

impl SparseSlot {
    /// Back to dense until the next decision.
    pub fn reset(&mut self) {
        self.active = None;
        self.decided_at = None;
    }

    /// Whether `auto` runs this layer sparse at `density`.
    fn pays(&self, density: f64) -> bool {
        let linear = self.geom.is_some_and(|g| g.h == 1 && g.w == 1 && g.k == 1);
        density <= if linear { DENSE_CROSSOVER } else { CONV_CROSSOVER }
    }
}

/// A slot per param of `model`; weights of dense layers and of convolutions (not depthwise)
/// that no other layer uses (weight sharing) carry their geometry.
pub(super) fn slots(nodes: &[Node], model: &Model) -> Vec<SparseSlot> {
    fn walk(nodes: &[Node], model: &Model, found: &mut Vec<(usize, Option<ConvGeom>)>) {
        for n in nodes {
            match n {
                Node::Dense { w, .. } => {
                    let shape = &model.params[*w].shape;
                    found.push((*w, Some(linear_geom(shape[1..].iter().product(), shape[0]))));
                }
                Node::Conv { w, geom, scale, .. } => {
                    found.push((*w, (scale.is_none() && !geom.depthwise()).then_some(*geom)))
                }
                Node::Residual { body, shortcut, .. } => {
                    walk(body, model, found);
                    walk(shortcut, model, found);
                }
                _ => {}
            }
        }
    }
    let mut found = Vec::new();
    walk(nodes, model, &mut found);
    let mut slots = vec![SparseSlot::default(); model.params.len()];
    for &(w, geom) in &found {
        if found.iter().filter(|(v, _)| *v == w).count() == 1 {
            slots[w].geom = geom;
        }
    }
    slots
}

impl Graph {
    /// Loads one training step's weights: each param's `values`, and for a weight whose layer
    /// can run sparse, its `pattern` (kept positions). `generation` is the sparsifier's; the
    /// sparse layers compute the dense weight gradient when `dense_grad`.
    pub fn load_step(
        &mut self,
        values: &[&[f32]],
        patterns: &[Option<&[f32]>],
        choice: LayerKernels,
        generation: u64,
        dense_grad: bool,
    ) {
        for (i, slot) in self.sparse.iter_mut().enumerate() {
            let pattern = patterns[i].filter(|_| choice != LayerKernels::Dense);
            let (Some(geom), Some(pattern)) = (slot.geom, pattern) else {
                slot.reset();
                self.params[i].copy_from(values[i]);
                continue;
            };
            if slot.decided_at != Some(generation) {
                let kept = pattern.iter().filter(|v| **v != 0.0).count();
                let density = kept as f64 / pattern.len().max(1) as f64;
                slot.active = (choice == LayerKernels::Sparse || slot.pays(density))
                    .then(|| Arc::new(SparseWeight::new(geom, pattern, Isa::detect())));
                slot.decided_at = Some(generation);
            }
            match &mut slot.active {
                Some(sw) => {
                    let sw = Arc::make_mut(sw);
                    debug_assert!(sw.matches(pattern), "sparse layout out of date with its mask");
                    sw.refresh(values[i]);
                    sw.dense_weight_grad = dense_grad;
                    slot.sparse_steps += 1;
                }
                None => self.params[i].copy_from(values[i]),
            }
        }
    }
}
