#!/usr/bin/env bash
# Ingest benchmark: poet-ingest against a straightforward Python reference, same dump, same
# Postgres, one run, figures side by side.
#
#   bench/ingest/run.sh [SIZE_MB] [plain|gzip]        (defaults: 500 plain)
#
# Generates a WordPress-shaped elasticdump NDJSON dump of SIZE_MB (uncompressed; cached under
# $POET_BENCH_DIR, default /tmp/poet-bench-ingest), starts a private Postgres cluster in a temp
# dir (initdb/pg_ctl from /usr/lib/postgresql/15/bin) unless POET_DATABASE_URL names a server
# whose user may CREATE DATABASE, and runs both under /usr/bin/time -v (wall, CPU, peak RSS).
# The Python reference lives in a venv under ~/.cache/poet/bench-venv (psycopg[binary]).
set -euo pipefail

SIZE_MB=${1:-500}
MODE=${2:-plain}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${POET_BENCH_DIR:-/tmp/poet-bench-ingest}
VENV=${POET_BENCH_VENV:-$HOME/.cache/poet/bench-venv}
PGBIN=${POET_PG_BIN:-/usr/lib/postgresql/15/bin}
mkdir -p "$WORK"

DUMP="$WORK/dump-${SIZE_MB}mb.ndjson"
[ "$MODE" = gzip ] && DUMP="$DUMP.gz"
if [ ! -s "$DUMP" ]; then
    flag=""; [ "$MODE" = gzip ] && flag="--gzip"
    python3 "$HERE/gen_dump.py" --size-mb "$SIZE_MB" --out "$DUMP" $flag
fi

(cd "$ROOT" && cargo build --quiet --release -p poet-ingest --example ingest)
BIN="$ROOT/target/release/examples/ingest"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "psycopg[binary]"
fi

if [ -z "${POET_DATABASE_URL:-}" ]; then
    PGDIR=$(mktemp -d /tmp/poet-bench-pg.XXXXXX)
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    AS=()
    if [ "$(id -u)" = 0 ]; then chown postgres "$PGDIR"; AS=(runuser -u postgres --); fi
    "${AS[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U poet -A trust --no-sync >/dev/null
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
        -o "-p $PORT -k $PGDIR -c listen_addresses=127.0.0.1" start >/dev/null
    trap '"${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null; rm -rf "$PGDIR"' EXIT
    SERVER="postgres://poet@127.0.0.1:$PORT"
else
    SERVER="${POET_DATABASE_URL%/*}"
fi
RUN=$(date +%s)
psql -q "$SERVER/postgres" -c "create database bench_rust_$RUN" -c "create database bench_py_$RUN"

echo "dump: $DUMP ($(du -h "$DUMP" | cut -f1)); machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; load: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -v "$BIN" --database-url "$SERVER/bench_rust_$RUN" --json --progress false "$DUMP" \
    >"$WORK/rust.json" 2>"$WORK/rust.time"
"$BIN" --database-url "$SERVER/bench_rust_$RUN" --progress false "$DUMP" | head -1   # idempotent re-run
/usr/bin/time -v "$VENV/bin/python" "$HERE/reference.py" --database-url "$SERVER/bench_py_$RUN" "$DUMP" \
    >"$WORK/py.json" 2>"$WORK/py.time"

python3 - "$WORK" <<'PY'
import json, re, sys
w = sys.argv[1]
def tv(path):
    t = open(path).read()
    g = lambda k: re.search(k + r": (.*)", t).group(1)
    wall = g(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\)").split(":")
    secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
    return secs, float(g("User time \(seconds\)")) + float(g("System time \(seconds\)")), int(g(r"Maximum resident set size \(kbytes\)")) / 1024
r, p = json.load(open(f"{w}/rust.json")), json.load(open(f"{w}/py.json"))
rw, rc, rm = tv(f"{w}/rust.time"); pw, pc, pm = tv(f"{w}/py.time")
mb = r["input_bytes"] / 1e6
docs = r["counts"]["read"]
print(f"{'':22}{'poet-ingest':>14}{'python ref':>14}{'ratio':>8}")
for name, a, b in [("wall s", rw, pw), ("MB/s (input)", mb / rw, mb / pw), ("docs/s", docs / rw, docs / pw),
                   ("client cpu s", rc, pc), ("peak RSS MB", rm, pm)]:
    print(f"{name:22}{a:>14.1f}{b:>14.1f}{(a / b if b else 0):>8.2f}")
print("kept / duplicates / not poems / malformed:",
      [r["counts"][k] for k in ("kept", "duplicates", "not_poems", "malformed")], "vs",
      [p["counts"][k] for k in ("kept", "duplicates", "not_poems", "malformed")])
t = r["timings"]
print("poet-ingest stages: parse {parse_s:.2f}, html {html_s:.2f}, filter {filter_s:.2f}, key+row {key_s:.2f} (worker cpu-s); "
      "copy wait {copy_s:.2f}, finalize {finalize_s:.2f}, total {total_s:.2f} (s)".format(**t))
PY
