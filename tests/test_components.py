"""What each component does besides the transform contract (tests/test_transforms.py): masks, the kept half,
the bounded scale, squeeze's layout, ActNorm's initialisation, the logit formula, dequantization."""
import pytest
import torch

from flow.coupling import NVPBlock, channel_mask, checkerboard_mask, half_mask
from flow.layers import ActNorm, Logit, Squeeze, dequantize
from flow.nets import MLPNet, ResNet
from tests.helpers import randomize


def test_the_kept_half_passes_unchanged():
    for mask, net, shape in [(half_mask(6, 1), MLPNet(6, [16]), (3, 6)),
                             (checkerboard_mask(4, 4, 0), ResNet(2, 8, 1), (3, 2, 4, 4)),
                             (channel_mask(4, 1), ResNet(4, 8, 1), (3, 4, 4, 4))]:
        block = randomize(NVPBlock(mask, net, "any", mask.shape[:1] if len(shape) == 2 else (shape[1], 1, 1)))
        x = torch.randn(shape)
        y, _, details = block.forward_details(x)
        kept = mask.bool().expand(shape)
        assert torch.equal(y[kept], x[kept]) and not torch.allclose(y[~kept], x[~kept])
        assert torch.equal(details["mask"], mask) and torch.equal(details["s"].flatten(1).sum(1), block(x)[1])


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


def test_squeeze_puts_each_2x2_patch_in_one_place():
    x = torch.randn(2, 3, 4, 6)
    y, logdet = Squeeze()(x)
    assert y.shape == (2, 12, 2, 3) and torch.equal(logdet, torch.zeros(2))
    assert torch.equal(y[0, :4, 0, 0], x[0, 0, :2, :2].flatten())


@pytest.mark.parametrize("shape,param_shape", [((5, 3, 4, 4), (3, 1, 1)), ((5, 6), (6,))])
def test_actnorm_initialises_from_the_first_training_batch(shape, param_shape):
    norm = ActNorm(param_shape)
    data = torch.randn(shape) * 3 + 1
    out, _ = norm.train()(data)
    dims = [0] + list(range(2, len(shape)))
    assert torch.allclose(out.mean(dims), torch.zeros(param_shape[0]), atol=1e-5)
    assert torch.allclose(out.std(dims, correction=0), torch.ones(param_shape[0]), atol=1e-4)
    assert norm.initialized
    before = norm.loc.clone()
    norm(data * 2)  # only the first batch initialises
    assert torch.equal(norm.loc, before)


def test_logit_is_the_papers_preprocessing():
    u = dequantize(torch.randint(0, 256, (1, 1, 4, 4), dtype=torch.uint8))
    y, _ = Logit(0.05)(u)
    assert torch.allclose(y, torch.logit(0.05 + 0.9 * u), atol=1e-5)


def test_dequantize_stays_in_its_bin():
    x = torch.randint(0, 256, (1000,), dtype=torch.uint8)
    u = dequantize(x)
    assert ((u * 256).floor() == x.float()).all()
    assert torch.equal(dequantize(x, "mid"), (x.float() + 0.5) / 256)
