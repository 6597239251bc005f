#!/usr/bin/env bash
# Stops the one-node Slurm cluster that .ci/slurm-up.sh DIR started (by the pid files in DIR).
# Usage: .ci/slurm-down.sh DIR
set -uo pipefail
dir="$1"
for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
  [ -s "$pidfile" ] || continue
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
done
