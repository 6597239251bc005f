//! JIT kernels against the reference interpreter, bit for bit (any NaN equals any NaN), on
//! random data, edge values and every length 0..=17 plus a large odd one; the parallel driver
//! against one thread; top-k against sorting; and errors instead of panics.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sprsc::diagnostics::Span;
use sprsc::ir::kernel::{BinOp, KExpr, KernelDef, UnOp};
use sprsc::kernels::update::{
    effective_program, masked_scaled_program, raw_update_program, remask_program, update_program,
};
use sprsc::kernels::{
    kth_largest_abs, mask_by_threshold, prelude, score_program, sparsity_threshold, Kernel, KernelError, KernelModule,
    Optimizer, Program, Score, UpdateKernel, UpdateRule,
};

const EDGES: [f32; 20] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    -2.5,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    -f32::NAN,
    1e-45,
    -1e-45,
    1e-40,
    f32::MIN_POSITIVE,
    -f32::MIN_POSITIVE,
    f32::MAX,
    f32::MIN,
    f32::EPSILON,
    3.0e38,
    -7.25,
];

const LARGE: usize = 100_003;

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn assert_same(what: &str, jit: &[Vec<f32>], reference: &[Vec<f32>]) {
    for (a, (x, y)) in jit.iter().zip(reference).enumerate() {
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            assert!(
                same(*p, *q),
                "{what}: array {a} element {i} (n = {}): jit {p:e} ({:#x}) vs reference {q:e} ({:#x})",
                x.len(),
                p.to_bits(),
                q.to_bits()
            );
        }
    }
}

/// Random values with edge values mixed in (every fifth element, on average).
fn random_array(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| if rng.gen_bool(0.2) { EDGES[rng.gen_range(0..EDGES.len())] } else { rng.gen_range(-3.0f32..3.0) })
        .collect()
}

fn mask_array(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| if rng.gen_bool(0.5) { 1.0 } else { 0.0 }).collect()
}

/// Runs `kernel` natively (one thread) and in the interpreter on copies of `arrays`.
fn check(kernel: &Kernel, arrays: &[Vec<f32>], scalars: &[f32]) {
    let mut jit = arrays.to_vec();
    let mut reference = arrays.to_vec();
    let mut views: Vec<&mut [f32]> = jit.iter_mut().map(|a| a.as_mut_slice()).collect();
    kernel.run_serial(&mut views, scalars).unwrap();
    let mut views: Vec<&mut [f32]> = reference.iter_mut().map(|a| a.as_mut_slice()).collect();
    kernel.interpret(&mut views, scalars).unwrap();
    assert_same(&kernel.program().name, &jit, &reference);
}

/// Inputs for every array of `program`, `n` long: random data with edges, 0/1 for `mask`.
fn arrays_for(program: &Program, rng: &mut ChaCha8Rng, n: usize) -> Vec<Vec<f32>> {
    program.arrays.iter().map(|name| if name == "mask" { mask_array(rng, n) } else { random_array(rng, n) }).collect()
}

/// Every length 0..=17 and `LARGE`, random data with edges; arrays named `mask` get 0/1.
fn check_lengths(kernel: &Kernel, scalars: &[f32], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for n in (0..=17).chain([LARGE]) {
        let arrays = arrays_for(kernel.program(), &mut rng, n);
        check(kernel, &arrays, scalars);
    }
}

/// All combinations of edge values over `arity` arrays (20^arity elements, odd tail included).
fn edge_grid(arity: usize) -> Vec<Vec<f32>> {
    let n = EDGES.len().pow(arity as u32);
    (0..arity).map(|a| (0..n).map(|i| EDGES[(i / EDGES.len().pow(a as u32)) % EDGES.len()]).collect()).collect()
}

