//! The binary's contract: exit codes 0 (clean), 1 (diagnostics), 2 (usage or I/O), JSON
//! diagnostics, `--emit`, `--set`, `explain`.

use std::process::Command;

fn sprsc(args: &[&str]) -> (i32, String, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_sprsc")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
    let s = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), s(out.stdout), s(out.stderr))
}

#[test]
fn exit_codes() {
    assert_eq!(sprsc(&["check", "recipes/quickstart.sprs"]).0, 0);
    assert_eq!(sprsc(&["check", "tests/ui/target_100.sprs"]).0, 1);
    assert_eq!(sprsc(&["check", "does/not/exist.sprs"]).0, 2);
    assert_eq!(sprsc(&["check"]).0, 2);
    assert_eq!(sprsc(&["frobnicate"]).0, 2);
    // Warnings alone do not fail a check.
    assert_eq!(sprsc(&["check", "tests/ui/density_warning.sprs"]).0, 0);
}

#[test]
fn json_diagnostics_have_positions_and_codes() {
    let (code, out, _) = sprsc(&["check", "--format", "json", "tests/ui/many_errors_sorted.sprs"]);
    assert_eq!(code, 1);
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let codes: Vec<&str> = rows.iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["E0203", "W0201", "E0105", "E0301"], "sorted by position");
    let first = &rows[0];
    assert_eq!(first["line"], 2);
    assert!(first["column"].as_u64().unwrap() > 1);
    assert_eq!(first["severity"], "error");
    assert!(first["file"].as_str().unwrap().ends_with("many_errors_sorted.sprs"));
    assert_eq!(rows[1]["severity"], "warning");
    assert!(rows[2]["help"].as_str().unwrap().contains("magnitude"));
}

#[test]
fn emit_stages() {
    let (code, ir, _) = sprsc(&["check", "recipes/st3_lenet300.sprs", "--emit", "ir"]);
    assert_eq!(code, 0);
    assert!(ir.contains("plan st3_lenet300\n") && ir.contains("update soft_threshold("));
    let (_, ast, _) = sprsc(&["check", "recipes/st3_lenet300.sprs", "--emit", "ast"]);
    assert!(ast.contains("recipe st3_lenet300_99 extends st3_lenet300"));
    let (_, kernels, _) = sprsc(&["check", "recipes/custom_kernel.sprs", "--emit", "kernels"]);
    assert!(kernels.contains("kernel half_shrink(w; tau) = select("));
}

#[test]
fn set_overrides_are_checked_like_the_file() {
    let (code, ir, _) = sprsc(&[
        "check",
        "recipes/quickstart.sprs",
        "--emit",
        "ir",
        "--set",
        "sparsity.target=99%",
        "--set",
        "train.optimizer.lr=0.05",
    ]);
    assert_eq!(code, 0);
    assert!(ir.contains("target 99%") && ir.contains("sgd(lr: 0.05,"));
    let (code, _, err) = sprsc(&["check", "recipes/quickstart.sprs", "--set", "sparsity.target=120%"]);
    assert_eq!(code, 1);
    assert!(err.contains("E0204"));
    let (code, _, err) = sprsc(&["check", "recipes/quickstart.sprs", "--set", "sparsity.targt=90%"]);
    assert_eq!(code, 1);
    assert!(err.contains("E0307"));
}

#[test]
fn explain_prints_the_explanation() {
    let (code, out, _) = sprsc(&["explain", "E0204"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("# E0204: "));
    assert_eq!(sprsc(&["explain", "E9999"]).0, 2);
    let (_, list, _) = sprsc(&["explain", "--list"]);
    assert!(list.lines().count() >= 40);
}

#[test]
fn run_needs_a_recipe_choice_when_a_file_has_several() {
    let (code, _, err) = sprsc(&["run", "recipes/st3_lenet300.sprs"]);
    assert_eq!(code, 2);
    assert!(err.contains("--recipe") && err.contains("st3_lenet300_99"));
}

/// A diverging run is a diagnostic pointing at the optimizer line, not a panic or a NaN report.
#[test]
fn a_diverging_run_points_at_the_optimizer() {
    let dir = std::env::temp_dir().join(format!("sprsc-nan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("nan.sprs");
    std::fs::write(
        &file,
        "recipe too_fast {\n  data synthetic_digits(train: 600, test: 100)\n  model lenet300_100\n  train {\n    epochs 1\n    batch 64\n    optimizer sgd(lr: 1e30)\n  }\n}\n",
    )
    .unwrap();
    let out = dir.join("run");
    let (code, stdout, _) =
        sprsc(&["run", file.to_str().unwrap(), "--format", "json", "--out", out.to_str().unwrap(), "--threads", "1"]);
    assert_eq!(code, 1);
    let d: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(d["code"], "E0702");
    assert_eq!(d["line"], 7, "points at `optimizer sgd(lr: 1e30)`");
    let _ = std::fs::remove_dir_all(&dir);
}
