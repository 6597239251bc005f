//! The command line: `sprsc check`, `sprsc run`, `sprsc sweep` (its handler in `sweep`),
//! `sprsc explain`, `sprsc fmt`, `sprsc lsp`. Exit codes: 0 clean (warnings allowed), 1
//! diagnostics, 2 usage or I/O error.

mod sweep;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::diagnostics::{self, Diagnostic};
use crate::Compilation;

#[derive(Parser, Debug)]
#[command(name = "sprsc", version, about = "A compiler for sparse neural-network training recipes (.sprs)")]
#[command(long_about = "sprsc reads a .sprs recipe (model, data, masks, sparsity schedule, training \
techniques), checks it, lowers it to a training plan and runs it.\n\nExit codes: 0 success (warnings \
allowed), 1 the recipe has errors, 2 usage or I/O error.")]
#[command(after_help = "Examples:
  sprsc run recipes/quickstart.sprs                 train on the built-in synthetic digits
  sprsc check recipes/st3_lenet300.sprs --emit ir   the resolved plan, every default explicit
  sprsc run recipes/st3_lenet300.sprs --recipe st3_lenet300 --set train.epochs=5
  sprsc run --resume runs/st3_lenet300              continue a killed run from its last checkpoint
  sprsc sweep recipes/gmp_lenet300.sprs             ST-3 vs GMP over targets and seeds
  sprsc explain E0204

Data sets are read from `path:`, else $SPRS_DATA/<name>, else ./data/<name>.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a recipe file and report every mistake; optionally print a compiler stage.
    Check {
        /// The .sprs file.
        file: PathBuf,
        /// How to print diagnostics: `text` (miette) or `json` (one object per line).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Print a stage after checking: the syntax tree, the training plan, or the kernels.
        #[arg(long, value_enum)]
        emit: Option<Emit>,
        /// Override a field, checked like the file: `--set sparsity.target=99%`. Repeatable.
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        sets: Vec<String>,
    },
    /// Train the network a recipe describes and write a run directory.
    Run {
        /// The .sprs file (with `--resume`, default: the file the run started from).
        #[arg(required_unless_present = "resume")]
        file: Option<PathBuf>,
        /// Which recipe of the file (required only when the file has several).
        #[arg(long)]
        recipe: Option<String>,
        /// Run directory (default: the recipe's `output { dir }`, else `runs/<recipe>`).
        #[arg(long, conflicts_with = "resume")]
        out: Option<PathBuf>,
        /// Continue the run in DIR from its newest good checkpoint (`output { checkpoint ... }`);
        /// refused if the plan changed since it started, unless `--force`.
        #[arg(long, value_name = "DIR")]
        resume: Option<PathBuf>,
        /// With `--resume`: continue even though the plan changed.
        #[arg(long, requires = "resume")]
        force: bool,
        /// Stop after N optimizer steps (smoke tests); `--max-steps 0` evaluates the starting
        /// weights (a warm start) without training.
        #[arg(long, value_name = "N")]
        max_steps: Option<u64>,
        #[command(flatten)]
        training: TrainingArgs,
        /// How to print diagnostics.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run every recipe x value x seed of a sweep and write a table (CSV, markdown) and a plot;
    /// or list its cells, run one cell, write (and submit) a Slurm job array over the cells,
    /// or collect the cells' results.
    #[command(after_help = "On a Slurm cluster (a shared file system is assumed):
  sprsc sweep FILE --sweep S --list                    the cells: index, recipe, values, seed, run directory
  sprsc sweep FILE --sweep S --slurm --time 1:00:00 --submit
                                                       one array task per cell; prints the job id
  sprsc sweep FILE --sweep S --collect                 the table of the finished cells; lists the others
  sprsc sweep FILE --sweep S --slurm --missing --submit
                                                       run the missing and failed cells again")]
    Sweep {
        /// The .sprs file.
        file: PathBuf,
        /// Which sweep of the file (required only when the file has several).
        #[arg(long = "sweep")]
        name: Option<String>,
        /// Report directory (default: `runs/<sweep>`); each run gets a directory inside it.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        training: TrainingArgs,
        /// Print the cells (index, recipe, varied values, seed, run directory); run nothing.
        #[arg(long, conflicts_with_all = ["index", "slurm", "collect"])]
        list: bool,
        /// Run only cell I (`--list` numbers them); `--index` alone reads I from
        /// `$SLURM_ARRAY_TASK_ID`. A cell that already finished with the same plan is kept.
        #[arg(long, value_name = "I", num_args = 0..=1, conflicts_with_all = ["slurm", "collect"])]
        index: Option<Option<usize>>,
        /// With `--index`: run only if the cell's plan hash is HASH, else stop with E0709 (the
        /// Slurm script passes the hash recorded when it was written).
        #[arg(long, value_name = "HASH", requires = "index")]
        plan_hash: Option<String>,
        /// Write an sbatch script for a Slurm job array, one task per cell, into `OUT/slurm/`.
        #[arg(long, conflicts_with = "collect")]
        slurm: bool,
        #[command(flatten)]
        slurm_args: SlurmArgs,
        /// Gather the finished cells into the sweep's CSV, markdown table and plot, and list the
        /// cells that are missing or failed.
        #[arg(long)]
        collect: bool,
    },
    /// Format recipe files in place (one canonical layout, comments kept); `--check` only reports.
    Fmt {
        /// The .sprs files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Change nothing: print a diff of each file that is not formatted and exit 1.
        #[arg(long)]
        check: bool,
    },
    /// Run the language server on stdin/stdout (for editors).
    Lsp,
    /// Explain a diagnostic code, e.g. `sprsc explain E0204`; `--list` lists all codes.
    Explain {
        /// The code (E0204, W0201).
        code: Option<String>,
        /// List every code with its title.
        #[arg(long)]
        list: bool,
    },
}

