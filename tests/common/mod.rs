//! Helpers shared by the integration tests: compiling and rendering recipes; data specs, temp
//! dirs and small hand-made IDX/CIFAR files.
#![allow(dead_code)] // each test binary uses a different subset

pub mod fuzz;

use sprsc::diagnostics::{render_text, Diagnostic};
use sprsc::Compilation;

pub fn compile(path: &Path) -> Compilation {
    let text = std::fs::read_to_string(path).expect("test file is readable");
    sprsc::compile_source(path, text, &[])
}

/// Every diagnostic rendered without colour, with the path shortened to its file name.
pub fn rendered(comp: &Compilation, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&render_text(d, &comp.sources, false));
        out.push('\n');
    }
    out
}

/// 1-based line of a diagnostic's primary span.
pub fn line_of(comp: &Compilation, d: &Diagnostic) -> Option<usize> {
    d.span.map(|s| comp.sources.line_col(s.file, s.start).0)
}

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use sprsc::diagnostics::Span;
use sprsc::ir::plan::{DataSpec, Dataset};

pub fn spec(dataset: Dataset, path: Option<&Path>, val: usize) -> DataSpec {
    DataSpec { dataset, path: path.map(|p| p.display().to_string()), val, augment: Vec::new(), span: Span::default() }
}

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn temp_dir(tag: &str) -> TempDir {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sprsc-data-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// The shared real data, or `None` (with a message) where this machine lacks it.
pub fn shared(sub: &str) -> Option<PathBuf> {
    // The real data sets live beside the checkout (`../shared/data`) or where SPRS_DATA says.
    let root = std::env::var_os("SPRS_TEST_DATA")
        .or_else(|| std::env::var_os("SPRS_DATA"))
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"), PathBuf::from);
    let dir = root.join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} is absent (set SPRS_DATA)", dir.display());
        None
    }
}

/// An IDX images file: `n` images of `rows` x `cols`, pixel `k` of image `i` = `(i + k) % 256`.
pub fn idx_images(n: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        out.extend((d as u32).to_be_bytes());
    }
    out.extend((0..n).flat_map(|i| (0..rows * cols).map(move |k| ((i + k) % 256) as u8)));
    out
}

pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 1];
    out.extend((labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// `n` labels cycling through 0..10.
pub fn cycle_labels(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 10) as u8).collect()
}

/// Writes the four MNIST files (raw) into `dir`: `train` and `test` examples.
pub fn write_mnist(dir: &Path, train: usize, test: usize) {
    let w = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).unwrap();
    w("train-images-idx3-ubyte", idx_images(train, 28, 28));
    w("train-labels-idx1-ubyte", idx_labels(&cycle_labels(train)));
    w("t10k-images-idx3-ubyte", idx_images(test, 28, 28));
    w("t10k-labels-idx1-ubyte", idx_labels(&cycle_labels(test)));
}

/// An `idx(...)` data set over four explicit files in `dir`.
pub fn idx_dataset(dir: &Path, names: [&str; 4]) -> Dataset {
    let p = |n: &str| dir.join(n).display().to_string();
    Dataset::Idx {
        train_images: p(names[0]),
        train_labels: p(names[1]),
        test_images: p(names[2]),
        test_labels: p(names[3]),
    }
}

pub const MNIST_NAMES: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

/// CIFAR-10 records: label `i % 10`, pixels `(i + k) % 256`.
pub fn cifar_records(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| std::iter::once((i % 10) as u8).chain((0..3072).map(move |k| ((i + k) % 256) as u8))).collect()
}

/// Writes `dir/FILE` from an explanation's `<!-- setup: FILE = SPEC -->` line. SPEC is
/// `images N [RxC] [cut K]`, `labels N [all V]`, `bytes N` or `cifar N`.
pub fn setup_file(dir: &Path, line: &str) {
    let (file, spec) = line.split_once(" = ").unwrap();
    let words: Vec<&str> = spec.split_whitespace().collect();
    let num = |i: usize| words[i].parse::<usize>().unwrap();
    let bytes = match words[0] {
        "images" => {
            let (mut rows, mut cols, mut cut) = (28, 28, 0);
            let mut rest = words[2..].iter();
            while let Some(w) = rest.next() {
                if *w == "cut" {
                    cut = rest.next().unwrap().parse().unwrap();
                } else {
                    let (r, c) = w.split_once('x').unwrap();
                    (rows, cols) = (r.parse().unwrap(), c.parse().unwrap());
                }
            }
            let mut b = idx_images(num(1), rows, cols);
            b.truncate(b.len() - cut);
            b
        }
        "labels" if words.len() == 4 && words[2] == "all" => idx_labels(&vec![num(3) as u8; num(1)]),
        "labels" => idx_labels(&cycle_labels(num(1))),
        "bytes" => vec![0; num(1)],
        "cifar" => cifar_records(num(1)),
        // `safetensors NAME 3x2`: one f32 tensor of zeros.
        "safetensors" => {
            let shape: Vec<usize> = words[2].split('x').map(|d| d.parse().unwrap()).collect();
            let data = vec![0u8; 4 * shape.iter().product::<usize>()];
            let view = safetensors::tensor::TensorView::new(safetensors::tensor::Dtype::F32, shape, &data).unwrap();
            safetensors::serialize(vec![(words[1].to_string(), view)], &None).unwrap()
        }
        other => panic!("unknown setup `{other}` in `{line}`"),
    };
    let path = dir.join(file.trim());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A sweep of two recipes x two targets x two seeds on `synthetic_digits`: eight cells, about
/// a second each (tests/sweep.rs, tests/slurm_e2e.rs).
pub const SWEEP_GRID: &str = "recipe a {
  data synthetic_digits(train: 400, test: 200)
  model lenet300_100
  sparsity { target 90%; mask magnitude; schedule cubic(end: 1 epoch, every: 2 steps) }
  train { epochs 1; batch 50; optimizer sgd(lr: 0.1, momentum: 0.9) }
}
recipe b extends a { sparsity { distribution global } }
sweep grid {
  recipes [a, b]
  vary sparsity.target [80%, 95%]
  seeds [0, 1]
  report \"ab\"
}
";

/// A sweep report's CSV rows without the columns that differ between two runs of the same grid:
/// the seconds and the run directory.
pub fn sweep_results(csv: &str) -> Vec<String> {
    csv.lines().map(|l| l.split(',').collect::<Vec<_>>()).map(|f| f[..f.len() - 2].join(",")).collect()
}

/// Runs the built `sprsc` in the crate root with `env` set (and `SPRS_MEMORY_AVAILABLE` cleared,
/// so the machine's memory decides); returns its exit code, stdout and stderr.
pub fn run_sprsc(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sprsc"))
        .args(args)
        .env_remove("SPRS_MEMORY_AVAILABLE")
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let s = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), s(out.stdout), s(out.stderr))
}

/// A fresh, empty directory `sprsc-NAME-PID` in the system's temporary directory.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sprsc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
