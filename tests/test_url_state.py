"""View state in the URL (ui/url_state.py), through AppTest: a link's parameters open that view, and bad ones
(unknown names, out of range, not numbers) fall back to the defaults without an exception."""
from streamlit.testing.v1 import AppTest

from flow.files import ROOT


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
