"""The likelihood lab's numbers, for its page, `python -m flow.lab` and the tests: bits/dim of test digits
beside inputs that are not digits, and of samples drawn at each temperature.

Two lessons. A flow's likelihood is not a detector of the unfamiliar: flows trained on one data set can give
inputs from another a higher likelihood than their own test data (Nalisnick et al., "Do Deep Generative
Models Know What They Don't Know?", ICLR 2019); simple, smooth pictures such as a blank page are the usual
culprits. And the most likely images are not typical ones: as the temperature T -> 0 samples move to the
mode, their likelihood rises far above any test digit's while they stop looking like digits (typicality).

Every figure is `Flow.bits_per_dim` of 8-bit images with the noise of one seed: the number the Layer
Explorer, the Latent Playground and `flow.evaluate` give the same image.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from flow.latent import decode_with_bits
from flow.model import Flow
from flow.viz import pillow

TEMPERATURES = (0.0, 0.25, 0.5, 0.7, 0.85, 1.0, 1.25, 1.5)
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZabdefghkmnpqrstuvwxyz"  # no I, O, l, o, c: they read as 1 and 0


def _letters(n: int, g: torch.Generator) -> Tensor:
    """n letters drawn like MNIST digits: white strokes on black, about 20 px tall, near the centre.
    ImportError without Pillow (drawn with its default font)."""
    PIL = pillow()
    Image, ImageDraw, ImageFont = PIL.Image, PIL.ImageDraw, PIL.ImageFont
    out = []
    for k in torch.randint(len(LETTERS), (n,), generator=g).tolist():
        size, dx, dy = (torch.randint(lo, hi, (1,), generator=g).item() for lo, hi in ((18, 25), (-2, 3), (-2, 3)))
        img = Image.new("L", (28, 28))
        ImageDraw.Draw(img).text((14 + dx, 14 + dy), LETTERS[k], fill=255, anchor="mm",
                                 font=ImageFont.load_default(size=size), stroke_width=1, stroke_fill=255)
        out.append(torch.from_numpy(np.asarray(img).copy()))
    return torch.stack(out)[:, None]


def _shifted(digits: Tensor, g: torch.Generator) -> Tensor:
    """Each digit moved 6 to 9 pixels right or left (black comes in from the other side)."""
    out = torch.zeros_like(digits)
    for k, d in enumerate(digits):
        step = int(torch.randint(6, 10, (1,), generator=g)) * (1 if torch.rand(1, generator=g) < 0.5 else -1)
        if step > 0:
            out[k, ..., step:] = d[..., :-step]
        else:
            out[k, ..., :step] = d[..., -step:]
    return out


KINDS: dict[str, tuple[str, Callable[[Tensor, torch.Generator], Tensor]]] = {
    "test digits": ("MNIST test digits, as they are", lambda d, g: d),
    "inverted": ("black strokes on white: 255 − x", lambda d, g: 255 - d),
    "shifted": ("moved 6 to 9 pixels sideways", _shifted),
    "rotated": ("turned a quarter turn", lambda d, g: torch.rot90(d, 1, (2, 3)).contiguous()),
    "noise": ("uniform random pixels", lambda d, g: torch.randint(0, 256, d.shape, generator=g, dtype=torch.uint8)),
    "blank": ("one flat grey level each (0: a black page)",
              lambda d, g: torch.randint(0, 256, (len(d), 1, 1, 1), generator=g, dtype=torch.uint8).expand_as(d)
              .contiguous()),
    "letters": ("letters, drawn like the digits", lambda d, g: _letters(len(d), g)),
}


def inputs(kind: str, digits: Tensor, seed: int = 0) -> Tensor:
    """(N, 1, 28, 28) uint8 inputs of one of `KINDS`, made from N test digits (uint8, same shape).
    Reproducible from the seed. Raises KeyError for an unknown kind."""
    g = torch.Generator().manual_seed(seed)
    return KINDS[kind][1](digits, g)


@torch.inference_mode()
def bits(model: Flow, x: Tensor, seed: int = 0, batch: int = 256) -> np.ndarray:
    """`Flow.bits_per_dim` of 8-bit images (N, 1, 28, 28) with the noise of `seed`, in batches: (N,)."""
    return torch.cat([model.bits_per_dim(x[k:k + batch], seed).cpu() for k in range(0, len(x), batch)]).numpy()


def compare(model: Flow, digits: Tensor, seed: int = 0) -> dict[str, np.ndarray]:
    """Bits/dim of every kind of input, made from the same N test digits: {kind: (N,)}."""
    return {kind: bits(model, inputs(kind, digits, seed), seed) for kind in KINDS}


@torch.inference_mode()
def by_temperature(model: Flow, n: int, seed: int = 0, temperatures: tuple[float, ...] = TEMPERATURES,
                   y: int | None = None) -> dict[float, tuple[Tensor, np.ndarray]]:
    """n samples at each temperature, z ~ N(0, T^2 I) from one seed (the same directions at every T),
    decoded to 8-bit pictures: {T: (frames (n, 1, 28, 28) in [0, 1], their bits/dim (n,))}; of class y for a
    conditional model when given, else of classes drawn uniformly (`Flow.random_classes`, the marginal's
    sampler). The bits are `flow.latent.decode_with_bits`', the Latent Playground's."""
    z = model.latents(n, 1.0, seed)
    classes = torch.full((n,), y) if y is not None else model.random_classes(n, seed) if model.num_classes else None
    out = {}
    for t in temperatures:
        frames, b = decode_with_bits(model, z * t, seed, classes)
        out[t] = (frames, b.numpy())
    return out


@torch.inference_mode()
def answers(model: Flow, x: Tensor, seed: int = 0, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A conditional model as a classifier on each input: (its answer, the top p(y | x)), both (N,), from
    `Flow.classify` (noise of `seed`). Off its data a density model need not be unsure: p(y | x) weighs the classes
    against one another, not against how well any of them fits."""
    p = torch.cat([model.classify(x[k:k + batch], seed).cpu() for k in range(0, len(x), batch)])
    top = p.max(1)
    return top.indices.numpy(), top.values.numpy()


