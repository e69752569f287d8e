#!/usr/bin/env python3
"""Records the replay benchmark's fixture: trains every config of grid.toml with poet-worker's
real trainer (`poet-worker train`, one process per config) and keeps each epoch's train loss,
validation loss and seconds in one JSON file, the curves every scheduler is replayed on.

Resumable: each finished run is appended to `<out>.partial.jsonl` as soon as it ends, and a
rerun trains only the configs missing there (the key is the full config, the corpus's and the
worker binary's sha256, so a changed grid, corpus or worker records again). The fixture is
written once every config has its curve.

Standard library only (runs with the system python3).
"""

import argparse
import concurrent.futures
import datetime
import hashlib
import itertools
import json
import os
import platform
import re
import subprocess
import tempfile
import threading
import time
import tomllib
from pathlib import Path

EPOCH_LINE = re.compile(
    r"^epoch (\d+) train_loss (\S+) val_loss (\S+) duration_s (\S+) chars_per_sec (\S+)$"
)


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def configs(grid):
    """Every combination of the axes, in the axes' order (first axis slowest)."""
    names = list(grid["axes"])
    for values in itertools.product(*(grid["axes"][n] for n in names)):
        yield dict(zip(names, values))


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown cpu"


def train_one(worker, corpus, full, threads, nice):
    """Trains one config; returns its curves. Raises on a failed or short run."""
    with tempfile.TemporaryDirectory(prefix="poet-sweep-record-") as tmp:
        cfg_path = Path(tmp, "config.toml")
        cfg_path.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in full.items()))
        cmd = [
            worker, "--device", "cpu", "--threads", str(threads),
            "train", "--corpus", str(corpus), "--config", str(cfg_path),
            "--out", str(Path(tmp, "ckpt")),
        ]
        if nice:
            cmd = ["nice", "-n", str(nice)] + cmd
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    run = {"train_loss": [], "val_loss": [], "seconds": [], "chars_per_sec": []}
    for line in proc.stdout.splitlines():
        m = EPOCH_LINE.match(line.strip())
        if not m:
            continue
        epoch = int(m.group(1))
        if epoch != len(run["val_loss"]) + 1:
            raise RuntimeError(f"epoch {epoch} out of order in: {proc.stdout}")
        run["train_loss"].append(float(m.group(2)))
        run["val_loss"].append(float(m.group(3)))
        run["seconds"].append(float(m.group(4)))
        run["chars_per_sec"].append(float(m.group(5)))
    if len(run["val_loss"]) != full["epochs"]:
        raise RuntimeError(f"expected {full['epochs']} epochs, got: {proc.stdout}")
    header = next((l for l in proc.stderr.splitlines() if l.startswith("training ")), "")
    return run, wall, header


def dump(fixture):
    """JSON with one line per key and one line per run, so diffs of a re-recording read well."""
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in fixture.items() if k != "runs"]
    runs = ",\n".join(f"    {json.dumps(r)}" for r in fixture["runs"])
    return "{\n" + ",\n".join(lines) + ',\n  "runs": [\n' + runs + "\n  ]\n}\n"


def main():
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", type=Path, default=here / "grid.toml")
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--worker", required=True, help="the poet-worker binary")
    ap.add_argument("--out", type=Path, default=here / "curves.json")
    ap.add_argument("--epochs", type=int, help="override base.epochs (smoke tests)")
    ap.add_argument("--max-batches", type=int, help="override base.max_batches (smoke tests)")
    ap.add_argument("--limit", type=int, help="record only the first N configs (smoke tests)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="configs trained at once")
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--worker-commit", default="", help="git commit the worker was built from")
    args = ap.parse_args()

    grid = tomllib.loads(args.grid.read_text())
    base = dict(grid["base"])
    if args.epochs is not None:
        base["epochs"] = args.epochs
    if args.max_batches is not None:
        base["max_batches"] = args.max_batches
    todo = list(configs(grid))
    if args.limit is not None:
        todo = todo[: args.limit]

    partial = args.out.with_name(args.out.name + ".partial.jsonl")
    done = {}
    if partial.exists():
        for line in partial.read_text().splitlines():
            r = json.loads(line)
            done[json.dumps(r["full"], sort_keys=True)] = r
    corpus_bytes = args.corpus.read_bytes()
    sha = hashlib.sha256(corpus_bytes).hexdigest()
    worker_sha = hashlib.sha256(Path(args.worker).read_bytes()).hexdigest()
    started = time.monotonic()
    lock = threading.Lock()

    def record(i, axes):
        full = {**base, **axes}
        key = json.dumps(full, sort_keys=True)
        run, wall, header = train_one(args.worker, args.corpus, full, args.threads, args.nice)
        rec = {"full": full, "config": axes, "corpus_sha256": sha, "worker_sha256": worker_sha,
               "wall_s": round(wall, 1),
               "trainer": header, **run}
        with lock:
            with partial.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            done[key] = rec
            print(f"[{i}/{len(todo)}] {axes}: val {run['val_loss'][0]:.4f} -> "
                  f"{min(run['val_loss']):.4f} (best), {wall:.0f} s ({header})", flush=True)

    # A run is reused only if the same corpus and the same worker binary recorded it (a
    # rebuilt worker, say with another validation measure, records everything again).
    def reusable(axes):
        rec = done.get(json.dumps({**base, **axes}, sort_keys=True), {})
        return rec.get("corpus_sha256") == sha and rec.get("worker_sha256") == worker_sha

    missing = [(i, axes) for i, axes in enumerate(todo, 1) if not reusable(axes)]
    # --jobs > 1 trains configs side by side (each still on --threads threads); their
    # `seconds` then include the contention, which only shifts the replay's event order.
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for f in [pool.submit(record, i, axes) for i, axes in missing]:
            f.result()

    runs = [done[json.dumps({**base, **axes}, sort_keys=True)] for axes in todo]
    total_wall = sum(r["wall_s"] for r in runs)
    # Named without this machine's paths: the corpus by file name, the worker by its commit.
    cmd = f"bench/sweeps/run.sh record (corpus {args.corpus.name}, --jobs {args.jobs})"
    fixture = {
        "corpus": args.corpus.name,
        "corpus_sha256": sha,
        "recorded": (
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {cpu_model()}, "
            f"{os.cpu_count()} cores shared, {args.jobs} job(s) of {args.threads} torch thread(s), "
            f"nice {args.nice}; "
            f"{total_wall / 60:.1f} min of training (wall clock summed over the {len(runs)} runs); "
            f"poet-worker {args.worker_commit or '(commit unknown)'}; {cmd}"
        ),
        "epoch": (
            f"one pass over the training text ({runs[0]['trainer']})"
            if not base.get("max_batches")
            else f"{base['max_batches']} batches of {base['batch_size']} x {base['seq_len']} chars"
        ),
        "axes": {n: grid["axes"][n] for n in grid["axes"]},
        "base": base,
        "runs": [
            {"config": r["config"], "val_loss": r["val_loss"], "train_loss": r["train_loss"],
             "seconds": r["seconds"], "wall_s": r["wall_s"]}
            for r in runs
        ],
    }
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(dump(fixture))
    tmp.replace(args.out)
    best = min(runs, key=lambda r: min(r["val_loss"]))
    print(f"wrote {args.out}: {len(runs)} runs x {base['epochs']} epochs, "
          f"{total_wall / 60:.1f} min of training (this session: {(time.monotonic() - started) / 60:.1f} min); "
          f"best val {min(best['val_loss']):.4f} at {best['config']}")


if __name__ == "__main__":
    main()
