#!/usr/bin/env bash
# GPU benchmark (issues #5 and #6), for a session lent an accelerator through the `device`
# tool: one epoch of the reference model (3x300, seq 300, batch 128, dropout .2/.2) on the
# ~1 MB corpus in both formulations, poet-worker beside the PyTorch reference, and sampling
# chars/s at 1 and 64 streams.
#
#   bench/worker/gpu.sh prepare     here: builds the bench binary (stripped) and copies the
#                                   corpus into target/gpu/ (under the 64 MiB carry limit)
#   bench/worker/gpu.sh run         there: device tool `run`, command
#                                   "bash bench/worker/gpu.sh run", carry ["target/gpu"]
#   bench/worker/gpu.sh             both, on a machine that has the GPU and the venv
#
# `run` needs only the carried folder and a python3 with torch 2.11 (CUDA): the binary finds
# libtorch in that torch's lib folder. A keras epoch (step 3) is ~2,300 batches; it is timed
# over KERAS_BATCHES (default 100) and scaled to the epoch, then run whole if that estimate
# is under FULL_EPOCH_MAX_S (default 60). seq epochs (~25 batches) are always run whole.
# KERAS_WIDE_BATCHES (default "512 1024") adds keras epoch estimates at wider batches.
# Results go to stdout and, when $OUT is set (the device tool sets it), to $OUT/gpu.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
GPU_DIR=target/gpu
KERAS_BATCHES=${KERAS_BATCHES:-100}
FULL_EPOCH_MAX_S=${FULL_EPOCH_MAX_S:-60}
# Extra keras batch sizes, poet-worker only, timed over KERAS_WIDE_N batches ("" skips them).
KERAS_WIDE_BATCHES=${KERAS_WIDE_BATCHES-512 1024}
KERAS_WIDE_N=${KERAS_WIDE_N:-30}
DEVICE=${DEVICE:-cuda:0}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
# The reference model; GPU_BENCH_MODEL="--layers 1 --units 16 --seq-len 40" with
# DEVICE=cpu TORCH_DEVICE=cpu makes a quick dry run of the script on a CPU machine, and
# GPU_BENCH_PROFILE=debug builds the bench binary in the dev profile (reusing a
# `cargo build --workspace --features poet-coordinator/s3` build) instead of a release build:
#   GPU_BENCH_PROFILE=debug DEVICE=cpu TORCH_DEVICE=cpu KERAS_WIDE_BATCHES="" \
#     GPU_BENCH_MODEL="--layers 1 --units 16 --seq-len 40" bench/worker/gpu.sh
read -r -a MODEL <<<"${GPU_BENCH_MODEL:---layers 3 --units 300 --seq-len 300}"
PROFILE=${GPU_BENCH_PROFILE:-release}

prepare() {
    eval "$(./poet.sh env)"
    if [ "$PROFILE" = release ]; then
        cargo build --quiet --locked --release -p poet-worker --example bench
    else
        cargo build --quiet --locked --workspace --features poet-coordinator/s3 --example bench
    fi
    mkdir -p "$GPU_DIR"
    strip -o "$GPU_DIR/bench" "target/$([ "$PROFILE" = release ] && echo release || echo debug)/examples/bench"
    local corpus=${CORPUS:-../shared/data/corpus-pd.txt}
    cp "$corpus" "$GPU_DIR/corpus.txt"
    cp bench/worker/torch_reference.py "$GPU_DIR/"
    du -sh "$GPU_DIR"
    local bytes; bytes=$(du -sb "$GPU_DIR" | cut -f1)
    [ "$bytes" -lt $((64 << 20)) ] || { echo "$GPU_DIR is over the 64 MiB carry limit" >&2; exit 1; }
}