/// Options shared by the commands that train.
#[derive(clap::Args, Debug)]
pub struct TrainingArgs {
    /// Worker threads for training (default: all cores). While steps run, the other threads
    /// keep polling for work instead of sleeping (each a full core, as PyTorch's OpenMP threads
    /// do); they sleep again 2 ms after the last parallel loop.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Override a field (of every run, for a sweep), checked like the file:
    /// `--set train.epochs=2`. Repeatable.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub sets: Vec<String>,
    /// Products of masked dense layers and convolutions: `sparse` kernels touch only the kept
    /// weights; `auto` picks them per layer where its density is at or below the measured
    /// crossover (dense layers 20%, convolutions 40%); `dense` multiplies the masked weights as zeros.
    #[arg(long, value_enum, default_value_t = Kernels::Auto)]
    pub kernels: Kernels,
}

/// `--kernels`: see [`crate::exec::LayerKernels`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kernels {
    Auto,
    Dense,
    Sparse,
}

impl From<Kernels> for crate::exec::LayerKernels {
    fn from(k: Kernels) -> Self {
        match k {
            Kernels::Auto => crate::exec::LayerKernels::Auto,
            Kernels::Dense => crate::exec::LayerKernels::Dense,
            Kernels::Sparse => crate::exec::LayerKernels::Sparse,
        }
    }
}

/// What `sprsc sweep --slurm` asks Slurm for, and what it does with the script.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SlurmArgs {
    /// Slurm partition (default: the cluster's).
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// Time limit per cell: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS.
    #[arg(long, requires = "slurm")]
    pub time: Option<String>,
    /// CPUs per cell; each cell trains with as many threads.
    #[arg(long, requires = "slurm")]
    pub cpus: Option<u32>,
    /// Memory per cell: `4G`, `500M`.
    #[arg(long, requires = "slurm")]
    pub mem: Option<String>,
    /// At most K cells at once.
    #[arg(long, value_name = "K", requires = "slurm")]
    pub max_parallel: Option<u32>,
    /// Submit the script with `sbatch` and print the job id.
    #[arg(long, requires = "slurm")]
    pub submit: bool,
    /// Only the cells `--collect` would list as missing or failed.
    #[arg(long, requires = "slurm")]
    pub missing: bool,
}

/// What `sprsc sweep` does with the cells.
#[derive(Debug, Clone)]
pub enum SweepMode {
    /// Run every cell here, then write the report.
    Run,
    List,
    /// One cell: its index (`None`: `$SLURM_ARRAY_TASK_ID`) and the plan hash it must have.
    Cell(Option<usize>, Option<String>),
    Slurm(SlurmArgs),
    Collect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    Ast,
    Ir,
    Kernels,
}

