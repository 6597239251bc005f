//! Resumable checkpoints. In: the trainer between two steps. Out: `state.json` (the scalar
//! state: position in the data order, step, lottery round, random streams' word positions, the
//! update rule's state, metrics, evaluations, trace, warnings) and `tensors.safetensors` (every
//! param's raw weights, mask, effective weights, last gradient, optimizer state and row scales,
//! batchnorm running statistics, the lottery's rewind weights, the losses so far), written by
//! `report::checkpoint`. Resuming restores all of it, so a resumed run ends bit-identical to an
//! uninterrupted one with the same thread count. A checkpoint that does not read back whole
//! (torn, damaged, or from another model) is W0702 and the one before it is used.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lottery::Lottery;
use super::Trainer;
use crate::diagnostics::Diagnostic;
use crate::exec::backend::norm::BnStats;
use crate::exec::error::RunError;
use crate::exec::sparsity::RuleState;
use crate::exec::Stream;
use crate::report::checkpoint::{self as disk, fnv1a, read_tensors, tensor_bytes};
use crate::report::plots::{Evaluation, Trace};
use crate::report::rundir::Named;

/// Bumped when the layout changes; an older checkpoint is then refused (W0702).
const VERSION: u32 = 1;
const STATE: &str = "state.json";
const TENSORS: &str = "tensors.safetensors";

/// Where in the schedule a checkpoint was taken: before the `index`-th batch of `epoch`, with
/// that epoch's running sums so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: u64,
    pub index: usize,
    pub loss_sum: f64,
    pub correct: usize,
    pub seen: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    version: u32,
    recipe: String,
    /// FNV-1a of the plan's text (`plan.txt`).
    plan_hash: String,
    threads: usize,
    /// The step over the whole run (lottery rounds one after another).
    run_step: u64,
    step: u64,
    position: Position,
    /// The lottery round in progress and its rewind step (`None` in the final training).
    lottery: Option<(usize, u64)>,
    /// Whether the rewind weights were stored yet.
    rewind_stored: bool,
    rng_augment: String,
    rng_dropout: String,
    rule: RuleState,
    learning_checked: bool,
    stopped: Option<String>,
    /// The messages of the W0701 warnings raised so far.
    not_learning: Vec<String>,
    /// Training time so far.
    seconds: f64,
    metrics: String,
    evaluations: Vec<Evaluation>,
    trace: Trace,
    /// Per param, the training steps it ran on the sparse kernels (the summary reports them).
    #[serde(default)]
    sparse_steps: Vec<u64>,
    /// Each training step's wall-clock milliseconds so far (the summary's median).
    #[serde(default)]
    step_ms: Vec<f32>,
    /// FNV-1a of `tensors.safetensors`, so a damaged file is noticed.
    tensors_hash: String,
}

/// A checkpoint read back whole.
pub struct Loaded {
    state: State,
    tensors: BTreeMap<String, Vec<f32>>,
}

