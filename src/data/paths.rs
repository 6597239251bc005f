//! Where a data set's files live. In: the [`DataSpec`] and `$SPRS_DATA`. Out: one directory, or
//! a [`DataError::NotFound`] that lists every place searched.
//!
//! Order: `path:` alone when given (relative to the current directory); otherwise
//! `$SPRS_DATA/<dir_name>`, then `$SPRS_DATA` itself when it already holds the files, then
//! `./data/<dir_name>`. The first directory that exists wins, so a missing file inside it is
//! reported as missing rather than silently skipped to another copy. When `$SPRS_DATA` points
//! straight at files, only their names are checked: MNIST and Fashion-MNIST share names, so
//! such a folder serves whichever of the two the recipe asks for.

use std::path::{Path, PathBuf};

use super::error::{DataError, Searched};
use super::{cifar, idx};
use crate::ir::plan::{DataSpec, Dataset};

/// The directory `spec` reads from, searching as described in the module docs.
/// `synthetic_digits` reads nothing and gets an empty path; `idx(...)` without `path:` gets
/// `.`, since its file names are relative to the current directory.
pub fn resolve_dir(spec: &DataSpec) -> Result<PathBuf, DataError> {
    let sprs_data = std::env::var_os("SPRS_DATA").filter(|v| !v.is_empty()).map(PathBuf::from);
    resolve_dir_from(spec, sprs_data.as_deref())
}

/// [`resolve_dir`] with `$SPRS_DATA` passed in (tests cannot safely set the environment).
pub fn resolve_dir_from(spec: &DataSpec, sprs_data: Option<&Path>) -> Result<PathBuf, DataError> {
    let name = spec.dataset.dir_name();
    if let Some(path) = &spec.path {
        let dir = PathBuf::from(path);
        if dir.is_dir() {
            return Ok(dir);
        }
        let searched = vec![Searched { how: "`path:`".into(), dir: Some(absolute(&dir)) }];
        return Err(DataError::NotFound { dataset: name.into(), searched });
    }
    match spec.dataset {
        Dataset::SyntheticDigits { .. } => return Ok(PathBuf::new()),
        Dataset::Idx { .. } => return Ok(PathBuf::from(".")),
        _ => {}
    }

    let mut searched = Vec::new();
    match sprs_data {
        Some(root) => {
            let dir = root.join(name);
            if dir.is_dir() {
                return Ok(dir);
            }
            searched.push(Searched { how: format!("$SPRS_DATA/{name}"), dir: Some(dir) });
            if holds_files(&spec.dataset, root) {
                return Ok(root.to_path_buf());
            }
            searched.push(Searched { how: "$SPRS_DATA".into(), dir: Some(root.to_path_buf()) });
        }
        None => searched.push(Searched { how: format!("$SPRS_DATA/{name}"), dir: None }),
    }
    let local = Path::new("./data").join(name);
    if local.is_dir() {
        return Ok(local);
    }
    searched.push(Searched { how: local.display().to_string(), dir: Some(absolute(&local)) });
    Err(DataError::NotFound { dataset: name.into(), searched })
}

/// Whether `dir` itself holds this data set's files (so `$SPRS_DATA` may point straight at
/// them).
fn holds_files(dataset: &Dataset, dir: &Path) -> bool {
    match dataset {
        Dataset::Mnist | Dataset::FashionMnist => idx::holds_files(dir),
        Dataset::Cifar10 => cifar::CIFAR10.holds_files(dir),
        Dataset::Cifar100 => cifar::CIFAR100.holds_files(dir),
        Dataset::SyntheticDigits { .. } | Dataset::Idx { .. } => false,
    }
}

/// `path` made absolute against the current directory, for messages only.
fn absolute(path: &Path) -> PathBuf {
    match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => cwd.join(path.strip_prefix("./").unwrap_or(path)),
        _ => path.to_path_buf(),
    }
}
