//! Each sparse product against the dense op on the masked weights: values, input, weight and
//! bias gradients, for both compiled variants, on odd shapes and edge-case masks.

use super::super::act::dense;
use super::super::conv::conv2d;
use super::super::pool::PoolGeom;
use super::super::read;
use super::super::testing::random;
use super::*;

/// Masks: random at `density`, plus the edge cases.
fn masks(out: usize, fan: usize, seed: u64) -> Vec<(&'static str, Vec<f32>)> {
    let r = random(out * fan, seed);
    let at = |d: f32| r.iter().map(|v| if (v + 1.0) / 2.0 < d { 1.0 } else { 0.0 }).collect::<Vec<f32>>();
    let mut empty_rows_cols = at(0.5);
    for o in (0..out).step_by(2) {
        empty_rows_cols[o * fan..(o + 1) * fan].fill(0.0);
    }
    for f in (0..fan).step_by(3) {
        (0..out).for_each(|o| empty_rows_cols[o * fan + f] = 0.0);
    }
    vec![
        ("random 10%", at(0.1)),
        ("random 60%", at(0.6)),
        ("all zero", vec![0.0; out * fan]),
        ("fully dense", vec![1.0; out * fan]),
        ("empty rows and columns", empty_rows_cols),
    ]
}

fn isas() -> Vec<Isa> {
    let mut v = vec![Isa::Portable];
    if Isa::detect() == Isa::Avx2 {
        v.push(Isa::Avx2);
    }
    v
}

/// `(y, dx, dw, db)` of `L = sum(layer(x) * r)`.
type Grads4 = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

fn run(
    layer: impl Fn(Tensor2<OwnedTape<f32, Cpu>>, &Param2, &Param1) -> Tensor2<OwnedTape<f32, Cpu>>,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    batch: usize,
    out_len: usize,
) -> Grads4 {
    let dev = Cpu::default();
    let xt: Tensor2 = dev.tensor_from_vec(x.to_vec(), (batch, x.len() / batch));
    let wt = Param2::new(dev.tensor_from_vec(w.to_vec(), (b.len(), w.len() / b.len())));
    let bt = Param1::new(dev.tensor_from_vec(b.to_vec(), (b.len(),)));
    let y = layer(xt.leaky_trace(), &wt, &bt);
    let yv = read(&y);
    let rt: Tensor2 = dev.tensor_from_vec(random(batch * out_len, 77), (batch, out_len));
    let mut grads = (y * rt).sum::<(), _>().backward();
    // A weight on the sparse kernels leaves its tensor's gradient unallocated (zeros).
    let dw = grads.get_or_alloc_mut(wt.tensor()).unwrap().to_vec();
    (yv, grads.get(&xt).as_vec(), dw, grads.get(bt.tensor()).as_vec())
}

fn close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-4 * 1f32.max(x.abs()).max(y.abs()), "{what}: index {i}: {x} vs {y}");
    }
}

fn check(g: ConvGeom, batch: usize, linear: bool) {
    let fan = g.fan_in();
    let x = random(batch * g.in_len(), 1);
    let w = random(g.out * fan, 2);
    let b = random(g.out, 3);
    for (name, mask) in masks(g.out, fan, 4) {
        let wm: Vec<f32> = w.iter().zip(&mask).map(|(a, m)| a * m).collect();
        let reference = |x: Tensor2<OwnedTape<f32, Cpu>>, w: &Param2, b: &Param1| {
            if linear {
                dense(x, w, Some(b), true)
            } else {
                conv2d(x, w, Some(b), g, true)
            }
        };
        let (y0, dx0, dw0, db0) = run(reference, &x, &wm, &b, batch, g.out_len());
        let dw0_kept: Vec<f32> = dw0.iter().zip(&mask).map(|(a, m)| a * m).collect();
        for isa in isas() {
            for dense_grad in [false, true] {
                let mut sw = SparseWeight::new(g, &mask, isa);
                sw.refresh(&wm);
                sw.dense_weight_grad = dense_grad;
                assert!(sw.matches(&mask));
                let sw = Arc::new(sw);
                let what = format!("{g:?} batch {batch} {name} {isa:?} dense grad {dense_grad}");
                let (y, dx, mut dw, db) =
                    run(|x, w, b| sparse_layer(x, w, &sw, Some(b), true), &x, &wm, &b, batch, g.out_len());
                if let Some((kept, grads)) = sw.kept_grad() {
                    // The kept weights' gradients come beside the tensor's (which stays zero).
                    assert!(dw.iter().all(|v| *v == 0.0), "{what}: the dense gradient is untouched");
                    kept.iter().zip(grads.iter()).for_each(|(i, v)| dw[*i as usize] = *v);
                }
                close(&format!("{what}: y"), &y, &y0);
                close(&format!("{what}: dx"), &dx, &dx0);
                close(&format!("{what}: dw"), &dw, if dense_grad { &dw0 } else { &dw0_kept });
                close(&format!("{what}: db"), &db, &db0);
            }
        }
    }
}

