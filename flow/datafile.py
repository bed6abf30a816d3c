"""One's own data set from a file: `read_data_file` for .npy, .npz and .pt files, `images_from_folder` for a
folder or a .zip of PNG images. Both refuse what a flow cannot train on with a `DataFileError`: one line saying
what is wrong and what to do. Torch (for .pt files and the tensors returned) and Pillow are imported on use.

The examples a file may hold, as `x`:
    uint8 images (N, H, W) -> (N, 1, H, W), or (N, C, H, W) with 1 to 4 channels; other integer dtypes are
    taken when every value is 0..255
    float points (N, D), D >= 2 -> float32 (float64 and float16 converted, as the record says)
An .npz holds arrays `x`, optional `y` (integer labels, one per example), optional `x_test` (and `y_test`);
a .pt file a tensor or a dict of those keys (read with `torch.load(weights_only=True)`); an .npy one array.
Without `x_test` a held-out test split is drawn: `HELD_OUT` of the examples (at least 1, at most
`MAX_HELD_OUT`) by a seed-0 permutation, the same every time for the same file.
"""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

SUFFIXES = (".npy", ".npz", ".pt")
KEYS = ("x", "y", "x_test", "y_test")
NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file (numpy.lib.format)
HELD_OUT = 0.1  # the share of a file's examples held out for testing when it has no x_test
MAX_HELD_OUT = 10_000
MIN_EXAMPLES = 2  # one to train on and one to test on
MAX_CHANNELS = 4
# images_from_folder's bounds: a student's upload, not a benchmark
MAX_IMAGES = 70_000
MAX_IMAGE_PIXELS = 512 * 512
MAX_FOLDER_BYTES = 512 * 2**20


class DataFileError(ValueError):
    """A data file that cannot be used: the message is one line saying what is wrong and what to do."""


