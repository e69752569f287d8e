#!/usr/bin/env python3
"""Reads the replay traces (JSON lines from baselines.py and poet's `replay` example), prints
each tool/method/search's best validation loss at fractions of the full grid's epochs (mean
over seeds), its regret against the grid's best, and the epochs it needs to come within 1 %
of it; checks issue 15's two targets (the second with a Welch test: poet is worse than a
rival at a budget only beyond NOISE_SE standard errors of the difference); draws best-so-far
against epochs spent.

    report.py --fixture curves.json traces/*.jsonl [--png replay.png]
"""

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture import Fixture  # noqa: E402

TABLE_BUDGETS = (0.10, 0.25, 0.50, 1.00)
# Budgets at which "poet is no worse than the baselines" is checked: every 5 % of the grid.
CHECK_BUDGETS = tuple(i / 20 for i in range(1, 21))
WITHIN = 0.01
TARGET_BUDGET = 0.25
TOOL_ORDER = {"poet": 0, "optuna": 1, "syne-tune": 2}
METHOD_ORDER = {"none": 0, "median": 1, "patience": 2, "asha": 3, "hyperband": 4}
SEARCH_ORDER = {"grid": 0, "random": 1, "tpe": 2}
# Which baseline search a poet search is compared with ("grid" order is fixed, the nearest
# baseline is a random order without repeats).
EQUIVALENT_SEARCH = {"grid": "random", "random": "random", "tpe": "tpe"}
# poet is "worse" at a budget only when its mean best exceeds a rival's by more than this many
# standard errors of the difference (Welch: each side's own variance and number of seeds).
# Every tool's trace at a budget is a mean over seeded orderings of 27 configs, so two equal
# schedulers differ by seed noise alone: 20 seeds of random order against random order
# differed by up to 0.7 %. One-sided, 2 SE passes an equal scheduler 97.7 % of the time at
# one budget (less over 20 correlated budgets); a real deficit grows with the seeds, the
# threshold shrinks with them.
NOISE_SE = 2.0


def best_at(points, budget):
    """Best value found with at most `budget` epochs spent (inf before the first epoch)."""
    best = math.inf
    for epochs, value in points:
        if epochs > budget:
            break
        best = value
    return best


def regret(value, best):
    """How far above the grid's best, in % (never shown as -0.0 for float noise)."""
    return max(0.0, 100 * (value - best) / best)


def epochs_to(points, target):
    """Epochs spent when the best first came within `target`, or None."""
    for epochs, value in points:
        if value <= target:
            return epochs
    return None


def load(paths):
    groups = defaultdict(list)
    for path in paths:
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                t = json.loads(line)
                t["points"] = sorted((int(e), float(v)) for e, v in t["points"])
                groups[(t["tool"], t["method"], t["search"])].append(t)
            except (ValueError, KeyError) as e:
                raise SystemExit(f"{path}:{n}: not a trace line ({e})")
    return groups


def sort_key(group):
    tool, method, search = group
    return (TOOL_ORDER.get(tool, 9), METHOD_ORDER.get(method, 9), SEARCH_ORDER.get(search, 9),
            group)


def mean_best(traces, budget):
    values = [best_at(t["points"], budget) for t in traces]
    return statistics.fmean(values) if all(math.isfinite(v) for v in values) else math.inf


def mean_curve(traces, xs):
    """mean_best at every budget of the ascending `xs`, one pass over each trace's points."""
    sums = [0.0] * len(xs)
    for t in traces:
        points, i, best = t["points"], 0, math.inf
        for j, x in enumerate(xs):
            while i < len(points) and points[i][0] <= x:
                best = points[i][1]
                i += 1
            sums[j] += best
    return [v / len(traces) for v in sums]


def best_values(traces, budget):
    """Each seed's best value found with at most `budget` epochs spent."""
    return [best_at(t["points"], budget) for t in traces]


def welch(ours, theirs):
    """Difference of the means (ours - theirs) and its standard error, Welch's: each side's
    own sample variance over its own size. Infinite values (no epoch yet) compare as such."""
    if not all(map(math.isfinite, ours + theirs)):
        inf_o, inf_t = not all(map(math.isfinite, ours)), not all(map(math.isfinite, theirs))
        return (math.inf if inf_o and not inf_t else 0.0), 0.0
    d = statistics.fmean(ours) - statistics.fmean(theirs)
    var = sum(statistics.variance(x) / len(x) for x in (ours, theirs) if len(x) > 1)
    return d, math.sqrt(var)


