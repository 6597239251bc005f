//! Trains LeNet-300-100 or LeNet-5-Caffe on MNIST with SGD (lr 0.1, momentum 0.9, wd 1e-4,
//! cosine), dense or at a sparsity target with a GMP cubic ramp (`hard`) or ST-3
//! (`soft_threshold`, rescale). Prints the report and writes `runs/<model>-<update>-<target>`.
//!
//! Run: `cargo run --release --example train_mnist -- lenet300 30 0 hard /work/shared/data/mnist`
//! (model, epochs, target sparsity, hard|st3, data directory; all optional).

use sprsc::data::load;
use sprsc::exec::{run, RunOptions};
use sprsc::ir::plan::*;

mod common;
use common::{lenet300, lenet5_caffe, plan};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let model = match arg(0, "lenet300").as_str() {
        "lenet5" => lenet5_caffe(),
        _ => lenet300(),
    };
    let epochs: u64 = arg(1, "30").parse().expect("epochs");
    let target: f64 = arg(2, "0").parse().expect("target");
    let update = arg(3, "hard");
    let name = format!("{}-{update}-{target}", model.name);
    let mut p = plan(model, target, 128);
    p.recipe = name.clone();
    p.train.epochs = epochs;
    p.train.optimizer = Optimizer::Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 1e-4 };
    p.train.lr = LrSchedule::Cosine { warmup: Time::Steps(0) };
    p.train.eval_every = 5;
    p.data.path = Some(arg(4, "/work/shared/data/mnist"));
    if target > 0.0 {
        p.sparsity.mask = MaskMethod::Dense;
        p.sparsity.schedule =
            Schedule::Cubic { start: Time::Epochs(1.0), end: Time::Fraction(0.6), every: Time::Steps(1) };
        if update == "st3" {
            p.sparsity.update = Update::SoftThreshold {
                ste: Ste::Dense,
                rescale: true,
                scope: Scope::Global,
                sigma: false,
                kernel: "soft_threshold".into(),
            };
        }
    }
    let data = match load(&p.data, p.seed) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error[{}]: {e}", e.code());
            std::process::exit(1);
        }
    };
    let opts = RunOptions {
        out_dir: Some(format!("runs/{name}").into()),
        threads: None,
        quiet: false,
        max_steps: None,
        max_eval: None,
        kernels: Default::default(),
        resume: false,
    };
    if let Err(e) = run(&p, &data, &opts) {
        eprintln!("error[{}]: {e}", e.code());
        std::process::exit(1);
    }
}
