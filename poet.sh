#!/usr/bin/env bash
# poet's developer entry point. Every command installs what it needs first and is safe to
# run again:
#   ./poet.sh demo     the whole job on embedded defaults (see README.md, "The demo")
#   ./poet.sh test     every test (what CI runs)
#   ./poet.sh soak     the fleet soak: 100 worker SIGKILLs under a mixed sweep (RELIABILITY.md)
#   ./poet.sh setup    only install: Postgres and Chromium (apt, if missing), the torch venv, the build
#   ./poet.sh env      print the exports that put the torch venv and the binaries on PATH
#   ./poet.sh bench-*  benchmarks (see BENCHMARKS.md)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

TORCH_VERSION="2.11.0"
# moto's standalone S3 server, for the S3 artifact tests (coordinator/tests/s3).
MOTO_VERSION="5.2.5"
MOTO_VENV="${POET_MOTO_VENV:-$HOME/.cache/poet/moto-$MOTO_VERSION}"
# Kept outside the clone so that clones and CI runs share it; never required to exist.
VENV="${POET_TORCH_VENV:-$HOME/.cache/poet/torch-$TORCH_VERSION}"
PROFILE_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root to run: $* (install it yourself, or run as root)"
    fi
}

apt_install() {
    command -v apt-get >/dev/null || die "cannot install $* here: no apt-get (install it with your package manager)"
    log "installing $* with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
    if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then
        return
    fi
    apt_install postgresql
    # Debian's package may start a system cluster; poet runs its own private one.
}

# The dashboard's browser tests (coordinator/tests/web) drive headless Chromium over WebDriver.
ensure_chromium() {
    if { command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ -n "${POET_CHROMIUM:-}" ]; } \
        && { command -v chromedriver >/dev/null || [ -n "${POET_CHROMEDRIVER:-}" ]; }; then
        return
    fi
    apt_install chromium chromium-driver
}

ensure_toolchain() {
    command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs)"
    command -v python3 >/dev/null || die "python3 not found: install Python 3 (apt-get install python3)"
    command -v cc >/dev/null || apt_install build-essential
}

ensure_torch() {
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
        return
    fi
    log "installing torch==$TORCH_VERSION into $VENV (a ~4.6 GB download, about 2 minutes)"
    python3 -c "import venv, ensurepip" 2>/dev/null || apt_install python3-venv
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
}

# The S3 tests find the server through POET_MOTO_SERVER; without it they fail and say to run
# this script. Like the torch venv: outside the clone, reused when it is there, never required.
ensure_moto() {
    if ! { [ -x "$MOTO_VENV/bin/moto_server" ] && "$MOTO_VENV/bin/python" -c "import moto, sys; sys.exit(0 if moto.__version__ == '$MOTO_VERSION' else 1)" 2>/dev/null; }; then
        log "installing moto[server]==$MOTO_VERSION into $MOTO_VENV (an S3 server for the storage tests, ~60 MB)"
        python3 -c "import venv, ensurepip" 2>/dev/null || apt_install python3-venv
        rm -rf "$MOTO_VENV"
        python3 -m venv "$MOTO_VENV"
        "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
    fi
    export POET_MOTO_SERVER="$MOTO_VENV/bin/moto_server"
}