#[test]
fn dense_layers_match_the_dense_op() {
    for (inputs, out, batch) in [(13, 7, 1), (40, 9, 13), (70, 33, 128), (5, 3, 64), (1, 1, 9)] {
        check(linear_geom(inputs, out), batch, true);
    }
}

#[test]
fn convolutions_match_the_dense_op() {
    let geoms = [
        ConvGeom { c: 1, h: 8, w: 8, out: 4, k: 5, stride: 1, pad: 0, groups: 1 },
        ConvGeom { c: 3, h: 7, w: 6, out: 5, k: 3, stride: 2, pad: 1, groups: 1 },
        ConvGeom { c: 4, h: 6, w: 5, out: 6, k: 3, stride: 1, pad: 1, groups: 2 },
        ConvGeom { c: 4, h: 3, w: 5, out: 6, k: 1, stride: 1, pad: 0, groups: 1 },
        ConvGeom { c: 2, h: 5, w: 5, out: 3, k: 5, stride: 3, pad: 2, groups: 1 },
    ];
    for g in geoms {
        for batch in [1, 3, 70] {
            check(g, batch, false);
        }
    }
}

#[test]
fn structure_follows_the_pattern_and_values_follow_refresh() {
    let g = linear_geom(6, 4);
    let mut pattern = vec![0.0; 24];
    pattern[3] = 1.0;
    pattern[13] = 1.0;
    pattern[23] = 1.0;
    let mut sw = SparseWeight::new(g, &pattern, Isa::Portable);
    assert_eq!(sw.nnz(), 3);
    assert!(sw.matches(&pattern));
    pattern[4] = 1.0;
    assert!(!sw.matches(&pattern));
    let w: Vec<f32> = (0..24).map(|i| i as f32).collect();
    sw.refresh(&w);
    assert_eq!(sw.vals, vec![3.0, 13.0, 23.0]);
    // Input 1's column holds the weight of row 2 (index 13 = 2*6 + 1); inputs 1, 3 and 5 have
    // one column each (keys are relative to the channel's plane, here one pixel).
    assert_eq!(sw.chan_cols, vec![0, 0, 1, 1, 2, 2, 3]);
    assert_eq!(sw.col_key, vec![0, 0, 0]);
    assert_eq!(sw.t_row, vec![2, 0, 3]);
    assert_eq!(sw.t_vals, vec![13.0, 3.0, 23.0]);
}

#[test]
fn tile_transposes_agree() {
    let src = random(8 * 11, 5);
    for isa in isas() {
        for add in [false, true] {
            let mut dst = random(8 * 13, 6);
            let before = dst.clone();
            kernels::transpose8(isa, &src, 11, &mut dst, 13, add);
            for i in 0..8 {
                for j in 0..8 {
                    let want = if add { before[j * 13 + i] + src[i * 11 + j] } else { src[i * 11 + j] };
                    assert_eq!(dst[j * 13 + i], want, "{isa:?} add {add} ({i}, {j})");
                }
            }
            // Untouched outside the tile.
            assert_eq!(dst[8..13], before[8..13]);
        }
    }
}

/// One item of a test chain: a sparse layer of this geometry (its mask the `mask`th of
/// [`masks`]), a ReLU or a max pool.
#[derive(Clone, Copy)]
enum Spec {
    Layer(ConvGeom, usize),
    Relu,
    Pool(PoolGeom),
}

/// A test chain's layer: its layout, its bias and its masked weights.
type TestLayer = (Arc<SparseWeight>, Param1, Vec<f32>);

