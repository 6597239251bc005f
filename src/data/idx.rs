//! IDX reader for MNIST, Fashion-MNIST and `idx(...)`. In: four IDX files (images, magic
//! 0x803, N x 28 x 28 bytes; labels, magic 0x801, N bytes), each gzipped or raw. Out: train and
//! test [`Split`]s, normalised.
//!
//! Every header field is checked against the file length before any slicing, so a corrupt or
//! truncated file is an error naming the file, never a panic.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::error::DataError;
use super::{normalise, Loaded, Norm, Split};

const IMAGES_MAGIC: u32 = 0x803;
const LABELS_MAGIC: u32 = 0x801;
const SIDE: usize = 28;

/// Standard file stems, in the order the four files are read.
const STEMS: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

#[derive(Debug, Clone)]
pub(crate) struct IdxFiles {
    pub train_images: PathBuf,
    pub train_labels: PathBuf,
    pub test_images: PathBuf,
    pub test_labels: PathBuf,
}

/// Accepted names for a stem: as is or with `.gz`, and the `train-images.idx3-ubyte` spelling.
fn spellings(stem: &str) -> [String; 4] {
    let dotted = stem.replacen("-idx", ".idx", 1);
    [stem.to_string(), format!("{stem}.gz"), dotted.clone(), format!("{dotted}.gz")]
}

fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    spellings(stem).iter().map(|name| dir.join(name)).find(|p| p.is_file())
}

/// Whether `dir` holds MNIST-style training images under any accepted name.
pub(crate) fn holds_files(dir: &Path) -> bool {
    find(dir, STEMS[0]).is_some()
}

/// The four standard files in `dir`.
pub(crate) fn find_files(dir: &Path, dataset: &str) -> Result<IdxFiles, DataError> {
    let find_one = |stem: &str| {
        find(dir, stem).ok_or_else(|| DataError::MissingFile {
            dir: dir.to_path_buf(),
            dataset: dataset.to_string(),
            expected: spellings(stem).into(),
        })
    };
    Ok(IdxFiles {
        train_images: find_one(STEMS[0])?,
        train_labels: find_one(STEMS[1])?,
        test_images: find_one(STEMS[2])?,
        test_labels: find_one(STEMS[3])?,
    })
}

/// Reads the four files (decompressing in parallel) and checks them. `norm: None` normalises
/// with the training images' own mean and standard deviation (for arbitrary `idx(...)` data).
/// `full` is the standard (train, test) size; other sizes are noted in the result.
pub(crate) fn load(
    dataset: &str,
    files: &IdxFiles,
    classes: usize,
    norm: Option<Norm>,
    full: Option<(usize, usize)>,
) -> Result<Loaded, DataError> {
    // Decompression dominates (train images are 47 MB inflated); the four files go in parallel.
    let read_pair = |a: &Path, b: &Path| rayon::join(|| read_bytes(a), || read_bytes(b));
    let ((train_images, train_labels), (test_images, test_labels)) = rayon::join(
        || read_pair(&files.train_images, &files.train_labels),
        || read_pair(&files.test_images, &files.test_labels),
    );
    let (train_images, train_labels) = (train_images?, train_labels?);
    let (test_images, test_labels) = (test_images?, test_labels?);

    let train_px = images(&files.train_images, &train_images)?;
    let test_px = images(&files.test_images, &test_images)?;
    let train_lb = labels(&files.train_labels, &train_labels, classes)?;
    let test_lb = labels(&files.test_labels, &test_labels, classes)?;
    check_pair(dataset, "train", (&files.train_images, train_px), (&files.train_labels, train_lb))?;
    check_pair(dataset, "test", (&files.test_images, test_px), (&files.test_labels, test_lb))?;

    let norm = norm.unwrap_or_else(|| own_norm(train_px));
    let split = |px: &[u8], lb: &[u8]| Split {
        images: normalise(px, 1, SIDE * SIDE, &norm),
        labels: lb.to_vec(),
        len: lb.len(),
    };
    let (train, test) = (split(train_px, train_lb), split(test_px, test_lb));
    let note = match full {
        Some((tr, te)) if (train.len, test.len) != (tr, te) => Some(format!(
            "partial data: {} training and {} test examples (the standard set has {tr} and {te})",
            train.len, test.len
        )),
        _ => None,
    };
    let files = [&files.train_images, &files.train_labels, &files.test_images, &files.test_labels]
        .map(|p| p.to_path_buf())
        .to_vec();
    Ok(Loaded { train, test, files, note })
}

