//! Step time of LeNet-300-100 and LeNet-5-Caffe (MNIST shapes) and ResNet-20 (CIFAR shapes) at
//! batch 128, dense and at several sparsities (uniform per layer, magnitude mask, `hard`
//! update, SGD with momentum and weight decay), on 1 and 2 threads, on random data.
//!
//! Run: `cargo run --release --example bench_step [-- MODEL...]` (models: lenet300_100,
//! lenet5_caffe, resnet20; default all). `BENCH_KERNELS=auto|dense|sparse` forces the
//! products (default auto, what `sprsc run` does); `BENCH_UPDATE=rigl|st3` measures masks that
//! move (a RigL swap before every step; ST-3's soft threshold) instead of fixed ones; `BENCH_STEPS` sets the steps per cell and
//! `BENCH_SPARSITY=0.5,0.7` runs those sparsities instead, `BENCH_THREADS=1` one thread count.
//! Prints one line per cell:
//! `step model=<name> sparsity=<s> threads=<t> ms=<median ms per step>`
//! and, after `#`, which layers ran sparse. `bench/step.sh` runs this beside PyTorch.
//!
//! Each cell is one `exec::run` of the recipe (set-up, then `steps` training steps, then an
//! evaluation of 128 examples); the time is the median of the training steps as the engine
//! measures them (`summary.json`'s `step_ms`): mask and layout rebuilds included. Plots are
//! off: a run samples its plots' sparsity curve 200 times whatever its length (a pass over the
//! masked weights each), which in a bench of 60 steps is every step (about 0.09 ms of
//! LeNet-300-100's step) and in a real run of thousands of steps noise.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sprsc::data::{DataSet, Split};
use sprsc::exec::{run, LayerKernels, RunOptions};
use sprsc::ir::plan::Plan;

const BATCH: usize = 128;

/// A model of the bench: zoo name, data set (for its shapes), input shape, sparsities, steps.
type Cell = (&'static str, &'static str, [usize; 3], &'static [f64], u64);

fn random_data(shape: [usize; 3], train: usize) -> DataSet {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let n: usize = shape.iter().product();
    let mut split = |len: usize| Split {
        images: (0..len * n).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        labels: (0..len).map(|i| (i % 10) as u8).collect(),
        len,
    };
    let (train, test) = (split(train), split(BATCH));
    DataSet { name: "random".into(), shape, classes: 10, train, val: None, test, files: vec![], note: None }
}

/// The bench's recipe: `model` at `sparsity` (uniform over the masked layers) with `update`.
fn plan(model: &str, data: &str, sparsity: f64, epochs: u64, update: &str) -> Plan {
    let (mask, update) = match update {
        // Worst cases for masks that move: a RigL swap before every step (a layout rebuild
        // each step, and the dense weight gradient for growth), and ST-3's soft threshold (the
        // effective weights' zeros move every step; the straight-through gradient is dense).
        "rigl" => ("magnitude", "prune_regrow(every: 1 steps, drop: 30%, grow: gradient)"),
        "st3" => ("dense", "soft_threshold"),
        _ => ("magnitude", "hard"),
    };
    let sparsity = if sparsity == 0.0 {
        String::new()
    } else {
        format!(
            "  sparsity {{\n    target {}%\n    distribution uniform\n    mask {mask}\n    update {update}\n  }}\n",
            sparsity * 100.0
        )
    };
    let text = format!(
        "recipe bench {{\n  data {data}\n  model {model}\n{sparsity}  train {{\n    epochs {epochs}\n    batch {BATCH}\n    \
         optimizer sgd(lr: 0.01, momentum: 0.9, weight_decay: 1e-4)\n  }}\n  output {{ plots false }}\n}}\n"
    );
    let comp = sprsc::compile_source(Path::new("bench.sprs"), text, &[]);
    assert!(!comp.has_errors(), "bench recipe: {:?}", comp.diagnostics.first());
    comp.checked.plans.into_iter().next().expect("one recipe")
}

fn main() {
    let kernels = match std::env::var("BENCH_KERNELS").as_deref() {
        Ok("dense") => LayerKernels::Dense,
        Ok("sparse") => LayerKernels::Sparse,
        _ => LayerKernels::Auto,
    };
    let update = std::env::var("BENCH_UPDATE").unwrap_or_else(|_| "hard".into());
    let chosen: Vec<String> = std::env::args().skip(1).collect();
    let models: [Cell; 3] = [
        ("lenet300_100", "mnist", [1, 28, 28], &[0.0, 0.9, 0.98, 0.99, 0.999], 60),
        ("lenet5_caffe", "mnist", [1, 28, 28], &[0.0, 0.9, 0.98, 0.99, 0.999], 25),
        ("resnet20", "cifar10", [3, 32, 32], &[0.0, 0.9, 0.99], 8),
    ];
    let dir = std::env::temp_dir().join(format!("sprsc-bench-step-{}", std::process::id()));
    for (model, data, shape, sparsities, steps) in models {
        if !chosen.is_empty() && !chosen.iter().any(|c| c == model) {
            continue;
        }
        let steps = std::env::var("BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(steps);
        // A few distinct batches, cycled through as many epochs as the steps need.
        let batches = 16;
        let set = random_data(shape, BATCH * batches);
        let epochs = steps.div_ceil(batches as u64);
        let listed: Option<Vec<f64>> =
            std::env::var("BENCH_SPARSITY").ok().map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect());
        for &s in listed.as_deref().unwrap_or(sparsities) {
            let p = plan(model, data, s, epochs, &update);
            let threads: Vec<usize> = std::env::var("BENCH_THREADS")
                .ok()
                .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
                .unwrap_or_else(|| vec![1, 2]);
            for threads in threads {
                let opts = RunOptions {
                    out_dir: Some(dir.clone()),
                    threads: Some(threads),
                    quiet: true,
                    max_steps: Some(steps),
                    max_eval: Some(BATCH),
                    kernels,
                    resume: false,
                };
                let summary = run(&p, &set, &opts).expect("bench run");
                println!("step model={model} sparsity={s} threads={threads} ms={:.3}", summary.step_ms);
                let sparse: Vec<&str> =
                    summary.layers.iter().filter(|l| l.sparse_steps > 0).map(|l| l.name.as_str()).collect();
                println!("# sparse kernels: {}", if sparse.is_empty() { "none".into() } else { sparse.join(" ") });
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
