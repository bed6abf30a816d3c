"""A student's own data set for the Train page: an uploaded file or a drawn 2-D set, checked, bounded and
stored once under `<runs root>/datasets/<sha256[:12]>/<name>`, whose path a run then trains on (`--data PATH`).

The files are read by `flow.datafile` (the trainer's own reader), so the app refuses exactly what the trainer
would, plus what the app cannot show: it draws greyscale images and 2-D points (colour images in a zip are turned
to greyscale; colour arrays and points of another dimension are left to the command line). No Streamlit here.
"""
from __future__ import annotations

import hashlib
import io
import math
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from app.jobs import DATASETS_DIR, runs_root
from flow.datafile import HELD_OUT, DataFileError, images_from_folder, read_data_file

SUFFIXES = (".npy", ".npz", ".pt", ".zip")
MAX_UPLOAD_MB = 50  # the uploaded file
MAX_DECODED_MB = 256  # its arrays once read (a compressed .npz or a zip of PNGs can hold far more than it weighs)
MAX_IMAGES = 10000  # PNGs in a zip: with MAX_SIDE, at most 123 MB of colour pixels (twice that while stacked)
MAX_SIDE = 64  # pixels: an image of at most MAX_SIDE² pixels
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601: colour -> greyscale, as Pillow's convert("L")
LIMITS = (f"Up to {MAX_UPLOAD_MB} MB: .npy, .npz (arrays x, optional y, x_test, y_test) or .pt holding uint8 images "
          f"(N, H, W) or (N, 1, H, W), or float points (N, 2); or a .zip of up to {MAX_IMAGES:,} PNG images of one "
          f"size, at most {MAX_SIDE}×{MAX_SIDE} pixels. At most {MAX_DECODED_MB} MB once decoded.")
# a drawn set: each drawn point stands for DRAW_COPIES noisy copies, so a few strokes fill a batch many times over
DRAW_COPIES, DRAW_MIN, DRAW_NOISE, DRAW_SPACING = 16, 2000, 0.04, 4.0  # copies, at least this many points, their
# spread (data units), pixels between the samples of a stroke
DRAW_STEPS = 600  # optimizer steps a drawn set trains for (toy-2d's batch of 256): about 30 s on one thread


class UploadError(ValueError):
    """A file the app does not take: the message names it and says what to do."""


@dataclass(frozen=True)
class DataSet:
    """A stored data set as the preview shows it. `first`: the first training examples (uint8 (n, 1, H, W) images,
    or float32 (n, 2) points); `record`: flow.datafile's (file, sha256, shape, dtype, train, test, split)."""

    path: Path
    kind: str  # "images" or "points"
    first: np.ndarray
    record: dict
    notes: tuple[str, ...] = ()  # what the app changed on the way (greyscale)

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.first.shape[1:])


def datasets_root(root: Path | None = None) -> Path:
    return (root or runs_root()) / DATASETS_DIR


def _safe_name(name: str) -> str:
    """The upload's base name with only letters, digits, '.', '-' and '_' (it becomes a file name)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).lstrip("._") or "data"
    return base[-80:]


def _as_array(x: object) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def _app_check(name: str, x: np.ndarray) -> str:
    """"images" or "points" for an array the app can show; UploadError for one it leaves to the command line."""
    cli = f"Train it from the command line instead: python -m flow.train --data {name}"
    if x.dtype == np.uint8 and (x.ndim == 3 or (x.ndim == 4 and x.shape[1] == 1)):
        return "images"
    if x.dtype == np.uint8 and x.ndim == 4:
        raise UploadError(f"{name} holds colour images ({x.shape[1]} channels of {x.shape[2]}×{x.shape[3]} pixels): "
                          f"this app shows greyscale images only, (N, H, W) or (N, 1, H, W). {cli}.")
    if np.issubdtype(x.dtype, np.floating) and x.ndim == 2:
        if x.shape[1] != 2:
            raise UploadError(f"{name} holds {x.shape[1]}-D points: this app draws 2-D points only. {cli}.")
        return "points"
    raise UploadError(f"{name} holds a {x.dtype} array of shape {tuple(x.shape)}: images must be uint8 (0..255) of "
                      "shape (N, H, W) or (N, 1, H, W), points float of shape (N, 2).")


def _check_unpacked(name: str, path: Path) -> None:
    """UploadError for an .npz or .pt (zip archives, an .npz compressed) whose members unpack to more than
    MAX_DECODED_MB: read from the archive's directory, before anything is decompressed."""
    try:
        with zipfile.ZipFile(path) as z:
            size = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError):
        return  # not an archive (an old-style .pt): its size on disk is its size; the reader names what is wrong
    if size > MAX_DECODED_MB * 2**20:
        raise UploadError(f"{name} unpacks to {_mb(size)}; the app takes data sets up to {MAX_DECODED_MB} MB once "
                          "decoded: upload a smaller sample, or train from the command line.")