/// Runs the CLI and returns the process exit code.
pub fn main_with(cli: Cli) -> i32 {
    match cli.command {
        Command::Check { file, format, emit, sets } => check(&file, format, emit, &sets),
        Command::Run {
            file,
            recipe,
            out,
            resume,
            force,
            max_steps,
            training: TrainingArgs { threads, sets, kernels },
            format,
        } => {
            // Resuming: the thread count the run started with, unless told otherwise.
            let started = resume.as_deref().and_then(|d| crate::driver::Invocation::read(d).ok());
            let threads = threads.or(started.as_ref().and_then(|i| i.threads));
            let inv = match (file, &resume) {
                (Some(file), _) => crate::driver::Invocation { file, recipe, sets, threads },
                // Resuming without a file: the file, recipe and `--set`s the run started with.
                (None, Some(dir)) => match crate::driver::Invocation::read(dir) {
                    Ok(i) => crate::driver::Invocation {
                        recipe: recipe.or(i.recipe),
                        sets: if sets.is_empty() { i.sets } else { sets },
                        file: i.file,
                        threads,
                    },
                    Err(e) => {
                        eprintln!(
                            "error: cannot read `{}`: {e}; name the recipe file: `sprsc run FILE --resume DIR`",
                            dir.join(crate::driver::INVOCATION).display()
                        );
                        return 2;
                    }
                },
                (None, None) => return 2,
            };
            let Some(comp) = compile_reporting(&inv.file, &inv.sets, format) else { return 2 };
            if comp.has_errors() {
                return 1;
            }
            let how = RunHow {
                out: resume.clone().or(out),
                threads,
                kernels: kernels.into(),
                resume: resume.is_some(),
                force,
                max_steps,
            };
            run(&comp, &inv, how, format)
        }
        Command::Sweep {
            file,
            name,
            out,
            training: TrainingArgs { threads, sets, kernels },
            list,
            index,
            plan_hash,
            slurm,
            slurm_args,
            collect,
        } => {
            let mode = match (list, index, slurm, collect) {
                (true, ..) => SweepMode::List,
                (_, Some(i), ..) => SweepMode::Cell(i, plan_hash),
                (_, _, true, _) => SweepMode::Slurm(slurm_args),
                (.., true) => SweepMode::Collect,
                _ => SweepMode::Run,
            };
            sweep::sweep(&file, name.as_deref(), out, threads, kernels.into(), &sets, mode)
        }
        Command::Explain { code, list } => explain(code.as_deref(), list),
        Command::Fmt { files, check } => fmt(&files, check),
        Command::Lsp => crate::lsp::serve(),
    }
}

fn compile_reporting(file: &Path, sets: &[String], format: Format) -> Option<Compilation> {
    let comp = match crate::compile_file(file, sets) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot read `{}`: {e}", file.display());
            return None;
        }
    };
    report(&comp.diagnostics, &comp, format);
    Some(comp)
}

/// Prints diagnostics to stderr (text) or stdout (json).
pub fn report(diags: &[Diagnostic], comp: &Compilation, format: Format) {
    let color = std::io::stderr().is_terminal();
    for d in diags {
        match format {
            Format::Text => eprint!("{}", diagnostics::render_text(d, &comp.sources, color)),
            Format::Json => println!("{}", diagnostics::render_json(d, &comp.sources)),
        }
    }
    if format == Format::Text && !diags.is_empty() {
        let errors = diags.iter().filter(|d| d.is_error()).count();
        let warnings = diags.len() - errors;
        eprintln!("{errors} error(s), {warnings} warning(s)");
    }
}

fn check(file: &Path, format: Format, emit: Option<Emit>, sets: &[String]) -> i32 {
    let Some(comp) = compile_reporting(file, sets, format) else { return 2 };
    if comp.has_errors() {
        return 1;
    }
    match emit {
        Some(Emit::Ast) => comp.files.iter().for_each(|f| print!("{f}")),
        Some(Emit::Ir) => {
            comp.checked.plans.iter().for_each(|p| println!("{p}"));
            comp.checked.sweeps.iter().for_each(|s| println!("{s}"));
        }
        Some(Emit::Kernels) => print!("{}", kernel_listing(&comp)),
        None => {
            if format == Format::Text {
                let n = comp.checked.plans.len();
                eprintln!(
                    "ok: {} recipe(s), {} sweep(s), {} kernel(s)",
                    n,
                    comp.checked.sweeps.len(),
                    comp.checked.kernels.len()
                );
            }
        }
    }
    0
}

