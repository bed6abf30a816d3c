"""The Layer Explorer's numbers: one trace through the flow, turned into arrays the page only indexes.

`explore(model, x)` runs the forward trace (data -> z) once; `generate(model, z)` the inverse one
(z -> data). Both give a `Steps`: the full state after every block, each block's log-det and where
every dimension sits, so that moving the block slider costs no model call at all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from flow.layers import FactorOut, Squeeze
from flow.model import Flow, TraceStep, prior_log_prob

LN2 = math.log(2)


@dataclass(frozen=True)
class Part:
    """One tensor of a state: "z1", "z2", ... (factored out, paper Sec. 3.6) or "h" (still flowing)."""

    label: str
    shape: tuple[int, ...]


def layouts(model: Flow) -> list[tuple[np.ndarray, list[Part]]]:
    """For every forward-trace entry: `origin`, with origin[k] the input pixel (flat index) that state
    dimension k came from, and the parts the state is made of.

    Squeeze and factor-out only move dimensions (paper Fig. 3 and Sec. 3.6); couplings and ActNorm
    keep each where it is. So every state is a permutation of the input's dimensions, found by
    sending the pixel indices through the squeezes and splits.
    """
    h = torch.arange(model.dim, dtype=torch.float64).view(1, *model.config.shape)
    zs: list[Tensor] = []

    def entry() -> tuple[np.ndarray, list[Part]]:
        origin = torch.cat([z.flatten() for z in zs] + [h.flatten()]).long().numpy()
        parts = [Part(f"z{i + 1}", tuple(z.shape[1:])) for i, z in enumerate(zs)] + [Part("h", tuple(h.shape[1:]))]
        return origin, parts

    out = [entry()] * (2 if model.config.preprocess else 1)  # the input, then dequantize + logit
    for step in model.steps:
        if isinstance(step, Squeeze):
            h = step(h)[0]
        elif isinstance(step, FactorOut):
            h, z = step.split(h)
            zs.append(z)
        out.append(entry())
    return out


def ks_normal(values: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance between the values' empirical CDF and the standard normal CDF."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = len(v)
    cdf = torch.special.ndtr(torch.from_numpy(v)).numpy()
    return float(max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max()))


def ks_normal_sliced(points: np.ndarray, directions: int = 16) -> float:
    """2-D points (N, 2): the largest KS distance to N(0, 1) of their projections on `directions` lines
    through the origin. A standard Gaussian cloud projects to N(0, 1) on every line; data rarely does."""
    angles = np.linspace(0, np.pi, directions, endpoint=False)
    return max(ks_normal(points @ np.array([np.cos(a), np.sin(a)])) for a in angles)


def moments(values: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation, skewness and excess kurtosis: 0, 1, 0, 0 for a standard normal."""
    v = np.asarray(values, dtype=np.float64).ravel()
    mean, std = v.mean(), v.std()
    u = (v - mean) / max(std, 1e-12)
    return {"mean": float(mean), "std": float(std), "skewness": float((u ** 3).mean()),
            "excess kurtosis": float((u ** 4).mean() - 3)}


