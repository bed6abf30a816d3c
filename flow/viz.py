"""The trainer's sample pictures: image grids for MNIST, scatter images for 2-D points (the app's figures
are in app/)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
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


def samples_picture(model, n: int = 64, temperature: float = 1.0, seed: int = 0) -> Image.Image:
    """A picture of n samples: a grid of digits, or a scatter of 2-D points (more of them)."""
    with torch.no_grad():
        if len(model.config.shape) == 1:
            return scatter_image(model.sample(max(n, 4000), temperature, seed))
        return image_grid(model.sample(n, temperature, seed), nrow=int(np.ceil(np.sqrt(n))))
