"""The replay fixture (curves.json) as the baselines and the report read it: the grid's axes,
each config's recorded curves, and the figures every trace is measured against."""

import json
from pathlib import Path


class Fixture:
    """Recorded learning curves of every config of a grid."""

    def __init__(self, path):
        data = json.loads(Path(path).read_text())
        self.path = Path(path)
        self.data = data
        # Axis order is the key order of every config tuple below.
        self.axes = {name: list(values) for name, values in data["axes"].items()}
        self.names = list(self.axes)
        self.runs = {}
        for run in data["runs"]:
            key = self.key(run["config"])
            if key in self.runs:
                raise ValueError(f"{path}: config {run['config']} recorded twice")
            self.runs[key] = run
        lengths = {len(r["val_loss"]) for r in self.runs.values()}
        if len(lengths) != 1:
            raise ValueError(f"{path}: runs have different epoch counts {sorted(lengths)}")
        self.epochs = lengths.pop()
        expected = 1
        for values in self.axes.values():
            expected *= len(values)
        if len(self.runs) != expected:
            raise ValueError(f"{path}: {len(self.runs)} runs for a grid of {expected}")

    def key(self, config):
        """The config as a tuple in axis order (values as the fixture spells them)."""
        return tuple(self.canonical(n, config[n]) for n in self.names)

    def canonical(self, name, value):
        """The axis value equal to `value` (tools may hand back numpy or float-parsed values)."""
        for v in self.axes[name]:
            if v == value or (isinstance(v, float) and abs(v - float(value)) <= 1e-12 * abs(v)):
                return v
        raise KeyError(f"{name}={value!r} is not on the axis {self.axes[name]}")

    def config(self, key):
        return dict(zip(self.names, key))

    def val(self, key):
        return self.runs[key]["val_loss"]

    def seconds(self, key):
        return self.runs[key]["seconds"]

    @property
    def grid_epochs(self):
        """Epochs the full grid trains: every config to its last epoch."""
        return len(self.runs) * self.epochs

    @property
    def grid_best(self):
        """The best validation loss any config reaches at any epoch."""
        return min(min(r["val_loss"]) for r in self.runs.values())

    def grid_best_config(self):
        return min(self.runs.values(), key=lambda r: min(r["val_loss"]))["config"]
