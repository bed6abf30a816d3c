"""The whole flow: the multi-scale layout, NLL and bits/dim, traces that add up, input checks (the
transform contract of every preset: tests/test_transforms.py)."""
import math

import pytest
import torch
from safetensors import safe_open

from flow.checkpoint import load_checkpoint
from flow.data import load_dataset
from flow.files import ROOT
from flow.layers import noise_for
from flow.model import build_model, prior_log_prob
from tests.helpers import SMALL_MULTISCALE, randomize


def example_input(model, n=3):
    if model.config.preprocess:
        return torch.rand((n,) + model.config.shape) * 0.98 + 0.01
    return torch.randn((n,) + model.config.shape)


def test_the_multiscale_flow_factors_out_half_and_keeps_the_flat_layout():
    model = randomize(build_model(SMALL_MULTISCALE), 0.1).eval()
    assert model.names.count("factor-out 1") == 1 and model.latent_shapes == [(2, 4, 4), (2, 4, 4)]
    assert [name for name, _ in model.transform.stages][:2] == ["logit", "coupling 1 (checkerboard)"]
    u = example_input(model, 2)
    trace = model.trace(u)
    split = next(s for s in trace if s.kind == "factor-out")
    z = model.encode(u)
    assert torch.equal(model.split_latent(z)[0], trace[-1].factored[0]) and torch.equal(split.factored[0],
                                                                                         trace[-1].factored[0])
    assert torch.allclose(model.decode(z), u, atol=1e-5)


def test_identity_flow_gives_the_analytic_nll():
    model = build_model("toy-2d", actnorm=False).eval()  # zero-initialised heads: every block is the identity
    x = torch.randn(500, 2)
    expected = -0.5 * (x.pow(2).sum(1) + 2 * math.log(2 * math.pi))
    assert torch.allclose(model.log_prob(x), expected, atol=1e-5)
    assert torch.allclose(model.bits_per_dim(x), -expected / (2 * math.log(2)), atol=1e-5)


def test_bits_per_dim_follows_the_published_formula():
    model = randomize(build_model(SMALL_MULTISCALE), 0.05).eval()
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    u = (x.float() + noise_for(x, 3)) / 256
    by_hand = (-model.log_prob(u) + 64 * math.log(256)) / (64 * math.log(2))
    assert torch.allclose(model.bits_per_dim(x, seed=3), by_hand, atol=1e-5)
    with pytest.raises(TypeError, match="already dequantized"):
        model.bits_per_dim(u)


def test_an_images_noise_depends_on_the_seed_and_the_image_alone():
    x = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    noise = noise_for(x, 3)
    assert torch.equal(noise_for(x[[3]], 3)[0], noise[3])  # whatever batch it is in
    assert torch.equal(noise_for(x.long(), 3), noise)  # whatever integer dtype holds the pixels
    assert not torch.equal(noise_for(x, 4), noise) and not torch.equal(noise[0], noise[1])
    assert 0 <= noise.min() and noise.max() < 1


def test_trace_logdets_with_the_prior_sum_to_log_prob():
    model = randomize(build_model("realnvp"), 0.02).eval()
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    trace = model.trace(x)
    assert trace[0].kind == "data" and trace[1].kind == "preprocess"
    assert len(trace) == len(model.names) + 2
    z = trace[-1].state()
    assert torch.allclose(z, model.encode(x), atol=1e-5)
    total = prior_log_prob(z) + sum(step.logdet for step in trace)
    assert torch.allclose(total, model.log_prob(x), rtol=1e-5)
    couplings = [s for s in trace if s.kind == "coupling"]
    assert all(s.mask is not None and s.s.shape == s.output.shape for s in couplings)
    assert {s.mask.shape for s in couplings} == {(1, 14, 14), (16, 1, 1), (1, 7, 7)}


def test_inverse_trace_walks_back_to_the_image():
    model = randomize(build_model("realnvp"), 0.02).eval()
    x = torch.rand(1, 1, 28, 28)
    z = model.encode(x)
    back = model.trace_inverse(z)
    assert back[0].kind == "data" and back[-1].kind == "preprocess"
    assert torch.allclose(back[-1].output, x, atol=1e-4)
    forward = model.trace(x)
    assert [s.name for s in back[1:]] == [f"undo {s.name}" for s in forward[:1:-1]] + ["undo the logit"]
    for undo, block in zip(back[1:], forward[::-1]):  # each inverse block's own log-det (paper Eq. 8)
        assert torch.allclose(undo.logdet, -block.logdet, rtol=1e-4, atol=1e-2), undo.name


