//! A sweep as a Slurm job array: an sbatch script whose task `i` runs cell `i` with
//! `sprsc sweep --index`, and its submission. Slurm schedules; sprsc only writes the script.
//! In: the sweep's cells and the user's resource options. Out: the script text, a job id.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cells::Cell;

/// What the job asks Slurm for; `None` leaves the cluster's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub partition: Option<String>,
    /// Per task: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM` or `D-HH:MM:SS`.
    pub time: Option<String>,
    /// CPUs per task; the cell trains with as many threads.
    pub cpus: Option<u32>,
    /// Memory per task: a number with an optional unit, `4G`, `500M`.
    pub mem: Option<String>,
    /// At most this many tasks at once (`--array=...%K`).
    pub max_parallel: Option<u32>,
}

impl Resources {
    /// Rejects values sbatch would reject, before anything is written or submitted.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = &self.partition {
            let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ',');
            if p.is_empty() || !p.chars().all(ok) {
                return Err(format!(
                    "--partition `{p}` is not a partition name (letters, digits, `_-.`, comma-separated)"
                ));
            }
        }
        if let Some(t) = &self.time {
            if !valid_time(t) {
                return Err(format!(
                    "--time `{t}` is not a Slurm time: use MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
                ));
            }
        }
        if let Some(m) = &self.mem {
            let digits = m.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || m.len() > digits.len() + 1 {
                return Err(format!("--mem `{m}` is not a memory size: a number with an optional unit K, M, G or T"));
            }
        }
        if self.cpus == Some(0) || self.max_parallel == Some(0) {
            return Err("--cpus and --max-parallel must be at least 1".to_string());
        }
        Ok(())
    }
}

fn valid_time(t: &str) -> bool {
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    let num = |s: &str| !s.is_empty() && s.len() <= 4 && s.chars().all(|c| c.is_ascii_digit());
    let parts: Vec<&str> = rest.split(':').collect();
    days.is_none_or(num) && parts.len() <= 3 && parts.iter().all(|p| num(p))
}

/// Everything the script needs to run a cell as the submitting shell would.
pub struct Job<'a> {
    /// The sprsc binary the tasks run (this one; a shared file system is assumed).
    pub exe: PathBuf,
    pub file: PathBuf,
    pub sweep: &'a str,
    pub out: PathBuf,
    /// The sweep's `--set` overrides, passed on to every task.
    pub sets: &'a [String],
    /// `--threads`; default: the task's CPUs (`$SLURM_CPUS_PER_TASK`, else 1).
    pub threads: Option<usize>,
    /// The working directory the tasks start in (relative `path:`s resolve as they did here).
    pub workdir: PathBuf,
    pub resources: Resources,
}

impl Job<'_> {
    /// Paths that an `#SBATCH` line cannot carry.
    pub fn check(&self) -> Result<(), String> {
        for path in [&self.out, &self.workdir] {
            let text = path.display().to_string();
            if text.contains(['"', '\n', '\r']) {
                return Err(format!("`{text}` has a double quote or a line break, which an #SBATCH line cannot carry"));
            }
        }
        Ok(())
    }
}

/// Where the script and the tasks' logs go: `<out>/slurm/`.
pub fn slurm_dir(out: &Path) -> PathBuf {
    out.join("slurm")
}

