#!/usr/bin/env bash
# CPU benchmarks of poet-worker beside the PyTorch reference (same model, batch, threads).
#
#   bench/worker/run.sh [train|quality|sample|all]     (from the repository root)
#
# Env: THREADS (default 2), REPEATS (best of N runs, default 3; REPEATS_REF for 3x300), CORPUS,
#      TRAIN_BATCHES_SMALL/TRAIN_BATCHES_REF, QUALITY_KERAS_S/QUALITY_SEQ_S, SAMPLE_CHARS.
# Each line prints our figure beside its reference and the ratio. Results: RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
export LIBTORCH_USE_PYTORCH=1 PATH="$HOME/.cache/poet/torch-2.11.0/bin:$PATH"
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}
CORPUS=${CORPUS:-../shared/data/corpus-pd.txt}
cargo build --quiet --release -p poet-worker --example bench
BENCH="${CARGO_TARGET_DIR:-target}/release/examples/bench"
PY="python bench/worker/torch_reference.py"
what=${1:-all}

# poet-worker keeps freed memory for the next batch (worker/src/memory.rs); the same glibc
# settings, as tunables, give the PyTorch reference the same policy for a like-for-like line.
POLICY=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647

# METRIC: chars_per_sec (wall clock, the default) or chars_per_cpu_sec (process CPU time,
# steadier when other work shares the cores; use it with THREADS=1).
METRIC=${METRIC:-chars_per_sec}

# best CMD...: runs CMD $REPEATS times, prints the best $METRIC.
best() {
  for _ in $(seq "$REPEATS"); do "$@" 2>/dev/null | tail -1; done |
    python3 -c 'import json,sys; print(max(json.loads(l)[sys.argv[1]] for l in sys.stdin))' "$METRIC"
}

side() { # label ours reference
  python3 -c 'import sys; l,a,b=sys.argv[1],float(sys.argv[2]),float(sys.argv[3]); print(f"{l:<46} poet-worker {a:>10.0f}   pytorch {b:>10.0f}   ratio {a/b:5.2f}")' "$@"
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), threads=$THREADS, best of $REPEATS, figures in $METRIC"
if [[ $what == train || $what == all ]]; then
  for f in keras seq; do
    small=(--layers 2 --units 64 --seq-len 40 --batch 128 --formulation $f --threads "$THREADS" --corpus "$CORPUS")
    n=${TRAIN_BATCHES_SMALL:-40}
    ours=$(best "$BENCH" "${small[@]}" train --batches "$n")
    side "train 2x64 seq40 b128 $f ($n batches)" "$ours" "$(best $PY train "${small[@]}" --batches "$n")"
    side "  same, pytorch with poet's malloc policy" "$ours" "$(GLIBC_TUNABLES=$POLICY best $PY train "${small[@]}" --batches "$n")"
  done
  for f in keras seq; do
    ref=(--layers 3 --units 300 --seq-len 300 --batch 128 --formulation $f --threads "$THREADS" --corpus "$CORPUS")
    n=${TRAIN_BATCHES_REF:-2}
    ours=$(REPEATS=${REPEATS_REF:-2} best "$BENCH" "${ref[@]}" train --batches "$n")
    theirs=$(REPEATS=${REPEATS_REF:-2} best $PY train "${ref[@]}" --batches "$n")
    side "train 3x300 seq300 b128 $f ($n batches)" "$ours" "$theirs"
    side "  same, pytorch with poet's malloc policy" "$ours" "$(GLIBC_TUNABLES=$POLICY REPEATS=${REPEATS_REF:-2} best $PY train "${ref[@]}" --batches "$n")"
    side "  same, poet-worker with POET_MALLOC=system" "$(POET_MALLOC=system REPEATS=${REPEATS_REF:-2} best "$BENCH" "${ref[@]}" train --batches "$n")" "$theirs"
  done
fi

