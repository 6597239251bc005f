//! Benchmark of the fused ST-3 update (SGD momentum + weight decay + mask * soft-threshold *
//! scale) against the same work in separate plain-Rust passes and a STREAM triad measured in
//! the same run, on 1 and 2 threads; JIT compile time per kernel; where 2 threads start to pay.
//!
//! Run: `cargo run --release --example bench_kernels`. The last line is
//! `summary: fused_vs_triad=<fused GB/s / triad GB/s> fused_vs_unfused=<unfused time / fused
//! time>`, both at 1e7 elements on 1 thread.

mod timing;

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use sprsc::kernels::update::update_program;
use sprsc::kernels::{
    score_program, sparsity_threshold, Kernel, KernelModule, Optimizer, Score, UpdateKernel, UpdateRule,
};

const CHUNK: usize = 1 << 16;
const LR: f32 = 0.1;
const MU: f32 = 0.9;
const WD: f32 = 1e-4;
const TAU: f32 = 0.05;
const SCALE: f32 = 1.1;

fn time(f: impl FnMut()) -> Duration {
    timing::best_time(Duration::from_millis(20), f)
}

fn gbps(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

/// `out[i] = f(out[i], a[i])`, over rayon chunks when `par`.
fn update(out: &mut [f32], a: &[f32], par: bool, f: impl Fn(f32, f32) -> f32 + Sync) {
    let body = |o: &mut [f32], a: &[f32]| o.iter_mut().zip(a).for_each(|(o, a)| *o = f(*o, *a));
    if par {
        out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).for_each(|(o, a)| body(o, a));
    } else {
        body(out, a);
    }
}

/// `out[i] = f(a[i], b[i])`, over rayon chunks when `par`.
fn map2(out: &mut [f32], a: &[f32], b: &[f32], par: bool, f: impl Fn(f32, f32) -> f32 + Sync) {
    let body = |o: &mut [f32], a: &[f32], b: &[f32]| {
        o.iter_mut().zip(a).zip(b).for_each(|((o, a), b)| *o = f(*a, *b));
    };
    if par {
        let ins = a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK));
        out.par_chunks_mut(CHUNK).zip(ins).for_each(|(o, (a, b))| body(o, a, b));
    } else {
        body(out, a, b);
    }
}

struct Layer {
    raw: Vec<f32>,
    eff: Vec<f32>,
    g: Vec<f32>,
    m: Vec<f32>,
    mask: Vec<f32>,
    tmp: Vec<f32>,
}

impl Layer {
    fn new(n: usize) -> Layer {
        let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
        let mut random = || (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect::<Vec<f32>>();
        let (raw, g, m) = (random(), random(), random());
        let mask = raw.iter().map(|x| if x.abs() > 0.5 { 1.0 } else { 0.0 }).collect();
        Layer { raw, eff: vec![0.0; n], g, m, mask, tmp: vec![0.0; n] }
    }

    fn fused(&mut self, kernel: &UpdateKernel) {
        let arrays: &mut [&mut [f32]] = &mut [&mut self.raw, &mut self.eff, &mut self.g, &mut self.m, &mut self.mask];
        kernel.run(arrays, &[LR, MU, WD, TAU, SCALE]).expect("bench arguments match the kernel");
    }

    /// The same update as five passes; returns the bytes they move.
    fn unfused(&mut self, par: bool) -> usize {
        map2(&mut self.tmp, &self.g, &self.raw, par, |g, r| g + WD * r);
        update(&mut self.m, &self.tmp, par, |m, g| MU * m + g);
        update(&mut self.raw, &self.m, par, |r, m| r - LR * m);
        update(&mut self.eff, &self.raw, par, |_, r| r.signum() * (r.abs() - TAU).max(0.0));
        update(&mut self.eff, &self.mask, par, |e, k| k * e * SCALE);
        4 * self.raw.len() * (3 + 3 + 3 + 2 + 3)
    }
}

fn triad(a: &mut [f32], b: &[f32], c: &[f32], par: bool) {
    map2(a, b, c, par, |b, c| b + 3.0 * c);
}

struct Row {
    n: usize,
    threads: usize,
    fused: f64,
    unfused: f64,
    triad: f64,
    speedup: f64,
}

fn measure(n: usize, threads: usize, kernel: &UpdateKernel) -> Row {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool");
    pool.install(|| {
        let par = threads > 1 && n >= sprsc::kernels::PARALLEL_THRESHOLD;
        let mut layer = Layer::new(n);
        let fused_bytes = kernel.program().bytes_per_element() * n;
        let t_fused = time(|| layer.fused(kernel));
        let unfused_bytes = layer.unfused(par);
        let t_unfused = time(|| {
            layer.unfused(par);
        });
        let (mut a, b, c) = (vec![0.0f32; n], vec![1.0f32; n], vec![2.0f32; n]);
        let t_triad = time(|| triad(&mut a, &b, &c, par));
        Row {
            n,
            threads,
            fused: gbps(fused_bytes, t_fused),
            unfused: gbps(unfused_bytes, t_unfused),
            triad: gbps(12 * n, t_triad),
            speedup: t_unfused.as_secs_f64() / t_fused.as_secs_f64(),
        }
    })
}

fn compile_times() {
    let rules = [UpdateRule::Hard, UpdateRule::SoftThreshold];
    let optimizers = [
        Optimizer::Sgd { nesterov: false },
        Optimizer::Sgd { nesterov: true },
        Optimizer::Adam { decoupled_decay: false },
        Optimizer::Adam { decoupled_decay: true },
    ];
    println!("\ncompile time per kernel (own module each; best of 5):");
    let mut programs = Vec::new();
    for rule in rules {
        for optimizer in optimizers {
            let program = update_program(rule, optimizer, None).expect("update program");
            let t = (0..5)
                .map(|_| {
                    let start = Instant::now();
                    Kernel::compile(program.clone()).expect("compiles");
                    start.elapsed()
                })
                .min()
                .unwrap_or_default();
            println!("  {:<44} {:>7.3} ms", program.name, t.as_secs_f64() * 1e3);
            programs.push(program);
        }
    }
    programs.push(score_program(Score::Snip).expect("score program"));
    let count = programs.len();
    let t = (0..5)
        .map(|_| {
            let start = Instant::now();
            KernelModule::compile(programs.clone()).expect("compiles");
            start.elapsed()
        })
        .min()
        .unwrap_or_default();
    let per = t.as_secs_f64() * 1e3 / count as f64;
    println!("  all {count} in one module: {per:.3} ms per kernel");
}

/// Where a second thread starts to help: one call vs the same call split in two halves.
fn parallel_crossover(kernel: &UpdateKernel) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("rayon pool");
    println!("\n2-thread crossover (fused kernel; one call vs two halves on 2 threads):");
    for shift in [12, 13, 14, 15, 16, 17, 18, 20] {
        let n = 1usize << shift;
        let mut layer = Layer::new(n);
        let one = time(|| layer.fused(kernel));
        let two = pool.install(|| time(|| split_in_two(&mut layer, kernel)));
        println!("  n = 2^{shift:<2}  1 thread {:>9.1} us  2 threads {:>9.1} us", us(one), us(two));
    }
}

