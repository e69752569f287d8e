#!/usr/bin/env bash
# GPU benchmark, prepared for a session that has an accelerator (H200): one epoch of the
# reference model (3x300, seq 300, batch 128, dropout .2/.2) on the 1 MB corpus, keras
# (step 3) and seq formulations, poet-worker beside the PyTorch reference.
#
#   bench/worker/gpu.sh            (from the repository root, on the GPU machine)
#
# Env: CORPUS, MAX_BATCHES (0 = a whole epoch; keras step 3 is ~2,600 batches of 128, so set
# e.g. 300 and scale when time is short), DEVICE (default cuda:0).
# Needs the same venv (LIBTORCH_USE_PYTORCH) and a CUDA build of torch; building the
# worker there takes ~4 min, so run `cargo build --release -p poet-worker --example bench`
# first and carry target/ when the machine time is metered.
set -euo pipefail
cd "$(dirname "$0")/../.."
export LIBTORCH_USE_PYTORCH=1 PATH="$HOME/.cache/poet/torch-2.11.0/bin:$PATH"
CORPUS=${CORPUS:-/work/shared/data/corpus-pd.txt}
MAX_BATCHES=${MAX_BATCHES:-0}
DEVICE=${DEVICE:-cuda:0}
BENCH="${CARGO_TARGET_DIR:-target}/release/examples/bench"
[[ -x $BENCH ]] || cargo build --quiet --release -p poet-worker --example bench
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
for f in keras seq; do
  args=(--layers 3 --units 300 --seq-len 300 --step 3 --batch 128 --formulation $f --corpus "$CORPUS")
  # MAX_BATCHES=0 means the whole epoch for both implementations.
  ours=$("$BENCH" "${args[@]}" --device "$DEVICE" train --batches "$MAX_BATCHES" | tail -1)
  theirs=$(python bench/worker/torch_reference.py train "${args[@]}" --device cuda --batches "$MAX_BATCHES" 2>/dev/null | tail -1)
  python3 - "$f" "$ours" "$theirs" <<'PY'
import json, sys
f, a, b = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"gpu epoch 3x300 seq300 b128 {f:<5} ({a['batches']} batches): poet-worker {a['seconds']:.1f}s "
      f"{a['chars_per_sec']:.0f} chars/s   pytorch {b['seconds']:.1f}s {b['chars_per_sec']:.0f} chars/s   "
      f"ratio {a['chars_per_sec'] / b['chars_per_sec']:.2f}")
PY
done
