"""The pages on a class-conditional model: draw me a 3 (the Latent Playground's Sample tab and the Likelihood lab),
the same handwriting as every class, which digit is it (p(y | x) beside each class's bits/dim), and the Layer
Explorer tracing a digit as a class. Each number a page shows is checked against the library function behind it."""
from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from streamlit.testing.v1 import AppTest

import ui.sidebar
from app.catalog import list_models
from flow import explore, latent
from flow.checkpoint import load_checkpoint, save_checkpoint
from flow.classes import class_grid, handwriting_latents, which_class
from flow.data import load_mnist
from flow.files import ROOT
from flow.model import build_model
from tests.app_helpers import numbers
from tests.helpers import randomize

pytestmark = pytest.mark.integration


@pytest.fixture
def conditional(tmp_path, monkeypatch):
    """A checkpoint folder with a small class-conditional MNIST model (random weights and class priors)."""
    torch.manual_seed(2)
    model = randomize(build_model("realnvp", num_classes=10, width=8, res_blocks=1), 0.02).eval()
    with torch.no_grad():
        model.prior.loc.normal_(0, 0.3)
    path = tmp_path / "cond-small.safetensors"
    save_checkpoint(model, path, preset="realnvp", data="mnist", epoch=1, test_bpd=3.5, test_accuracy=0.5)
    monkeypatch.setattr(ui.sidebar, "list_models", partial(list_models, tmp_path))
    return path


def open_page(path, page: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=90)
    at.session_state["model_path"] = str(path)
    at.query_params.update(query)
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def hover(at: AppTest, key: str) -> list[str]:
    chart = next(c for c in at.get("plotly_chart") if c.key == key)
    return json.loads(chart.proto.spec)["data"][1]["hovertext"]


def first_test_digit(label: int) -> torch.Tensor:
    x, y = load_mnist("test")
    return x[int((y == label).nonzero()[0])].view(1, 1, 28, 28)


def test_the_sample_tab_draws_the_class_asked_for(conditional):
    model = load_checkpoint(conditional)
    at = open_page(conditional, "app_pages/latent.py", tab="Sample")
    assert at.selectbox(key="sample_class").value == "one row per class"
    labels = hover(at, "samples_grid")
    z, y = class_grid(model, 10, 0.7, 0)
    _, bits = latent.decode_with_bits(model, z, 0, y)
    assert len(labels) == 100 and labels[0] == f"sample 0 · class 0 · {bits[0]:.3f} bits/dim"
    assert labels[99] == f"sample 99 · class 9 · {bits[99]:.3f} bits/dim"
    at.selectbox(key="sample_class").set_value(3).run()
    labels = hover(at, "samples_grid")
    _, bits = latent.decode_with_bits(model, model.latents(64, 0.7, 0), 0, torch.full((64,), 3))
    assert len(labels) == 64 and all("class 3" in t for t in labels)
    assert labels[5].endswith(f"{bits[5]:.3f} bits/dim")


def test_the_same_handwriting_tab_decodes_one_latent_as_every_class(conditional):
    model = load_checkpoint(conditional)
    at = open_page(conditional, "app_pages/latent.py", tab="Same handwriting")
    labels = hover(at, "hand_row")
    seven = first_test_digit(7)
    z, y = handwriting_latents(model, seven, 7)
    frames, bits = latent.decode_with_bits(model, z, 0, y)
    assert len(labels) == 10 and labels[4] == f"class 4 · {bits[4]:.3f} bits/dim"
    assert any("Encoded as class **7** (its label)" in c.value for c in at.caption)
    assert torch.equal(latent.quantize(frames[7:8]), seven)  # its own class gives the digit back


def test_which_digit_shows_p_y_given_x_and_each_class_bits(conditional):
    model = load_checkpoint(conditional)
    at = open_page(conditional, "app_pages/latent.py", tab="Which digit?")
    chart = json.loads(next(c for c in at.get("plotly_chart") if c.key == "which_verdict").proto.spec)
    verdict = which_class(model, first_test_digit(4), 0)
    assert numbers(chart["data"][0]["y"]) == pytest.approx(verdict.probabilities.numpy(), abs=1e-6)
    assert numbers(chart["data"][1]["y"]) == pytest.approx((verdict.bits - verdict.bits[verdict.answer]).numpy(),
                                                           abs=1e-6)
    text = " ".join(m.value for m in at.markdown)
    assert verdict.sentence("digit") in text and f"{verdict.marginal_bits:.3f} bits/dim" in text
    with torch.no_grad():
        assert verdict.marginal_bits == pytest.approx(model.bits_per_dim(first_test_digit(4), 0)[0].item(), abs=1e-5)


def test_the_explorer_traces_a_digit_as_its_own_class_or_another(conditional):
    model = load_checkpoint(conditional)
    at = open_page(conditional, "app_pages/explorer.py")
    assert at.selectbox(key="trace_class").value == "its own"
    digit = load_mnist("test")[0][:1].unsqueeze(1)  # test digit #0, a 7
    assert any("Traced **as class 7** (its label)" in m.value for m in at.markdown)
    steps = explore.explore(model, digit, 0, 7)
    bits = explore.decomposition(model, steps).bits_per_dim
    with torch.no_grad():
        own, marginal = model.bits_per_dim(digit, 0, 7).item(), model.bits_per_dim(digit, 0).item()
    assert bits == pytest.approx(own, abs=1e-4)
    text = " ".join(m.value for m in at.markdown)
    assert f"{bits:.3f} bits/dim" in text and f"{marginal:.3f} bits/dim" in text
    at.selectbox(key="trace_class").set_value(1).run()
    assert not at.exception and any("Traced **as class 1** (chosen here)" in m.value for m in at.markdown)


def test_the_lab_samples_a_class_and_says_how_sure_the_flow_is_off_its_data(conditional):
    at = open_page(conditional, "app_pages/lab.py")
    table = at.dataframe[0].value
    assert "sure of a class" in table.columns
    from flow import lab

    model = load_checkpoint(conditional)
    answer, _ = lab.answers(model, load_mnist("test")[0][:200].unsqueeze(1), 0)
    right = (answer == load_mnist("test")[1][:200].numpy()).mean()
    assert any(f"it names {right:.0%} of these 200 test digits right" in m.value for m in at.markdown)
    at.segmented_control(key="lab_view").set_value("Samples by temperature").run()
    at.selectbox(key="lab_class_samples").set_value(3).run()
    assert not at.exception


@pytest.mark.parametrize("page", ["home", "lesson", "train", "compare"])
def test_every_other_page_opens_on_a_conditional_model(conditional, page):
    open_page(conditional, f"app_pages/{page}.py")
