//! The run directory. In: metrics, summary and named tensors. Out: `metrics.jsonl` (one JSON
//! object per evaluation), `summary.json`, and safetensors files (`weights.safetensors`,
//! `masks.safetensors`) with f32 tensors under their param names, and checkpoints (see
//! [`super::checkpoint`]).
//!
//! Every file is written whole and atomically ([`write_atomic`]: a temporary file in the same
//! directory, fsync, rename), so a run killed at any moment leaves each file either as it was or
//! complete. `summary.json` is removed when a run starts and written last, so it exists only
//! once a run has finished.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Metrics, RunSummary};

pub struct RunDir {
    pub path: PathBuf,
    /// Every metrics line so far: `metrics.jsonl` is rewritten whole at each evaluation.
    metrics: String,
}

/// A tensor to save: name, shape, values.
pub type Named<'a> = (String, Vec<usize>, &'a [f32]);

/// Files a finished run leaves that an earlier run in the same directory may have left too.
const OUTCOMES: [&str; 9] = [
    "summary.json",
    "loss.svg",
    "loss.png",
    "accuracy.svg",
    "accuracy.png",
    "lr.svg",
    "lr.png",
    "sparsity.svg",
    "sparsity.png",
];

/// Writes `bytes` to `path` so that `path` is either untouched or complete: a temporary file
/// beside it, flushed to disk, then renamed over it (and the directory synced, best effort).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::other("not a file path"))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // Makes the rename itself durable; not every file system lets a directory be opened.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl RunDir {
    /// Creates the directory, empties `metrics.jsonl` and removes what an earlier run in the
    /// same directory finished with (its summary and plots); a fresh run (not `resuming`) also
    /// removes the earlier run's checkpoints.
    pub fn create(path: &Path, resuming: bool) -> io::Result<RunDir> {
        fs::create_dir_all(path)?;
        let checkpoints = path.join(super::checkpoint::FOLDER);
        if !resuming && checkpoints.exists() {
            fs::remove_dir_all(checkpoints)?;
        }
        for f in OUTCOMES {
            match fs::remove_file(path.join(f)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        write_atomic(&path.join("metrics.jsonl"), b"")?;
        Ok(RunDir { path: path.to_path_buf(), metrics: String::new() })
    }

    pub fn append_metrics(&mut self, m: &Metrics) -> io::Result<()> {
        self.metrics += &to_json(m)?;
        self.metrics.push('\n');
        write_atomic(&self.path.join("metrics.jsonl"), self.metrics.as_bytes())
    }

    pub fn write_summary(&self, s: &RunSummary) -> io::Result<()> {
        write_atomic(&self.path.join("summary.json"), (to_json_pretty(s)? + "\n").as_bytes())
    }

    pub fn write_tensors(&self, file: &str, tensors: &[Named]) -> io::Result<()> {
        write_atomic(&self.path.join(file), &super::checkpoint::tensor_bytes(tensors)?)
    }

    /// The metrics lines of a checkpoint a run resumes from: `metrics.jsonl` as it was then.
    pub fn restore_metrics(&mut self, lines: String) -> io::Result<()> {
        self.metrics = lines;
        write_atomic(&self.path.join("metrics.jsonl"), self.metrics.as_bytes())
    }

    /// Every metrics line so far (what a checkpoint stores).
    pub fn metrics(&self) -> &str {
        &self.metrics
    }
}

fn to_json<T: Serialize>(v: &T) -> io::Result<String> {
    serde_json::to_string(v).map_err(io::Error::other)
}

fn to_json_pretty<T: Serialize>(v: &T) -> io::Result<String> {
    serde_json::to_string_pretty(v).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("sprsc-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.txt");
        write_atomic(&p, b"first version, longer").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.txt")]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_new_run_removes_the_old_summary() {
        let dir = std::env::temp_dir().join(format!("sprsc-rundir-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("summary.json"), "{}").unwrap();
        fs::write(dir.join("metrics.jsonl"), "old\n").unwrap();
        RunDir::create(&dir, false).unwrap();
        assert!(!dir.join("summary.json").exists());
        assert_eq!(fs::read(dir.join("metrics.jsonl")).unwrap(), b"");
        fs::remove_dir_all(&dir).unwrap();
    }
}
