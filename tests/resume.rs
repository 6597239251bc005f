//! `sprsc run --resume`: a run killed at any step and resumed from its checkpoints ends
//! bit-identical (weights, masks, metrics but their wall-clock seconds) to the same run
//! uninterrupted, for GMP, ST-3, RigL, SET, EAST's cyclic schedule and lottery tickets. Kills are
//! deterministic (`SPRSC_ABORT_AT_STEP` aborts the process before a step, as a kill would), plus
//! one real `kill -9` at a random moment; torn checkpoints and edited recipes are refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::run_sprsc as sprsc;

fn temp(name: &str) -> PathBuf {
    common::fresh_dir(&format!("resume-{name}"))
}

/// 3 epochs of 28 steps on synthetic digits; a checkpoint every 4 steps, the last 2 kept.
fn recipe(model: &str, sparsity: &str) -> String {
    format!(
        "recipe r {{
  data synthetic_digits(train: 2000, test: 200, val: 200)
  model {model}
  sparsity {{ {sparsity} }}
  train {{
    epochs 3
    batch 64
    optimizer sgd(lr: 0.1, momentum: 0.9, weight_decay: 1e-4)
    lr cosine
  }}
  output {{ checkpoint every: 4 steps, keep: 2; plots false }}
}}
"
    )
}

const MLP: &str = "lenet300_100";
/// With dropout, so the dropout stream is part of what a checkpoint keeps.
const DROPOUT_MLP: &str = "{ input 1x28x28; flatten; dense 200; relu; dropout 0.3; dense 100; relu; dense 10 }";
/// With batchnorm, so its running statistics (and a lottery's rewound ones) are too.
const BN_CONV: &str = "{ input 1x28x28; conv 6 kernel: 5; batchnorm; relu; maxpool 2; flatten; dense 10 }";
/// Adam's second moment and bias correction; ToST's GradInit (before the first checkpoint, so
/// a resumed run must not run it again), ghost neurons and label smoothing.
fn adam_tost(text: String) -> String {
    text.replace("sgd(lr: 0.1, momentum: 0.9, weight_decay: 1e-4)", "adam(lr: 2e-3)").replace(
        "  output {",
        "  techniques { ghost_neurons(activation: swish, until: 40%); label_smoothing(0.1, style: others); \
         gradinit(iters: 5, lr: 1e-2, eta: 0.1, min_scale: 0.01) }\n  output {",
    )
}

const GMP: &str = "target 90%; mask dense; schedule cubic(start: 0 epochs, end: 2 epochs, every: 3 steps); update hard";
const ST3: &str = "target 90%; mask dense; schedule cubic(start: 0 epochs, end: 1 epoch, every: 1 step); \
                   update soft_threshold(ste: dense, rescale: true); freeze at 40 steps";
const RIGL: &str = "target 90%; distribution erk; mask random; \
                    update prune_regrow(every: 5 steps, drop: 30%, grow: gradient)";
const SET: &str = "target 90%; mask random; update prune_regrow(every: 5 steps, drop: 30%, grow: random)";
const EAST: &str = "target 90%; mask random; schedule cyclic(cycles: 2, length: 1 epoch, peak: 3x, shape: cosine); \
                    update prune_regrow(every: 6 steps, drop: 30%, grow: gradient)";
const LOTTERY: &str = "target 90%; mask lottery(rounds: 2, rate: 60%, rewind: 6 steps)";