fn def(arrays: usize, scalars: usize, body: KExpr) -> KernelDef {
    KernelDef {
        name: "t".into(),
        arrays: (0..arrays).map(|i| format!("a{i}")).collect(),
        scalars: (0..scalars).map(|i| format!("s{i}")).collect(),
        body,
        span: Span::default(),
    }
}

fn un(op: UnOp, a: KExpr) -> KExpr {
    KExpr::Unary(op, Box::new(a))
}

fn bin(op: BinOp, a: KExpr, b: KExpr) -> KExpr {
    KExpr::Binary(op, Box::new(a), Box::new(b))
}

fn with_output(mut arrays: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    let n = arrays.first().map_or(0, |a| a.len());
    arrays.push(vec![42.0; n]);
    arrays
}

const UNARY: [UnOp; 6] = [UnOp::Neg, UnOp::Abs, UnOp::Sign, UnOp::Sqrt, UnOp::Exp, UnOp::Log];
const BINARY: [BinOp; 12] = [
    BinOp::Add,
    BinOp::Sub,
    BinOp::Mul,
    BinOp::Div,
    BinOp::Min,
    BinOp::Max,
    BinOp::Lt,
    BinOp::Le,
    BinOp::Gt,
    BinOp::Ge,
    BinOp::Eq,
    BinOp::Ne,
];

#[test]
fn unary_ops_match_reference() {
    for op in UNARY {
        let kernel = Kernel::from_def(&def(1, 0, un(op, KExpr::Array(0)))).unwrap();
        check(&kernel, &with_output(edge_grid(1)), &[]);
        check_lengths(&kernel, &[], 1);
    }
}

#[test]
fn binary_ops_match_reference() {
    for op in BINARY {
        let kernel = Kernel::from_def(&def(2, 0, bin(op, KExpr::Array(0), KExpr::Array(1)))).unwrap();
        check(&kernel, &with_output(edge_grid(2)), &[]);
        check_lengths(&kernel, &[], 2);
    }
}

#[test]
fn scalar_and_constant_operands_match_reference() {
    for op in BINARY {
        for (i, &c) in EDGES.iter().enumerate() {
            // Array op scalar, constant op array, and an invariant subexpression hoisted.
            let invariant = bin(BinOp::Mul, KExpr::Scalar(0), bin(BinOp::Add, KExpr::Scalar(0), KExpr::Const(c)));
            let body = bin(op, bin(op, KExpr::Array(0), KExpr::Scalar(0)), bin(op, KExpr::Const(c), invariant));
            let kernel = Kernel::from_def(&def(1, 1, body)).unwrap();
            check(&kernel, &with_output(edge_grid(1)), &[EDGES[(i * 7) % EDGES.len()]]);
        }
    }
}

#[test]
fn kernels_without_input_arrays_fill_their_output() {
    let twice = Kernel::from_def(&def(0, 1, bin(BinOp::Mul, KExpr::Scalar(0), KExpr::Const(2.0)))).unwrap();
    check_lengths(&twice, &[1.5], 12);
    let mut out = vec![0.0; 9];
    twice.run(&mut [&mut out], &[1.5]).unwrap();
    assert_eq!(out, vec![3.0; 9]);
    let constant = Kernel::from_def(&def(0, 0, un(UnOp::Exp, KExpr::Const(1.0)))).unwrap();
    check_lengths(&constant, &[], 13);
}

#[test]
fn select_matches_reference() {
    let body = KExpr::Select(Box::new(KExpr::Array(0)), Box::new(KExpr::Array(1)), Box::new(KExpr::Array(2)));
    let kernel = Kernel::from_def(&def(3, 0, body)).unwrap();
    check(&kernel, &with_output(edge_grid(3)), &[]);
    check_lengths(&kernel, &[], 3);
}

