//! Step time of LeNet-300-100 and LeNet-5-Caffe at batch 128 on 1 and 2 threads, dense and
//! at 98% sparsity (global magnitude mask, `hard` update), on random 1x28x28 data.
//!
//! Run: `cargo run --release --example bench_step`. Each cell times 60 steps minus 10 steps
//! (so set-up and the evaluations cancel out), through the public `exec::run`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sprsc::data::{DataSet, Split};
use sprsc::exec::{run, RunOptions};
use sprsc::ir::plan::Plan;

mod common;
use common::{lenet300, lenet5_caffe, plan};

const BATCH: usize = 128;

fn random_data(train: usize) -> DataSet {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut split = |len: usize| Split {
        images: (0..len * 784).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        labels: (0..len).map(|i| (i % 10) as u8).collect(),
        len,
    };
    let (train, test) = (split(train), split(BATCH));
    DataSet {
        name: "random".into(),
        shape: [1, 28, 28],
        classes: 10,
        train,
        val: None,
        test,
        files: vec![],
        note: None,
    }
}

/// Milliseconds per training step.
fn step_ms(plan: &Plan, data: &DataSet, threads: usize) -> f64 {
    let dir = std::env::temp_dir().join("sprsc-bench");
    let time = |steps| {
        let opts = RunOptions {
            out_dir: Some(dir.clone()),
            threads: Some(threads),
            quiet: true,
            max_steps: Some(steps),
            max_eval: None,
            resume: false,
        };
        run(plan, data, &opts).expect("bench run").seconds
    };
    (time(60) - time(10)) / 50.0 * 1e3
}

fn main() {
    let data = random_data(BATCH * 60);
    println!("{:<14} {:>7} {:>12} {:>12} {:>8}", "model", "threads", "dense ms", "98% ms", "ratio");
    for model in [lenet300(), lenet5_caffe()] {
        for threads in [1, 2] {
            let dense = step_ms(&plan(model.clone(), 0.0, BATCH), &data, threads);
            let sparse = step_ms(&plan(model.clone(), 0.98, BATCH), &data, threads);
            println!("{:<14} {:>7} {:>12.2} {:>12.2} {:>8.2}", model.name, threads, dense, sparse, sparse / dense);
        }
    }
}