impl Trainer<'_> {
    /// Whether a checkpoint is due before the step about to run.
    pub(super) fn checkpoint_due(&self) -> bool {
        self.plan.output.checkpoint.as_ref().is_some_and(|c| {
            let every = self.clock.at(c.every).max(1);
            self.step > 0 && self.step.is_multiple_of(every)
        })
    }

    /// Writes a checkpoint of the state before the step at `position`.
    pub(super) fn save_checkpoint(&self, position: Position) -> Result<(), RunError> {
        let Some(c) = &self.plan.output.checkpoint else { return Ok(()) };
        let mut t: Vec<Named> = Vec::new();
        for p in &self.params {
            let n = &p.spec.name;
            for (part, v) in [
                ("raw", &p.raw),
                ("mask", &p.mask),
                ("eff", &p.eff),
                ("grad", &p.grad),
                ("m1", &p.m1),
                ("m2", &p.m2),
                ("row_scale", &p.row_scale),
            ] {
                t.push((format!("param/{n}/{part}"), vec![v.len()], v));
            }
        }
        bn_tensors(&mut t, "bn", &self.graph.bn);
        t.push(("losses".into(), vec![self.losses.len()], &self.losses));
        let snapshot = self.lottery.as_ref().and_then(|l| l.snapshot.as_ref());
        if let Some((weights, bn)) = snapshot {
            for (p, w) in self.params.iter().zip(weights) {
                t.push((format!("rewind/{}", p.spec.name), vec![w.len()], w));
            }
            bn_tensors(&mut t, "rewind_bn", bn);
        }
        let tensors = tensor_bytes(&t).map_err(RunError::io(self.rundir.path.join(disk::FOLDER)))?;
        let state = State {
            version: VERSION,
            recipe: self.plan.recipe.clone(),
            plan_hash: fnv1a(self.plan.to_string().as_bytes()),
            threads: self.threads,
            run_step: self.run_step(),
            step: self.step,
            position,
            lottery: self.lottery.as_ref().map(|l| (l.round, l.rewind_step)),
            rewind_stored: snapshot.is_some(),
            rng_augment: self.rng_augment.get_word_pos().to_string(),
            rng_dropout: self.rng_dropout.get_word_pos().to_string(),
            rule: self.sparsifier.save(),
            learning_checked: self.learning_checked,
            stopped: self.stopped.clone(),
            not_learning: self.warnings.iter().filter(|d| d.code == "W0701").map(|d| d.message.clone()).collect(),
            seconds: self.started.elapsed().as_secs_f64(),
            metrics: self.rundir.metrics().to_string(),
            evaluations: self.evaluations.clone(),
            trace: self.trace.clone(),
            sparse_steps: self.graph.sparse.iter().map(|s| s.sparse_steps).collect(),
            step_ms: self.step_ms.clone(),
            tensors_hash: fnv1a(&tensors),
        };
        let json = serde_json::to_vec(&state).map_err(|e| RunError::io(STATE)(std::io::Error::other(e)))?;
        disk::write(&self.rundir.path, self.run_step(), &[(TENSORS, &tensors), (STATE, &json)], c.keep)
            .map(|_| ())
            .map_err(RunError::io(self.rundir.path.join(disk::FOLDER)))
    }

    /// The newest checkpoint of the run directory that reads back whole and fits this plan,
    /// with a W0702 for each newer one that does not.
    pub(super) fn find_checkpoint(&self) -> (Option<Loaded>, Vec<Diagnostic>) {
        let mut warnings = Vec::new();
        for (_, dir) in disk::list(&self.rundir.path) {
            match self.read_checkpoint(&dir) {
                Ok(c) => return (Some(c), warnings),
                Err(why) => {
                    let span = self.plan.output.checkpoint.as_ref().map_or(self.plan.span, |c| c.span);
                    warnings.push(
                        Diagnostic::warning(
                            "W0702",
                            format!("checkpoint `{}` cannot be resumed from: {why}", dir.display()),
                        )
                        .at(span, "checkpoints written here")
                        .with_help("the run resumes from the checkpoint before it (or from the start)"),
                    );
                }
            }
        }
        (None, warnings)
    }

    fn read_checkpoint(&self, dir: &Path) -> Result<Loaded, String> {
        let read = |f: &str| std::fs::read(dir.join(f)).map_err(|e| format!("cannot read `{f}`: {e}"));
        let state: State = serde_json::from_slice(&read(STATE)?).map_err(|e| format!("`{STATE}` is damaged ({e})"))?;
        if state.version != VERSION {
            return Err(format!("it was written by another version of sprsc (layout {})", state.version));
        }
        let bytes = read(TENSORS)?;
        if fnv1a(&bytes) != state.tensors_hash {
            return Err(format!("`{TENSORS}` does not match its hash (torn or damaged)"));
        }
        let tensors: BTreeMap<String, Vec<f32>> =
            read_tensors(&bytes)?.into_iter().map(|(name, _, values)| (name, values)).collect();
        self.fits(&state, &tensors)?;
        Ok(Loaded { state, tensors })
    }

    /// Whether a checkpoint read back holds every tensor this plan needs at its size, and state
    /// this plan can continue from.
    fn fits(&self, state: &State, tensors: &BTreeMap<String, Vec<f32>>) -> Result<(), String> {
        let len = |name: &str| tensors.get(name).map(Vec::len);
        let another = |what: String| Err(format!("it holds no {what} (another model?)"));
        for p in &self.params {
            let (n, rows) = (p.raw.len(), p.raw.len() / p.cols.max(1));
            let parts: [(&str, &[usize]); 7] = [
                ("raw", &[n]),
                ("mask", &[p.mask.len()]),
                ("grad", &[n]),
                ("m1", &[p.m1.len()]),
                ("m2", &[p.m2.len()]),
                // Empty once ST-3's `freeze at` has folded the threshold in.
                ("eff", &[p.eff.len(), 0]),
                ("row_scale", &[p.row_scale.len(), 0]),
            ];
            for (part, sizes) in parts {
                let got = len(&format!("param/{}/{part}", p.spec.name));
                if !got.is_some_and(|g| sizes.contains(&g) && (g == 0 || g == n || g == rows)) {
                    return another(format!("`{}` {part} of {} values", p.spec.name, sizes[0]));
                }
            }
            if state.rewind_stored && len(&format!("rewind/{}", p.spec.name)) != Some(n) {
                return another(format!("rewind weights of `{}`", p.spec.name));
            }
        }
        for (name, stats) in &self.graph.bn {
            for part in ["mean", "var"] {
                let c = Some(stats.mean.len());
                let rewind = !state.rewind_stored || len(&format!("rewind_bn/{name}/{part}")) == c;
                if len(&format!("bn/{name}/{part}")) != c || !rewind {
                    return another(format!("running {part} of `{name}`"));
                }
            }
        }
        if len("losses").is_none() {
            return another("losses".into());
        }
        let groups = self.sparsifier.save().applied.map(|a| a.len());
        if !state.rule.frozen && state.rule.applied.as_ref().map(Vec::len) != groups {
            return Err("its sparsity state has another number of groups".into());
        }
        let rounds = match self.plan.sparsity.mask {
            crate::ir::plan::MaskMethod::Lottery { rounds, .. } => rounds,
            _ => 0,
        };
        let p = state.position;
        if state.step > self.clock.total_steps || p.epoch >= self.plan.train.epochs || p.seen > self.data.train.len {
            return Err("its position is past this plan's schedule".into());
        }
        if state.lottery.is_some_and(|(round, _)| round == 0 || round > rounds) {
            return Err("its lottery round is not one of this plan's".into());
        }
        Ok(())
    }

    /// Restores a checkpoint: the trainer continues before the step it was taken at.
    pub(super) fn restore(&mut self, c: Loaded) -> Result<(), RunError> {
        let Loaded { state: s, mut tensors } = c;
        let mut take = |name: &str| tensors.remove(name).unwrap_or_default();
        self.grad_support.clear();
        for p in &mut self.params {
            let n = p.spec.name.clone();
            p.raw = take(&format!("param/{n}/raw"));
            p.mask = take(&format!("param/{n}/mask"));
            p.eff = take(&format!("param/{n}/eff"));
            p.grad = take(&format!("param/{n}/grad"));
            p.m1 = take(&format!("param/{n}/m1"));
            p.m2 = take(&format!("param/{n}/m2"));
            p.row_scale = take(&format!("param/{n}/row_scale"));
        }
        for (name, stats) in &mut self.graph.bn {
            *stats = BnStats { mean: take(&format!("bn/{name}/mean")), var: take(&format!("bn/{name}/var")) };
        }
        self.losses = take("losses");
        self.lottery = s.lottery.map(|(round, rewind_step)| Lottery { round, rewind_step, snapshot: None });
        if let (Some(l), true) = (self.lottery.as_mut(), s.rewind_stored) {
            let weights = self.params.iter().map(|p| take(&format!("rewind/{}", p.spec.name))).collect();
            let bn = self
                .graph
                .bn
                .iter()
                .map(|(name, _)| {
                    let stats = BnStats {
                        mean: take(&format!("rewind_bn/{name}/mean")),
                        var: take(&format!("rewind_bn/{name}/var")),
                    };
                    (name.clone(), stats)
                })
                .collect();
            l.snapshot = Some((weights, bn));
        }
        let word_pos = |text: &str| text.parse::<u128>().unwrap_or(0);
        self.rng_augment = Stream::Augment.rng(self.plan.seed);
        self.rng_augment.set_word_pos(word_pos(&s.rng_augment));
        self.rng_dropout = Stream::Dropout.rng(self.plan.seed);
        self.rng_dropout.set_word_pos(word_pos(&s.rng_dropout));
        self.sparsifier.load(&s.rule);
        self.step = s.step;
        self.learning_checked = s.learning_checked;
        self.stopped = s.stopped;
        for msg in s.not_learning {
            let d = self.not_learning_warning(msg);
            self.warnings.push(d);
        }
        let elapsed = Duration::try_from_secs_f64(s.seconds).unwrap_or_default();
        self.started = Instant::now().checked_sub(elapsed).unwrap_or_else(Instant::now);
        self.rundir.restore_metrics(s.metrics).map_err(RunError::io(self.rundir.path.join("metrics.jsonl")))?;
        self.evaluations = s.evaluations;
        self.trace = s.trace;
        for (slot, n) in self.graph.sparse.iter_mut().zip(s.sparse_steps) {
            slot.sparse_steps = n;
        }
        self.step_ms = s.step_ms;
        self.resume_at = Some(s.position);
        Ok(())
    }

    /// With `RunOptions::resume`: continues from the newest good checkpoint (printing what was
    /// skipped), or from the start when there is none. Returns whether a checkpoint was restored.
    pub(super) fn resume(&mut self) -> Result<bool, RunError> {
        if !self.opts.resume {
            return Ok(false);
        }
        disk::remove_torn(&self.rundir.path).map_err(RunError::io(self.rundir.path.join(disk::FOLDER)))?;
        let (found, warnings) = self.find_checkpoint();
        if !self.opts.quiet {
            for w in &warnings {
                eprintln!("warning[{}]: {}", w.code, w.message);
            }
        }
        self.warnings.extend(warnings);
        let Some(c) = found else {
            if !self.opts.quiet {
                eprintln!("note: no checkpoint to resume from in `{}`; starting at step 0", self.rundir.path.display());
            }
            return Ok(false);
        };
        if !self.opts.quiet {
            eprintln!("resuming from step {} of `{}`", c.state.run_step, self.rundir.path.display());
        }
        self.restore(c)?;
        Ok(true)
    }
}

fn bn_tensors<'a>(t: &mut Vec<Named<'a>>, prefix: &str, bn: &'a [(String, BnStats)]) {
    for (name, stats) in bn {
        t.push((format!("{prefix}/{name}/mean"), vec![stats.mean.len()], &stats.mean));
        t.push((format!("{prefix}/{name}/var"), vec![stats.var.len()], &stats.var));
    }
}

/// The thread count a run directory's newest checkpoint was written with, if it has one that
/// reads (a resumed run keeps it unless told otherwise, so it stays bit-identical).
pub fn checkpoint_threads(run_dir: &Path) -> Option<usize> {
    disk::list(run_dir).iter().find_map(|(_, dir)| {
        let s: State = serde_json::from_slice(&std::fs::read(dir.join(STATE)).ok()?).ok()?;
        Some(s.threads)
    })
}
