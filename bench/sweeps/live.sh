#!/usr/bin/env bash
# The live ASHA run (BENCHMARKS.md, "Sweeps: live run"): the same 9-config grid trained twice
# end to end on real workers of a private stack, once in full and once under ASHA, printing
# wall clock, epochs and best validation loss side by side. Run after `./poet.sh build`, with
# poet and poet-worker on PATH (`eval "$(./poet.sh env)"`), or as `./poet.sh bench-sweeps live`.
#
# The two sweeps differ only in `max_batches` (0 for the grid, 100000 under ASHA: more batches
# than an epoch has, so it caps nothing and every run trains exactly as its grid twin, number
# for number). With identical configs, ASHA's runs would be the grid's (one run per config
# hash) and nothing would train.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
WORKERS="${WORKERS:-2}"
EPOCHS="${EPOCHS:-27}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

poet up --workers "$WORKERS" --device cpu --threads 1 >/dev/null
poet ingest demo/sample-dump.ndjson.gz --name demo --tag poetry >/dev/null 2>&1 || true

spec() { # $1 = max_batches, $2 = extra sections, $3 = name
    cat <<EOT
name = "live-$3"
dataset = "demo"
[base]
layers = 1
seq_len = 64
batch_size = 32
epochs = $EPOCHS
formulation = "seq"
dropout = 0.0
recurrent_dropout = 0.0
seed = 7
max_batches = $1
[grid]
units = [16, 32, 64]
learning_rate = [0.001, 0.004, 0.02]
$2
EOT
}

run_sweep() { # $1 = label, $2 = spec file; prints "label seconds epochs best runs"
    local t0 id
    t0=$(date +%s.%N)
    id=$(poet sweep submit "$2" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["sweep"]["id"])')
    poet runs watch --sweep "$id" --interval 1 >/dev/null
    local t1
    t1=$(date +%s.%N)
    poet sweep show "$id" --json > "$OUT/$1.json"
    python3 - "$1" "$t0" "$t1" "$OUT/$1.json" <<'PY'
import json, sys
label, t0, t1, path = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
s = json.load(open(path))
runs = s["runs"]
epochs = sum(r["epochs_done"] for r in runs)
best = min(r["best_val_loss"] for r in runs if r["best_val_loss"] is not None)
states = {}
for r in runs:
    states[r["state"]] = states.get(r["state"], 0) + 1
states = ",".join(f"{k}={v}" for k, v in sorted(states.items()))
print(f"{label} {t1 - t0:.1f} {epochs} {best:.4f} {states} {len(s['decisions'])}")
PY
}

spec 0 "" full > "$OUT/grid.toml"
spec 100000 $'[stopping]\nrule = "asha"\nmin_epochs = 1\neta = 3' asha > "$OUT/asha.toml"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $WORKERS CPU workers (1 thread each)"
echo "9 configs (units 16/32/64 x learning rate 0.001/0.004/0.02), $EPOCHS epochs each, demo dataset"
grid=$(run_sweep grid "$OUT/grid.toml")
asha=$(run_sweep asha "$OUT/asha.toml")
python3 - "$grid" "$asha" <<'PY'
import sys
g, a = (line.split() for line in sys.argv[1:3])
print(f"{'':8} {'wall s':>8} {'epochs':>7} {'best val':>9}  {'decisions':>9}  runs")
for row in (g, a):
    print(f"{row[0]:8} {float(row[1]):8.1f} {int(row[2]):7d} {float(row[3]):9.4f}  {int(row[5]):9d}  {row[4]}")
print(f"asha/grid: wall {float(a[1]) / float(g[1]):.2f}x, epochs {int(a[2]) / int(g[2]):.2f}x, "
      f"best val {100 * (float(a[3]) / float(g[3]) - 1):+.2f}%")
PY
