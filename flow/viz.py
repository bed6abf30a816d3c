"""The trainer's sample pictures: image grids for MNIST, scatter images for 2-D points (the app's figures
are in app/); and the model card's comparison of image models' samples from the same latents:

    python -m flow.viz A.safetensors B.safetensors [--temperature 0.7] [--seed 0] --out PATH.png

Pictures need Pillow, an optional dependency (`pip install "realnvp-explorer[app]"`): it is imported on first
use, and `PILLOW` says whether it is there (the trainer skips its sample pictures without it).
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from flow.checkpoint import CheckpointError, load_checkpoint
from flow.classes import class_rows
from flow.model import Flow
from flow.run_protocol import EXIT_REFUSED

if TYPE_CHECKING:
    from PIL import Image as PILImage

PILLOW = importlib.util.find_spec("PIL") is not None  # Pillow importable: pictures can be drawn
PAD = 2  # pixels between the images of a grid
LABEL_HEIGHT, GAP = 40, 40  # side_by_side: pixels above each grid for its label, and between the grids


def pillow():
    """The PIL package, imported on first use; ImportError saying how to install it when it is missing."""
    try:
        import PIL.Image
        import PIL.ImageDraw
        import PIL.ImageFont
        import PIL.PngImagePlugin
    except ImportError as e:
        raise ImportError('drawing pictures needs Pillow, an optional dependency: pip install '
                          '"realnvp-explorer[app]" (or pip install "pillow>=12.3")') from e
    return PIL


def image_grid(images: Tensor, nrow: int = 8, scale: int = 1) -> PILImage.Image:
    """(N, C, H, W) floats in [0, 1] -> one PIL grid image, RGB for 3 channels, else greyscale (the first
    channel): nrow images a row, PAD grey (0.5) pixels around each (torchvision's make_grid layout; one image
    alone gets no border), upscaled by `scale` (nearest). ImportError without Pillow."""
    Image = pillow().Image
    x = images.detach().cpu().clamp(0, 1).float()
    x = (x[:, :3] if x.shape[1] == 3 else x[:, :1]).permute(0, 2, 3, 1).numpy()  # (N, H, W, 1 or 3)
    if len(x) == 1:
        grid = x[0]
    else:
        (n, h, w, c), cols = x.shape, min(nrow, len(x))
        grid = np.full((math.ceil(n / cols) * (h + PAD) + PAD, cols * (w + PAD) + PAD, c), 0.5, dtype=np.float32)
        for k, img in enumerate(x):
            top, left = PAD + (k // cols) * (h + PAD), PAD + (k % cols) * (w + PAD)
            grid[top:top + h, left:left + w] = img
    pixels = (grid * 255).round().astype(np.uint8)
    img = Image.fromarray(pixels[..., 0], mode="L") if pixels.shape[-1] == 1 else Image.fromarray(pixels, mode="RGB")
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def scatter_image(points: Tensor, size: int = 256, extent: float = 4.0) -> PILImage.Image:
    """(N, 2) points -> a square density-shaded picture of [-extent, extent]^2. ImportError without Pillow."""
    Image = pillow().Image
    pts = points.detach().cpu().numpy()
    hist, _, _ = np.histogram2d(pts[:, 1], pts[:, 0], bins=size, range=[[-extent, extent], [-extent, extent]])
    shade = 1.0 - np.clip(hist / max(1.0, np.percentile(hist[hist > 0], 95) if (hist > 0).any() else 1.0), 0, 1)
    return Image.fromarray((shade[::-1] * 255).astype(np.uint8), mode="L")


def samples_picture(model, z: Tensor, scale: int = 1) -> PILImage.Image:
    """The model's samples from latents z (N, D): a grid of digits (upscaled by `scale`), or a scatter of
    2-D points. A conditional model draws one row per class, N / K latents each (`classes.class_rows`), where K
    divides N, else a class drawn at random for each latent."""
    k, per_row = model.num_classes, int(np.ceil(np.sqrt(len(z))))
    y = None
    if k and len(z) % k == 0:
        per_row = len(z) // k
        y = class_rows(k, per_row)
    elif k:  # classes drawn at random, as the model's own sampler draws them
        y = model.random_classes(len(z), 0)
    with torch.no_grad():
        x = model.decode(z, y)
    if len(model.config.shape) == 1:
        return scatter_image(x)
    return image_grid(x, nrow=per_row, scale=scale)


def model_label(model: Flow) -> str:
    """'preset, N epochs (test bits/dim)' from a checkpoint's metadata."""
    meta = model.metadata
    bpd = f" ({meta['test_bpd']:.3f})" if isinstance(meta.get("test_bpd"), float) else ""
    return f"{meta.get('preset', 'model')}, {meta.get('epoch', '?')} epochs{bpd}"


def side_by_side(models: list[Flow], labels: list[str], n: int = 64, temperature: float = 0.7, seed: int = 0,
                 scale: int = 2) -> PILImage.Image:
    """Each image model's samples from the same n latents (`Flow.latents(n, temperature, seed)`), its grid
    (upscaled by `scale`) under its label, left to right: the model card's comparison. ValueError for 2-D
    models or models of different shapes (they share no latents)."""
    shapes = {tuple(m.config.shape) for m in models}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"the models must be image models of one shape to share latents (got {sorted(shapes)})")
    z = models[0].latents(n, temperature, seed)
    grids = [samples_picture(m, z, scale) for m in models]
    PIL = pillow()
    font = PIL.ImageFont.load_default(size=16)
    size = (sum(g.width for g in grids) + GAP * (len(grids) - 1), LABEL_HEIGHT + grids[0].height)
    out = PIL.Image.new("L", size, 255)
    draw = PIL.ImageDraw.Draw(out)
    for i, (g, label) in enumerate(zip(grids, labels)):
        x = i * (g.width + GAP)
        draw.text((x + 6, 10), label, fill=0, font=font)
        out.paste(g, (x, LABEL_HEIGHT))
    return out


def write_png(img: PILImage.Image, path: Path, text: dict[str, str]) -> None:
    """Save img as a PNG file whose text chunks hold `text` (read back with Image.open(path).text)."""
    info = pillow().PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    img.save(path, format="PNG", pnginfo=info)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flow.viz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path, help="image-model checkpoints, left to right")
    p.add_argument("--labels", nargs="+", default=None,
                   help="one per checkpoint; default: its preset, epochs and test bits/dim")
    p.add_argument("--temperature", type=float, default=0.7, help="z ~ N(0, T^2 I)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents")
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = p.parse_args(argv)
    try:
        models = [load_checkpoint(c) for c in args.checkpoints]
        labels = args.labels or [model_label(m) for m in models]
        if len(labels) != len(models):
            raise ValueError(f"{len(labels)} labels for {len(models)} checkpoints: give one per checkpoint")
        img = side_by_side(models, labels, temperature=args.temperature, seed=args.seed)
        text = {"checkpoints": " | ".join(map(str, args.checkpoints)), "temperature": str(args.temperature),
                "seed": str(args.seed)}
        write_png(img, args.out, text)
    except (CheckpointError, ValueError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
