//! End to end against a real Slurm: a sweep on `synthetic_digits` submitted as a job array,
//! waited for, collected, and compared with the local `sprsc sweep` of the same grid; then one
//! cell's result is removed and `--slurm --missing --submit` runs it again.
//!
//! Ignored by `cargo test`: it needs a running cluster. `.ci/slurm-e2e.sh` starts a one-node
//! Slurm (munged, slurmctld, slurmd) and runs it with `cargo test --test slurm_e2e -- --ignored`.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    eprintln!(
        "$ {cmd:?} -> {}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn sweep(file: &Path, out: &Path, args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_sprsc"))
        .args(["sweep", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "1"])
        .args(args))
}

/// Submits the sweep's (missing) cells and waits until Slurm no longer lists the job.
fn submit_and_wait(file: &Path, out: &Path, extra: &[&str]) -> String {
    let o = sweep(file, out, &[&["--slurm", "--submit", "--cpus", "1", "--time", "5"], extra].concat());
    assert!(o.status.success(), "submission failed");
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(!id.is_empty() && id.chars().all(|c| c.is_ascii_digit()), "job id `{id}`");
    let start = Instant::now();
    loop {
        let q = Command::new("squeue").args(["-h", "-j", &id, "-o", "%i %T"]).output().unwrap();
        let listed = String::from_utf8_lossy(&q.stdout).trim().to_string();
        // A finished job leaves the queue; once purged (MinJobAge) its id is "invalid".
        let purged = String::from_utf8_lossy(&q.stderr).contains("Invalid job id");
        if (q.status.success() && listed.is_empty()) || purged {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(150), "job {id} still queued after 150 s: {listed}");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("job {id} done after {:.1} s", start.elapsed().as_secs_f64());
    id
}

#[test]
#[ignore = "needs a running Slurm cluster: .ci/slurm-e2e.sh starts one"]
fn a_sweep_as_a_slurm_job_array_collects_to_the_local_table() {
    let work = std::env::var_os("SPRSC_SLURM_E2E_DIR").expect("SPRSC_SLURM_E2E_DIR: a directory the jobs can write");
    let work = Path::new(&work);
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).unwrap();
    let file = work.join("grid.sprs");
    // Seed 0 only: four cells.
    std::fs::write(&file, common::SWEEP_GRID.replace("seeds [0, 1]", "seeds [0]")).unwrap();
    // A space in the path, as in many home directories: the script quotes it for bash and sbatch.
    let (local, cluster) = (work.join("local"), work.join("cluster runs"));

    assert!(sweep(&file, &local, &[]).status.success(), "the local sweep");
    let job = submit_and_wait(&file, &cluster, &[]);
    for i in 0..4 {
        let log = cluster.join(format!("slurm/{job}_{i}.out"));
        assert!(log.is_file(), "Slurm wrote no log for task {i}: {}", log.display());
    }
    let o = sweep(&file, &cluster, &["--collect"]);
    assert!(o.status.success(), "collect: every cell finished");
    let read = |dir: &Path| std::fs::read_to_string(dir.join("ab.csv")).unwrap();
    let (want, got) = (read(&local), read(&cluster));
    assert_eq!(common::sweep_results(&got), common::sweep_results(&want), "collected:\n{got}\nlocal:\n{want}");
    assert_eq!(common::sweep_results(&got).len(), 5, "a header and 4 cells");

    // A lost result: collect says so, and --missing submits that cell alone.
    std::fs::remove_dir_all(cluster.join("b-80-seed0")).unwrap();
    let o = sweep(&file, &cluster, &["--collect"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cell 2 (b-80 seed 0): missing"));
    let job = submit_and_wait(&file, &cluster, &["--missing"]);
    let script = std::fs::read_to_string(cluster.join("slurm/grid-missing.sbatch")).unwrap();
    assert!(script.lines().any(|l| l == "#SBATCH --array=2"), "{script}");
    assert!(cluster.join(format!("slurm/{job}_2.out")).is_file());
    let o = sweep(&file, &cluster, &["--collect"]);
    assert!(o.status.success(), "collect after --missing");
    assert_eq!(common::sweep_results(&read(&cluster)), common::sweep_results(&want));
}