def table(fx, groups):
    grid, best = fx.grid_epochs, fx.grid_best
    target = best * (1 + WITHIN)
    head = ["tool", "method", "search", "seeds", "epochs"]
    head += [f"best@{int(f * 100)}% ({round(f * grid)})" for f in TABLE_BUDGETS]
    head += ["to 1% (seeds)"]
    rows = [head]
    for g in sorted(groups, key=sort_key):
        traces = groups[g]
        row = [*g, str(len(traces)), f"{statistics.fmean(t['epochs'] for t in traces):.0f}"]
        for f in TABLE_BUDGETS:
            m = mean_best(traces, f * grid)
            row.append("-" if not math.isfinite(m) else f"{m:.4f} {regret(m, best):+.1f}%")
        reached = [e for e in (epochs_to(t["points"], target) for t in traces) if e is not None]
        row.append(f"{statistics.median(reached):.0f} ({len(reached)}/{len(traces)})"
                   if reached else f"never (0/{len(traces)})")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = []
    for i, r in enumerate(rows):
        out.append("  ".join(c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def targets(fx, groups):
    """Issue 15's two targets, each line starting PASS, FAIL or OPEN (no poet traces)."""
    grid, best = fx.grid_epochs, fx.grid_best
    lines = []
    poet = {g: t for g, t in groups.items() if g[0] == "poet"}
    asha = {g: t for g, t in poet.items() if g[1] == "asha"}
    if not asha:
        lines.append(f"OPEN  poet's ASHA within {WITHIN:.0%} of the grid's best with <= "
                     f"{TARGET_BUDGET:.0%} of the grid's epochs: no poet traces (the replay "
                     "example is not built yet)")
    for g in sorted(asha, key=sort_key):
        traces = asha[g]
        m = mean_best(traces, TARGET_BUDGET * grid)
        ok_seeds = sum(best_at(t["points"], TARGET_BUDGET * grid) <= best * (1 + WITHIN)
                       for t in traces)
        verdict = "PASS" if m <= best * (1 + WITHIN) else "FAIL"
        lines.append(
            f"{verdict}  poet asha/{g[2]}: mean best at {TARGET_BUDGET:.0%} of the grid "
            f"({round(TARGET_BUDGET * grid)} epochs) {m:.4f}, {regret(m, best):+.2f}% "
            f"from the grid's best {best:.4f} (target <= +{WITHIN:.0%}); {ok_seeds}/{len(traces)} seeds within")
    if not poet:
        lines.append("OPEN  poet no worse than the best of Optuna's and Syne Tune's equivalents "
                     "at every budget: no poet traces")
    for g in sorted(poet, key=sort_key):
        _, method, search = g
        rivals = {r: t for r, t in groups.items() if r[0] != "poet" and r[1] == method
                  and r[2] == EQUIVALENT_SEARCH.get(search, search)}
        if not rivals:
            lines.append(f"-     poet {method}/{search}: no Optuna or Syne Tune equivalent")
            continue
        worse, raw = [], []
        for f in CHECK_BUDGETS:
            ours = best_values(poet[g], f * grid)
            for r in sorted(rivals, key=sort_key):
                d, se = welch(ours, best_values(rivals[r], f * grid))
                # The fixture's losses have 4 decimals; anything closer is a tie.
                if d <= 1e-9:
                    continue
                theirs = statistics.fmean(best_values(rivals[r], f * grid))
                w = (f, d + theirs, theirs, d / se if se > 0 else math.inf, r[0])
                raw.append(w)
                if w[3] > NOISE_SE:
                    worse.append(w)
        names = " / ".join(f"{r[0]}" for r in sorted(rivals, key=sort_key))
        what = f"poet {method}/{search} vs {names} {method}/{EQUIVALENT_SEARCH[search]}"
        raw_budgets = sorted({w[0] for w in raw})
        if raw:
            f, ours, theirs, z, tool = max(raw, key=lambda w: (w[1] - w[2]) / w[2])
            largest = (f"worse in the mean at {len(raw_budgets)} of {len(CHECK_BUDGETS)} budgets, "
                       f"most at {int(f * 100)}%: {ours:.4f} vs {tool}'s {theirs:.4f} "
                       f"(+{100 * (ours - theirs) / theirs:.2f}%, {z:.1f} SE)")
        else:
            largest = "no worse in the mean at any budget"
        if not worse:
            lines.append(f"PASS  {what}: not worse by more than {NOISE_SE:g} SE at any of the "
                         f"{len(CHECK_BUDGETS)} budgets (every 5% of the grid); raw: {largest}")
        else:
            f, ours, theirs, z, tool = max(worse, key=lambda w: w[3])
            at = ", ".join(f"{int(b * 100)}" for b in sorted({w[0] for w in worse}))
            lines.append(f"FAIL  {what}: worse by more than {NOISE_SE:g} SE at "
                         f"{len({w[0] for w in worse})} of {len(CHECK_BUDGETS)} budgets ({at} %); "
                         f"most significant at {int(f * 100)}%: {ours:.4f} vs {tool}'s {theirs:.4f} "
                         f"(+{100 * (ours - theirs) / theirs:.2f}%, {z:.1f} SE); raw: {largest}")
    return "\n".join(lines)


def plot(fx, groups, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid, best = fx.grid_epochs, fx.grid_best
    searches = sorted({g[2] for g in groups}, key=lambda s: SEARCH_ORDER.get(s, 9))
    panels = [("random order / random search", {"grid", "random"}),
              ("model-based search (TPE; Syne Tune: KDE, BOHB)", {"tpe"})]
    panels = [p for p in panels if p[1] & set(searches)]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), sharey=True,
                             squeeze=False)
    colors = {"none": "tab:gray", "median": "tab:blue", "patience": "tab:purple",
              "asha": "tab:red", "hyperband": "tab:green"}
    styles = {"poet": "-", "optuna": "--", "syne-tune": ":"}
    xs = list(range(1, grid + 1))
    top = best
    for ax, (title, wanted) in zip(axes[0], panels):
        for g in sorted(groups, key=sort_key):
            tool, method, search = g
            if search not in wanted:
                continue
            ys = mean_curve(groups[g], xs)
            pts = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
            if not pts:
                continue
            top = max(top, pts[min(len(pts) - 1, grid // 20)][1])
            ax.plot(*zip(*pts), styles.get(tool, "-."), color=colors.get(method, "black"),
                    lw=2.2 if tool == "poet" else 1.4, label=f"{tool} {method}/{search}")
        ax.axhline(best, color="black", lw=0.8)
        ax.axhspan(best, best * (1 + WITHIN), color="gold", alpha=0.25, lw=0,
                   label=f"within {WITHIN:.0%} of the grid's best")
        ax.axvline(TARGET_BUDGET * grid, color="black", lw=0.6, ls="--")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"epochs spent (full grid = {grid})")
        ax.set_xlim(0, grid)
        ax.legend(fontsize=6.5, ncol=2)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("best validation loss found (mean over seeds)")
    axes[0][0].set_ylim(best - 0.01 * best, top)
    fig.suptitle(f"replay of {len(fx.runs)} configs x {fx.epochs} epochs on {fx.data.get('corpus')}",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixture", type=Path, default=here / "curves.json")
    ap.add_argument("--png", type=Path, default=here / "replay.png")
    ap.add_argument("traces", nargs="+", type=Path)
    args = ap.parse_args()

    fx = Fixture(args.fixture)
    groups = load(args.traces)
    best_cfg = fx.grid_best_config()
    print(f"fixture {args.fixture.name}: {len(fx.runs)} configs x {fx.epochs} epochs = "
          f"{fx.grid_epochs} epochs; grid best val {fx.grid_best:.4f} "
          f"({', '.join(f'{k}={v}' for k, v in best_cfg.items())}); within {WITHIN:.0%}: "
          f"<= {fx.grid_best * (1 + WITHIN):.4f}")
    print("best@X%: mean over seeds of the best validation loss found with X% of the grid's "
          "epochs, and its regret vs the grid's best;\nto 1%: median epochs spent until the "
          "best came within 1% (seeds that got there)\n")
    print(table(fx, groups))
    print()
    print(f"Target 2 compares poet with each rival at every 5% of the grid: poet is worse only where "
          f"its mean best exceeds the rival's by more than {NOISE_SE:g} standard errors of the "
          "difference\n(Welch: each side's variance over its own seeds), since each mean is over "
          "seeded orderings and two equal schedulers differ by seed noise; the raw difference is "
          "printed too.\nWith 20 budgets and a one-sided 2 SE test, an equal scheduler still fails "
          "now and then: a FAIL that stays with more seeds (SEEDS, POET_SEEDS) is a real deficit.\n")
    print(targets(fx, groups))
    if args.png:
        plot(fx, groups, args.png)
        print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