/// The kernel IR of every plan: its kernel definitions, then the fused programs a run compiles
/// (each a list of `let`s and in-place stores over one element).
pub fn kernel_listing(comp: &Compilation) -> String {
    let mut out = String::new();
    for p in &comp.checked.plans {
        out.push_str(&format!("plan {}\n", p.recipe));
        for k in &p.kernels {
            out.push_str(&format!("  {k}\n"));
        }
        match crate::plan_kernels(p) {
            Ok(programs) => programs.iter().for_each(|pr| out.push_str(&indent(&pr.to_string()))),
            Err(e) => out.push_str(&format!("  error: {}\n", e.msg)),
        }
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// Where and how `sprsc run` trains.
struct RunHow {
    out: Option<PathBuf>,
    threads: Option<usize>,
    kernels: crate::exec::LayerKernels,
    resume: bool,
    force: bool,
    max_steps: Option<u64>,
}

fn run(comp: &Compilation, inv: &crate::driver::Invocation, how: RunHow, format: Format) -> i32 {
    let plans = &comp.checked.plans;
    let plan = match (inv.recipe.as_deref(), plans.as_slice()) {
        (Some(name), _) => match plans.iter().find(|p| p.recipe == name) {
            Some(p) => p,
            None => {
                let names: Vec<&str> = plans.iter().map(|p| p.recipe.as_str()).collect();
                eprintln!("error: no recipe `{name}` in this file; it has: {}", names.join(", "));
                return 2;
            }
        },
        (None, [one]) => one,
        (None, []) => {
            eprintln!("error: the file has no recipe to run");
            return 2;
        }
        (None, many) => {
            let names: Vec<&str> = many.iter().map(|p| p.recipe.as_str()).collect();
            eprintln!("error: the file has {} recipes; pick one with --recipe: {}", many.len(), names.join(", "));
            return 2;
        }
    };
    let quiet = format == Format::Json;
    let dir = how.out.clone().unwrap_or_else(|| PathBuf::from(&plan.output.dir));
    if how.resume {
        if dir.join("summary.json").exists() {
            eprintln!("note: the run in `{}` has finished; nothing to resume", dir.display());
            return 0;
        }
        if let Err(d) = crate::driver::check_resume(&dir, plan, how.force) {
            report(&[d], comp, format);
            return 1;
        }
    }
    let file = std::fs::canonicalize(&inv.file).unwrap_or_else(|_| inv.file.clone());
    let inv = crate::driver::Invocation {
        file,
        recipe: Some(plan.recipe.clone()),
        sets: inv.sets.clone(),
        threads: how.threads,
    };
    if let Err(e) = inv.write(&dir) {
        eprintln!("error: cannot write `{}`: {e}", dir.display());
        return 2;
    }
    let opts = crate::exec::RunOptions {
        out_dir: how.out,
        threads: how.threads,
        quiet,
        max_steps: how.max_steps,
        max_eval: None,
        kernels: how.kernels,
        resume: how.resume,
    };
    match crate::driver::run_plan(comp, plan, &opts) {
        Ok(summary) => {
            report(&summary.warnings, comp, format);
            if let Some(why) = &summary.stopped {
                eprintln!("stopped early: {why}");
            }
            if quiet {
                println!("{}", serde_json::to_string(&summary).unwrap_or_default());
            } else {
                eprintln!(
                    "run directory: {}",
                    opts.out_dir.as_deref().unwrap_or(Path::new(&plan.output.dir)).display()
                );
            }
            0
        }
        Err(d) => {
            report(&[d], comp, format);
            1
        }
    }
}

/// `sprsc fmt`: 0 all formatted (or now formatted), 1 a file needs formatting (`--check`) or
/// has syntax errors, 2 a file cannot be read or written.
fn fmt(files: &[PathBuf], check: bool) -> i32 {
    let mut status = 0;
    for path in files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read `{}`: {e}", path.display());
                status = 2;
                continue;
            }
        };
        let formatted = match crate::fmt::format(&text) {
            Ok(f) => f,
            Err(crate::fmt::FmtError::Syntax(diags)) => {
                let mut sources = diagnostics::SourceMap::default();
                sources.add(path.clone(), text);
                let color = std::io::stderr().is_terminal();
                diags.iter().for_each(|d| eprint!("{}", diagnostics::render_text(d, &sources, color)));
                eprintln!("error: `{}` was not formatted: it does not parse", path.display());
                status = status.max(1);
                continue;
            }
            Err(e) => {
                eprintln!("error: `{}`: {e}", path.display());
                status = status.max(1);
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        if check {
            print!("{}", crate::fmt::diff(&path.display().to_string(), &text, &formatted));
            status = status.max(1);
        } else if let Err(e) = std::fs::write(path, formatted) {
            eprintln!("error: cannot write `{}`: {e}", path.display());
            status = 2;
        }
    }
    status
}

fn explain(code: Option<&str>, list: bool) -> i32 {
    if list || code.is_none() {
        for (c, text) in diagnostics::CODES {
            let title = text.lines().next().unwrap_or("").trim_start_matches('#').trim();
            println!("{title}");
            let _ = c;
        }
        return 0;
    }
    let code = code.unwrap_or_default();
    match diagnostics::explanation(code) {
        Some(text) => {
            print!("{text}");
            0
        }
        None => {
            eprintln!("error: no explanation for `{code}`; `sprsc explain --list` lists the codes");
            2
        }
    }
}
