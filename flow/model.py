"""The Real NVP model: the flow with its likelihood, sampling and traces, and `build_model`. The configuration
and the presets live in the torch-free `flow.config` and are re-exported here."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flow.config import (  # re-exported: `from flow.model import PRESETS` keeps working
    _FAST_LAYOUT,
    IMAGE_PRESETS,
    MLP_FIELDS,
    MULTISCALE_FIELDS,
    PRESETS,
    TRAINING_FIELDS,
    FlowConfig,
    Preset,
)
from flow.coupling import NVPBlock, channel_mask, checkerboard_mask, half_mask
from flow.layers import (
    FACTOR_OUT,
    ActNorm,
    ClassAffine,
    Logit,
    MultiScale,
    Squeeze,
    Stage,
    TraceStep,
    dequantize,
)
from flow.nets import MLPNet, ResNet

LOG_2PI = math.log(2 * math.pi)


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
    """A normalizing flow x -> z: a composition of invertible blocks plus a base distribution, the
    standard normal by default (paper Eq. 3),  log p(x) = log p_Z(z) + sum_k log|det dh_k/dh_{k-1}|.

    `transform` (a `layers.MultiScale`) holds the blocks in flow order; for images the first is the
    logit of the dequantized image u in [0, 1]^D, so x is u and z the flat latent (B, D): the latents
    factored out at each scale first, then the final h (`latent_shapes`, `split_latent`).

    Inputs: images as 8-bit pixels (any integer dtype, 0..255) or dequantized floats in [0, 1]; points
    as floats. Floats of another dtype than the parameters' (float64, float16, bfloat16) are converted
    to it; bool and complex tensors are refused (TypeError). Inputs move to the model's device.

    ActNorm's data-dependent start: with `config.actnorm`, each ActNorm layer sets its loc and
    log_scale from the first batch it sees in training mode (`model.train()`, the default), so that
    its output has zero mean and unit variance on that batch; from then on they are ordinary
    parameters. Call `initialize(x)` to run that start on a batch of your choice (a few hundred
    examples), or `skip_data_init()` to keep loc 0 and scale 1 (the identity). A first batch of one
    example sets loc to that very example, which warns: a one-point smoke test should use eval mode.
    `data_initialized` tells whether every ActNorm has started. Checkpoints save the state.

    Base distribution: `prior_log_prob(z)` (its log density, used by `log_prob` and so by the trainer)
    and `latents(n, ...)` (its sampler, used by `sample`). A subclass that overrides both gets its own
    prior everywhere.

    Classes (`config.num_classes` = K >= 2): a class-conditional flow p(x | y). The class y enters once, after
    the last block: `prior` (a `layers.ClassAffine`) standardises the flow's output by class y's learned mean
    and scale, and the result is standard normal. Every method that takes `y` (class indices: an int for the
    whole batch, or an integer tensor (B,), each in 0..K-1) works in those class coordinates: `forward(x, y)`,
    `encode(x, y)`, `decode(z, y)`, `log_prob(x, y)` = log p(x | y), `sample(n, y=...)`, `trace(x, y)`. Without
    y, `log_prob` and `bits_per_dim` give the marginal p(x) = sum_y p(x | y) / K; `encode`, `decode`,
    `forward` and `inverse` stay in the flow's own, class-free coordinates; `sample` draws y uniformly.
    `classify(x)` is p(y | x) by Bayes' rule with uniform p(y), from one pass through the flow.
    """

    def __init__(self, config: FlowConfig):
        super().__init__()
        self.config = config
        self.dim = math.prod(config.shape)
        stages = _mlp_stages(config) if config.coupling == "mlp" else _multiscale_stages(config)
        if config.preprocess:
            stages.insert(0, ("logit", Logit()))
        self.transform = MultiScale(tuple(config.shape), stages)
        self.prior = ClassAffine(config.num_classes, self.dim) if config.num_classes else None

    @property
    def num_classes(self) -> int:
        """K for a class-conditional model, 0 for an unconditional one."""
        return self.config.num_classes

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
        return self._as_dtype(dequantize(x, "mid")) if is_pixels(x) else x

    def _check_input(self, x: Tensor) -> Tensor:
        shape = self.config.shape
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.dtype == torch.bool or x.is_complex():
            kind = "points (floats)" if not self.config.preprocess else "8-bit pixels (an integer dtype, 0..255)"
            raise TypeError(f"{x.dtype} input is not supported: expected {kind}")
        if len(shape) == 3 and shape[0] == 1 and x.dim() == 3:
            x = x.unsqueeze(1)  # (B, H, W) greyscale images
        if tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(f"expected a batch of shape (B, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
        if not self.config.preprocess:
            if not x.is_floating_point():
                raise TypeError(f"expected points as floats, got {x.dtype}: convert them with x.float()")
            if not torch.isfinite(x).all():
                raise ValueError("the points contain NaN or infinite values")
            return self._as_dtype(x)
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
        return self._as_dtype(x)

    def _as_dtype(self, x: Tensor) -> Tensor:
        """Floats in the parameters' dtype: float64 data meets a float32 model (torch would refuse it in
        the first matmul with "mat1 and mat2 must have the same dtype")."""
        return x.to(self.dtype) if x.is_floating_point() and x.dtype != self.dtype else x

    def _check_latent(self, z: Tensor) -> Tensor:
        if not isinstance(z, Tensor) or not z.is_floating_point() or z.dim() != 2 or z.shape[1] != self.dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            kind = f", {z.dtype}" if isinstance(z, Tensor) and not z.is_floating_point() else ""
            raise ValueError(f"expected flat latents: floats of shape (B, {self.dim}), got {shape}{kind}")
        if not torch.isfinite(z).all():
            raise ValueError("the latents contain NaN or infinite values")
        return self._as_dtype(z.to(self.device))

    def _check_classes(self, y: int | Tensor | None, n: int) -> Tensor | None:
        """Class indices for a batch of n: an int (every example) or integer tensor (n,), in 0..K-1, as int64 on
        the model's device; None stays None. ValueError/TypeError for an unconditional model or a bad y."""
        if y is None:
            return None
        if not self.num_classes:
            raise ValueError("this model is unconditional (num_classes 0): call it without a class y")
        if isinstance(y, bool) or not isinstance(y, (int, Tensor)):
            raise TypeError(f"y must be a class index (int) or an integer tensor of them, not {type(y).__name__}")
        y = torch.as_tensor(y)
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(f"y must hold class indices (an integer dtype), not {y.dtype}")
        y = y.expand(n) if y.dim() == 0 else y
        if y.shape != (n,):
            raise ValueError(f"y must be one class or one per example, shape ({n},); got {tuple(y.shape)}")
        if y.numel() and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(f"classes run from 0 to {self.num_classes - 1}; got {y.min().item()}..{y.max().item()}")
        return y.to(self.device, torch.long)

    # ----- public API ---------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype (float32 unless the model was converted): float inputs are converted to it."""
        return next(self.parameters()).dtype

    def _actnorms(self) -> list[ActNorm]:
        return [m for m in self.modules() if isinstance(m, ActNorm)]

    @property
    def data_initialized(self) -> bool:
        """True when every ActNorm has had its data-dependent start (or was told to skip it)."""
        return all(bool(a.initialized) for a in self._actnorms())

    @torch.no_grad()
    def initialize(self, x: Tensor) -> "Flow":
        """Runs ActNorm's data-dependent start on the batch x (inputs as for `forward`; a few hundred
        examples): each ActNorm, in flow order, takes loc and log_scale that give its output zero mean
        and unit variance on x. Overwrites an earlier start. Keeps the model's train/eval mode; returns
        the model. Without ActNorm (config.actnorm false) it does nothing."""
        mode, norms = self.training, self._actnorms()
        if not norms:
            return self
        for a in norms:
            a.initialized.fill_(0)
        try:
            self.train()
            self(x)
        finally:
            self.train(mode)
        return self

    def skip_data_init(self) -> "Flow":
        """Marks every ActNorm as started, so that training keeps its present loc and log_scale (0 and 0,
        the identity, for a fresh model) instead of setting them from the first batch. Returns the model."""
        for a in self._actnorms():
            a.initialized.fill_(1)
        return self

    def forward(self, x: Tensor, y: int | Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, *shape) -> (z (B, D), log|det dz/dx| (B,)). Images: 8-bit pixels (integer dtype,
        0..255), taken at the bin centres, or a dequantized image u, floats in [0, 1]. With a class y
        (conditional models), z is in class y's coordinates (the class's `prior` included)."""
        u = self._as_unit(x)
        y = self._check_classes(y, u.shape[0])
        z, logdet = self.transform(u)
        if y is None:
            return z, logdet
        z, prior_logdet = self.prior(z, y)
        return z, logdet + prior_logdet

    def inverse(self, z: Tensor, y: int | Tensor | None = None) -> Tensor:
        """Flat latents z (B, D), floats -> x (B, *shape): images in [0, 1] or points; with a class y, z in
        class y's coordinates. Raises ValueError for another shape or NaN/infinite values."""
        z = self._check_latent(z)
        if (y := self._check_classes(y, z.shape[0])) is not None:
            z = self.prior.inverse(z, y)[0]
        return self.transform.inverse(z)[0]

    def log_prob(self, x: Tensor, y: int | Tensor | None = None) -> Tensor:
        """Exact log density in nats per example: log N(z; 0, I) + log|det dz/dx| (paper Eq. 3); with a
        class y, log p(x | y); for a conditional model without y, the marginal
        log p(x) = logsumexp_k [log p(x | k)] - log K (uniform classes).
        For 8-bit pixels this is the density at the bin centres, one point of each pixel's bin: not
        the probability of the 8-bit image (that is what `bits_per_dim` estimates)."""
        if self.num_classes and y is None:
            return self.marginal(self.class_log_probs(x))
        z, logdet = self(x, y)
        return self.prior_log_prob(z) + logdet

    def class_log_probs(self, x: Tensor) -> Tensor:
        """log p(x | y = k) for every class k of a conditional model, (B, K) nats, from one pass through the
        flow (only the class's Gaussian differs). Inputs as for `log_prob`."""
        if not self.num_classes:
            raise ValueError("this model is unconditional (num_classes 0): it has no classes to score")
        z, logdet = self.transform(self._as_unit(x))
        u, prior_logdet = self.prior.all_classes(z)  # (B, K, D), (K,)
        return self.prior_log_prob(u.flatten(0, 1)).view(u.shape[:2]) + prior_logdet + logdet[:, None]

    def marginal(self, class_log_probs: Tensor) -> Tensor:
        """The marginal log p(x) = logsumexp_k log p(x | k) - log K (uniform classes) from `class_log_probs`'s
        (B, K) -> (B,) nats."""
        return torch.logsumexp(class_log_probs, dim=1) - math.log(self.num_classes)

    def classify(self, x: Tensor, seed: int | None = None) -> Tensor:
        """p(y | x) for a conditional model by Bayes' rule with uniform p(y): softmax_k log p(x | k), (B, K),
        each row summing to one. 8-bit images are dequantized as `bits_per_dim` does (noise from `seed`), so
        `classify` and `class_bits` describe the same u."""
        x = self.dequantize(x, seed) if self.config.preprocess and is_pixels(x) else x
        return torch.softmax(self.class_log_probs(x), dim=1)

    def class_bits(self, x: Tensor, seed: int | None = None) -> Tensor:
        """Bits/dim of x under each class, -log2 p(x | y = k) / D on `bits_per_dim`'s scale: (B, K)."""
        x = self.dequantize(x, seed) if self.config.preprocess and is_pixels(x) else x
        return self.bits_from_log_prob(self.class_log_probs(x))

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """The base distribution's log density: flat latents (B, D) -> (B,) nats; the standard normal
        log N(z; 0, I) here. Override it (with `latents`) for another prior: `log_prob`, `bits_per_dim`
        and the trainer use it."""
        return prior_log_prob(z)

    def bits_per_dim(self, x: Tensor, seed: int | None = None, y: int | Tensor | None = None) -> Tensor:
        """Per-example bits/dim (B,): the one definition every page, the evaluation and the trainer's
        test figure use. 8-bit images (integer dtype, 0..255) are dequantized with one uniform noise
        draw, u = (x + n) / 256 (`layers.dequantize`: from the seed and each image's own pixels, or
        random without a seed), and scored on the [0, 256) pixel scale: (-log p(u) + D log 256) /
        (D log 2), an upper bound on -log2 P(x) / D in expectation (paper Sec. 4.1). Toy points:
        -log p(x) / (D log 2). With a class y, of p(x | y); a conditional model without y, of the marginal.
        Raises TypeError for float images (already dequantized: use `bits_from_log_prob(log_prob(u))`)."""
        x = self.dequantize(x, seed) if self.config.preprocess else x
        return self.bits_from_log_prob(self.log_prob(x, y))

    def dequantize(self, x: Tensor, seed: int | None = None) -> Tensor:
        """8-bit images (B, C, H, W) of any integer dtype, 0..255 -> u = (x + n) / 256 in [0, 1) on the
        model's device, with `bits_per_dim`'s uniform noise n (`layers.dequantize`). Raises TypeError
        for floats and ValueError for pixels outside 0..255 or a wrong shape."""
        x = self._check_input(x)
        if not is_pixels(x):
            raise TypeError(f"expected 8-bit images (an integer dtype, 0..255), got {x.dtype}; a float image "
                            "is already dequantized: score it with bits_from_log_prob(log_prob(u))")
        return self._as_dtype(dequantize(x, "uniform", seed).to(self.device))

    def bits_from_log_prob(self, log_prob: Tensor) -> Tensor:
        """Nats per example -> bits/dim; for images log p(u) on [0, 1)^D moves to the [0, 256)
        pixel scale by subtracting D log 256 (paper Sec. 4.1)."""
        offset = self.dim * math.log(256) if self.config.preprocess else 0.0
        return (offset - log_prob) / (self.dim * math.log(2))

    def encode(self, x: Tensor, y: int | Tensor | None = None) -> Tensor:
        """Images (8-bit pixels at their bin centres, or floats in [0, 1]) or points -> flat latents (B, D);
        with a class y, in class y's coordinates (what `decode(z, y)` and `sample(y=...)` take)."""
        return self(x, y)[0]

    def decode(self, z: Tensor, y: int | Tensor | None = None) -> Tensor:
        """Flat latents (B, D) -> images in [0, 1] of shape (B, C, H, W), or points; with a class y, z is read
        in class y's coordinates: `decode(encode(x, a), b)` is x's latent drawn as class b."""
        return self.inverse(z, y)

    def latents(self, n: int, temperature: float = 1.0, seed: int | None = None) -> Tensor:
        """The base distribution's sampler: z ~ N(0, T^2 I), (n, D) on the CPU, reproducible from the seed,
        random without one. Raises ValueError for n < 1 or a temperature that is negative or not finite."""
        if n < 1 or not (math.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"need n >= 1 and a finite temperature >= 0, got n={n}, T={temperature}")
        g = None if seed is None else torch.Generator().manual_seed(seed)
        return torch.randn(n, self.dim, generator=g) * temperature

    def sample(self, n: int, temperature: float = 1.0, seed: int | None = None, y: int | Tensor | None = None, *,
               grad: bool = False) -> Tensor:
        """n samples (n, *shape) on the model's device: images in [0, 1] or points, decoded from
        z ~ N(0, T^2 I) (`latents`); T < 1 trades diversity for cleaner samples. A conditional model samples
        class y (an int, or one per sample), or without y classes drawn uniformly (from the seed). Runs under
        torch.no_grad() (the result does not require grad) unless grad=True, for a loss on samples."""
        z = self.latents(n, temperature, seed)
        if self.num_classes and y is None:
            y = self.random_classes(n, seed)
        with torch.set_grad_enabled(grad):
            return self.decode(z, y)

    def random_classes(self, n: int, seed: int | None = None) -> Tensor:
        """n classes drawn uniformly, p(y) = 1/K (a conditional model's marginal sampler draws y, then x | y),
        reproducible from the seed (drawn apart from `latents`' stream with the same seed): (n,) int64."""
        g = None if seed is None else torch.Generator().manual_seed(seed + 1)
        return torch.randint(self.num_classes, (n,), generator=g)

    def trace(self, x: Tensor, y: int | Tensor | None = None) -> list[TraceStep]:
        """Forward trace x -> z (inputs as for `forward`): the input, then one entry per block in order,
        the logit first for images; couplings carry their mask, s and t. The last entry's state() is z. With a
        class y (conditional models), a last entry "class prior" (kind "prior") standardises z for class y."""
        u = self._as_unit(x)
        y = self._check_classes(y, u.shape[0])
        steps = [TraceStep("input", "data", u, u.new_zeros(u.shape[0]))] + list(self.transform.walk(u, "details"))
        if y is not None:
            z, logdet = self.prior(steps[-1].state(), y)
            *zs, h = self.split_latent(z)
            steps.append(TraceStep(_prior_name(y), "prior", h, logdet, zs))
        return steps

    def trace_inverse(self, z: Tensor, y: int | Tensor | None = None) -> list[TraceStep]:
        """Generative trace z -> x of flat latents (B, D): the latent, then one entry per block in reverse
        order ("undo ..."), each with the inverse block's own log-det; the last entry's output is x. With a
        class y, z is in class y's coordinates and the first block undone is the class prior."""
        z = self._check_latent(z)
        y = self._check_classes(y, z.shape[0])
        *zs, h = self.split_latent(z)
        steps = [TraceStep("latent", "data", h, h.new_zeros(h.shape[0]), zs)]
        if y is not None:
            z, logdet = self.prior.inverse(z, y)
            *zs, h = self.split_latent(z)
            steps.append(TraceStep(f"undo {_prior_name(y)}", "prior", h, logdet, zs))
        return steps + list(self.transform.walk(z, "inverse"))