/// Images and labels of one split must agree in count, and the split must not be empty.
fn check_pair(
    dataset: &str,
    split: &'static str,
    (images_path, pixels): (&PathBuf, &[u8]),
    (labels_path, labels): (&PathBuf, &[u8]),
) -> Result<(), DataError> {
    let n = pixels.len() / (SIDE * SIDE);
    if n != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: images_path.clone(),
            images: n,
            labels_path: labels_path.clone(),
            labels: labels.len(),
        });
    }
    if n == 0 {
        let source_desc = format!("`{}` holds 0 images", images_path.display());
        return Err(DataError::Empty { dataset: dataset.into(), split, source_desc });
    }
    Ok(())
}

/// The file's bytes, gunzipped when it starts with the gzip magic or is named `*.gz`.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Io { path: path.into(), source })?;
    let named_gz = path.extension().is_some_and(|e| e == "gz");
    if !raw.starts_with(&[0x1f, 0x8b]) {
        if named_gz {
            let message = "it does not start with the gzip magic bytes 1f 8b".to_string();
            return Err(DataError::CorruptGzip { path: path.into(), message });
        }
        return Ok(raw);
    }
    // The trailer holds the size mod 2^32; bound it so a corrupt trailer cannot demand a huge
    // allocation (deflate expands at most ~1032x).
    let hint = match raw.len() {
        n if n >= 18 => u32::from_le_bytes(raw[n - 4..].try_into().expect("4 bytes")) as usize,
        _ => 0,
    };
    let mut out = Vec::with_capacity(hint.min(raw.len().saturating_mul(1032)).min(1 << 30));
    MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| DataError::CorruptGzip { path: path.into(), message: e.to_string() })?;
    Ok(out)
}

/// Checks an IDX header with `magic` and returns (dims, payload).
fn parse<'a>(path: &Path, bytes: &'a [u8], magic: u32, what: &'static str) -> Result<(Vec<u32>, &'a [u8]), DataError> {
    let ndims = (magic & 0xff) as usize;
    let header = 4 + 4 * ndims;
    let short = |layout: String| DataError::WrongLength {
        path: path.into(),
        expected: header as u64,
        found: bytes.len() as u64,
        layout,
    };
    if bytes.len() < 4 {
        return Err(short(format!("at least the {header}-byte IDX header")));
    }
    let found = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
    if found != magic {
        return Err(DataError::BadMagic { path: path.into(), what, found, expected: magic });
    }
    if bytes.len() < header {
        return Err(short(format!("at least the {header}-byte IDX header")));
    }
    let dims: Vec<u32> =
        bytes[4..header].chunks_exact(4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes"))).collect();
    let payload: u64 = dims.iter().map(|&d| d as u64).product();
    let expected = header as u64 + payload;
    if bytes.len() as u64 != expected {
        let shape = dims.iter().map(u32::to_string).collect::<Vec<_>>().join(" x ");
        return Err(DataError::WrongLength {
            path: path.into(),
            expected,
            found: bytes.len() as u64,
            layout: format!("{header}-byte header + {shape} {what}"),
        });
    }
    Ok((dims, &bytes[header..]))
}

/// The pixels of an images file, checked to be N x 28 x 28.
fn images<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8], DataError> {
    let (dims, pixels) = parse(path, bytes, IMAGES_MAGIC, "images")?;
    if dims[1] as usize != SIDE || dims[2] as usize != SIDE {
        return Err(DataError::BadShape { path: path.into(), found: dims[1..].to_vec(), expected: [SIDE; 2] });
    }
    Ok(pixels)
}

/// The labels of a labels file, checked to be below `classes`.
fn labels<'a>(path: &Path, bytes: &'a [u8], classes: usize) -> Result<&'a [u8], DataError> {
    let (_, labels) = parse(path, bytes, LABELS_MAGIC, "labels")?;
    if let Some(index) = labels.iter().position(|&l| l as usize >= classes) {
        return Err(DataError::LabelOutOfRange { path: path.into(), index, label: labels[index], classes });
    }
    Ok(labels)
}

/// Mean and standard deviation of the training pixels, from a histogram (exact and fast).
fn own_norm(pixels: &[u8]) -> Norm {
    let mut hist = [0u64; 256];
    for &p in pixels {
        hist[p as usize] += 1;
    }
    let n = pixels.len().max(1) as f64;
    let mean = hist.iter().enumerate().map(|(v, &c)| v as f64 / 255.0 * c as f64).sum::<f64>() / n;
    let var = hist.iter().enumerate().map(|(v, &c)| (v as f64 / 255.0 - mean).powi(2) * c as f64).sum::<f64>() / n;
    // A constant image set has no spread; dividing by 1 keeps it finite.
    let std = if var > 0.0 { var.sqrt() } else { 1.0 };
    Norm::gray(mean as f32, std as f32)
}
