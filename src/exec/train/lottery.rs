//! Lottery tickets (iterative magnitude pruning with rewinding): `rounds` trainings of the whole
//! schedule, each followed by pruning the trained weights by magnitude and rewinding the kept
//! ones to their values at the rewind step. In: the trainer. Out: the masks and rewound weights
//! the final training starts from; metrics lines carry the round.

use super::Trainer;
use crate::exec::backend::norm::BnStats;
use crate::exec::error::RunError;
use crate::ir::plan::MaskMethod;

/// Every param's raw weights and every batchnorm layer's running statistics at one step.
pub type Snapshot = (Vec<Vec<f32>>, Vec<(String, BnStats)>);

/// The rounds in progress.
pub struct Lottery {
    /// The round being trained, 1-based.
    pub round: usize,
    /// The step whose weights rounds rewind to.
    pub rewind_step: u64,
    /// Every param's raw weights and the batchnorm statistics once the rewind step is reached.
    pub snapshot: Option<Snapshot>,
}

impl Trainer<'_> {
    /// Trains and prunes every lottery round of the plan (nothing for other mask methods).
    pub(crate) fn lottery_rounds(&mut self) -> Result<(), RunError> {
        let MaskMethod::Lottery { rounds, rate, rewind } = self.plan.sparsity.mask else {
            return Ok(());
        };
        // Nothing to train (`--max-steps 0`): the starting weights are evaluated as they are.
        if self.step_limit() == 0 {
            return Ok(());
        }
        // A rewind point past the run rewinds to the last step's weights.
        let rewind_step = self.clock.at(rewind).min(self.step_limit() - 1);
        // A resumed run continues its round, or is past the rounds.
        let first = match (&self.lottery, self.resumed) {
            (Some(l), _) => l.round,
            (None, true) => return Ok(()),
            (None, false) => 1,
        };
        for round in first..=rounds {
            if self.lottery.as_ref().is_none_or(|l| l.round != round) {
                self.lottery = Some(Lottery { round, rewind_step, snapshot: None });
            }
            self.train_epochs()?;
            if self.stopped.is_some() {
                break;
            }
            self.sparsifier.lottery_prune(&mut self.params, round, rounds, rate);
            self.rewind()?;
        }
        self.lottery = None;
        Ok(())
    }

    /// Stores the weights and batchnorm statistics when the rewind step is reached.
    pub(super) fn lottery_snapshot(&mut self) {
        if let Some(l) = self.lottery.as_mut().filter(|l| l.rewind_step == self.step) {
            l.snapshot = Some((self.params.iter().map(|p| p.raw.clone()).collect(), self.graph.bn.clone()));
        }
    }

    /// Back to the weights (times the new masks) and batchnorm statistics stored at the rewind
    /// step, optimizer state and random streams reset, so the next round trains the sparse
    /// network from that point exactly as the dense one went through it.
    pub(crate) fn rewind(&mut self) -> Result<(), RunError> {
        let Some((weights, bn)) = self.lottery.as_mut().and_then(|l| l.snapshot.take()) else {
            return Err(RunError::Plan {
                msg: "the lottery rewind point was not reached".into(),
                span: self.plan.sparsity.span,
            });
        };
        for (p, w) in self.params.iter_mut().zip(weights) {
            p.raw = w;
            p.raw.iter_mut().zip(&p.mask).for_each(|(w, m)| *w *= m);
            p.m1.fill(0.0);
            p.m2.fill(0.0);
        }
        self.graph.bn = bn;
        self.restart();
        Ok(())
    }
}
