"""The options of a training run, declared once: `python -m flow.train`'s flags, the app's job layer
(which starts that command and checks a run before it does) and the Train page's New-run form are all
built from `OPTIONS`.

What `--resume` does with an option is declared here too (`Option.on_resume`), and `resolve` applies it:

- KEPT: fixed when the run starts, because it decides what the run trains on and how it is scored (the preset,
  the data set, the digit, the training and test limits), or which batches it draws and with what noise (the seed,
  the batch size: the position inside an epoch is counted in batches). A resumed run keeps its own value; another
  one is refused by name, with the command that starts a new run instead. Architecture fields (`--set`) are kept
  the same way (`flow.train`: they live in the checkpoint's config).
- TUNED: the run's own value unless given again: the optimizer's settings and the logging, which one may well
  change to continue (a lower learning rate after a divergence, a warm restart with a new warm-up or schedule).
- CALL: this command only, never inherited: how far to train (--epochs, --time-limit, --max-steps).

Every run records the values it trained with (`options` in its checkpoint's metadata, written atomically each
epoch). A run recorded before that (no `options`) still resumes: the preset, data set, digit, batch size,
learning rate and beta2 its checkpoint saved are kept as before, and every other option is what the command line
gives, else its default (seed 0, all examples, cosine, warm-up 200, ...), which is what the trainer assumed then."""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass

