//! Tests of DyReLU-B (its phase-out, its gradients) and of weight sharing (one storage,
//! gradients summed over the blocks that use it) through whole networks.

use dfdx::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::exec::backend::dyrelu::{apply, dyrelu, sigmoid, DyReluParams};
use crate::exec::backend::testing::{assert_close, check_input_grad, numeric_grad, random};
use crate::exec::backend::{read, Param, ParamTensor, Tensor2};
use crate::exec::graph::{Batch, Graph, Mode, Node, Objective};
use crate::ir::plan::{Clock, Plan, StepRamp};

/// A DyReLU layer as the graph holds it: branch tensors by index, phase-out `[a, b)` in steps.
struct DyRelu {
    fc1: (usize, usize),
    fc2: (usize, usize),
    c: usize,
    hw: usize,
    phase: (u64, u64),
}

impl DyRelu {
    fn beta(&self, step: u64) -> f32 {
        StepRamp { from: 1.0, to: 0.0, start: self.phase.0, end: self.phase.1 }.at(step)
    }

    fn forward<T: Tape<f32, Cpu>>(&self, x: Tensor2<T>, p: &[ParamTensor], step: u64) -> Tensor2<T> {
        let fc1 = (p[self.fc1.0].matrix(), p[self.fc1.1].vector());
        let fc2 = (p[self.fc2.0].matrix(), p[self.fc2.1].vector());
        dyrelu(x, &DyReluParams { fc1, fc2, c: self.c, hw: self.hw }, self.beta(step))
    }
}

const C: usize = 3;
const HW: usize = 4;
const BATCH: usize = 2;

fn dev() -> Cpu {
    Cpu::default()
}

/// A DyReLU node over `C` channels of `HW` pixels with hidden size 2 and random branch tensors
/// (fc2 scaled by `fc2_scale`), plus its params.
fn node(phase: (u64, u64), fc2_scale: f32) -> (DyRelu, Vec<ParamTensor>) {
    let d = dev();
    let m = |v: Vec<f32>, r, c| ParamTensor::Matrix(Param::new(d.tensor_from_vec(v, (r, c))));
    let v = |v: Vec<f32>| ParamTensor::Vector(Param::new(d.tensor_from_vec(v.clone(), (v.len(),))));
    let scaled = |v: Vec<f32>| v.into_iter().map(|x| x * fc2_scale).collect::<Vec<_>>();
    let params = vec![
        m(random(2 * C, 1), 2, C),
        v(random(2, 2)),
        m(scaled(random(4 * C * 2, 3)), 4 * C, 2),
        v(scaled(random(4 * C, 4))),
    ];
    (DyRelu { fc1: (0, 1), fc2: (2, 3), c: C, hw: HW, phase }, params)
}

fn input() -> Vec<f32> {
    random(BATCH * C * HW, 7).iter().map(|v| v * 2.0).collect()
}

fn out(n: &DyRelu, p: &[ParamTensor], x: &[f32], step: u64) -> Vec<f32> {
    read(&n.forward(dev().tensor_from_vec(x.to_vec(), (BATCH, C * HW)), p, step))
}

