#!/usr/bin/env bash
# Ingest benchmark: poet-ingest against a straightforward Python reference, same dump, same
# Postgres, one run, figures side by side.
#
#   bench/ingest/run.sh [SIZE_MB] [plain|gzip]        (defaults: 500 plain)
#
# Generates a WordPress-shaped elasticdump NDJSON dump of SIZE_MB (uncompressed; cached under
# $POET_BENCH_DIR, default /tmp/poet-bench-ingest), starts a private Postgres cluster in a temp
# dir (initdb/pg_ctl from /usr/lib/postgresql/15/bin; under $POET_BENCH_PG_PARENT, default /tmp,
# e.g. /dev/shm to take the disk out of the figures; with the private cluster's minimal WAL,
# POET_BENCH_PG_WAL=" " for the server's defaults) unless POET_DATABASE_URL names a server
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
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/ingest"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "psycopg[binary]"
fi

# The private cluster's WAL settings (sql/src/cluster.rs WAL_SETTINGS): no replicas, so
# minimal WAL. Both programs load into the same server.
WAL_SETTINGS=${POET_BENCH_PG_WAL:-"-c wal_level=minimal -c max_wal_senders=0"}
if [ -z "${POET_DATABASE_URL:-}" ]; then
    # POET_BENCH_PG_PARENT=/dev/shm puts the cluster on tmpfs (takes the disk out of the figures)
    PGDIR=$(mktemp -d "${POET_BENCH_PG_PARENT:-/tmp}/poet-bench-pg.XXXXXX")
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    AS=()
    if [ "$(id -u)" = 0 ]; then chown postgres "$PGDIR"; AS=(runuser -u postgres --); fi
    "${AS[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U poet -A trust --no-sync >/dev/null
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
        -o "-p $PORT -k $PGDIR -c listen_addresses=127.0.0.1 $WAL_SETTINGS" start >/dev/null
    trap '"${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null; rm -rf "$PGDIR"' EXIT
    SERVER="postgres://poet@127.0.0.1:$PORT"
else
    SERVER="${POET_DATABASE_URL%/*}"
fi
# CPU seconds used by the Postgres server so far: the postmaster, its exited children
# (cutime/cstime: the backends of finished runs) and its live children.
pg_cpu() {
    [ -n "${PGDIR:-}" ] || { echo 0; return; }
    local pm; pm=$(head -1 "$PGDIR/data/postmaster.pid")
    python3 - "$pm" <<'PY'
import os, sys
pm = sys.argv[1]
tick = os.sysconf("SC_CLK_TCK")
f = open(f"/proc/{pm}/stat").read().rsplit(")", 1)[1].split()
total = sum(int(x) for x in f[11:15])
for pid in os.listdir("/proc"):
    try:
        g = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        continue
    if pid.isdigit() and g[1] == pm:
        total += int(g[11]) + int(g[12])
print(total / tick)
PY
}
RUN=$(date +%s)
psql -q "$SERVER/postgres" -c "create database bench_rust_$RUN" -c "create database bench_py_$RUN"

REPEAT=${POET_BENCH_REPEAT:-3}
echo "dump: $DUMP ($(du -h "$DUMP" | cut -f1)); machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; load: $(cut -d' ' -f1-3 /proc/loadavg); $REPEAT alternating runs each, best wall kept"
UNCOMPRESSED=$(python3 - "$DUMP" <<'PY'
import gzip, sys
f = sys.argv[1]
h = gzip.open(f) if open(f, "rb").read(2) == b"\x1f\x8b" else open(f, "rb")
print(sum(len(b) for b in iter(lambda: h.read(1 << 20), b"")))
PY
)
for i in $(seq 1 "$REPEAT"); do
    # A new dataset name per run, so every run really writes (the same name would be a no-op).
    C0=$(pg_cpu)
    /usr/bin/time -v "$BIN" --database-url "$SERVER/bench_rust_$RUN" --name "bench-$i" --json --progress false "$DUMP" \
        >"$WORK/rust.$i.json" 2>"$WORK/rust.$i.time"
    sleep 1; C1=$(pg_cpu)
    echo "$C0 $C1" >"$WORK/rust.$i.pgcpu"
    /usr/bin/time -v "$VENV/bin/python" "$HERE/reference.py" --database-url "$SERVER/bench_py_$RUN" "$DUMP" \
        >"$WORK/py.$i.json" 2>"$WORK/py.$i.time"
    sleep 1; C2=$(pg_cpu)
    echo "$C1 $C2" >"$WORK/py.$i.pgcpu"
    /usr/bin/time -v "$BIN" --explain --progress false "$DUMP" >/dev/null 2>"$WORK/explain.$i.time"
