"""The Layer Explorer's numbers: one trace through the flow, turned into arrays the page only indexes.

`explore(model, x, seed)` runs the forward trace (data -> z) once, on the digit dequantized with the
noise of `seed` as in training (or at the bin centres, seed None); `generate(model, z)` runs the inverse
one (z -> data). Both give a `Steps`: the full state after every block, each block's log-det, how
exactly it inverts and where every dimension sits, so that moving the block slider costs no model call.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise

import numpy as np
import torch
from torch import Tensor

from flow.data import is_data_file, load_dataset, make_toy
from flow.layers import Transform
from flow.model import Flow, TraceStep

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
    out = []
    for step in [TraceStep("input", "data", h, h.new_zeros(1))] + list(model.transform.walk(h, "route")):
        origin = step.state()[0].long().numpy()
        parts = [Part(f"z{i + 1}", tuple(z.shape[1:])) for i, z in enumerate(step.factored)]
        out.append((origin, parts + [Part("h", tuple(step.output.shape[1:]))]))
    return out


def ks_normal(values: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance between the values' empirical CDF and the standard normal CDF."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = len(v)
    cdf = torch.special.ndtr(torch.from_numpy(v)).numpy()
    return float(max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max()))


def ks_noise_level(n: int) -> float:
    """The KS distance that n independent N(0, 1) draws stay below 95% of the time: 1.36 / sqrt(n)
    (the asymptotic Kolmogorov critical value); 0.049 for the 784 values of one digit."""
    return 1.36 / math.sqrt(n)


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
    roundtrip: np.ndarray | None = None  # forward traces, (S,): max |h_{i-1} - f_i^-1(f_i(h_{i-1}))| of entry i
    flow_roundtrip: float | None = None  # forward traces: max |x - f^-1(f(x))| of the whole flow
    seed: int | None = None  # forward image traces: the dequantization noise's seed (None: bin centres)
    pixel_entries: tuple[int, ...] = ()  # entries that hold the image u in [0, 1], not a signed latent
    classes: int | None = None  # a conditional model's trace: the class it was traced as (its prior the last block)

    @cached_property
    def ks(self) -> np.ndarray:
        """(S,): the KS distance to N(0, 1) of each state's values (images), or of its points' projections."""
        measure = ks_normal if self.image_shape else ks_normal_sliced
        return np.array([measure(s) for s in self.states])

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


def blocks(model: Flow) -> list[Transform | None]:
    """The transform behind each forward-trace entry: None for the input and the factor-outs (they only
    route values), then the logit and the other blocks, and a conditional model's class prior last (an entry
    of traces made with a class only)."""
    return [None] + [t for _, t in model.transform.stages] + ([model.prior] if model.num_classes else [])


def _roundtrip(model: Flow, trace: list[TraceStep], y: Tensor | None) -> np.ndarray:
    """Entry i's inversion error: the largest |h_{i-1} - f_i^-1(f_i(h_{i-1}))| over its input (for the class
    prior, over the whole flat state it standardises)."""
    errors = [0.0]
    for k, (before, after) in enumerate(pairwise(trace)):
        if after.kind == "prior":
            back, was = model.prior.inverse(after.state(), y)[0], before.state()
        else:
            back, was = model.transform.step(k, after.output, after.factored, "inverse")[0], before.output
        errors.append((back - was).abs().max().item())
    return np.array(errors)


def _classes(model: Flow, n: int, y: int | None) -> Tensor | None:
    """A trace's class for all n inputs, or None (ValueError from the model for a class it does not have)."""
    return None if y is None else model._check_classes(y, n).cpu()


def _steps(model: Flow, trace: list[TraceStep], entry_layouts: list[tuple[np.ndarray, list[Part]]],
           **extra) -> Steps:
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
        image_shape=tuple(shape[-2:]) if len(shape) == 3 else None, couplings=couplings, **extra)


