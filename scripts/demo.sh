#!/usr/bin/env bash
# The demo (README.md, "The demo"): run by `./poet.sh demo` after set-up and build, with
# `poet` and `poet-worker` on PATH. Safe to run again: the stack, the dataset and the runs
# are reused; only a new generation of poems is added.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${POET_DEMO_OUT:-$ROOT/demo-output}"
mkdir -p "$OUT"
step() { printf '\n\033[1m[%s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*"; }
start=$(date +%s)

step "1/7 local stack: private Postgres, a coordinator and 2 CPU workers in the background"
poet up --workers 2 --device cpu --threads 1

step "2/7 ingest the public-domain sample dump that ships in the repo (demo/pd-dump.ndjson.gz)"
poet ingest demo/pd-dump.ndjson.gz --name demo-pd --tag poetry
poet dataset list

step "3/7 submit a sweep: an LSTM and a GRU on the recommended recipe (examples/sweeps/demo.toml)"
SWEEP=$(poet sweep submit examples/sweeps/demo.toml --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["sweep"]["id"])')
echo "sweep $SWEEP submitted"

step "4/7 training: the run table as it changes (poet runs watch --sweep $SWEEP)"
poet runs watch --sweep "$SWEEP" --interval 3
poet sweep show "$SWEEP"
poet workers

step "5/7 loss curves of every run (poet plot --sweep $SWEEP)"
poet plot --sweep "$SWEEP" -o "$OUT/loss-curves.png"

step "6/7 poems from the best run, with their plagiarism report"
poet generate --sweep "$SWEEP" --poems 2 --chars 600 --seed 1
BEST=$(poet sweep show "$SWEEP" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["best_run"]["id"])')
poet words --run "$BEST" --top 15 -o "$OUT/words.png"
poet runs show "$BEST"

step "7/7 done in $(( $(date +%s) - start )) s"
home=$(poet db status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["home"])')
cat <<EOT
  loss curves        $OUT/loss-curves.png
  word chart         $OUT/words.png
  coordinator        http://127.0.0.1:50051  (logs in $home/logs)
  dashboard          http://127.0.0.1:50052  (sweeps, live loss curves, runs, poems)
  checkpoints        $home/artifacts
  database           $(poet db url | sed -E 's#//([^:/@]+):[^@]*@#//\1:***@#')   (poet db url prints it with its password)
  look around        poet runs list --sweep $SWEEP   poet runs compare <id> <id>   poet poems list --run $BEST
  stop everything    poet down --db      (with target/debug on PATH: eval "\$(./poet.sh env)")
EOT
