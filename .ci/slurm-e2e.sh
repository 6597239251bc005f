#!/usr/bin/env bash
# End-to-end test of `sprsc sweep --slurm` against a real one-node Slurm on this machine:
# installs slurmctld, slurmd, slurm-client and munge (Debian's packages) when missing, starts
# them with a minimal slurm.conf for this host (.ci/slurm-up.sh), runs tests/slurm_e2e.rs
# (ignored by a plain `cargo test`), and stops the cluster. Fails when any step fails; the
# daemons' logs are printed then.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)/target/slurm-e2e"
cluster="$root/cluster"
bash .ci/slurm-down.sh "$cluster" 2>/dev/null || true
rm -rf "$root"
mkdir -p "$root"
start=$(date +%s)

logs() {
  for f in "$cluster/munge/munged.log" "$cluster/slurmctld.log" "$cluster/slurmd.log"; do
    echo "--- $f (last 40 lines)"
    tail -n 40 "$f" 2>/dev/null || true
  done
}
finish() {
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "== slurm e2e FAILED ($status) after $(( $(date +%s) - start )) s"
    logs
  fi
  bash .ci/slurm-down.sh "$cluster" || true
  exit "$status"
}
trap finish EXIT

echo "== sprsc sweep --slurm against a real one-node Slurm in $cluster"
# An assignment fails with its command substitution, so `set -e` stops here if the cluster
# does not come up (`eval "$(...)"` alone would not).
env_line="$(bash .ci/slurm-up.sh "$cluster")"
eval "$env_line"
export SLURM_CONF
echo "== slurm up after $(( $(date +%s) - start )) s; the sweep as a job array"
SPRSC_SLURM_E2E_DIR="$root/work" cargo test --test slurm_e2e -- --ignored --nocapture
echo "== slurm e2e passed in $(( $(date +%s) - start )) s"