done
# Re-ingesting the same dump with the same parameters writes nothing:
"$BIN" --database-url "$SERVER/bench_rust_$RUN" --name bench-1 --progress false "$DUMP" >"$WORK/reingest.txt"
head -1 "$WORK/reingest.txt"

python3 - "$WORK" "$REPEAT" "$UNCOMPRESSED" <<'PY'
import json, re, sys
w, n, raw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def tv(path):
    t = open(path).read()
    g = lambda k: re.search(k + r": (.*)", t).group(1)
    wall = g(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\)").split(":")
    secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
    return secs, float(g(r"User time \(seconds\)")) + float(g(r"System time \(seconds\)")), int(g(r"Maximum resident set size \(kbytes\)")) / 1024
def pg(path):
    a, b = map(float, open(path).read().split())
    return b - a
def best(kind):
    runs = [(tv(f"{w}/{kind}.{i}.time"), i) for i in range(1, n + 1)]
    (wall, cpu, rss), i = min(runs)
    return wall, cpu, max(r[0][2] for r in runs), i, [round(r[0][0], 1) for r in runs]
rw, rc, rm, ri, rall = best("rust"); pw, pc, pm, pi, pall = best("py"); ew, ec, em, _, eall = best("explain")
r, p = json.load(open(f"{w}/rust.{ri}.json")), json.load(open(f"{w}/py.{pi}.json"))
rs, ps_ = pg(f"{w}/rust.{ri}.pgcpu"), pg(f"{w}/py.{pi}.pgcpu")
mb = raw / 1e6
docs = r["counts"]["read"]
print(f"input: {r['input_bytes'] / 1e6:.1f} MB read, {mb:.1f} MB of NDJSON, {docs} lines; walls: rust {rall}, python {pall}, explain {eall}")
print(f"{'':22}{'poet-ingest':>14}{'python ref':>14}{'ratio':>8}")
for name, a, b in [("wall s", rw, pw), ("MB/s (NDJSON)", mb / rw, mb / pw), ("docs/s", docs / rw, docs / pw),
                   ("client cpu s", rc, pc), ("postgres cpu s", rs, ps_), ("peak RSS MB (max)", rm, pm)]:
    print(f"{name:22}{a:>14.1f}{b:>14.1f}{(a / b if b else 0):>8.2f}")
print("kept / duplicates / not poems / malformed:",
      [r["counts"][k] for k in ("kept", "duplicates", "not_poems", "malformed")], "vs",
      [p["counts"][k] for k in ("kept", "duplicates", "not_poems", "malformed")])
t = r["timings"]
print("poet-ingest stages: parse {parse_s:.2f}, html {html_s:.2f}, filter {filter_s:.2f}, key+row {key_s:.2f} (worker thread-s); "
      "copy wait {copy_s:.2f}, finalize {finalize_s:.2f}, total {total_s:.2f} (s)".format(**t))
print(f"poet-ingest without Postgres (--explain): {ew:.1f} s wall, {ec:.1f} cpu s, {mb / ew:.1f} MB/s, peak RSS {em:.0f} MB")
PY
