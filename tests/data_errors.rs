//! Malformed and missing inputs: each gives its E06xx code and a message naming the file, and
//! nothing panics, including on random bytes and random truncations (proptest).

mod common;

use std::path::Path;

use common::*;
use proptest::prelude::*;
use sprsc::data::{load, resolve_dir_from, DataError};
use sprsc::ir::plan::Dataset;

/// Writes the valid MNIST files, then replaces `name` with `bytes`, and loads via `idx(...)`.
fn load_with(tag: &str, name: &str, bytes: &[u8]) -> Result<sprsc::data::DataSet, DataError> {
    let dir = temp_dir(tag);
    write_mnist(&dir, 10, 10);
    std::fs::write(dir.join(name), bytes).unwrap();
    load(&spec(idx_dataset(&dir, MNIST_NAMES), None, 0), 0)
}

fn expect(result: Result<sprsc::data::DataSet, DataError>, code: &str, mentions: &[&str]) -> DataError {
    let err = result.expect_err("should fail");
    let msg = err.to_string();
    println!("{}: {msg}\n  help: {:?}", err.code(), err.help());
    assert_eq!(err.code(), code, "{msg}");
    for m in mentions {
        assert!(msg.contains(m), "message `{msg}` should mention `{m}`");
    }
    err
}

#[test]
fn missing_dir_lists_every_place_searched() {
    let s = spec(Dataset::Mnist, Some(Path::new("/nonexistent/sprsc/mnist")), 0);
    let err = expect(load(&s, 0), "E0601", &["/nonexistent/sprsc/mnist"]);
    let help = err.help().unwrap();
    assert!(help.contains("SPRS_DATA") && help.contains("path:") && help.contains("synthetic_digits"));

    let empty = temp_dir("empty-root");
    let s = spec(Dataset::Mnist, None, 0);
    let msg = resolve_dir_from(&s, Some(&*empty)).unwrap_err().to_string();
    assert!(
        msg.contains("$SPRS_DATA/mnist") && msg.contains("./data/mnist") && msg.contains(&*empty.to_string_lossy()),
        "{msg}"
    );
    let msg = resolve_dir_from(&s, None).unwrap_err().to_string();
    assert!(msg.contains("SPRS_DATA is not set"), "{msg}");
}

#[test]
fn missing_file() {
    let dir = temp_dir("missing-file");
    std::fs::write(dir.join("train-images-idx3-ubyte"), idx_images(1, 28, 28)).unwrap();
    let s = spec(Dataset::Mnist, Some(&*dir), 0);
    expect(load(&s, 0), "E0602", &["train-labels-idx1-ubyte", &dir.to_string_lossy()]);
    let s = spec(Dataset::Cifar10, Some(&*dir), 0);
    expect(load(&s, 0), "E0602", &["data_batch_1.bin", "data_batch_*.bin"]);
}

#[test]
fn unreadable_file_is_io() {
    let dir = temp_dir("io");
    write_mnist(&dir, 2, 2);
    let mut names = MNIST_NAMES;
    names[0] = "."; // a directory where a file belongs
    expect(load(&spec(idx_dataset(&dir, names), None, 0), 0), "E0603", &[]);
}

#[test]
fn bad_magic() {
    expect(
        load_with("magic", "train-images-idx3-ubyte", &idx_labels(&[1, 2])),
        "E0604",
        &["train-images-idx3-ubyte", "0x00000801", "0x00000803"],
    );
}

#[test]
fn truncated_and_overlong() {
    let full = idx_images(10, 28, 28);
    let err = load_with("trunc", "train-images-idx3-ubyte", &full[..full.len() - 100]);
    expect(err, "E0605", &["truncated", &full.len().to_string(), &(full.len() - 100).to_string()]);
    let err = load_with("trunc-head", "t10k-labels-idx1-ubyte", &[0, 0, 8, 1, 0]);
    expect(err, "E0605", &["t10k-labels-idx1-ubyte", "header"]);
    let mut long = full.clone();
    long.push(0);
    expect(load_with("long", "train-images-idx3-ubyte", &long), "E0605", &["longer"]);
}

#[test]
fn corrupt_gzip() {
    let mut gz = gzip(&idx_images(10, 28, 28));
    let dir = temp_dir("gz");
    write_mnist(&dir, 10, 10);
    let name = "train-images-idx3-ubyte.gz";
    std::fs::remove_file(dir.join("train-images-idx3-ubyte")).unwrap();
    let s = spec(Dataset::Mnist, Some(&*dir), 0);

    std::fs::write(dir.join(name), &gz[..gz.len() / 2]).unwrap();
    expect(load(&s, 0), "E0606", &[name]);
    let mid = gz.len() / 2;
    gz[mid] ^= 0xff;
    gz[mid + 1] ^= 0x55;
    std::fs::write(dir.join(name), &gz).unwrap();
    expect(load(&s, 0), "E0606", &[name]);
    std::fs::write(dir.join(name), idx_images(10, 28, 28)).unwrap();
    expect(load(&s, 0), "E0606", &["1f 8b"]);
}

