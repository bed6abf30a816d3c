"""The library's API without surprises (issue 30): documented config fields, preprocess that follows the shape,
inputs of other dtypes converted or refused by name, sampling without autograd, ActNorm's start chosen by the
caller, and a base distribution a subclass can replace."""
import json
import math
import pydoc
import warnings
from dataclasses import fields

import pytest
import torch
from safetensors import safe_open

from flow.checkpoint import load_checkpoint, read_header, save_checkpoint
from flow.files import ROOT
from flow.layers import ActNorm
from flow.model import Flow, FlowConfig, build_model
from tests.helpers import SMALL_MULTISCALE, randomize

POINTS = FlowConfig(shape=(5,), coupling="mlp", n_blocks=2, hidden=(16,))


def points_model() -> Flow:
    return randomize(build_model(POINTS), 0.1).eval()


def test_help_documents_every_config_field_with_its_default():
    text = pydoc.render_doc(FlowConfig, renderer=pydoc.plaintext)
    for f in fields(FlowConfig):
        line = f"{f.name}: {f.type} = {f.default!r}"
        assert line in text, f"help(FlowConfig) lacks the line {line!r}"


def test_preprocess_follows_the_shape_unless_set():
    assert FlowConfig(shape=(6,), coupling="mlp").preprocess is False
    assert FlowConfig(shape=(3, 8, 8)).preprocess is True
    assert FlowConfig(shape=(1, 8, 8), coupling="mlp", preprocess=False).preprocess is False
    assert FlowConfig(shape=(6,), coupling="mlp", preprocess=True).preprocess is True
    assert build_model("seed-mlp", shape=(6,)).config.preprocess is False  # a new shape: preprocess follows it
    with pytest.raises(ValueError, match="preprocess must be true, false or None"):
        FlowConfig(preprocess="yes")


def test_a_float_batch_of_points_is_scored_without_the_image_message():
    model = build_model(FlowConfig(shape=(6,), coupling="mlp")).eval()
    assert model.log_prob(torch.randn(4, 6)).shape == (4,)


def test_a_saved_config_holds_the_resolved_preprocess_and_old_checkpoints_load_unchanged(tmp_path):
    path = tmp_path / "points.safetensors"
    save_checkpoint(points_model(), path)
    with safe_open(str(path), "pt") as f:
        assert json.loads(f.metadata()["config"])["preprocess"] is False
    shipped = ROOT / "checkpoints" / "toy-2d-moons.safetensors"
    with safe_open(str(shipped), "pt") as f:
        stored = json.loads(f.metadata()["config"])
    config, _ = read_header(shipped)
    assert config.preprocess is stored["preprocess"] is False
    assert load_checkpoint(ROOT / "checkpoints" / "seed-mlp-mnist.safetensors").config.preprocess is True


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16], ids=str)
def test_points_of_another_float_dtype_are_converted_to_the_models(dtype):
    model, x = points_model(), torch.randn(8, 5)
    x_other = x.to(dtype)
    expected = model.log_prob(x_other.float())  # the same values, rounded to the other dtype and back
    got = model.log_prob(x_other)
    assert got.dtype == torch.float32 and torch.allclose(got, expected)


def test_float64_images_and_a_float64_model_meet_their_inputs():
    model = randomize(build_model(SMALL_MULTISCALE), 0.1).eval()
    u = torch.rand(2, 1, 8, 8) * 0.98 + 0.01
    assert torch.allclose(model.log_prob(u.double()), model.log_prob(u))
    wide = points_model().double()
    assert wide.log_prob(torch.randn(3, 5)).dtype == torch.float64  # float32 points meet float64 weights
    assert wide.decode(torch.randn(3, 5)).dtype == torch.float64
    pixels = randomize(build_model(SMALL_MULTISCALE), 0.1).eval().double()
    assert pixels.bits_per_dim(torch.randint(0, 256, (2, 1, 8, 8)), seed=0).dtype == torch.float64


@pytest.mark.parametrize("bad", [torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 5, dtype=torch.complex64)],
                         ids=["bool", "complex"])
def test_bool_and_complex_inputs_are_refused_by_name(bad):
    with pytest.raises(TypeError, match=f"{bad.dtype} input is not supported: expected points"):
        points_model().log_prob(bad)
    images = build_model(SMALL_MULTISCALE).eval()
    with pytest.raises(TypeError, match="expected 8-bit pixels"):
        images.log_prob(bad[:, :1].expand(2, 64).reshape(2, 1, 8, 8))