#[test]
fn prelude_kernels_match_reference() {
    let st = Kernel::from_def(&prelude::soft_threshold()).unwrap();
    for &tau in &EDGES {
        check(&st, &with_output(edge_grid(1)), &[tau]);
    }
    check_lengths(&st, &[0.3], 4);
    for score in [Score::Magnitude, Score::Snip] {
        let kernel = Kernel::compile(score_program(score).unwrap()).unwrap();
        check(&kernel, &with_output(edge_grid(kernel.program().arrays.len() - 1)), &[]);
        check_lengths(&kernel, &[], 5);
    }
}

fn all_updates() -> Vec<(UpdateRule, Optimizer)> {
    let optimizers = [
        Optimizer::Sgd { nesterov: false },
        Optimizer::Sgd { nesterov: true },
        Optimizer::Adam { decoupled_decay: false },
        Optimizer::Adam { decoupled_decay: true },
    ];
    [UpdateRule::Hard, UpdateRule::SoftThreshold]
        .into_iter()
        .flat_map(|r| optimizers.into_iter().map(move |o| (r, o)))
        .collect()
}

fn update_scalars(kernel: &UpdateKernel) -> Vec<f32> {
    program_scalars(kernel.program())
}

/// Typical values of every scalar an update, ST-3 or masking program takes.
fn program_scalars(program: &Program) -> Vec<f32> {
    program
        .scalars
        .iter()
        .map(|name| match name.as_str() {
            "lr" => 0.1,
            "momentum" => 0.9,
            "weight_decay" => 5e-4,
            "beta1" => 0.9,
            "beta2" => 0.999,
            "eps" => 1e-8,
            "bias_correction1" => 1.0 - 0.9f32.powi(3),
            "bias_correction2_sqrt" => (1.0 - 0.999f32.powi(3)).sqrt(),
            "tau" => 0.05,
            "scale" => 1.25,
            _ => panic!("unexpected scalar {name}"),
        })
        .collect()
}

#[test]
fn update_kernels_match_reference() {
    for (rule, optimizer) in all_updates() {
        let kernel = UpdateKernel::compile(rule, optimizer, None).unwrap();
        let scalars = update_scalars(&kernel);
        check_lengths(kernel.kernel(), &scalars, 6);
        // Only edge values, in random combinations across the arrays.
        let mut rng = ChaCha8Rng::seed_from_u64(16);
        let arity = kernel.program().arrays.len();
        let edges: Vec<Vec<f32>> =
            (0..arity).map(|_| (0..4001).map(|_| EDGES[rng.gen_range(0..EDGES.len())]).collect()).collect();
        check(kernel.kernel(), &edges, &scalars);
    }
}

/// The programs the engine runs besides the fused updates: the unmasked and gated optimizer
/// steps, ST-3's effective weights (prelude and a user threshold), re-masking, masked magnitudes.
fn engine_programs() -> Vec<Program> {
    let optimizers = all_updates().into_iter().filter(|(r, _)| *r == UpdateRule::Hard).map(|(_, o)| o);
    let mut programs: Vec<Program> =
        optimizers.flat_map(|o| [false, true].map(|gated| raw_update_program(o, gated).unwrap())).collect();
    let hard_threshold = KernelDef {
        name: "hard_threshold".into(),
        ..def(
            1,
            1,
            KExpr::Select(
                Box::new(bin(BinOp::Gt, un(UnOp::Abs, KExpr::Array(0)), KExpr::Scalar(0))),
                Box::new(KExpr::Array(0)),
                Box::new(KExpr::Const(0.0)),
            ),
        )
    };
    programs.push(effective_program(&prelude::soft_threshold()).unwrap());
    programs.push(effective_program(&hard_threshold).unwrap());
    programs.extend([remask_program(false).unwrap(), remask_program(true).unwrap()]);
    programs.push(masked_scaled_program().unwrap());
    programs
}

