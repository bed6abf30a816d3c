"""The trainer's sample pictures: image grids for MNIST, scatter images for 2-D points (the app's figures
are in app/)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch import Tensor
from torchvision.utils import make_grid

PAD = 2  # pixels between the images of a grid


def image_grid(images: Tensor, nrow: int = 8, scale: int = 1) -> Image.Image:
    """(N, 1, H, W) floats in [0, 1] -> one PIL grid image, upscaled by `scale` (nearest)."""
    grid = make_grid(images.detach().cpu().clamp(0, 1), nrow=nrow, padding=PAD, pad_value=0.5)
    arr = (grid[0].numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr, mode="L")
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def scatter_image(points: Tensor, size: int = 256, extent: float = 4.0) -> Image.Image:
    """(N, 2) points -> a square density-shaded picture of [-extent, extent]^2."""
    pts = points.detach().cpu().numpy()
    hist, _, _ = np.histogram2d(pts[:, 1], pts[:, 0], bins=size, range=[[-extent, extent], [-extent, extent]])
    shade = 1.0 - np.clip(hist / max(1.0, np.percentile(hist[hist > 0], 95) if (hist > 0).any() else 1.0), 0, 1)
    return Image.fromarray((shade[::-1] * 255).astype(np.uint8), mode="L")


def samples_picture(model, z: Tensor) -> Image.Image:
    """The model's samples from latents z (N, D): a grid of digits, or a scatter of 2-D points."""
    with torch.no_grad():
        x = model.decode(z)
    if len(model.config.shape) == 1:
        return scatter_image(x)
    return image_grid(x, nrow=int(np.ceil(np.sqrt(len(z)))))


def write_png(img: Image.Image, path: Path, text: dict[str, str]) -> None:
    """Save img as a PNG file whose text chunks hold `text` (read back with Image.open(path).text)."""
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    img.save(path, format="PNG", pnginfo=info)