def test_sampling_runs_without_autograd_unless_asked():
    model = points_model()
    x = model.sample(4, seed=0)
    assert x.shape == (4, 5) and not x.requires_grad and x.grad_fn is None
    y = model.sample(4, seed=0, grad=True)
    assert y.requires_grad and torch.equal(x, y.detach())
    y.sum().backward()  # a loss on samples reaches the weights
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def first_actnorm(model: Flow) -> ActNorm:
    return next(m for m in model.modules() if isinstance(m, ActNorm))


def test_initialize_runs_actnorms_start_on_the_chosen_batch_and_keeps_the_mode():
    model = randomize(build_model(POINTS), 0.1).eval()
    assert not model.data_initialized
    batch = torch.randn(256, 5) * 3 + 10
    assert model.initialize(batch) is model and model.data_initialized and not model.training
    after = next(s for s in model.trace(batch) if s.name == "actnorm 1").output
    assert torch.allclose(after.mean(0), torch.zeros(5), atol=1e-4)
    assert torch.allclose(after.std(0, correction=0), torch.ones(5), atol=1e-4)
    loc = first_actnorm(model).loc.detach().clone()
    model.train()(torch.randn(16, 5))  # started: a training batch no longer moves it
    assert torch.equal(first_actnorm(model).loc, loc)


def test_skip_data_init_keeps_the_identity_through_the_first_training_batch():
    model = build_model(POINTS).skip_data_init().train()
    assert model.data_initialized
    model(torch.randn(16, 5) + 100)
    norm = first_actnorm(model)
    assert torch.count_nonzero(norm.loc) == 0 and torch.count_nonzero(norm.log_scale) == 0


def test_a_first_training_batch_of_one_example_warns():
    model = build_model(POINTS).train()
    with pytest.warns(UserWarning, match="a batch of one example: its loc is now that example for good"):
        model(torch.full((1, 5), 99.7))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_model(POINTS).eval()(torch.full((1, 5), 99.7))  # eval mode: no start, no warning


class ShiftedPrior(Flow):
    """A base distribution N(3, I): its own density and its own sampler."""

    def prior_log_prob(self, z):
        return -0.5 * ((z - 3).pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)

    def latents(self, n, temperature=1.0, seed=None):
        return super().latents(n, temperature, seed) + 3


def test_a_subclass_with_its_own_prior_is_used_by_log_prob_bits_and_sample():
    model = ShiftedPrior(POINTS).skip_data_init().eval()  # a fresh flow: the identity, so z = x
    x = torch.full((2, 5), 3.0)
    expected = -0.5 * 5 * math.log(2 * math.pi)  # the density at the prior's mean
    assert torch.allclose(model.log_prob(x), torch.full((2,), expected))
    assert torch.allclose(model.bits_per_dim(x), torch.full((2,), -expected / (5 * math.log(2))))
    assert model.sample(500, seed=0).mean().item() == pytest.approx(3.0, abs=0.1)


def test_pretrained_loads_a_shipped_model_by_name_with_or_without_its_suffix():
    import flow

    model = flow.pretrained("toy-2d-moons")
    assert isinstance(model, Flow) and not model.training and model.config.shape == (2,)
    again = flow.pretrained("toy-2d-moons.safetensors")
    assert torch.equal(model.sample(3, seed=0), again.sample(3, seed=0))
    assert model.metadata["data"] == "moons"


def test_pretrained_reads_the_folder_the_environment_names_and_lists_what_is_there(tmp_path, monkeypatch):
    import flow
    from flow.pretrained import ENV

    monkeypatch.setenv(ENV, str(tmp_path))
    save_checkpoint(points_model(), tmp_path / "mine.safetensors")
    assert flow.pretrained("mine").config.shape == (5,)
    with pytest.raises(flow.CheckpointError, match=rf"no shipped model 'realnvp-mnist' in {tmp_path} \(\${ENV}\); "
                                                   rf"the names there: mine\. Set {ENV} to"):
        flow.pretrained("realnvp-mnist")
    with pytest.raises(flow.CheckpointError, match="the names there: mine"):
        flow.pretrained("../checkpoints/mine")  # a name, not a path
    monkeypatch.setenv(ENV, str(tmp_path / "absent"))
    with pytest.raises(flow.CheckpointError, match="there is no such folder"):
        flow.pretrained("mine")
