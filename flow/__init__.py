"""Real NVP (Dinh, Sohl-Dickstein and Bengio, 2016) in PyTorch: the library.

    from flow import build_model, load_checkpoint
    model = load_checkpoint("checkpoints/realnvp-mnist.safetensors")
    bits = model.bits_per_dim(digits_uint8)

The public names below are imported on first use, so `import flow` (and a torch-free helper such as
`flow.files`) stays cheap. flow/ imports torch, numpy and safetensors, never the app (app/, ui/).
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_PUBLIC = {  # name -> the module that defines it
    "Flow": "flow.model",
    "FlowConfig": "flow.model",
    "PRESETS": "flow.model",
    "build_model": "flow.model",
    "CheckpointError": "flow.checkpoint",
    "load_checkpoint": "flow.checkpoint",
    "save_checkpoint": "flow.checkpoint",
}
__all__ = ["__version__", *_PUBLIC]

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ imports on demand
    from flow.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from flow.model import PRESETS, Flow, FlowConfig, build_model


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value  # once: later look-ups are plain attributes
        return value
    raise AttributeError(f"module 'flow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