/// The items of `specs` through [`sparse_chain`] and one by one through [`sparse_layer`],
/// dfdx's ReLU and [`max_pool`]: the same output and the same input, kept-weight and bias
/// gradients, bit for bit; without an input gradient also the chain reading its input in place
/// (an input carrier and the values). Returns whether any weight or bias gradient was nonzero.
fn check_chain(specs: &[Spec], batch: usize, input_grad: bool, isa: Isa) -> bool {
    use super::super::act::act;
    use super::super::pool::max_pool;
    use crate::ir::plan::Activation;
    let dev = Cpu::default();
    // Per layer: the layout, the bias and the masked weights.
    let layers: Vec<Option<TestLayer>> = specs
        .iter()
        .enumerate()
        .map(|(l, spec)| match *spec {
            Spec::Layer(g, m) => {
                let seed = 10 * l as u64;
                let (_, mask) = masks(g.out, g.fan_in(), seed).swap_remove(m);
                let w: Vec<f32> = random(g.out * g.fan_in(), seed + 1).iter().zip(&mask).map(|(a, m)| a * m).collect();
                let mut sw = SparseWeight::new(g, &mask, isa);
                sw.refresh(&w);
                let b = Param1::new(dev.tensor_from_vec(random(g.out, seed + 2), (g.out,)));
                Some((Arc::new(sw), b, w))
            }
            _ => None,
        })
        .collect();
    let Some(Spec::Layer(first, _)) = specs.first() else { panic!("a chain starts with a layer") };
    let rows_out = specs.iter().fold(first.in_len(), |r, s| match s {
        Spec::Layer(g, _) => g.out_len(),
        Spec::Relu => r,
        Spec::Pool(g) => g.out_len(),
    });
    let x = random(batch * first.in_len(), 99);
    let r = random(batch * rows_out, 98);
    // (y, dx, kept gradients per layer, bias gradients per layer)
    let go = |chained: bool, in_place: bool| {
        let xt: Tensor2 = dev.tensor_from_vec(x.clone(), (batch, first.in_len()));
        let traced = xt.leaky_trace();
        let y = if chained {
            let items: Vec<ChainItem> = specs
                .iter()
                .zip(&layers)
                .map(|(spec, layer)| match (spec, layer) {
                    (Spec::Layer(..), Some((sw, b, _))) => ChainItem::Layer { sw, bias: Some(b) },
                    (Spec::Relu, _) => ChainItem::Relu,
                    (Spec::Pool(g), _) => ChainItem::MaxPool(*g),
                    _ => unreachable!("a layer per layer spec"),
                })
                .collect();
            if in_place {
                sparse_chain(crate::exec::backend::input_carrier(&dev, batch), Some(&x), &items, false)
            } else {
                sparse_chain(traced, None, &items, input_grad)
            }
        } else {
            let mut h = traced;
            for (l, (spec, layer)) in specs.iter().zip(&layers).enumerate() {
                h = match (spec, layer) {
                    (Spec::Layer(g, _), Some((sw, b, w))) => {
                        let wt = Param2::new(dev.tensor_from_vec(w.clone(), (g.out, g.fan_in())));
                        sparse_layer(h, &wt, sw, Some(b), l > 0 || input_grad)
                    }
                    (Spec::Relu, _) => act(h, Activation::Relu),
                    (Spec::Pool(g), _) => max_pool(h, *g),
                    _ => unreachable!("a layer per layer spec"),
                };
            }
            h
        };
        let yv = read(&y);
        let rt: Tensor2 = dev.tensor_from_vec(r.clone(), (batch, rows_out));
        let mut grads = (y * rt).sum::<(), _>().backward();
        let kept: Vec<Vec<f32>> =
            layers.iter().flatten().map(|(sw, _, _)| sw.kept_grad().expect("kept gradients").1.clone()).collect();
        let db: Vec<Vec<f32>> = layers.iter().flatten().map(|(_, b, _)| grads.get(b.tensor()).as_vec()).collect();
        (yv, grads.get_or_alloc_mut(&xt).expect("input gradient").to_vec(), kept, db)
    };
    let (unfused, chained) = (go(false, false), go(true, false));
    let what = format!("batch {batch} input grad {input_grad} {isa:?} first {first:?}");
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    if !input_grad {
        let in_place = go(true, true);
        assert_eq!(bits(&in_place.0), bits(&unfused.0), "{what}: y, input read in place");
        assert_eq!(
            in_place.2.iter().map(|g| bits(g)).collect::<Vec<_>>(),
            unfused.2.iter().map(|g| bits(g)).collect::<Vec<_>>(),
            "{what}: kept weight gradients, input read in place"
        );
        assert_eq!(
            in_place.3.iter().map(|g| bits(g)).collect::<Vec<_>>(),
            unfused.3.iter().map(|g| bits(g)).collect::<Vec<_>>(),
            "{what}: bias gradients, input read in place"
        );
    }
    assert_eq!(bits(&chained.0), bits(&unfused.0), "{what}: y");
    assert_eq!(bits(&chained.1), bits(&unfused.1), "{what}: dx");
    for l in 0..chained.2.len() {
        assert_eq!(bits(&chained.2[l]), bits(&unfused.2[l]), "{what}: layer {l} kept weight gradients");
        assert_eq!(bits(&chained.3[l]), bits(&unfused.3[l]), "{what}: layer {l} bias gradient");
    }
    if !input_grad {
        assert!(chained.1.iter().all(|v| *v == 0.0), "{what}: no input gradient asked for");
    }
    chained.2.iter().chain(&chained.3).flatten().any(|v| *v != 0.0)
}

