"""The trainer's sample pictures: image grids for MNIST, scatter images for 2-D points (the app's figures
are in app/); and the model card's comparison of image models' samples from the same latents:

    python -m flow.viz A.safetensors B.safetensors [--temperature 0.7] [--seed 0] --out PATH.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo
from torch import Tensor
from torchvision.utils import make_grid

from flow.checkpoint import CheckpointError, load_checkpoint
from flow.model import Flow
from flow.run_protocol import EXIT_REFUSED

PAD = 2  # pixels between the images of a grid
LABEL_HEIGHT, GAP = 40, 40  # side_by_side: pixels above each grid for its label, and between the grids


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


def samples_picture(model, z: Tensor, scale: int = 1) -> Image.Image:
    """The model's samples from latents z (N, D): a grid of digits (upscaled by `scale`), or a scatter of
    2-D points."""
    with torch.no_grad():
        x = model.decode(z)
    if len(model.config.shape) == 1:
        return scatter_image(x)
    return image_grid(x, nrow=int(np.ceil(np.sqrt(len(z)))), scale=scale)


def model_label(model: Flow) -> str:
    """'preset, N epochs (test bits/dim)' from a checkpoint's metadata."""
    meta = model.metadata
    bpd = f" ({meta['test_bpd']:.3f})" if isinstance(meta.get("test_bpd"), float) else ""
    return f"{meta.get('preset', 'model')}, {meta.get('epoch', '?')} epochs{bpd}"


def side_by_side(models: list[Flow], labels: list[str], n: int = 64, temperature: float = 0.7, seed: int = 0,
                 scale: int = 2) -> Image.Image:
    """Each image model's samples from the same n latents (`Flow.latents(n, temperature, seed)`), its grid
    (upscaled by `scale`) under its label, left to right: the model card's comparison. ValueError for 2-D
    models or models of different shapes (they share no latents)."""
    shapes = {tuple(m.config.shape) for m in models}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"the models must be image models of one shape to share latents (got {sorted(shapes)})")
    z = models[0].latents(n, temperature, seed)
    grids = [samples_picture(m, z, scale) for m in models]
    font = ImageFont.load_default(size=16)
    out = Image.new("L", (sum(g.width for g in grids) + GAP * (len(grids) - 1), LABEL_HEIGHT + grids[0].height), 255)
    draw = ImageDraw.Draw(out)
    for i, (g, label) in enumerate(zip(grids, labels)):
        x = i * (g.width + GAP)
        draw.text((x + 6, 10), label, fill=0, font=font)
        out.paste(g, (x, LABEL_HEIGHT))
    return out


def write_png(img: Image.Image, path: Path, text: dict[str, str]) -> None:
    """Save img as a PNG file whose text chunks hold `text` (read back with Image.open(path).text)."""
    info = PngInfo()
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
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
