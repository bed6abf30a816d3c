"""Take a run away: one zip with its checkpoint, the command that trains it again, its metrics, and a short script
that loads it and samples from it. No Streamlit here: the Train page's download button calls `run_zip`.

Inside the zip, under one folder named after the run:
    checkpoint.safetensors   the run's latest checkpoint
    command.txt              `python -m flow.train ...` with every option the run trained with (from its checkpoint)
    metrics.jsonl, metrics.csv
    load_and_sample.py       loads the checkpoint with flow.load_checkpoint and samples from it
    data/<file>              an uploaded or drawn data set up to DATA_IN_ZIP_MB (command.txt points at it)
    README.txt               what each file is, and where a data set too large to include lives
"""
from __future__ import annotations

import io
import shlex
import zipfile
from pathlib import Path

from app.jobs import Run, read_metrics
from flow.checkpoint import CheckpointError, read_header
from flow.data import is_data_file
from flow.config import FlowConfig
from flow.options import OPTION, set_flag, to_args
from flow.train import architecture_changes

DATA_IN_ZIP_MB = 20  # an uploaded data set up to this size travels in the zip
DERIVED = ("shape", "preprocess")  # architecture fields the data decides (flow.train takes them from the data)

SCRIPT = '''"""Load the trained flow and sample from it (needs the flow library: pip install a clone of Real NVP Explorer)."""
from pathlib import Path

import torch
from flow import load_checkpoint

here = Path(__file__).parent
model = load_checkpoint(here / "checkpoint.safetensors")
data = model.metadata.get("data_file", {{}}).get("file", model.metadata["data"])
print(model.metadata["preset"], "on", data, "test bits/dim", model.metadata.get("test_bpd"))
x = model.sample(64, temperature=0.8, seed=0)  # {what}; sampling runs without autograd
{show}'''
SHOW_IMAGES = '''try:  # a PNG needs Pillow (pip install "CLONE[app]"); without it the pixels in [0, 1] are saved as a tensor
    from flow.viz import image_grid
    image_grid(x, nrow=8, scale=4).save(here / "samples.png")
except ImportError:
    torch.save(x, here / "samples.pt")
print("wrote the samples beside this script:", tuple(x.shape))
'''
SHOW_POINTS = '''print(x[:10])  # the first 10 of 64 points
'''


class ExportError(Exception):
    """A run that cannot be exported (no readable checkpoint); the message says why."""


def reproduce_args(options: dict, config: FlowConfig, preset: str, data: str | None) -> list[str]:
    """The flow.train flags that train this run again: every option it recorded (flow.options) with `data` for its
    data set, and --set for each architecture field that differs from its preset's (not those the data decides)."""
    values = {k: v for k, v in options.items() if k in OPTION}
    values["data"] = data if data is not None else values.get("data")
    sets = {k: v for k, v in architecture_changes(config, preset).items() if k not in DERIVED}
    return to_args(values) + [part for k, v in sets.items() for part in set_flag(k, v)]


def run_zip(run: Run) -> bytes:
    """The run folder as one zip (module docstring); ExportError when it has no readable checkpoint."""
    try:
        config, meta = read_header(run.checkpoint)
        checkpoint = run.checkpoint.read_bytes()  # one read: a trainer rewriting it replaces the file atomically
    except (CheckpointError, OSError) as e:
        raise ExportError(f"Run '{run.name}' has no readable checkpoint to export ({e}).") from None
    options = meta.get("options") if isinstance(meta.get("options"), dict) else {
        k: meta[k] for k in ("preset", "data", "digit", "batch_size", "lr", "beta2") if k in meta}
    preset, data = meta.get("preset", options.get("preset")), meta.get("data", options.get("data"))
    folder = run.name
    notes, data_entry = [], None
    if isinstance(data, str) and is_data_file(data):
        path = Path(data)
        size = path.stat().st_size if path.is_file() else None
        if size is not None and size <= DATA_IN_ZIP_MB * 2**20:
            data_entry, data = path, f"data/{path.name}"
            notes.append(f"data/{path.name}: the data set it trained on (command.txt reads it from there).")
        else:
            why = "is no longer there" if size is None else f"is {size / 2**20:.0f} MB, too large to include"
            notes.append(f"The data set it trained on, {path}, {why}: command.txt names that path; put the file "
                         "there, or change --data to where it is.")
    args = reproduce_args(options, config, preset, data)
    command = shlex.join(["python", "-m", "flow.train", *args, "--run-dir", "retrained"])
    images = len(config.shape) > 1
    script = SCRIPT.format(what="images (64, C, H, W) in [0, 1]" if images else "points (64, D)",
                           show=SHOW_IMAGES if images else SHOW_POINTS)
    metrics = read_metrics(run.path)
    epoch, bpd = meta.get("epoch"), meta.get("test_bpd")
    readme = "\n".join([
        f"Run {run.name}: {preset} on {data}, checkpoint of epoch {epoch}"
        + (f", test {bpd:.4f} bits/dim" if isinstance(bpd, float) else "") + f" (the run was {run.state}).",
        "",
        "checkpoint.safetensors  the trained flow: flow.load_checkpoint(path) gives the model",
        "command.txt             trains it again from scratch, run from this folder (python -m flow.train --help)",
        "metrics.jsonl / .csv    one line per logged step and per epoch (bits/dim, speed, wall time)",
        "load_and_sample.py      loads the checkpoint and samples from it: python load_and_sample.py",
        *notes, ""])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{folder}/checkpoint.safetensors", checkpoint)
        z.writestr(f"{folder}/command.txt", command + "\n")
        z.writestr(f"{folder}/load_and_sample.py", script)
        z.writestr(f"{folder}/README.txt", readme)
        z.writestr(f"{folder}/metrics.csv", metrics.to_csv(index=False))
        if (run.path / "metrics.jsonl").is_file():
            z.write(run.path / "metrics.jsonl", f"{folder}/metrics.jsonl")
        if data_entry:
            z.write(data_entry, f"{folder}/{data}")
    return buf.getvalue()
