//! CIFAR binary reader. In: a directory of CIFAR-10 (`data_batch_1.bin`..`data_batch_5.bin`,
//! `test_batch.bin`; records of 1 label byte + 3072 channel-major pixels) or CIFAR-100
//! (`train.bin`, `test.bin`; 2 label bytes, coarse then fine) files. Out: train and test
//! [`Split`]s, normalised per channel, with a note when the files are not the full set.
//!
//! When the official CIFAR-10 names are absent, any `data_batch_*.bin` / `test_batch*.bin` is
//! accepted (e.g. `data_batch_1.first4000.bin`), and the result says that it is partial.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::error::DataError;
use super::{idx, normalise, Loaded, Norm, Split};

const PIXELS: usize = 3 * 32 * 32;

pub(crate) struct Format {
    /// Name in messages (`CIFAR-10`).
    pub title: &'static str,
    /// Name in `MissingFile` help (`cifar-10`).
    pub dir_name: &'static str,
    /// The folder the official tarball unpacks to, looked into when `dir` has no files.
    pub tarball_dir: &'static str,
    /// Label bytes per record; the label used is the last of them (CIFAR-100's fine label).
    pub label_bytes: usize,
    pub classes: usize,
    pub norm: Norm,
    pub train_files: &'static [&'static str],
    pub test_files: &'static [&'static str],
    /// Prefixes of accepted partial files (`data_batch_`, `test_batch`); empty: none.
    pub partial_prefixes: Option<(&'static str, &'static str)>,
    pub full: (usize, usize),
}

pub(crate) const CIFAR10: Format = Format {
    title: "CIFAR-10",
    dir_name: "cifar-10",
    tarball_dir: "cifar-10-batches-bin",
    label_bytes: 1,
    classes: 10,
    norm: Norm::CIFAR10,
    train_files: &["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
    test_files: &["test_batch.bin"],
    partial_prefixes: Some(("data_batch_", "test_batch")),
    full: (50_000, 10_000),
};

pub(crate) const CIFAR100: Format = Format {
    title: "CIFAR-100",
    dir_name: "cifar-100",
    tarball_dir: "cifar-100-binary",
    label_bytes: 2,
    classes: 100,
    norm: Norm::CIFAR100,
    train_files: &["train.bin"],
    test_files: &["test.bin"],
    partial_prefixes: None,
    full: (50_000, 10_000),
};

impl Format {
    fn record(&self) -> usize {
        self.label_bytes + PIXELS
    }

    /// Whether `dir` holds this format's training files (official or partial names).
    pub fn holds_files(&self, dir: &Path) -> bool {
        !self.train_paths(dir).is_empty()
    }

    fn train_paths(&self, dir: &Path) -> Vec<PathBuf> {
        self.paths(dir, self.train_files, self.partial_prefixes.map(|p| p.0))
    }

    fn test_paths(&self, dir: &Path) -> Vec<PathBuf> {
        self.paths(dir, self.test_files, self.partial_prefixes.map(|p| p.1))
    }

    /// The official files when all are present, else the files starting with `prefix` and
    /// ending in `.bin`, ordered by batch number then name.
    fn paths(&self, dir: &Path, official: &[&str], prefix: Option<&str>) -> Vec<PathBuf> {
        let all: Vec<PathBuf> = official.iter().map(|f| dir.join(f)).collect();
        if all.iter().all(|p| p.is_file()) {
            return all;
        }
        let (Some(prefix), Ok(entries)) = (prefix, std::fs::read_dir(dir)) else {
            return Vec::new();
        };
        let mut found: Vec<(u64, String)> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix) && n.ends_with(".bin"))
            .map(|n| (batch_number(&n[prefix.len()..]), n))
            .collect();
        found.sort();
        found.into_iter().map(|(_, n)| dir.join(n)).collect()
    }
}

/// Leading digits of `rest` (`1` in `1.first4000.bin`), so batch 10 sorts after batch 9.
fn batch_number(rest: &str) -> u64 {
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

/// Reads every train and test file in `dir` (or its tarball folder) and checks each record.
pub(crate) fn load(dir: &Path, format: &Format) -> Result<Loaded, DataError> {
    let nested = dir.join(format.tarball_dir);
    let dir = if !format.holds_files(dir) && nested.is_dir() { nested } else { dir.to_path_buf() };
    let (train_paths, test_paths) = (format.train_paths(&dir), format.test_paths(&dir));
    for (paths, names, prefix) in [
        (&train_paths, format.train_files, format.partial_prefixes.map(|p| p.0)),
        (&test_paths, format.test_files, format.partial_prefixes.map(|p| p.1)),
    ] {
        if paths.is_empty() {
            let mut expected: Vec<String> = vec![names.join(", ")];
            expected.extend(prefix.map(|p| format!("{p}*.bin")));
            return Err(DataError::MissingFile { dir: dir.clone(), dataset: format.dir_name.into(), expected });
        }
    }

    let train = read_split(&train_paths, format, "train")?;
    let test = read_split(&test_paths, format, "test")?;
    let official = format.train_files.len() + format.test_files.len();
    let all_official = train_paths.len() + test_paths.len() == official
        && train_paths.iter().chain(&test_paths).all(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            format.train_files.contains(&name) || format.test_files.contains(&name)
        });
    let note = if all_official && (train.len, test.len) == format.full {
        None
    } else {
        let names: Vec<String> = train_paths
            .iter()
            .chain(&test_paths)
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        Some(format!(
            "partial {}: {} training and {} test examples from {} (the full set has {} and {})",
            format.title,
            train.len,
            test.len,
            names.join(", "),
            format.full.0,
            format.full.1
        ))
    };
    let files = train_paths.into_iter().chain(test_paths).collect();
    Ok(Loaded { train, test, files, note })
}

/// Reads the files of one split (in parallel), checks lengths and labels, and normalises.
fn read_split(paths: &[PathBuf], format: &Format, split: &'static str) -> Result<Split, DataError> {
    let contents: Vec<Vec<u8>> = paths.par_iter().map(|p| idx::read_bytes(p)).collect::<Result<_, _>>()?;
    let record = format.record();
    let mut labels = Vec::new();
    let mut pixels = Vec::new();
    for (path, bytes) in paths.iter().zip(&contents) {
        if bytes.len() % record != 0 {
            return Err(DataError::RecordLength {
                path: path.clone(),
                len: bytes.len() as u64,
                record,
                format: format.title,
            });
        }
        for (index, rec) in bytes.chunks_exact(record).enumerate() {
            let label = rec[format.label_bytes - 1];
            if label as usize >= format.classes {
                let path = path.clone();
                return Err(DataError::LabelOutOfRange { path, index, label, classes: format.classes });
            }
            labels.push(label);
            pixels.extend_from_slice(&rec[format.label_bytes..]);
        }
    }
    if labels.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| format!("`{}`", p.display())).collect();
        return Err(DataError::Empty {
            dataset: format.dir_name.into(),
            split,
            source_desc: format!("no records in {}", names.join(", ")),
        });
    }
    let images = normalise(&pixels, 3, PIXELS / 3, &format.norm);
    let len = labels.len();
    Ok(Split { images, labels, len })
}