#[test]
fn after_the_phase_out_it_is_relu_bit_for_bit_and_the_branch_is_idle() {
    let (n, p) = node((3, 8), 1.0);
    let x = input();
    let relu = read(&dev().tensor_from_vec(x.clone(), (BATCH, C * HW)).relu());
    for step in [8, 9, 1000] {
        let y = out(&n, &p, &x, step);
        assert_eq!(
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            relu.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
    // Before the end, DyReLU with a random branch differs from ReLU.
    assert_ne!(out(&n, &p, &x, 7), relu);
    // After it, no gradient reaches the branch.
    let xt: Tensor2 = dev().tensor_from_vec(x, (BATCH, C * HW));
    let mut grads = n.forward(xt.leaky_trace(), &p, 8).sum::<(), _>().backward();
    for t in &p {
        assert!(t.grad(&mut grads).unwrap().iter().all(|g| *g == 0.0));
    }
}

#[test]
fn a_zero_branch_gives_the_relu_initial_coefficients() {
    let (n, p) = node((100, 200), 0.0);
    let x = input();
    let y = out(&n, &p, &x, 0);
    let relu: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
    assert_eq!(y, relu);
}

#[test]
fn mid_phase_is_the_convex_combination() {
    let (n, p) = node((10, 20), 1.0);
    let x = input();
    let dy = out(&n, &p, &x, 0);
    let relu: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
    for (step, beta) in [(10, 1.0), (15, 0.5), (18, 0.2)] {
        assert!((n.beta(step) - beta).abs() < 1e-6);
        let want: Vec<f32> = dy.iter().zip(&relu).map(|(d, r)| beta * d + (1.0 - beta) * r).collect();
        assert_close(&out(&n, &p, &x, step), &want, 1e-6);
    }
    assert_ne!(dy, relu);
}

#[test]
fn the_coefficients_follow_the_dyrelu_normalisation() {
    // One channel, one pixel: z = 0 except a1's logit, so y = max(a1 x, 0) for x > 0.
    let d = dev();
    let z = vec![1.5, 0.0, 0.0, 0.0];
    let x: Tensor2 = d.tensor_from_vec(vec![2.0], (1, 1));
    let y = read(&apply(x, d.tensor_from_vec(z, (1, 4)), 1, 1, 1.0));
    let a1 = (2.0 * sigmoid(1.5) - 1.0) + 1.0;
    assert!((y[0] - 2.0 * a1).abs() < 1e-6);
    // b-coefficients are scaled by lambda = 0.5: a large logit on b2 gives b2 -> 0.5.
    let x: Tensor2 = d.tensor_from_vec(vec![-1.0], (1, 1));
    let y = read(&apply(x, d.tensor_from_vec(vec![0.0, 0.0, 0.0, 30.0], (1, 4)), 1, 1, 1.0));
    assert!((y[0] - 0.5).abs() < 1e-6, "{}", y[0]);
}

#[test]
fn apply_matches_finite_differences() {
    let d = dev();
    let x = input();
    let z = random(BATCH * 4 * C, 11);
    for beta in [1.0, 0.4] {
        let zt: Tensor2 = d.tensor_from_vec(z.clone(), (BATCH, 4 * C));
        let (an, nu) = check_input_grad(
            &x,
            (BATCH, C * HW),
            |xt| {
                let (xt, tape) = xt.split_tape();
                apply(xt, zt.clone().put_tape(tape), C, HW, beta)
            },
            |xt| apply(xt, zt.clone(), C, HW, beta),
        );
        assert_close(&an, &nu, 1e-2);
        let xt: Tensor2 = d.tensor_from_vec(x.clone(), (BATCH, C * HW));
        let (an, nu) = check_input_grad(
            &z,
            (BATCH, 4 * C),
            |zt| apply(xt.clone(), zt, C, HW, beta),
            |zt| apply(xt.clone(), zt, C, HW, beta),
        );
        assert_close(&an, &nu, 1e-2);
    }
}

/// `L = sum(dyrelu(x) * r)` and the gradients of `x` and of every branch tensor.
fn node_loss(n: &DyRelu, p: &[ParamTensor], x: &[f32], step: u64) -> (f64, Vec<f32>, Vec<Vec<f32>>) {
    let d = dev();
    let xt: Tensor2 = d.tensor_from_vec(x.to_vec(), (BATCH, C * HW));
    let r = random(BATCH * C * HW, 99);
    let y = n.forward(xt.leaky_trace(), p, step);
    let value: f64 = read(&y).iter().zip(&r).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
    let rt: Tensor2 = d.tensor_from_vec(r, (BATCH, C * HW));
    let mut grads = (y * rt).sum::<(), _>().backward();
    let gx = grads.get(&xt).as_vec();
    let gp = p.iter().map(|t| t.grad(&mut grads).unwrap().to_vec()).collect();
    (value, gx, gp)
}

#[test]
fn the_whole_layer_matches_finite_differences() {
    let (n, p) = node((4, 8), 1.0);
    let p = std::cell::RefCell::new(p);
    let x = input();
    for step in [0, 6] {
        let (_, gx, gp) = node_loss(&n, &p.borrow(), &x, step);
        let nu = numeric_grad(&x, |xv| node_loss(&n, &p.borrow(), xv, step).0);
        assert_close(&gx, &nu, 2e-2);
        for (i, g) in gp.iter().enumerate() {
            let v0 = read_param(&p.borrow()[i]);
            let nu = numeric_grad(&v0, |v| {
                p.borrow_mut()[i].copy_from(v);
                let l = node_loss(&n, &p.borrow(), &x, step).0;
                p.borrow_mut()[i].copy_from(&v0);
                l
            });
            assert_close(g, &nu, 2e-2);
        }
    }
}

fn read_param(t: &ParamTensor) -> Vec<f32> {
    t.values().to_vec()
}

// ---------------------------------------------------------------- weight sharing

fn compile(techniques: &str) -> Plan {
    compile_sparse(techniques, "0%")
}

fn compile_sparse(techniques: &str, target: &str) -> Plan {
    let src = format!(
        "recipe r {{
          data synthetic_digits(train: 64, test: 16)
          model resnet20(width: 0.25)
          sparsity {{
            target {target}
            mask random
          }}
          techniques {{
            {techniques}
          }}
          train {{
            epochs 2
            batch 16
          }}
        }}"
    );
    let c = crate::compile_source(std::path::Path::new("t.sprs"), src, &[]);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    c.checked.plans.into_iter().next().unwrap()
}