@dataclass
class DataFile:
    """A data file's examples as the model takes them: x uint8 (N, C, H, W) or float32 (N, D), y int64 (N,) or
    None, the test split x_test / y_test (the file's, or held out of x), and the `record` a run keeps: file
    (basename), sha256 (of the file's bytes), shape (of one example), dtype, train and test (counts), labels
    (how many examples have one), split (how the test split was made) and note (what was converted, or "")."""

    x: Tensor
    y: Tensor | None
    x_test: Tensor
    y_test: Tensor | None
    record: dict[str, Any] = field(default_factory=dict)


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as `read_data_file` records it (OSError if it cannot be read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _arrays(path: Path, raw: bytes) -> dict[str, Any]:
    """The named arrays (numpy or torch) a file holds, read without unpickling anything."""
    name, suffix = path.name, path.suffix.lower()
    if suffix == ".npy":
        if not raw.startswith(NPY_MAGIC):  # numpy would try the bytes as a pickle and say so: misleading
            raise DataFileError(f"{name} is not a .npy file (it does not start with numpy's header); save an "
                                "array with np.save(path, x)")
        try:
            return {"x": np.load(io.BytesIO(raw), allow_pickle=False)}
        except ValueError as e:
            why = "it holds Python objects (a pickle), which are not loaded" if "pickle" in str(e) else str(e)
            raise DataFileError(f"{name} cannot be read as an array: {why}; save a numeric array with "
                                "np.save(path, x)") from None
        except (OSError, EOFError) as e:
            raise DataFileError(f"{name} is not a readable .npy file ({e}); save it with np.save(path, x)") from None
    if suffix == ".npz":
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except ValueError as e:
            why = "it holds Python objects (a pickle), which are not loaded" if "pickle" in str(e) else str(e)
            raise DataFileError(f"{name} cannot be read: {why}; save numeric arrays with np.savez(path, x=x)") from None
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise DataFileError(f"{name} is not a readable .npz file ({e}); save it with np.savez(path, x=x)") from None
        if "x" not in arrays and len(arrays) == 1:  # np.savez(path, array): its one array is the examples
            arrays = {"x": next(iter(arrays.values()))}
        return arrays
    import pickle

    import torch

    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataFileError(f"{name} is not a tensor file that loads without running code ({first[:200]}); save a "
                            "tensor or a dict of tensors x, y, x_test, y_test with torch.save") from None
    if isinstance(obj, torch.Tensor):
        return {"x": obj}
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        return obj
    raise DataFileError(f"{name} holds a {type(obj).__name__}, not a tensor or a dict of tensors x, y, x_test, "
                        "y_test: save one of those with torch.save")


def _numpy(name: str, key: str, value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        import torch

        if not isinstance(value, torch.Tensor):
            raise DataFileError(f"{name}: {key} is a {type(value).__name__}, not an array: store {key} as a tensor")
        value = value.detach().cpu()
        value = value.float() if value.dtype == torch.bfloat16 else value  # numpy has no bfloat16
        value = value.numpy()
    if value.dtype.kind not in "biuf":
        raise DataFileError(f"{name}: {key} has dtype {value.dtype}, not numbers: store uint8 images or float points")
    return value


def _examples(name: str, key: str, a: np.ndarray, notes: list[str]) -> np.ndarray:
    """x or x_test as uint8 (N, C, H, W) or float32 (N, D); DataFileError for anything else."""
    kind, shape = a.dtype.kind, tuple(a.shape)
    if kind == "b":
        raise DataFileError(f"{name}: {key} is boolean: store images as uint8 (0 and 255) or points as floats")
    if kind == "f":
        if a.ndim != 2:
            hint = (" (images must be 8-bit: (x * 255).round() as uint8)" if a.ndim in (3, 4) else "")
            raise DataFileError(f"{name}: {key} holds floats of shape {shape}: float data must be points (N, D)"
                                f"{hint}")
        if a.shape[1] < 2:
            raise DataFileError(f"{name}: {key} has shape {shape}: points need at least 2 dimensions (D >= 2) for "
                                "a coupling to split them")
        if not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).any(1).sum())
            raise DataFileError(f"{name}: {key} has {bad} point(s) with NaN or infinity: remove or fix them")
        if a.dtype != np.float32:
            if np.abs(a).max(initial=0) > np.finfo(np.float32).max:
                raise DataFileError(f"{name}: {key} has values beyond float32's range: rescale the points")
            notes.append(f"{key} {a.dtype} converted to float32")
            a = a.astype(np.float32)
        return a
    # integers: 8-bit images
    if a.ndim not in (3, 4):
        what = ("points must be floats (x.astype('float32'))" if a.ndim == 2
                else "images must be (N, H, W) or (N, C, H, W)")
        raise DataFileError(f"{name}: {key} holds integers of shape {shape}: {what}")
    if a.ndim == 4 and not 1 <= a.shape[1] <= MAX_CHANNELS:
        hint = (": it looks like (N, H, W, C); transpose it to (N, C, H, W)" if 1 <= a.shape[3] <= MAX_CHANNELS
                else "")
        raise DataFileError(f"{name}: {key} has shape {shape}, with {a.shape[1]} channels where images (N, C, H, W) "
                            f"have 1 to {MAX_CHANNELS}{hint}")
    if min(a.shape[-2:]) < 2:
        raise DataFileError(f"{name}: {key} has shape {shape}: images must be at least 2x2 pixels")
    if a.dtype != np.uint8:
        if a.size and (a.min() < 0 or a.max() > 255):
            raise DataFileError(f"{name}: {key} has pixel values from {a.min()} to {a.max()}: 8-bit images take "
                                "0..255; rescale them to 0..255 and store uint8")
        notes.append(f"{key} {a.dtype} converted to uint8")
        a = a.astype(np.uint8)
    return a[:, None] if a.ndim == 3 else a


def _labels(name: str, key: str, a: np.ndarray, n: int) -> np.ndarray:
    if a.ndim != 1 or len(a) != n or a.dtype.kind not in "iu":
        raise DataFileError(f"{name}: {key} must be integer labels of shape ({n},), one per example "
                            f"(got {a.dtype} of shape {tuple(a.shape)})")
    return a.astype(np.int64)


