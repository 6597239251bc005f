//! Sweep cells: the grid recipes x varied values x seeds, numbered in one fixed order, each
//! checked like a recipe of its own, with its run directory and plan hash. A cell runs alone
//! (`sprsc sweep --index`, one Slurm array task) into a private directory that is renamed into
//! place when the run ends, so cells can run at once on a shared filesystem and a cell run twice
//! never leaves a half-written directory; `--collect` reads the directories back.
//! In: a checked sweep. Out: cells, run directories, sweep rows.

use std::path::{Path, PathBuf};

use crate::diagnostics::{self, Diagnostic};
use crate::exec::RunOptions;
use crate::ir::plan::Plan;
use crate::ir::Sweep;
use crate::report::sweep::SweepRow;
use crate::Compilation;

/// One run of a sweep.
pub struct Cell {
    /// Position in the grid: recipes, then the varied values (the first `vary` outermost),
    /// then seeds. A Slurm array task runs the cell with its `SLURM_ARRAY_TASK_ID`.
    pub index: usize,
    pub recipe: String,
    /// `(field path, value as written)` for each varied field.
    pub vary: Vec<(String, String)>,
    pub seed: u64,
    /// The cell's run directory (a failed cell writes `<dir>.error.json` beside it instead).
    pub dir: PathBuf,
    /// The file compiled with the sweep's `--set`s, the cell's values and its seed.
    pub comp: Compilation,
}

/// What running or collecting a cell found.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The run directory holds a summary of the cell's current plan.
    Finished { test_accuracy: f64, sparsity: f64, seconds: f64 },
    /// The cell does not check, its run stopped with a diagnostic, or its run directory holds
    /// another plan's results (E0709). `rendered` is the diagnostic as the run printed it.
    Failed { code: String, message: String, rendered: String },
    /// No result yet: never ran, still running, or killed before it could write one.
    Missing,
}

impl Cell {
    /// The cell's plan, or the diagnostic that keeps it from running.
    pub fn plan(&self) -> Result<&Plan, Diagnostic> {
        if let Some(d) = self.comp.diagnostics.iter().find(|d| d.is_error()) {
            return Err(d.clone());
        }
        self.comp
            .checked
            .plans
            .iter()
            .find(|p| p.recipe == self.recipe)
            .ok_or_else(|| Diagnostic::error("E0306", format!("the sweep names unknown recipe `{}`", self.recipe)))
    }

    /// FNV-1a (64 bit) of the plan's text, as 16 hex digits; `None` when the cell does not check.
    pub fn plan_hash(&self) -> Option<String> {
        self.plan().ok().map(|p| plan_hash(&p.to_string()))
    }

    /// The recipe and its varied values as a run directory name has them: `b-95`.
    pub fn label(&self) -> String {
        label(&self.recipe, &self.vary)
    }

    /// `name=value` of each varied field, for listings.
    pub fn values(&self) -> String {
        self.vary.iter().map(|(p, v)| format!("{p}={v}")).collect::<Vec<_>>().join(" ")
    }

    /// The file that records a failed run: `<dir>.error.json`.
    pub fn error_file(&self) -> PathBuf {
        sibling(&self.dir, ".error.json")
    }

