"""Checkpoints: weights in safetensors with the config and metadata as JSON in its header.

Loading never unpickles anything, so a checkpoint cannot execute code. Writes are atomic
(temporary file + rename), so a crash mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import io
import json
import math
import os
import platform
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from flow.files import atomic_write  # noqa: F401 (also imported from here)
from flow.model import TRAINING_FIELDS, Flow, FlowConfig

FORMAT = "realnvp-explorer/1"
# Every preset's untrained model (identity couplings, data-initialised ActNorm) scores 2.0-2.7 test
# bits/dim on the toy sets and 6.8-10.9 on MNIST (uniform 8-bit pixels: 8), and a healthy run only goes
# down from there: a figure above 100, nine times the worst start, means the weights have blown up.
MAX_TEST_BPD = 100.0


class CheckpointError(Exception):
    """A checkpoint that cannot be used: missing, empty, truncated, corrupt or of another architecture."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot load checkpoint {path}: {reason}")


def library_versions() -> dict[str, str]:
    import safetensors

    return {"python": platform.python_version(), "torch": torch.__version__, "safetensors": safetensors.__version__}


def save_checkpoint(model: Flow, path: str | os.PathLike, **metadata: Any) -> None:
    """Write model weights, its config and JSON-able metadata (epoch, test_bpd, ...) atomically."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"library": library_versions(), **metadata}
    header = {"format": FORMAT, "config": json.dumps(model.config.__dict__), "metadata": json.dumps(meta)}
    # bytes written by atomic_write, not safetensors' save_file: that one renames its own temporary file
    # (.tmpXXXXXX), which a killed writer would leave behind under a name nobody could tell stale
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(save(tensors, metadata=header)))


# what the app reads from a checkpoint's metadata, and the type each must have when present: a header of valid
# JSON with a string for the epoch must be an unusable file with a reason, not a crash on a page (test_bpd, a
# finite number up to MAX_TEST_BPD: model_problem)
METADATA_RULES = {
    # a snapshot taken inside an epoch records how far into it (flow.learning): a fraction
    "epoch": ("a number of at least 0", lambda v: _number(v) and v >= 0),
    "epochs_planned": ("a whole number of at least 1", lambda v: _whole(v) and v >= 1),
    "digit": ("a digit 0-9 or null", lambda v: v is None or (_whole(v) and 0 <= v <= 9)),
    "data": ("a string", lambda v: isinstance(v, str)),
    "preset": ("a string", lambda v: isinstance(v, str)),
    "options": ("an object", lambda v: isinstance(v, dict)),
    # a run trained on a data file (flow.datafile's record): the app shows its name, shape and counts
    "data_file": ("an object with the file's name, sha256, shape, dtype and train and test counts",
                  lambda v: isinstance(v, dict) and isinstance(v.get("file"), str) and isinstance(v.get("sha256"), str)
                  and isinstance(v.get("shape"), list) and all(_whole(d) and d >= 1 for d in v["shape"])
                  and isinstance(v.get("dtype"), str) and all(_whole(v.get(k)) for k in ("train", "test"))),
    "library": ("an object", lambda v: isinstance(v, dict)),
    "test_accuracy": ("a number from 0 to 1", lambda v: _number(v) and 0 <= v <= 1),
}
MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header


def _whole(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _header(path: Path, f: BinaryIO, size: int) -> dict[str, str]:
    """The `__metadata__` of the safetensors file open as `f` (`size` bytes: its size as that same open file
    says, so a writer's rename between a stat and an open cannot pair one version's size with another's
    header): the 8-byte little-endian length, the JSON header, and a check that every tensor's bytes lie
    within the file (a truncated file)."""
    if size == 0:
        raise CheckpointError(path, "the file is empty")
    unreadable = "not a readable safetensors file (truncated or corrupt?)"
    head = f.read(8)
    length = int.from_bytes(head, "little") if len(head) == 8 else -1
    if not 2 <= length <= min(MAX_HEADER, size - 8):
        raise CheckpointError(path, f"{unreadable}: its header length does not fit its {size} bytes")
    try:
        header = json.loads(f.read(length))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(path, f"{unreadable}: its header is not JSON: {e}") from e
    if not isinstance(header, dict):
        raise CheckpointError(path, f"{unreadable}: its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    ends = [t.get("data_offsets") if isinstance(t, dict) else None for t in header.values()]
    if not all(isinstance(e, list) and len(e) == 2 and all(_whole(x) for x in e) and 0 <= e[0] <= e[1]
               for e in ends):
        raise CheckpointError(path, f"{unreadable}: a tensor's entry in its header is malformed")
    if max((e[1] for e in ends), default=0) > size - 8 - length:
        raise CheckpointError(path, f"{unreadable}: its {size} bytes end before its tensors do")
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(path, f"{unreadable}: its __metadata__ is not an object of strings")
    return metadata


def _parse(path: Path, header: dict[str, str]) -> tuple[FlowConfig, dict[str, Any]]:
    """The config and metadata in a safetensors `__metadata__`, every value the app reads type-checked."""
    if header.get("format") != FORMAT or "config" not in header:
        raise CheckpointError(path, f"not a {FORMAT} checkpoint (no model config in its header)")
    try:
        stored = json.loads(header["config"])
        if not isinstance(stored, dict):
            raise TypeError(f"it is {type(stored).__name__}, not an object of fields")
        config = FlowConfig.from_dict({k: v for k, v in stored.items() if k not in TRAINING_FIELDS})  # once held
    except (ValueError, TypeError) as e:
        raise CheckpointError(path, f"its config is invalid: {e}") from e
    try:
        metadata = json.loads(header.get("metadata", "{}"))
    except ValueError as e:
        raise CheckpointError(path, f"its metadata is not JSON: {e}") from e
    if not isinstance(metadata, dict):
        raise CheckpointError(path, f"its metadata is {type(metadata).__name__}, not an object")
    for key, (rule, ok) in METADATA_RULES.items():
        if key in metadata and not ok(metadata[key]):
            raise CheckpointError(path, f"its metadata's {key} must be {rule} (got {metadata[key]!r})")
    if problem := model_problem([], metadata.get("test_bpd")):  # its type too
        raise _diverged(path, problem)
    return config, metadata


def read_header(path: str | os.PathLike) -> tuple[FlowConfig, dict[str, Any]]:
    """The config and metadata of a checkpoint, without reading its weights; CheckpointError if the file is
    missing, unreadable, or holds a value of the wrong type. Safe while a trainer rewrites the file: it reads
    one open file (one version) only."""
    path = Path(path)
    with _open(path) as f:
        return _parse(path, _header(path, f, os.fstat(f.fileno()).st_size))


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise CheckpointError(path, "no such file") from None
    except OSError as e:
        raise CheckpointError(path, f"cannot be read: {e}") from e


def model_problem(weights: Iterable[torch.Tensor], test_bpd: object = None) -> str | None:
    """What makes weights (and their test bits/dim, if given) a diverged model rather than a usable one;
    None if nothing does."""
    if not all(torch.isfinite(w).all() for w in weights if w.is_floating_point()):
        return "weights contain NaN or infinity"
    if test_bpd is None:
        return None
    if not isinstance(test_bpd, (int, float)) or not math.isfinite(test_bpd):
        return f"test bits/dim is {test_bpd} (not a finite number)"
    if test_bpd > MAX_TEST_BPD:
        return f"test bits/dim is {test_bpd:.4g}, above the {MAX_TEST_BPD:g} that no healthy model reaches"
    return None


def _diverged(path: str | os.PathLike, problem: str) -> CheckpointError:
    return CheckpointError(path, f"its {problem}: the training that wrote it had diverged")


def _build(path: str | os.PathLike, config: FlowConfig) -> Flow:
    try:
        return Flow(config)
    except (ValueError, TypeError) as e:
        raise CheckpointError(path, f"its config does not build a model: {e}") from e


def _check_shapes(path: str | os.PathLike, model: Flow, shapes: dict[str, tuple[int, ...]]) -> None:
    """CheckpointError unless the stored tensors have exactly the names and shapes of the model's."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    wrong = [k for k in expected if k in shapes and shapes[k] != expected[k]]
    if missing or unexpected or wrong:
        raise CheckpointError(path, "its weights do not match its architecture: "
                              f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}")


