//! Benchmark: parse + check of a generated 5,000-line file (many recipes, kernels, extends
//! chains, explicit models). Prints the median of several runs and the lines per second.
//!
//! Run: `cargo run --release --example bench_check`

use std::path::Path;
use std::time::Instant;

fn generate(lines: usize) -> String {
    let mut out = String::new();
    let mut i = 0;
    while out.lines().count() < lines {
        // 38 lines per round.
        out.push_str(&format!(
            "// recipe {i}\nkernel shrink{i}(w; tau) = select(abs(w) > tau, w - sign(w) * tau * 0.5, 0)\n\
recipe r{i} {{\n  seed {i}\n  data synthetic_digits(train: 6000, test: 1000, val: 500)\n  model {{\n    input 1x28x28\n    conv 20 kernel: 5\n    relu\n    maxpool 2\n    conv 50 kernel: 5\n    relu\n    maxpool 2\n    flatten\n    dense 500\n    relu\n    dense 10\n  }}\n  sparsity {{\n    target 98%\n    distribution uniform\n    dense [first]\n    layer \"fc1\" 99%\n    mask magnitude\n    schedule cubic(start: 1 epoch, end: 60%, every: 10 steps)\n    update soft_threshold(kernel: shrink{i})\n  }}\n  train {{\n    epochs 20\n    batch 128\n    optimizer sgd(lr: 0.1, momentum: 0.9, weight_decay: 5e-4)\n    lr cosine(warmup: 1 epoch)\n  }}\n}}\nrecipe r{i}_99 extends r{i} {{ sparsity {{ target 99% }} }}\n"
        ));
        i += 1;
    }
    // Whole recipes only, so the file stays valid: a few lines over `lines`.
    out
}

fn main() {
    let text = generate(5_000);
    let lines = text.lines().count();
    let mut times = Vec::new();
    let mut recipes = 0;
    for _ in 0..15 {
        let t = Instant::now();
        let comp = sprsc::compile_source(Path::new("bench.sprs"), text.clone(), &[]);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        recipes = comp.checked.plans.len();
        assert!(comp.diagnostics.is_empty(), "the generated file must check clean: {:?}", comp.diagnostics.first());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!("parse + check: {lines} lines, {recipes} recipes");
    println!("  min {:.1} ms, median {median:.1} ms, max {:.1} ms", times[0], times[times.len() - 1]);
    println!("  {:.0} lines/s (median)", lines as f64 / (median / 1e3));
    println!("summary: check_5000_lines_ms={median:.1} target_ms=50");
}
