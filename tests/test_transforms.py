"""The transform contract (`flow.layers.Transform`), checked alike for every kind of block and for every
preset's whole flow at a small size: inverse(forward(x)) == x, forward and inverse log-det equal autograd's
log|det J|, the inverse log-det is minus the forward one, and every parameter gets a gradient.
Float64 and small shapes: a few seconds in all."""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.autograd.functional import jacobian

from flow.coupling import NVPBlock, channel_mask, checkerboard_mask, half_mask
from flow.layers import FACTOR_OUT, ActNorm, ClassAffine, Logit, MultiScale, Squeeze, Transform
from flow.model import PRESETS, build_model
from flow.nets import MLPNet, ResNet
from tests.helpers import randomize

# each preset's flow at a size whose full Jacobian takes milliseconds
SMALL = {
    "seed-mlp": {"shape": (1, 4, 4), "hidden": (8, 8)},
    "realnvp": {"shape": (1, 8, 8), "width": 8, "res_blocks": 1},
    "realnvp-fast": {"shape": (1, 8, 8), "width": 8},
    "realnvp-res1": {"shape": (1, 8, 8), "width": 8},
    "realnvp-res1-w64": {"shape": (1, 8, 8), "width": 8},
    "toy-2d": {"hidden": (16, 16)},
}


def pixels(*shape: int) -> torch.Tensor:
    """A dequantized image batch, away from 0 and 1 where the logit is steep."""
    return torch.rand(shape) * 0.98 + 0.01


def multiscale() -> MultiScale:
    """Two scales of 4x4x2 with a factor-out between them: the multi-scale piece on its own."""
    return MultiScale((2, 4, 4), [
        ("coupling 1", NVPBlock(checkerboard_mask(4, 4, 0), ResNet(2, 8, 1), "checkerboard", (2, 1, 1))),
        ("squeeze 1", Squeeze()),
        ("actnorm 1", ActNorm((8, 1, 1))),
        ("factor-out 1", FACTOR_OUT),
        ("coupling 2", NVPBlock(channel_mask(4, 1), ResNet(4, 8, 0, head_kernel=1), "channel", (4, 1, 1))),
    ])


def flow(preset: str) -> Callable[[], tuple[Transform, torch.Tensor]]:
    def make():
        model = build_model(preset, **SMALL[preset])
        x = pixels(2, *model.config.shape) if model.config.preprocess else torch.randn(2, *model.config.shape)
        return randomize(model.transform, 0.1), x
    return make


