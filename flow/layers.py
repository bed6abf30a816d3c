"""The transform contract, the invertible pieces besides the coupling (logit, ActNorm, squeeze) and the
multi-scale composition that walks them all.

Every piece is a `Transform`: forward(x) -> (y, log|det dy/dx|) and inverse(y) -> (x, log|det dx/dy|),
log-dets per example. `MultiScale` chains them with the factor-outs of paper Sec. 3.6; its `walk` is the
one loop over the blocks that the likelihood, sampling and every trace go through.
"""
from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ALPHA = 0.05


def dequantize(x: Tensor, noise: str = "uniform", seed: int | None = None) -> Tensor:
    """8-bit pixels {0..255} -> u in [0, 1): u = (x + n) / 256 with n ~ U[0, 1)^D (or n = 1/2 for "mid").

    Uniform noise turns the discrete data into a density whose NLL bounds the discrete NLL from
    above (Theis et al. 2016); "mid" gives the bin centres, a deterministic point for displays.
    Without a seed the noise comes from torch's global generator (training). With a seed, each
    example's noise is drawn from a generator keyed by the seed and the example's own pixels, so one
    digit with one seed gets the same noise in any batch, on any page and on any DDP rank, while
    different digits get independent draws (`noise_for`).
    """
    if noise == "mid":
        return (x.float() + 0.5) / 256.0
    if noise != "uniform":
        raise ValueError(f"noise must be 'uniform' or 'mid', got {noise!r}")
    n = torch.rand(x.shape, device=x.device) if seed is None else noise_for(x, seed).to(x.device)
    return (x.float() + n) / 256.0


def noise_for(x: Tensor, seed: int) -> Tensor:
    """U[0, 1) noise shaped like the 8-bit batch x (B, ...): example i's draw depends only on the seed
    and the bytes of x[i]."""
    pixels = x.detach().cpu().to(torch.uint8).numpy()
    out = torch.empty(x.shape)
    for i, example in enumerate(pixels):
        key = hashlib.blake2b(example.tobytes(), digest_size=8, key=str(seed).encode()).digest()
        out[i] = torch.rand(example.shape, generator=torch.Generator().manual_seed(int.from_bytes(key, "little")))
    return out


class Transform(nn.Module):
    """An invertible map f between batches, with its log-determinant in both directions (paper Eq. 2):

        forward(x (B, *in))  -> (y = f(x) (B, *out),      log|det df/dx| at x (B,))
        inverse(y (B, *out)) -> (x = f^-1(y) (B, *in),    log|det df^-1/dy| at y (B,) = -log|det df/dx| at x)

    Log-dets are natural logs (nats), summed over each example's dimensions. `kind` names the block in
    traces. Two hooks with defaults serve the traces: `forward_details` adds what a trace shows of the
    block besides its output (a coupling's mask, s and t), and `route` says where each dimension goes.
    """

    kind = "transform"

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward_details(self, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """forward(x) and the tensors a trace shows of this block (none here)."""
        return (*self(x), {})

    def route(self, x: Tensor) -> Tensor:
        """x's values moved to where f puts their dimensions: x itself for a map that keeps each
        dimension in place (a coupling, ActNorm, the logit); a rearrangement (squeeze) moves them."""
        return x

    def undo_name(self, name: str) -> str:
        """This block's name in an inverse trace."""
        return f"undo {name}"


class Logit(Transform):
    """y = logit(alpha + (1 - 2 alpha) u) with alpha = 0.05 (paper Sec. 4.1), u the dequantized image.

    log|dy/du| = sum_j [log(1 - 2 alpha) - log p_j - log(1 - p_j)], p = alpha + (1 - 2 alpha) u.
    With D pixels and u on [0, 1)^D, the published bits/dim on the [0, 256) pixel scale are
        bpd = (-log N(z) - sum log|det J_blocks| - log|dy/du| + D log 256) / (D log 2).
    The inverse clamps u to [0, 1] (a sample's extreme y would land just outside) and returns
    -log|dy/du| at that u.
    """

    kind = "preprocess"

    def __init__(self, alpha: float = ALPHA):
        super().__init__()
        self.alpha = alpha

    def forward(self, u: Tensor) -> tuple[Tensor, Tensor]:
        p = self.alpha + (1 - 2 * self.alpha) * u
        y = torch.log(p) - torch.log1p(-p)
        logdet = math.log(1 - 2 * self.alpha) + F.softplus(-y) + F.softplus(y)  # -log p - log(1 - p)
        return y, logdet.flatten(1).sum(1)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        u = ((torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)).clamp(0.0, 1.0)
        return u, -self(u)[1]

    def undo_name(self, name: str) -> str:
        return "undo the logit"


class ActNorm(Transform):
    """Per-channel affine normalisation y = (x - loc) * exp(-log_scale) (Kingma & Dhariwal 2018), with
    log|det dy/dx| = -(H W) sum(log_scale) for images (C, H, W) and -sum(log_scale) for vectors (D,).

    Chosen over the paper's batch normalisation: its log-det is exact and identical in training and
    evaluation, it works on a single image (the explorer traces one digit at a time) and it needs no
    statistics synchronised across DDP ranks. The first batch seen in training mode sets loc and
    log_scale so that the output has zero mean and unit variance (a feature without spread in that
    batch keeps scale 1). `Flow.initialize` and `Flow.skip_data_init` choose that start instead.
    """

    kind = "actnorm"

    def __init__(self, param_shape: tuple[int, ...]):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(param_shape))
        self.log_scale = nn.Parameter(torch.zeros(param_shape))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    def _reduce_dims(self, x: Tensor) -> list[int]:
        return [0] + list(range(2, x.dim())) if self.loc.dim() == 3 else [0]

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        if x.shape[0] == 1:
            warnings.warn("ActNorm's data-dependent start ran on a batch of one example: its loc is now that "
                          "example for good. Use model.eval() for a single-example check, or start with "
                          "Flow.initialize(batch) or Flow.skip_data_init() (see help(Flow)).", stacklevel=2)
        dims = self._reduce_dims(x)
        std = x.std(dims, correction=0)
        # One example, or a feature constant over the batch, has no spread to normalise by (its scale
        # would be 0 or 1e6): such a feature keeps scale 1.
        spread = torch.isfinite(std) & (std > 1e-6)
        self.loc.copy_(x.mean(dims).view_as(self.loc))
        self.log_scale.copy_(torch.where(spread, std.log(), 0.0).view_as(self.log_scale))
        self.initialized.fill_(1)

    def _logdet(self, x: Tensor) -> Tensor:
        per_param = x[0].numel() // self.log_scale.numel()
        return (-self.log_scale.sum() * per_param).expand(x.shape[0])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not self.initialized:
            self._initialize(x)
        return (x - self.loc) * torch.exp(-self.log_scale), self._logdet(x)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y * torch.exp(self.log_scale) + self.loc, -self._logdet(y)