/// The sbatch script for `indices` of `cells` (all of them, or the missing ones). Every cell
/// must check: the script records each cell's plan hash, which the task verifies (E0709).
pub fn script(job: &Job, cells: &[Cell], indices: &[usize]) -> String {
    let hashes: Vec<String> = cells.iter().map(|c| c.plan_hash().unwrap_or_default()).collect();
    let sweep_hash = super::cells::plan_hash(&hashes.concat());
    let q = |p: &Path| quote(&p.display().to_string());
    let r = &job.resources;
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/bash");
    let _ = writeln!(s, "# Sweep `{}` of {} as a Slurm job array: task i runs cell i.", job.sweep, job.file.display());
    let _ = writeln!(s, "# Written by sprsc {}.", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(s, "# Sweep plan hash {sweep_hash}: FNV-1a of the cells' plan hashes below, in order.");
    let _ = writeln!(
        s,
        "# {} of {} cells. Collect with: sprsc sweep FILE --sweep {} --out OUT --collect",
        indices.len(),
        cells.len(),
        job.sweep
    );
    let _ = writeln!(s, "#SBATCH --job-name=sprsc-{}", job.sweep);
    let max = r.max_parallel.map(|k| format!("%{k}")).unwrap_or_default();
    let _ = writeln!(s, "#SBATCH --array={}{max}", array_spec(indices));
    let _ = writeln!(s, "#SBATCH --output={}", directive(&format!("{}/%A_%a.out", slurm_dir(&job.out).display())));
    let _ = writeln!(s, "#SBATCH --chdir={}", directive(&job.workdir.display().to_string()));
    let _ = writeln!(s, "#SBATCH --ntasks=1");
    if let Some(p) = &r.partition {
        let _ = writeln!(s, "#SBATCH --partition={p}");
    }
    if let Some(t) = &r.time {
        let _ = writeln!(s, "#SBATCH --time={t}");
    }
    if let Some(c) = r.cpus {
        let _ = writeln!(s, "#SBATCH --cpus-per-task={c}");
    }
    if let Some(m) = &r.mem {
        let _ = writeln!(s, "#SBATCH --mem={m}");
    }
    let _ = writeln!(s, "set -euo pipefail");
    let _ = writeln!(s, "sprsc={}", q(&job.exe));
    let _ = writeln!(s, "if [ \"$(\"$sprsc\" --version)\" != 'sprsc {}' ]; then", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(s, "  echo \"warning: $sprsc is not sprsc {} any more\" >&2", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(s, "fi");
    let _ = writeln!(s, "# Cell i's plan hash; a task whose recipe changed since now stops with E0709.");
    let _ = writeln!(s, "hashes=({})", hashes.join(" "));
    let threads = job.threads.map_or_else(|| "\"${SLURM_CPUS_PER_TASK:-1}\"".to_string(), |t| t.to_string());
    let sets: String = job.sets.iter().map(|v| format!(" --set {}", quote(v))).collect();
    let _ = writeln!(
        s,
        "exec \"$sprsc\" sweep {} --sweep {} --out {} --index \"$SLURM_ARRAY_TASK_ID\" \\\n  --plan-hash \"${{hashes[$SLURM_ARRAY_TASK_ID]}}\" --threads {threads}{sets}",
        q(&job.file),
        quote(job.sweep),
        q(&job.out),
    );
    s
}

/// A value of an `#SBATCH` line: sbatch splits those lines at white space unless the value is
/// in double quotes. (`Job::check` refuses paths with a double quote or a line break.)
fn directive(value: &str) -> String {
    if value.contains(char::is_whitespace) {
        format!("\"{value}\"")
    } else {
        value.to_string()
    }
}

/// Slurm's `--array` list: sorted indices with runs folded into ranges, `0-3,5,7-8`.
pub fn array_spec(indices: &[usize]) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { sorted[i].to_string() } else { format!("{}-{}", sorted[i], sorted[j]) });
        i = j + 1;
    }
    parts.join(",")
}

/// A word for bash: kept bare when it is plainly safe, else single-quoted.
pub fn quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./=:%+,@".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Runs `sbatch --parsable SCRIPT` and returns the job id it prints.
pub fn submit(script: &Path) -> Result<String, String> {
    let output = Command::new("sbatch").arg("--parsable").arg(script).output().map_err(|e| {
        format!("cannot run `sbatch`: {e}; submit `{}` from a machine with Slurm's client tools", script.display())
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("sbatch {} failed ({}): {}", script.display(), output.status, stderr.trim()));
    }
    // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("sbatch printed no job id: `{}`", stdout.trim()));
    }
    Ok(id)
}