#[test]
fn engine_programs_match_reference() {
    let programs = engine_programs();
    assert_eq!(programs.len(), 13);
    let module = KernelModule::compile(programs).unwrap();
    for kernel in module.kernels() {
        let scalars = program_scalars(kernel.program());
        check_lengths(kernel, &scalars, 12);
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let arity = kernel.program().arrays.len();
        let edges: Vec<Vec<f32>> =
            (0..arity).map(|_| (0..4001).map(|_| EDGES[rng.gen_range(0..EDGES.len())]).collect()).collect();
        check(kernel, &edges, &scalars);
    }
}

#[test]
fn gated_raw_update_masks_the_gradient_not_the_state() {
    let p = raw_update_program(Optimizer::Adam { decoupled_decay: true }, true).unwrap();
    let expected = "\
fused update_gated_adamw(raw, g, m, v, eff; lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2_sqrt) {
  let gate = (eff != 0.0)
  let grad = (gate * g)
  let m_new = ((beta1 * m) + ((1.0 - beta1) * grad))
  let v_new = ((beta2 * v) + ((1.0 - beta2) * (grad * grad)))
  m <- m_new
  v <- v_new
  raw <- ((raw * (1.0 - (gate * (lr * weight_decay)))) - ((lr / bias_correction1) * (m_new / ((sqrt(v_new) / bias_correction2_sqrt) + eps))))
}";
    assert_eq!(p.to_string(), expected);
    let (mut raw, mut g, mut m, mut eff) = (vec![1.0, 1.0], vec![1.0, 1.0], vec![0.5, 0.5], vec![0.0, 2.0]);
    let sgd = Kernel::compile(raw_update_program(Optimizer::Sgd { nesterov: false }, true).unwrap()).unwrap();
    sgd.run(&mut [&mut raw, &mut g, &mut m, &mut eff], &[0.1, 0.9, 0.0]).unwrap();
    assert_eq!(m, vec![0.45, 0.9f32 * 0.5 + 1.0], "momentum decays but is not masked");
    assert_eq!(raw, vec![1.0 - 0.1 * 0.45f32, 1.0 - 0.1 * (0.9f32 * 0.5 + 1.0)]);
}

#[test]
fn update_kernels_wrap_only_their_own_program() {
    let sgd = Optimizer::Sgd { nesterov: false };
    let programs = vec![update_program(UpdateRule::Hard, sgd, None).unwrap(), raw_update_program(sgd, false).unwrap()];
    let kernels = KernelModule::compile(programs).unwrap().into_kernels();
    let hard = UpdateKernel::from_kernel(UpdateRule::Hard, sgd, None, kernels[0].clone()).unwrap();
    assert_eq!(hard.program().name, "update_hard_sgd");
    let wrong = UpdateKernel::from_kernel(UpdateRule::Hard, sgd, None, kernels[1].clone());
    assert!(matches!(wrong, Err(KernelError::BadProgram { .. })));
}

#[test]
fn hard_sgd_follows_its_formula() {
    let kernel = UpdateKernel::compile(UpdateRule::Hard, Optimizer::Sgd { nesterov: false }, None).unwrap();
    let (mut w, mut g, mut m, mut mask) = (vec![1.0, 2.0], vec![0.5, 0.5], vec![0.25, 0.25], vec![1.0, 0.0]);
    kernel.run(&mut [&mut w, &mut g, &mut m, &mut mask], &[0.1, 0.9, 0.0]).unwrap();
    let m0 = 0.9f32 * 0.25 + 0.5;
    assert_eq!(m, vec![m0, 0.0]);
    assert_eq!(w, vec![1.0 - 0.1 * m0, 0.0]);
    assert_eq!(g, vec![0.5, 0.5], "inputs that are only read stay unchanged");
}