class ClassAffine(Transform):
    """A conditioned transform: the learned Gaussian of class y on a flat latent (Glow's class-conditional
    prior, Kingma & Dhariwal 2018, Sec. 5), written as the affine map that standardises it:

        forward(z (B, D), y (B,)) -> (u = (z - loc[y]) * exp(-log_scale[y]),  log|det du/dz| = -sum_j log_scale[y, j])
        inverse(u (B, D), y (B,)) -> (z = u * exp(log_scale[y]) + loc[y],      log|det dz/du| = +sum_j log_scale[y, j])

    so that log N(u; 0, I) + log|det du/dz| = log N(z; loc[y], diag(exp(2 log_scale[y]))). The context y (class
    indices, int64) enters both directions the same way. loc and log_scale (K, D) start at zero: the identity,
    so a trained unconditional flow is where a conditional one starts from (`flow.train --init`).
    `all_classes(z)` standardises z for every class k in one pass: what `Flow.classify` uses.
    """

    kind = "prior"

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(num_classes, dim))
        self.log_scale = nn.Parameter(torch.zeros(num_classes, dim))

    def forward(self, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = self.log_scale[y]
        return (z - self.loc[y]) * torch.exp(-log_scale), -log_scale.sum(1)

    def inverse(self, u: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = self.log_scale[y]
        return u * torch.exp(log_scale) + self.loc[y], log_scale.sum(1)

    def all_classes(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """forward(z, k) for every class k at once: flat z (B, D) -> (u (B, K, D), log|det du/dz| (K,))."""
        return (z[:, None, :] - self.loc) * torch.exp(-self.log_scale), -self.log_scale.sum(1)


class Squeeze(Transform):
    """Space-to-depth (paper Fig. 3): each 2x2xC patch becomes a 1x1x4C one, (B, C, H, W) ->
    (B, 4C, H/2, W/2). A permutation of the dimensions: log-det 0 both ways."""

    kind = "squeeze"

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        y = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return y, x.new_zeros(b)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = y.shape
        x = y.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, 2 * h, 2 * w)
        return x, y.new_zeros(b)

    def route(self, x: Tensor) -> Tensor:
        return self(x)[0]


@dataclass
class TraceStep:
    """One entry of a trace: the representation after a block and the block's log-det."""

    name: str
    kind: str  # "preprocess", "coupling", "actnorm", "squeeze", "factor-out" or "data"
    output: Tensor  # the tensor that flows on (for factor-out: the kept half)
    logdet: Tensor  # (B,) log|det J| of this block in the direction traced
    factored: list[Tensor] = field(default_factory=list)  # latents factored out so far
    mask: Tensor | None = None  # forward coupling only: b, s and t
    s: Tensor | None = None
    t: Tensor | None = None

    def state(self) -> Tensor:
        """All dimensions of the representation at this point, flattened: (B, D)."""
        return torch.cat([z.flatten(1) for z in self.factored] + [self.output.flatten(1)], dim=1)


FACTOR_OUT = None  # the stage that factors out half of the channels: no transform of its own
Stage = tuple[str, Transform | None]  # (name, transform), or (name, FACTOR_OUT)
Mode = Literal["forward", "details", "route", "inverse"]


class MultiScale(Transform):
    """Transforms in sequence with multi-scale factor-outs (paper Sec. 3.6, Eq. 13-14):

        h_0 = x,   (z_i, h_i) = split(f_i(h_{i-1})) for i < L,   z_L = f_L(h_{L-1}),   z = (z_1, ..., z_L)

    where split keeps the first half of the channels flowing and factors out the second half as z_i.
    forward(x (B, *shape)) -> (flat z (B, D): z_1, ..., z_{L-1}, then the final h; log|det dz/dx| (B,)),
    inverse(flat z (B, D)) -> (x, log|det dx/dz|). Without factor-outs it is a plain composition, and
    log|det| is the sum over the blocks (Eq. 3). `walk` is the one loop over the stages.
    """

    kind = "multi-scale"

    def __init__(self, shape: tuple[int, ...], stages: list[Stage]):
        super().__init__()
        self.names = [name for name, _ in stages]
        self.steps = nn.ModuleList([t for _, t in stages if t is not FACTOR_OUT])
        positions = iter(range(len(self.steps)))
        self._position = [None if t is FACTOR_OUT else next(positions) for _, t in stages]
        h, zs = torch.zeros(1, *shape), []
        for k in range(len(stages)):
            h, _, zs, _ = self.step(k, h, zs, "route")
        self.latent_shapes = [tuple(z.shape[1:]) for z in zs + [h]]  # z_1, ..., z_{L-1}, then the final h

    @property
    def stages(self) -> list[Stage]:
        """(name, transform) per stage in flow order; FACTOR_OUT (None) for the factor-outs."""
        return [(name, None if k is None else self.steps[k]) for name, k in zip(self.names, self._position)]

    def step(self, k: int, h: Tensor, zs: list[Tensor], mode: Mode = "forward"
             ) -> tuple[Tensor, Tensor, list[Tensor], dict[str, Tensor]]:
        """Stage k on the state (factored-out zs, flowing h) -> (h', log-det (B,), zs', details).
        mode: "forward", "details" (forward with `Transform.forward_details`), "route"
        (`Transform.route`, log-det 0) or "inverse" (h and zs the state after stage k)."""
        position = self._position[k]
        if position is None:  # factor-out: only moves dimensions, log-det 0
            if mode == "inverse":
                return torch.cat([h, zs[-1]], dim=1), h.new_zeros(h.shape[0]), zs[:-1], {}
            keep, z = h.chunk(2, dim=1)
            return keep, h.new_zeros(h.shape[0]), zs + [z], {}
        t = self.steps[position]
        if mode == "inverse":
            return *t.inverse(h), zs, {}
        if mode == "route":
            return t.route(h), h.new_zeros(h.shape[0]), zs, {}
        if mode == "details":
            y, logdet, details = t.forward_details(h)
            return y, logdet, zs, details
        return *t(h), zs, {}

    def walk(self, x: Tensor, mode: Mode = "forward") -> Iterator[TraceStep]:
        """One `TraceStep` per stage, in the direction walked. Forward modes take x (B, *shape) and
        end at the state z_1, ..., h; "inverse" takes flat latents (B, D), visits the stages in reverse
        (named "undo ...") and ends at x."""
        stages = self.stages
        if mode == "inverse":
            *zs, h = self.split_latent(x)
            for k in reversed(range(len(stages))):
                h, logdet, zs, _ = self.step(k, h, zs, mode)
                name, t = stages[k]
                kind = "factor-out" if t is None else t.kind
                yield TraceStep(f"undo {name}" if t is None else t.undo_name(name), kind, h, logdet, list(zs))
            return
        h, zs = x, []
        for k, (name, t) in enumerate(stages):
            h, logdet, zs, details = self.step(k, h, zs, mode)
            yield TraceStep(name, "factor-out" if t is None else t.kind, h, logdet, list(zs), **details)

    def split_latent(self, z: Tensor) -> list[Tensor]:
        """Flat z (B, D) -> [z_1, ..., z_{L-1}, h_final] in their shapes (`latent_shapes`)."""
        sizes = [math.prod(s) for s in self.latent_shapes]
        return [p.reshape(z.shape[0], *s) for p, s in zip(z.split(sizes, dim=1), self.latent_shapes)]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for step in self.walk(x):
            logdet = logdet + step.logdet
        return step.state(), logdet

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        logdet = z.new_zeros(z.shape[0])
        for step in self.walk(z, "inverse"):
            logdet = logdet + step.logdet
        return step.output, logdet