    /// Private directories of runs of this cell that have not finished: running now, or killed
    /// (a time limit, a node failure) before they could rename themselves into place.
    pub fn partial_runs(&self) -> Vec<PathBuf> {
        let prefix = hidden(&sibling(&self.dir, ".tmp-"));
        let (Some(parent), Some(prefix)) = (prefix.parent(), prefix.file_name().and_then(|n| n.to_str())) else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(prefix)))
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    }

    /// Checks that the cell's plan is the one a job was submitted with (the script passes the
    /// hash it recorded), so that a recipe edited after `--slurm` does not run unnoticed.
    pub fn verify_plan_hash(&self, expected: &str) -> Result<(), Diagnostic> {
        let plan = self.plan()?;
        let actual = plan_hash(&plan.to_string());
        if actual.eq_ignore_ascii_case(expected.trim()) {
            return Ok(());
        }
        Err(Diagnostic::error(
            "E0709",
            format!(
                "cell {} ({}) has plan {actual}, but the job was submitted for plan {expected}",
                self.index, self.recipe
            ),
        )
        .at(plan.span, "this recipe changed after the job was submitted")
        .with_help("write and submit the job again (`sprsc sweep FILE --slurm --submit`), or restore the recipe"))
    }

    fn row(&self, outcome: &Outcome) -> SweepRow {
        let mut row = SweepRow {
            recipe: self.recipe.clone(),
            vary: self.vary.clone(),
            seed: self.seed,
            test_accuracy: f64::NAN,
            sparsity: f64::NAN,
            seconds: 0.0,
            outcome: self.dir.display().to_string(),
        };
        match outcome {
            Outcome::Finished { test_accuracy, sparsity, seconds } => {
                row.test_accuracy = *test_accuracy;
                row.sparsity = *sparsity;
                row.seconds = *seconds;
            }
            Outcome::Failed { code, .. } => row.outcome = code.clone(),
            Outcome::Missing => row.outcome = "missing".to_string(),
        }
        row
    }
}

/// The sweep report row of a cell that finished or failed; `None` for a missing cell.
pub fn row(cell: &Cell, outcome: &Outcome) -> Option<SweepRow> {
    (*outcome != Outcome::Missing).then(|| cell.row(outcome))
}

/// FNV-1a, 64 bit: stable across platforms, Rust versions and runs (std's `DefaultHasher` is
/// not), and enough to notice a changed plan; nothing here needs a cryptographic hash.
pub fn plan_hash(text: &str) -> String {
    crate::report::checkpoint::fnv1a(text.as_bytes())
}

/// Every cell of the sweep, in index order; run directories go inside `out`.
pub fn cells(file: &Path, text: &str, sweep: &Sweep, sets: &[String], out: &Path) -> Vec<Cell> {
    let seeds: Vec<Option<u64>> =
        if sweep.seeds.is_empty() { vec![None] } else { sweep.seeds.iter().map(|s| Some(*s)).collect() };
    let mut cells = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for recipe in &sweep.recipes {
        for combo in grid(sweep) {
            for seed in &seeds {
                let mut run_sets: Vec<String> = sets.to_vec();
                run_sets.extend(combo.iter().map(|(p, v)| format!("{p}={v}")));
                run_sets.extend(seed.map(|s| format!("seed={s}")));
                let comp = crate::compile_source(file, text.to_string(), &run_sets);
                let plan_seed = comp.checked.plans.iter().find(|p| &p.recipe == recipe).map_or(0, |p| p.seed);
                let seed = seed.unwrap_or(plan_seed);
                let index = cells.len();
                let mut name = format!("{}-seed{seed}", label(recipe, &combo));
                // Values that differ only in what the name drops (`50%` and `50`) would share a
                // directory; the later cell gets its index appended.
                if !names.insert(name.clone()) {
                    name = format!("{name}-cell{index}");
                }
                cells.push(Cell {
                    index,
                    recipe: recipe.clone(),
                    vary: combo.clone(),
                    seed,
                    dir: out.join(name),
                    comp,
                });
            }
        }
    }
    cells
}

fn label(recipe: &str, vary: &[(String, String)]) -> String {
    let values: String = vary.iter().map(|(_, v)| format!("-{}", v.replace(['%', ' ', '/'], ""))).collect();
    format!("{recipe}{values}")
}

/// Every combination of the sweep's varied values, as `(path, value text)` lists.
fn grid(sweep: &Sweep) -> Vec<Vec<(String, String)>> {
    let mut combos: Vec<Vec<(String, String)>> = vec![vec![]];
    for v in &sweep.vary {
        let path = v.path.join(".");
        let mut next = Vec::new();
        for c in &combos {
            for val in &v.values {
                let mut c = c.clone();
                c.push((path.clone(), val.to_string()));
                next.push(c);
            }
        }
        combos = next;
    }
    combos
}

