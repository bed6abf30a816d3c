"""Which models the app can offer: the shipped checkpoints and every run's latest checkpoint."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from app.jobs import run_state, runs_root
from flow.checkpoint import CheckpointError, verify_checkpoint
from flow.data import DATASETS, TOY_SETS, class_note, data_label, is_data_file, read_data
from flow.datafile import DataFileError
from flow.files import ROOT

CHECKPOINT_DIR = ROOT / "checkpoints"  # the shipped checkpoints
CHECKPOINTS_ENV = "REALNVP_CHECKPOINTS_DIR"  # the folder the app lists; tests point it at a temporary one


def checkpoints_dir() -> Path:
    """$REALNVP_CHECKPOINTS_DIR, or checkpoints/."""
    return Path(os.environ.get(CHECKPOINTS_ENV) or CHECKPOINT_DIR)


@dataclass
class ModelEntry:
    path: Path
    source: str  # "shipped" or "run"
    name: str  # file stem, or the run folder's name
    preset: str = "?"
    data: str = "?"
    epoch: int | None = None
    test_bpd: float | None = None
    digit: int | None = None  # trained and tested on this MNIST class only
    run_state: str | None = None  # runs only: running, finished, stopped, failed, vanished... (app.jobs)
    error: str | None = None  # why the checkpoint is unusable
    shape: tuple[int, ...] = ()  # one example's shape, from the config: (1, 28, 28) digits or (2,) points
    data_file: dict | None = None  # trained on a data file (`data` is then its absolute path): its record
    classes: int = 0  # a class-conditional model's number of classes (config.num_classes), 0 for p(x)
    test_accuracy: float | None = None  # a conditional model's: `Flow.classify` on the test examples

    @property
    def is_image_model(self) -> bool:
        """An MNIST model: 28x28 digits trained on MNIST, which the Lesson, the Likelihood lab and Compare run
        MNIST's test digits through (a 28x28 model of another data set is not one)."""
        return self.shape == MNIST_SHAPE and self.data == "mnist"

    @property
    def kind(self) -> str:
        """What the pages can show of it: "images" (greyscale, (1, H, W)), "colour" ((C, H, W), C > 1),
        "points" ((2,): the plane) or "vectors" ((D,), D > 2: no page draws those)."""
        if len(self.shape) == 3:
            return "images" if self.shape[0] == 1 else "colour"
        return "points" if self.shape == POINT_SHAPE else "vectors"

    @property
    def data_name(self) -> str:
        """The data set's short name for a sentence: "mnist", "moons", or a data file's name ("points.npy")."""
        return data_label(self.data) if self.data_file is not None else self.data

    @property
    def noun(self) -> str:
        """What one example is called on a page: "digit" for MNIST, "image" for other pictures, "point"."""
        return "digit" if self.data == "mnist" else "image" if len(self.shape) == 3 else "point"

    def reword(self, text: str) -> str:
        """A page's sentence about MNIST digits, said of this model's examples: "an image" for "a digit", its
        own size for "784" and "28×28" (unchanged for an MNIST model)."""
        if self.data == "mnist" or len(self.shape) != 3:
            return text
        for mnist, own in (("a digit", "an image"), ("A digit", "An image"), ("digit", "image"), ("Digit", "Image"),
                           ("784", str(math.prod(self.shape))), ("28×28", "×".join(map(str, self.shape[1:])))):
            text = text.replace(mnist, own)
        return text

    @property
    def label(self) -> str:
        """The name and the test-set bits/dim, the figures that tell models apart, short enough for the sidebar
        of a projector (the unit is in the picker's label; `details` carry the rest)."""
        figure = f"{self.test_bpd:.3f}" if self.test_bpd is not None else "not evaluated"
        return f"{self.name} · {figure}" + (f" ({self.digit}s)" if self.digit is not None else "")

    @property
    def details(self) -> str:
        """The rest of what the catalog knows, for a caption: the whole name, preset, data, epoch, where it lives."""
        where = "shipped" if self.source == "shipped" else f"run, {self.run_state or 'unknown'}"
        conditional = "" if not self.classes else f", class-conditional ({self.classes} classes" + (
            f", {self.test_accuracy:.1%} of the test set classified right)" if self.test_accuracy is not None else ")")
        return (f"{self.name}: {self.preset} on {self.data_name}{class_note(self.digit)}{conditional}, epoch "
                f"{self.epoch}, {where}")

    @property
    def version(self) -> float:
        """Changes whenever the file is rewritten: part of the cache key of a loaded model."""
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return 0


MNIST_SHAPE, POINT_SHAPE = (1, 28, 28), (2,)  # the shapes the pages know: MNIST digits, points of a 2-D set


def _is_file(data: object, record: object) -> bool:
    """Trained on a data file: the metadata's `data` is the file's absolute path (or a `data_file` record
    is there)."""
    return record is not None or is_data_file(data)