#[test]
fn a_chain_of_sparse_dense_layers_matches_them_one_by_one_bit_for_bit() {
    for isa in isas() {
        for (sizes, batch) in
            [([20, 12, 9, 5], 1), ([33, 17, 8, 3], 13), ([64, 40, 24, 10], 128), ([7, 5, 4, 2], 70), ([9, 9, 9, 9], 2)]
        {
            for (last_relu, input_grad) in [(false, false), (true, true), (false, true)] {
                // The middle layer's mask is one of the edge cases in turn, by batch size.
                let layer =
                    |l: usize| Spec::Layer(linear_geom(sizes[l], sizes[l + 1]), if l == 1 { batch % 5 } else { 0 });
                let mut specs = vec![layer(0), Spec::Relu, layer(1), Spec::Relu, layer(2)];
                if last_relu {
                    specs.push(Spec::Relu);
                }
                let flowed = check_chain(&specs, batch, input_grad, isa);
                // Without a final ReLU the last bias always has a gradient: the test is not vacuous.
                assert!(flowed || last_relu, "{sizes:?} batch {batch}: no gradient at all");
            }
        }
    }
}

#[test]
fn a_chain_of_convolutions_pools_and_dense_layers_matches_them_one_by_one_bit_for_bit() {
    // A padded first convolution (its input gradient through the padding), an overlapping pool
    // (3 wide, stride 2: gradients of two windows sum), a grouped unpadded convolution, a pool
    // whose windows tile its input, then dense layers; ReLUs before pools and after layers.
    let c1 = ConvGeom { c: 2, h: 11, w: 11, out: 6, k: 3, stride: 1, pad: 1, groups: 1 };
    let p1 = PoolGeom { c: 6, h: 11, w: 11, size: 3, stride: 2 };
    let c2 = ConvGeom { c: 6, h: 5, w: 5, out: 4, k: 2, stride: 1, pad: 0, groups: 2 };
    // Windows that tile the input: each input gradient written once.
    let p2 = PoolGeom { c: 4, h: 4, w: 4, size: 2, stride: 2 };
    let specs = |m: usize| {
        [
            Spec::Layer(c1, 0),
            Spec::Relu,
            Spec::Pool(p1),
            Spec::Layer(c2, m),
            Spec::Relu,
            Spec::Pool(p2),
            Spec::Layer(linear_geom(p2.out_len(), 7), 1),
            Spec::Relu,
            Spec::Layer(linear_geom(7, 3), 0),
        ]
    };
    for isa in isas() {
        for (batch, m, input_grad) in [(1, 0, true), (13, 4, true), (16, 2, false), (70, 3, true), (8, 1, false)] {
            assert!(check_chain(&specs(m), batch, input_grad, isa), "batch {batch}: no gradient at all");
        }
    }
}