def read_data_file(path: str | os.PathLike, max_bytes: int | None = None) -> DataFile:
    """A data file's examples, labels, test split and record (module docstring). `max_bytes`: refuse a larger
    file before reading it. Raises DataFileError (a ValueError) with one line for a missing, too big, unreadable
    or unsuitable file."""
    import torch

    path = Path(path)
    name = path.name
    if path.suffix.lower() not in SUFFIXES:
        raise DataFileError(f"{name}: a data file must be .npy, .npz or .pt (got {path.suffix or 'no suffix'}); save "
                            "the examples with np.save, np.savez or torch.save")
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise DataFileError(f"{name} has {size:,} bytes, more than the {max_bytes:,} allowed: use a subset of the "
                                "examples")
        raw = path.read_bytes()
    except IsADirectoryError:
        raise DataFileError(f"{path} is a folder, not a data file: give a .npy, .npz or .pt file") from None
    except OSError as e:
        raise DataFileError(f"cannot read the data file {path} ({e.strerror or e}): check the path") from None
    arrays = _arrays(path, raw)
    if unknown := sorted(set(arrays) - set(KEYS)):
        raise DataFileError(f"{name} holds {', '.join(unknown)}: a data file holds x (the examples) and optionally "
                            "y, x_test, y_test; rename or remove the others")
    if "x" not in arrays:
        raise DataFileError(f"{name} has no array x: name the examples x (np.savez(path, x=x))")
    if "y_test" in arrays and "x_test" not in arrays:
        raise DataFileError(f"{name} has y_test but no x_test: add the test examples x_test, or remove y_test")
    notes: list[str] = []
    x = _examples(name, "x", _numpy(name, "x", arrays["x"]), notes)
    if len(x) < (1 if "x_test" in arrays else MIN_EXAMPLES):
        raise DataFileError(f"{name} has {len(x)} example(s): give at least {MIN_EXAMPLES}, one to train on and one "
                            "to test on")
    y = _labels(name, "y", _numpy(name, "y", arrays["y"]), len(x)) if "y" in arrays else None
    if "x_test" in arrays:
        x_test = _examples(name, "x_test", _numpy(name, "x_test", arrays["x_test"]), notes)
        if x_test.shape[1:] != x.shape[1:] or x_test.dtype != x.dtype or not len(x_test):
            raise DataFileError(f"{name}: x_test holds {len(x_test)} {x_test.dtype} examples of shape "
                                f"{tuple(x_test.shape[1:])}, but x's are {x.dtype} of shape {tuple(x.shape[1:])}: "
                                "make them alike (and x_test not empty)")
        y_test = _labels(name, "y_test", _numpy(name, "y_test", arrays["y_test"]), len(x_test)) \
            if "y_test" in arrays else None
        if (y is None) != (y_test is None):
            raise DataFileError(f"{name} has labels for {'x' if y is not None else 'x_test'} only: give both y and "
                                "y_test, or neither")
        split = "the file's own x_test"
    else:
        n_test = min(MAX_HELD_OUT, max(1, round(len(x) * HELD_OUT)))
        held = np.zeros(len(x), bool)
        held[np.random.default_rng(0).permutation(len(x))[:n_test]] = True  # kept in the file's order
        x, x_test = x[~held], x[held]
        y, y_test = (None, None) if y is None else (y[~held], y[held])
        split = f"held out {n_test} of {len(held)} examples (a seed-0 permutation)"
    record = {"file": name, "sha256": hashlib.sha256(raw).hexdigest(), "shape": list(x.shape[1:]),
              "dtype": str(x.dtype), "train": len(x), "test": len(x_test),
              "labels": 0 if y is None else len(y) + len(y_test), "split": split, "note": "; ".join(notes)}

    def tensor(a: np.ndarray | None) -> Tensor | None:
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a))

    return DataFile(tensor(x), tensor(y), tensor(x_test), tensor(y_test), record)


_PIL_MODES = {"L": "L", "1": "L", "LA": "L", "RGB": "RGB", "RGBA": "RGB", "P": "RGB", "CMYK": "RGB", "YCbCr": "RGB"}