class Given(Transform):
    """A conditioned transform with its context bound: forward(x) = t(x, y), inverse(v) = t.inverse(v, y). The
    contract is the same for every context; the cases give three examples three different classes."""

    def __init__(self, transform: Transform, y: torch.Tensor):
        super().__init__()
        self.transform, self.y = transform, y

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(x, self.y)

    def inverse(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform.inverse(v, self.y)


class ConditionalFlow(Transform):
    """A class-conditional model's whole map for classes y, as `Flow.forward(x, y)` computes it (the blocks, then
    class y's prior), with the inverse that `Flow.decode(z, y)` takes, its log-det included."""

    def __init__(self, model, y: torch.Tensor):
        super().__init__()
        self.model, self.y = model, y

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(x, self.y)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, prior_logdet = self.model.prior.inverse(z, self.y)
        x, logdet = self.model.transform.inverse(h)
        assert torch.equal(x, self.model.decode(z, self.y))
        return x, logdet + prior_logdet


def conditional_flow() -> tuple[Transform, torch.Tensor]:
    model = randomize(build_model("realnvp", num_classes=3, **SMALL["realnvp"]), 0.1)
    return ConditionalFlow(model, torch.tensor([0, 1, 2])), pixels(3, 1, 8, 8)


CASES: dict[str, Callable[[], tuple[Transform, torch.Tensor]]] = {
    "coupling half mlp": lambda: (NVPBlock(half_mask(6, 0), MLPNet(6, [16, 16]), "half", (6,)), torch.randn(2, 6)),
    "coupling half swapped": lambda: (NVPBlock(half_mask(6, 1), MLPNet(6, [16]), "half", (6,)), torch.randn(2, 6)),
    "coupling checkerboard resnet": lambda: (
        NVPBlock(checkerboard_mask(4, 4, 0), ResNet(2, 8, 1), "checkerboard", (2, 1, 1)), torch.randn(2, 2, 4, 4)),
    "coupling checkerboard odd resnet": lambda: (
        NVPBlock(checkerboard_mask(4, 4, 1), ResNet(2, 8, 2), "checkerboard", (2, 1, 1)), torch.randn(2, 2, 4, 4)),
    "coupling checkerboard mlp": lambda: (
        NVPBlock(checkerboard_mask(4, 4, 0), MLPNet(32, [16]), "checkerboard", (2, 1, 1)), torch.randn(2, 2, 4, 4)),
    "coupling channel resnet": lambda: (
        NVPBlock(channel_mask(4, 0), ResNet(4, 8, 1), "channel", (4, 1, 1)), torch.randn(2, 4, 4, 4)),
    "coupling channel one-layer net": lambda: (
        NVPBlock(channel_mask(4, 1), ResNet(4, 8, 0, head_kernel=1), "channel", (4, 1, 1)), torch.randn(2, 4, 4, 4)),
    "actnorm image": lambda: (ActNorm((3, 1, 1)), torch.randn(2, 3, 4, 4)),
    "actnorm vector": lambda: (ActNorm((6,)), torch.randn(2, 6)),
    "squeeze": lambda: (Squeeze(), torch.randn(2, 3, 4, 6)),
    "logit": lambda: (Logit(), pixels(2, 1, 4, 4)),
    "multiscale": lambda: (multiscale(), torch.randn(2, 2, 4, 4)),
    **{f"flow {preset}": flow(preset) for preset in PRESETS},
    # conditioned transforms: three examples of three classes, each class's parameters in play
    "class prior": lambda: (Given(ClassAffine(3, 6), torch.tensor([0, 1, 2])), torch.randn(3, 6)),
    "flow realnvp given classes": conditional_flow,
}


@pytest.fixture(params=list(CASES))
def case(request) -> tuple[Transform, torch.Tensor]:
    """A transform with random parameters (fresh ones start as the identity), in float64 and eval mode."""
    transform, x = CASES[request.param]()
    return randomize(transform, 0.1).double().eval(), x.double()


def autograd_logdets(fn: Callable, x: torch.Tensor) -> torch.Tensor:
    """(B,): log|det| of each example's block of the Jacobian of fn at the whole batch x (examples are independent
    in eval mode, so the batch's Jacobian is block-diagonal; a conditioned transform sees its context's classes)."""
    jac = jacobian(lambda v: fn(v.view_as(x))[0].flatten(), x.flatten(), vectorize=True)
    n, d_out, d_in = len(x), jac.shape[0] // len(x), x[0].numel()
    across = jac.view(n, d_out, n, d_in).clone()
    across[range(n), :, range(n)] = 0
    assert across.abs().max() == 0, "an example's output depends on another example"
    return torch.stack([torch.linalg.slogdet(jac[i * d_out:(i + 1) * d_out, i * d_in:(i + 1) * d_in])[1]
                        for i in range(n)])


def test_every_preset_has_a_small_size():
    assert set(SMALL) == set(PRESETS)


def test_inverts_with_the_negated_logdet(case):
    transform, x = case
    y, logdet = transform(x)
    back, inverse_logdet = transform.inverse(y)
    assert logdet.shape == inverse_logdet.shape == (len(x),)
    assert not torch.allclose(y.flatten(1), x.flatten(1)), "a random transform is not the identity"
    assert torch.allclose(back, x, atol=1e-10)
    assert torch.allclose(inverse_logdet, -logdet, atol=1e-10)


def test_logdets_match_autograd_both_ways(case):
    transform, x = case
    y, logdet = transform(x)
    assert torch.allclose(logdet, autograd_logdets(transform, x), atol=1e-8)
    assert torch.allclose(transform.inverse(y)[1], autograd_logdets(transform.inverse, y), atol=1e-8)


def test_every_parameter_gets_a_gradient(case):
    transform, x = case
    y, logdet = transform(x.requires_grad_())
    (y.square().sum() + logdet.sum()).backward()
    for name, p in [("the input", x), *transform.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
