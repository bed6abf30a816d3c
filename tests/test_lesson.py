"""The guided lesson: its content (app/lesson.py) and its page under AppTest, on the shipped models. Numbers the
page quotes are checked against the library functions that define them."""
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import lesson
from app.catalog import ModelEntry
from flow import explore
from flow.checkpoint import load_checkpoint
from flow.files import ROOT

CHARTS = {  # the view each step draws: its plotly charts' keys (step 7 draws pictures)
    1: {"lesson_plane", "lesson_density"}, 2: {"lesson_jacobian"}, 3: {"lesson_decomposition"},
    4: {"lesson_checkerboard", "lesson_channel"}, 5: {"lesson_squeeze", "lesson_factor_out"}, 6: {"lesson_bits"},
    7: set(), 8: {"lesson_interpolation"},
}


def entry(name: str, data: str = "mnist", error: str | None = None) -> ModelEntry:
    return ModelEntry(path=Path(f"{name}.safetensors"), source="shipped", name=name, data=data, error=error)


def test_the_lesson_prefers_its_own_models_and_falls_back_to_any_of_the_kind():
    entries = [entry("seed-mlp-mnist"), entry("realnvp-mnist"), entry("toy-2d-circles", "circles"),
               entry("toy-2d-moons", "moons")]
    assert lesson.pick_model(entries, images=True).name == "realnvp-mnist"
    assert lesson.pick_model(entries, images=False).name == "toy-2d-moons"
    assert lesson.pick_model([entry("realnvp-mnist", error="truncated"), *entries[:1]], images=True).name == \
        "seed-mlp-mnist"
    assert lesson.pick_model(entries[:2], images=False) is None


def test_mask_patterns_are_told_apart_in_either_polarity():
    r, c = np.indices((28, 28))
    for name, pattern in lesson.PATTERNS.items():
        mask = pattern(r, c).astype(np.float32)
        assert lesson.mask_pattern(mask) == name and lesson.mask_pattern(1 - mask) == name
    assert lesson.mask_pattern((c < 14).astype(np.float32)) == "another pattern"


# ----- the page --------------------------------------------------------------------------------------------
def open_lesson(**params: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180)
    for name, value in params.items():
        at.query_params[name] = value
    at.switch_page("app_pages/lesson.py").run()
    assert not at.exception, at.exception
    return at


def shown_step(at: AppTest) -> int:
    heading = at.header[0].value
    assert at.segmented_control(key="step").value == int(heading.split(".")[0]), "the steps and the heading disagree"
    return int(heading.split(".")[0])


def charts(at: AppTest) -> set[str]:
    return {chart.key for chart in at.get("plotly_chart")}


@pytest.mark.integration
def test_next_walks_all_eight_steps_each_with_its_view_and_back_returns():
    at = open_lesson()
    for k in range(1, 9):
        assert shown_step(at) == k and not at.exception, at.exception
        assert charts(at) == CHARTS[k], f"step {k}"
        if k == 7:
            assert [i.proto.imgs[0].caption for i in at.image] == [f"T = {t:g}" for t in lesson.TEMPERATURES]
        assert any(f"Step {k} of 8" in str(p.proto.text) for p in at.get("progress"))
        assert at.button(key="lesson_next").disabled == (k == 8) and at.button(key="lesson_back").disabled == (k == 1)
        at.radio(key=f"predict_{k}").set_value(lesson.STEPS[k - 1].question.options[0]).run()  # every explanation
        assert len(at.success) + len(at.warning) == 1 and not at.exception, at.exception
        if k < 8:
            at.button(key="lesson_next").click().run()
    for k in range(7, 0, -1):
        at.button(key="lesson_back").click().run()
        assert shown_step(at) == k and not at.exception, at.exception


@pytest.fixture(scope="module")
def shipped():
    model = load_checkpoint(ROOT / "checkpoints" / "realnvp-mnist.safetensors")
    return model, lesson.test_digit("3")[0]


@pytest.mark.integration
def test_a_prediction_is_judged_with_the_ks_distance_of_the_trace(shipped):
    model, digit = shipped
    steps = explore.explore(model, digit, 0)
    at = open_lesson(step="3")
    assert not at.success and not at.warning  # nothing revealed before a prediction
    at.radio(key="predict_3").set_value("less Gaussian").run()
    assert at.warning and "Not quite" in at.warning[0].value and "more Gaussian" in at.warning[0].value
    at.radio(key="predict_3").set_value("more Gaussian").run()
    said = at.success[0].value
    assert said.startswith("**Right.**")
    assert f"**{steps.ks[1]:.3f}** after the logit" in said and f"**{steps.ks[-1]:.3f}** after the last block" in said


@pytest.mark.integration
def test_the_dequantization_step_quotes_the_library_bits_per_dim(shipped):
    model, digit = shipped
    at = open_lesson(step="6")
    at.radio(key="predict_6").set_value("lower").run()
    said = at.success[0].value
    noisy = model.bits_per_dim(digit, 0).item()
    centres = explore.decomposition(model, explore.explore(model, digit, None)).bits_per_dim
    assert f"**{centres:.3f}** at the bin centres against **{noisy:.3f}** with noise" in said


@pytest.mark.integration
@pytest.mark.parametrize("value, expected", [("5", 5), ("8", 8), ("abc", 1), ("99", 1), ("0", 1)])
def test_the_step_in_the_url_opens_that_step_and_a_bad_one_step_1(value, expected):
    assert shown_step(open_lesson(step=value)) == expected


@pytest.mark.integration
def test_without_the_shipped_realnvp_the_lesson_says_what_it_runs_on(tmp_path, monkeypatch):
    from app.catalog import CHECKPOINT_DIR, CHECKPOINTS_ENV

    for name in ("seed-mlp-mnist", "toy-2d-moons"):
        (tmp_path / f"{name}.safetensors").write_bytes((CHECKPOINT_DIR / f"{name}.safetensors").read_bytes())
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path))
    at = open_lesson(step="4")
    assert shown_step(at) == 4 and not charts(at)
    assert any("runs on **seed-mlp-mnist**" in c.value for c in at.caption)
    assert any("has no checkerboard and no channel block" in i.value for i in at.info)


@pytest.mark.integration
def test_a_step_link_opens_its_view_in_the_layer_explorer():
    at = open_lesson(step="6", model="realnvp-mnist")  # the sidebar holds the step's model: a plain link
    (link,) = [e.proto for e in at.get("page_link")]
    assert link.page == "explorer"
    explorer = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180)
    for name, value in parse_qsl(link.query_string):
        explorer.query_params[name] = value
    explorer.switch_page("app_pages/explorer.py").run()
    assert not explorer.exception, explorer.exception
    assert explorer.session_state["model_path"].endswith("realnvp-mnist.safetensors")
    assert explorer.radio(key="trace_mode").index == 1  # without dequantization noise, at the bin centres
    assert explorer.selectbox(key="explorer_class").value == "3" and explorer.number_input(key="explorer_index").value == 0


@pytest.mark.integration
def test_the_2d_step_link_switches_the_sidebar_to_its_model_and_opens_the_explorer():
    at = open_lesson(step="1")  # the sidebar holds the best MNIST model; the step runs on toy-2d-moons
    at.button(key="open_Open toy-2d-moons in the Layer Explorer").click().run()
    assert not at.exception, at.exception
    assert at.session_state["model_path"].endswith("toy-2d-moons.safetensors")
    assert at.title[0].value.endswith("Layer Explorer") and at.radio(key="toy_direction").value == "inference x → z"