run() {
    local py=${PYTHON:-python3}
    local torch_lib
    torch_lib=$("$py" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    export LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}"
    local bench="$GPU_DIR/bench" corpus="$GPU_DIR/corpus.txt" ref="$GPU_DIR/torch_reference.py"
    local out=${OUT:-$GPU_DIR}/gpu.txt err=${OUT:-$GPU_DIR}/bench-stderr.txt
    : >"$out"
    say() { echo "$*" | tee -a "$out"; }
    # fmt JSON_LINE TEMPLATE: the template (str.format) filled from the line's fields.
    fmt() { "$py" -c 'import json, sys; print(sys.argv[2].format(**json.loads(sys.argv[1])))' "$1" "$2"; }
    say "date: $(date -u +%FT%TZ); gpu: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo none); torch: $("$py" -c 'import torch; print(torch.__version__, torch.version.cuda)')"
    # The hardware limit to read the figures against: a large matmul, plain fp32 and TF32
    # (cuDNN's LSTM may use TF32 by default; libtorch's matmul does not).
    "$py" - "$TORCH_DEVICE" <<'PY' | tee -a "$out"
import sys, time, torch
dev = sys.argv[1]
n, reps = (8192, 20) if dev != "cpu" else (1024, 3)
a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
for tf32 in (False, True):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a @ b
    if dev != "cpu":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if dev != "cpu":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    print(f"matmul {n}x{n} fp32, tf32 {'on' if tf32 else 'off'}: {2 * n**3 * reps / dt / 1e12:.1f} TFLOP/s")
PY
    # The GPU figures need nvidia-smi and a CUDA device; a CPU dry run says what it skips.
    local smi=""
    if [[ "$DEVICE" == cuda:* ]] && command -v nvidia-smi >/dev/null; then
        smi="${DEVICE#cuda:}"
        # The query poet-worker's /metrics runs at scrape time (worker/src/metrics.rs): its
        # raw answer here shows whether this GPU reports every field ("[N/A]" drops them).
        say "worker metrics query (utilization.gpu, memory.used, memory.total): $(nvidia-smi --query-gpu=utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits -i "$smi" 2>&1 | head -1)"
    else
        say "GPU memory and the worker metrics query: skipped (DEVICE=$DEVICE$(command -v nvidia-smi >/dev/null || echo ', no nvidia-smi'))"
    fi
    local model=("${MODEL[@]}" --step 3 --batch 128 --corpus "$corpus")
    for f in keras seq; do
        local batches=0 flops=0 warnings=0
        [ "$f" = keras ] && batches=$KERAS_BATCHES
        for impl in poet-worker pytorch; do
            local line
            if [ "$impl" = poet-worker ]; then
                # Peak GPU memory in use while it trains (nvidia-smi every 0.2 s, CUDA context
                # included, as in the estimate), beside poet's placement estimate (issue 20).
                local peak_file=${OUT:-$GPU_DIR}/peak-mib.txt poller=""
                echo 0 >"$peak_file"
                if [ -n "$smi" ]; then
                    ( while sleep 0.2; do
                        m=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$smi" 2>/dev/null | head -1 | tr -dc 0-9)
                        [ -n "$m" ] && [ "$m" -gt "$(cat "$peak_file")" ] && echo "$m" >"$peak_file"
                      done ) &
                    poller=$!
                fi
                line=$("$bench" "${model[@]}" --formulation "$f" --device "$DEVICE" train --batches "$batches" 2>"$err" | tail -1)
                [ -n "$poller" ] && { kill "$poller" 2>/dev/null || true; }
                local used="GPU used: skipped (no nvidia-smi or a CPU device)"
                [ -n "$smi" ] && used="GPU used at peak $(awk '{printf "%.2f GB", $1*1048576/1e9}' "$peak_file") (nvidia-smi, every process and the CUDA context)"
                say "memory $f poet-worker: estimate $(fmt "$line" '{est_memory_bytes}' | awk '{printf "%.2f GB", $1/1e9}') (poet_core::resources), $used"
                # model::kernel_params hands cuDNN one flat weight buffer; without it cuDNN
                # copies the weights and logs this warning on every LSTM call.
                warnings=$(grep -c 'single contiguous chunk' "$err" || true)
            else
                line=$("$py" "$ref" train "${model[@]}" --formulation "$f" --device "$TORCH_DEVICE" --batches "$batches" | tail -1)
            fi
            echo "$line" >>"$out"
            local est
            est=$("$py" -c 'import json, sys; r = json.loads(sys.argv[1]); print(round(r["seconds"] * r["epoch_batches"] / r["batches"], 2))' "$line")
            say "train $f $impl: $(fmt "$line" '{batches} of {epoch_batches} batches in {seconds:.2f} s, {chars_per_sec:.0f} chars/s'); epoch ≈ $est s"
            # poet-worker's line carries the FLOPs per char (3x forward, 8·H·(I+H) per layer).
            if [ "$impl" = poet-worker ]; then
                flops=$(fmt "$line" '{flops_per_char}')
                say "  cuDNN weight-copy warnings ('not part of single contiguous chunk'): $warnings"
            fi
            say "  ≈ $("$py" -c 'import json, sys; r = json.loads(sys.argv[1]); print(round(r["chars_per_sec"] * float(sys.argv[2]) / 1e12, 3))' "$line" "$flops") TFLOP/s of model FLOPs"
            if [ "$f" = keras ] && "$py" -c "import sys; sys.exit(0 if $est < $FULL_EPOCH_MAX_S else 1)"; then
                if [ "$impl" = poet-worker ]; then
                    line=$("$bench" "${model[@]}" --formulation "$f" --device "$DEVICE" train --batches 0 | tail -1)
                else
                    line=$("$py" "$ref" train "${model[@]}" --formulation "$f" --device "$TORCH_DEVICE" --batches 0 | tail -1)
                fi
                echo "$line" >>"$out"
                say "train $f $impl, whole epoch: $(fmt "$line" '{batches} batches in {seconds:.2f} s')"
            fi
        done
    done
    # At batch 128 a keras batch is 300 dependent steps through 3 layers: on a GPU its time is
    # mostly per-step latency, not FLOPs, so wider batches show how the epoch time scales.
    for b in $KERAS_WIDE_BATCHES; do
        local wide=("${MODEL[@]}" --step 3 --batch "$b" --corpus "$corpus")
        local line est
        line=$("$bench" "${wide[@]}" --formulation keras --device "$DEVICE" train --batches "$KERAS_WIDE_N" | tail -1)
        echo "$line" >>"$out"
        est=$("$py" -c 'import json, sys; r = json.loads(sys.argv[1]); print(round(r["seconds"] * r["epoch_batches"] / r["batches"], 2))' "$line")
        say "train keras poet-worker, batch $b: $(fmt "$line" '{batches} of {epoch_batches} batches in {seconds:.2f} s, {chars_per_sec:.0f} chars/s'); epoch ≈ $est s"
    done
    say "targets: keras epoch < 20 s, seq epoch < 2 s (the reference experiment: ~7,000 s)"
    local one=0
    for streams in 1 64; do
        local ours theirs
        ours=$("$bench" "${model[@]}" --device "$DEVICE" sample --streams "$streams" --chars 2000 | tail -1)
        theirs=$("$py" "$ref" sample "${model[@]}" --device "$TORCH_DEVICE" --streams "$streams" --chars 2000 | tail -1)
        echo "$ours" >>"$out"; echo "$theirs" >>"$out"
        say "sample, $streams stream(s): poet-worker $(fmt "$ours" '{chars_per_sec:.0f}') chars/s, pytorch $(fmt "$theirs" '{chars_per_sec:.0f}') chars/s"
        if [ "$streams" = 1 ]; then
            one=$(fmt "$ours" '{chars_per_sec}')
        else
            say "sample, batch-64 aggregate / batch 1 (poet-worker): $("$py" -c 'import json, sys; print(round(json.loads(sys.argv[1])["chars_per_sec"] / float(sys.argv[2]), 1))' "$ours" "$one")x"
        fi
    done
    say "targets: batch 64 aggregate >= 20x batch 1; batch 1 >= 1.5x pytorch"
}

case "${1:-all}" in
    prepare) prepare ;;
    run) run ;;
    all) prepare && run ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
