#!/usr/bin/env bash
# The sampler sweep behind `poet-worker generate`'s and the coordinator's sampling defaults
# (issue 21; BENCHMARKS.md, "Sampling that keeps a poem's shape").
#
#   bench/poems/sampling.sh CHECKPOINT [CORPUS] [extra flags for the example]
#
# Without a checkpoint (CHECKPOINT = "train"), first trains one on CORPUS with
# bench/poems/sampling.toml for SAMPLING_EPOCHS epochs (default 10) into $SAMPLING_OUT
# (default: a temp dir) and sweeps its last epoch. Then samples the same streams under each
# setting (plain, top-p, top-k, the repeat cap, the shape pull at several strengths, the
# defaults; --window adds the window sampler) at 0.2, 0.5 and 0.8, and prints a markdown table
# of every measure of the quality report beside the corpus's figures and the issue's goals.
# CORPUS defaults to corpus-pd.txt from the shared data folder ($POET_DATA, default
# ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/../.."
ckpt=${1:?usage: bench/poems/sampling.sh CHECKPOINT|train [CORPUS] [flags]}
corpus=${2:-${POET_DATA:-../shared/data}/corpus-pd.txt}
shift $(($# < 2 ? $# : 2))
if [ "$ckpt" = train ]; then
  out=${SAMPLING_OUT:-$(mktemp -d)}
  cfg=$(mktemp)
  sed "s/^epochs = .*/epochs = ${SAMPLING_EPOCHS:-10}/" bench/poems/sampling.toml >"$cfg"
  cargo run --locked --quiet -p poet-worker -- --threads "${THREADS:-2}" train \
    --corpus "$corpus" --config "$cfg" --out "$out"
  rm -f "$cfg"
  ckpt=$out/latest.safetensors
fi
cargo run --locked --quiet -p poet-worker --example sampling -- \
  --checkpoint "$ckpt" --corpus "$corpus" "$@"
