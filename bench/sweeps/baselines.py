#!/usr/bin/env python3
"""Replays Optuna's and Syne Tune's schedulers on the recorded curves (curves.json) and prints
one JSON line per tool/method/search/seed (the trace format of bench/sweeps/README.md):

    {"tool": "optuna", "method": "asha", "search": "tpe", "seed": 3,
     "points": [[epochs_spent, best_val_so_far], ...], "epochs": total, "best": final_best, ...}

A trial picks one of the fixture's configs (the search space is the fixture's axes, each a
categorical choice) and reports the recorded validation loss epoch by epoch; a pruned or
stopped trial trains no further epochs. `epochs` counts every epoch any trial trained;
`best` is the lowest validation loss reported by any trial at any epoch.

Simulated workers (`--workers`, 4 by default) run trials side by side; an epoch takes the
seconds it took when it was recorded, so trials report in the order a real cluster would see.

Common settings, the same for poet's replay: rungs at 1, 3, 9 epochs (min 1, eta 3) up to
the fixture's epochs; median stopping from epoch 2 once 5 trials (Optuna: completed trials;
Syne Tune: results at that epoch) are known; a budget of the full grid's epochs.

Both tools would train a config they already tried again (neither dedupes a finite space:
Optuna's samplers and Syne Tune's searchers draw with replacement). poet never proposes a
config that exists, so, to compare like with like and in the baselines' favour, this harness
rejects a repeated proposal before it trains anything: Optuna's trial is told FAIL (which
samplers and pruners ignore) and Syne Tune's searcher is asked again. After 20 rejections in
a row (a model-based searcher that has settled on the configs it already tried) the next
trial takes an untried config drawn at random from the harness's own generator (Optuna:
`enqueue_trial`). Each trace counts both (`rejected`, `fallbacks`).
"""

import argparse
import contextlib
import heapq
import json
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture import Fixture  # noqa: E402

ETA = 3
MIN_EPOCHS = 1
MAX_REJECTS = 20


class Trace:
    """Epochs spent and best validation loss so far, in the order epochs finish."""

    def __init__(self, budget):
        self.budget = budget
        self.epochs = 0
        self.best = float("inf")
        self.points = []

    def epoch(self, value):
        self.epochs += 1
        if value < self.best:
            self.best = value
            self.points.append([self.epochs, value])

    @property
    def spent(self):
        return self.epochs >= self.budget

    def line(self, **fields):
        if self.points and self.points[-1][0] != self.epochs:
            self.points.append([self.epochs, self.best])
        return {**fields, "points": self.points, "epochs": self.epochs,
                "best": self.best}


# --------------------------------------------------------------------------------------------
# Optuna: ask/tell with a discrete-event simulation of the workers.

def optuna_replay(fx, method, search, seed, workers, budget):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    samplers = {
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
    }
    pruners = {
        "none": lambda: optuna.pruners.NopPruner(),
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        "asha": lambda: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=MIN_EPOCHS, reduction_factor=ETA),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=MIN_EPOCHS, max_resource=fx.epochs, reduction_factor=ETA),
    }
    # A fixed name: HyperbandPruner picks each trial's bracket from a hash of it.
    study = optuna.create_study(direction="minimize", sampler=samplers[search](),
                                pruner=pruners[method](),
                                study_name=f"replay-{method}-{search}-{seed}")
    dists = {n: optuna.distributions.CategoricalDistribution(v) for n, v in fx.axes.items()}
    trace = Trace(budget)
    tried = set()
    counts = {"trials": 0, "rejected": 0, "fallbacks": 0, "pruned": 0}
    events = []  # (time, seq, trial, key, epoch)
    seq = 0

    fallback = random.Random(seed)

    def start(now):
        nonlocal seq
        untried = [k for k in fx.runs if k not in tried]
        if not untried:
            return
        for attempt in range(MAX_REJECTS + 1):
            if attempt == MAX_REJECTS:
                study.enqueue_trial(fx.config(fallback.choice(untried)))
                counts["fallbacks"] += 1
            trial = study.ask(dists)
            key = fx.key(trial.params)
            if key not in tried:
                break
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            counts["rejected"] += 1
        tried.add(key)
        counts["trials"] += 1
        heapq.heappush(events, (now + fx.seconds(key)[0], seq, trial, key, 1))
        seq += 1

    for _ in range(workers):
        start(0.0)
    while events and not trace.spent:
        now, _, trial, key, epoch = heapq.heappop(events)
        value = fx.val(key)[epoch - 1]
        trace.epoch(value)
        trial.report(value, epoch)
        if epoch == fx.epochs:
            study.tell(trial, min(fx.val(key)))
        elif trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            counts["pruned"] += 1
        else:
            heapq.heappush(events, (now + fx.seconds(key)[epoch], seq, trial, key, epoch + 1))
            seq += 1
            continue
        if not trace.spent:
            start(now)
    return trace.line(tool="optuna", method=method, search=search, seed=seed,
                      workers=workers, **counts)


