"""The shipped models by name, from a checkout or from an installed library:

    import flow
    model = flow.pretrained("realnvp-res1-w64-mnist")   # the best MNIST model, in eval mode
    digits = model.sample(16, temperature=0.7, seed=0)  # (16, 1, 28, 28) in [0, 1]

The wheel holds no checkpoints (they are 1-7 MB each): they are read from the folder named by
$REALNVP_CHECKPOINTS, else from checkpoints/ in the project folder (`flow.files.ROOT`: the checkout, or the
current directory for an installed library). torch is imported when a model is loaded, not before.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from flow.files import ROOT

if TYPE_CHECKING:
    import torch

    from flow.model import Flow

ENV = "REALNVP_CHECKPOINTS"
SUFFIX = ".safetensors"


def checkpoints_folder() -> Path:
    """Where `pretrained` looks: $REALNVP_CHECKPOINTS when set, else ROOT/checkpoints."""
    return Path(os.environ[ENV]).expanduser() if os.environ.get(ENV) else ROOT / "checkpoints"


def pretrained_names(folder: Path | None = None) -> list[str]:
    """The names of the checkpoints in the folder (default `checkpoints_folder()`), sorted; [] if there is none."""
    folder = checkpoints_folder() if folder is None else folder
    return sorted(p.name[:-len(SUFFIX)] for p in folder.glob("*" + SUFFIX)) if folder.is_dir() else []


def pretrained(name: str, device: str | torch.device = "cpu") -> Flow:
    """The shipped model `name` (e.g. "realnvp-res1-w64-mnist", with or without ".safetensors"), loaded
    with `flow.load_checkpoint` on `device`, in eval mode, with its `.metadata`. Raises CheckpointError
    when the name is not in the folder (the message lists the names there and how to point at another
    folder), or when the file is unusable."""
    from flow.checkpoint import CheckpointError, load_checkpoint

    folder = checkpoints_folder()
    stem = name[:-len(SUFFIX)] if name.endswith(SUFFIX) else name
    path = folder / (stem + SUFFIX)
    if not stem or Path(stem).name != stem or not path.is_file():
        names = pretrained_names(folder)
        found = (f"the names there: {', '.join(names)}" if names else "it holds no checkpoints" if folder.is_dir()
                 else "there is no such folder")
        where = f" (${ENV})" if os.environ.get(ENV) else ""
        raise CheckpointError(path, f"no shipped model {name!r} in {folder}{where}; {found}. Set {ENV} to the "
                                    "checkpoints/ folder of a clone of the project, or load a file by its path "
                                    "with flow.load_checkpoint(path)")
    return load_checkpoint(path, device)
