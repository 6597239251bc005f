#!/usr/bin/env bash
# End-to-end test of `sprsc sweep --slurm` against a real one-node Slurm on this machine:
# installs slurmctld, slurmd, slurm-client and munge (Debian's packages) when missing, starts
# them with a minimal slurm.conf for this host (.ci/slurm-up.sh), runs tests/slurm_e2e.rs
# (ignored by a plain `cargo test`), and stops the cluster. Fails when any step fails; the
# daemons' logs are printed then.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)/target/slurm-e2e"
# A cluster left by an interrupted run goes first (its directory is recorded in $root).
if [ -s "$root/cluster-dir" ]; then
  bash .ci/slurm-down.sh "$(cat "$root/cluster-dir")" || true
  rm -rf "$(cat "$root/cluster-dir")"
fi
rm -rf "$root"
mkdir -p "$root"
# The daemons' directory is short: munged's socket path must fit in 108 bytes.
cluster="$(mktemp -d /tmp/sprsc-slurm.XXXXXX)"
echo "$cluster" >"$root/cluster-dir"
start=$(date +%s)

logs() {
  echo "--- sinfo / squeue"
  sinfo -N -l 2>&1 || true
  squeue -a 2>&1 || true
  for f in "$cluster/munge/munged.log" "$cluster/slurmctld.log" "$cluster/slurmd.log" "$root"/work/*/slurm/*.out; do
    [ -e "$f" ] || continue
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
  rm -rf "$cluster" "$root/cluster-dir"
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