def histogram(values: np.ndarray, extent: float = 5.0, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres and densities on [-extent, extent]; values outside land in the end bins."""
    v = np.clip(np.asarray(values).ravel(), -extent, extent)
    density, edges = np.histogram(v, bins=bins, range=(-extent, extent), density=True)
    return (edges[:-1] + edges[1:]) / 2, density


@dataclass
class Steps:
    """A trace as arrays. Entry i is the state after block i: the input first, then one per block."""

    names: list[str]
    kinds: list[str]
    parts: list[list[Part]]
    origin: list[np.ndarray]  # per entry: state dimension k came from input pixel origin[k]
    states: np.ndarray  # (S, N, D): all dimensions after each entry, factored-out ones first
    logdets: np.ndarray  # (S,): mean over the N inputs of each entry's log|det J| (0 for the input)
    image_shape: tuple[int, int] | None  # (H, W) for image models, None for points
    couplings: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)  # i: b, s, t
    ks: np.ndarray = field(init=False)  # (S,): KS distance to N(0, 1) of an image's values, of points' projections

    def __post_init__(self) -> None:
        measure = ks_normal if self.image_shape else ks_normal_sliced
        self.ks = np.array([measure(s) for s in self.states])

    def __len__(self) -> int:
        return len(self.names)

    def to_pixels(self, i: int, values: np.ndarray) -> np.ndarray:
        """A state-shaped vector (D,) of entry i -> the (H, W) input layout: each value at its pixel."""
        out = np.empty(len(values), dtype=np.float32)
        out[self.origin[i]] = values
        return out.reshape(self.image_shape)

    def pixels(self, i: int, n: int = 0) -> np.ndarray:
        """The full state after entry i (input n), every dimension drawn at the pixel it came from."""
        return self.to_pixels(i, self.states[i, n])

    def block(self, i: int) -> dict[str, np.ndarray]:
        """Entry i's maps in the input layout: input, output and change; b, s and t for a coupling
        (NaN on dimensions already factored out: the block does not see them)."""
        before, after = self.pixels(max(i - 1, 0)), self.pixels(i)
        maps = {"input": before, "output": after, "change": after - before}
        if i in self.couplings:
            maps.update({k: self.to_pixels(i, v[0]) for k, v in zip(("mask", "s", "t"), self.couplings[i])})
        return maps

    def where(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Where each pixel's dimension sits after entry i, in the input layout: (H, W) codes
        (the running channel number over all parts) and (H, W, 4) hover data (part, channel, row, col)."""
        codes, info, offset = [], [], 0
        for part in self.parts[i]:
            c, *rest = part.shape if len(part.shape) == 3 else (1, *part.shape)
            idx = np.indices((c, *rest)).reshape(len(rest) + 1, -1)
            codes.append(offset + idx[0])
            info.append(np.column_stack([np.full(idx.shape[1], part.label, object), *idx]))
            offset += c
        code = self.to_pixels(i, np.concatenate(codes).astype(np.float32))
        table = np.empty((len(self.origin[i]), info[0].shape[1]), object)
        table[self.origin[i]] = np.concatenate(info)
        return code, table.reshape(*self.image_shape, -1)

    def tiles(self, i: int, n: int = 0) -> list[tuple[Part, np.ndarray]]:
        """The state of entry i as the network holds it: each part's channels tiled in a grid, NaN gaps."""
        out, start = [], 0
        for part in self.parts[i]:
            size = math.prod(part.shape)
            out.append((part, tile_channels(self.states[i, n, start:start + size].reshape(part.shape))))
            start += size
        return out


def tile_channels(x: np.ndarray) -> np.ndarray:
    """(C, H, W) -> one 2-D array of the C maps in a near-square grid, one NaN pixel between them."""
    c, h, w = x.shape
    cols = 2 ** math.ceil(math.log2(math.sqrt(c))) if c > 1 else 1
    rows = math.ceil(c / cols)
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan, np.float32)
    for k in range(c):
        r, q = divmod(k, cols)
        out[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = x[k]
    return out


def _steps(model: Flow, trace: list[TraceStep], entry_layouts: list[tuple[np.ndarray, list[Part]]]) -> Steps:
    shape = model.config.shape
    couplings = {}
    for i, step in enumerate(trace):
        if step.s is not None:  # forward couplings: b, s, t cover the flowing part, NaN where factored out
            factored = sum(z[0].numel() for z in step.factored)
            pad = np.full((step.s.shape[0], factored), np.nan, np.float32)
            mask = step.mask.expand_as(step.s)
            couplings[i] = tuple(np.concatenate([pad, v.flatten(1).numpy()], 1) for v in (mask, step.s, step.t))
    return Steps(
        names=[s.name for s in trace], kinds=[s.kind for s in trace],
        parts=[p for _, p in entry_layouts], origin=[o for o, _ in entry_layouts],
        states=torch.stack([s.state() for s in trace]).numpy(),
        logdets=torch.stack([s.logdet.mean() for s in trace]).double().numpy(),
        image_shape=tuple(shape[-2:]) if len(shape) == 3 else None, couplings=couplings)


@torch.no_grad()
def explore(model: Flow, x: Tensor) -> Steps:
    """The forward trace x -> z (uint8 digits are dequantized at bin centres, points taken as they are)."""
    return _steps(model, model.trace(x), layouts(model))


@torch.no_grad()
def generate(model: Flow, z: Tensor | np.ndarray) -> Steps:
    """The generative trace z -> x (z flat, (N, D)): after inverting k blocks the state is laid out as
    the forward state before those blocks, so the same pixel mapping applies in reverse order."""
    return _steps(model, model.trace_inverse(torch.as_tensor(z)), layouts(model)[::-1])


def latent_noise(model: Flow, n: int, temperature: float, seed: int) -> Tensor:
    """z ~ N(0, T^2 I), (n, D), reproducible from the seed."""
    return torch.randn(n, model.dim, generator=torch.Generator().manual_seed(seed)) * temperature


# ----- the likelihood, block by block ---------------------------------------------------------------
@dataclass
class Decomposition:
    """log p(x) = log N(z; 0, I) + sum over blocks of log|det J| (paper Eq. 3), in nats, and the same
    sum as bits/dim: bpd = 8 - log p(u) / (D ln 2) for images on the [0, 256) pixel scale (Sec. 4.1)."""

    names: list[str]  # the blocks (trace entries 1..S-1), in flow order
    logdets: np.ndarray
    prior: float  # log N(z; 0, I)
    dim: int
    images: bool  # 8-bit images: bits/dim include the log 256 per dimension of the pixel scale

    @property
    def log_prob(self) -> float:
        return float(self.prior + self.logdets.sum())

    @property
    def bits_per_dim(self) -> float:
        return (8.0 if self.images else 0.0) - self.log_prob / (self.dim * LN2)

    def terms(self, units: str) -> list[tuple[str, float]]:
        """The additive terms, in flow order, ending with the prior: nats of log p(x), or bits/dim."""
        if units == "nats":
            return [*zip(self.names, self.logdets.tolist()), ("log N(z)", self.prior)]
        per_dim = -1.0 / (self.dim * LN2)
        scale = [("8-bit pixel scale", 8.0)] if self.images else []
        return [*scale, *((n, v * per_dim) for n, v in zip(self.names, self.logdets.tolist())),
                ("log N(z)", self.prior * per_dim)]


@torch.no_grad()
def decomposition(model: Flow, steps: Steps) -> Decomposition:
    """The per-block terms of a forward `Steps`, with the prior term evaluated at its final state."""
    z = torch.from_numpy(steps.states[-1])
    return Decomposition(names=steps.names[1:], logdets=steps.logdets[1:], prior=float(prior_log_prob(z).mean()),
                         dim=model.dim, images=model.config.preprocess)


# ----- 2-D models: a grid to push through, and the learned density ---------------------------------------
def grid_lines(extent: float = 3.0, lines: int = 13, points: int = 80) -> tuple[Tensor, int]:
    """Points along `lines` horizontal and `lines` vertical lines over [-extent, extent]^2, (2 lines x
    points, 2), and the number of points per line (the page draws them as polylines)."""
    ticks = torch.linspace(-extent, extent, lines)
    along = torch.linspace(-extent, extent, points)
    horizontal = torch.stack(torch.broadcast_tensors(along[None, :], ticks[:, None]), -1)
    vertical = torch.stack(torch.broadcast_tensors(ticks[:, None], along[None, :]), -1)
    return torch.cat([horizontal, vertical]).reshape(-1, 2), points


@torch.no_grad()
def density(model: Flow, extent: float = 4.0, n: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """The learned density p(x) on an n x n grid over [-extent, extent]^2: (axis ticks, (n, n) rows = y)."""
    ticks = torch.linspace(-extent, extent, n)
    yy, xx = torch.meshgrid(ticks, ticks, indexing="ij")
    logp = model.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1))
    return ticks.numpy(), logp.exp().view(n, n).numpy()

