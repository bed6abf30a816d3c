"""A model's configuration and the named presets: plain data, importable without torch."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace


MLP_FIELDS = ("n_blocks", "hidden")
MULTISCALE_FIELDS = ("n_scales", "squeeze_first", "couplings_per_half", "final_couplings", "width", "res_blocks",
                     "head_kernel")


@dataclass
class FlowConfig:
    """Everything that fixes a model's architecture (the training settings are `flow.options`').

    Fields (all have defaults; `PRESETS` holds the tuned combinations):

    shape: tuple[int, ...] = (1, 28, 28)
        One example: (C, H, W) for images, (D,) for points.
    coupling: str = 'resnet'
        "mlp": half-split couplings whose s and t come from an MLP on the flattened example (points or
        small images); "resnet": the paper's multi-scale convolutional flow (images only).
    preprocess: bool | None = None
        Dequantize 8-bit pixels and apply the logit before the first coupling (paper Sec. 4.1): for
        images, whose inputs are then 8-bit pixels (an integer dtype, 0..255) or floats in [0, 1].
        None (the default) follows the shape: True for (C, H, W), False for (D,); the resolved bool is
        what the config holds and what a checkpoint saves.
    actnorm: bool = True
        An ActNorm layer after every coupling (its first training batch sets its start: see `Flow`).
    num_classes: int = 0
        0: an unconditional flow, p(x). K >= 2: a class-conditional flow p(x | y) for y in 0..K-1, whose
        latent has a learned Gaussian per class (Glow's class-conditional prior, Kingma & Dhariwal 2018,
        Sec. 5): the flow's output z, standardised by the class's mean and scale (`layers.ClassAffine`),
        is standard normal. Without a class the model's density is the marginal over uniform classes.

    For coupling="mlp" only:

    n_blocks: int = 4
        Number of couplings; the halves that are kept and transformed swap from one to the next.
    hidden: tuple[int, ...] = (64, 128, 128, 64)
        Widths of the hidden layers of each coupling's MLP.

    For coupling="resnet" only (paper Sec. 3.6, Fig. 4):

    n_scales: int = 2
        Number of scales; every scale but the last ends with a squeeze and factors out half the channels.
    squeeze_first: bool = True
        Squeeze (C, H, W) to (4C, H/2, W/2) before the first coupling (28x28x1 -> 14x14x4); H, W even.
    couplings_per_half: int = 3
        Checkerboard couplings, then as many channel-wise ones, at each scale but the last.
    final_couplings: int = 4
        Checkerboard couplings at the last scale.
    width: int = 64
        Feature maps (channels) of each coupling's ResNet.
    res_blocks: int = 2
        Residual blocks per ResNet (0: one conv layer, then the head).
    head_kernel: int = 3
        Kernel size (odd) of the ResNet's last conv, the one that outputs s and t; 1 gives 1x1 heads.

    Raises ValueError naming the field for a value of the wrong kind, a shape the coupling cannot take,
    or a field that the chosen coupling does not use set away from its default.
    """

    shape: tuple[int, ...] = (1, 28, 28)
    coupling: str = "resnet"
    preprocess: bool | None = None
    actnorm: bool = True
    num_classes: int = 0
    n_blocks: int = 4
    hidden: tuple[int, ...] = (64, 128, 128, 64)
    n_scales: int = 2
    squeeze_first: bool = True
    couplings_per_half: int = 3
    final_couplings: int = 4
    width: int = 64
    res_blocks: int = 2
    head_kernel: int = 3

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
            elif f.name == "preprocess":
                rule, ok = "true, false or None (None: follow the shape)", value is None or isinstance(value, bool)
            elif isinstance(f.default, int):
                low = 0 if f.name in ("couplings_per_half", "res_blocks", "num_classes") else 1
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
        if self.preprocess is None:  # images are 8-bit pixels to dequantize, points are taken as they are
            self.preprocess = len(self.shape) == 3
        if self.num_classes == 1:
            raise ValueError("num_classes must be 0 (unconditional) or at least 2 (got 1): one class is no condition")
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