torch_env() {
    export LIBTORCH_USE_PYTORCH=1
    export PATH="$VENV/bin:$PATH"
    local lib
    lib="$("$VENV/bin/python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

setup() {
    ensure_toolchain
    ensure_postgres
    ensure_torch
    torch_env
}

build() {
    setup
    log "building poet and poet-worker"
    cargo build --locked -p poet-cli -p poet-worker
    export PATH="$PROFILE_DIR:$PATH"
}

cmd_test() {
    setup
    ensure_chromium
    ensure_moto
    log "building and running every test (the fault and end-to-end tests run the real poet and poet-worker binaries)"
    # One cargo invocation for the whole workspace, so dependencies are built once with one
    # feature set. The tests start their own private Postgres under $TMPDIR/poet-test-postgres.
    # No incremental caches here: a cold run is one build, and they would double the target
    # dir's size on disk. A developer's own `cargo test` keeps them.
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
    report_disk
    local rc=0
    # Formatting first: it builds nothing and fails in a second. A failure here or in the
    # tests does not stop the other checks, so one CI run reports everything.
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        command -v rustup >/dev/null || die "cargo fmt and cargo clippy are missing: install rustfmt and clippy"
        log "installing rustfmt and clippy"
        rustup component add rustfmt clippy
    fi
    log "checking formatting (cargo fmt --all --check)"
    cargo fmt --all --check || rc=$?
    # The coordinator's S3 backend is built and tested here (against moto); clippy below uses
    # the same features so it reuses this build.
    local features=(--features poet-coordinator/s3)
    cargo test --locked --workspace "${features[@]}" --no-fail-fast -- --test-threads=4 || rc=$?
    stop_test_postgres
    # Same packages and targets as the tests (so the same features): build scripts and proc
    # macros are reused; clippy's own check build adds metadata only.
    log "linting (cargo clippy --workspace --all-targets -D warnings)"
    cargo clippy --locked --workspace --all-targets "${features[@]}" -- -D warnings || rc=$?
    return $rc
}

# A cold test build needs about NEED_GB of disk under the target dir; say so up front
# rather than failing at a link step with "No space left on device".
report_disk() {
    local need_gb=4 target="${CARGO_TARGET_DIR:-$ROOT/target}" avail_kb
    mkdir -p "$target"
    avail_kb=$(df -Pk "$target" | awk 'NR==2 {print $4}')
    log "disk: $((avail_kb / 1024 / 1024)) GB free under $target (a cold test build uses about 2 GB; $need_gb GB is asked for)"
    [ "$avail_kb" -ge $((need_gb * 1024 * 1024)) ] || log "warning: less than $need_gb GB free; the build may fail with 'No space left on device'"
}

stop_test_postgres() {
    local data="${TMPDIR:-/tmp}/poet-test-postgres/data"
    [ -f "$data/postmaster.pid" ] || return 0
    local pgctl
    pgctl="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)/pg_ctl"
    [ -x "$pgctl" ] || pgctl="$(command -v pg_ctl || true)"
    [ -n "$pgctl" ] || return 0
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$pgctl" stop -D "$data" -m fast >/dev/null 2>&1 || true
    else "$pgctl" stop -D "$data" -m fast >/dev/null 2>&1 || true; fi
}

# The fleet soak (issue 20) at full size; CI runs it with 8 kills inside `./poet.sh test`.
# POET_SOAK_KILLS and POET_SOAK_EVERY_S override the size. Same features as cmd_test, so
# the two share one build.
cmd_soak() {
    setup
    local features=(--features poet-coordinator/s3)
    log "building poet and poet-worker, then the soak (${POET_SOAK_KILLS:-100} worker SIGKILLs; a few minutes)"
    cargo build --locked --workspace "${features[@]}" --bins
    POET_SOAK_KILLS="${POET_SOAK_KILLS:-100}" \
        cargo test --locked --workspace "${features[@]}" --test soak -- --nocapture
}

cmd_demo() {
    build
    exec "$ROOT/scripts/demo.sh"
}

case "${1:-help}" in
    setup) setup ;;
    build) build ;;
    test) cmd_test ;;
    soak) cmd_soak ;;
    demo) cmd_demo ;;
    env)
        setup >/dev/null
        echo "export LIBTORCH_USE_PYTORCH=1"
        echo "export PATH=\"$PROFILE_DIR:$VENV/bin:\$PATH\""
        echo "export LD_LIBRARY_PATH=\"$LD_LIBRARY_PATH\""
        ;;
    bench-*)
        setup
        script="bench/${1#bench-}.sh"
        [ -x "$script" ] || script="bench/${1#bench-}/run.sh"
        [ -x "$script" ] || die "no benchmark '$1' (see BENCHMARKS.md)"
        shift
        exec "$script" "$@"
        ;;
    *)
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
        ;;
esac