def test_sampling_with_temperature():
    model = randomize(build_model("realnvp"), 0.02).eval()
    samples = model.sample(5, temperature=0.7, seed=0)
    assert samples.shape == (5, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    cold = model.sample(2, temperature=0.0)
    assert torch.allclose(cold, model.decode(torch.zeros(2, model.dim)))


def test_unknown_preset_and_fields_are_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("glow")
    with pytest.raises(ValueError, match="unknown config field"):
        build_model("realnvp", depth=3)


def test_integer_pixels_of_any_dtype_are_8_bit_images_and_anything_else_is_refused_by_name():
    model = randomize(build_model(SMALL_MULTISCALE), 0.05).eval()
    x = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    for dtype in (torch.int64, torch.int32, torch.int16):
        assert torch.equal(model.log_prob(x.to(dtype)), model.log_prob(x))
        assert torch.equal(model.bits_per_dim(x.to(dtype), seed=1), model.bits_per_dim(x, seed=1))
    assert torch.equal(model.encode(x[:, 0].long()), model.encode(x))  # (B, H, W) greyscale
    calls = {"log_prob": model.log_prob, "encode": model.encode, "trace": model.trace,
             "bits_per_dim": model.bits_per_dim, "forward": model}
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"dequantized to \[0, 1\].*integer tensor"):
            call(x.float())  # pixel values 0..255 as floats: the old silent NaN
        with pytest.raises(ValueError, match=r"dequantized to \[0, 1\]"):
            call(torch.full((1, 1, 8, 8), -0.1))
        with pytest.raises(ValueError, match="NaN"):
            call(torch.full((1, 1, 8, 8), float("nan")))
        with pytest.raises(ValueError, match=r"0\.\.255"):
            call(torch.full((1, 1, 8, 8), 256, dtype=torch.int64))
        with pytest.raises(ValueError, match=r"batch of shape \(B, 1, 8, 8\)"):
            call(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
        with pytest.raises(TypeError, match="integer dtype"):
            call(torch.zeros(1, 1, 8, 8, dtype=torch.bool))
        with pytest.raises(TypeError, match="torch.Tensor"):
            call(x.numpy())
    with pytest.raises(TypeError, match="already dequantized"):
        model.bits_per_dim(torch.rand(1, 1, 8, 8))
    toy = build_model("toy-2d").eval()
    assert torch.isfinite(toy.log_prob(torch.randn(3, 2))).all()
    with pytest.raises(ValueError, match="NaN"):
        toy.log_prob(torch.tensor([[0.0, float("inf")]]))
    with pytest.raises(TypeError, match="floats"):
        toy.log_prob(torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="temperature"):
        model.latents(2, -1.0)
    with pytest.raises(ValueError, match=r"flat latents: floats of shape \(B, 64\)"):
        model.decode(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        model.decode(torch.full((1, 64), float("nan")))


@pytest.mark.parametrize("name", ["realnvp-mnist", "seed-mlp-mnist", "toy-2d-moons"])
def test_checkpoints_with_the_old_block_names_still_load(name):
    """The shipped files name a block's weights steps.N, N its index in `Flow.names` (no logit, factor-outs
    counted); a loaded model holds each of them in that block."""
    path = ROOT / "checkpoints" / f"{name}.safetensors"
    with safe_open(str(path), framework="pt") as f:
        stored = {key: f.get_tensor(key) for key in f.keys()}
    model = load_checkpoint(path)
    assert all(key.startswith("steps.") for key in stored) and len(stored) == len(model.state_dict())
    blocks = dict(model.transform.stages)
    for key, value in stored.items():
        _, n, rest = key.split(".", 2)
        assert torch.equal(blocks[model.names[int(n)]].state_dict()[rest], value), key


def test_bf16_autocast_runs_the_nets_in_bf16_and_keeps_the_likelihood_float32():
    # what `flow.train --bf16` optimizes: on the shipped model, a close stand-in for the float32 figure
    model = load_checkpoint(ROOT / "checkpoints" / "realnvp-mnist.safetensors").eval()
    u = model.dequantize(load_dataset("mnist", "test")[:64], seed=0)
    seen = []
    coupling = dict(model.transform.stages)["coupling 1 (checkerboard)"]
    hook = coupling.net.register_forward_hook(lambda m, i, out: seen.append(out[0].dtype))
    with torch.no_grad():
        exact = model.bits_from_log_prob(model.log_prob(u))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z, logdet = model(u)
    hook.remove()
    assert seen == [torch.float32, torch.bfloat16]  # the s/t net's output, without and with autocast
    assert z.dtype == logdet.dtype == torch.float32
    bf16 = model.bits_from_log_prob(prior_log_prob(z) + logdet)
    assert (bf16 - exact).abs().max() < 0.05 and (bf16 - exact).mean().abs() < 0.01  # measured: 0.020 and 0.003