#[test]
fn user_threshold_is_inlined() {
    // kernel hard_threshold(w; tau) = select(abs(w) > tau, w, 0)
    let body = KExpr::Select(
        Box::new(bin(BinOp::Gt, un(UnOp::Abs, KExpr::Array(0)), KExpr::Scalar(0))),
        Box::new(KExpr::Array(0)),
        Box::new(KExpr::Const(0.0)),
    );
    let threshold = KernelDef { name: "hard_threshold".into(), ..def(1, 1, body) };
    let kernel =
        UpdateKernel::compile(UpdateRule::SoftThreshold, Optimizer::Sgd { nesterov: true }, Some(&threshold)).unwrap();
    assert!(kernel.program().to_string().contains("select((abs(raw_new) > tau), raw_new, 0.0)"));
    check_lengths(kernel.kernel(), &update_scalars(&kernel), 7);
}

#[test]
fn program_text_is_stable() {
    let p = update_program(UpdateRule::Hard, Optimizer::Sgd { nesterov: false }, None).unwrap();
    let expected = "\
fused update_hard_sgd(w, g, m, mask; lr, momentum, weight_decay) {
  let grad = (mask * (g + (weight_decay * w)))
  let m_new = (mask * ((momentum * m) + grad))
  m <- m_new
  w <- (mask * (w - (lr * m_new)))
}";
    assert_eq!(p.to_string(), expected);
}

#[test]
fn parallel_equals_single_thread() {
    let pool = |threads| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for (rule, optimizer) in all_updates() {
        let kernel = UpdateKernel::compile(rule, optimizer, None).unwrap();
        let scalars = update_scalars(&kernel);
        let n = 1_000_003;
        let arrays = arrays_for(kernel.program(), &mut rng, n);
        let run = |threads| {
            let mut out = arrays.clone();
            let mut views: Vec<&mut [f32]> = out.iter_mut().map(|a| a.as_mut_slice()).collect();
            pool(threads).install(|| kernel.run(&mut views, &scalars)).unwrap();
            out
        };
        assert_same("parallel", &run(2), &run(1));
    }
}

#[test]
fn rows_use_their_own_scale() {
    let kernel = UpdateKernel::compile(UpdateRule::SoftThreshold, Optimizer::Sgd { nesterov: false }, None).unwrap();
    let scalars = update_scalars(&kernel);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (row_len, rows) in [(3, 5), (784, 300), (1, 0)] {
        let n = row_len * rows;
        let arrays: Vec<Vec<f32>> = (0..5).map(|_| random_array(&mut rng, n)).collect();
        let scales: Vec<f32> = (0..rows).map(|r| 0.5 + r as f32).collect();
        let mut expected = arrays.clone();
        for (r, scale) in scales.iter().enumerate() {
            let mut row: Vec<&mut [f32]> =
                expected.iter_mut().map(|a| &mut a[r * row_len..(r + 1) * row_len]).collect();
            let mut s = scalars.clone();
            s[4] = *scale;
            kernel.kernel().interpret(&mut row, &s).unwrap();
        }
        for threads in [1, 2] {
            let mut out = arrays.clone();
            let mut views: Vec<&mut [f32]> = out.iter_mut().map(|a| a.as_mut_slice()).collect();
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| kernel.run_rows(&mut views, &scalars, row_len, &scales)).unwrap();
            assert_same("rows", &out, &expected);
        }
    }
    let mut a: Vec<Vec<f32>> = (0..5).map(|_| vec![0.0; 10]).collect();
    let mut views: Vec<&mut [f32]> = a.iter_mut().map(|a| a.as_mut_slice()).collect();
    let r = kernel.run_rows(&mut views, &scalars, 3, &[1.0, 1.0, 1.0]);
    assert!(matches!(r, Err(KernelError::Length { .. })));
    let hard = UpdateKernel::compile(UpdateRule::Hard, Optimizer::Sgd { nesterov: false }, None).unwrap();
    assert!(hard.run_rows(&mut views[..4], &[0.1, 0.9, 0.0], 5, &[1.0, 1.0]).is_err());
}

