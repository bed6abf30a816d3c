"""The other invertible pieces: preprocessing (dequantization + logit), ActNorm and squeeze."""
from __future__ import annotations

import hashlib
import math

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


class Logit(nn.Module):
    """y = logit(alpha + (1 - 2 alpha) u) with alpha = 0.05 (paper Sec. 4.1).

    log|dy/du| = sum_j [log(1 - 2 alpha) - log p_j - log(1 - p_j)], p = alpha + (1 - 2 alpha) u.
    With D pixels and u the dequantized image on [0, 1)^D, the published bits/dim on the
    [0, 256) pixel scale are
        bpd = (-log N(z) - sum log|det J_blocks| - log|dy/du| + D log 256) / (D log 2).
    """

    def __init__(self, alpha: float = ALPHA):
        super().__init__()
        self.alpha = alpha

    def forward(self, u: Tensor) -> tuple[Tensor, Tensor]:
        p = self.alpha + (1 - 2 * self.alpha) * u
        y = torch.log(p) - torch.log1p(-p)
        logdet = math.log(1 - 2 * self.alpha) + F.softplus(-y) + F.softplus(y)  # -log p - log(1 - p)
        return y, logdet.flatten(1).sum(1)

    def inverse(self, y: Tensor) -> Tensor:
        return ((torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)).clamp(0.0, 1.0)


class ActNorm(nn.Module):
    """Per-channel affine normalisation y = (x - loc) * exp(-log_scale) (Kingma & Dhariwal 2018).

    Chosen over the paper's batch normalisation: its log-det, -H*W*sum(log_scale), is exact and
    identical in training and evaluation, it works on a single image (the explorer traces one
    digit at a time) and it needs no statistics synchronised across DDP ranks. The first batch seen
    in training mode sets loc and log_scale so that the output has zero mean and unit variance
    (a feature without spread in that batch keeps scale 1).
    """

    def __init__(self, param_shape: tuple[int, ...]):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(param_shape))
        self.log_scale = nn.Parameter(torch.zeros(param_shape))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    def _reduce_dims(self, x: Tensor) -> list[int]:
        return [0] + list(range(2, x.dim())) if self.loc.dim() == 3 else [0]

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        dims = self._reduce_dims(x)
        std = x.std(dims, correction=0)
        # One example, or a feature constant over the batch, has no spread to normalise by (its scale
        # would be 0 or 1e6): such a feature keeps scale 1.
        spread = torch.isfinite(std) & (std > 1e-6)
        self.loc.copy_(x.mean(dims).view_as(self.loc))
        self.log_scale.copy_(torch.where(spread, std.log(), 0.0).view_as(self.log_scale))
        self.initialized.fill_(1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not self.initialized:
            self._initialize(x)
        y = (x - self.loc) * torch.exp(-self.log_scale)
        per_param = x[0].numel() // self.log_scale.numel()
        logdet = -self.log_scale.sum() * per_param
        return y, logdet.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(self.log_scale) + self.loc


class Squeeze(nn.Module):
    """Space-to-depth (paper Fig. 3): each 2x2xC patch becomes a 1x1x4C one. Volume-preserving."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        y = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return y, x.new_zeros(b)

    def inverse(self, y: Tensor) -> Tensor:
        b, c, h, w = y.shape
        return y.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, 2 * h, 2 * w)


class FactorOut(nn.Module):
    """Multi-scale factor-out (paper Sec. 3.6): half of the channels leave the flow as latents z_i."""

    def split(self, h: Tensor) -> tuple[Tensor, Tensor]:
        keep, z = h.chunk(2, dim=1)
        return keep, z

    def merge(self, h: Tensor, z: Tensor) -> Tensor:
        return torch.cat([h, z], dim=1)
