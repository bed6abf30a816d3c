"""The Real NVP model: configuration, presets, and the flow with its likelihood, sampling and traces."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor, nn

from flow.coupling import NVPBlock, channel_mask, checkerboard_mask, half_mask
from flow.layers import (
    FACTOR_OUT,
    ActNorm,
    Logit,
    MultiScale,
    Squeeze,
    Stage,
    TraceStep,
    dequantize,
)
from flow.nets import MLPNet, ResNet

LOG_2PI = math.log(2 * math.pi)


MLP_FIELDS = ("n_blocks", "hidden")
MULTISCALE_FIELDS = ("n_scales", "squeeze_first", "couplings_per_half", "final_couplings", "width", "res_blocks",
                     "head_kernel")


@dataclass
class FlowConfig:
    """Everything that fixes a model's architecture (the training settings are `flow.options`')."""

    shape: tuple[int, ...] = (1, 28, 28)  # one example: (C, H, W) images or (D,) points
    coupling: str = "resnet"  # "mlp": half-split MLP couplings; "resnet": the multi-scale conv flow
    preprocess: bool = True  # dequantize 8-bit pixels and apply the logit (images only)
    actnorm: bool = True  # ActNorm after every coupling
    # MLP couplings
    n_blocks: int = 4
    hidden: tuple[int, ...] = (64, 128, 128, 64)
    # multi-scale ResNet couplings
    n_scales: int = 2
    squeeze_first: bool = True  # squeeze 28x28x1 to 14x14x4 before the first coupling
    couplings_per_half: int = 3  # checkerboard couplings, then channel-wise ones, at each scale
    final_couplings: int = 4  # checkerboard couplings at the last scale
    width: int = 64
    res_blocks: int = 2
    head_kernel: int = 3  # kernel of the last conv, the one that outputs s and t

    def __post_init__(self) -> None:
        """Refuses a configuration that cannot build a working model, with the reason (ValueError)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # JSON has no tuples
                value = tuple(value)
                setattr(self, f.name, value)
            whole = isinstance(value, int) and not isinstance(value, bool)
            if isinstance(f.default, tuple):
                rule = "a list of whole numbers of at least 1"
                ok = isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                                      for v in value)
            elif isinstance(f.default, bool):
                rule, ok = "true or false", isinstance(value, bool)
            elif isinstance(f.default, int):
                low = 0 if f.name in ("couplings_per_half", "res_blocks") else 1
                rule, ok = f"a whole number of at least {low}", whole and value >= low
            elif isinstance(f.default, float):
                rule = "a number above 0"
                ok = (whole or isinstance(value, float)) and math.isfinite(value) and value > 0
            else:
                rule, ok = "a string", isinstance(value, str)
            if not ok:
                raise ValueError(f"{f.name} must be {rule} (got {value!r})")
        if len(self.shape) not in (1, 3):
            raise ValueError(f"shape must be (D,) for points or (C, H, W) for images (got {self.shape})")
        if self.coupling not in ("mlp", "resnet"):
            raise ValueError(f"coupling must be 'mlp' or 'resnet' (got {self.coupling!r})")
        if self.coupling == "resnet" and len(self.shape) != 3:
            raise ValueError(f"coupling 'resnet' convolves images: it needs a shape (C, H, W), not {self.shape}")
        unused = MULTISCALE_FIELDS if self.coupling == "mlp" else MLP_FIELDS
        if stray := [f.name for f in fields(self) if f.name in unused and getattr(self, f.name) != f.default]:
            raise ValueError(f"{', '.join(stray)} only shape{'s' if len(stray) == 1 else ''} the "
                             f"{'resnet' if self.coupling == 'mlp' else 'mlp'} coupling, not {self.coupling!r}: "
                             "leave it at its default")
        if self.head_kernel % 2 == 0:
            raise ValueError(f"head_kernel must be odd (got {self.head_kernel}): an even kernel changes the map's size")

    @classmethod
    def from_dict(cls, d: dict) -> "FlowConfig":
        known = [f.name for f in fields(cls)]
        if training := [k for k in d if k in TRAINING_FIELDS]:
            flags = " and ".join("--" + k.replace("_", "-") for k in training)
            raise ValueError(f"{', '.join(training)}: training options, not part of the architecture: pass {flags}")
        unknown = set(d) - set(known)
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))} (the fields are {', '.join(known)})")
        return cls(**d)


