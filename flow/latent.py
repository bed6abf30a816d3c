"""Walking the latent space of a trained flow: interpolation between encoded digits (all latents,
or only the coarse or only the fine ones of a multi-scale model), the latent manifold of the Real
NVP paper (Sec. 4.2), samples at a temperature and the bits/dim of every decoded frame (pictures and
exports of the frames: app/latent_plots.py).

Latents are flat (B, D) tensors as returned by `Flow.encode`; frames are images in [0, 1].
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from flow.model import Flow

METHODS = ("slerp", "linear")
PARTS = {  # what moves, as the page's captions say it
    "all": "every latent",
    "coarse": "final latent: global shape",
    "fine": "factored-out latents: local detail",
}


def lerp(z0: Tensor, z1: Tensor, t: Tensor) -> Tensor:
    """Straight line (1 - t) z0 + t z1 for every t: vectors (D,), t (N,) -> (N, D)."""
    t = t.to(z0).view(-1, 1)
    return (1 - t) * z0 + t * z1


def slerp(z0: Tensor, z1: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation: the direction moves along the great circle from z0 to z1 at constant
    angular speed while the norm moves linearly from |z0| to |z1| (not Shoemake's formula, whose
    norm sags between unequal end points). In D dimensions a Gaussian latent lies near the shell
    |z| ~ sqrt(D); a straight line cuts inside it (its midpoint between two independent draws has
    norm ~ sqrt(D/2)), slerp stays on it. Near-parallel end points, where the angle is not
    resolvable, and opposite ones, where no great circle is unique, fall back to the straight line.
    """
    a, b = z0.double(), z1.double()
    n0, n1 = a.norm(), b.norm()
    if min(n0, n1) < 1e-12:
        return lerp(z0, z1, t)
    u0, u1 = a / n0, b / n1
    omega = torch.acos((u0 @ u1).clamp(-1.0, 1.0))
    sin_omega = torch.sin(omega)
    if sin_omega < 1e-6:
        return lerp(z0, z1, t)
    t = t.double().view(-1, 1)
    direction = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / sin_omega
    return (direction * ((1 - t) * n0 + t * n1)).to(z0.dtype)


def latent_parts(model: Flow) -> list[str]:
    """The parts of the latent one can interpolate alone: coarse/fine only for multi-scale models."""
    return list(PARTS) if len(model.latent_shapes) > 1 else ["all"]


def part_mask(model: Flow, part: str) -> Tensor:
    """Boolean (D,) mask over the flat latent: "all"; "coarse", the final latent h (last in
    `split_latent`); "fine", the latents factored out at the earlier scales (paper Sec. 3.6)."""
    if part not in latent_parts(model):
        raise ValueError(f"part must be one of {latent_parts(model)} for this model, got {part!r}")
    sizes = [math.prod(s) for s in model.latent_shapes]
    mask = torch.zeros(model.dim, dtype=torch.bool)
    if part == "all":
        mask[:] = True
    elif part == "coarse":
        mask[-sizes[-1]:] = True
    else:
        mask[:-sizes[-1]] = True
    return mask


def interpolate(model: Flow, z0: Tensor, z1: Tensor, n: int, method: str = "slerp",
                part: str = "all") -> Tensor:
    """n latents from z0 to z1 (flat, (D,) or (1, D)) -> (n, D). With part "coarse" or "fine" only
    that part moves and the rest stays at z0's, so the last frame mixes z1's part with z0's rest."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    z0, z1 = z0.reshape(-1).cpu(), z1.reshape(-1).cpu()
    mask = part_mask(model, part)
    path = z0.repeat(n, 1)
    walk = slerp if method == "slerp" else lerp
    path[:, mask] = walk(z0[mask], z1[mask], torch.linspace(0, 1, n))
    return path


def manifold_angles(n: int, full_turn: bool = False) -> Tensor:
    """n angles from 0 to pi/2 (the four digits at the corners), or n around the whole circle
    (0, 2 pi / n, ...), as in the paper's figure."""
    if full_turn:
        return torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    return torch.linspace(0, math.pi / 2, n, dtype=torch.float64)


