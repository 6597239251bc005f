//! `sprsc sweep`: the grid recipes x values x seeds runs, and the report has one row per run.

use std::process::Command;

#[test]
fn a_sweep_runs_its_grid_and_writes_the_report() {
    let dir = std::env::temp_dir().join(format!("sprsc-sweep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sweep.sprs");
    std::fs::write(
        &file,
        "recipe a {
  data synthetic_digits(train: 400, test: 200)
  model lenet300_100
  sparsity { target 90%; mask magnitude; schedule cubic(end: 1 epoch, every: 2 steps) }
  train { epochs 1; batch 50; optimizer sgd(lr: 0.1, momentum: 0.9) }
}
recipe b extends a { sparsity { distribution global } }
sweep grid {
  recipes [a, b]
  vary sparsity.target [80%, 95%]
  seeds [0, 1]
  report \"ab\"
}
",
    )
    .unwrap();
    let out = dir.join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_sprsc"))
        .args(["sweep", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "1"])
        .status()
        .unwrap();
    assert!(status.success());
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
    let _ = std::fs::remove_dir_all(&dir);
}