/// What to do when the cell's run directory already holds a result of the same plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rerun {
    /// Run again and put the new directory in place of the old one (a local `sprsc sweep`).
    Replace,
    /// Keep the finished result and do not run (`--index`: Slurm may requeue a task, and
    /// `--missing` may race a task that was only slow).
    KeepFinished,
}

/// Runs one cell into a private directory beside its run directory, then renames it into
/// place; a failure is recorded in `<dir>.error.json` instead. Never fails itself: a file
/// system error becomes the cell's diagnostic (E0704).
pub fn run_cell(cell: &Cell, opts: &RunOptions, rerun: Rerun) -> Outcome {
    if rerun == Rerun::KeepFinished {
        if let finished @ Outcome::Finished { .. } = collect(cell) {
            eprintln!("cell {}: already finished in `{}`; remove it to run again", cell.index, cell.dir.display());
            return finished;
        }
    }
    let result = cell.plan().and_then(|plan| {
        let tmp = sibling(&cell.dir, &format!(".tmp-{}", unique()));
        let tmp = hidden(&tmp);
        let run = crate::driver::run_plan(&cell.comp, plan, &RunOptions { out_dir: Some(tmp.clone()), ..opts.clone() });
        let published = run.and_then(|s| {
            // Keep what is in place only when it is a finished result of this same plan.
            let keep = rerun == Rerun::KeepFinished && matches!(collect(cell), Outcome::Finished { .. });
            publish(&tmp, &cell.dir, keep).map(|()| s).map_err(|e| write_error(&cell.dir, e))
        });
        if tmp.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        published
    });
    match result {
        Ok(s) => {
            let _ = std::fs::remove_file(cell.error_file());
            // Warnings raised while training (W0701: not learning) are worth a line per cell.
            for w in &s.warnings {
                eprintln!("{}: warning[{}]: {}", cell.dir.display(), w.code, w.message);
            }
            Outcome::Finished { test_accuracy: s.test_accuracy, sparsity: s.sparsity, seconds: s.seconds }
        }
        Err(d) => {
            let outcome = failed(&d, &cell.comp);
            record_failure(cell, &outcome);
            outcome
        }
    }
}

/// The cell's diagnostic as an outcome, rendered against the cell's sources.
pub fn failed(d: &Diagnostic, comp: &Compilation) -> Outcome {
    Outcome::Failed {
        code: d.code.to_string(),
        message: d.to_string(),
        rendered: diagnostics::render_text(d, &comp.sources, false),
    }
}

/// Writes `<dir>.error.json` atomically (a private file renamed over the old record).
pub fn record_failure(cell: &Cell, outcome: &Outcome) {
    let Outcome::Failed { code, message, rendered } = outcome else { return };
    let json = serde_json::json!({
        "index": cell.index,
        "recipe": cell.recipe,
        "code": code,
        "message": message,
        "diagnostic": rendered,
    });
    let path = cell.error_file();
    let tmp = hidden(&sibling(&path, &format!(".tmp-{}", unique())));
    let written = std::fs::create_dir_all(cell.dir.parent().unwrap_or(Path::new(".")))
        .and_then(|()| std::fs::write(&tmp, format!("{json:#}\n")))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        eprintln!("warning: cannot record the failure of cell {} in `{}`: {e}", cell.index, path.display());
    }
}

