"""A run's record of learning, as the Train page shows it: the sample pictures over training (all decoded
from the run's fixed latents), what a 2-D model does to the plane at each weight snapshot, and each block's
statistics over training. The trainer writes these files (`flow.learning`); no Streamlit here."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from flow import explore
from flow.checkpoint import load_checkpoint
from flow.learning import list_snapshots, read_latents
from flow.model import Flow

EXTENT = 4.0  # the 2-D views show [-EXTENT, EXTENT]^2
DENSITY_N = 60  # the density heat map's grid: DENSITY_N x DENSITY_N points (drawn smoothed)
POINTS = 500  # samples drawn in a 2-D view: the first POINTS of the run's fixed latents
EPOCH_PICTURE = re.compile(r"epoch_(\d+)\.png")
STEP_PICTURE = re.compile(r"step_(\d+)\.png")


@dataclass(frozen=True)
class Frame:
    """One sample picture of a run: samples/epoch_NNN.png (an epoch's end) or step_NNNNNNN.png (a snapshot)."""

    path: Path
    epoch: float  # fractional epochs trained when it was drawn
    step: int | None  # optimizer steps done (None: a picture from before the trainer recorded it)
    end_of_epoch: bool

    @property
    def label(self) -> str:
        if self.end_of_epoch:
            return f"epoch {round(self.epoch)}" + ("" if self.step is None else f" · step {self.step}")
        return f"step {self.step} · epoch {self.epoch:.2f}"


def sample_frames(run_dir: Path) -> list[Frame]:
    """The run's sample pictures in training order; a snapshot's picture that shows the same step as an epoch's
    is left out. Each PNG's text holds its step and epoch; older pictures have the epoch in their name only."""
    frames = {}
    for path in (run_dir / "samples").glob("*.png"):
        end = EPOCH_PICTURE.fullmatch(path.name)
        if not end and not STEP_PICTURE.fullmatch(path.name):
            continue
        try:
            with Image.open(path) as img:
                text = dict(img.text)
        except OSError:  # being written (atomic rename: rarely) or broken: left out
            continue
        step = int(text["step"]) if "step" in text else None
        epoch = float(text.get("epoch", int(end[1]) if end else 0))
        if step is None and not end:
            continue
        frame = Frame(path, epoch, step, bool(end))
        key = step if step is not None else f"epoch {path.name}"
        if key not in frames or frame.end_of_epoch:
            frames[key] = frame
    return sorted(frames.values(), key=lambda f: (f.epoch, f.step or 0))


def picture_count(run_dir: Path) -> int:
    """How many sample pictures the run has written (epoch_NNN.png and step_NNNNNNN.png), without opening them."""
    names = (p.name for p in (run_dir / "samples").glob("*.png"))
    return sum(bool(EPOCH_PICTURE.fullmatch(n) or STEP_PICTURE.fullmatch(n)) for n in names)


@dataclass(frozen=True)
class PlaneView:
    """What a 2-D model does to the plane at one snapshot (or checkpoint)."""

    step: int
    epoch: float
    ticks: np.ndarray  # (DENSITY_N,) the heat map's axis, in [-EXTENT, EXTENT]
    density: np.ndarray  # (DENSITY_N, DENSITY_N) p(x), rows = y (`flow.explore.density`)
    samples: np.ndarray  # (POINTS, 2) the run's fixed latents decoded: the same z at every step
    colour: np.ndarray  # (POINTS,) the angle of each latent, to follow a sample from step to step
    grid: np.ndarray  # (lines x per_line, 2) the regular z-grid of `flow.explore.grid_lines`, decoded
    per_line: int


@torch.no_grad()
def plane_view(model: Flow, z: torch.Tensor, step: int, epoch: float) -> PlaneView:
    """The density on the plane, samples from latents z (N, 2) and the z-grid pushed through model's inverse."""
    ticks, density = explore.density(model, EXTENT, DENSITY_N)
    grid, per_line = explore.grid_lines(points=30)
    z = z[:POINTS]
    return PlaneView(step=step, epoch=epoch, ticks=ticks, density=density.astype(np.float32),
                     samples=model.decode(z).numpy().astype(np.float32),
                     colour=np.arctan2(z[:, 1], z[:, 0]).numpy().astype(np.float32),
                     grid=model.decode(grid).numpy().astype(np.float32), per_line=per_line)


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch ops of the calling thread on one core meanwhile. A live view is read while its trainer holds a core:
    a second torch thread then waits on the busy core, and a refresh took 1.0-3.4 s instead of 0.25 s
    (bench/live_refresh.py). Torch keeps the setting per thread, so other sessions' scripts keep theirs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def snapshot_view(run_dir: Path, snapshot: Path) -> PlaneView:
    """The plane view of one weight snapshot of a 2-D run (CheckpointError, OSError: unreadable), computed on
    one core."""
    with one_thread():
        model = load_checkpoint(snapshot)
        return plane_view(model, read_latents(run_dir), model.metadata["step"], model.metadata["epoch"])


def newest_snapshot(run_dir: Path) -> Path | None:
    found = list_snapshots(run_dir)
    return found[-1][1] if found else None


def replay_snapshots(run_dir: Path, most: int = 40) -> list[Path]:
    """The snapshots a replay shows: all of them, or `most` spread evenly (the first and last always)."""
    found = [p for _, p in list_snapshots(run_dir)]
    if len(found) <= most:
        return found
    return [found[round(i)] for i in np.linspace(0, len(found) - 1, most)]


@dataclass(frozen=True)
class BlockHistory:
    """The per-block statistics the trainer logs with its metrics (`flow.learning.block_stats`), as arrays."""

    steps: np.ndarray  # (T,) the optimizer step of each record
    names: list[str]  # the learned blocks: couplings and ActNorms
    logdet: np.ndarray  # (T, B) mean log|det J| per example, nats
    saturation: np.ndarray  # (T, B) share of a coupling's transformed dimensions with |tanh| > 0.95; NaN: ActNorm


def block_history(run_dir: Path, names: list[str]) -> BlockHistory | None:
    """The block statistics in metrics.jsonl; `names` are the stage names (`Flow.transform.names`). None when
    there are none (a run from before they were recorded, or not one logged step yet)."""
    records = []
    try:
        with open(run_dir / "metrics.jsonl") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row.get("blocks"), dict) and len(row["blocks"]["logdet"]) == len(names):
                    records.append(row)
    except OSError:
        return None
    if not records:
        return None
    logdet = np.array([r["blocks"]["logdet"] for r in records], dtype=np.float64)
    saturation = np.array([[np.nan if v is None else v for v in r["blocks"]["saturation"]] for r in records])
    learned = [i for i, n in enumerate(names) if n.startswith(("coupling", "actnorm"))]
    return BlockHistory(steps=np.array([r["step"] for r in records]), names=[names[i] for i in learned],
                        logdet=logdet[:, learned], saturation=saturation[:, learned])
