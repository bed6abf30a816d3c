"""What a run records so that the app can show it learning: the fixed latents every sample picture is
decoded from, weight snapshots every K steps, and each block's share of the log-likelihood and how
saturated its coupling scale is.

In the run folder (rank 0 writes, atomically):
    samples/latents.safetensors          z (N, D), drawn once per run and kept on --resume: the same
                                         digits (or points) in every epoch's picture
    samples/step_NNNNNNN.png             an image model's samples at a snapshot (epoch_NNN.png at epoch ends)
    snapshots/step_NNNNNNN.safetensors   the weights after step N: a checkpoint file (config, step, epoch)
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor

from flow.checkpoint import save_checkpoint
from flow.files import atomic_write
from flow.model import Flow

LATENTS = Path("samples") / "latents.safetensors"
SNAPSHOTS = "snapshots"
SNAPSHOT = re.compile(r"step_(\d{7,})\.safetensors")
AUTO_SNAPSHOTS = 40  # a 2-D run's default: about this many snapshots over the whole run
SATURATED = 0.95  # |tanh| above this: the coupling's scale s = scale * tanh(.) is at its bound


def is_image_model(model: Flow) -> bool:
    return len(model.config.shape) == 3


def draw_latents(model: Flow, seed: int = 0) -> Tensor:
    """The latents of a run's sample pictures, z ~ N(0, T^2 I): 64 digits at T = 0.8 (cleaner strokes),
    for a conditional model up to 10 per class (a row per class: `viz.samples_picture`), or 4,000 2-D points at
    T = 1. (N, D) floats on the CPU."""
    if is_image_model(model):
        k = model.num_classes
        return model.latents(k * max(1, min(10, 100 // k)) if k else 64, 0.8, seed)
    return model.latents(4000, 1.0, seed)


def run_latents(run_dir: Path, model: Flow, writer: bool) -> Tensor:
    """The run's fixed latents: read from samples/latents.safetensors, or drawn (`draw_latents`) and, by
    the writer, saved there. A file of another shape (another model) or an unreadable one is replaced."""
    path = run_dir / LATENTS
    fresh = draw_latents(model)
    try:
        z = load_file(path)["z"]
        if z.shape == fresh.shape:
            return z
    except (OSError, SafetensorError, KeyError, RuntimeError):
        pass
    if writer:
        atomic_write(path, lambda tmp: tmp.write_bytes(save({"z": fresh.contiguous()})))
    return fresh


def read_latents(run_dir: Path) -> Tensor:
    """The latents a run's sample pictures were decoded from (OSError or SafetensorError if it has none)."""
    return load_file(run_dir / LATENTS)["z"]


def default_snapshot_every(asked: int | None, model: Flow, total_steps: int) -> int:
    """Steps between snapshots: as asked (0: none); unasked, about AUTO_SNAPSHOTS over a 2-D run (its live
    view and replay need them; each weighs 0.3 MB) and none for an image model."""
    if asked is not None:
        return asked
    return 0 if is_image_model(model) else max(1, math.ceil(total_steps / AUTO_SNAPSHOTS))


def snapshot_path(run_dir: Path, step: int) -> Path:
    return run_dir / SNAPSHOTS / f"step_{step:07d}.safetensors"


def save_snapshot(model: Flow, run_dir: Path, step: int, epoch: float) -> Path:
    """The weights after `step` (epoch: fractional epochs done) as a checkpoint file, written atomically."""
    path = snapshot_path(run_dir, step)
    save_checkpoint(model, path, step=step, epoch=round(epoch, 4), snapshot=True)
    return path


def list_snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every snapshot of a run, by step."""
    folder = run_dir / SNAPSHOTS
    found = [(int(m[1]), p) for p in folder.glob("step_*.safetensors") if (m := SNAPSHOT.fullmatch(p.name))]
    return sorted(found)


@torch.no_grad()
def block_stats(model: Flow, x: Tensor) -> dict[str, object]:
    """How each block of the forward walk on the batch x (as the model takes it: dequantized images in
    [0, 1] or points) shapes the likelihood: {"logdet": per stage, the mean log|det J| in nats per example
    (0 for squeezes and factor-outs), "prior": the mean log density of z under the model's base distribution
    (`prior_log_prob`), "saturation": per stage, the share of a coupling's transformed dimensions where |tanh| of
    its scale, s / scale, is above SATURATED (None for other blocks)}. Lists follow `model.transform.names`."""
    logdets, saturation = [], []
    for step, (_, block) in zip(model.transform.walk(x, "details"), model.transform.stages):
        logdets.append(round(step.logdet.mean().item(), 4))
        if step.kind != "coupling":
            saturation.append(None)
            continue
        free = (1.0 - step.mask).expand_as(step.s).bool()
        tanh = step.s / torch.where(block.scale == 0, 1.0, block.scale)
        saturation.append(round(((tanh.abs() > SATURATED) & free).sum().item() / max(1, free.sum().item()), 4))
    prior = round(model.prior_log_prob(step.state()).mean().item(), 4)  # the model's own base distribution
    return {"logdet": logdets, "prior": prior, "saturation": saturation}