@dataclass(frozen=True)
class Preset:
    """A named model: its architecture, the training defaults it was tuned with, and one line about it."""

    config: FlowConfig
    lr: float
    batch_size: int
    summary: str
    beta2: float = 0.999  # Adam's second-moment decay (the paper's Adam: 0.999)


# realnvp-fast's layout (6 / 6 couplings at the first scale, 8 at the last, 1x1 heads), which the next two vary
_FAST_LAYOUT = FlowConfig(coupling="resnet", n_scales=2, squeeze_first=True, couplings_per_half=6, final_couplings=8,
                          width=32, res_blocks=0, head_kernel=1)
PRESETS: dict[str, Preset] = {
    "seed-mlp": Preset(FlowConfig(coupling="mlp", actnorm=False, n_blocks=4, hidden=(64, 128, 128, 64)),
                       lr=1e-3, batch_size=64, summary="the seed design: 4 half-split MLP couplings on the flat image"),
    "realnvp": Preset(FlowConfig(coupling="resnet", n_scales=2, squeeze_first=True, width=32, res_blocks=2),
                      lr=1e-3, batch_size=64, summary="the paper's multi-scale conv Real NVP, sized for 2 CPU cores"),
    "realnvp-fast": Preset(_FAST_LAYOUT, lr=1.5e-2, batch_size=32,
                           summary="twice the couplings, each one conv layer and a 1x1 head"),
    "realnvp-res1": Preset(replace(_FAST_LAYOUT, res_blocks=1), lr=1.5e-2, batch_size=32,
                           summary="realnvp-fast with one residual block per coupling: a 7x7 view, strokes sooner"),
    "realnvp-res1-w64": Preset(replace(_FAST_LAYOUT, res_blocks=1, width=64), lr=6e-3, batch_size=64,
                               summary="realnvp-res1 at width 64: 3.7x the parameters, for runs of hours"),
    "toy-2d": Preset(FlowConfig(shape=(2,), coupling="mlp", preprocess=False, n_blocks=8, hidden=(64, 64)),
                     lr=1e-3, batch_size=256, summary="8 MLP couplings with ActNorm for 2-D toy data"),
}
IMAGE_PRESETS = [name for name, p in PRESETS.items() if len(p.config.shape) == 3]  # the MNIST ones
TRAINING_FIELDS = ("lr", "batch_size")  # were FlowConfig fields once: older checkpoint headers still hold them


def default_data(preset: str) -> str:
    """The data set a preset trains on unless told otherwise: MNIST for the image presets, else moons."""
    return "mnist" if preset in IMAGE_PRESETS else "moons"


def fits_data(preset: str, data: str) -> bool:
    """The image presets model MNIST, the others (toy-2d) the 2-D toy sets."""
    return (preset in IMAGE_PRESETS) == (data == "mnist")


def _add_coupling(stages: list[Stage], config: FlowConfig, mask: Tensor, net: nn.Module, mask_kind: str,
                  scale_shape: tuple[int, ...]) -> None:
    n = sum(t is not None and t.kind == "coupling" for _, t in stages) + 1
    stages.append((f"coupling {n} ({mask_kind})", NVPBlock(mask, net, mask_kind, scale_shape)))
    if config.actnorm:
        stages.append((f"actnorm {n}", ActNorm(scale_shape)))


