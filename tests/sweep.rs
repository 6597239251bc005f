//! `sprsc sweep`: the grid recipes x values x seeds runs, and the report has one row per run;
//! its cells can be listed, run one at a time (as Slurm array tasks run them), written as an
//! sbatch script, and collected into the same report.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `sprsc sweep FILE --out OUT --threads 1 ARGS...` with extra environment variables.
fn sweep(file: &Path, out: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sprsc"));
    cmd.args(["sweep", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "1"]).args(args);
    cmd.env_remove("SLURM_ARRAY_TASK_ID");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn grid_file(tmp: &Path) -> PathBuf {
    let file = tmp.join("sweep.sprs");
    std::fs::write(&file, common::SWEEP_GRID).unwrap();
    file
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Names in `dir` that start with a dot: a cell's private directory or file left behind.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn a_sweep_runs_its_grid_and_writes_the_report() {
    let tmp = common::temp_dir("sweep-local");
    let file = grid_file(&tmp);
    let out = tmp.join("out");
    let o = sweep(&file, &out, &[], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(out.join("ab.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 8, "2 recipes x 2 targets x 2 seeds:\n{csv}");
    for r in &rows {
        // recipe, target, seed, accuracy, realised sparsity, ...
        let target: f64 = r[1].trim_end_matches('%').parse::<f64>().unwrap() / 100.0;
        let realised: f64 = r[4].parse().unwrap();
        assert!((realised - target).abs() < 1e-3, "target {target} realised {realised}");
        assert!(r[3].parse::<f64>().unwrap() > 0.1);
    }
    assert!(std::fs::read_to_string(out.join("ab.md")).unwrap().contains("| b | 95% | 1 |"));
    assert!(std::fs::read_to_string(out.join("ab.svg")).unwrap().contains("<svg"));
    assert!(out.join("a-80-seed0/summary.json").is_file());
    assert_eq!(leftovers(&out), Vec::<String>::new());
}

#[test]
fn list_numbers_the_cells_in_the_order_a_sweep_runs_them() {
    let tmp = common::temp_dir("sweep-list");
    let file = grid_file(&tmp);
    let out = tmp.join("out");
    let o = sweep(&file, &out, &["--list"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines.len(), 9, "a header and 8 cells:\n{text}");
    assert_eq!(lines[0], ["index", "recipe", "values", "seed", "run", "directory"]);
    let dir = |name: &str| out.join(name).display().to_string();
    assert_eq!(lines[1], ["0", "a", "sparsity.target=80%", "0", &dir("a-80-seed0")]);
    assert_eq!(lines[2], ["1", "a", "sparsity.target=80%", "1", &dir("a-80-seed1")]);
    assert_eq!(lines[8], ["7", "b", "sparsity.target=95%", "1", &dir("b-95-seed1")]);
    assert!(!out.exists(), "--list runs nothing");
}

#[test]
fn index_runs_one_cell_and_keeps_a_finished_one() {
    let tmp = common::temp_dir("sweep-index");
    let file = grid_file(&tmp);
    let out = tmp.join("out");
    let o = sweep(&file, &out, &["--index", "5"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = out.join("b-80-seed1/summary.json");
    assert!(summary.is_file());
    let names: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["b-80-seed1"], "only cell 5 ran");
    let written = std::fs::metadata(&summary).unwrap().modified().unwrap();

    // Run twice (a requeued task): the first result stays as it was.
    let o = sweep(&file, &out, &["--index", "5"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("already finished"), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&summary).unwrap().modified().unwrap(), written);

    // Inside an array task the index comes from Slurm.
    let o = sweep(&file, &out, &["--index"], &[("SLURM_ARRAY_TASK_ID", "2")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("a-95-seed0/summary.json").is_file());
    assert_eq!(leftovers(&out), Vec::<String>::new());
}

#[test]
fn a_bad_index_is_a_usage_error_not_a_panic() {
    let tmp = common::temp_dir("sweep-bad-index");
    let file = grid_file(&tmp);
    let out = tmp.join("out");
    let o = sweep(&file, &out, &["--index", "8"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no cell 8: the sweep has 8 cell(s)"), "{}", stderr(&o));
    let o = sweep(&file, &out, &["--index"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("SLURM_ARRAY_TASK_ID, which is not set"), "{}", stderr(&o));
    let o = sweep(&file, &out, &["--index"], &[("SLURM_ARRAY_TASK_ID", "x")]);
    assert_eq!(o.status.code(), Some(2));
    let o = sweep(&file, &out, &["--index", "1", "--collect"], &[]);
    assert_eq!(o.status.code(), Some(2), "clap rejects --index with --collect");
    let o = sweep(&file, &out, &["--time", "1:00:00"], &[]);
    assert_eq!(o.status.code(), Some(2), "--time needs --slurm");
    let o = sweep(&file, &out, &["--slurm", "--time", "1h"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not a Slurm time"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn a_cell_submitted_for_another_plan_stops_with_e0709_and_collect_reports_it() {
    let tmp = common::temp_dir("sweep-hash");
    let file = grid_file(&tmp);
    let out = tmp.join("out");
    let o = sweep(&file, &out, &["--index", "0", "--plan-hash", "0123456789abcdef"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("E0709"), "{}", stderr(&o));
    assert!(!out.join("a-80-seed0").exists());
    let error: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("a-80-seed0.error.json")).unwrap()).unwrap();
    assert_eq!(error["code"], "E0709");
    assert_eq!(error["index"], 0);

    let o = sweep(&file, &out, &["--collect"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("cell 0 (a-80 seed 0): failed: error[E0709]"), "{err}");
    assert!(err.contains("cell 1 (a-80 seed 1): missing"), "{err}");
    assert!(err.contains("8 cell(s): 0 finished, 1 failed, 7 missing"), "{err}");
    let csv = std::fs::read_to_string(out.join("ab.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "the header and the failed cell:\n{csv}");
    assert!(csv.lines().nth(1).unwrap().ends_with(",E0709"), "{csv}");
}

#[test]
fn the_slurm_script_runs_every_cell_with_its_plan_hash() {
    let tmp = common::temp_dir("sweep-script");
    let file = grid_file(&tmp);
    let out = tmp.join("out");
    let args = ["--slurm", "--partition", "cpu", "--time", "0:10:00", "--cpus", "1", "--mem", "2G"];
    let o = sweep(&file, &out, &[&args[..], &["--max-parallel", "3", "--set", "train.epochs=1"]].concat(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let path = PathBuf::from(stdout(&o).trim());
    assert_eq!(path, std::path::absolute(out.join("slurm/grid.sbatch")).unwrap());
    let script = std::fs::read_to_string(&path).unwrap();
    for line in [
        "#!/bin/bash",
        "#SBATCH --array=0-7%3",
        "#SBATCH --partition=cpu",
        "#SBATCH --time=0:10:00",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=2G",
        &format!("# Written by sprsc {}.", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(script.lines().any(|l| l == line), "no line `{line}` in\n{script}");
    }
    assert!(script.contains("--index \"$SLURM_ARRAY_TASK_ID\""), "{script}");
    assert!(script.contains("--set train.epochs=1"), "{script}");
    let hashes = script.lines().find_map(|l| l.strip_prefix("hashes=(")).unwrap().trim_end_matches(')');
    assert_eq!(hashes.split(' ').count(), 8);
    assert!(hashes.split(' ').all(|h| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit())), "{hashes}");
    assert!(Command::new("bash").arg("-n").arg(&path).status().unwrap().success(), "bash parses the script");

    // The script is a plain bash script: run as Slurm would run task 6, it trains cell 6.
    let o = Command::new("bash").arg(&path).env("SLURM_ARRAY_TASK_ID", "6").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("b-95-seed0/summary.json").is_file());

    // --missing: every cell but 6.
    let o = sweep(&file, &out, &["--slurm", "--missing"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = std::fs::read_to_string(stdout(&o).trim()).unwrap();
    assert!(script.lines().any(|l| l == "#SBATCH --array=0-5,7"), "{script}");
}

#[test]
fn collect_gives_the_table_of_a_local_sweep() {
    let tmp = common::temp_dir("sweep-collect");
    let file = grid_file(&tmp);
    let (local, cells) = (tmp.join("local"), tmp.join("cells"));
    let o = sweep(&file, &local, &[], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    for i in [0, 1, 2, 3, 7] {
        assert!(sweep(&file, &cells, &["--index", &i.to_string()], &[]).status.success());
    }
    // What a task killed by its time limit leaves: a private directory, never the run directory.
    std::fs::create_dir(cells.join(".b-80-seed0.tmp-killed")).unwrap();
    let o = sweep(&file, &cells, &["--collect"], &[]);
    assert_eq!(o.status.code(), Some(1), "three cells are missing");
    assert!(stderr(&o).contains("cell 4 (b-80 seed 0): missing"), "{}", stderr(&o));
    assert!(stderr(&o).contains(".b-80-seed0.tmp-killed (running, or killed)"), "{}", stderr(&o));
    let o = sweep(&file, &cells, &["--slurm", "--missing"], &[]);
    let script = std::fs::read_to_string(stdout(&o).trim()).unwrap();
    assert!(script.lines().any(|l| l == "#SBATCH --array=4-6"), "{script}");
    for i in 4..7 {
        assert!(sweep(&file, &cells, &["--index", &i.to_string()], &[]).status.success());
    }
    let o = sweep(&file, &cells, &["--collect"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("8 cell(s): 8 finished, 0 failed, 0 missing"), "{}", stderr(&o));
    let read = |dir: &Path| std::fs::read_to_string(dir.join("ab.csv")).unwrap();
    assert_eq!(common::sweep_results(&read(&cells)), common::sweep_results(&read(&local)));
    assert!(std::fs::read_to_string(cells.join("ab.svg")).unwrap().contains("<svg"));
    let o = sweep(&file, &cells, &["--slurm", "--missing"], &[]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("every cell has finished; no job written"), "{}", stderr(&o));
}

#[test]
fn a_cell_run_twice_at_once_leaves_one_whole_result() {
    let tmp = common::temp_dir("sweep-race");
    let file = grid_file(&tmp);
    let out = tmp.join("out");
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_sprsc"))
            .args(["sweep", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "1", "--index", "3"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let dir = out.join("a-95-seed1");
    for f in ["summary.json", "plan.txt", "recipe.sprs", "metrics.jsonl", "weights.safetensors", "masks.safetensors"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    assert_eq!(leftovers(&out), Vec::<String>::new());
    assert!(sweep(&file, &out, &["--index", "3"], &[]).status.success());
}

#[test]
fn a_cell_that_fails_at_run_time_is_recorded_and_collected_with_its_diagnostic() {
    let tmp = common::temp_dir("sweep-fail");
    let file = tmp.join("batch.sprs");
    // A batch larger than the training split: no step to take (E0705), found only at run time.
    std::fs::write(
        &file,
        common::SWEEP_GRID.replace(
            "sweep grid {\n  recipes [a, b]\n  vary sparsity.target [80%, 95%]",
            "sweep grid {\n  recipes [a]\n  vary train.batch [50, 1000]",
        ),
    )
    .unwrap();
    let out = tmp.join("out");
    let o = sweep(&file, &out, &["--index", "2"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("training has no steps"), "{}", stderr(&o));
    assert!(!out.join("a-1000-seed0").exists());
    assert_eq!(leftovers(&out), Vec::<String>::new(), "the failed run's private directory is gone");
    let o = sweep(&file, &out, &["--collect"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("cell 2 (a-1000 seed 0): failed: error[E0705]"), "{err}");
    assert!(err.contains("help: use a smaller `batch`"), "the rendered diagnostic is listed:\n{err}");
    let csv = std::fs::read_to_string(out.join("ab.csv")).unwrap();
    assert_eq!(csv.lines().nth(1), Some("a,1000,0,NaN,NaN,0.0,E0705"), "{csv}");
}

#[test]
fn a_result_of_another_plan_is_not_collected_as_finished() {
    let tmp = common::temp_dir("sweep-stale");
    let file = grid_file(&tmp);
    let out = tmp.join("out");
    assert!(sweep(&file, &out, &["--index", "0"], &[]).status.success());
    // The same cell under another learning rate is another plan: its old directory is stale.
    let lr = ["--set", "train.optimizer.lr=0.05"];
    let o = sweep(&file, &out, &[&lr[..], &["--collect"]].concat(), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cell 0 (a-80 seed 0): failed: error[E0709]"), "{}", stderr(&o));
    let o = sweep(&file, &out, &[&lr[..], &["--slurm", "--missing"]].concat(), &[]);
    let script = std::fs::read_to_string(stdout(&o).trim()).unwrap();
    assert!(script.lines().any(|l| l == "#SBATCH --array=0-7"), "{script}");
    // Running the cell again replaces the stale result, and --index keeps the new one.
    assert!(sweep(&file, &out, &[&lr[..], &["--index", "0"]].concat(), &[]).status.success());
    let plan = std::fs::read_to_string(out.join("a-80-seed0/plan.txt")).unwrap();
    assert!(plan.contains("lr: 0.05"), "{plan}");
    let o = sweep(&file, &out, &[&lr[..], &["--index", "0"]].concat(), &[]);
    assert!(stderr(&o).contains("already finished"), "{}", stderr(&o));
}