def _renamed_legacy(model: Flow, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights under today's names. Checkpoints written before the logit and the factor-outs became
    stages of `Flow.transform` name a block's weights `steps.N.*`, N counting the blocks after the logit
    with the factor-outs (`Flow.names`); today's name is `transform.steps.M.*`."""
    old_blocks = [t for _, t in model.transform.stages if t is None or t.kind != "preprocess"]
    prefixes = {module: name for name, module in model.named_modules()}

    def rename(key: str) -> str:
        match = re.fullmatch(r"steps\.(\d+)\.(.+)", key)
        if not match or int(match[1]) >= len(old_blocks) or old_blocks[int(match[1])] is None:
            return key  # today's name, or one that _check_shapes will report
        return f"{prefixes[old_blocks[int(match[1])]]}.{match[2]}"

    return {rename(k): v for k, v in tensors.items()}


def _read(path: str | os.PathLike) -> tuple[Flow, dict[str, torch.Tensor], dict[str, Any]]:
    """(a fresh model of the checkpoint's config, its weights, its metadata), with the weights checked
    against the config and for divergence; CheckpointError says what is wrong."""
    path = Path(path)
    with _open(path) as f:  # the whole file from one open file: header and weights of one version
        data = f.read()
    config, metadata = _parse(path, _header(path, io.BytesIO(data), len(data)))
    model = _build(path, config)
    try:
        tensors = load(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(path, f"its weights cannot be read (truncated or corrupt?): {e}") from e
    tensors = _renamed_legacy(model, tensors)
    _check_shapes(path, model, {k: tuple(v.shape) for k, v in tensors.items()})
    if problem := model_problem(tensors.values()):
        raise _diverged(path, problem)
    return model, tensors, metadata


def verify_checkpoint(path: str | os.PathLike) -> tuple[FlowConfig, dict[str, Any]]:
    """read_header, and also check what load_checkpoint checks: weights of the names and shapes its config
    needs, all finite, and a finite test bits/dim (a model that diverged is no model)."""
    model, _, metadata = _read(path)
    return model.config, metadata


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Flow:
    """The model of a checkpoint in eval mode, with `.metadata`; raises CheckpointError if unusable."""
    model, tensors, metadata = _read(path)
    model.load_state_dict(tensors)
    model.metadata = metadata
    return model.to(device).eval()


if __name__ == "__main__":  # python -m flow.checkpoint PATH: print a checkpoint's header
    if len(sys.argv) != 2:
        sys.exit("error: give one checkpoint: python -m flow.checkpoint PATH.safetensors")
    try:
        cfg, meta = read_header(sys.argv[1])
    except CheckpointError as e:
        sys.exit(f"error: {e}; give the path of a .safetensors checkpoint")
    print(json.dumps({"config": cfg.__dict__, "metadata": meta}, indent=2))
