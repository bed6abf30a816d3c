"""Any picture a user brings (an upload, a canvas drawing) -> one MNIST-style 28x28 uint8 digit.

MNIST's convention, which the models learned: a white digit on a black background, the digit's
bounding box scaled to fit 20x20 and centred by its centre of mass in the 28x28 frame.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

SIZE = 28
BOX = 20                      # MNIST fits each digit's bounding box into 20x20 ...
MAX_PIXELS = 40_000_000       # refuse decoding anything larger (a 40-megapixel photo is plenty)
MAX_DECODE_BYTES = 100_000_000  # what one picture may take while decoded at full size, before it is shrunk
WORKING_SIDE = 512            # big pictures are shrunk to this first: 28x28 needs no more
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")  # the only decoders an upload reaches (JPEG opens MPO too)
# Bytes per pixel while decoding at full size, checked before decoding: Pillow's own storage of the mode (RGB and
# 32-bit modes take 4) plus the full-size copies made before the picture is shrunk: palette and 1-bit are converted
# first (their values are not intensities; palette to RGBA measured 8 bytes a pixel), I;16 too (Image.reduce does
# not take it), RGBA and LA take 8 (reduce premultiplies alpha in a copy), and WebP's decoder 16 in any mode (it
# decodes into a buffer of its own and copies). Measured in tests/test_images.py. Every other mode is shrunk as it is.
_FULL_SIZE_BYTES = {"1": 1 + 1, "L": 1, "P": 1 + 8, "PA": 4 + 8, "RGBA": 8, "LA": 8,
                    "I;16": 2 + 4, "I;16L": 2 + 4, "I;16B": 2 + 4, "I;16N": 2 + 4}
_WEBP_BYTES = 16
_TOP = "realnvp_full_scale"  # img.info key: a 16-bit picture's full scale, kept across its conversion to mode I
_CONVERT_FIRST = {"1": "L", "P": "RGBA", "PA": "RGBA", "I;16": "I", "I;16L": "I", "I;16B": "I", "I;16N": "I"}
INK_LEVEL = 0.2               # pixels brighter than this (after inversion) count as the digit


class ImageInputError(ValueError):
    """The bytes are not a picture we can turn into a digit; the message says what to do."""


def to_mnist_uint8(data: bytes, fit: bool | None = None) -> Tensor:
    """Image file bytes (PNG, JPEG, GIF, BMP, WebP or TIFF: FORMATS) -> uint8 tensor (1, 1, 28, 28).

    Grayscale, alpha composited on the background that contrasts the opaque ink, inverted if it
    looks dark-on-light, then either fitted like MNIST (`fit=True`: crop to the ink, scale to 20x20,
    centre of mass at the centre) or padded square and resized whole (`fit=False`). The default
    fits everything except pictures already 28x28. Raises `ImageInputError` for non-images, other formats, and
    pictures over MAX_PIXELS or whose full-size decode would take more than MAX_DECODE_BYTES.
    """
    gray = _grayscale(_open(data))
    if _border_mean(gray) > 0.5:
        gray = 1.0 - gray
    if fit is None:
        fit = gray.shape != (SIZE, SIZE)
    out = _fit_like_mnist(gray) if fit else _resize(_pad_square(gray), SIZE, SIZE)
    return torch.from_numpy(np.round(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)).view(1, 1, SIZE, SIZE)


def _open(data: bytes) -> Image.Image:
    if not data:
        raise ImageInputError("The file is empty. Upload a picture of a digit (PNG, JPEG, GIF, BMP, WebP or TIFF).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
            w, h = img.size  # from the header: nothing is decoded yet
            if w * h > MAX_PIXELS:
                raise ImageInputError(f"The picture is {w}x{h} = {w * h / 1e6:.0f} megapixels; the limit is "
                                      f"{MAX_PIXELS / 1e6:.0f}. Shrink or crop it and upload it again.")
            img.draft("L", (WORKING_SIDE, WORKING_SIDE))  # JPEG: decode at a reduced scale (size shrinks here)
            per_pixel = _WEBP_BYTES if img.format == "WEBP" else _FULL_SIZE_BYTES.get(img.mode, 4)
            cost = img.size[0] * img.size[1] * per_pixel
            if cost > MAX_DECODE_BYTES:
                raise ImageInputError(
                    f"The picture is {w}x{h} in mode {img.mode}: decoding it would take {cost / 1e6:.0f} MB, the "
                    f"limit is {MAX_DECODE_BYTES / 1e6:.0f} MB. Shrink it (a digit needs no more than "
                    f"{WORKING_SIDE} px a side) or save it as an 8-bit PNG or a JPEG, and upload that.")
            img.load()
            return ImageOps.exif_transpose(_bounded(img))
    except ImageInputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageInputError("This file is not a picture in a format the app reads (PNG, JPEG, GIF, BMP, "
                              "WebP or TIFF). Save it as PNG or JPEG and upload that.") from e
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt files
        raise ImageInputError(f"The picture could not be decoded ({e}). Save it again as PNG or JPEG and "
                              "upload that.") from e


def _bounded(img: Image.Image) -> Image.Image:
    """Shrink a decoded picture to at most 2 * WORKING_SIDE a side in its own mode (Image.reduce: area averaging by
    an integer factor), before any conversion makes full-size copies in a wider mode."""
    if img.mode in _CONVERT_FIRST:
        sixteen = img.mode.startswith("I;16")
        img = img.convert(_CONVERT_FIRST[img.mode])
        if sixteen:
            img.info[_TOP] = 65535.0  # its full scale, which mode I no longer says
    factor = max(img.size) // WORKING_SIDE
    return img.reduce(factor) if factor > 1 else img


def _grayscale(img: Image.Image) -> np.ndarray:
    """Luminance in [0, 1] as float32 (H, W); transparent parts become the background."""
    if img.mode in ("I", "F"):  # 16/32-bit and float (16-bit arrives as I, from _bounded): one band, no alpha
        arr = np.asarray(img, dtype=np.float32)
        top = img.info.get(_TOP) or _range_top(arr)
        return _shrink((arr / top).astype(np.float32))
    try:
        rgba = img.convert("RGBA")
    except ValueError:  # exotic modes (LAB, HSV) convert to RGB only
        rgba = img.convert("RGB").convert("RGBA")
    if max(rgba.size) > WORKING_SIDE:
        rgba.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.BOX)
    la = np.asarray(rgba.convert("LA"), dtype=np.float32) / 255.0
    lum, alpha = la[..., 0], la[..., 1]
    if alpha.min() > 0.99:
        return lum
    # Ink is what is opaque; put it on the background it contrasts with (dark ink on white).
    ink = float((lum * alpha).sum() / max(alpha.sum(), 1e-6))
    background = 1.0 if ink < 0.5 else 0.0
    return lum * alpha + background * (1.0 - alpha)


def _range_top(arr: np.ndarray) -> float:
    """Full scale of a 32-bit or float picture: the smallest of 1, 255, 65535 that holds its values."""
    top = float(arr.max()) if arr.size else 1.0
    return next((t for t in (1.0, 255.0, 65535.0) if top <= t), max(top, 1.0))


def _shrink(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    scale = WORKING_SIDE / max(h, w)
    return _resize(gray, max(1, round(h * scale)), max(1, round(w * scale))) if scale < 1 else gray


def _border_mean(gray: np.ndarray) -> float:
    """Mean of the outermost ring of pixels: the background's brightness for a centred digit."""
    ring = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(ring.mean())


