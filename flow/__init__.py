"""Real NVP (Dinh, Sohl-Dickstein and Bengio, 2016) in PyTorch: the library.

    import flow
    model = flow.pretrained("realnvp-res1-w64-mnist")          # a shipped model (flow.pretrained)
    bits = model.bits_per_dim(flow.load_dataset("mnist", "test")[:100])
    mine = flow.build_model(flow.FlowConfig(shape=(5,), coupling="mlp"))
    history = flow.fit(mine, my_points, epochs=20, batch_size=256, lr=1e-3)   # (N, 5) floats

The public names below are imported on first use, so `import flow` (and a torch-free helper such as
`flow.files` or `flow.config`) does not import torch. flow/ imports torch, numpy, safetensors and tqdm
(Pillow and torchvision only inside the functions that draw or read pictures), never the app (app/, ui/).
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_PUBLIC = {  # name -> the module that defines it
    "Flow": "flow.model",
    "FlowConfig": "flow.config",
    "PRESETS": "flow.config",
    "build_model": "flow.model",
    "CheckpointError": "flow.checkpoint",
    "load_checkpoint": "flow.checkpoint",
    "save_checkpoint": "flow.checkpoint",
    "fit": "flow.train",
    "load_dataset": "flow.data",
    "read_data_file": "flow.datafile",
}
# flow.pretrained is a module and the function it defines: bound here (the module is torch-free), so that
# `flow.pretrained(name)` is the function even after `import flow.pretrained`
from flow.pretrained import pretrained  # noqa: E402

__all__ = ["__version__", "pretrained", *_PUBLIC]

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ imports on demand
    from flow.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from flow.config import PRESETS, FlowConfig
    from flow.data import load_dataset
    from flow.datafile import read_data_file
    from flow.model import Flow, build_model
    from flow.train import fit


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value  # once: later look-ups are plain attributes
        return value
    raise AttributeError(f"module 'flow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