def images_from_folder(path_or_zip: str | os.PathLike, max_images: int = MAX_IMAGES,
                       max_pixels: int = MAX_IMAGE_PIXELS, max_bytes: int = MAX_FOLDER_BYTES) -> Tensor:
    """The PNG images in a folder (and its subfolders) or a .zip, in the order of their sorted paths, as uint8
    (N, C, H, W): greyscale as 1 channel, colour as 3 (RGBA, palette and other modes converted; a set mixing grey
    and colour is all colour). Bounded: at most `max_images` images of at most `max_pixels` pixels each and
    `max_bytes` in all. Raises DataFileError for no PNG, too many or too big images, images of different sizes,
    16-bit or unreadable images, or Pillow missing."""
    import torch

    try:
        from PIL import Image
    except ImportError:
        raise DataFileError("reading PNG images needs Pillow: pip install pillow") from None
    source = Path(path_or_zip)
    where = source.name
    entries: list[tuple[str, Any]] = []  # (name, a function returning the bytes)
    total, archive = 0, None
    try:
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() == ".png"
                           and not any(part.startswith(".") for part in p.relative_to(source).parts))
            for p in files:
                total += p.stat().st_size
                entries.append((str(p.relative_to(source)), p.read_bytes))
        elif zipfile.is_zipfile(source):
            archive = zipfile.ZipFile(source)
            infos = sorted((i for i in archive.infolist() if not i.is_dir() and i.filename.lower().endswith(".png")
                            and not any(part.startswith((".", "__MACOSX")) for part in i.filename.split("/"))),
                           key=lambda i: i.filename)
            for info in infos:
                total += info.file_size
                entries.append((info.filename, lambda info=info: archive.read(info)))
        elif source.exists():
            raise DataFileError(f"{where} is neither a folder nor a .zip file: give a folder or a .zip of PNG images")
        else:
            raise DataFileError(f"{source} does not exist: give a folder or a .zip of PNG images")
    except (OSError, zipfile.BadZipFile) as e:
        raise DataFileError(f"cannot read {where} ({e}): give a folder or a .zip of PNG images") from None
    if not entries:
        raise DataFileError(f"{where} holds no PNG image (*.png): add some, or convert the images to PNG")
    if len(entries) > max_images:
        raise DataFileError(f"{where} holds {len(entries):,} PNG images, more than the {max_images:,} allowed: use "
                            "fewer")
    if total > max_bytes:
        raise DataFileError(f"{where}'s PNG images have {total:,} bytes, more than the {max_bytes:,} allowed: use "
                            "fewer or smaller images")
    images, modes, size = [], set(), None
    try:
        for entry, read in entries:
            try:
                im = Image.open(io.BytesIO(read()))
                if im.format != "PNG":
                    raise DataFileError(f"{where}: {entry} is a {im.format} image named .png: convert it to PNG")
                if im.width * im.height > max_pixels:
                    raise DataFileError(f"{where}: {entry} has {im.width}x{im.height} pixels, more than the "
                                        f"{max_pixels:,} allowed per image: make the images smaller")
                if size is None:
                    size = im.size
                elif im.size != size:
                    raise DataFileError(f"{where}: {entry} is {im.width}x{im.height} pixels, but the first image is "
                                        f"{size[0]}x{size[1]}: make every image the same size")
                if im.mode not in _PIL_MODES:
                    raise DataFileError(f"{where}: {entry} has mode {im.mode} (16-bit or 32-bit values): save the "
                                        "images with 8 bits per channel")
                mode = _PIL_MODES[im.mode]
                if im.mode == "P":  # a greyscale palette stays one channel
                    rgb = np.asarray(im.convert("RGB"))
                    mode = "L" if (rgb == rgb[..., :1]).all() else "RGB"
                    arr = rgb[..., 0] if mode == "L" else rgb
                else:
                    arr = np.asarray(im.convert(mode))
            except (OSError, ValueError, SyntaxError, zipfile.BadZipFile, Image.DecompressionBombError) as e:
                if isinstance(e, DataFileError):
                    raise
                raise DataFileError(f"{where}: {entry} is not a readable PNG image ({e}): remove or re-save it") \
                    from None
            modes.add(mode)
            images.append(arr)
    finally:
        if archive is not None:
            archive.close()
    colour = "RGB" in modes
    out = np.stack([(np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a) if colour else a[..., None]
                    for a in images])
    return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))
