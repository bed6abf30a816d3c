"""The likelihood lab: its inputs, its numbers (`flow.lab`) on the shipped model, its CLI and its page."""
import json

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from app import lab_plots
from app.catalog import CHECKPOINT_DIR
from flow import lab
from flow.checkpoint import load_checkpoint
from flow.data import load_mnist
from flow.files import ROOT
from tests.app_helpers import chart, numbers

REALNVP = CHECKPOINT_DIR / "realnvp-mnist.safetensors"


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_mnist("test")[0][:24].unsqueeze(1)


@pytest.mark.parametrize("kind", list(lab.KINDS))
def test_every_kind_is_8_bit_pictures_made_reproducibly_from_the_digits(kind, digits):
    x = lab.inputs(kind, digits, seed=3)
    assert x.dtype == torch.uint8 and x.shape == digits.shape
    assert torch.equal(x, lab.inputs(kind, digits, seed=3))
    if kind != "test digits":
        assert not torch.equal(x, digits)


def test_the_transformed_digits_are_what_their_names_say(digits):
    assert torch.equal(lab.inputs("inverted", digits), 255 - digits)
    assert torch.equal(lab.inputs("rotated", digits), torch.rot90(digits, 1, (2, 3)))
    shifted = lab.inputs("shifted", digits)
    assert (shifted.sum((1, 2, 3)) <= digits.sum((1, 2, 3))).all()  # moved, some ink may leave the frame
    blank = lab.inputs("blank", digits)
    assert (blank.amax((1, 2, 3)) == blank.amin((1, 2, 3))).all()  # one grey level each
    letters = lab.inputs("letters", digits)
    assert ((letters > 0).float().mean((1, 2, 3)) > 0.05).all()  # ink on every one


@pytest.mark.integration
def test_the_labs_numbers_are_the_models_bits_per_dim_and_show_the_surprise(digits):
    """On the shipped model: the figures are Flow.bits_per_dim's, and drawn letters (never seen) beat the
    median test digit more often than not, while noise and inverted digits never do."""
    model = load_checkpoint(REALNVP)
    letters = lab.inputs("letters", digits, 0)
    assert lab.bits(model, letters, 0, batch=5) == pytest.approx(model.bits_per_dim(letters, 0).detach().numpy(), abs=1e-5)
    results = lab.compare(model, load_mnist("test")[0][:100].unsqueeze(1), seed=0)
    test = results["test digits"]
    share = {k: lab.summary(v, test)["share_below_test_median"] for k, v in results.items()}
    assert share["test digits"] == 0.5 and share["noise"] == share["inverted"] == 0.0
    assert share["letters"] > 0.5
    sweep = lab.by_temperature(model, 8, seed=0, temperatures=(0.0, 1.0))
    assert (sweep[0.0][1] == sweep[0.0][1][0]).all()  # T = 0: every sample is the mode
    assert np.median(sweep[0.0][1]) < np.median(test) < np.median(sweep[1.0][1])


@pytest.mark.integration
def test_the_cli_prints_json_lines_and_refuses_a_2d_model(capsys):
    lab.main(["--checkpoint", str(REALNVP), "--n", "20", "--samples", "2"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["kind"] for r in lines if "kind" in r] == list(lab.KINDS)
    assert [r["temperature"] for r in lines if "temperature" in r] == list(lab.TEMPERATURES)
    with pytest.raises(SystemExit, match="^error: the likelihood lab needs an MNIST model"):
        lab.main(["--checkpoint", str(CHECKPOINT_DIR / "toy-2d-moons.safetensors")])


@pytest.mark.integration
def test_the_page_shows_the_libraries_numbers_for_the_shipped_model():
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=240)
    at.session_state["model_path"] = str(REALNVP)
    at.query_params["lab_n"] = "100"
    at.switch_page("app_pages/lab.py").run()
    assert not at.exception, at.exception
    model = load_checkpoint(REALNVP)
    digits = load_mnist("test")[0][:100].unsqueeze(1)
    table = at.dataframe[0].value.set_index("input")
    for kind in lab.KINDS:
        expected = np.median(lab.bits(model, lab.inputs(kind, digits, 0), 0))
        assert table.loc[kind, "median bits/dim"] == pytest.approx(expected, abs=1e-5), kind
    yours = model.bits_per_dim(digits[:1], 0).item()  # the orange line opens on test digit #0, and says so
    line = next(m.value for m in at.markdown if "orange line" in m.value)
    assert f"test digit #0 (the default: draw or upload your own in the box above): {yours:.3f} bits/dim" in line
    assert not any("Your input" in m.value for m in at.markdown)  # no claim of an input nobody gave
    at.segmented_control(key="lab_view").set_value("Samples by temperature").run()
    mode = lab.by_temperature(model, 16, 0, (0.0,))[0.0][1][0]
    assert not at.exception and f"**{mode:.3f} bits/dim**" in next(m.value for m in at.markdown if "(the mode)" in m.value)
    shown = chart(at, "lab_temperature")
    bottom, top = shown["layout"]["yaxis"]["range"]
    for box in (d for d in shown["data"] if d["type"] == "box"):  # every box whole on screen
        q1, q3 = np.percentile(numbers(box["y"]), [25, 75])
        assert bottom < q1 <= q3 < top, box["name"]


def test_one_far_sample_does_not_squash_the_temperature_boxes():
    """The shipped model's T = 1.5 has a sample at 10.4 bits/dim among others at 2 to 4: the axis stops at the
    highest whisker, the far sample is a ▲ on the top edge with its value, and the band's labels sit in the legend
    (the annotations overlapped the T = 0 box)."""
    rng = np.random.default_rng(0)
    sweep = {0.0: np.full(16, 1.22), 1.0: rng.normal(1.8, 0.15, 16), 1.5: np.r_[rng.normal(2.6, 0.3, 15), 10.37]}
    test = rng.normal(1.3, 0.1, 200)
    fig = lab_plots.temperature_figure(sweep, test).to_plotly_json()
    bottom, top = fig["layout"]["yaxis"]["range"]
    assert fig["layout"]["yaxis"]["autorange"] is False and top < 4.0  # not stretched to 10.4
    lo, hi = np.percentile(test, [5, 95])
    assert bottom < min(1.22, lo) and hi < top
    for t, b in sweep.items():
        assert bottom < np.percentile(b, 25) and np.percentile(b, 75) < top, t
    off = next(d for d in fig["data"] if d["name"] == "off scale (above the top)")
    assert list(off["customdata"]) == [10.37] and list(off["y"]) == [top] and off["x"][0].startswith("T = 1.5<br>1 ▲")
    assert not fig["layout"].get("annotations")  # no label drawn over the boxes
    keys = [d["name"] for d in fig["data"] if d["type"] == "scatter" and d.get("showlegend", True)]
    assert keys[-2:] == ["test digits, 5-95 %", f"median test digit {np.median(test):.2f}"]
    plain = lab_plots.temperature_figure({0.0: np.full(4, 1.2), 1.0: np.array([1.5, 1.6, 1.7, 1.8])}, test)
    assert {d.name for d in plain.data} == {"T = 0", "T = 1", "test digits, 5-95 %",
                                            f"median test digit {np.median(test):.2f}"}  # no ▲ where none is off
