#!/usr/bin/env bash
# One-hot vs learned-embedding inputs, at a small and a wide vocabulary, at equal wall time:
# should `recommend` (poet_core::config) turn the embedding on for this corpus? For each corpus
# and seed, poet's recommended config for a MINUTES budget is trained twice side by side, one
# thread each (so both share the machine's load): once with one-hot inputs (`embedding = 0`),
# once with a 64-wide embedding. Each variant's epochs and cosine decay are planned for its own
# measured rate (the calibration of bench/poems/lib.sh, as bench/poems/run.sh does). Prints
# each variant's training rate, epochs and validation loss when the budget ends.
#
# The wide corpus is the small one with every letter rewritten to one CJK code point chosen by
# the letter, the letter before it in the word, and its position (first, second, later): on
# corpus-pd.txt that is 836 distinct characters, about the 803 of the Chinese poems issue 21
# names. Both corpora have the same poems and size, so the loss compares the inputs, not the
# text (the two corpora's losses are not comparable with each other: the wide one spells out
# more per character).
# Usage (from the repository root):
#
#   bench/poems/vocab.sh [corpus.txt]      # default: ../shared/data/corpus-pd.txt
#
# Env: MINUTES (per run, default 3), SEEDS (default "42 7"), CORPORA (default "small wide"; one
# of them alone runs only that corpus). Results: BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=bench/poems/lib.sh
. bench/poems/lib.sh
CORPUS=${1:-../shared/data/corpus-pd.txt}
MINUTES=${MINUTES:-3}
SEEDS=${SEEDS:-42 7}
CORPORA=${CORPORA:-small wide}
OUT=${OUT:-target/bench-vocab}
mkdir -p "$OUT"
export LIBTORCH_USE_PYTORCH=1 PATH="$HOME/.cache/poet/torch-2.11.0/bin:$PATH"
cargo build --quiet --locked -p poet-worker -p poet-core --example poems
BIN="${CARGO_TARGET_DIR:-target}/debug"
python3 - "$CORPUS" "$OUT/wide.txt" <<'PY'
import sys
text = open(sys.argv[1], encoding="utf-8").read()
out, prev, pos = [], None, 0
for ch in text:
    if ch.isascii() and ch.isalpha():
        after = 0 if prev is None else ord(prev.lower()) - 96
        out.append(chr(0x4E00 + ((ord(ch) - 65) * 27 + after) * 3 + min(pos, 2)))
        prev, pos = ch, pos + 1
    else:
        out.append(ch)
        prev, pos = None, 0
open(sys.argv[2], "w", encoding="utf-8").write("".join(out))
PY

# config CORPUS EMBEDDING SEED [RATE] > file: the recommended config with the input overridden.
config() {
  "$BIN/examples/poems" recommend "$1" "$MINUTES" ${4:+"$4"} |
    sed -e "s/^embedding = .*/embedding = $2/" -e "s/^seed = .*/seed = $3/"
}
# train CONFIG CORPUS DIR [SECONDS]: one thread; the log's epoch lines go to DIR/log.
train() {
  rm -rf "$3"
  mkdir -p "$3"
  ${4:+timeout --signal=INT "$4"} "$BIN/poet-worker" --threads 1 --device cpu train \
    --corpus "$2" --config "$1" --out "$3/ckpt" 2>/dev/null | grep '^epoch' > "$3/log" || true
}

echo "== $(date -u '+%F %H:%M UTC') on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $MINUTES min per run, the two inputs side by side"
printf '%-6s %-9s %-5s %9s %7s %9s %9s\n' vocab embedding seed "chars/s" epochs val_loss best_val
for which in $CORPORA; do
  case $which in
    small) corpus=$CORPUS ;;
    wide) corpus=$OUT/wide.txt ;;
    *) echo "CORPORA: '$which' is neither small nor wide" >&2; exit 2 ;;
  esac
  vocab=$(python3 -c "import sys; print(len(set(open(sys.argv[1], encoding='utf-8').read())))" "$corpus")
  for seed in $SEEDS; do
    for emb in 0 64; do
      config "$corpus" "$emb" "$seed" | calibration_config > "$OUT/calibrate-$emb.toml"
      train "$OUT/calibrate-$emb.toml" "$corpus" "$OUT/calibrate-$emb" &
    done
    wait
    for emb in 0 64; do
      rate=$(last_rate < "$OUT/calibrate-$emb/log")
      config "$corpus" "$emb" "$seed" "$rate" > "$OUT/config-$emb.toml"
      train "$OUT/config-$emb.toml" "$corpus" "$OUT/run-$emb" $((MINUTES * 60)) &
    done
    wait
    for emb in 0 64; do
      awk -v vocab="$vocab" -v emb="$emb" -v seed="$seed" '
        {n++; rate += $10; val = $6; if (best == "" || $6 < best) best = $6}
        END {printf "%-6s %-9s %-5s %9.0f %7d %9.4f %9.4f\n", vocab, emb, seed, n ? rate / n : 0, n, val, best}' \
        "$OUT/run-$emb/log"
    done
  done
done
