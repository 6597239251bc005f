//! What a run leaves behind beyond its tensors: the plots (`output { plots }`), and the memory
//! check before a run starts.

use std::path::{Path, PathBuf};
mod common;
use common::{fresh_dir as temp, run_sprsc as sprsc};

/// A LeNet-300-100 run of 3 epochs on a little synthetic data, two masked tensors.
const SMALL: &str = "recipe small {
  data synthetic_digits(train: 1200, test: 200, val: 200)
  model lenet300_100
  sparsity {
    target 80%
    distribution erk
    dense [last]
    mask magnitude
    schedule cubic(start: 0 epochs, end: 1 epoch, every: 2 steps)
  }
  train {
    epochs 3
    batch 64
    optimizer sgd(lr: 0.05, momentum: 0.9)
    lr cosine
  }
  OUTPUT
}
";

fn run_small(name: &str, output: &str) -> PathBuf {
    let dir = temp(name);
    let file = dir.join("small.sprs");
    std::fs::write(&file, SMALL.replace("OUTPUT", output)).unwrap();
    let out = dir.join("run");
    let (code, _, err) = sprsc(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "1"], &[]);
    assert_eq!(code, 0, "{err}");
    out
}

const PLOTS: [&str; 4] = ["loss", "accuracy", "lr", "sparsity"];

/// Data lines of an SVG: polylines of width 2 through more than two points (a legend entry is
/// a two-point line), by colour.
fn data_lines(svg: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", svg.display()));
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2"))
        .filter(|n| n.attribute("points").unwrap_or("").split_whitespace().count() > 2)
        .map(|n| n.attribute("stroke").unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_run_writes_svg_and_png_plots() {
    let out = run_small("plots", "");
    for p in PLOTS {
        let png = std::fs::read(out.join(format!("{p}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{p}.png");
        assert!(!data_lines(&out.join(format!("{p}.svg"))).is_empty(), "{p}.svg has no line");
    }
    // One line per masked tensor (fc1 and fc2; the last layer is dense), each its own colour,
    // and a legend naming them.
    let mut lines = data_lines(&out.join("sparsity.svg"));
    assert_eq!(lines.len(), 2, "{lines:?}");
    lines.dedup();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let svg = std::fs::read_to_string(out.join("sparsity.svg")).unwrap();
    assert!(svg.contains("fc1.weight") && svg.contains("fc2.weight") && !svg.contains("fc3.weight"));
    // Train and validation, in the loss and accuracy plots.
    assert_eq!(data_lines(&out.join("loss.svg")).len(), 2);
    assert_eq!(data_lines(&out.join("accuracy.svg")).len(), 2);
    let _ = std::fs::remove_dir_all(out.parent().unwrap());
}

#[test]
fn plots_false_writes_no_plot() {
    let out = run_small("noplots", "output { plots false }");
    assert!(out.join("summary.json").exists());
    for p in PLOTS {
        for ext in ["svg", "png"] {
            assert!(!out.join(format!("{p}.{ext}")).exists(), "{p}.{ext}");
        }
    }
    let _ = std::fs::remove_dir_all(out.parent().unwrap());
}

/// The example: two `dense 60000` layers check clean, and `sprsc run` refuses with
/// E0710 at the layer owning the largest tensor instead of aborting in a 14.4 GB allocation.
#[test]
fn a_model_too_big_for_memory_is_refused_before_it_allocates() {
    let dir = temp("huge");
    let file = dir.join("huge.sprs");
    let recipe = "recipe huge {\n  data synthetic_digits(train: 600, test: 100)\n  model { input 1x28x28\n    flatten\n    \
                  dense 60000\n    relu\n    dense 60000\n    relu\n    dense 10 }\n  train { epochs 1; batch 64 }\n}\n";
    std::fs::write(&file, recipe).unwrap();
    let f = file.to_str().unwrap();
    let (code, ir, _) = sprsc(&["check", f, "--emit", "ir"], &[]);
    assert_eq!(code, 0);
    assert!(ir.contains("  memory estimate, batch 64\n") && ir.contains("    peak 87.9 GB\n"), "{ir}");
    let out = dir.join("run");
    let env = [("SPRS_MEMORY_AVAILABLE", "16G")];
    let (code, stdout, _) = sprsc(&["run", f, "--format", "json", "--out", out.to_str().unwrap()], &env);
    assert_eq!(code, 1, "{stdout}");
    let d: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(d["code"], "E0710");
    assert_eq!(d["line"], 7, "points at the second `dense 60000`");
    assert!(!out.join("weights.safetensors").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The estimate against the peak resident memory (`VmHWM`, read by the run itself at its end
/// and reported in `summary.json` as `memory_peak`) of short real runs: two shipped recipes and
/// LeNet-5-Caffe on synthetic digits.
#[test]
fn the_memory_estimate_is_within_25_percent_of_the_measured_peak() {
    let dir = temp("memory");
    let lenet5 = dir.join("lenet5.sprs");
    std::fs::write(
        &lenet5,
        "recipe lenet5 {\n  data synthetic_digits(train: 2000, test: 500)\n  model lenet5_caffe\n  \
         sparsity { target 90%; mask magnitude; schedule cubic(start: 0 epochs, end: 1 epoch, every: 5 steps) }\n  \
         train { epochs 1; batch 128 }\n}\n",
    )
    .unwrap();
    let recipes = ["recipes/quickstart.sprs", "recipes/custom_kernel.sprs", lenet5.to_str().unwrap()];
    let mut report = Vec::new();
    for (i, r) in recipes.iter().enumerate() {
        let out = dir.join(format!("run{i}"));
        let (code, _, err) = sprsc(&["run", r, "--out", out.to_str().unwrap(), "--threads", "2"], &[]);
        assert_eq!(code, 0, "{r}: {err}");
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
        let (est, peak) = (s["memory_estimate"].as_f64().unwrap(), s["memory_peak"].as_f64().unwrap());
        report.push(format!("{r}: estimate {:.1} MB, measured {:.1} MB", est / 1e6, peak / 1e6));
        assert!((est / peak - 1.0).abs() <= 0.25, "{report:?}");
    }
    eprintln!("{}", report.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