#[test]
fn label_count_mismatch() {
    let err = load_with("count", "train-labels-idx1-ubyte", &idx_labels(&cycle_labels(9)));
    expect(err, "E0607", &["10 images", "9 labels", "train-labels-idx1-ubyte"]);
}

#[test]
fn label_out_of_range() {
    let mut labels = cycle_labels(10);
    labels[3] = 10;
    let err = load_with("range", "t10k-labels-idx1-ubyte", &idx_labels(&labels));
    expect(err, "E0608", &["label 10", "example 3", "0 to 9"]);
}

#[test]
fn wrong_image_shape() {
    expect(load_with("shape", "train-images-idx3-ubyte", &idx_images(10, 32, 32)), "E0609", &["32x32", "28x28"]);
}

#[test]
fn cifar_record_length() {
    let dir = temp_dir("cifar-len");
    std::fs::write(dir.join("data_batch_1.bin"), cifar_records(2)).unwrap();
    std::fs::write(dir.join("test_batch.bin"), &cifar_records(2)[..3073 + 5]).unwrap();
    expect(load(&spec(Dataset::Cifar10, Some(&*dir), 0), 0), "E0610", &["test_batch.bin", "3078", "3073"]);
    let mut bad = cifar_records(2);
    bad[3073] = 10;
    std::fs::write(dir.join("test_batch.bin"), &bad).unwrap();
    expect(load(&spec(Dataset::Cifar10, Some(&*dir), 0), 0), "E0608", &["example 1"]);
}

#[test]
fn val_too_large() {
    let dir = temp_dir("val");
    write_mnist(&dir, 10, 10);
    expect(load(&spec(Dataset::Mnist, Some(&*dir), 10), 0), "E0611", &["val: 10", "(10)"]);
    let s = spec(Dataset::SyntheticDigits { train: 20, test: 10 }, None, 25);
    expect(load(&s, 0), "E0611", &[]);
    assert_eq!(load(&spec(Dataset::Mnist, Some(&*dir), 9), 0).unwrap().train.len, 1);
}

#[test]
fn empty_split() {
    let dir = temp_dir("empty");
    write_mnist(&dir, 0, 10);
    expect(load(&spec(Dataset::Mnist, Some(&*dir), 0), 0), "E0612", &["train"]);
    let dir = temp_dir("empty-cifar");
    std::fs::write(dir.join("data_batch_1.bin"), []).unwrap();
    std::fs::write(dir.join("test_batch.bin"), cifar_records(1)).unwrap();
    expect(load(&spec(Dataset::Cifar10, Some(&*dir), 0), 0), "E0612", &["data_batch_1.bin"]);
    let s = spec(Dataset::SyntheticDigits { train: 0, test: 10 }, None, 0);
    expect(load(&s, 0), "E0612", &[]);
}

#[test]
fn every_code_has_help_or_is_io() {
    assert_eq!(DataError::CODES.len(), 12);
    let mut sorted = DataError::CODES.to_vec();
    sorted.dedup();
    assert_eq!(sorted.len(), DataError::CODES.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random truncations and byte edits of a valid (optionally gzipped) file never panic,
    /// and a failure always carries an E06xx code.
    #[test]
    fn mangled_idx_never_panics(
        which in 0usize..4,
        gz in any::<bool>(),
        cut in 0.0f64..1.2,
        edits in prop::collection::vec((0.0f64..1.0, any::<u8>()), 0..4),
    ) {
        let valid = match which {
            0 | 2 => idx_images(3, 28, 28),
            _ => idx_labels(&[1, 2, 3]),
        };
        let mut bytes = if gz { gzip(&valid) } else { valid };
        for (at, v) in edits {
            let i = ((at * bytes.len() as f64) as usize).min(bytes.len() - 1);
            bytes[i] = v;
        }
        let keep = ((cut * bytes.len() as f64) as usize).min(bytes.len());
        bytes.truncate(keep);
        let dir = temp_dir("prop");
        let dir_write = |name: &str, b: &[u8]| std::fs::write(dir.join(name), b).unwrap();
        dir_write(MNIST_NAMES[0], &idx_images(3, 28, 28));
        dir_write(MNIST_NAMES[1], &idx_labels(&[1, 2, 3]));
        dir_write(MNIST_NAMES[2], &idx_images(3, 28, 28));
        dir_write(MNIST_NAMES[3], &idx_labels(&[1, 2, 3]));
        dir_write(MNIST_NAMES[which], &bytes);
        match load(&spec(idx_dataset(&dir, MNIST_NAMES), None, 0), 0) {
            Ok(ds) => prop_assert_eq!(ds.train.len + ds.test.len, 6),
            Err(e) => prop_assert!(e.code().starts_with("E06")),
        }
    }

    /// Arbitrary bytes as any of the four files.
    #[test]
    fn random_bytes_never_panic(which in 0usize..4, bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let dir = temp_dir("prop-rand");
        write_mnist(&dir, 3, 3);
        std::fs::write(dir.join(MNIST_NAMES[which]), &bytes).unwrap();
        if let Err(e) = load(&spec(idx_dataset(&dir, MNIST_NAMES), None, 0), 0) {
            prop_assert!(e.code().starts_with("E06"));
        }
    }
}