from flow.config import PRESETS
from flow.data import DATASETS, data_problem


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
    on_resume: str = "kept"  # KEPT, TUNED or CALL (the module's docstring)
    files: bool = False  # data: besides the choices, the path of a data file (flow.data.is_data_file)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def rule(self) -> str:
        """What a valid value is, in words."""
        if self.files:
            return f"one of {', '.join(self.choices)}, or the path of a .npy, .npz or .pt data file"
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        what = "a whole number" if self.kind is int else "a number"
        def show(bound: float) -> str:  # 4294967295, not 4.29497e+09
            return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"

        bounds = [f"{'above' if self.above else 'of at least'} {show(self.low)}"] if self.low is not None else []
        bounds += [f"at most {show(self.high)}"] if self.high is not None else []
        return f"{what} {' and '.join(bounds)}".strip()

    def problem(self, value: object, label: str | None = None) -> str | None:
        """Why `value` is not valid for this option (called `label`, or by its name), or None. None itself
        is valid where the default is None."""
        if value is None and self.default is None:
            return None
        empty = ", or empty for the default" if self.default is None else ""
        got = "nothing" if value is None else repr(value)
        wrong = f"{label or self.name} must be {self.rule()}{empty} (got {got})"
        if self.files:
            return None if data_problem(value) is None else wrong
        if self.choices:
            return None if value in self.choices else wrong
        whole = isinstance(value, int) and not isinstance(value, bool)
        number = whole or (self.kind is float and isinstance(value, float))
        if not number or not math.isfinite(value) or (self.low is not None and (
                value < self.low or (self.above and value == self.low))) or (
                self.high is not None and value > self.high):
            return wrong
        return None

    def read(self, text: object) -> object:
        """Typed text as this option's value: None when empty; a whole number also in float notation ("1e9" is
        1000000000); text that is not a number of this kind stays the text, for `problem` to show as typed."""
        text = "" if text is None else str(text).strip()
        if not text:
            return None
        if self.kind is str:
            return text
        try:
            return self.kind(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            return text
        return int(value) if self.kind is int and value.is_integer() else text

    def parse(self, text: str) -> object:
        """An argparse type: the text as this option's kind, or ArgumentTypeError saying the rule."""
        value = self.read(text)
        if self.problem(value):
            raise argparse.ArgumentTypeError(f"must be {self.rule()} (got {text!r})")
        return value


KEPT, TUNED, CALL = "kept", "tuned", "call"

OPTIONS: tuple[Option, ...] = (
    Option("preset", str, "realnvp", "the model (see the presets above); toy-2d where the data are points",
           "Preset", choices=tuple(PRESETS)),
    Option("data", str, None, f"a built-in data set ({', '.join(DATASETS)}), or a .npy, .npz or .pt file of uint8 "
           "images or float points; default: mnist, or moons for toy-2d", "Data set", choices=tuple(DATASETS),
           files=True),
    Option("epochs", int, 10, "epochs to train", "Epochs", low=1, on_resume=CALL),
    Option("batch_size", int, None, "per process; default: the preset's", "Batch size", low=1),
    Option("lr", float, None, "Adam's learning rate; default: the preset's", "Learning rate", low=0, above=True,
           on_resume=TUNED),
    Option("seed", int, 0, "seed of the weights, the batches and the test noise", "Seed", low=0, high=2**32 - 1),
    Option("limit_train", int, None, "train on the first N examples only", "Training examples", low=1),
    Option("limit_test", int, None, "evaluate on the first N test examples only", "Test examples", low=1),
    Option("digit", int, None, "MNIST only: train and test on this one class (its test bits/dim are then not "
           "comparable with an all-digit model's)",
           "Only this digit", low=0, high=9),
    Option("log_every", int, 20, "steps between metrics lines", "Log every (steps)", low=1, on_resume=TUNED),
    Option("snapshot_every", int, None, "steps between weight snapshots (snapshots/), which the Train page replays; "
           "0: none; default: about 40 over a 2-D run, none for images", "Snapshot every (steps)", low=0,
           on_resume=TUNED),
    Option("weight_decay", float, 0.0, "L2 penalty; the paper used 5e-5", low=0, on_resume=TUNED),
    Option("grad_clip", float, 100.0, "max gradient norm (0: off)", low=0, on_resume=TUNED),
    Option("schedule", str, "cosine", "learning-rate schedule after the warm-up",
           choices=("cosine", "linear", "constant"), on_resume=TUNED),
    Option("beta2", float, None, "Adam's second-moment decay; default: the preset's", low=0, above=True, high=0.9999,
           on_resume=TUNED),
    Option("class_weight", float, 0.0, "class-conditional models: the weight of the classifier's cross-entropy "
           "-log p(y | x) added to the loss, in the loss's units (0: the density p(x | y) alone)", low=0,
           on_resume=TUNED),
    Option("warmup", int, 200, "learning-rate warm-up steps", low=0, on_resume=TUNED),
    Option("time_limit", float, None, "stop after this many seconds of training (a resumed run's earlier ones "
           "count)", low=0, above=True, on_resume=CALL),
    Option("max_steps", int, None, "stop after this many optimizer steps", low=1, on_resume=CALL),
)


RESUME_HELP = {KEPT: "kept by --resume", TUNED: "--resume: the run's own unless given",
               CALL: "not inherited by --resume"}
OPTION = {o.name: o for o in OPTIONS}
# what a run recorded before its options were: these keys of its checkpoint's metadata, nothing else
LEGACY_RECORD = ("preset", "data", "digit", "batch_size", "lr", "beta2")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One argparse flag per option, checked by its own rule. Its value is None when the flag is not given
    (`resolve` then says what it is: the default, or on --resume the run's own)."""
    for o in OPTIONS:
        default = "" if o.default is None else f"; default {o.default}"
        parser.add_argument(o.flag, type=o.parse, default=None, help=f"{o.help} ({RESUME_HELP[o.on_resume]}"
                            f"{default})", **({"choices": o.choices} if o.choices and not o.files else {}))


def to_args(values: dict[str, object]) -> list[str]:
    """The flags that give these option values (those left None, or not given, keep their default)."""
    return [part for o in OPTIONS if values.get(o.name) is not None for part in (o.flag, str(values[o.name]))]


def set_flag(field: str, value: object) -> list[str]:
    """The flags `--set FIELD=VALUE` that give an architecture field this value (JSON, without spaces)."""
    return ["--set", f"{field}={json.dumps(value, separators=(',', ':'))}"]


Change = tuple[str, object, object]  # (flag, the run's value, the value asked): a kept option asked to change


def resolve(given: dict[str, object], recorded: dict[str, object] | None) -> tuple[dict[str, object], list[Change]]:
    """(the value of every option a run trains with, the kept options asked to change). `given`: the command
    line's (None: not given); `recorded`: None for a new run, else the run's record on --resume (for a run
    recorded before records, the LEGACY_RECORD keys its checkpoint has). New run: given, else the default.
    Resume: CALL options as a new run; TUNED ones given, else recorded; KEPT ones recorded, and listed as changes
    where given with another value. Options the record lacks are taken as for a new run."""
    values, changed = {}, []
    for o in OPTIONS:
        asked = given.get(o.name)
        if recorded is None or o.on_resume == CALL or o.name not in recorded:
            values[o.name] = o.default if asked is None else asked
        elif asked is None or o.on_resume == KEPT:
            values[o.name] = recorded[o.name]
            if asked is not None and asked != recorded[o.name]:
                changed.append((o.flag, recorded[o.name], asked))
        else:
            values[o.name] = asked
    return values, changed


def new_run_args(recorded: dict[str, object], given: dict[str, object]) -> list[str]:
    """The flags of a new run with a resumed run's kept options and what the command line gave."""
    return to_args({**{k: v for k, v in recorded.items() if k in OPTION and OPTION[k].on_resume == KEPT},
                    **{k: v for k, v in given.items() if v is not None}})


def kept_refusal(changed: list[Change], new_run: list[str]) -> str:
    """The message refusing to resume with other values of kept options (`changed`; a flag such as "--set width"
    is shown as --set width=VALUE) and saying how to start a new run with them: `new_run` are its flags."""
    def show(flag: str, value: object) -> str:
        return " ".join(set_flag(flag[6:], value)) if flag.startswith("--set ") else f"{flag} {value}"

    was = " and ".join(f"without {f}" if v is None else f"with {show(f, v)}" for f, v, _ in changed)
    one = len(changed) == 1
    return (f"this run was started {was}, and --resume keeps {'it' if one else 'them'} (asked: "
            f"{', '.join(show(f, now) for f, _, now in changed)}). To train with {'that' if one else 'those'}, "
            f"start a new run: python -m flow.train --run-dir NEW {' '.join(new_run)}")
