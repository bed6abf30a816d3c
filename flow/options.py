"""The options of a training run, declared once: `python -m flow.train`'s flags, the app's job layer
(which starts that command and checks a run before it does) and the Train page's New-run form are all
built from `OPTIONS`."""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from flow.data import DATASETS
from flow.model import PRESETS


@dataclass(frozen=True)
class Option:
    """One training option: `name` is the attribute, `--name-with-dashes` the flag. `default` None means the
    preset's own value (or, for data, the preset's data set). `label` names it in the New-run form (None: not
    there). Numbers must be finite, at least `low` (above it if `above`) and at most `high`."""

    name: str
    kind: type  # int, float or str
    default: object
    help: str
    label: str | None = None
    low: float | None = None
    above: bool = False
    high: float | None = None
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def rule(self) -> str:
        """What a valid value is, in words."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        what = "a whole number" if self.kind is int else "a number"
        bounds = [f"{'above' if self.above else 'of at least'} {self.low:g}"] if self.low is not None else []
        bounds += [f"at most {self.high:g}"] if self.high is not None else []
        return f"{what} {' and '.join(bounds)}".strip()

    def problem(self, value: object, label: str | None = None) -> str | None:
        """Why `value` is not valid for this option (called `label`, or by its name), or None. None itself
        is valid where the default is None."""
        if value is None and self.default is None:
            return None
        empty = ", or empty for the default" if self.default is None else ""
        wrong = f"{label or self.name} must be {self.rule()}{empty} (got {value!r})"
        if self.choices:
            return None if value in self.choices else wrong
        whole = isinstance(value, int) and not isinstance(value, bool)
        number = whole or (self.kind is float and isinstance(value, float))
        if not number or not math.isfinite(value) or (self.low is not None and (
                value < self.low or (self.above and value == self.low))) or (
                self.high is not None and value > self.high):
            return wrong
        return None

    def parse(self, text: str) -> object:
        """An argparse type: the text as this option's kind, or ArgumentTypeError saying the rule."""
        try:
            value = text if self.kind is str else self.kind(text)
        except ValueError:
            value = text
        if self.problem(value):
            raise argparse.ArgumentTypeError(f"must be {self.rule()} (got {text!r})")
        return value


OPTIONS: tuple[Option, ...] = (
    Option("preset", str, "realnvp", "the model (see the presets above)", "Preset", choices=tuple(PRESETS)),
    Option("data", str, None, "default: mnist, or moons for toy-2d", "Data set", choices=tuple(DATASETS)),
    Option("epochs", int, 10, "epochs to train", "Epochs", low=1),
    Option("batch_size", int, None, "per process; default: the preset's", "Batch size", low=1),
    Option("lr", float, None, "Adam's learning rate; default: the preset's", "Learning rate", low=0, above=True),
    Option("seed", int, 0, "seed of the weights, the batches and the test noise", "Seed", low=0, high=2**32 - 1),
    Option("limit_train", int, None, "train on the first N examples only", "Training examples", low=1),
    Option("limit_test", int, None, "evaluate on the first N test examples only", "Test examples", low=1),
    Option("digit", int, None, "MNIST only: train and test on this one class (its test bits/dim are then not "
           "comparable with an all-digit model's)",
           "Only this digit", low=0, high=9),
    Option("log_every", int, 20, "steps between metrics lines", "Log every (steps)", low=1),
    Option("snapshot_every", int, None, "steps between weight snapshots (snapshots/), which the Train page replays; "
           "0: none; default: about 40 over a 2-D run, none for images", "Snapshot every (steps)", low=0),
    Option("weight_decay", float, 0.0, "L2 penalty; the paper used 5e-5", low=0),
    Option("grad_clip", float, 100.0, "max gradient norm (0: off)", low=0),
    Option("schedule", str, "cosine", "learning-rate schedule after the warm-up",
           choices=("cosine", "linear", "constant")),
    Option("beta2", float, None, "Adam's second-moment decay; default: the preset's", low=0, above=True, high=0.9999),
    Option("warmup", int, 200, "learning-rate warm-up steps", low=0),
    Option("time_limit", float, None, "stop after this many seconds of training", low=0, above=True),
    Option("max_steps", int, None, "stop after this many optimizer steps", low=1),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One argparse flag per option, checked by its own rule."""
    for o in OPTIONS:
        parser.add_argument(o.flag, type=o.parse, default=o.default, help=o.help,
                            **({"choices": o.choices} if o.choices else {}))


def to_args(values: dict[str, object]) -> list[str]:
    """The flags that give these option values (those left None, or not given, keep their default)."""
    return [part for o in OPTIONS if values.get(o.name) is not None for part in (o.flag, str(values[o.name]))]