if [[ $what == sample || $what == all ]]; then
  chars=${SAMPLE_CHARS:-600}
  declare -A rate
  for s in 1 64; do
    args=(--layers 3 --units 300 --seq-len 300 --threads "$THREADS" --corpus "$CORPUS")
    ours=$(best "$BENCH" "${args[@]}" sample --streams $s --chars "$chars")
    theirs=$(best $PY sample "${args[@]}" --streams $s --chars "$chars")
    plain=$(best $PY sample "${args[@]}" --streams $s --chars "$chars" --mkldnn off)
    rate[$s]=$ours
    side "sample 3x300 streams=$s ($chars chars + 300 seed)" "$ours" "$theirs"
    side "  same, pytorch with mkldnn off" "$ours" "$plain"
  done
  python3 -c 'import sys; print(f"sample batch-64 aggregate / batch-1 (poet-worker): {float(sys.argv[2])/float(sys.argv[1]):.1f}x (target >= 20x)")' "${rate[1]}" "${rate[64]}"
  # The hardware limit beside it: the fp32 FMA ceiling of the cores the figures used (one per
  # CPU-second, or $THREADS on the wall clock), and what batch 64 would sample at that ceiling.
  flops=$("$BENCH" "${args[@]}" sample --streams 1 --chars 2 2>/dev/null | tail -1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["flops_per_char"])')
  cores=$THREADS; [[ $METRIC == chars_per_cpu_sec ]] && cores=1
  peak=$("$BENCH" --threads "$cores" peak 2>/dev/null | tail -1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["gflops"] or 0)')
  python3 - "${rate[1]}" "${rate[64]}" "$flops" "$peak" "$cores" <<'PY'
import sys
one, many, flops, peak, cores = map(float, sys.argv[1:])
print(f"fp32 FMA ceiling, {cores:.0f} core(s): {peak:.0f} GFLOP/s; sampling needs {flops/1e6:.2f} MFLOP/char")
if peak:
    print(f"  batch 64 runs at {many*flops/1e9:.0f} GFLOP/s ({many*flops/1e9/peak:.0%} of it); batch 1 at {one*flops/1e9:.0f}")
    print(f"  20x batch 1 needs {20*one*flops/1e9:.0f} GFLOP/s; at 100% of the ceiling batch 64 would be {peak*1e9/flops/one:.1f}x batch 1")
PY
fi

if [[ $what == quality || $what == all ]]; then
  # Same 2x128 model, seq_len 64, batch 64, lr 0.01, on the 1 MB corpus; validation loss is
  # keras-style (next char after a full window) for both. Prints the curve and when seq first
  # reaches keras's best.
  q=(--layers 2 --units 128 --seq-len 64 --batch 64 --step 3 --threads "$THREADS" --corpus "$CORPUS")
  "$BENCH" "${q[@]}" --formulation keras quality --seconds "${QUALITY_KERAS_S:-300}" --eval-every 50 >/tmp/poet-quality-keras.jsonl
  "$BENCH" "${q[@]}" --formulation seq quality --seconds "${QUALITY_SEQ_S:-60}" --eval-every 25 >/tmp/poet-quality-seq.jsonl
  python3 - <<'PY'
import json
k = [json.loads(l) for l in open("/tmp/poet-quality-keras.jsonl")]
s = [json.loads(l) for l in open("/tmp/poet-quality-seq.jsonl")]
for name, rows in (("keras", k), ("seq", s)):
    print(f"{name}: " + "  ".join(f"{r['train_seconds']:.0f}s:{r['val_loss']:.3f}" for r in rows))
best = min(r["val_loss"] for r in k)
t_k = next(r["train_seconds"] for r in k if r["val_loss"] == best)
hit = next((r for r in s if r["val_loss"] <= best), None)
if hit:
    print(f"time to quality: keras best val {best:.3f} at {t_k:.0f}s; seq reaches it at {hit['train_seconds']:.1f}s "
          f"= 1/{t_k / hit['train_seconds']:.1f} of keras's time (target <= 1/10)")
else:
    print(f"time to quality: keras best val {best:.3f} at {t_k:.0f}s; seq did not reach it in {s[-1]['train_seconds']:.0f}s "
          f"(best {min(r['val_loss'] for r in s):.3f})")
PY
fi
