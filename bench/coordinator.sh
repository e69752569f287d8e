#!/usr/bin/env bash
# Coordinator load benchmark: simulated workers over gRPC vs the bare SQL loop, then history
# queries at 10k runs / 1M epochs. Usage: ./poet.sh bench-coordinator [--seconds 8] [--concurrency 1,16,128]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --locked -p poet-coordinator --example loadgen -- "$@"