/// The newest Slurm log of cell `index` in `<out>/slurm/` (`JOBID_INDEX.out`), if any.
pub fn latest_log(out: &Path, index: usize) -> Option<PathBuf> {
    let suffix = format!("_{index}.out");
    std::fs::read_dir(slurm_dir(out))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(&suffix)))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_runs_the_chosen_cells_as_array_tasks() {
        let text = "recipe a {
  data synthetic_digits(train: 400, test: 200)
  model lenet300_100
  train { epochs 1; batch 50 }
}
sweep s {
  recipes [a]
  seeds [0, 1, 2]
}
";
        let comp = crate::compile_source(Path::new("s.sprs"), text.to_string(), &[]);
        assert!(!comp.has_errors());
        let sets = ["train.epochs=2".to_string(), "model=lenet5_caffe(width: 2)".to_string()];
        let cells =
            super::super::cells::cells(Path::new("s.sprs"), text, &comp.checked.sweeps[0], &sets, Path::new("o"));
        let job = Job {
            exe: "/opt/sprsc".into(),
            file: "/w/s.sprs".into(),
            sweep: "s",
            out: "/w/my runs".into(),
            sets: &sets,
            threads: None,
            workdir: "/w".into(),
            resources: Resources {
                partition: Some("cpu".into()),
                max_parallel: Some(2),
                mem: Some("4G".into()),
                ..Default::default()
            },
        };
        let hashes: Vec<String> = cells.iter().map(|c| c.plan_hash().unwrap()).collect();
        assert_eq!(hashes.len(), 3);
        assert!(hashes[0] != hashes[1] && hashes[1] != hashes[2], "the seed is part of the plan");
        let v = env!("CARGO_PKG_VERSION");
        let want = format!(
            "#!/bin/bash
# Sweep `s` of /w/s.sprs as a Slurm job array: task i runs cell i.
# Written by sprsc {v}.
# Sweep plan hash {sweep}: FNV-1a of the cells' plan hashes below, in order.
# 2 of 3 cells. Collect with: sprsc sweep FILE --sweep s --out OUT --collect
#SBATCH --job-name=sprsc-s
#SBATCH --array=0,2%2
#SBATCH --output=\"/w/my runs/slurm/%A_%a.out\"
#SBATCH --chdir=/w
#SBATCH --ntasks=1
#SBATCH --partition=cpu
#SBATCH --mem=4G
set -euo pipefail
sprsc=/opt/sprsc
if [ \"$(\"$sprsc\" --version)\" != 'sprsc {v}' ]; then
  echo \"warning: $sprsc is not sprsc {v} any more\" >&2
fi
# Cell i's plan hash; a task whose recipe changed since now stops with E0709.
hashes=({h0} {h1} {h2})
exec \"$sprsc\" sweep /w/s.sprs --sweep s --out '/w/my runs' --index \"$SLURM_ARRAY_TASK_ID\" \\
  --plan-hash \"${{hashes[$SLURM_ARRAY_TASK_ID]}}\" --threads \"${{SLURM_CPUS_PER_TASK:-1}}\" --set train.epochs=2 --set 'model=lenet5_caffe(width: 2)'
",
            sweep = super::super::cells::plan_hash(&hashes.concat()),
            h0 = hashes[0],
            h1 = hashes[1],
            h2 = hashes[2],
        );
        assert_eq!(script(&job, &cells, &[2, 0]), want);
    }

    #[test]
    fn array_specs_fold_runs_into_ranges() {
        assert_eq!(array_spec(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_spec(&[7, 0, 1, 5, 8, 3, 2]), "0-3,5,7-8");
        assert_eq!(array_spec(&[4]), "4");
        assert_eq!(array_spec(&[]), "");
    }

    #[test]
    fn words_are_quoted_for_bash() {
        assert_eq!(quote("train.epochs=2"), "train.epochs=2");
        assert_eq!(quote("model=resnet20(width: 2)"), "'model=resnet20(width: 2)'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn resources_are_checked_before_anything_is_written() {
        let ok = Resources {
            partition: Some("gpu,cpu".into()),
            time: Some("1-02:00:00".into()),
            cpus: Some(4),
            mem: Some("8G".into()),
            max_parallel: Some(10),
        };
        assert_eq!(ok.validate(), Ok(()));
        for t in ["30", "10:00", "02:00:00", "1-2", "1-02:00"] {
            assert!(Resources { time: Some(t.into()), ..Default::default() }.validate().is_ok(), "{t}");
        }
        for t in ["1h", "", "1:2:3:4", "-1", "1-", "a:b"] {
            assert!(Resources { time: Some(t.into()), ..Default::default() }.validate().is_err(), "{t}");
        }
        for m in ["8GB", "G", "", "1.5G"] {
            assert!(Resources { mem: Some(m.into()), ..Default::default() }.validate().is_err(), "{m}");
        }
        assert!(Resources { partition: Some("a b".into()), ..Default::default() }.validate().is_err());
        assert!(Resources { cpus: Some(0), ..Default::default() }.validate().is_err());
    }
}
