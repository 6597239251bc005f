//! `sprsc sweep`: run the grid here, list its cells, run one cell, write or submit a Slurm job
//! array over the cells, or collect their results. Exit codes as for every command: 0 success,
//! 1 a cell failed or is missing (or does not check), 2 usage or I/O error.

use std::path::{Path, PathBuf};

use super::{compile_reporting, report, Format, SlurmArgs, SweepMode};
use crate::driver::cells::{self, Cell, Outcome, Rerun};
use crate::driver::slurm;
use crate::exec::RunOptions;
use crate::ir::Sweep;

pub fn sweep(
    file: &Path,
    name: Option<&str>,
    out: Option<PathBuf>,
    threads: Option<usize>,
    kernels: crate::exec::LayerKernels,
    sets: &[String],
    mode: SweepMode,
) -> i32 {
    let Some(comp) = compile_reporting(file, sets, Format::Text) else { return 2 };
    if comp.has_errors() {
        return 1;
    }
    let Some(sweep) = pick(&comp.checked.sweeps, name) else { return 2 };
    let text =
        comp.sources.files.iter().find(|f| f.name != "<prelude>").map(|f| f.text.to_string()).unwrap_or_default();
    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(&sweep.name));
    let opts =
        RunOptions { out_dir: None, threads, quiet: true, max_steps: None, max_eval: None, kernels, resume: false };
    let cells = || cells::cells(file, &text, sweep, sets, &out);
    match mode {
        SweepMode::Run => {
            if let Ok(task) = std::env::var("SLURM_ARRAY_TASK_ID") {
                eprintln!("note: in Slurm array task {task}, this runs every cell; `--index` runs only cell {task}");
            }
            run_all(file, &text, sweep, sets, &out, &opts)
        }
        SweepMode::List => list(&cells()),
        SweepMode::Cell(index, hash) => run_one(&cells(), index, hash.as_deref(), &opts),
        SweepMode::Slurm(args) => write_job(file, sweep, &cells(), &out, sets, threads, &args),
        SweepMode::Collect => collect(sweep, &cells(), &out),
    }
}

fn pick<'a>(sweeps: &'a [Sweep], name: Option<&str>) -> Option<&'a Sweep> {
    let sweep = match (name, sweeps) {
        (Some(n), _) => sweeps.iter().find(|s| s.name == n),
        (None, [one]) => Some(one),
        _ => None,
    };
    if sweep.is_none() {
        let names: Vec<&str> = sweeps.iter().map(|s| s.name.as_str()).collect();
        match name {
            Some(n) => eprintln!("error: no sweep `{n}` in this file; it has: {}", names.join(", ")),
            None if names.is_empty() => eprintln!("error: the file has no sweep"),
            None => {
                eprintln!("error: the file has {} sweeps; pick one with --sweep: {}", names.len(), names.join(", "))
            }
        }
    }
    sweep
}

fn run_all(file: &Path, text: &str, sweep: &Sweep, sets: &[String], out: &Path, opts: &RunOptions) -> i32 {
    match crate::driver::run_sweep(file, text, sweep, sets, out, opts) {
        Ok((rows, paths)) => {
            let failed = rows.iter().filter(|r| !r.test_accuracy.is_finite()).count();
            for p in paths {
                eprintln!("wrote {}", p.display());
            }
            eprintln!("{} run(s), {failed} failed", rows.len());
            i32::from(failed > 0)
        }
        Err(e) => {
            eprintln!("error: cannot write the sweep report into `{}`: {e}", out.display());
            2
        }
    }
}

/// One line per cell, columns aligned; a cell that does not check says why in its last column.
fn list(cells: &[Cell]) -> i32 {
    let mut rows = vec![["index", "recipe", "values", "seed", "run directory"].map(String::from)];
    for c in cells {
        let dir = match c.plan() {
            Ok(_) => c.dir.display().to_string(),
            Err(d) => format!("{}  (does not check: {d})", c.dir.display()),
        };
        let values = if c.vary.is_empty() { "-".to_string() } else { c.values() };
        rows.push([c.index.to_string(), c.recipe.clone(), values, c.seed.to_string(), dir]);
    }
    let widths: Vec<usize> = (0..5).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    for r in &rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
    0
}

fn run_one(cells: &[Cell], index: Option<usize>, hash: Option<&str>, opts: &RunOptions) -> i32 {
    let index = match index {
        Some(i) => i,
        None => match std::env::var("SLURM_ARRAY_TASK_ID") {
            Ok(v) => match v.trim().parse::<usize>() {
                Ok(i) => i,
                Err(_) => {
                    eprintln!("error: SLURM_ARRAY_TASK_ID is `{v}`, not a cell index");
                    return 2;
                }
            },
            Err(_) => {
                eprintln!(
                    "error: `--index` without a value reads $SLURM_ARRAY_TASK_ID, which is not set; \
                     give the cell's index (`--list` lists them)"
                );
                return 2;
            }
        },
    };
    let Some(cell) = cells.get(index) else {
        eprintln!(
            "error: no cell {index}: the sweep has {} cell(s), numbered from 0 (`--list` lists them)",
            cells.len()
        );
        return 2;
    };
    if let Some(hash) = hash {
        if let Err(d) = cell.verify_plan_hash(hash) {
            report(std::slice::from_ref(&d), &cell.comp, Format::Text);
            cells::record_failure(cell, &cells::failed(&d, &cell.comp));
            return 1;
        }
    }
    eprintln!("cell {index}: {} seed {} -> {}", cell.label(), cell.seed, cell.dir.display());
    match cells::run_cell(cell, opts, Rerun::KeepFinished) {
        Outcome::Finished { test_accuracy, sparsity, seconds } => {
            eprintln!(
                "cell {index}: {:.2}% test accuracy at {:.2}% sparsity in {seconds:.1} s",
                100.0 * test_accuracy,
                100.0 * sparsity
            );
            0
        }
        Outcome::Failed { rendered, .. } => {
            eprint!("{rendered}");
            eprintln!("cell {index} failed; recorded in {}", cell.error_file().display());
            1
        }
        Outcome::Missing => 1,
    }
}