/// Runs `text` into `dir` (threads 1), aborting before `abort_at` if given; returns the exit code.
fn run(text: &str, dir: &Path, abort_at: Option<u64>) -> i32 {
    let file = dir.with_extension("sprs");
    std::fs::write(&file, text).unwrap();
    let abort = abort_at.map(|s| s.to_string());
    let env: Vec<(&str, &str)> = abort.iter().map(|s| ("SPRSC_ABORT_AT_STEP", s.as_str())).collect();
    let (code, out, err) = sprsc(
        &["run", file.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--threads", "1", "--format", "json"],
        &env,
    );
    if abort_at.is_none() {
        assert_eq!(code, 0, "{out}{err}");
    }
    code
}

/// `sprsc run --resume DIR` with `extra` arguments (json diagnostics unless they say otherwise).
fn resume(dir: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["run", "--resume", dir.to_str().unwrap()];
    args.extend(extra);
    if !extra.contains(&"--format") {
        args.extend(["--format", "json"]);
    }
    let (code, out, err) = sprsc(&args, &[]);
    (code, out + &err)
}

/// The metrics lines without their wall-clock `seconds`.
fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

fn assert_same_run(a: &Path, b: &Path, what: &str) {
    for f in ["weights.safetensors", "masks.safetensors"] {
        let (x, y) = (std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap());
        assert!(x == y, "{what}: {f} differs after resuming");
    }
    assert_eq!(metrics(a), metrics(b), "{what}: metrics differ after resuming");
    let summary = |d: &Path| {
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("summary.json")).unwrap()).unwrap();
        for k in ["seconds", "seconds_per_epoch", "step_ms", "memory_peak"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    assert_eq!(summary(a), summary(b), "{what}: summaries differ after resuming");
}

/// A method: name, model, sparsity block, an edit of the recipe, the steps it is killed before.
type Case = (&'static str, &'static str, &'static str, fn(String) -> String, &'static [u64]);

/// Each method, killed before two or three steps (just after a checkpoint or between two; ST-3
/// also past `freeze at`, the lottery in its second round and its final training), resumed until
/// it finishes, equals the run left alone.
#[test]
fn killed_runs_resume_bit_identical() {
    let plain = |t: String| t;
    let cases: [Case; 8] = [
        ("gmp", MLP, GMP, plain, &[9, 62]),
        ("st3", MLP, ST3, plain, &[17, 43, 50]),
        ("rigl", DROPOUT_MLP, RIGL, plain, &[11, 57]),
        ("set", MLP, SET, plain, &[13, 36]),
        ("east", MLP, EAST, plain, &[8, 29]),
        ("lottery", MLP, LOTTERY, plain, &[7, 100, 200]),
        ("lottery_bn", BN_CONV, LOTTERY, plain, &[10, 95]),
        ("gmp_bn_adam_tost", BN_CONV, GMP, adam_tost, &[6, 33]),
    ];
    for (name, model, sparsity, edit, kills) in cases {
        let text = edit(recipe(model, sparsity));
        let root = temp(name);
        let whole = root.join("whole");
        run(&text, &whole, None);
        let killed = root.join("killed");
        assert_ne!(run(&text, &killed, Some(kills[0])), 0, "{name}: the abort hook did not stop the run");
        assert!(!killed.join("summary.json").exists(), "{name}: a killed run has no summary");
        for &k in &kills[1..] {
            let file = killed.with_extension("sprs");
            let abort = k.to_string();
            let args = ["run", "--resume", killed.to_str().unwrap(), "--format", "json"];
            let (code, _, err) = sprsc(&args, &[("SPRSC_ABORT_AT_STEP", &abort)]);
            assert_ne!(code, 0, "{name}: resumed run was not stopped before step {k}: {err}");
            assert!(file.exists());
        }
        let (code, err) = resume(&killed, &[]);
        assert_eq!(code, 0, "{name}: {err}");
        assert_same_run(&whole, &killed, name);
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// A real `kill -9` at a random moment of the run (checkpoint writes included); resuming
/// gives the uninterrupted result.
#[test]
fn a_run_killed_at_a_random_moment_resumes_to_the_same_result() {
    let text = recipe(MLP, RIGL);
    let root = temp("kill9");
    let whole = root.join("whole");
    run(&text, &whole, None);
    let killed = root.join("killed");
    let file = killed.with_extension("sprs");
    std::fs::write(&file, &text).unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    // Data loading and compiling take a while at opt-level 1; the kill falls somewhere in training
    // (or before it, or after the run ended: resuming must give the same result either way).
    let delay = std::time::Duration::from_millis(300 + u64::from(nanos % 2500));
    let mut child = Command::new(env!("CARGO_BIN_EXE_sprsc"))
        .args(["run", file.to_str().unwrap(), "--out", killed.to_str().unwrap(), "--threads", "1", "--format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    // Named in full: the kill may have come before the run directory recorded anything.
    let (code, err) = resume(&killed, &[file.to_str().unwrap(), "--threads", "1"]);
    assert_eq!(code, 0, "killed after {delay:?}: {err}");
    assert_same_run(&whole, &killed, &format!("kill -9 after {delay:?}"));
    let _ = std::fs::remove_dir_all(&root);
}

/// A damaged newest checkpoint is W0702 and the run resumes from the one before it, to the same
/// result; a torn write (a temporary directory) is ignored.
#[test]
fn a_damaged_checkpoint_falls_back_to_the_previous_one() {
    let text = recipe(MLP, GMP);
    let root = temp("damaged");
    let whole = root.join("whole");
    run(&text, &whole, None);
    let killed = root.join("killed");
    assert_ne!(run(&text, &killed, Some(22)), 0);
    let ckpts = killed.join("checkpoints");
    let mut names: Vec<String> =
        std::fs::read_dir(&ckpts).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["step-0000000016", "step-0000000020"]);
    let tensors = ckpts.join("step-0000000020/tensors.safetensors");
    let mut bytes = std::fs::read(&tensors).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0xff;
    std::fs::write(&tensors, bytes).unwrap();
    std::fs::create_dir_all(ckpts.join(".writing-step-0000000024")).unwrap();
    let (code, err) = resume(&killed, &["--format", "text"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("W0702") && err.contains("step-0000000020"), "{err}");
    assert!(err.contains("resuming from step 16"), "{err}");
    assert!(!ckpts.join(".writing-step-0000000024").exists());
    assert_same_run(&whole, &killed, "damaged checkpoint");
    let _ = std::fs::remove_dir_all(&root);
}

/// Resuming with an edited recipe shows the change and is refused (E0711) unless `--force`;
/// forced onto another model, the run starts over.
#[test]
fn an_edited_recipe_is_refused_unless_forced() {
    let text = recipe(MLP, GMP);
    let root = temp("edited");
    let dir = root.join("run");
    assert_ne!(run(&text, &dir, Some(10)), 0);
    let file = dir.with_extension("sprs");
    std::fs::write(&file, text.replace("lr: 0.1", "lr: 0.02")).unwrap();
    let (code, err) = resume(&dir, &["--format", "text"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("E0711"), "{err}");
    assert!(err.contains("-    optimizer sgd(lr: 0.1") && err.contains("+    optimizer sgd(lr: 0.02"), "{err}");
    assert!(!dir.join("summary.json").exists());
    let (code, err) = resume(&dir, &["--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(dir.join("summary.json").exists());
    // Forced onto another model, the checkpoints do not fit (W0702): the run starts over.
    let other = root.join("other");
    assert_ne!(run(&text, &other, Some(10)), 0);
    let file = other.with_extension("sprs");
    std::fs::write(&file, recipe(DROPOUT_MLP, GMP)).unwrap();
    let (code, err) = resume(&other, &["--force", "--format", "text"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("W0702") && err.contains("another model"), "{err}");
    assert!(err.contains("no checkpoint to resume from"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}

/// Killed before its first checkpoint, a run starts again from step 0 (on the thread count it
/// was started with, from `invocation.json`) to the same result; resuming a finished run does
/// nothing.
#[test]
fn a_run_killed_before_its_first_checkpoint_starts_again_alike() {
    let text = recipe(DROPOUT_MLP, SET);
    let root = temp("early");
    let whole = root.join("whole");
    run(&text, &whole, None);
    let killed = root.join("killed");
    assert_ne!(run(&text, &killed, Some(2)), 0);
    assert!(!killed.join("checkpoints").exists());
    let (code, err) = resume(&killed, &["--format", "text"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no checkpoint to resume from"), "{err}");
    assert_same_run(&whole, &killed, "killed before the first checkpoint");
    let (code, err) = resume(&killed, &["--format", "text"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("has finished; nothing to resume"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