/// Moves the finished private directory `tmp` to `dir`. `rename` is atomic and refuses a
/// non-empty target, so of two runs racing for an empty place exactly one wins. An occupied
/// place is kept (`keep`) or replaced.
fn publish(tmp: &Path, dir: &Path, keep: bool) -> std::io::Result<()> {
    if std::fs::rename(tmp, dir).is_ok() {
        return Ok(());
    }
    if !dir.exists() {
        // The rename failed for another reason (permissions, another file system): say which.
        return std::fs::rename(tmp, dir);
    }
    if keep {
        eprintln!("note: `{}` was written by another run of this cell meanwhile; keeping it", dir.display());
        return std::fs::remove_dir_all(tmp);
    }
    // Move the old result aside first: the place is briefly empty, never half-written.
    let old = hidden(&sibling(dir, &format!(".old-{}", unique())));
    if let Err(e) = std::fs::rename(dir, &old) {
        if dir.exists() {
            return Err(e);
        } // else another run moved it aside meanwhile: the place is free
    }
    let placed = std::fs::rename(tmp, dir);
    let _ = std::fs::remove_dir_all(&old);
    match placed {
        Err(_) if dir.exists() => std::fs::remove_dir_all(tmp), // another run won the race
        other => other,
    }
}

fn write_error(dir: &Path, e: std::io::Error) -> Diagnostic {
    Diagnostic::error("E0704", format!("cannot move the finished run into `{}`: {e}", dir.display()))
        .with_help("choose another directory with `--out`")
}

/// What the cell's run directory (or failure record) holds now. A result of the current plan
/// wins over a failure record (a rerun that failed does not hide an earlier success); a
/// failure record wins over the result of another plan.
pub fn collect(cell: &Cell) -> Outcome {
    let plan = match cell.plan() {
        Ok(p) => p,
        Err(d) => return failed(&d, &cell.comp),
    };
    let current = plan_hash(&plan.to_string());
    let recorded = std::fs::read_to_string(cell.dir.join("plan.txt")).ok().map(|p| plan_hash(&p));
    let summary: Option<serde_json::Value> =
        std::fs::read_to_string(cell.dir.join("summary.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    if let (Some(summary), true) = (&summary, recorded.as_deref() == Some(current.as_str())) {
        let num = |k: &str| summary.get(k).and_then(serde_json::Value::as_f64);
        if let (Some(test_accuracy), Some(sparsity)) = (num("test_accuracy"), num("sparsity")) {
            return Outcome::Finished { test_accuracy, sparsity, seconds: num("seconds").unwrap_or(0.0) };
        }
    }
    if let Ok(text) = std::fs::read_to_string(cell.error_file()) {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let s = |k: &str| v.get(k).and_then(serde_json::Value::as_str).unwrap_or("").to_string();
        return Outcome::Failed { code: s("code"), message: s("message"), rendered: s("diagnostic") };
    }
    match (summary, recorded) {
        (Some(_), Some(recorded)) => {
            let d = Diagnostic::error(
                "E0709",
                format!(
                    "`{}` holds the results of another plan ({recorded}; the recipe now gives {current})",
                    cell.dir.display()
                ),
            )
            .at(plan.span, "this recipe changed after the cell ran")
            .with_help("run the cell again (`--slurm --missing --submit` submits it)");
            failed(&d, &cell.comp)
        }
        _ => Outcome::Missing,
    }
}

/// `dir` with `suffix` appended to its last component.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

/// The same path with a leading `.` on its file name, so listings and globs skip it.
fn hidden(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    path.with_file_name(name)
}

/// Unique among concurrent runs on a shared file system: host, process and time.
fn unique() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{}-{nanos}", host.trim(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_1a_matches_the_reference_values() {
        // From the FNV reference: the empty string is the offset basis; "a" and "foobar".
        assert_eq!(plan_hash(""), "cbf29ce484222325");
        assert_eq!(plan_hash("a"), "af63dc4c8601ec8c");
        assert_eq!(plan_hash("foobar"), "85944171f73967e8");
    }

    #[test]
    fn private_paths_sit_beside_the_run_directory_and_are_hidden() {
        let dir = Path::new("out/a-80-seed0");
        assert_eq!(sibling(dir, ".error.json"), Path::new("out/a-80-seed0.error.json"));
        assert_eq!(hidden(&sibling(dir, ".tmp-x")), Path::new("out/.a-80-seed0.tmp-x"));
    }
}
