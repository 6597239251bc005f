//! Checkpoint directories on disk. In: a checkpoint's files (the engine's `state.json` and
//! `tensors.safetensors`). Out: `RUN/checkpoints/step-NNNNNNNNNN/`, each written into a
//! temporary directory beside it (every file fsynced), then renamed into place, so a run killed
//! at any moment leaves whole checkpoints and at most one temporary directory, which the next
//! write or resume removes. The last `keep` checkpoints stay.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use super::rundir::Named;

/// The checkpoints' folder inside a run directory.
pub const FOLDER: &str = "checkpoints";
const PREFIX: &str = "step-";
const TEMPORARY: &str = ".writing-";

/// FNV-1a, 64 bit: stable across platforms and runs; enough to notice a changed plan or a
/// damaged file (nothing here needs a cryptographic hash).
pub fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A safetensors file of f32 tensors.
pub fn tensor_bytes(tensors: &[Named]) -> io::Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            Ok((name.clone(), TensorView::new(Dtype::F32, shape.clone(), b).map_err(io::Error::other)?))
        })
        .collect::<io::Result<Vec<_>>>()?;
    safetensors::serialize(views, &None).map_err(io::Error::other)
}

/// A tensor read back: name, shape, values.
pub type Owned = (String, Vec<usize>, Vec<f32>);

/// Every f32 tensor of a safetensors file, sorted by name, with its shape; a description of
/// what is wrong otherwise.
pub fn read_tensors(bytes: &[u8]) -> Result<Vec<Owned>, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(format!("tensor `{name}` is {:?}, only F32 tensors are read", view.dtype()));
        }
        let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        out.push((name, view.shape().to_vec(), values));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) {
    // Makes renames durable; not every file system lets a directory be opened.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The checkpoints of `run_dir`, newest (highest step) first.
pub fn list(run_dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = fs::read_dir(run_dir.join(FOLDER)) else { return Vec::new() };
    let mut out: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let step = e.file_name().to_str()?.strip_prefix(PREFIX)?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.0));
    out
}

/// Removes the temporary directories a killed write left behind.
pub fn remove_torn(run_dir: &Path) -> io::Result<()> {
    let Ok(entries) = fs::read_dir(run_dir.join(FOLDER)) else { return Ok(()) };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(TEMPORARY) {
            fs::remove_dir_all(e.path())?;
        }
    }
    Ok(())
}

/// Writes the checkpoint of step `step` (the step over the whole run) from `files`, then
/// removes all but the newest `keep`.
pub fn write(run_dir: &Path, step: u64, files: &[(&str, &[u8])], keep: usize) -> io::Result<PathBuf> {
    let root = run_dir.join(FOLDER);
    fs::create_dir_all(&root)?;
    remove_torn(run_dir)?;
    let name = format!("{PREFIX}{step:010}");
    let tmp = root.join(format!("{TEMPORARY}{name}"));
    fs::create_dir_all(&tmp)?;
    for (file, bytes) in files {
        write_synced(&tmp.join(file), bytes)?;
    }
    sync_dir(&tmp);
    let dest = root.join(&name);
    if dest.exists() {
        fs::remove_dir_all(&dest)?;
    }
    fs::rename(&tmp, &dest)?;
    sync_dir(&root);
    for (_, old) in list(run_dir).into_iter().skip(keep.max(1)) {
        fs::remove_dir_all(old)?;
    }
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_keep_the_newest_and_leave_no_temporary() {
        let dir = std::env::temp_dir().join(format!("sprsc-ckpt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join(FOLDER).join(".writing-step-0000000009")).unwrap();
        for step in [3, 6, 9, 12] {
            write(&dir, step, &[("a.txt", step.to_string().as_bytes())], 2).unwrap();
        }
        let steps: Vec<u64> = list(&dir).iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, [12, 9]);
        assert_eq!(fs::read(list(&dir)[0].1.join("a.txt")).unwrap(), b"12");
        assert_eq!(fs::read_dir(dir.join(FOLDER)).unwrap().count(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tensors_round_trip_and_damage_is_described() {
        let t: Vec<Named> = vec![("b".into(), vec![2], &[1.5, -0.0][..]), ("a".into(), vec![0], &[][..])];
        let bytes = tensor_bytes(&t).unwrap();
        let back = read_tensors(&bytes).unwrap();
        assert_eq!(back[0], ("a".to_string(), vec![0], vec![]));
        assert_eq!(back[1].2[1].to_bits(), (-0.0f32).to_bits());
        assert!(read_tensors(&bytes[..bytes.len() - 3]).unwrap_err().contains("not a safetensors file"));
        assert_eq!(fnv1a(b"a"), "af63dc4c8601ec8c");
    }
}
