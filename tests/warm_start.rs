//! `init { from "weights.safetensors" }`: a run's exported weights, loaded into a new run,
//! evaluate exactly as they did at the end of the first run; PyTorch's batchnorm names are read;
//! a missing or unreadable file is E0712 and a missing, unknown or misshapen tensor E0713, each
//! naming the file's tensor and the model's parameter, at the `from` line.

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

mod common;

fn sprsc(args: &[&str]) -> (i32, String, String) {
    common::run_sprsc(args, &[])
}

fn temp(name: &str) -> PathBuf {
    common::fresh_dir(&format!("warm-{name}"))
}

const BN_MODEL: &str = "{ input 1x28x28; conv 6 kernel: 5; batchnorm; relu; maxpool 2; flatten; dense 10 }";

fn recipe(model: &str, init: &str, epochs: u64) -> String {
    format!(
        "recipe r {{
  data synthetic_digits(train: 800, test: 300)
  model {model}
  init {{ {init} }}
  train {{
    epochs {epochs}
    batch 50
    optimizer sgd(lr: 0.05, momentum: 0.9)
  }}
  output {{ plots false }}
}}
"
    )
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

/// Trains `model` for one epoch with the CLI; returns its run directory.
fn trained(root: &Path, model: &str) -> PathBuf {
    let file = root.join("a.sprs");
    std::fs::write(&file, recipe(model, "weights pytorch", 1)).unwrap();
    let out = root.join("a");
    let (code, _, err) = sprsc(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "1"]);
    assert_eq!(code, 0, "{err}");
    out
}

/// Evaluates `model` started from `weights` without a training step (the library, as the CLI has
/// no step limit).
fn evaluated_from(root: &Path, model: &str, weights: &Path) -> Result<sprsc::report::RunSummary, String> {
    evaluated(root, model, &format!("from {:?}", weights.to_str().unwrap()))
}

fn evaluated(root: &Path, model: &str, init: &str) -> Result<sprsc::report::RunSummary, String> {
    let text = recipe(model, init, 1);
    let comp = sprsc::compile_source(Path::new("b.sprs"), text, &[]);
    assert!(!comp.has_errors(), "{:?}", comp.diagnostics);
    let plan = &comp.checked.plans[0];
    let data = sprsc::data::load(&plan.data, plan.seed).unwrap();
    let opts = sprsc::exec::RunOptions {
        out_dir: Some(root.join("b")),
        threads: Some(1),
        quiet: true,
        max_steps: Some(0),
        max_eval: None,
        resume: false,
        kernels: Default::default(),
    };
    sprsc::exec::run(plan, &data, &opts).map_err(|e| format!("{} {e}", e.code()))
}

