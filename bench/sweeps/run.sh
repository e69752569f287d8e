#!/usr/bin/env bash
# Replay benchmark of sweep schedulers (issue 15, evidence 1; see BENCHMARKS.md, "Sweeps").
#
#   ./poet.sh bench-sweeps            baselines + poet's replay (if built) + the report
#   bench/sweeps/run.sh record        (re)record the fixture curves.json with poet-worker (long)
#   bench/sweeps/run.sh baselines     only Optuna's and Syne Tune's replays
#   bench/sweeps/run.sh poet          only poet's replay (core/examples/replay.rs)
#   bench/sweeps/run.sh report        only the table, the targets and replay.png
#
# Env: SEEDS (Optuna's and Syne Tune's seeds per method/search, default 60), POET_SEEDS (poet's,
#      default 200: its replays take seconds), JOBS (baseline processes side by side, default
#      the number of cores), WORKERS (simulated workers, 4),
#      POET_SWEEPS_VENV (the baselines' venv, default ~/.cache/poet/sweeps-venv),
#      CORPUS (record: default ../shared/data/corpus-pd.txt), POET_WORKER (record: a built
#      poet-worker to use instead of building one), RECORD_ARGS (extra record.py flags, e.g.
#      "--epochs 2 --limit 2 --out /tmp/c.json" for a smoke test).
# Traces go to bench/sweeps/out/ (ignored by git); the fixture and replay.png stay in bench/sweeps.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
HERE=bench/sweeps
OUT=$HERE/out
SEEDS=${SEEDS:-60}
POET_SEEDS=${POET_SEEDS:-200}
JOBS=${JOBS:-$(nproc)}
WORKERS=${WORKERS:-4}
VENV=${POET_SWEEPS_VENV:-$HOME/.cache/poet/sweeps-venv}
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# The baselines' venv: made on first use and whenever requirements.txt changes.
ensure_venv() {
  local stamp="$VENV/.poet-requirements"
  if [ -x "$VENV/bin/python" ] && cmp -s "$HERE/requirements.txt" "$stamp"; then return; fi
  log "making the baselines' venv $VENV (optuna, syne-tune, matplotlib from PyPI)"
  python3 -c "import venv, ensurepip" 2>/dev/null || { echo "error: python3 venv missing (apt-get install python3-venv)" >&2; exit 1; }
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
  cp "$HERE/requirements.txt" "$stamp"
}

torch_env() {
  local venv="${POET_TORCH_VENV:-$HOME/.cache/poet/torch-2.11.0}"
  export LIBTORCH_USE_PYTORCH=1 PATH="$venv/bin:$PATH"
  local lib
  lib="$("$venv/bin/python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

record() {
  torch_env
  local worker="${POET_WORKER:-}"
  if [ -z "$worker" ]; then
    log "building poet-worker"
    cargo build --locked -q -p poet-worker
    worker="$TARGET/debug/poet-worker"
  fi
  local corpus; corpus="$(realpath -m "${CORPUS:-$ROOT/../shared/data/corpus-pd.txt}")"
  log "recording every config of $HERE/grid.toml on $(basename "$corpus") (1 thread, nice 10); resumable"
  # shellcheck disable=SC2086
  python3 "$HERE/record.py" --corpus "$corpus" --worker "$worker" \
    --worker-commit "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- worker core || echo '+dirty')" ${RECORD_ARGS:-}
}

baselines() {
  ensure_venv
  mkdir -p "$OUT"
  local jobs=$((JOBS < SEEDS ? JOBS : SEEDS)) pids=() j
  log "replaying Optuna and Syne Tune on $HERE/curves.json ($SEEDS seeds, $WORKERS workers, $jobs jobs)"
  # Seeds split into $jobs contiguous ranges, one process each; Optuna's replays are
  # deterministic per seed, so the split changes nothing but the wall clock.
  for ((j = 0; j < jobs; j++)); do
    local from=$((SEEDS * j / jobs)) to=$((SEEDS * (j + 1) / jobs))
    "$VENV/bin/python" "$HERE/baselines.py" --first-seed "$from" --seeds "$((to - from))" \
      --workers "$WORKERS" --scratch "$OUT/syne-tune-$j" >"$OUT/baselines.$j.jsonl.tmp" \
      2>"$OUT/baselines.$j.log" &
    pids+=($!)
  done
  for j in "${!pids[@]}"; do
    wait "${pids[$j]}" || { tail -20 "$OUT/baselines.$j.log" >&2; exit 1; }
  done
  for ((j = 0; j < jobs; j++)); do cat "$OUT/baselines.$j.jsonl.tmp"; done >"$OUT/baselines.jsonl"
  for ((j = 0; j < jobs; j++)); do cat "$OUT/baselines.$j.log"; done >"$OUT/baselines.log"
  rm -rf "$OUT"/baselines.*.jsonl.tmp "$OUT"/baselines.*.log "$OUT"/syne-tune-*
}

poet() {
  mkdir -p "$OUT"
  if [ ! -f core/examples/replay.rs ]; then
    log "skipping poet: core/examples/replay.rs does not exist yet"
    rm -f "$OUT/poet.jsonl"
    return
  fi
  log "building and replaying poet's schedulers ($POET_SEEDS seeds, $WORKERS workers)"
  cargo build --locked -q --release -p poet-core --example replay
  local replay="$TARGET/release/examples/replay"
  : >"$OUT/poet.jsonl.tmp"
  # The settings every tool shares (see README.md): rungs 1, 3, 9 (eta 3), median stopping
  # from epoch 2 once 5 runs are known.
  for method in none median asha hyperband patience; do
    for search in grid random tpe; do
      "$replay" --fixture "$HERE/curves.json" --method "$method" --search "$search" \
        --seeds "0-$((POET_SEEDS - 1))" --workers "$WORKERS" --eta 3 --min-epochs 1 --grace 1 \
        --min-runs 5 >>"$OUT/poet.jsonl.tmp"
    done
  done
  mv "$OUT/poet.jsonl.tmp" "$OUT/poet.jsonl"
}

report() {
  ensure_venv
  "$VENV/bin/python" "$HERE/report.py" --fixture "$HERE/curves.json" --png "$HERE/replay.png" "$OUT"/*.jsonl
}

case "${1:-all}" in
  record) record ;;
  baselines) baselines ;;
  poet) poet ;;
  report) report ;;
  all)
    echo "# $(date -u +%FT%TZ), $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')), load $(cut -d' ' -f1-3 /proc/loadavg), $(git rev-parse --short HEAD)"
    baselines
    poet
    report
    echo "# $SECONDS s in all, load $(cut -d' ' -f1-3 /proc/loadavg) at the end"
    ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