# --------------------------------------------------------------------------------------------
# Syne Tune: its simulator backend over the fixture as a tabulated blackbox.

def syne_blackbox(fx):
    import pandas as pd
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.config_space import choice, randint

    keys = list(fx.runs)
    hps = pd.DataFrame([list(k) for k in keys], columns=fx.names)
    evals = np.zeros((len(keys), 1, fx.epochs, 2))
    for i, k in enumerate(keys):
        evals[i, 0, :, 0] = fx.val(k)
        evals[i, 0, :, 1] = np.cumsum(fx.seconds(k))
    return BlackboxTabular(
        hyperparameters=hps,
        configuration_space={n: choice(v) for n, v in fx.axes.items()},
        fidelity_space={"epoch": randint(1, fx.epochs)},
        objectives_evaluations=evals,
        fidelity_values=np.arange(1, fx.epochs + 1),
        objectives_names=["val_loss", "elapsed_time"],
    )


# What each method/search pair is called in Syne Tune ("tpe" is its KDE searcher, the one
# BOHB uses).
SYNE_NAMES = {
    ("none", "random"): "RandomSearch",
    ("none", "tpe"): "TPE",
    ("median", "random"): "MedianStoppingRule(RandomSearch)",
    ("median", "tpe"): "MedianStoppingRule(TPE)",
    ("asha", "random"): "ASHA",
    ("asha", "tpe"): "BOHB",
    ("hyperband", "random"): "ASHA(brackets=3)",
    ("hyperband", "tpe"): "BOHB(brackets=3)",
}


