"""Affine coupling (Real NVP, Dinh et al. 2016, Sec. 3.3-3.4) and the masks that choose its halves."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def half_mask(dim: int, parity: int) -> Tensor:
    """Vector mask for the half split: the first half is kept when parity is 0, the second when 1."""
    b = torch.zeros(dim)
    b[: dim // 2] = 1.0
    return b if parity % 2 == 0 else 1.0 - b


def checkerboard_mask(height: int, width: int, parity: int) -> Tensor:
    """Spatial checkerboard b of shape (1, H, W) (paper Fig. 3, left), shared by all channels."""
    grid = torch.arange(height)[:, None] + torch.arange(width)[None, :]
    return ((grid + parity) % 2 == 0).float()[None]


def channel_mask(channels: int, parity: int) -> Tensor:
    """Channel-wise mask of shape (C, 1, 1) (paper Fig. 3, right): half of the channels are kept."""
    return half_mask(channels, parity)[:, None, None]


class NVPBlock(nn.Module):
    """Affine coupling layer with a binary mask b (paper Eq. 9):

        y = b * x + (1 - b) * (x * exp(s(b * x)) + t(b * x))

    The kept part x_a = b * x passes unchanged and conditions s and t. The Jacobian is triangular,
    so log|det J| = sum_j ((1 - b) * s(b * x))_j (Eq. 6). The scale is bounded as in the paper,
    s = scale * tanh(raw), with a learned per-channel (or per-feature) scale.
    `net(x_a)` returns (raw_s, t), each shaped like x.
    """

    def __init__(self, mask: Tensor, net: nn.Module, kind: str, scale_shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = net
        self.kind = kind  # "half", "checkerboard" or "channel": shown in traces
        self.scale = nn.Parameter(torch.ones(scale_shape))

    def scale_and_translation(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """s and t for input x; both are zero on the kept part, so the kept part stays put."""
        free = 1.0 - self.mask
        raw_s, t = (v.to(x.dtype) for v in self.net(x * self.mask))  # float32 even under bf16 autocast
        return self.scale * torch.tanh(raw_s) * free, t * free

    def couple(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x -> (y, log|det J| (B,), s, t): Eq. 9, with the s and t it used (for traces)."""
        s, t = self.scale_and_translation(x)
        return x * torch.exp(s) + t, s.flatten(1).sum(1), s, t

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.couple(x)[:2]

    def inverse(self, y: Tensor) -> Tensor:
        s, t = self.scale_and_translation(y)  # y_a == x_a, so s and t are the forward ones (Eq. 8)
        return (y - t) * torch.exp(-s)
