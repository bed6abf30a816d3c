"""Compare models: one digit through two shipped flows, stepped together; each side adds up to its own model."""
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import explore_plots as plots
from app.catalog import CHECKPOINT_DIR
from flow import explore, latent
from flow.checkpoint import load_checkpoint
from flow.data import load_mnist
from flow.files import ROOT
from tests.app_helpers import chart, numbers

MODELS = ("seed-mlp-mnist", "realnvp-mnist")


def test_both_sides_step_at_the_same_fraction_of_their_flows():
    assert [plots.at_fraction(9, f) for f in (0.0, 0.5, 1.0)] == [0, 4, 8]
    assert [plots.at_fraction(26, f) for f in (0.0, 0.5, 1.0)] == [0, 12, 25]  # realnvp-mnist: 26 entries


@pytest.mark.integration
def test_each_sides_decomposition_sums_to_its_own_models_log_prob():
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception, at.exception
    assert [at.selectbox(key=k).value for k in ("compare_a", "compare_b")] == list(MODELS)
    shown = chart(at, "compare_chart")
    assert len(shown["frames"]) == len(plots.FRACTIONS)
    digit = load_mnist("test")[0][:1].unsqueeze(1)  # the page opens on test digit #0, noise seed 0
    for k, name in enumerate(MODELS):
        model = load_checkpoint(CHECKPOINT_DIR / f"{name}.safetensors")
        terms = numbers(shown["frames"][-1]["data"][2 * k + 1]["y"])  # the side's waterfall, bits/dim
        assert terms.sum() == pytest.approx(model.bits_per_dim(digit, 0).item(), abs=1e-4), name
        u = model.dequantize(digit, 0)
        log_prob = model.log_prob(u).item()
        assert (8 - terms.sum()) * 784 * np.log(2) == pytest.approx(log_prob, rel=1e-4)  # the same sum, in nats
        last = numbers(shown["frames"][-1]["data"][2 * k]["z"]).reshape(28, 28)  # the state at 100 %: z
        steps = explore.explore(model, digit, 0)
        assert np.allclose(last, steps.pixels(len(steps) - 1), atol=1e-5)


@pytest.mark.integration
def test_both_models_decode_the_same_latents():
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.query_params["compare_temperature"] = "0.5"
    at.switch_page("app_pages/compare.py").run()
    z = load_checkpoint(CHECKPOINT_DIR / "realnvp-mnist.safetensors").latents(16, 0.5, 0)
    captions = [str(i.proto) for i in at.get("image")][-2:]
    assert len(captions) == 2
    for name, caption in zip(MODELS, captions):
        model = load_checkpoint(CHECKPOINT_DIR / f"{name}.safetensors")
        bits = latent.decode_with_bits(model, z, 0)[1]
        assert f"{name}: the same 16 latents" in caption and f"median {np.median(bits.numpy()):.3f} bits/dim" in caption