def _data_file_problem(data: object, record: object) -> str | None:
    """Why a model trained on a data file cannot be shown (the record is malformed, the file is missing or
    changed since training), or None when the file is there as it was."""
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return (f"its metadata's data_file must be an object with the file's sha256 (got {record!r}): "
                "it was not written by flow.train --data")
    if not isinstance(data, str) or not os.path.isabs(data):
        return f"its metadata's data must be the data file's absolute path (got {data!r})"
    if not os.path.exists(data):
        return f"its data file {data} is missing: put it back there to explore the model"
    try:  # read once per version of the file (path, mtime, size), which the catalog lists on every rerun
        digest = read_data(data).record["sha256"]
    except DataFileError as e:
        return f"its data file {data} cannot be used: {e}"
    if digest != record["sha256"]:
        return (f"its data file {data} has changed since training (its SHA-256 differs from the one the run "
                "recorded): put the original back, or train again on the new file")
    return None


def _data_of(shape: tuple[int, ...], data: object) -> tuple[str, str | None]:
    """(the data set a model of this shape was trained on, None) or ("?", why no page can show it). The shape
    decides image or 2-D; the metadata's `data` (absent when saved by save_checkpoint without data=) only names
    the 2-D set, and must agree with the shape. (Models trained on a data file: `_data_file_problem`.)"""
    if shape == MNIST_SHAPE:
        if data in (None, "mnist"):
            return "mnist", None
        return "?", f"its metadata says data {data!r}, but its config is an MNIST model of shape {shape}"
    if shape != POINT_SHAPE:
        return "?", f"its shape {shape} is neither an MNIST digit's {MNIST_SHAPE} nor a 2-D point's {POINT_SHAPE}"
    if data in TOY_SETS:
        return data, None
    if data in DATASETS:
        return "?", f"its metadata says data {data!r}, but its config is a 2-D model of shape {shape}"
    return "?", (f"a 2-D model needs its data set in its metadata (one of {', '.join(TOY_SETS)}; "
                 f"save_checkpoint(..., data=NAME)), not {data!r}")


@lru_cache(maxsize=256)
def _verified(path: Path, version: float, size: int) -> tuple[tuple[int, ...], int, dict, str | None]:
    """(shape, classes, metadata, None) or ((), 0, {}, why the file is unusable); once per file version (it builds
    the model)."""
    try:
        config, meta = verify_checkpoint(path)
    except CheckpointError as e:
        return (), 0, {}, e.reason
    return config.shape, config.num_classes, meta, None


def _entry(path: Path, source: str, name: str) -> ModelEntry:
    entry = ModelEntry(path=path, source=source, name=name)
    try:
        size = path.stat().st_size
    except OSError:
        size = -1
    entry.shape, entry.classes, meta, entry.error = _verified(path, entry.version, size)
    if entry.error:
        return entry
    data, record = meta.get("data"), meta.get("data_file")
    if _is_file(data, record):
        entry.data, entry.error = (data if isinstance(data, str) else "?"), _data_file_problem(data, record)
        entry.data_file = record if isinstance(record, dict) else None
    else:
        entry.data, entry.error = _data_of(entry.shape, data)
    if entry.error:
        return entry
    entry.preset = meta.get("preset", "?")
    entry.epoch, entry.test_bpd, entry.digit = meta.get("epoch"), meta.get("test_bpd"), meta.get("digit")
    entry.test_accuracy = meta.get("test_accuracy")
    return entry


def find_checkpoint(preset: str) -> Path | None:
    """The first usable MNIST checkpoint of a preset in list_models' order (shipped ones best first), if any."""
    return next((e.path for e in list_models() if e.error is None and e.preset == preset and e.is_image_model), None)


def list_models(checkpoint_dir: Path | None = None) -> list[ModelEntry]:
    """Shipped checkpoints (the best unconditional MNIST model first: the pages open on it; class-conditional ones
    after the unconditional ones), then runs' checkpoints (newest first).
    Unusable files are listed too, with `error` saying why."""
    checkpoint_dir = checkpoint_dir or checkpoints_dir()
    shipped = [_entry(p, "shipped", p.stem) for p in sorted(checkpoint_dir.glob("*.safetensors"))]
    shipped.sort(key=lambda e: (e.error is not None, not e.is_image_model, e.classes > 0,
                                e.test_bpd if e.test_bpd is not None else float("inf"), e.name))
    runs = []
    runs_dir = runs_root() if checkpoint_dir == checkpoints_dir() else checkpoint_dir / "runs"
    if runs_dir.is_dir():
        for ckpt in runs_dir.glob("*/checkpoint.safetensors"):
            entry = _entry(ckpt, "run", ckpt.parent.name)
            entry.run_state = run_state(ckpt.parent)
            runs.append(entry)
        runs.sort(key=lambda e: e.version, reverse=True)
    return shipped + runs