#[test]
fn module_compiles_many_kernels() {
    let programs: Vec<Program> = all_updates().into_iter().map(|(r, o)| update_program(r, o, None).unwrap()).collect();
    let module = KernelModule::compile(programs).unwrap();
    assert_eq!(module.kernels().len(), 8);
    let kept = module.kernels()[3].clone();
    drop(module);
    // A kernel outlives its module value: the code stays mapped while any handle lives.
    check_lengths(&kept, &[0.1, 0.9, 0.999, 1e-8, 1e-4, 0.5, 0.5], 9);
}

// ---- errors, not panics ----

#[test]
fn bad_indices_and_arities_are_errors() {
    let out_of_range = def(1, 0, bin(BinOp::Add, KExpr::Array(0), KExpr::Array(3)));
    assert!(matches!(Kernel::from_def(&out_of_range), Err(KernelError::IndexOutOfRange { index: 3, .. })));
    let bad_scalar = def(1, 1, KExpr::Scalar(1));
    assert!(matches!(Kernel::from_def(&bad_scalar), Err(KernelError::IndexOutOfRange { what: "scalar", .. })));

    let two_arrays = def(2, 1, KExpr::Array(1));
    let r = UpdateKernel::compile(UpdateRule::SoftThreshold, Optimizer::Sgd { nesterov: false }, Some(&two_arrays));
    assert!(matches!(r, Err(KernelError::Arity { expected: 2, found: 1, .. })));
    let bad_body = def(1, 1, KExpr::Array(7));
    let r = UpdateKernel::compile(UpdateRule::SoftThreshold, Optimizer::Sgd { nesterov: false }, Some(&bad_body));
    assert!(matches!(r, Err(KernelError::IndexOutOfRange { .. })));

    let kernel = Kernel::from_def(&prelude::soft_threshold()).unwrap();
    let (mut a, mut b, mut c) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 3]);
    assert!(matches!(kernel.run(&mut [&mut a], &[0.1]), Err(KernelError::Arity { what: "arrays", .. })));
    assert!(matches!(kernel.run(&mut [&mut a, &mut b], &[]), Err(KernelError::Arity { what: "scalars", .. })));
    assert!(matches!(kernel.run(&mut [&mut a, &mut c], &[0.1]), Err(KernelError::Length { .. })));
}

#[test]
fn bad_programs_are_errors() {
    let mut p = Program::from_kernel_def(&prelude::soft_threshold()).unwrap();
    p.stores.push(p.stores[0].clone());
    assert!(matches!(Kernel::compile(p.clone()), Err(KernelError::BadProgram { .. })));
    p.stores.clear();
    assert!(matches!(Kernel::compile(p.clone()), Err(KernelError::BadProgram { .. })));
    p.stores.push(sprsc::kernels::Store { array: 9, value: sprsc::kernels::Expr::Local(0) });
    assert!(matches!(Kernel::compile(p), Err(KernelError::IndexOutOfRange { .. })));
}

// ---- top-k ----

fn sorted_keys(slices: &[&[f32]]) -> Vec<u32> {
    let mut keys: Vec<u32> = slices.iter().flat_map(|s| s.iter().map(|x| x.to_bits() & 0x7fff_ffff)).collect();
    keys.sort_unstable_by(|a, b| b.cmp(a));
    keys
}

