//! Orchestration behind `sprsc run` and `sprsc sweep`: data loading, the engine, the run
//! directory's record of what ran, and sweeps (`cells`: the grid's numbered runs and their run
//! directories; `slurm`: a sweep as a Slurm job array). In: checked plans. Out: summaries, or a
//! diagnostic pointing at the recipe line responsible.

pub mod cells;
pub mod slurm;

use std::path::{Path, PathBuf};

use crate::diagnostics::Diagnostic;
use crate::exec::RunOptions;
use crate::ir::plan::Plan;
use crate::ir::Sweep;
use crate::report::rundir::write_atomic;
use crate::report::sweep::SweepRow;
use crate::report::RunSummary;
use crate::Compilation;

/// Loads the plan's data, writes the recipe and plan into the run directory, and trains.
pub fn run_plan(comp: &Compilation, plan: &Plan, opts: &RunOptions) -> Result<RunSummary, Diagnostic> {
    if !opts.quiet {
        eprintln!("loading {} ...", plan.data.dataset.dir_name());
    }
    let data = crate::data::load(&plan.data, plan.seed).map_err(|e| e.to_diagnostic(plan.data.span))?;
    if let (Some(note), false) = (&data.note, opts.quiet) {
        eprintln!("note: {note}");
    }
    let dir = opts.out_dir.clone().unwrap_or_else(|| PathBuf::from(&plan.output.dir));
    write_recipe(&dir, comp, plan).map_err(|e| {
        Diagnostic::error("E0704", format!("cannot write `{}`: {e}", dir.display()))
            .at(plan.span, "while running this")
            .with_help("choose another directory with `--out` or `output { dir \"...\" }`")
    })?;
    let opts = RunOptions { out_dir: Some(dir), ..opts.clone() };
    crate::exec::run(plan, &data, &opts).map_err(|e| e.to_diagnostic(plan.span))
}

/// Before resuming the run in `dir`: the plan it started with (`plan.txt`) must be the plan now,
/// or E0711 shows the line diff between them; `force` resumes anyway (with a note of the diff).
/// A directory without `plan.txt` has nothing to compare.
pub fn check_resume(dir: &Path, plan: &Plan, force: bool) -> Result<(), Diagnostic> {
    let Ok(old) = std::fs::read_to_string(dir.join("plan.txt")) else { return Ok(()) };
    let new = plan.to_string();
    if old == new {
        return Ok(());
    }
    let diff = similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(1)
        .header("plan of the run", "plan now")
        .to_string();
    if force {
        eprintln!("note: resuming with a plan that changed since the run started (--force):\n{diff}");
        return Ok(());
    }
    Err(Diagnostic::error("E0711", format!("the plan changed since the run in `{}` started", dir.display()))
        .at(plan.span, "resuming this recipe")
        .with_note(format!("what changed:\n{diff}"))
        .with_help("resume with the recipe (and `--set`s) the run started with, or pass `--force` to continue from the last checkpoint under the new plan"))
}

/// What `sprsc run` was given, kept in the run directory (`invocation.json`) so that
/// `sprsc run --resume DIR` needs nothing else.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Invocation {
    /// The recipe file, absolute.
    pub file: PathBuf,
    pub recipe: Option<String>,
    pub sets: Vec<String>,
    /// `--threads`, so a resumed run trains on as many (and stays bit-identical) even when it
    /// was killed before its first checkpoint.
    #[serde(default)]
    pub threads: Option<usize>,
}

pub const INVOCATION: &str = "invocation.json";

impl Invocation {
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(&dir.join(INVOCATION), json.as_bytes())
    }

    pub fn read(dir: &Path) -> std::io::Result<Invocation> {
        serde_json::from_slice(&std::fs::read(dir.join(INVOCATION))?).map_err(std::io::Error::other)
    }
}

/// The run directory records what ran: the source file and the resolved plan (every default
/// explicit, `--set` overrides applied).
fn write_recipe(dir: &Path, comp: &Compilation, plan: &Plan) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if let Some(main) = comp.sources.files.iter().find(|f| f.name != "<prelude>") {
        write_atomic(&dir.join("recipe.sprs"), main.text.as_bytes())?;
    }
    write_atomic(&dir.join("plan.txt"), plan.to_string().as_bytes())
}

/// Runs the grid recipes x values x seeds of `sweep`, each run checked like a recipe of its own
/// (the file recompiled with `--set` overrides), and writes the sweep report into `out`.
/// A failed run becomes a row with its code; the sweep goes on. One line per run is printed.
/// Each run is a [`cells::Cell`], run as `--index` runs it, so a local sweep and a collected
/// Slurm array give the same table.
pub fn run_sweep(
    file: &Path,
    text: &str,
    sweep: &Sweep,
    sets: &[String],
    out: &Path,
    opts: &RunOptions,
) -> std::io::Result<(Vec<SweepRow>, Vec<PathBuf>)> {
    let mut rows = Vec::new();
    for cell in cells::cells(file, text, sweep, sets, out) {
        let outcome = cells::run_cell(&cell, opts, cells::Rerun::Replace);
        if let cells::Outcome::Failed { message, .. } = &outcome {
            eprintln!("{}: {message}", cell.label());
        }
        let Some(row) = cells::row(&cell, &outcome) else { continue };
        eprintln!(
            "sweep {}: {} seed {} -> {:.2}% at {:.2}% sparsity",
            sweep.name,
            cell.label(),
            row.seed,
            100.0 * row.test_accuracy,
            100.0 * row.sparsity
        );
        rows.push(row);
    }
    let paths = crate::report::sweep::write_sweep(out, &sweep.report, &rows)?;
    Ok((rows, paths))
}
