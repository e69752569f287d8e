#!/usr/bin/env bash
# poet's recommended config beside the PyTorch reference experiment at equal wall time: both
# train side by side (so they share the machine's load) for SECONDS of wall time on the same
# corpus and threads, then print the shared validation loss (nats/char, worker/src/data.rs's
# measure, the PyTorch side reimplements it). Usage (from the repository root):
#
#   bench/poems/vs_reference.sh [corpus.txt]     # default: ../shared/data/corpus-pd.txt
#
# Env: SECONDS_EACH (default 300), THREADS (each, default 1), REF_ARGS (torch_reference.py
# flags; default: the reference experiment, keras 3x300 seq_len 300 step 3 batch 128, Adam 1e-3).
# poet's side is cut at the budget and reports its last finished epoch. Results: BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=bench/poems/lib.sh
. bench/poems/lib.sh
CORPUS=${1:-../shared/data/corpus-pd.txt}
SECONDS_EACH=${SECONDS_EACH:-300}
THREADS=${THREADS:-1}
OUT=${OUT:-target/bench-poems-ref}
REF_ARGS=${REF_ARGS:---layers 3 --units 300 --seq-len 300 --step 3 --batch 128 --formulation keras}
mkdir -p "$OUT"
export LIBTORCH_USE_PYTORCH=1 PATH="$HOME/.cache/poet/torch-2.11.0/bin:$PATH"
cargo build --quiet --locked -p poet-worker -p poet-core --example poems
BIN="${CARGO_TARGET_DIR:-target}/debug"
minutes=$(python3 -c "print($SECONDS_EACH / 60)")
echo "== $(date -u '+%F %H:%M UTC') on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $SECONDS_EACH s each, $THREADS thread(s) each"
# Calibrate as bench/poems/run.sh does (lib.sh), so poet's epochs and cosine decay are
# planned for the rate it will get, not for a quiet machine's. Not counted against poet's
# budget: the reference gets no head start either.
"$BIN/examples/poems" recommend "$CORPUS" "$minutes" | calibration_config > "$OUT/calibrate.toml"
rate=$("$BIN/poet-worker" --threads "$THREADS" --device cpu train --corpus "$CORPUS" \
  --config "$OUT/calibrate.toml" --validation-fraction 0 --out "$OUT/calibrate" 2>/dev/null |
  last_rate)
"$BIN/examples/poems" recommend "$CORPUS" "$minutes" "$rate" > "$OUT/config.toml"
echo "== poet's measured rate $rate chars/s; its config: $(tr '\n' ' ' < "$OUT/config.toml")"
rm -rf "$OUT/checkpoints"
timeout --signal=INT "$SECONDS_EACH" "$BIN/poet-worker" --threads "$THREADS" --device cpu train \
  --corpus "$CORPUS" --config "$OUT/config.toml" --out "$OUT/checkpoints" > "$OUT/poet.log" 2>/dev/null &
poet=$!
# shellcheck disable=SC2086
python bench/worker/torch_reference.py quality --corpus "$CORPUS" --threads "$THREADS" \
  --seconds "$SECONDS_EACH" $REF_ARGS 2>/dev/null > "$OUT/ref.json" &
ref=$!
wait "$poet" || true
wait "$ref"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
epochs = [l.split() for l in open(f"{out}/poet.log") if l.startswith("epoch ")]
ref = json.load(open(f"{out}/ref.json"))
poet = float(epochs[-1][5]) if epochs else float("nan")
print(f"poet recommended (2x256 seq, cosine)  val_loss {poet:.3f}  after {len(epochs)} epochs")
print(f"pytorch reference ({ref['layers']}x{ref['units']} {ref['formulation']}, lr {ref['lr']})  "
      f"val_loss {ref['val_loss']:.3f}  after {ref['batches']} batches ({ref['epochs']:.2f} epochs)")
PY