def _mlp_stages(config: FlowConfig) -> list[Stage]:
    """n_blocks half-split couplings on the flattened example, the halves swapping from block to block."""
    shape, dim, stages = config.shape, math.prod(config.shape), []
    norm_shape = shape if len(shape) == 1 else (shape[0],) + (1,) * (len(shape) - 1)
    for i in range(config.n_blocks):
        _add_coupling(stages, config, half_mask(dim, i).view(shape), MLPNet(dim, config.hidden), "half", norm_shape)
    return stages


def _multiscale_stages(config: FlowConfig) -> list[Stage]:
    """The multi-scale architecture (paper Sec. 3.6, Fig. 4): at each scale checkerboard couplings, a
    squeeze, channel-wise couplings and a factor-out of half the channels; checkerboard ones at the last."""
    c, h, w = config.shape
    stages: list[Stage] = []

    def resnet(channels: int) -> ResNet:
        return ResNet(channels, config.width, config.res_blocks, config.head_kernel)

    if config.squeeze_first:
        if h % 2 or w % 2:
            raise ValueError(f"cannot squeeze a {h}x{w} image: set squeeze_first to false")
        stages.append(("squeeze 0", Squeeze()))
        c, h, w = 4 * c, h // 2, w // 2
    for scale in range(1, config.n_scales + 1):
        last = scale == config.n_scales
        for k in range(config.final_couplings if last else config.couplings_per_half):
            _add_coupling(stages, config, checkerboard_mask(h, w, k), resnet(c), "checkerboard", (c, 1, 1))
        if last:
            break
        if h % 2 or w % 2:
            raise ValueError(f"cannot squeeze a {h}x{w} map: use fewer scales")
        stages.append((f"squeeze {scale}", Squeeze()))
        c, h, w = 4 * c, h // 2, w // 2
        for k in range(config.couplings_per_half):
            _add_coupling(stages, config, channel_mask(c, k), resnet(c), "channel", (c, 1, 1))
        stages.append((f"factor-out {scale}", FACTOR_OUT))
        c //= 2
    return stages


