#!/usr/bin/env bash
# Plagiarism check of 100 poems against a ~1 MB corpus. Usage: ./poet.sh bench-plagiarism [corpus.txt]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --locked -q -p poet-core --example plagiarism -- "${1:-../shared/data/corpus-pd.txt}"
