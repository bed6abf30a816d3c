"""One bits/dim for a digit, on the shipped model the app opens on: the Layer Explorer, the Latent Playground,
Flow.bits_per_dim and flow.evaluate agree, and the Explorer's trace of a digit ends in Gaussian noise."""
import json
import re

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from flow import explore, latent
from app.catalog import CHECKPOINT_DIR, list_models
from flow.checkpoint import load_checkpoint
from flow.data import load_mnist
from flow.evaluate import evaluate_bpd
from flow.files import ROOT

SHIPPED = list_models(CHECKPOINT_DIR)[0].path  # the model the app opens on: the best shipped MNIST model


pytestmark = pytest.mark.integration  # the shipped model on many digits, and the pages under AppTest


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(SHIPPED)


@pytest.fixture(scope="module")
def test_digits() -> torch.Tensor:
    return load_mnist("test")[0].unsqueeze(1)  # uint8 (10000, 1, 28, 28)


def explorer_bits(model, digits: torch.Tensor, seed: int | None) -> float:
    """The Explorer's total for these digits (their mean): the page's own functions."""
    return explore.decomposition(model, explore.explore(model, digits, seed)).bits_per_dim


def test_twenty_digits_get_one_number_on_every_page(model, test_digits):
    other = test_digits[100:101]
    for i in range(20):
        digit, seed = test_digits[i:i + 1], 1000 + i
        direct = model.bits_per_dim(digit, seed).item()
        z = latent.encode_digits(model, torch.cat([digit, other]))
        frames, bits = latent.decode_with_bits(model, latent.interpolate(model, z[0], z[1], 5), seed)
        assert torch.equal(latent.quantize(frames[:1]), digit)  # the path starts on the exact 8-bit digit
        assert explorer_bits(model, digit, seed) == pytest.approx(direct, abs=1e-4)
        assert bits[0].item() == pytest.approx(direct, abs=1e-4)


@pytest.mark.slow  # the whole test set once, and flow.evaluate on its first 1,000 (a second whole pass cost 100 s)
def test_over_the_test_set_the_explorers_number_is_flow_evaluates(model, test_digits):
    seed = 0
    per_batch = [explorer_bits(model, batch, seed) for batch in test_digits.split(1000)]
    expected, n = evaluate_bpd(model, test_digits[:1000], seed=seed)
    assert n == 1000 and per_batch[0] == pytest.approx(expected / n, abs=1e-3)
    assert len(test_digits) == 10000  # the model card's figure, another noise draw, over all of them:
    assert abs(sum(per_batch) / len(per_batch) - model.metadata["test_bpd"]) < 0.01


def test_the_explorers_last_block_is_gaussian_noise_with_dequantization_and_not_at_bin_centres(model, test_digits):
    noisy = [explore.explore(model, test_digits[i:i + 1], seed=0).ks[-1] for i in range(100)]
    centred = [explore.explore(model, test_digits[i:i + 1], seed=None).ks[-1] for i in range(10)]
    assert np.mean(noisy) <= 0.08 < 0.2 < np.mean(centred)
    std = explore.moments(explore.explore(model, test_digits[:1], seed=0).states[-1])["std"]
    assert 0.85 < std < 1.15


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=90)
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert at.session_state["model_path"] == str(SHIPPED)  # nobody picked it: the app opens on it
    return at


def test_the_pages_show_the_same_number_for_test_digit_0(model, test_digits):
    at = open_page("app_pages/explorer.py")
    at.number_input(key="explorer_noise_seed").set_value(7).run()
    at.slider(key="block").set_value(5).run()
    text = next(m.value.split("Total:", 1)[1] for m in at.markdown if "Total:" in m.value)
    shown = float(re.search(r"([\d.]+) bits/dim", text).group(1))
    expected = model.bits_per_dim(test_digits[:1], 7).item()
    assert shown == pytest.approx(expected, abs=5e-4) and "seed 7" in text

    at.radio(key="trace_mode").set_value("without dequantization noise (bin centres)").run()  # the teaching view
    text = next(m.value.split("Total:", 1)[1] for m in at.markdown if "Total:" in m.value)
    assert "not the digit's bits/dim" in text and f"**{expected:.3f} bits/dim**" in text

    at.switch_page("app_pages/latent.py").run()  # the Latent Playground keeps the seed
    assert not at.exception and at.number_input(key="latent_noise_seed").value == 7
    at.selectbox(key="from_class").set_value("any").run()  # index 0 of "any": test digit #0
    strip = json.loads(next(c for c in at.get("plotly_chart") if c.key == "strip").proto.spec)
    frame0 = strip["data"][1]["hovertext"][0]
    assert float(re.search(r"([\d.]+) bits/dim", frame0).group(1)) == pytest.approx(expected, abs=5e-4)