fn us(t: Duration) -> f64 {
    t.as_secs_f64() * 1e6
}

fn split_in_two(layer: &mut Layer, kernel: &UpdateKernel) {
    let half = layer.raw.len() / 8 * 4;
    let (r0, r1) = layer.raw.split_at_mut(half);
    let (e0, e1) = layer.eff.split_at_mut(half);
    let (g0, g1) = layer.g.split_at_mut(half);
    let (m0, m1) = layer.m.split_at_mut(half);
    let (k0, k1) = layer.mask.split_at_mut(half);
    let scalars = [LR, MU, WD, TAU, SCALE];
    let k = kernel.kernel();
    rayon::join(
        || k.run_serial(&mut [r0, e0, g0, m0, k0], &scalars).expect("arguments match"),
        || k.run_serial(&mut [r1, e1, g1, m1, k1], &scalars).expect("arguments match"),
    );
}

/// Exact 98%-sparsity threshold of 1e7 weights (10 slices): radix select vs a sort-free
/// `select_nth_unstable` on a copy of the keys.
fn topk_times() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let w: Vec<f32> = (0..10_000_000).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let slices: Vec<&[f32]> = w.chunks(1_000_000).collect();
    println!("\nexact top-k threshold, 1e7 weights in 10 slices, 98% sparsity:");
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool");
        let t = pool.install(|| {
            time(|| {
                std::hint::black_box(sparsity_threshold(&slices, 0.98));
            })
        });
        println!("  radix select, {threads} thread(s): {:>8.2} ms", t.as_secs_f64() * 1e3);
    }
    let t = time(|| {
        let mut keys: Vec<u32> = w.iter().map(|x| x.to_bits() & 0x7fff_ffff).collect();
        let k = keys.len() / 50;
        std::hint::black_box(*keys.select_nth_unstable(k).1);
    });
    println!("  select_nth_unstable (copy + select): {:>8.2} ms", t.as_secs_f64() * 1e3);
}

fn main() {
    let kernel = UpdateKernel::compile(UpdateRule::SoftThreshold, Optimizer::Sgd { nesterov: false }, None)
        .expect("fused kernel compiles");
    println!("{}\n", kernel.program());
    println!("GB/s counts bytes actually read + written (fused 28 B/elem, unfused 56 B/elem, triad 12 B/elem)");
    println!(
        "{:>10} {:>7} {:>12} {:>12} {:>12} {:>10} {:>14}",
        "n", "threads", "fused GB/s", "unfused GB/s", "triad GB/s", "vs triad", "vs unfused (t)"
    );
    let mut summary = None;
    for n in [10_000, 1_000_000, 10_000_000] {
        for threads in [1, 2] {
            let r = measure(n, threads, &kernel);
            let vs_triad = r.fused / r.triad;
            println!(
                "{:>10} {:>7} {:>12.1} {:>12.1} {:>12.1} {:>10.2} {:>14.2}",
                r.n, r.threads, r.fused, r.unfused, r.triad, vs_triad, r.speedup
            );
            if n == 10_000_000 && threads == 1 {
                summary = Some((vs_triad, r.speedup));
            }
        }
    }
    parallel_crossover(&kernel);
    compile_times();
    topk_times();
    let (vs_triad, vs_unfused) = summary.unwrap_or((f64::NAN, f64::NAN));
    println!("summary: fused_vs_triad={vs_triad:.2} fused_vs_unfused={vs_unfused:.2}");
}