def summary(values: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Median and 5-95 % range of bits/dim, and the share of `values` that score better (lower) than the
    median of `reference` (the test digits): the share a likelihood threshold would take for digits."""
    return {"median": float(np.median(values)), "p5": float(np.percentile(values, 5)),
            "p95": float(np.percentile(values, 95)),
            "share_below_test_median": float((values < np.median(reference)).mean())}


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    from flow.checkpoint import CheckpointError, load_checkpoint
    from flow.data import load_mnist

    parser = argparse.ArgumentParser(description="The likelihood lab's figures for one MNIST checkpoint, as JSON.")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--n", type=int, default=200, help="test digits (and inputs of each kind); default 200")
    parser.add_argument("--samples", type=int, default=64, help="samples per temperature; default 64")
    parser.add_argument("--seed", type=int, default=0, help="noise and sampling seed; default 0")
    args = parser.parse_args(argv)
    if not 1 <= args.n <= 10_000 or args.samples < 1:
        sys.exit("error: --n must be 1..10000 and --samples at least 1")
    try:
        model = load_checkpoint(args.checkpoint)
    except CheckpointError as e:
        sys.exit(f"error: {e}")
    if not model.config.preprocess:
        sys.exit("error: the likelihood lab needs an MNIST model; this checkpoint is a 2-D one")
    try:
        pillow()  # the "letters" inputs are drawn with Pillow: say so before the long part, not halfway
    except ImportError as e:
        sys.exit(f"error: {e}")
    digits = load_mnist("test")[0][:args.n].unsqueeze(1)
    test = bits(model, digits, args.seed)
    for kind in tqdm(KINDS, desc="inputs", file=sys.stderr):
        values = test if kind == "test digits" else bits(model, inputs(kind, digits, args.seed), args.seed)
        print(json.dumps({"kind": kind, "n": args.n, **summary(values, test)}))
    for t, (_, b) in by_temperature(model, args.samples, args.seed).items():
        print(json.dumps({"temperature": t, "n": args.samples, **summary(b, test)}))


if __name__ == "__main__":
    main()