class Flow(nn.Module):
    """A normalizing flow x -> z: a composition of invertible blocks plus a standard normal prior
    (paper Eq. 3),  log p(x) = log N(z; 0, I) + sum_k log|det dh_k/dh_{k-1}|.

    `transform` (a `layers.MultiScale`) holds the blocks in flow order; for images the first is the
    logit of the dequantized image u in [0, 1]^D, so x is u and z the flat latent (B, D): the latents
    factored out at each scale first, then the final h (`latent_shapes`, `split_latent`).
    """

    def __init__(self, config: FlowConfig):
        super().__init__()
        self.config = config
        self.dim = math.prod(config.shape)
        stages = _mlp_stages(config) if config.coupling == "mlp" else _multiscale_stages(config)
        if config.preprocess:
            stages.insert(0, ("logit", Logit()))
        self.transform = MultiScale(tuple(config.shape), stages)

    @property
    def names(self) -> list[str]:
        """The blocks' names in flow order after the logit: a forward trace's entries after "input" and "logit"."""
        return [name for name, t in self.transform.stages if t is None or t.kind != "preprocess"]

    @property
    def latent_shapes(self) -> list[tuple[int, ...]]:
        """The shapes of the factored-out z_1, ..., z_k, then of the final h: the parts of a flat z."""
        return self.transform.latent_shapes

    def split_latent(self, z: Tensor) -> list[Tensor]:
        """Flat z (B, D) -> [z_1, ..., z_k, h_final] in their shapes (the factored-out scales first)."""
        return self.transform.split_latent(z)

    # ----- checking what comes in -----------------------------------------------------------
    def _as_unit(self, x: Tensor) -> Tensor:
        """Checks an input batch and moves it to the model: 8-bit images (any integer dtype, 0..255)
        are placed at their bin centres, dequantized images (floats in [0, 1]) and points are taken as
        they are. Raises ValueError or TypeError, naming what is expected, for anything else."""
        x = self._check_input(x).to(self.device)
        return dequantize(x, "mid") if is_pixels(x) else x

    def _check_input(self, x: Tensor) -> Tensor:
        shape = self.config.shape
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if len(shape) == 3 and shape[0] == 1 and x.dim() == 3:
            x = x.unsqueeze(1)  # (B, H, W) greyscale images
        if tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(f"expected a batch of shape (B, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
        if not self.config.preprocess:
            if not x.is_floating_point():
                raise TypeError(f"expected points as floats, got {x.dtype}")
            if not torch.isfinite(x).all():
                raise ValueError("the points contain NaN or infinite values")
            return x
        if is_pixels(x):
            if x.dtype != torch.uint8 and x.numel() and (x.min() < 0 or x.max() > 255):
                raise ValueError(f"8-bit pixels must lie in 0..255, got {x.min().item()}..{x.max().item()}")
            return x
        if not x.is_floating_point():
            raise TypeError(f"expected 8-bit pixels (an integer dtype, 0..255) or a dequantized image "
                            f"(floats in [0, 1]), got {x.dtype}")
        if x.numel() and not (torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
            lo, hi = x.nan_to_num().min().item(), x.nan_to_num().max().item()
            raise ValueError(f"a float image must be dequantized to [0, 1], got values in [{lo:g}, {hi:g}]"
                             + (" and NaN or infinite ones" if not torch.isfinite(x).all() else "")
                             + "; pass 8-bit pixels 0..255 as an integer tensor (x.to(torch.uint8)) instead")
        return x

    def _check_latent(self, z: Tensor) -> Tensor:
        if not isinstance(z, Tensor) or not z.is_floating_point() or z.dim() != 2 or z.shape[1] != self.dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"expected flat latents: floats of shape (B, {self.dim}), got {shape}")
        if not torch.isfinite(z).all():
            raise ValueError("the latents contain NaN or infinite values")
        return z.to(self.device)

    # ----- public API ---------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, *shape) -> (z (B, D), log|det dz/dx| (B,)). Images: 8-bit pixels (integer dtype,
        0..255), taken at the bin centres, or a dequantized image u, floats in [0, 1]."""
        return self.transform(self._as_unit(x))

    def inverse(self, z: Tensor) -> Tensor:
        """Flat latents z (B, D), floats -> x (B, *shape): images in [0, 1] or points. Raises ValueError
        for another shape or NaN/infinite values."""
        return self.transform.inverse(self._check_latent(z))[0]

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log density in nats per example: log N(z; 0, I) + log|det dz/dx| (paper Eq. 3).
        For 8-bit pixels this is the density at the bin centres, one point of each pixel's bin: not
        the probability of the 8-bit image (that is what `bits_per_dim` estimates)."""
        z, logdet = self(x)
        return prior_log_prob(z) + logdet

    def bits_per_dim(self, x: Tensor, seed: int | None = None) -> Tensor:
        """Per-example bits/dim (B,): the one definition every page, the evaluation and the trainer's
        test figure use. 8-bit images (integer dtype, 0..255) are dequantized with one uniform noise
        draw, u = (x + n) / 256 (`layers.dequantize`: from the seed and each image's own pixels, or
        random without a seed), and scored on the [0, 256) pixel scale: (-log p(u) + D log 256) /
        (D log 2), an upper bound on -log2 P(x) / D in expectation (paper Sec. 4.1). Toy points:
        -log p(x) / (D log 2). Raises TypeError for float images (already dequantized: use
        `bits_from_log_prob(log_prob(u))`)."""
        x = self.dequantize(x, seed) if self.config.preprocess else x
        return self.bits_from_log_prob(self.log_prob(x))

    def dequantize(self, x: Tensor, seed: int | None = None) -> Tensor:
        """8-bit images (B, C, H, W) of any integer dtype, 0..255 -> u = (x + n) / 256 in [0, 1) on the
        model's device, with `bits_per_dim`'s uniform noise n (`layers.dequantize`). Raises TypeError
        for floats and ValueError for pixels outside 0..255 or a wrong shape."""
        x = self._check_input(x)
        if not is_pixels(x):
            raise TypeError(f"expected 8-bit images (an integer dtype, 0..255), got {x.dtype}; a float image "
                            "is already dequantized: score it with bits_from_log_prob(log_prob(u))")
        return dequantize(x, "uniform", seed).to(self.device)

    def bits_from_log_prob(self, log_prob: Tensor) -> Tensor:
        """Nats per example -> bits/dim; for images log p(u) on [0, 1)^D moves to the [0, 256)
        pixel scale by subtracting D log 256 (paper Sec. 4.1)."""
        offset = self.dim * math.log(256) if self.config.preprocess else 0.0
        return (offset - log_prob) / (self.dim * math.log(2))

    def encode(self, x: Tensor) -> Tensor:
        """Images (8-bit pixels at their bin centres, or floats in [0, 1]) or points -> flat latents (B, D)."""
        return self(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        """Flat latents (B, D) -> images in [0, 1] of shape (B, C, H, W), or points."""
        return self.inverse(z)

    def latents(self, n: int, temperature: float = 1.0, seed: int | None = None) -> Tensor:
        """z ~ N(0, T^2 I), (n, D) on the CPU: reproducible from the seed, random without one.
        Raises ValueError for n < 1 or a temperature that is negative or not finite."""
        if n < 1 or not (math.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"need n >= 1 and a finite temperature >= 0, got n={n}, T={temperature}")
        g = None if seed is None else torch.Generator().manual_seed(seed)
        return torch.randn(n, self.dim, generator=g) * temperature

    def sample(self, n: int, temperature: float = 1.0, seed: int | None = None) -> Tensor:
        """Decode z ~ N(0, T^2 I) (`latents`); T < 1 trades diversity for cleaner samples."""
        return self.decode(self.latents(n, temperature, seed))

    def trace(self, x: Tensor) -> list[TraceStep]:
        """Forward trace x -> z (inputs as for `forward`): the input, then one entry per block in order,
        the logit first for images; couplings carry their mask, s and t. The last entry's state() is z."""
        u = self._as_unit(x)
        return [TraceStep("input", "data", u, u.new_zeros(u.shape[0]))] + list(self.transform.walk(u, "details"))

    def trace_inverse(self, z: Tensor) -> list[TraceStep]:
        """Generative trace z -> x of flat latents (B, D): the latent, then one entry per block in reverse
        order ("undo ..."), each with the inverse block's own log-det; the last entry's output is x."""
        z = self._check_latent(z)
        *zs, h = self.split_latent(z)
        latent = TraceStep("latent", "data", h, h.new_zeros(h.shape[0]), zs)
        return [latent] + list(self.transform.walk(z, "inverse"))


def is_pixels(x: Tensor) -> bool:
    """8-bit pixel values: an integer tensor (uint8, int64, ...), not floats or booleans."""
    return not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool


def prior_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over dimensions: (B, ...) -> (B,), in nats."""
    return -0.5 * (z.pow(2) + LOG_2PI).flatten(1).sum(1)


def build_model(preset_or_config: str | FlowConfig | dict, **overrides) -> Flow:
    """A fresh model from a preset name, a FlowConfig or its dict; keyword overrides replace fields."""
    if isinstance(preset_or_config, str):
        if preset_or_config not in PRESETS:
            raise ValueError(f"unknown preset {preset_or_config!r}; choose from {', '.join(PRESETS)}")
        base = PRESETS[preset_or_config].config
    elif isinstance(preset_or_config, dict):
        base = FlowConfig.from_dict(preset_or_config)
    else:
        base = preset_or_config
    config = FlowConfig.from_dict({**base.__dict__, **overrides})
    return Flow(config)
