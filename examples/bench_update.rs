//! Per-parameter optimizer step: the JIT kernels the engine calls against the plain Rust loops
//! they replaced (copied here as the baseline), SGD with momentum and Adam, at the sizes of
//! LeNet-300-100's parameters (biases of 10-300, weights of 1,000-235,200) and beyond, on 1 and
//! 2 threads. Dense parameters: the unmasked kernel, the `hard` kernel with a ones mask, and the
//! plain loop; masked weights: the `hard` kernel and the plain loop.
//!
//! Run: `cargo run --release --example bench_update`. Times are the best mean of 7 batches.

mod timing;

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sprsc::kernels::update::raw_update_program;
use sprsc::kernels::{Kernel, Optimizer, UpdateKernel, UpdateRule};

const SGD: [f32; 3] = [0.01, 0.9, 1e-4];
const ADAM: [f32; 7] = [1e-3, 0.9, 0.999, 1e-8, 1e-4, 0.1, 0.0316];

fn time(f: impl FnMut()) -> Duration {
    timing::best_time(Duration::from_millis(10), f)
}

fn gate(mask: Option<&[f32]>, i: usize) -> f32 {
    mask.map_or(1.0, |m| m[i])
}

/// The engine's former SGD loop.
fn sgd_loop(w: &mut [f32], buf: &mut [f32], grad: &[f32], mask: Option<&[f32]>, [lr, mu, wd]: [f32; 3]) {
    for i in 0..w.len() {
        let m = gate(mask, i);
        let g = (grad[i] + wd * w[i]) * m;
        let b = mu * buf[i] + g;
        w[i] = (w[i] - lr * b) * m;
        buf[i] = b * m;
    }
}

/// The engine's former Adam loop (`bias1`, `bias2` the uncorrected `1 - beta^t`).
fn adam_loop(w: &mut [f32], m1: &mut [f32], m2: &mut [f32], grad: &[f32], mask: Option<&[f32]>, s: [f32; 7]) {
    let [lr, b1, b2, eps, wd, bias1, bias2_sqrt] = s;
    let bias2 = bias2_sqrt * bias2_sqrt;
    for i in 0..w.len() {
        let m = gate(mask, i);
        let g = (grad[i] + wd * w[i]) * m;
        m1[i] = b1 * m1[i] + (1.0 - b1) * g;
        m2[i] = b2 * m2[i] + (1.0 - b2) * g * g;
        w[i] = (w[i] - lr * (m1[i] / bias1) / ((m2[i] / bias2).sqrt() + eps)) * m;
        m1[i] *= m;
        m2[i] *= m;
    }
}

struct Buffers {
    w: Vec<f32>,
    g: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    ones: Vec<f32>,
    mask: Vec<f32>,
}

impl Buffers {
    fn new(n: usize) -> Buffers {
        let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
        let mut random = || (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect::<Vec<f32>>();
        let (w, g) = (random(), random());
        let mask = w.iter().map(|x| f32::from(x.abs() > 0.9)).collect();
        Buffers { w, g, m: vec![0.0; n], v: vec![0.0; n], ones: vec![1.0; n], mask }
    }
}

fn us(t: Duration) -> f64 {
    t.as_secs_f64() * 1e6
}

struct Kernels {
    dense: Kernel,
    hard: UpdateKernel,
}

fn row(n: usize, adam: bool, k: &Kernels) -> [Duration; 5] {
    let mut b = Buffers::new(n);
    let Buffers { w, g, m, v, ones, mask } = &mut b;
    let run = |kernel: &Kernel, arrays: &mut [&mut [f32]]| {
        let scalars: &[f32] = if adam { &ADAM } else { &SGD };
        kernel.run(arrays, scalars).expect("bench arguments match the kernel");
    };
    if adam {
        [
            time(|| run(&k.dense, &mut [w, g, m, v])),
            time(|| run(k.hard.kernel(), &mut [w, g, m, v, ones])),
            time(|| adam_loop(w, m, v, g, None, ADAM)),
            time(|| run(k.hard.kernel(), &mut [w, g, m, v, mask])),
            time(|| adam_loop(w, m, v, g, Some(mask), ADAM)),
        ]
    } else {
        [
            time(|| run(&k.dense, &mut [w, g, m])),
            time(|| run(k.hard.kernel(), &mut [w, g, m, ones])),
            time(|| sgd_loop(w, m, g, None, SGD)),
            time(|| run(k.hard.kernel(), &mut [w, g, m, mask])),
            time(|| sgd_loop(w, m, g, Some(mask), SGD)),
        ]
    }
}

fn main() {
    let compile = |o| Kernels {
        dense: Kernel::compile(raw_update_program(o, false).expect("program")).expect("compiles"),
        hard: UpdateKernel::compile(UpdateRule::Hard, o, None).expect("compiles"),
    };
    let sgd = compile(Optimizer::Sgd { nesterov: false });
    let adam = compile(Optimizer::Adam { decoupled_decay: false });
    println!("microseconds per call; dense: kernel / hard kernel + ones mask / loop; masked: hard kernel / loop");
    println!(
        "{:<5} {:>8} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "opt", "n", "threads", "dense jit", "ones mask", "loop", "hard jit", "loop", "dense x", "hard x"
    );
    for (name, kernels, is_adam) in [("sgd", &sgd, false), ("adam", &adam, true)] {
        for n in [10, 100, 300, 1_000, 30_000, 235_200, 2_000_000] {
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool");
                let t = pool.install(|| row(n, is_adam, kernels));
                println!(
                    "{:<5} {:>8} {:>7} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>8.2} {:>8.2}",
                    name,
                    n,
                    threads,
                    us(t[0]),
                    us(t[1]),
                    us(t[2]),
                    us(t[3]),
                    us(t[4]),
                    us(t[2]) / us(t[0]),
                    us(t[4]) / us(t[3])
                );
            }
        }
    }
}
