//! The data phase. In: the plan's [`DataSpec`] (which data set, where, `val:`, augmentations)
//! and the recipe seed. Out: a [`DataSet`] held in memory as normalised `f32` images (N x C x H
//! x W) with `u8` labels, plus the per-epoch order ([`epoch_order`]) and batch assembly with
//! augmentation ([`fill_batch`]) that the engine calls every step.
//!
//! Readers: IDX for MNIST, Fashion-MNIST and `idx(...)` (`idx.rs`), the CIFAR binary record
//! formats (`cifar.rs`), and the generated `synthetic_digits` (`synthetic.rs`). Every failure
//! is a [`DataError`] with an E06xx code; malformed files never panic.

mod batch;
mod cifar;
mod error;
mod idx;
mod paths;
mod synthetic;

use std::path::PathBuf;

use rayon::prelude::*;

use crate::ir::plan::{DataSpec, Dataset};

pub use batch::{epoch_order, fill_batch};
pub use error::{DataError, Searched};
pub use paths::{resolve_dir, resolve_dir_from};

/// One split of a data set, all in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// `len * C * H * W` normalised pixels, example-major, then channel, row, column.
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
    pub len: usize,
}

impl Split {
    /// Pixels of example `i`, given the data set's shape.
    pub fn image(&self, i: usize, shape: [usize; 3]) -> &[f32] {
        let n = shape.iter().product::<usize>();
        &self.images[i * n..(i + 1) * n]
    }

    /// How many examples carry each label (`classes` entries).
    pub fn label_histogram(&self, classes: usize) -> Vec<usize> {
        let mut hist = vec![0; classes];
        for &l in &self.labels {
            hist[l as usize] += 1;
        }
        hist
    }

    /// Moves the last `n` examples into a new split.
    fn split_off_tail(&mut self, n: usize) -> Split {
        let keep = self.len - n;
        let per = self.images.len() / self.len.max(1);
        let tail = Split { images: self.images.split_off(keep * per), labels: self.labels.split_off(keep), len: n };
        self.len = keep;
        tail
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataSet {
    /// The recipe's spelling: `mnist`, `fashion_mnist`, `cifar10`, `cifar100`, ...
    pub name: String,
    /// Channels, height, width.
    pub shape: [usize; 3],
    pub classes: usize,
    pub train: Split,
    /// The last `val` training examples, when `val:` is given.
    pub val: Option<Split>,
    pub test: Split,
    /// The files read, in order (empty for `synthetic_digits`).
    pub files: Vec<PathBuf>,
    /// Set when the data differs from the standard set, e.g. a partial CIFAR-10; worth
    /// printing next to any result.
    pub note: Option<String>,
}

/// Per-channel normalisation: `(pixel / 255 - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Norm {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Norm {
    pub const MNIST: Norm = Norm::gray(0.1307, 0.3081);
    pub const FASHION_MNIST: Norm = Norm::gray(0.2860, 0.3530);
    pub const CIFAR10: Norm = Norm { mean: [0.4914, 0.4822, 0.4465], std: [0.2470, 0.2435, 0.2616] };
    pub const CIFAR100: Norm = Norm { mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762] };

    pub const fn gray(mean: f32, std: f32) -> Norm {
        Norm { mean: [mean; 3], std: [std; 3] }
    }

    /// The 256 normalised values of channel `c`, so converting a pixel is one lookup.
    pub fn table(&self, c: usize) -> [f32; 256] {
        std::array::from_fn(|v| (v as f32 / 255.0 - self.mean[c]) / self.std[c])
    }
}

/// Converts `pixels` to normalised floats. The pixels are planes of `plane` bytes, cycling
/// through `channels` channels (N x C x H x W), so plane `k` belongs to channel `k % channels`.
pub(crate) fn normalise(pixels: &[u8], channels: usize, plane: usize, norm: &Norm) -> Vec<f32> {
    let tables: Vec<[f32; 256]> = (0..channels).map(|c| norm.table(c)).collect();
    let mut out = vec![0.0f32; pixels.len()];
    out.par_chunks_mut(plane).zip(pixels.par_chunks(plane)).enumerate().for_each(|(k, (dst, src))| {
        let table = &tables[k % channels];
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = table[s as usize];
        }
    });
    out
}

/// Everything a reader returns before `val:` is applied.
pub(crate) struct Loaded {
    pub train: Split,
    pub test: Split,
    pub files: Vec<PathBuf>,
    pub note: Option<String>,
}

/// Loads (or generates) the data set `spec` names and holds out `val:`.
pub fn load(spec: &DataSpec, seed: u64) -> Result<DataSet, DataError> {
    let (shape, classes) = spec.dataset.shape_and_classes();
    let name = recipe_name(&spec.dataset);
    // The standard MNIST-style sizes; other sizes are loaded but noted.
    let mnist_sizes = Some((60_000, 10_000));
    let loaded = match &spec.dataset {
        Dataset::Mnist | Dataset::FashionMnist => {
            let norm = match spec.dataset {
                Dataset::Mnist => Norm::MNIST,
                _ => Norm::FASHION_MNIST,
            };
            let files = idx::find_files(&resolve_dir(spec)?, spec.dataset.dir_name())?;
            idx::load(name, &files, classes, Some(norm), mnist_sizes)?
        }
        Dataset::Idx { train_images, train_labels, test_images, test_labels } => {
            let dir = resolve_dir(spec)?;
            let files = idx::IdxFiles {
                train_images: dir.join(train_images),
                train_labels: dir.join(train_labels),
                test_images: dir.join(test_images),
                test_labels: dir.join(test_labels),
            };
            idx::load(name, &files, classes, None, None)?
        }
        Dataset::Cifar10 => cifar::load(&resolve_dir(spec)?, &cifar::CIFAR10)?,
        Dataset::Cifar100 => cifar::load(&resolve_dir(spec)?, &cifar::CIFAR100)?,
        Dataset::SyntheticDigits { train, test } => synthetic::generate(*train, *test, seed)?,
    };
    let Loaded { mut train, test, files, note } = loaded;
    let val = match spec.val {
        0 => None,
        n if n >= train.len => return Err(DataError::ValTooLarge { val: n, train: train.len }),
        n => Some(train.split_off_tail(n)),
    };
    Ok(DataSet { name: name.to_string(), shape, classes, train, val, test, files, note })
}

/// The data set as a recipe spells it (`fashion_mnist`, not the directory's `fashion-mnist`).
fn recipe_name(dataset: &Dataset) -> &'static str {
    match dataset {
        Dataset::Mnist => "mnist",
        Dataset::FashionMnist => "fashion_mnist",
        Dataset::Cifar10 => "cifar10",
        Dataset::Cifar100 => "cifar100",
        Dataset::SyntheticDigits { .. } => "synthetic_digits",
        Dataset::Idx { .. } => "idx",
    }
}