fn check_topk(slices: &[&[f32]], rng: &mut ChaCha8Rng) {
    let keys = sorted_keys(slices);
    let n = keys.len();
    let mut ks = vec![1, n, n / 2, n.saturating_sub(1)];
    ks.extend((0..5).map(|_| rng.gen_range(1..=n.max(1))));
    for k in ks.into_iter().filter(|k| (1..=n).contains(k)) {
        assert_eq!(kth_largest_abs(slices, k).map(f32::to_bits), Some(keys[k - 1]), "k = {k} of {n}");
    }
    assert_eq!(kth_largest_abs(slices, 0), None);
    assert_eq!(kth_largest_abs(slices, n + 1), None);
    for sparsity in [0.0, 0.5, 0.9, 0.98, 1.0] {
        let t = sparsity_threshold(slices, sparsity);
        let mut masks: Vec<Vec<f32>> = slices.iter().map(|s| vec![7.0; s.len()]).collect();
        let mut views: Vec<&mut [f32]> = masks.iter_mut().map(|m| m.as_mut_slice()).collect();
        mask_by_threshold(slices, &t, &mut views);
        let kept = masks.iter().flatten().filter(|m| **m == 1.0).count();
        let expected = n - (sparsity * n as f64).round() as usize;
        assert_eq!((kept, t.keep), (expected, expected), "sparsity {sparsity}");
        assert_eq!(masks.iter().flatten().filter(|m| **m == 0.0).count(), n - kept);
        // The kept weights are a top-`kept` set: none dropped is larger than any kept.
        let pairs = slices.iter().zip(&masks).flat_map(|(s, m)| s.iter().zip(m.iter()));
        let key = |x: &f32| x.to_bits() & 0x7fff_ffff;
        let (mut min_kept, mut max_dropped) = (u32::MAX, 0);
        for (x, m) in pairs {
            if *m == 1.0 {
                min_kept = min_kept.min(key(x));
            } else {
                max_dropped = max_dropped.max(key(x));
            }
        }
        assert!(kept == 0 || kept == n || min_kept >= max_dropped);
    }
}

#[test]
fn topk_matches_sort() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    for n in [0, 1, 2, 17, 1000, 20_000, 70_001, 300_001] {
        let random: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let ties: Vec<f32> = (0..n).map(|_| [0.0, -0.5, 0.5, 0.25, -1.0][rng.gen_range(0..5)]).collect();
        let zeros: Vec<f32> = (0..n).map(|i| if i % 10 < 9 { 0.0 } else { rng.gen_range(-1.0f32..1.0) }).collect();
        let edges: Vec<f32> = (0..n).map(|i| EDGES[i % EDGES.len()] * if i % 3 == 0 { 1.0 } else { 0.5 }).collect();
        for data in [&random, &ties, &zeros, &edges] {
            check_topk(&[data], &mut rng);
            let parts: Vec<&[f32]> = data.chunks(n / 7 + 1).collect();
            check_topk(&parts, &mut rng);
        }
    }
}

// ---- random expressions (256 cases; more with PROPTEST_CASES=N) ----

fn leaf() -> impl Strategy<Value = KExpr> {
    prop_oneof![
        (0..3usize).prop_map(KExpr::Array),
        (0..2usize).prop_map(KExpr::Scalar),
        (0..EDGES.len()).prop_map(|i| KExpr::Const(EDGES[i])),
        (-4.0f32..4.0).prop_map(KExpr::Const),
    ]
}

fn expr() -> impl Strategy<Value = KExpr> {
    leaf().prop_recursive(4, 32, 3, |inner| {
        prop_oneof![
            ((0..UNARY.len()), inner.clone()).prop_map(|(op, a)| un(UNARY[op], a)),
            ((0..BINARY.len()), inner.clone(), inner.clone()).prop_map(|(op, a, b)| bin(BINARY[op], a, b)),
            (inner.clone(), inner.clone(), inner).prop_map(|(c, a, b)| KExpr::Select(
                Box::new(c),
                Box::new(a),
                Box::new(b)
            )),
        ]
    })
}

proptest! {
    #[test]
    fn random_expressions_match_reference(
        body in expr(), seed in 0u64..1000, s0 in -3.0f32..3.0, s1 in 0usize..EDGES.len()
    ) {
        let kernel = Kernel::from_def(&def(3, 2, body)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for n in [0, 1, 3, 4, 5, 8, 13, 17, 403] {
            let arrays: Vec<Vec<f32>> = (0..4).map(|_| random_array(&mut rng, n)).collect();
            check(&kernel, &arrays, &[s0, EDGES[s1]]);
        }
    }
}
