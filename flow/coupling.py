"""Affine coupling (Real NVP, Dinh et al. 2016, Sec. 3.3-3.4) and the masks that choose its halves."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from flow.layers import Transform


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


class NVPBlock(Transform):
    """Affine coupling layer with a binary mask b (paper Eq. 7-9):

        forward  y = b * x + (1 - b) * (x * exp(s(b * x)) + t(b * x)),   log|det dy/dx| = sum_j s_j
        inverse  x = b * y + (1 - b) * (y - t(b * y)) * exp(-s(b * y)),  log|det dx/dy| = -sum_j s_j

    The kept part b * x passes unchanged and conditions s and t, so the inverse recomputes them from
    b * y = b * x (Eq. 8) and the Jacobian is triangular (Eq. 6). s and t are zero on the kept part.
    The scale is bounded as in the paper, s = scale * tanh(raw), with a learned per-channel (or
    per-feature) scale. `net(b * x)` returns (raw_s, t), each shaped like x: (B, D) or (B, C, H, W).
    """

    kind = "coupling"

    def __init__(self, mask: Tensor, net: nn.Module, mask_kind: str, scale_shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = net
        self.mask_kind = mask_kind  # "half", "checkerboard" or "channel": in the block's name
        self.scale = nn.Parameter(torch.ones(scale_shape))

    def scale_and_translation(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """s and t for input x; both are zero on the kept part, so the kept part stays put."""
        free = 1.0 - self.mask
        raw_s, t = (v.to(x.dtype) for v in self.net(x * self.mask))  # float32 even under bf16 autocast
        return self.scale * torch.tanh(raw_s) * free, t * free

    def forward_details(self, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """forward(x) and the mask b, s and t it used, for traces."""
        s, t = self.scale_and_translation(x)
        return x * torch.exp(s) + t, s.flatten(1).sum(1), {"mask": self.mask, "s": s, "t": t}

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.forward_details(x)[:2]

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self.scale_and_translation(y)
        return (y - t) * torch.exp(-s), -s.flatten(1).sum(1)