def _prior_name(y: Tensor) -> str:
    """A trace's name for the class prior: "class prior (y=3)" for one class, "class prior" for several."""
    return f"class prior (y={y[0].item()})" if len(y) and (y == y[0]).all() else "class prior"


def is_pixels(x: Tensor) -> bool:
    """8-bit pixel values: an integer tensor (uint8, int64, ...), not floats or booleans."""
    return not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool


def prior_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over dimensions: (B, ...) -> (B,), in nats."""
    return -0.5 * (z.pow(2) + LOG_2PI).flatten(1).sum(1)


def build_model(preset_or_config: str | FlowConfig | dict, **overrides) -> Flow:
    """A fresh model from a preset name, a FlowConfig or its dict; keyword overrides replace fields (a new
    `shape` without `preprocess` lets preprocess follow the shape). Raises ValueError for an unknown
    preset or a bad field."""
    if isinstance(preset_or_config, str):
        if preset_or_config not in PRESETS:
            raise ValueError(f"unknown preset {preset_or_config!r}; choose from {', '.join(PRESETS)}")
        base = PRESETS[preset_or_config].config
    elif isinstance(preset_or_config, dict):
        base = FlowConfig.from_dict(preset_or_config)
    else:
        base = preset_or_config
    fields = {**base.__dict__, **overrides}
    if "shape" in overrides and "preprocess" not in overrides:
        fields["preprocess"] = None  # a new shape: images get the logit, points do not
    return Flow(FlowConfig.from_dict(fields))
