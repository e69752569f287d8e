#!/usr/bin/env bash
# The poems benchmark (issue 21): train poet's recommended config on a corpus for at most
# MINUTES through `poet-worker train`, sample at the recommended settings through
# `poet-worker generate`, and print the poems' figures beside the corpus's and the goals,
# PASS/FAIL per goal. Usage (from the repository root):
#
#   ./poet.sh bench-poems [corpus.txt]          # default: ../shared/data/corpus-pd.txt
#
# Env: MINUTES (training budget, default 15), THREADS (default 2), TEMPERATURE (default 0.3,
#      the sampler's measured default),
#      CHARS (per stream, default 2000), STREAMS (default 8), SEED (default 1),
#      SAMPLE_ARGS (extra `poet-worker generate` flags, e.g. top-p once the sampler has it),
#      OUT (work dir, default target/bench-poems), CHECKPOINT (skip training: sample this).
# Results: BENCHMARKS.md, "Poems worth reading".
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=bench/poems/lib.sh
. bench/poems/lib.sh
CORPUS=${1:-../shared/data/corpus-pd.txt}
MINUTES=${MINUTES:-15}
THREADS=${THREADS:-2}
TEMPERATURE=${TEMPERATURE:-0.3}
CHARS=${CHARS:-2000}
STREAMS=${STREAMS:-8}
SEED=${SEED:-1}
OUT=${OUT:-target/bench-poems}
mkdir -p "$OUT"
cargo build --quiet --locked -p poet-worker -p poet-core --example poems
BIN="${CARGO_TARGET_DIR:-target}/debug"
POEMS="$BIN/examples/poems"

echo "== $(date -u '+%F %H:%M UTC') on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -z "${CHECKPOINT:-}" ]; then
  start=$(date +%s)
  # Calibrate the recommended model on this machine as loaded now (no validation text;
  # lib.sh), so that the epochs and the cosine decay are planned for the budget at the rate
  # training will actually get. The calibration counts against the budget.
  "$POEMS" recommend "$CORPUS" "$MINUTES" | calibration_config > "$OUT/calibrate.toml"
  rate=$("$BIN/poet-worker" --threads "$THREADS" --device cpu train --corpus "$CORPUS" \
    --config "$OUT/calibrate.toml" --validation-fraction 0 --out "$OUT/calibrate" 2>/dev/null |
    last_rate)
  left=$(( ${MINUTES%.*} * 60 - ($(date +%s) - start) ))
  "$POEMS" recommend "$CORPUS" "$(python3 -c "print($left / 60)")" "$rate" > "$OUT/config.toml"
  echo "== measured $rate chars/s; recommended config for $CORPUS, $left s left ($OUT/config.toml):"
  sed 's/^/   /' "$OUT/config.toml"
  rm -f "$OUT"/checkpoints/*.safetensors
  # If the machine gets slower still, training is cut at the budget and the last finished
  # epoch is sampled.
  timeout --signal=INT "$left" \
    "$BIN/poet-worker" --threads "$THREADS" --device cpu train --corpus "$CORPUS" \
    --config "$OUT/config.toml" --out "$OUT/checkpoints" | tee "$OUT/train.log" || true
  echo "== trained; $(( $(date +%s) - start )) s since the start, $(grep -c '^epoch' "$OUT/train.log") epochs"
  CHECKPOINT="$OUT/checkpoints/latest.safetensors"
fi
[ -f "$CHECKPOINT" ] || { echo "no checkpoint: training finished no epoch in the budget" >&2; exit 1; }
# shellcheck disable=SC2086
# --corpus aims the sampler's line and stanza pull at the corpus's figures, as the
# coordinator does for a generation (without it the pull has no target and is off).
"$BIN/poet-worker" --threads "$THREADS" --device cpu generate --checkpoint "$CHECKPOINT" \
  --corpus "$CORPUS" --temperature "$TEMPERATURE" --chars "$CHARS" --poems "$STREAMS" \
  --seed "$SEED" --json \
  ${SAMPLE_ARGS:-} > "$OUT/generated.json"
echo "== sampled $STREAMS x $CHARS chars at temperature $TEMPERATURE ${SAMPLE_ARGS:-}"
"$POEMS" report "$CORPUS" "$OUT/generated.json"
echo "== an excerpt:"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d=d["streams"] if isinstance(d, dict) else d; print(d[0]["text"][:600])' "$OUT/generated.json"