def describe(path: Path, notes: tuple[str, ...] = (), first: int = 64) -> DataSet:
    """The stored data set at `path`, read by the trainer's reader; UploadError if it is not one the app takes."""
    try:
        data = read_data_file(path, max_bytes=MAX_DECODED_MB * 2**20)
    except DataFileError as e:
        raise UploadError(f"{e}.") from None
    x = _as_array(data.x)
    kind = _app_check(path.name, x)
    if x.ndim == 3:
        x = x[:, None]
    return DataSet(path=path, kind=kind, first=np.ascontiguousarray(x[:first if kind == "images" else 2000]),
                   record=dict(data.record), notes=notes)


def _zip_images(source: Path, target: Path) -> tuple[str, ...]:
    """A zip of PNGs -> an .npz of uint8 x (N, 1, H, W) at `target` (flow.datafile decodes it within the app's
    bounds); the notes say what was converted."""
    try:
        x = _as_array(images_from_folder(source, max_images=MAX_IMAGES, max_pixels=MAX_SIDE**2,
                                         max_bytes=MAX_DECODED_MB * 2**20))
    except DataFileError as e:
        raise UploadError(f"{e}.") from None
    notes = ()
    if x.ndim == 4 and x.shape[1] in (3, 4):  # RGB(A): the app shows greyscale
        x = np.round(np.tensordot(x[:, :3].astype(np.float32), np.array(LUMA, np.float32), axes=([1], [0])))
        x = x.astype(np.uint8)[:, None]
        notes = (f"The {len(x):,} colour images were turned to greyscale (luma 0.299 R + 0.587 G + 0.114 B): "
                 "the app shows greyscale only.",)
    with open(target, "wb") as f:
        np.savez(f, x=x)
    return notes


