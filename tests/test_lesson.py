"""The guided lesson: its content (app/lesson.py) and its page under AppTest, on the shipped models. Numbers the
page quotes are checked against the library functions that define them."""
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from app import lesson
from app.catalog import ModelEntry, list_models
from flow import explore, lab, latent
from flow.data import make_toy
from flow.checkpoint import load_checkpoint
from flow.files import ROOT

CHARTS = {  # the view each step draws: its plotly charts' keys (step 7 draws pictures)
    1: {"lesson_plane", "lesson_density"}, 2: {"lesson_jacobian"}, 3: {"lesson_decomposition"},
    4: {"lesson_checkerboard", "lesson_channel"}, 5: {"lesson_squeeze", "lesson_factor_out"}, 6: {"lesson_bits"},
    7: set(), 8: {"lesson_interpolation"},
}


def entry(name: str, data: str = "mnist", error: str | None = None) -> ModelEntry:
    return ModelEntry(path=Path(f"{name}.safetensors"), source="shipped", name=name, data=data, error=error,
                      shape=(1, 28, 28) if data == "mnist" else (2,))


def test_the_lesson_follows_the_sidebar_for_digits_and_keeps_the_moons_for_the_plane():
    entries = [entry("seed-mlp-mnist"), entry("realnvp-mnist"), entry("toy-2d-circles", "circles"),
               entry("toy-2d-moons", "moons")]
    assert lesson.pick_model(entries, images=True, chosen="realnvp-mnist.safetensors").name == "realnvp-mnist"
    # a 2-D model in the sidebar, or none: the first MNIST model of the list
    assert lesson.pick_model(entries, images=True, chosen="toy-2d-moons.safetensors").name == "seed-mlp-mnist"
    assert lesson.pick_model(entries, images=True).name == "seed-mlp-mnist"
    for chosen in (None, "toy-2d-circles.safetensors", "realnvp-mnist.safetensors"):
        assert lesson.pick_model(entries, images=False, chosen=chosen).name == "toy-2d-moons"
    assert lesson.pick_model([entry("realnvp-mnist", error="truncated"), *entries[:1]], images=True,
                             chosen="realnvp-mnist.safetensors").name == "seed-mlp-mnist"
    assert lesson.pick_model(entries[:2], images=False) is None


def test_comparison_words_and_small_numbers_come_from_the_figures():
    assert [lesson.COMPARED[lesson.compared(m, 1.698, 1.538)] for m in (1.46, 1.6, 1.9)] == \
        ["better than both", "between the two", "worse than both"]
    assert lesson.compared(1.6, 1.538, 1.698) == 1  # the order of the ends does not matter
    assert [lesson.small(x) for x in (0.0, 3e-8, 2.345e-4)] == ["exactly 0", "< 1e-6", "2.3e-04"]


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


SHIPPED_IMAGE_MODELS = [e.name for e in list_models() if e.source == "shipped" and e.error is None
                        and e.is_image_model]