def manifold(z: Tensor, n: int, full_turn: bool = False) -> Tensor:
    """The latent manifold of Dinh et al. 2016 (Sec. 4.2; there from four validation images), from
    four latents z (4, D):
    z(a, b) = cos(a) (cos(b) z1 + sin(b) z2) + sin(a) (cos(b) z3 + sin(b) z4),
    on an n x n grid of angles -> (n * n, D), a down the rows, b across the columns.
    Mutually orthogonal latents of equal norm (nearly so for Gaussian draws) keep that norm."""
    if z.shape[0] != 4:
        raise ValueError(f"the manifold needs 4 latents, got {z.shape[0]}")
    ang = manifold_angles(n, full_turn)
    ca, sa = ang.cos().view(n, 1, 1), ang.sin().view(n, 1, 1)
    cb, sb = ang.cos().view(1, n, 1), ang.sin().view(1, n, 1)
    z1, z2, z3, z4 = z.double().cpu()
    grid = ca * (cb * z1 + sb * z2) + sa * (cb * z3 + sb * z4)
    return grid.reshape(n * n, -1).to(z.dtype)


def quantize(frames: Tensor) -> Tensor:
    """Images in [0, 1] -> 8-bit pixels floor(256 u), so a digit decoded at its bin centres
    comes back as exactly the same uint8 image."""
    return (frames * 256).floor().clamp(0, 255).to(torch.uint8)


@torch.inference_mode()
def decode_with_bits(model: Flow, z: Tensor, seed: int = 0, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Decode latents (N, D) -> (frames (N, C, H, W) in [0, 1], bits/dim (N,) of each frame as an
    8-bit image). The bits are `Flow.bits_per_dim` of the quantized frame with the noise of `seed`:
    the number the Layer Explorer and `flow.evaluate` give that digit with that seed. A conditional model
    decodes z as classes y (N,) when given (`Flow.decode`); the bits are then still the marginal's, the one
    number per digit every page shows."""
    frames = model.decode(z.to(model.device), y).cpu()
    return frames, model.bits_per_dim(quantize(frames), seed).cpu()


@torch.inference_mode()
def encode_digits(model: Flow, digits: Tensor) -> Tensor:
    """8-bit images (B, C, H, W), MNIST's (B, 1, 28, 28) -> flat latents (B, D), encoded at the bin centres
    (x + 1/2) / 256.

    Not with dequantization noise, on purpose. On the shipped realnvp-mnist, over 400 test digits:
    bin-centre codes decode back to exactly the same 8-bit digit every time (with one noise draw, 5
    digits came back one grey level off in one pixel, where the noise sat at a bin's edge), and the
    frame half-way along a slerp between two digits scores 1.34 bits/dim against 1.76 and looks
    cleaner. Their codes are shorter than typical Gaussian draws (|z| / sqrt(D) = 0.48 against 1.00):
    the bin centre is where the model's density peaks, not a typical point of its bin."""
    return model.encode(digits).cpu()


@torch.inference_mode()
def plane_walk(model: Flow, ends: Tensor, n: int, method: str = "slerp") -> dict[str, Tensor]:
    """2-D models: the walk between the codes of two points `ends` (2, 2), decoded back into the plane, beside
    the straight line between the same two points in the plane. -> {"path": (n, 2) decoded points, "path_log_p":
    (n,) their log p(x) in nats, "line": (n, 2), "line_log_p": (n,)}: where a walk in z lands, and how likely."""
    z = model.encode(ends.to(model.device)).cpu()
    path = model.decode(interpolate(model, z[0], z[1], n, method).to(model.device))
    line = lerp(ends[0], ends[1], torch.linspace(0, 1, n)).to(model.device)
    return {"path": path.cpu(), "path_log_p": model.log_prob(path).cpu(), "line": line.cpu(),
            "line_log_p": model.log_prob(line).cpu()}