def syne_replay(fx, method, search, seed, workers, budget, scratch):
    import os

    os.environ.setdefault("SYNETUNE_FOLDER", str(scratch))
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.optimizer.baselines import ASHA, BOHB, RandomSearch, TPE
    from syne_tune.optimizer.schedulers.median_stopping_rule import MedianStoppingRule

    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    # ASHA's bracket draw and the simulator's tie-breaks use numpy's global generator.
    np.random.seed(seed)
    random.seed(seed)
    blackbox = syne_blackbox(fx)
    space = dict(blackbox.configuration_space)
    common = dict(config_space=space, metric="val_loss", random_seed=seed)
    # The KDE searcher (Syne Tune's TPE, and BOHB's) fits only when its "good" set (the top
    # 15 %, at least num_min_data_points) and the rest each hold more points than there are
    # hyperparameters; its default minimum (the number of hyperparameters, 3) needs 27
    # observations, which on a 27-config grid means it never leaves random sampling. 4 lets
    # it fit from 8 observations on.
    kde = dict(num_min_data_points=len(space) + 1)
    hb = dict(time_attr="epoch", max_t=fx.epochs, grace_period=MIN_EPOCHS, reduction_factor=ETA)
    # Hyperband: as many brackets as rung levels (1, 3, 9 for 20 epochs), as Syne Tune's
    # promotion-free Hyperband (ASHA with brackets > 1) is meant to be used.
    levels = 1
    while MIN_EPOCHS * ETA ** levels < fx.epochs:
        levels += 1
    if method == "none":
        sched = RandomSearch(config_space=space, metrics=["val_loss"], random_seed=seed) \
            if search == "random" else TPE(**common, **kde)
    elif method == "median":
        inner = RandomSearch(config_space=space, metrics=["val_loss"], random_seed=seed) \
            if search == "random" else TPE(**common, **kde)
        sched = MedianStoppingRule(inner, time_attr="epoch", metric="val_loss",
                                   grace_time=1, grace_population=5, random_seed=seed)
    elif method in ("asha", "hyperband"):
        brackets = 1 if method == "asha" else levels
        if search == "random":
            sched = ASHA(**common, **hb, brackets=brackets)
        else:
            sched = BOHB(**common, **hb, **kde, brackets=brackets)
    else:
        raise ValueError(method)

    from syne_tune.optimizer.scheduler import TrialSuggestion

    tried = set()
    counts = {"trials": 0, "rejected": 0, "fallbacks": 0}
    suggest = sched.suggest
    fallback = random.Random(seed)

    def dedup_suggest():
        untried = [k for k in fx.runs if k not in tried]
        if not untried:
            return None
        for _ in range(MAX_REJECTS):
            s = suggest()
            if s is None:
                return None
            key = fx.key(s.config)
            if key not in tried:
                break
            counts["rejected"] += 1
        else:
            key = fallback.choice(untried)
            s = TrialSuggestion.start_suggestion(fx.config(key))
            counts["fallbacks"] += 1
        tried.add(key)
        counts["trials"] += 1
        return s

    sched.suggest = dedup_suggest
    backend = UserBlackboxBackend(blackbox=blackbox, elapsed_time_attr="elapsed_time")
    callback = SimulatorCallback()
    tuner = Tuner(
        trial_backend=backend, scheduler=sched,
        stop_criterion=StoppingCriterion(max_num_evaluations=budget),
        n_workers=workers, sleep_time=0, callbacks=[callback],
        results_update_interval=1e9, print_update_interval=1e9,
        save_tuner=False, tuner_name=f"poet-replay-{method}-{search}-{seed}",
    )
    with contextlib.redirect_stdout(sys.stderr):  # its progress tables; stdout is the trace
        tuner.run()
    df = callback.dataframe().sort_values(["st_tuner_time", "trial_id", "epoch"], kind="stable")
    trace = Trace(budget)
    for value in df["val_loss"]:
        if trace.spent:
            break
        trace.epoch(float(value))
    return trace.line(tool="syne-tune", method=method, search=search, seed=seed,
                      workers=workers, scheduler=SYNE_NAMES[method, search], **counts)


def main():
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixture", type=Path, default=here / "curves.json")
    ap.add_argument("--seeds", type=int, default=10, help="seeds per tool/method/search")
    ap.add_argument("--first-seed", type=int, default=0,
                    help="replay seeds first-seed .. first-seed + seeds - 1 (run.sh splits "
                         "the seeds over parallel jobs)")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--tools", default="optuna,syne-tune")
    ap.add_argument("--methods", default="none,median,asha,hyperband")
    ap.add_argument("--searches", default="random,tpe")
    ap.add_argument("--scratch", type=Path, default=here / "out" / "syne-tune")
    args = ap.parse_args()

    fx = Fixture(args.fixture)
    budget = fx.grid_epochs
    for tool in args.tools.split(","):
        for method in args.methods.split(","):
            for search in args.searches.split(","):
                if tool == "syne-tune" and (method, search) == ("median", "tpe"):
                    # MedianStoppingRule never passes a finished trial on to the scheduler it
                    # wraps (no on_trial_complete), so its TPE never sees a result: random.
                    continue
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    t0 = time.monotonic()
                    if tool == "optuna":
                        line = optuna_replay(fx, method, search, seed, args.workers, budget)
                    elif tool == "syne-tune":
                        line = syne_replay(fx, method, search, seed, args.workers, budget,
                                           args.scratch)
                    else:
                        raise SystemExit(f"unknown tool {tool}")
                    line["replay_s"] = round(time.monotonic() - t0, 2)
                    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