@torch.no_grad()
def explore(model: Flow, x: Tensor, seed: int | None = 0, y: int | None = None) -> Steps:
    """The forward trace x -> z of a batch of 8-bit digits (any integer dtype, 0..255) or 2-D points; of a
    conditional model as class y when given (its class prior the last entry: the decomposition then adds up to
    log p(x | y)).

    Digits are dequantized as in training, u = (x + n) / 256 with the noise n of `seed`
    (`Flow.bits_per_dim`'s: the decomposition then adds up to that digit's bits/dim for that seed), or
    with seed None at the bin centres u = (x + 1/2) / 256: a point the model was never trained on,
    where the density is atypically high and the code z atypically small. Points are taken as they are.
    """
    u = model.dequantize(x, seed) if model.config.preprocess and seed is not None else x
    classes = _classes(model, len(u), y)
    trace = model.trace(u, classes)
    z = trace[-1].state()
    flow_error = (model.decode(z, classes) - trace[0].output).abs().max().item()
    images = model.config.preprocess
    entries = layouts(model)
    entries += entries[-1:] if y is not None else []  # the class prior keeps every dimension where it is
    return _steps(model, trace, entries, roundtrip=_roundtrip(model, trace, classes), flow_roundtrip=flow_error,
                  seed=seed if images else None, pixel_entries=(0,) if images else (), classes=y)


@torch.no_grad()
def generate(model: Flow, z: Tensor | np.ndarray, y: int | None = None) -> Steps:
    """The generative trace z -> x (z flat, (N, D)), of a conditional model as class y when given (z then in that
    class's coordinates, its prior the first block undone): after inverting k blocks the state is laid out as
    the forward state before those blocks, so the same pixel mapping applies in reverse order."""
    z = torch.as_tensor(z)
    trace = model.trace_inverse(z, _classes(model, len(z), y))
    entries = layouts(model)[::-1]
    entries = entries[:1] + entries if y is not None else entries
    return _steps(model, trace, entries, pixel_entries=(len(trace) - 1,) if model.config.preprocess else (),
                  classes=y)


def jacobian_check(model: Flow, steps: Steps, i: int, n: int = 64) -> tuple[float, float] | None:
    """Entry i's log|det J| as the block computes it, beside log|det J| of the Jacobian that autograd
    builds column by column (torch.func.jacrev), both averaged over the first n inputs of a forward
    trace. The full D x D Jacobian: 784 x 784 for a digit (about 0.3 s for a coupling at 14x14x4).
    None for the input and the factor-out (it only routes values: no Jacobian of its own)."""
    module = blocks(model)[i]
    if module is None:
        return None
    prior = steps.kinds[i] == "prior"  # the class prior standardises the whole flat latent, for the traced class
    shape = (model.dim,) if prior else steps.parts[i - 1][-1].shape  # else the flowing part h the block transforms
    size = math.prod(shape)
    before = torch.from_numpy(steps.states[i - 1, :n, -size:]).to(model.device).view(-1, *shape)
    if prior:
        y = torch.tensor([steps.classes], device=model.device)
        module = lambda v: model.prior(v, y.expand(len(v)))  # noqa: E731 - the block with its class bound

    def one(v: Tensor) -> Tensor:
        return module(v.view(1, *shape))[0].flatten()

    with torch.no_grad():
        claimed = module(before)[1].double().mean().item()
    jac = torch.func.vmap(torch.func.jacrev(one))(before.flatten(1))
    return claimed, torch.linalg.slogdet(jac.double())[1].mean().item()


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
    bits_per_dim: float  # the total in bits/dim, by `Flow.bits_from_log_prob`

    @property
    def log_prob(self) -> float:
        return float(self.prior + self.logdets.sum())

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
    prior = model.prior_log_prob(z).mean()
    bits = model.bits_from_log_prob(prior + torch.from_numpy(steps.logdets[1:]).sum())
    return Decomposition(names=steps.names[1:], logdets=steps.logdets[1:], prior=float(prior), dim=model.dim,
                         images=model.config.preprocess, bits_per_dim=float(bits))


# ----- 2-D models: their points, a grid to push through, and the learned density -------------------------
def plane_data(spec: str, n: int = 1500) -> Tensor:
    """The points (float32 (n, 2)) a 2-D view carries through the flow: n points of a toy set (its test seed), or
    the first n training points of a data file (`spec`: a toy set's name or the file's path)."""
    if is_data_file(spec):
        return load_dataset(spec, "train")[:n]
    return make_toy(spec, n, seed=1)


def plane_extent(points: Tensor | np.ndarray) -> float:
    """Half the side of the square a 2-D view draws the density on: 4 (every toy set fits), or more for data
    that reaches further (99.5% of the coordinates inside); the grid of `grid_lines` spans 3/4 of it."""
    reach = float(np.percentile(np.abs(np.asarray(points)), 99.5)) if len(points) else 0.0
    return max(4.0, float(math.ceil(reach + 0.5)))


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