#[test]
fn exported_weights_reload_to_the_same_accuracy() {
    for (name, model) in [("lenet5", "lenet5_caffe"), ("bn", BN_MODEL)] {
        let root = temp(name);
        let a = trained(&root, model);
        let b = evaluated_from(&root, model, &a.join("weights.safetensors")).unwrap();
        let s = summary(&a);
        assert_eq!(b.steps, 0);
        assert_eq!(Some(b.test_accuracy), s["test_accuracy"].as_f64(), "{name}");
        assert_eq!(Some(b.test_loss), s["test_loss"].as_f64(), "{name}");
        // Not by chance: the drawn init alone evaluates otherwise.
        let fresh = evaluated(&root, model, "weights pytorch").unwrap();
        assert_ne!(Some(fresh.test_loss), s["test_loss"].as_f64(), "{name}");
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// Rewrites a safetensors file with `rename` applied to its names and `extra` tensors added.
fn rewrite(src: &Path, dst: &Path, rename: impl Fn(&str) -> Option<String>, extra: &[(&str, Dtype, Vec<usize>)]) {
    let bytes = std::fs::read(src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter_map(|(n, v)| Some((rename(&n)?, v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    for (n, dtype, shape) in extra {
        let size = if *dtype == Dtype::I64 { 8 } else { 4 };
        owned.push((n.to_string(), *dtype, shape.clone(), vec![0; size * shape.iter().product::<usize>()]));
    }
    let views: Vec<(String, TensorView)> =
        owned.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(dst, safetensors::serialize(views, &None).unwrap()).unwrap();
}

#[test]
fn pytorch_batchnorm_names_load() {
    let root = temp("pytorch-names");
    let a = trained(&root, BN_MODEL);
    let torch = root.join("torch.safetensors");
    // PyTorch's names for the batchnorm affine params, and its counter (an int64).
    let rename = |n: &str| Some(n.replace(".scale", ".weight").replace(".shift", ".bias"));
    rewrite(&a.join("weights.safetensors"), &torch, rename, &[("bn1.num_batches_tracked", Dtype::I64, vec![])]);
    let names = std::fs::read(&torch).unwrap();
    let names = safetensors::SafeTensors::deserialize(&names).unwrap().names().into_iter().cloned().collect::<Vec<_>>();
    assert!(
        names.iter().any(|n| n.ends_with(".running_mean")) && !names.iter().any(|n| n.ends_with(".scale")),
        "{names:?}"
    );
    let b = evaluated_from(&root, BN_MODEL, &torch).unwrap();
    assert_eq!(Some(b.test_accuracy), summary(&a)["test_accuracy"].as_f64());
    let _ = std::fs::remove_dir_all(&root);
}

/// `sprsc run` on a recipe starting from `weights`: its one JSON diagnostic.
fn diagnostic(root: &Path, weights: &Path) -> serde_json::Value {
    let file = root.join("b.sprs");
    std::fs::write(&file, recipe("lenet300_100", &format!("from {:?}", weights.to_str().unwrap()), 1)).unwrap();
    let out = root.join("b");
    let (code, stdout, err) =
        sprsc(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 1, "{stdout}{err}");
    let d: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(d["line"], 4, "points at the `init` line: {d}");
    assert_eq!(d["label"], "starting from this file");
    d
}

#[test]
fn a_file_that_does_not_fit_is_a_diagnostic_naming_both_sides() {
    let root = temp("mismatch");
    let a = trained(&root, "lenet300_100");
    let src = a.join("weights.safetensors");

    let d = diagnostic(&root, &root.join("nowhere.safetensors"));
    assert_eq!(d["code"], "E0712", "{d}");
    std::fs::write(root.join("junk.safetensors"), b"not a tensor file").unwrap();
    let d = diagnostic(&root, &root.join("junk.safetensors"));
    assert_eq!(d["code"], "E0712", "{d}");
    assert!(d["message"].as_str().unwrap().contains("not a safetensors file"), "{d}");

    let missing = root.join("missing.safetensors");
    rewrite(&src, &missing, |n| (n != "fc2.bias").then(|| n.to_string()), &[]);
    let d = diagnostic(&root, &missing);
    assert_eq!(d["code"], "E0713", "{d}");
    assert!(
        d["message"].as_str().unwrap().contains("the model's parameter `fc2.bias` (100) is not in the file"),
        "{d}"
    );

    let unknown = root.join("unknown.safetensors");
    rewrite(&src, &unknown, |n| Some(n.to_string()), &[("fc4.weight", Dtype::F32, vec![3, 2])]);
    let d = diagnostic(&root, &unknown);
    assert!(
        d["message"].as_str().unwrap().contains("the file's tensor `fc4.weight` (3x2) is no parameter of the model"),
        "{d}"
    );

    let shape = root.join("shape.safetensors");
    rewrite(&src, &shape, |n| (n != "fc3.bias").then(|| n.to_string()), &[("fc3.bias", Dtype::F32, vec![12])]);
    let d = diagnostic(&root, &shape);
    assert_eq!(d["code"], "E0713", "{d}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("the file's tensor `fc3.bias` is 12, the model's parameter `fc3.bias` is 10"),
        "{d}"
    );

    // Several problems: the first in the message, the others as notes.
    let both = root.join("both.safetensors");
    rewrite(&src, &both, |n| (n != "fc1.bias").then(|| n.to_string()), &[("extra", Dtype::F32, vec![1])]);
    let d = diagnostic(&root, &both);
    assert_eq!(d["notes"].as_array().unwrap().len(), 1, "{d}");
    let _ = std::fs::remove_dir_all(&root);
}
