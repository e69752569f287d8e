#!/usr/bin/env bash
# One-hot vs learned-embedding inputs at a small and a wide vocabulary (411 characters from
# corpus-pd.txt; the issue asks for 800, which needs position mod 32 below): training
# chars/s and validation loss after the same number of batches, through `poet-worker train`
# (2 x UNITS seq, batch 64, the recommended recipe otherwise). The large-vocabulary corpus is
# the small one with every letter rewritten by its position in the word (letter x position
# mod 16 -> one CJK code point), so both corpora have the same structure and size.
# Usage (from the repository root):
#
#   bench/poems/vocab.sh [corpus.txt]      # default: ../shared/data/corpus-pd.txt
#
# Env: BATCHES (per run, default 40), UNITS (default 256), THREADS (default 2).
# Results: BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
CORPUS=${1:-../shared/data/corpus-pd.txt}
BATCHES=${BATCHES:-40}
UNITS=${UNITS:-256}
THREADS=${THREADS:-2}
OUT=${OUT:-target/bench-vocab}
mkdir -p "$OUT"
cargo build --quiet --locked -p poet-worker -p poet-core --example poems
BIN="${CARGO_TARGET_DIR:-target}/debug"
python3 - "$CORPUS" "$OUT/wide.txt" <<'PY'
import sys
text = open(sys.argv[1], encoding="utf-8").read()
out, pos = [], 0
for ch in text:
    if ch.isascii() and ch.isalpha():
        out.append(chr(0x4E00 + (ord(ch) - 65) * 16 + pos % 16))
        pos += 1
    else:
        out.append(ch)
        pos = 0
open(sys.argv[2], "w", encoding="utf-8").write("".join(out))
PY
echo "== $(date -u '+%F %H:%M UTC') on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $BATCHES batches per run"
for corpus in "$CORPUS" "$OUT/wide.txt"; do
  vocab=$(python3 -c "import sys; print(len(set(open(sys.argv[1], encoding='utf-8').read())))" "$corpus")
  for emb in 0 64; do
    cat > "$OUT/config.toml" <<EOT
layers = 2
units = $UNITS
seq_len = 100
batch_size = 64
learning_rate = 0.003
dropout = 0.1
recurrent_dropout = 0.0
formulation = "seq"
epochs = 1
max_batches = $BATCHES
embedding = $emb
EOT
    line=$("$BIN/poet-worker" --threads "$THREADS" --device cpu train --corpus "$corpus" \
      --config "$OUT/config.toml" --out "$OUT/ckpt" 2>/dev/null | grep '^epoch' | tail -1)
    set -- $line
    printf 'vocab %4s  embedding %2s  chars/s %7.0f  val_loss %s\n' "$vocab" "$emb" "${10}" "$6"
  done
done
