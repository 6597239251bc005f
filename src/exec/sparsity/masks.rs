//! The initial masks, one `match` over the mask methods. In: the freshly initialised params,
//! the graph (for the methods that score the network) and the training data. Out: masks set,
//! weights and optimizer state re-masked, each group holding the zeros its schedule asks for
//! at step 0.

use super::rules::magnitude_group;
use super::scores::{self, Probe};
use super::Sparsifier;
use crate::data::DataSet;
use crate::exec::error::RunError;
use crate::exec::graph::Graph;
use crate::exec::jit::{call_failed, StepKernels};
use crate::exec::params::ParamBuf;
use crate::exec::Stream;
use crate::ir::plan::{MaskMethod, Plan};
use crate::sparsity::mask::random_masks;

pub fn set_initial_masks(
    plan: &Plan,
    sp: &mut Sparsifier,
    params: &mut [ParamBuf],
    graph: &mut Graph,
    data: &DataSet,
    kernels: &StepKernels,
) -> Result<(), RunError> {
    let groups = sp.initial_zeros(params);
    let mut probe = Probe { graph, data, batch: plan.train.batch, seed: plan.seed };
    let scored = match plan.sparsity.mask {
        // Lottery tickets start dense; their rounds prune (`train::lottery`).
        MaskMethod::Dense | MaskMethod::Lottery { .. } => None,
        MaskMethod::Random => {
            let mut rng = Stream::Masks.rng(plan.seed);
            for (g, k) in &groups {
                let mut ps = g.members_mut(params);
                random_masks(*k, &mut ps.iter_mut().map(|p| &mut p.mask[..]).collect::<Vec<_>>(), &mut rng);
            }
            sp.note_zeros(groups.iter().map(|(_, k)| Some(*k)).collect());
            None
        }
        MaskMethod::Magnitude => {
            for (g, k) in &groups {
                magnitude_group(&mut g.members_mut(params), *k);
            }
            // Recorded, so a sparse init's rescaling cannot move the mask at the first step.
            sp.note_zeros(groups.iter().map(|(_, k)| Some(*k)).collect());
            None
        }
        MaskMethod::Snip { batches } => {
            Some(scores::cut_all(&groups, params, scores::snip(&mut probe, params, batches), false))
        }
        MaskMethod::Grasp { temperature, batches } => {
            Some(scores::cut_all(&groups, params, scores::grasp(&mut probe, params, batches, temperature), true))
        }
        MaskMethod::Synflow { rounds } => match scores::synflow(&mut probe, params, &groups, rounds) {
            Some(m) => Some(m),
            None => return Err(RunError::ScoreOverflow { method: "synflow", span: plan.sparsity.span }),
        },
    };
    for p in params.iter_mut().filter(|p| p.spec.masked) {
        kernels.remask(p).map_err(call_failed(plan.sparsity.span))?;
    }
    if let Some(masks) = scored {
        sp.set_masks(params, masks, kernels)?;
    }
    Ok(())
}