def expected(model) -> dict[int, tuple[str, list[str]]]:
    """Step -> (the option the library's numbers make right, phrases the reveal must hold), computed here from
    `flow` on the model itself, not from the page's facts. Steps without a view on this model are left out."""
    digit = lesson.test_digit("3")[0]
    steps = explore.explore(model, digit, 0)
    moons = load_checkpoint(ROOT / "checkpoints" / "toy-2d-moons.safetensors")
    with torch.no_grad():
        logdet = moons(make_toy("moons", 1500, seed=1))[1].mean().item()
    level = explore.ks_noise_level(model.dim)
    ks_logit, ks_last = steps.ks[lesson.first(steps, "logit")], steps.ks[-1]
    gaussian = "more Gaussian" if ks_last < ks_logit - level else "less Gaussian" if ks_last > ks_logit + level \
        else "about the same"
    noisy = model.bits_per_dim(digit, 0).item()
    centres = explore.decomposition(model, explore.explore(model, digit, None)).bits_per_dim
    medians = [float(np.median(bits)) for _, bits in lab.by_temperature(model, lesson.SAMPLES, lesson.SEED,
                                                                        lesson.TEMPERATURES).values()]
    z = latent.encode_digits(model, torch.cat([lesson.test_digit(d)[0] for d in lesson.DIGITS]))
    bits = {m: latent.decode_with_bits(model, latent.interpolate(model, z[0], z[1], lesson.FRAMES, m), 0)[1]
            for m in latent.METHODS}
    start, end, middle, straight = (float(bits["slerp"][0]), float(bits["slerp"][-1]),
                                    float(bits["slerp"][lesson.FRAMES // 2]), float(bits["linear"][lesson.FRAMES // 2]))
    verdict = "better than both" if middle < min(start, end) else "worse than both" if middle > max(start, end) \
        else "between the two"
    out = {
        1: ("bigger than 1, so p(x) is higher than N(f(x))" if logdet > 0 else
            "smaller than 1, so p(x) is lower than N(f(x))",
            [f"**{logdet:+.2f} nats**", "stretches the plane" if logdet > 0 else "squeezes the plane"]),
        2: ("the top right, ∂y_a/∂x_b", ["largest |∂y_a/∂x_b| is **0**"]),  # every coupling: y_a = x_a
        3: (gaussian, [f"{'falls' if ks_last < ks_logit else 'rises'} from **{ks_logit:.3f}**", f"**{ks_last:.3f}**"]),
        6: ("lower" if centres < noisy - 0.005 else "higher" if centres > noisy + 0.005 else "the same",
            [f"**{centres:.3f}** at the bin centres against **{noisy:.3f}** with noise",
             "higher at the bin centres" if centres < noisy else "lower at the bin centres"]),
        7: (f"T = {lesson.TEMPERATURES[int(np.argmin(medians))]:g}",
            [f"T = {t:g}: **{m:.2f}**" for t, m in zip(lesson.TEMPERATURES, medians)]),
        8: (verdict, [f"**{start:.3f}**", f"**{end:.3f}**", f"**{middle:.3f}**, **{verdict}**",
                      f"scores **{straight:.3f}**, {'lower' if straight < middle else 'higher'} than the slerp's"]),
    }
    if lesson.first(steps, "channel") is not None:  # the multi-scale models: masks and factor-out
        r, c = np.indices((28, 28))
        kept = steps.block(lesson.first(steps, "channel"))["mask"]
        pattern = next(n for n, f in lesson.PATTERNS.items() if np.array_equal(kept == 1, f(r, c))
                       or np.array_equal(kept == 0, f(r, c)))
        flowing = int(np.prod(steps.parts[lesson.first(steps, "factor-out")][-1].shape))
        out[4] = (pattern, [f"keeps **{pattern}**"])
        words = {784: "all 784", 392: "392, half of them", 196: "196, a quarter"}
        out[5] = (words[flowing], [f"**{flowing}** flow on"])
    return out


@pytest.mark.integration
@pytest.mark.parametrize("name", SHIPPED_IMAGE_MODELS)
def test_every_step_on_every_shipped_model_reveals_what_its_numbers_say(name):
    """Walks the eight steps with Next on the sidebar's model, answers each question with the option the model's
    own numbers make right, and checks that the page agrees and quotes those numbers with the right words."""
    model = load_checkpoint(ROOT / "checkpoints" / f"{name}.safetensors")
    truth = expected(model)
    at = open_lesson(model=name)
    for k in range(1, 9):
        assert shown_step(at) == k and not at.exception, at.exception
        assert any(f"Step {k} of 8" in str(p.proto.text) for p in at.get("progress"))
        assert at.button(key="lesson_next").disabled == (k == 8) and at.button(key="lesson_back").disabled == (k == 1)
        runs_on = "toy-2d-moons" if k == 1 else name
        assert any("runs on" in c.value and f"**{runs_on}**" in c.value for c in at.caption), f"step {k}: which model?"
        if k not in truth:  # a flat model: no squeeze, no channel mask, and a note instead of a question
            assert not charts(at) and at.info and not at.radio
        else:
            assert charts(at) == CHARTS[k], f"step {k}"
            answer, phrases = truth[k]
            at.radio(key=f"predict_{k}").set_value(answer).run()
            assert not at.warning and len(at.success) == 1, f"step {k}: {[w.value for w in at.warning]}"
            said = at.success[0].value
            for phrase in phrases:
                assert phrase in said, f"step {k}: {phrase!r} not in {said!r}"
            assert "within 0" not in said
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
    at = open_lesson(step="3", model="realnvp-mnist")
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
    at = open_lesson(step="6", model="realnvp-mnist")
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


@pytest.mark.integration
def test_home_links_every_page_the_lesson_first():
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    links = [e.proto for e in at.get("page_link")]
    assert [link.page for link in links] == ["lesson", "train", "explorer", "latent", "lab", "compare"]
    assert all(link.icon.startswith(":material/") for link in links)  # no emoji font needed


def test_the_navigation_and_lesson_icons_need_no_emoji_font():
    import ast

    for path in ("streamlit_app.py", "app_pages/home.py", "app_pages/lesson.py", "ui/lesson.py"):
        icons = [k.value.value for node in ast.walk(ast.parse((ROOT / path).read_text()))
                 if isinstance(node, ast.Call) for k in node.keywords
                 if k.arg in ("icon", "page_icon") and isinstance(k.value, ast.Constant)]
        assert icons and all(i.startswith(":material/") for i in icons), (path, icons)