const CLOCK: Clock = Clock { steps_per_epoch: 4, total_steps: 4 };

/// Loss and every param's gradient of `plan`'s network with the given values, on a fixed batch.
fn net_loss(plan: &Plan, values: &[Vec<f32>], step: u64) -> (f32, Vec<Vec<f32>>) {
    let mut net = Graph::build(&plan.model, CLOCK).unwrap();
    net.load(&values.iter().map(|v| &v[..]).collect::<Vec<_>>());
    let batch = Batch { images: random(2 * 28 * 28, 5), labels: vec![3, 7] };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut mode = Mode { train: true, dropout: true, rng: &mut rng, step };
    let mut g = vec![Vec::new(); values.len()];
    let span = crate::diagnostics::Span::default();
    let (value, _) = net.loss_and_grads(batch, Objective::PLAIN, &mut mode, span, |i, v| g[i] = v.to_vec()).unwrap();
    (value, g)
}

fn residual_convs(nodes: &[Node]) -> Vec<Vec<(usize, Option<usize>)>> {
    nodes
        .iter()
        .filter_map(|n| match n {
            Node::Residual { body, .. } => Some(
                body.iter()
                    .filter_map(|b| match b {
                        Node::Conv { w, scale, .. } => Some((*w, *scale)),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[test]
fn shared_blocks_read_the_owners_storage() {
    let plan = compile("weight_sharing(from_block: 2)");
    let net = Graph::build(&plan.model, CLOCK).unwrap();
    let blocks = residual_convs(&net.nodes);
    assert_eq!(blocks.len(), 9);
    for stage in blocks.chunks(3) {
        // Block 2 reads block 1's two conv tensors, each through its own scale.
        for ((first, owner), user) in stage[0].iter().zip(&stage[1]).zip(&stage[2]) {
            assert_eq!(user.0, owner.0);
            assert!(owner.1.is_none() && user.1.is_some());
            assert_ne!(first.0, owner.0);
        }
        assert_eq!(stage[2].len(), 2);
    }
}

#[test]
fn the_shared_gradient_is_the_sum_over_its_uses() {
    let (shared, plain) = (compile("weight_sharing(from_block: 2)"), compile(""));
    // The plain network with each sharing block's weight set to owner * scale computes the
    // same function, so by the chain rule dL/downer = g_owner + sum(scale * g_user) and
    // dL/dscale = <g_user, owner>, with g the plain network's gradients.
    let plain_values: Vec<Vec<f32>> =
        plain.model.params.iter().enumerate().map(|(i, p)| random(p.numel(), 30 + i as u64)).collect();
    let by_name = |name: &str| plain.model.params.iter().position(|p| p.name == name).unwrap();
    let mut plain_values = plain_values;
    let scales: Vec<f32> = (0..shared.model.shared.len()).map(|i| 0.5 + 0.1 * i as f32).collect();
    for (s, k) in shared.model.shared.iter().zip(&scales) {
        let owner = plain_values[by_name(&s.owner)].clone();
        plain_values[by_name(&s.param)] = owner.iter().map(|v| v * k).collect();
    }
    let shared_values: Vec<Vec<f32>> = shared
        .model
        .params
        .iter()
        .map(|p| match shared.model.shared.iter().position(|s| s.scale == p.name) {
            Some(j) => vec![scales[j]],
            None => plain_values[by_name(&p.name)].clone(),
        })
        .collect();
    let (l_plain, g_plain) = net_loss(&plain, &plain_values, 0);
    let (l_shared, g_shared) = net_loss(&shared, &shared_values, 0);
    assert!((l_plain - l_shared).abs() < 1e-5 * l_plain.abs().max(1.0), "{l_plain} vs {l_shared}");
    for (i, p) in shared.model.params.iter().enumerate() {
        let mut want = if let Some(j) = shared.model.shared.iter().position(|s| s.scale == p.name) {
            let s = &shared.model.shared[j];
            let dot: f32 =
                g_plain[by_name(&s.param)].iter().zip(&plain_values[by_name(&s.owner)]).map(|(a, b)| a * b).sum();
            vec![dot]
        } else {
            g_plain[by_name(&p.name)].clone()
        };
        for (s, k) in shared.model.shared.iter().zip(&scales) {
            if s.owner == p.name {
                for (w, g) in want.iter_mut().zip(&g_plain[by_name(&s.param)]) {
                    *w += k * g;
                }
            }
        }
        assert_close(&g_shared[i], &want, 1e-4);
    }
    // And against finite differences on a few entries of one shared tensor and one scale.
    let owner = shared.model.params.iter().position(|p| p.name == shared.model.shared[0].owner).unwrap();
    let scale = shared.model.params.iter().position(|p| p.name == shared.model.shared[0].scale).unwrap();
    for &i in &[owner, scale] {
        let picks: Vec<usize> = (0..shared_values[i].len()).step_by(37).take(4).collect();
        let numeric: Vec<f32> = picks
            .iter()
            .map(|&j| {
                let f = |h: f32| {
                    let mut v = shared_values.clone();
                    v[i][j] += h;
                    net_loss(&shared, &v, 0).0 as f64
                };
                ((f(1e-2) - f(-1e-2)) / 2e-2) as f32
            })
            .collect();
        let analytic: Vec<f32> = picks.iter().map(|&j| g_shared[i][j]).collect();
        assert_close(&analytic, &numeric, 2e-2);
    }
}

#[test]
fn both_techniques_train_end_to_end() {
    let plan =
        compile_sparse("dyrelu(phase_out: 2 steps .. 4 steps, reduction: 2)\n weight_sharing(from_block: 2)", "90%");
    let data = crate::data::load(&plan.data, plan.seed).unwrap();
    let opts = crate::exec::RunOptions {
        out_dir: Some(crate::exec::fixtures::temp_dir("east-e2e")),
        threads: Some(1),
        quiet: true,
        max_steps: Some(6),
        max_eval: None,
        kernels: Default::default(),
        resume: false,
    };
    let summary = crate::exec::run(&plan, &data, &opts).unwrap();
    assert!(summary.test_loss.is_finite());
    // Shared convs count with their owner's density (about 15% after the correction).
    let ratio = summary.flops_sparse as f64 / summary.flops_dense as f64;
    assert!((0.1..0.25).contains(&ratio), "{ratio}");
}

#[test]
fn a_network_after_the_phase_out_is_the_relu_network_bit_for_bit() {
    let (dy, plain) = (compile("dyrelu(phase_out: 1 steps .. 3 steps)"), compile(""));
    let values: Vec<Vec<f32>> =
        plain.model.params.iter().enumerate().map(|(i, p)| random(p.numel(), 50 + i as u64)).collect();
    let dy_values: Vec<Vec<f32>> = dy
        .model
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| match plain.model.params.iter().position(|q| q.name == p.name) {
            Some(j) => values[j].clone(),
            None => random(p.numel(), 900 + i as u64),
        })
        .collect();
    let (l_plain, g_plain) = net_loss(&plain, &values, 3);
    let (l_after, g_after) = net_loss(&dy, &dy_values, 3);
    assert_eq!(l_plain.to_bits(), l_after.to_bits());
    for (p, g) in dy.model.params.iter().zip(&g_after) {
        match plain.model.params.iter().position(|q| q.name == p.name) {
            Some(j) => assert_eq!(g, &g_plain[j], "{}", p.name),
            None => assert!(g.iter().all(|v| *v == 0.0), "{} still learns", p.name),
        }
    }
    // During the phase-out the DyReLU network differs.
    assert_ne!(net_loss(&dy, &dy_values, 2).0, l_plain);
}
