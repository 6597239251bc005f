//! The data module on real files (MNIST, Fashion-MNIST, partial CIFAR-10 from /work/shared/data,
//! skipped where absent), on generated `synthetic_digits`, and the batch helpers.

mod common;

use common::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sprsc::data::{epoch_order, fill_batch, load, resolve_dir_from, DataSet, Split};
use sprsc::ir::plan::{Augment, Dataset};

fn mean_std(xs: &[f32]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn check_mnist_like(ds: &DataSet, train_hist: [usize; 10], test_hist: [usize; 10]) {
    assert_eq!((ds.train.len, ds.test.len), (60_000, 10_000));
    assert_eq!(ds.shape, [1, 28, 28]);
    assert_eq!(ds.train.images.len(), 60_000 * 784);
    assert_eq!(ds.train.label_histogram(10), train_hist);
    assert_eq!(ds.test.label_histogram(10), test_hist);
    assert_eq!(ds.files.len(), 4);
    assert_eq!(ds.note, None);
    let (mean, std) = mean_std(&ds.train.images);
    println!("{}: train mean {mean:.4} std {std:.4}", ds.name);
    assert!(mean.abs() < 0.01 && (std - 1.0).abs() < 0.02, "mean {mean} std {std}");
}

#[test]
fn real_mnist() {
    let Some(dir) = shared("mnist") else { return };
    let ds = load(&spec(Dataset::Mnist, Some(&*dir), 0), 0).unwrap();
    check_mnist_like(
        &ds,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    );
    assert_eq!(ds.train.labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(ds.test.labels[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    // Background pixels are 0 and map to -mean/std.
    assert!((ds.train.images[0] - (-0.1307 / 0.3081)).abs() < 1e-6);
}

#[test]
fn real_fashion_mnist_with_val() {
    let Some(dir) = shared("fashion-mnist") else {
        return;
    };
    let full = load(&spec(Dataset::FashionMnist, Some(&*dir), 0), 0).unwrap();
    check_mnist_like(&full, [6000; 10], [1000; 10]);
    assert_eq!(full.train.labels[..10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);

    let held = load(&spec(Dataset::FashionMnist, Some(&*dir), 5000), 0).unwrap();
    let val = held.val.as_ref().expect("val split");
    assert_eq!((held.train.len, val.len), (55_000, 5000));
    assert_eq!(val.labels, full.train.labels[55_000..]);
    assert_eq!(val.images, full.train.images[55_000 * 784..]);
    assert_eq!(held.train.images.len(), 55_000 * 784);
}

#[test]
fn sprs_data_search() {
    let Some(mnist) = shared("mnist") else { return };
    let root = mnist.parent().unwrap();
    let s = spec(Dataset::Mnist, None, 0);
    assert_eq!(resolve_dir_from(&s, Some(root)).unwrap(), mnist);
    // SPRS_DATA may point straight at the files.
    assert_eq!(resolve_dir_from(&s, Some(&mnist)).unwrap(), mnist);
    let cifar = spec(Dataset::Cifar10, None, 0);
    assert_eq!(resolve_dir_from(&cifar, Some(&root.join("cifar-10"))).unwrap(), root.join("cifar-10"));
}

#[test]
fn partial_cifar10() {
    let Some(dir) = shared("cifar-10") else {
        return;
    };
    let ds = load(&spec(Dataset::Cifar10, Some(&*dir), 0), 0).unwrap();
    assert_eq!((ds.train.len, ds.test.len), (4000, 1000));
    assert_eq!(ds.shape, [3, 32, 32]);
    assert_eq!(ds.train.images.len(), 4000 * 3072);
    assert_eq!(ds.train.labels[..10], [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]);
    assert_eq!(ds.test.labels[..10], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
    assert_eq!(ds.train.label_histogram(10), [396, 366, 420, 384, 422, 393, 414, 385, 407, 413]);
    assert_eq!(ds.test.label_histogram(10), [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]);
    let note = ds.note.expect("partial data is noted");
    println!("{note}");
    assert!(note.contains("partial") && note.contains("4000"), "{note}");
    // Per-channel normalisation: every channel roughly centred.
    for c in 0..3 {
        let plane: Vec<f32> =
            (0..ds.train.len).flat_map(|i| ds.train.image(i, ds.shape)[c * 1024..(c + 1) * 1024].to_vec()).collect();
        let (mean, std) = mean_std(&plane);
        println!("cifar-10 channel {c}: mean {mean:.3} std {std:.3}");
        assert!(mean.abs() < 0.05 && (std - 1.0).abs() < 0.05);
    }
}

#[test]
fn full_cifar10_names_and_cifar100_fine_labels() {
    let dir = temp_dir("cifar-full");
    for i in 1..=5 {
        std::fs::write(dir.join(format!("data_batch_{i}.bin")), cifar_records(3)).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), cifar_records(2)).unwrap();
    let ds = load(&spec(Dataset::Cifar10, Some(&*dir), 0), 0).unwrap();
    assert_eq!((ds.train.len, ds.test.len, ds.files.len()), (15, 2, 6));
    assert_eq!(ds.train.labels[..6], [0, 1, 2, 0, 1, 2]);
    // Pixel 0 of record 1 is 1; channel 0 normalisation.
    assert!((ds.train.images[3072] - (1.0 / 255.0 - 0.4914) / 0.2470).abs() < 1e-6);
    assert!(ds.note.is_some(), "15 records are not the full set");

    let dir = temp_dir("cifar100");
    let records = |n: usize| -> Vec<u8> {
        (0..n).flat_map(|i| [(i % 20) as u8, (i * 7 % 100) as u8].into_iter().chain([128; 3072])).collect()
    };
    std::fs::write(dir.join("train.bin"), records(5)).unwrap();
    std::fs::write(dir.join("test.bin"), records(2)).unwrap();
    let ds = load(&spec(Dataset::Cifar100, Some(&*dir), 0), 0).unwrap();
    assert_eq!((ds.classes, ds.train.labels.clone()), (100, vec![0, 7, 14, 21, 28]));
}

#[test]
fn gzip_raw_and_dotted_names_agree() {
    let raw = temp_dir("raw");
    write_mnist(&raw, 20, 10);
    let gz = temp_dir("gz");
    for (name, dotted) in MNIST_NAMES.iter().zip([true, false, true, false]) {
        let bytes = std::fs::read(raw.join(name)).unwrap();
        let out = if dotted { name.replacen("-idx", ".idx", 1) } else { name.to_string() };
        std::fs::write(gz.join(format!("{out}.gz")), gzip(&bytes)).unwrap();
    }
    let a = load(&spec(Dataset::Mnist, Some(&*raw), 0), 0).unwrap();
    let b = load(&spec(Dataset::Mnist, Some(&*gz), 0), 0).unwrap();
    assert_eq!((a.train, a.test), (b.train, b.test));
    assert!(a.note.unwrap().contains("partial"));
}

#[test]
fn idx_files_use_their_own_normalisation() {
    let dir = temp_dir("idx-norm");
    write_mnist(&dir, 50, 10);
    let ds = load(&spec(idx_dataset(&dir, MNIST_NAMES), None, 0), 0).unwrap();
    let (mean, std) = mean_std(&ds.train.images);
    assert!(mean.abs() < 1e-3 && (std - 1.0).abs() < 1e-3, "mean {mean} std {std}");
}

/// Nearest-class-mean accuracy of `test` under the class means of `train`.
fn nearest_class_mean(train: &Split, test: &Split, n: usize) -> f64 {
    let mut means = vec![vec![0f64; n]; 10];
    let counts = train.label_histogram(10);
    for i in 0..train.len {
        let m = &mut means[train.labels[i] as usize];
        for (a, &x) in m.iter_mut().zip(&train.images[i * n..(i + 1) * n]) {
            *a += x as f64;
        }
    }
    for (m, &c) in means.iter_mut().zip(&counts) {
        m.iter_mut().for_each(|a| *a /= c as f64);
    }
    let correct = (0..test.len)
        .filter(|&i| {
            let x = &test.images[i * n..(i + 1) * n];
            let dist = |m: &Vec<f64>| m.iter().zip(x).map(|(a, &b)| (a - b as f64).powi(2)).sum::<f64>();
            let best = (0..10).min_by(|&a, &b| dist(&means[a]).total_cmp(&dist(&means[b]))).unwrap();
            best == test.labels[i] as usize
        })
        .count();
    correct as f64 / test.len as f64
}

#[test]
fn synthetic_digits_deterministic_balanced_and_not_trivial() {
    let s = |seed| load(&spec(Dataset::SyntheticDigits { train: 5000, test: 1000 }, None, 0), seed).unwrap();
    let (a, b, c) = (s(7), s(7), s(8));
    let bits = |d: &DataSet| d.train.images.iter().chain(&d.test.images).map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    assert_ne!(bits(&a), bits(&c));
    assert_eq!((a.train.len, a.test.len, a.shape, a.classes), (5000, 1000, [1, 28, 28], 10));
    assert_eq!(a.train.label_histogram(10), [500; 10]);
    assert_eq!(a.test.label_histogram(10), [100; 10]);
    assert!(a.train.images.iter().all(|x| x.is_finite()));
    let (mean, std) = mean_std(&a.train.images);
    println!("synthetic_digits: train mean {mean:.3} std {std:.3}");

    let acc = nearest_class_mean(&a.train, &a.test, 784);
    println!("synthetic_digits: nearest-class-mean test accuracy {:.1}%", acc * 100.0);
    assert!(acc > 0.3 && acc < 0.9, "nearest-class-mean accuracy {acc}");
    if let Some(dir) = shared("mnist") {
        let m = load(&spec(Dataset::Mnist, Some(&*dir), 0), 0).unwrap();
        let acc = nearest_class_mean(&m.train, &m.test, 784);
        println!("mnist: nearest-class-mean test accuracy {:.1}%", acc * 100.0);
    }
}

#[test]
fn epoch_order_is_a_seeded_permutation() {
    let a = epoch_order(1000, 3, 0);
    assert_eq!(a, epoch_order(1000, 3, 0));
    assert_ne!(a, epoch_order(1000, 3, 1));
    assert_ne!(a, epoch_order(1000, 4, 0));
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    assert_ne!(a, sorted);
    assert!(epoch_order(0, 1, 1).is_empty());
}

/// A 2-example split of 1 x 3 x 3 images: example e has pixel (y, x) = 10 e + 3 y + x + 1.
fn tiny_split() -> Split {
    let images = (0..2).flat_map(|e| (0..9).map(move |k| (10 * e + k + 1) as f32)).collect();
    Split { images, labels: vec![4, 7], len: 2 }
}

#[test]
fn fill_batch_copies_and_labels() {
    let split = tiny_split();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (mut images, mut labels) = (vec![0.0; 27], vec![0; 3]);
    fill_batch(&split, [1, 3, 3], &[1, 0, 1], &[], &mut rng, &mut images, &mut labels);
    assert_eq!(labels, [7, 4, 7]);
    assert_eq!(images[..9], split.images[9..]);
    assert_eq!(images[9..18], split.images[..9]);
}

#[test]
fn fill_batch_crop_is_a_zero_padded_shift_and_flip_mirrors() {
    let split = tiny_split();
    let src: Vec<f32> = split.images[..9].to_vec();
    let mut seen_shifts = std::collections::BTreeSet::new();
    let mut flips = 0;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..400 {
        let (mut img, mut lab) = (vec![0.0; 9], vec![0; 1]);
        fill_batch(&split, [1, 3, 3], &[0], &[Augment::Crop { size: 3, pad: 1 }], &mut rng, &mut img, &mut lab);
        // Find the shift (dy, dx) in -1..=1 that explains the output exactly.
        let shifted = |dy: i32, dx: i32| -> Vec<f32> {
            (0..9)
                .map(|k| {
                    let (y, x) = (k / 3 + dy, k % 3 + dx);
                    if (0..3).contains(&y) && (0..3).contains(&x) {
                        src[(y * 3 + x) as usize]
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let shift = (-1..=1).flat_map(|dy| (-1..=1).map(move |dx| (dy, dx))).find(|&(dy, dx)| shifted(dy, dx) == img);
        seen_shifts.insert(shift.expect("output is a shifted copy"));

        let mut img = vec![0.0; 9];
        fill_batch(&split, [1, 3, 3], &[0], &[Augment::Flip], &mut rng, &mut img, &mut lab);
        if img == src {
            continue;
        }
        assert_eq!(img, [3.0, 2.0, 1.0, 6.0, 5.0, 4.0, 9.0, 8.0, 7.0]);
        flips += 1;
    }
    assert_eq!(seen_shifts.len(), 9, "every offset in -1..=1 occurs");
    assert!((150..250).contains(&flips), "flip with p = 1/2: {flips} of 400");

    // Same rng state, same batch.
    let run = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut img, mut lab) = (vec![0.0; 18], vec![0; 2]);
        let aug = [Augment::Crop { size: 3, pad: 2 }, Augment::Flip];
        fill_batch(&split, [1, 3, 3], &[0, 1], &aug, &mut rng, &mut img, &mut lab);
        img
    };
    assert_eq!(run(5), run(5));
}
