"""Which models the app can offer: the shipped checkpoints and every run's latest checkpoint."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from app.jobs import run_state, runs_root
from flow.checkpoint import CheckpointError, verify_checkpoint
from flow.data import DATASETS, TOY_SETS, class_note
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

    @property
    def is_image_model(self) -> bool:
        return self.shape == MNIST_SHAPE

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
        return f"{self.name}: {self.preset} on {self.data}{class_note(self.digit)}, epoch {self.epoch}, {where}"

    @property
    def version(self) -> float:
        """Changes whenever the file is rewritten: part of the cache key of a loaded model."""
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return 0


MNIST_SHAPE, POINT_SHAPE = (1, 28, 28), (2,)  # the shapes the pages know: MNIST digits, points of a 2-D set


def _data_of(shape: tuple[int, ...], data: object) -> tuple[str, str | None]:
    """(the data set a model of this shape was trained on, None) or ("?", why no page can show it). The shape
    decides image or 2-D; the metadata's `data` (absent when saved by save_checkpoint without data=) only names
    the 2-D set, and must agree with the shape."""
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
def _verified(path: Path, version: float, size: int) -> tuple[tuple[int, ...], dict, str | None]:
    """(shape, metadata, None) or ((), {}, why the file is unusable); once per file version (it builds the model)."""
    try:
        config, meta = verify_checkpoint(path)
    except CheckpointError as e:
        return (), {}, e.reason
    return config.shape, meta, None


def _entry(path: Path, source: str, name: str) -> ModelEntry:
    entry = ModelEntry(path=path, source=source, name=name)
    try:
        size = path.stat().st_size
    except OSError:
        size = -1
    entry.shape, meta, entry.error = _verified(path, entry.version, size)
    if entry.error:
        return entry
    entry.data, entry.error = _data_of(entry.shape, meta.get("data"))
    if entry.error:
        return entry
    entry.preset = meta.get("preset", "?")
    entry.epoch, entry.test_bpd, entry.digit = meta.get("epoch"), meta.get("test_bpd"), meta.get("digit")
    return entry


def find_checkpoint(preset: str) -> Path | None:
    """The first usable MNIST checkpoint of a preset in list_models' order (shipped ones best first), if any."""
    return next((e.path for e in list_models() if e.error is None and e.preset == preset and e.is_image_model), None)


def list_models(checkpoint_dir: Path | None = None) -> list[ModelEntry]:
    """Shipped checkpoints (best MNIST model first), then runs' checkpoints (newest first).
    Unusable files are listed too, with `error` saying why."""
    checkpoint_dir = checkpoint_dir or checkpoints_dir()
    shipped = [_entry(p, "shipped", p.stem) for p in sorted(checkpoint_dir.glob("*.safetensors"))]
    shipped.sort(key=lambda e: (e.error is not None, not e.is_image_model,
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
