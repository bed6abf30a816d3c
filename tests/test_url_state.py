"""View state in the URL (ui/url_state.py), through AppTest: a link's parameters open that view, and bad ones
(unknown names, out of range, not numbers) fall back to the defaults without an exception."""
import pytest
from streamlit.testing.v1 import AppTest

from flow.files import ROOT
from tests.app_helpers import texts

pytestmark = pytest.mark.integration  # the app under AppTest


def open_with(page: str, **params: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=90)
    for name, value in params.items():
        at.query_params[name] = value
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_a_link_opens_its_explorer_view():
    at = open_with("app_pages/explorer.py", model="seed-mlp-mnist", explorer_class="3", explorer_index="5",
                   block="4", trace_mode="without dequantization noise (bin centres)", explorer_noise_seed="7")
    assert at.session_state["model_path"].endswith("seed-mlp-mnist.safetensors")
    assert at.selectbox(key="explorer_class").value == "3" and at.number_input(key="explorer_index").value == 5
    assert at.slider(key="block").value == 4 and at.radio(key="trace_mode").index == 1
    assert at.number_input(key="explorer_noise_seed").value == 7 and at.session_state["noise_seed"] == 7
    assert at.query_params["model"] in ("seed-mlp-mnist", ["seed-mlp-mnist"])


def test_bad_values_in_a_link_fall_back_to_the_defaults():
    at = open_with("app_pages/explorer.py", model="no-such-model", explorer_source="Paint", explorer_class="11",
                   explorer_index="-3", block="abc", explorer_noise_seed="x", units="furlongs", gen_seed="1e99")
    assert at.session_state["model_path"].endswith(".safetensors")  # the list's first model
    assert at.radio(key="explorer_source").value == "Test digit"
    assert at.selectbox(key="explorer_class").value == "any" and at.number_input(key="explorer_index").value == 0
    assert at.slider(key="block").value == 0 and at.number_input(key="explorer_noise_seed").value == 0
    assert at.segmented_control(key="units").value == "bits/dim" and at.number_input(key="gen_seed").value == 0


def test_a_drawn_digit_link_opens_an_empty_canvas_with_a_note():
    at = open_with("app_pages/latent.py", model="seed-mlp-mnist", from_source="Draw", tab="Bogus", frames="999",
                   to_class="5", n_samples="17")
    assert at.radio(key="from_source").value == "Draw" and at.selectbox(key="to_class").value == "5"
    assert any("cannot be put in a link" in c.value for c in at.caption)
    assert at.slider(key="frames").value == 16 and at.select_slider(key="n_samples").value == 64
    assert any("Choose both digits" in i.value for i in at.info)


# str.isdigit() says yes to "²" and "٣", which int() refuses or reads; int() also takes " 3"; and the rest are
# no block number either
NOT_ASCII_NUMBERS = ["²", "٣", "1e3", "-1", " 3", "99999999999999999999", ""]


@pytest.mark.parametrize("value", NOT_ASCII_NUMBERS)
def test_a_block_in_a_link_must_be_ascii_digits(value):
    at = open_with("app_pages/explorer.py", model="seed-mlp-mnist", block=value, explorer_index=value,
                   explorer_noise_seed=value)
    # the widgets are Streamlit's own bound ones, which parse as int() and float() do ("٣" and " 3" are 3, "1e3"
    # is 1000 for a number box): the view opens on that or the default, never a traceback
    assert not at.error, texts(at.error)
    assert at.slider(key="block").value == (3 if value in ("٣", " 3") else 0)
    for key, high in (("explorer_index", 9999), ("explorer_noise_seed", 999999)):
        assert at.number_input(key=key).value in range(high + 1)


def test_whole_number_takes_ascii_digits_within_bounds_only():
    from ui.url_state import whole_number

    assert [whole_number(v, 0, 30) for v in ("0", "7", "30", 12)] == [0, 7, 30, 12]
    assert [whole_number(v, 0, 30) for v in [*NOT_ASCII_NUMBERS, "31", "3\n", "+3", None, True, 4.0]] == [None] * 13


def test_compare_links_hold_catalog_names_and_a_stale_one_says_so():
    at = open_with("app_pages/compare.py", compare_a="realnvp-mnist", compare_b="seed-mlp-mnist")
    assert [at.selectbox(key=k).value for k in ("compare_a", "compare_b")] == ["realnvp-mnist", "seed-mlp-mnist"]
    assert [at.query_params[k] for k in ("compare_a", "compare_b")] in (
        ["realnvp-mnist", "seed-mlp-mnist"], [["realnvp-mnist"], ["seed-mlp-mnist"]])  # names, not labels
    assert not at.warning
    # a link of the old kind held the label, whose score changes as a run trains
    at = open_with("app_pages/compare.py", compare_a="student-long · 1.872 (0s)", compare_b="seed-mlp-mnist")
    assert [at.selectbox(key=k).value for k in ("compare_a", "compare_b")] == ["seed-mlp-mnist", "seed-mlp-mnist"]
    assert "Model A **student-long · 1.872 (0s)**" in texts(at.warning)
    assert "two checkpoints of one run" not in texts(at.markdown)


def test_a_link_to_a_model_that_is_gone_says_so_and_opens_the_default():
    at = open_with("app_pages/lab.py", model="deleted-run")
    assert "the model **deleted-run**" in texts(at.warning)
    assert at.query_params["model"] not in ("deleted-run", ["deleted-run"])