def store_upload(name: str, data: bytes, root: Path | None = None) -> DataSet:
    """Check and store an uploaded data set; the same bytes uploaded again are stored once. UploadError (naming the
    file, saying what to do) for a file that is too large, not a data file, or one the app cannot show."""
    base = _safe_name(name)
    suffix = Path(base).suffix.lower()
    if suffix not in SUFFIXES:
        raise UploadError(f"{name} is not a data file the app reads: upload .npy, .npz, .pt, or a .zip of PNG images.")
    if len(data) > MAX_UPLOAD_MB * 2**20:
        raise UploadError(f"{name} is {_mb(len(data))}; the app takes files up to {MAX_UPLOAD_MB} MB: upload a "
                          "smaller sample, or train from the command line.")
    folder = datasets_root(root) / hashlib.sha256(data).hexdigest()[:12]
    stored = folder / (Path(base).stem + ".npz" if suffix == ".zip" else base)
    if stored.is_file():  # uploaded before: checked then
        return describe(stored)
    try:
        datasets_root(root).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".upload-", dir=datasets_root(root)))
    except OSError as e:
        raise UploadError(f"Cannot store {name} in {datasets_root(root)} ({e.strerror or e}): free some disk space.")
    try:
        (tmp / base).write_bytes(data)
        notes = ()
        if suffix in (".npz", ".pt"):
            _check_unpacked(name, tmp / base)
        if suffix == ".zip":
            notes = _zip_images(tmp / base, tmp / stored.name)
            (tmp / base).unlink()
        described = describe(tmp / stored.name, notes)
        try:
            tmp.rename(folder)  # atomic: a reader sees the folder whole or not at all
        except OSError:
            if not stored.is_file():  # another session stored the same bytes meanwhile: theirs is as good
                raise
        return replace(described, path=stored)
    except UploadError:
        raise
    except OSError as e:
        raise UploadError(f"Cannot store {name} in {datasets_root(root)} ({e.strerror or e}): free some disk space.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- a drawn 2-D data set ------------------------------------------------------------------------

def canvas_points(objects: list[dict], spacing: float = DRAW_SPACING) -> np.ndarray:
    """Canvas pixel coordinates (n, 2) of what was drawn on a streamlit-drawable-canvas: each point-mode circle's
    centre, and each free-drawn stroke sampled every `spacing` pixels along its path (fabric.js path commands
    M, Q, L: the quadratic curves are followed by their control polygons, close enough at this spacing)."""
    out: list[np.ndarray] = []
    for o in objects or []:
        kind = str(o.get("type", "")).lower()  # fabric.js 6 writes "Circle", "Path"; older versions lower case
        if kind == "circle":  # positioned by its centre or by its bounding box's corner
            r = float(o.get("radius", 0)) * float(o.get("scaleX", 1))
            x, y = float(o["left"]), float(o["top"])
            out.append(np.array([[x if o.get("originX") == "center" else x + r,
                                  y if o.get("originY") == "center" else y + r]]))
        elif kind == "path":
            corners = [np.array(cmd[i:i + 2], float) for cmd in o.get("path", []) for i in range(1, len(cmd) - 1, 2)]
            for a, b in zip(corners, corners[1:]):
                steps = max(1, math.ceil(np.hypot(*(b - a)) / spacing))
                out.append(a + (b - a) * (np.arange(steps)[:, None] / steps))
            out += [corners[-1][None]] if corners else []
    return np.concatenate(out) if out else np.zeros((0, 2))


def draw_copies(n: int) -> int:
    """How many noisy copies of each of n drawn points the data set holds: DRAW_COPIES, or more for a sparse
    drawing, so that it holds at least DRAW_MIN points (many batches of the toy-2d preset)."""
    return max(DRAW_COPIES, math.ceil(DRAW_MIN / max(n, 1)))


def drawn_dataset(pixels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Canvas points (n, 2) -> a float32 data set (n * draw_copies(n), 2): y turned up, centred on zero mean and
    scaled to unit standard deviation (one scale for both axes, so the shape is kept), each point then copied with
    Gaussian noise of DRAW_NOISE. ValueError for fewer than 3 distinct points."""
    if len(np.unique(pixels, axis=0)) < 3:
        raise ValueError("draw at least a few points")
    xy = pixels * np.array([1.0, -1.0])
    xy = xy - xy.mean(0)
    xy = xy / np.sqrt((xy**2).mean())  # the standard deviation of both coordinates together
    g = np.random.default_rng(seed)
    k = draw_copies(len(xy))
    copies = np.repeat(xy, k, axis=0) + g.normal(0, DRAW_NOISE, (len(xy) * k, 2))
    return copies[g.permutation(len(copies))].astype(np.float32)


def draw_epochs(n_points: int, batch: int = 256) -> int:
    """Epochs that make about DRAW_STEPS steps on a drawn set of n_points (flow.datafile holds a tenth out)."""
    return min(500, max(5, math.ceil(DRAW_STEPS / max(1, int(n_points * (1 - HELD_OUT)) // batch))))


def store_points(points: np.ndarray, root: Path | None = None) -> DataSet:
    """A drawn set stored as `drawn.npy` like an upload (the same drawing twice: once)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(points, np.float32))
    return store_upload("drawn.npy", buf.getvalue(), root)
