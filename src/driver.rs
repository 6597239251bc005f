//! Orchestration behind `sprsc run` and `sprsc sweep`: data loading, the engine, the run
//! directory's record of what ran, and the sweep grid. In: checked plans. Out: summaries, or a
//! diagnostic pointing at the recipe line responsible.

use std::path::{Path, PathBuf};

use crate::diagnostics::Diagnostic;
use crate::exec::RunOptions;
use crate::ir::plan::Plan;
use crate::ir::Sweep;
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

/// The run directory records what ran: the source file and the resolved plan (every default
/// explicit, `--set` overrides applied).
fn write_recipe(dir: &Path, comp: &Compilation, plan: &Plan) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if let Some(main) = comp.sources.files.iter().find(|f| f.name != "<prelude>") {
        std::fs::write(dir.join("recipe.sprs"), main.text.as_bytes())?;
    }
    std::fs::write(dir.join("plan.txt"), plan.to_string())
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

/// Runs the grid recipes x values x seeds of `sweep`, each run checked like a recipe of its own
/// (the file recompiled with `--set` overrides), and writes the sweep report into `out`.
/// A failed run becomes a row with its code; the sweep goes on. One line per run is printed.
pub fn run_sweep(
    file: &Path,
    text: &str,
    sweep: &Sweep,
    sets: &[String],
    out: &Path,
    opts: &RunOptions,
) -> std::io::Result<(Vec<SweepRow>, Vec<PathBuf>)> {
    let mut rows = Vec::new();
    for recipe in &sweep.recipes {
        for combo in grid(sweep) {
            let seeds: Vec<Option<u64>> =
                if sweep.seeds.is_empty() { vec![None] } else { sweep.seeds.iter().map(|s| Some(*s)).collect() };
            for seed in seeds {
                let mut run_sets: Vec<String> = sets.to_vec();
                run_sets.extend(combo.iter().map(|(p, v)| format!("{p}={v}")));
                run_sets.extend(seed.map(|s| format!("seed={s}")));
                let comp = crate::compile_source(file, text.to_string(), &run_sets);
                let plan = comp.checked.plans.iter().find(|p| &p.recipe == recipe);
                let label: String = combo.iter().map(|(_, v)| format!("-{}", v.replace(['%', ' ', '/'], ""))).collect();
                let dir = out.join(format!("{recipe}{label}-seed{}", seed.unwrap_or(plan.map_or(0, |p| p.seed))));
                let mut row = SweepRow {
                    recipe: recipe.clone(),
                    vary: combo.clone(),
                    seed: seed.unwrap_or(plan.map_or(0, |p| p.seed)),
                    test_accuracy: f64::NAN,
                    sparsity: f64::NAN,
                    seconds: 0.0,
                    outcome: dir.display().to_string(),
                };
                let result = match plan {
                    Some(plan) if !comp.has_errors() => {
                        run_plan(&comp, plan, &RunOptions { out_dir: Some(dir.clone()), ..opts.clone() })
                    }
                    _ => Err(comp.diagnostics.iter().find(|d| d.is_error()).cloned().unwrap_or_else(|| {
                        Diagnostic::error("E0306", format!("sweep `{}` names unknown recipe `{recipe}`", sweep.name))
                    })),
                };
                match result {
                    Ok(s) => {
                        row.test_accuracy = s.test_accuracy;
                        row.sparsity = s.sparsity;
                        row.seconds = s.seconds;
                    }
                    Err(d) => {
                        eprintln!("{recipe}{label}: {d}");
                        row.outcome = d.code.to_string();
                    }
                }
                eprintln!(
                    "sweep {}: {recipe}{label} seed {} -> {:.2}% at {:.2}% sparsity",
                    sweep.name,
                    row.seed,
                    100.0 * row.test_accuracy,
                    100.0 * row.sparsity
                );
                rows.push(row);
            }
        }
    }
    let paths = crate::report::sweep::write_sweep(out, &sweep.report, &rows)?;
    Ok((rows, paths))
}