fn write_job(
    file: &Path,
    sweep: &Sweep,
    cells: &[Cell],
    out: &Path,
    sets: &[String],
    threads: Option<usize>,
    args: &SlurmArgs,
) -> i32 {
    let resources = slurm::Resources {
        partition: args.partition.clone(),
        time: args.time.clone(),
        cpus: args.cpus,
        mem: args.mem.clone(),
        max_parallel: args.max_parallel,
    };
    if let Err(e) = resources.validate() {
        eprintln!("error: {e}");
        return 2;
    }
    // Every cell checks before a cluster minute is spent.
    let mut broken = 0;
    for c in cells {
        if let Err(d) = c.plan() {
            eprintln!("cell {} ({}):", c.index, c.label());
            report(std::slice::from_ref(&d), &c.comp, Format::Text);
            broken += 1;
        }
    }
    if broken > 0 {
        eprintln!("error: {broken} cell(s) do not check; no job written");
        return 1;
    }
    let indices: Vec<usize> = if args.missing {
        cells.iter().filter(|c| !matches!(cells::collect(c), Outcome::Finished { .. })).map(|c| c.index).collect()
    } else {
        cells.iter().map(|c| c.index).collect()
    };
    if indices.is_empty() {
        eprintln!(
            "{}; no job written",
            if args.missing { "every cell has finished" } else { "the sweep has no cells" }
        );
        return 0;
    }
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let job = slurm::Job {
        exe: std::env::current_exe().map(|p| absolute(&p)).unwrap_or_else(|_| PathBuf::from("sprsc")),
        file: absolute(file),
        sweep: &sweep.name,
        out: absolute(out),
        sets,
        threads,
        workdir: absolute(Path::new(".")),
        resources,
    };
    if let Err(e) = job.check() {
        eprintln!("error: {e}");
        return 2;
    }
    let script = slurm::script(&job, cells, &indices);
    let dir = slurm::slurm_dir(&job.out);
    let path = dir.join(format!("{}{}.sbatch", sweep.name, if args.missing { "-missing" } else { "" }));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, script)) {
        eprintln!("error: cannot write `{}`: {e}", path.display());
        return 2;
    }
    eprintln!("wrote {} ({} task(s))", path.display(), indices.len());
    if !args.submit {
        println!("{}", path.display());
        eprintln!("submit it with `sbatch {}`, or add --submit", path.display());
        return 0;
    }
    match slurm::submit(&path) {
        Ok(id) => {
            println!("{id}");
            eprintln!(
                "submitted job {id}; when it is done: sprsc sweep {} --sweep {} --out {} --collect",
                slurm::quote(&file.display().to_string()),
                sweep.name,
                slurm::quote(&out.display().to_string())
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn collect(sweep: &Sweep, cells: &[Cell], out: &Path) -> i32 {
    let mut rows = Vec::new();
    let (mut missing, mut failed) = (0, 0);
    for c in cells {
        let outcome = cells::collect(c);
        match &outcome {
            Outcome::Finished { .. } => {}
            Outcome::Failed { message, rendered, .. } => {
                failed += 1;
                eprintln!("cell {} ({} seed {}): failed: {message}", c.index, c.label(), c.seed);
                for line in rendered.lines().filter(|l| !l.trim().is_empty()) {
                    eprintln!("    {line}");
                }
            }
            Outcome::Missing => {
                missing += 1;
                let log = slurm::latest_log(out, c.index)
                    .map(|p| format!("; Slurm log {}{}", p.display(), last_line(&p)))
                    .unwrap_or_default();
                let partial: String = c
                    .partial_runs()
                    .iter()
                    .map(|p| format!("; partial run {} (running, or killed)", p.display()))
                    .collect();
                eprintln!(
                    "cell {} ({} seed {}): missing: no result in {}{log}{partial}",
                    c.index,
                    c.label(),
                    c.seed,
                    c.dir.display()
                );
            }
        }
        rows.extend(cells::row(c, &outcome));
    }
    let paths = match crate::report::sweep::write_sweep(out, &sweep.report, &rows) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot write the sweep report into `{}`: {e}", out.display());
            return 2;
        }
    };
    for p in paths {
        eprintln!("wrote {}", p.display());
    }
    let finished = cells.len() - missing - failed;
    eprintln!("{} cell(s): {finished} finished, {failed} failed, {missing} missing", cells.len());
    if missing + failed > 0 {
        eprintln!("run them again with: --slurm --missing --submit");
    }
    i32::from(missing + failed > 0)
}

/// `: LAST LINE` of a log, for saying why a task left no result (a time limit, a kill).
fn last_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| format!(": {}", l.trim())).unwrap_or_default()
}