def _resize(gray: np.ndarray, h: int, w: int) -> np.ndarray:
    """Area averaging when shrinking (no aliasing, no ringing), bilinear when enlarging."""
    shrinking = h < gray.shape[0] or w < gray.shape[1]
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(gray.astype(np.float32)).resize((w, h), resample))


def _pad_square(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    side = max(h, w)
    out = np.zeros((side, side), np.float32)
    out[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = gray
    return out


def _fit_like_mnist(gray: np.ndarray) -> np.ndarray:
    """Crop to the ink, scale the longer side to 20 px, paste with the centre of mass at pixel (14, 14)."""
    rows, cols = np.nonzero(gray > INK_LEVEL * max(float(gray.max()), 1e-6))
    if rows.size == 0:  # blank: nothing to centre
        return _resize(_pad_square(gray), SIZE, SIZE)
    crop = gray[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    digit = _resize(crop, max(1, round(h * scale)), max(1, round(w * scale)))
    h, w = digit.shape
    mass = digit.sum()
    cy = (digit.sum(1) * np.arange(h)).sum() / mass if mass > 0 else (h - 1) / 2
    cx = (digit.sum(0) * np.arange(w)).sum() / mass if mass > 0 else (w - 1) / 2
    top = int(np.clip(round(SIZE / 2 - cy), 0, SIZE - h))  # MNIST's centres of mass sit at (14.0, 14.0)
    left = int(np.clip(round(SIZE / 2 - cx), 0, SIZE - w))
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top:top + h, left:left + w] = digit
    return out
