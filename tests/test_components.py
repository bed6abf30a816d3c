"""Each invertible component: inverse(forward(x)) == x and its log-det == log|det J| by autograd."""
import pytest
import torch

from flow.coupling import NVPBlock, channel_mask, checkerboard_mask, half_mask
from flow.layers import ActNorm, Logit, Squeeze, dequantize
from flow.nets import MLPNet, ResNet
from tests.helpers import autograd_logdet, randomize


def couplings():
    yield "half", NVPBlock(half_mask(6, 0), MLPNet(6, [16, 16]), "half", (6,)), (1, 6)
    yield "half swapped", NVPBlock(half_mask(6, 1), MLPNet(6, [16, 16]), "half", (6,)), (1, 6)
    for parity in (0, 1):
        yield f"checkerboard {parity}", NVPBlock(checkerboard_mask(4, 4, parity), ResNet(2, 8, 1), "checkerboard",
                                                 (2, 1, 1)), (1, 2, 4, 4)
        yield f"channel {parity}", NVPBlock(channel_mask(4, parity), ResNet(4, 8, 1), "channel", (4, 1, 1)), (1, 4, 4, 4)


@pytest.mark.parametrize("name,block,shape", list(couplings()), ids=[c[0] for c in couplings()])
def test_coupling_inverts_and_logdet_matches_jacobian(name, block, shape):
    randomize(block)
    x = torch.randn(shape)
    y, logdet = block(x)
    assert not torch.allclose(y, x), "a randomised block must not be the identity"
    assert torch.allclose(block.inverse(y), x, atol=1e-4)
    assert torch.allclose(logdet[0], autograd_logdet(block, x).float(), atol=1e-4)
    kept = block.mask.bool().expand(shape)
    assert torch.equal(y[kept], x[kept]), "the masked half must pass unchanged"


def test_coupling_logdet_sign_grows_volume_when_s_positive():
    block = NVPBlock(half_mask(4, 0), MLPNet(4, [8]), "half", (4,))
    with torch.no_grad():
        block.net.s_net[-1].bias.fill_(1.0)
    x = torch.randn(3, 4)
    y, logdet = block(x)
    assert (logdet > 0).all()
    assert torch.allclose(y[:, 2:].abs(), x[:, 2:].abs() * torch.exp(torch.tanh(torch.tensor(1.0))), atol=1e-5)


def test_scale_is_bounded_by_tanh():
    block = NVPBlock(half_mask(4, 0), MLPNet(4, [8]), "half", (4,))
    with torch.no_grad():
        block.net.s_net[-1].bias.fill_(1e4)
    s, _ = block.scale_and_translation(torch.randn(2, 4))
    assert s.abs().max() <= 1.0 + 1e-6


def test_masks_alternate_and_cover_everything():
    for a, b in [(half_mask(8, 0), half_mask(8, 1)), (checkerboard_mask(4, 4, 0), checkerboard_mask(4, 4, 1)),
                 (channel_mask(4, 0), channel_mask(4, 1))]:
        assert torch.equal(a + b, torch.ones_like(a))
        assert a.sum() == a.numel() / 2


def test_squeeze_inverts_and_is_volume_preserving():
    sq = Squeeze()
    x = torch.randn(2, 3, 4, 6)
    y, logdet = sq(x)
    assert y.shape == (2, 12, 2, 3)
    assert torch.equal(sq.inverse(y), x)
    assert torch.equal(logdet, torch.zeros(2))
    assert torch.allclose(autograd_logdet(sq, x[:1]), torch.tensor(0.0, dtype=torch.float64), atol=1e-6)
    # each 2x2 patch lands in one spatial location
    assert torch.equal(y[0, :4, 0, 0], x[0, 0, :2, :2].flatten())


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape,param_shape", [((5, 3, 4, 4), (3, 1, 1)), ((5, 6), (6,))])
def test_actnorm_inverts_and_logdet_matches_jacobian(training, shape, param_shape):
    norm = ActNorm(param_shape)
    data = torch.randn(shape) * 3 + 1
    norm.train()
    out, _ = norm(data)  # data-dependent initialisation
    dims = [0] + list(range(2, len(shape)))
    assert torch.allclose(out.mean(dims), torch.zeros(param_shape[0]), atol=1e-5)
    assert norm.initialized
    norm.train(training)
    x = torch.randn((1,) + shape[1:])
    y, logdet = norm(x)
    assert torch.allclose(norm.inverse(y), x, atol=1e-5)
    assert torch.allclose(logdet[0], autograd_logdet(norm, x).float(), atol=1e-4)


def test_logit_preprocessing_inverts_and_logdet_matches_jacobian():
    logit = Logit(0.05)
    u = dequantize(torch.randint(0, 256, (1, 1, 4, 4), dtype=torch.uint8))
    y, logdet = logit(u)
    assert torch.allclose(logit.inverse(y), u, atol=1e-5)
    assert torch.allclose(logdet[0], autograd_logdet(logit, u).float(), atol=1e-3)
    assert torch.allclose(y, torch.logit(0.05 + 0.9 * u), atol=1e-5)


def test_dequantize_stays_in_its_bin():
    x = torch.randint(0, 256, (1000,), dtype=torch.uint8)
    u = dequantize(x)
    assert ((u * 256).floor() == x.float()).all()
    assert torch.equal(dequantize(x, "mid"), (x.float() + 0.5) / 256)
