//! The run directory. In: metrics, summary and named tensors. Out: `metrics.jsonl` (one JSON
//! object per evaluation), `summary.json`, and safetensors files (`weights.safetensors`,
//! `masks.safetensors`) with f32 tensors under their param names.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use serde::Serialize;

use super::{Metrics, RunSummary};

pub struct RunDir {
    pub path: PathBuf,
}

/// A tensor to save: name, shape, values.
pub type Named<'a> = (String, Vec<usize>, &'a [f32]);

impl RunDir {
    /// Creates the directory and truncates `metrics.jsonl`.
    pub fn create(path: &Path) -> io::Result<RunDir> {
        fs::create_dir_all(path)?;
        File::create(path.join("metrics.jsonl"))?;
        Ok(RunDir { path: path.to_path_buf() })
    }

    pub fn append_metrics(&self, m: &Metrics) -> io::Result<()> {
        let mut f = OpenOptions::new().append(true).open(self.path.join("metrics.jsonl"))?;
        writeln!(f, "{}", to_json(m)?)
    }

    pub fn write_summary(&self, s: &RunSummary) -> io::Result<()> {
        fs::write(self.path.join("summary.json"), to_json_pretty(s)? + "\n")
    }

    pub fn write_tensors(&self, file: &str, tensors: &[Named]) -> io::Result<()> {
        let bytes: Vec<Vec<u8>> =
            tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
        let views = tensors
            .iter()
            .zip(&bytes)
            .map(|((name, shape, _), b)| {
                Ok((name.clone(), TensorView::new(Dtype::F32, shape.clone(), b).map_err(io::Error::other)?))
            })
            .collect::<io::Result<Vec<_>>>()?;
        safetensors::serialize_to_file(views, &None, &self.path.join(file)).map_err(io::Error::other)
    }
}

fn to_json<T: Serialize>(v: &T) -> io::Result<String> {
    serde_json::to_string(v).map_err(io::Error::other)
}

fn to_json_pretty<T: Serialize>(v: &T) -> io::Result<String> {
    serde_json::to_string_pretty(v).map_err(io::Error::other)
}
