#!/usr/bin/env bash
# The engine's behaviour, fingerprinted: the exact loss trajectory (golden plans: every step;
# recipes: each epoch's metrics line), final metrics, weights and masks of a fixed set of runs at 1 and 2 threads (the golden test plans, and recipes/quickstart,
# st3_lenet300, tost_lenet5_snip and east_lenet5_999 at 2 epochs on real MNIST).
#
#   bench/behaviour.sh record [FILE]   write the fingerprint (default bench/behaviour.txt)
#   bench/behaviour.sh check  [FILE]   recompute it and diff against FILE; exit 1 on any change
#   QUICK=1 bench/behaviour.sh ...     only the golden plans, quickstart and st3_lenet300 (~1 min)
#   ONLY=name bench/behaviour.sh record /tmp/one.txt   one recipe's lines
#
# A refactoring that preserves behaviour leaves every line identical. A change that moves a
# number (a bug fix, a new default) re-records the file in the same commit and says why.
# Needs a release build (`cargo build --release`) and SPRS_DATA (default ../shared/data).
# Bits depend on the CPU's kernels: compare fingerprints made on the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-check}
file=${2:-bench/behaviour.txt}
export SPRS_DATA=${SPRS_DATA:-$(cd ../shared/data 2>/dev/null && pwd || echo ../shared/data)}
# BIN and GOLDEN_BIN (the release lib test binary) let a fingerprint be made from saved builds.
bin=${BIN:-target/release/sprsc}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out="$tmp/fingerprint.txt"

# The golden plans live in the test fixtures: an ignored test prints their fingerprint.
if [ -n "${ONLY:-}" ]; then
  : # one recipe only (ONLY=name): no golden plans
elif [ -n "${GOLDEN_BIN:-}" ]; then
  "$GOLDEN_BIN" golden_fingerprint --ignored --nocapture --test-threads 1 2>/dev/null | grep '^golden ' >>"$out"
else
  cargo test --release --lib golden_fingerprint -- --ignored --nocapture --test-threads 1 2>/dev/null \
    | grep '^golden ' >>"$out"
fi

# file|recipe|--set values...  (EAST's two 4-epoch cycles become two of one epoch)
runs=("quickstart.sprs|quickstart"
      "st3_lenet300.sprs|st3_lenet300|train.epochs=2")
if [ -z "${QUICK:-}" ]; then
  runs+=("tost_lenet5.sprs|tost_lenet5_snip|train.epochs=2"
         "east_lenet5.sprs|east_lenet5_999|train.epochs=2|sparsity.schedule=cyclic(cycles: 2, length: 1 epoch, peak: 3x, shape: cosine)")
fi
for r in "${runs[@]}"; do
  IFS='|' read -r -a f <<<"$r"
  recipe_file=${f[0]} name=${f[1]}
  [ -n "${ONLY:-}" ] && [ "$name" != "$ONLY" ] && continue
  sets=()
  for s in "${f[@]:2}"; do sets+=(--set "$s"); done
  for threads in 1 2; do
    dir="$tmp/$name-$threads"
    "$bin" run "recipes/$recipe_file" --recipe "$name" --threads "$threads" --out "$dir" "${sets[@]}" >/dev/null 2>&1 \
      || { echo "$name threads=$threads FAILED" >>"$out"; continue; }
    python3 - "$dir" "$name" "$threads" >>"$out" <<'PY'
import hashlib, json, sys
d, name, threads = sys.argv[1:]
s = json.load(open(f"{d}/summary.json"))
# val_loss and test_loss joined the metrics lines after this file was first recorded: left out so
# the fingerprints of earlier commits stay comparable (re-record to include them).
skip = {"seconds", "val_loss", "test_loss"}
metrics = [{k: v for k, v in json.loads(l).items() if k not in skip} for l in open(f"{d}/metrics.jsonl")]
mh = hashlib.sha256(json.dumps(metrics, sort_keys=True).encode()).hexdigest()[:16]
w = hashlib.sha256(open(f"{d}/weights.safetensors", "rb").read()).hexdigest()[:16]
m = hashlib.sha256(open(f"{d}/masks.safetensors", "rb").read()).hexdigest()[:16]
print(f"recipe {name} threads={threads} steps={s['steps']} test_accuracy={s['test_accuracy']} "
      f"sparsity={s['sparsity']} final_loss={s['final_train_loss']} metrics={mh} "
      f"weights={w} masks={m}")
PY
  done
done

case "$mode" in
  record) cp "$out" "$file"; echo "recorded $(wc -l <"$file") runs in $file"; cat "$file" | cut -c1-160 ;;
  check)
    if [ -n "${QUICK:-}" ]; then grep -v -e '^recipe tost_lenet5_snip' -e '^recipe east_lenet5_999' "$file" >"$tmp/want"; else cp "$file" "$tmp/want"; fi
    if diff "$tmp/want" "$out" >"$tmp/diff"; then echo "behaviour unchanged: $(wc -l <"$out") runs identical"
    else echo "behaviour changed:"; cat "$tmp/diff"; exit 1; fi ;;
  *) echo "usage: bench/behaviour.sh record|check [FILE]" >&2; exit 2 ;;
esac
