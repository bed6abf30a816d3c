"""View state in the URL: on each page, set a view with the widgets, reload and see the same view; open the URL
in a fresh browser context (another student's link) and see it again."""
import re

import pytest
from playwright.sync_api import expect

from flow.data import load_mnist
from tests.browser.helpers import choose, open_page, settle

WAIT = 60_000  # ms: a rerun may redraw a widget meanwhile (and a model may still be loading)


def choose_class(page, picker: str, digit: int) -> None:
    """Pick a test-digit class and wait until its rerun has drawn the index box for that class. The class's
    on_change resets the index: typed before that rerun ends, the index would be sent with it and reset."""
    choose(page, f"{picker}_class", str(digit))
    count = int((load_mnist("test")[1] == digit).sum())
    expect(page.locator(f".st-key-{picker}_index")).to_contain_text(f"of {count})", timeout=WAIT)
    settle(page)


def type_number(page, key: str, value: int) -> None:
    box = page.locator(f".st-key-{key} input")
    box.fill(str(value))
    box.press("Enter")
    settle(page)


def reopen(page, url: str, title: str) -> None:
    """A reload (url None) or a link typed into a tab; then the page's heading and a finished run."""
    page.goto(url) if url else page.reload()
    page.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
    settle(page)


def explorer_view(page) -> None:
    expect(page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model")).to_have_value(
        re.compile("^seed-mlp-mnist"), timeout=WAIT)
    expect(page.locator(".st-key-explorer_class").get_by_role("combobox")).to_have_value("3", timeout=WAIT)
    expect(page.locator(".st-key-explorer_index input")).to_have_value("5", timeout=WAIT)
    expect(page.locator(".st-key-trace_mode").get_by_role("radio", name=re.compile("^without"))).to_be_checked(timeout=WAIT)
    expect(page.locator(".st-key-explorer_noise_seed input")).to_have_value("7", timeout=WAIT)
    expect(page.locator(".st-key-block").get_by_role("slider")).to_have_value("2", timeout=WAIT)
    expect(page.get_by_test_id("stMain")).to_contain_text("2. ", timeout=WAIT)  # the block's heading


def test_an_explorer_view_survives_a_reload_and_opens_from_its_link(server, new_page):
    page = open_page(new_page(), server, "explorer", "Layer Explorer")
    choose_class(page, "explorer", 3)
    type_number(page, "explorer_index", 5)
    page.locator(".st-key-trace_mode").get_by_text("without dequantization noise", exact=False).click()
    settle(page)
    type_number(page, "explorer_noise_seed", 7)
    slider = page.locator(".st-key-block").get_by_role("slider")
    slider.focus()
    slider.press("ArrowRight")
    expect(slider).to_have_value("1", timeout=WAIT)
    slider.press("ArrowRight")
    expect(slider).to_have_value("2", timeout=WAIT)
    settle(page)
    expect(page).to_have_url(re.compile(r"block=2"), timeout=WAIT)
    url = page.url
    for part in ("model=seed-mlp-mnist", "explorer_class=3", "explorer_index=5", "explorer_noise_seed=7",
                 "trace_mode=without"):
        assert part in url, (part, url)
    reopen(page, None, "Layer Explorer")
    explorer_view(page)
    fresh = new_page()  # a context of its own: a student opening the link
    reopen(fresh, url, "Layer Explorer")
    explorer_view(fresh)


def test_a_toy_model_view_opens_from_its_link(server, new_page):
    page = new_page()
    reopen(page, f"{server.url}/explorer?model=toy-2d-moons&toy_direction=generation+z+%E2%86%92+x&toy_seed=3"
                 "&block=1", "Layer Explorer")
    expect(page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model")).to_have_value(
        re.compile("^toy-2d-moons"), timeout=WAIT)
    expect(page.locator(".st-key-toy_direction").get_by_role("radio", name="generation z → x")).to_be_checked(timeout=WAIT)
    expect(page.locator(".st-key-toy_seed input")).to_have_value("3", timeout=WAIT)
    # generation has no server stepper: the block is the animation's opening frame
    expect(page.locator(".st-key-toy_animation .gtitle")).to_contain_text(re.compile(r"^1\. undo"), timeout=WAIT)


def latent_view(page) -> None:
    expect(page.get_by_role("tab", name="Sample")).to_have_attribute("aria-selected", "true", timeout=WAIT)
    expect(page.locator(".st-key-seed input")).to_have_value("42", timeout=WAIT)
    page.get_by_role("tab", name="Interpolate").click()  # the digit pickers are on the first tab
    settle(page)
    expect(page.locator(".st-key-from_class").get_by_role("combobox")).to_have_value("5", timeout=WAIT)


def test_a_latent_view_survives_a_reload_and_opens_from_its_link(server, new_page):
    page = open_page(new_page(), server, "latent", "Latent Playground")
    choose_class(page, "from", 5)
    page.get_by_role("tab", name="Sample").click()
    settle(page)
    type_number(page, "seed", 42)
    expect(page).to_have_url(re.compile(r"seed=42"), timeout=WAIT)
    url = page.url
    for part in ("from_class=5", "tab=Sample"):
        assert part in url, (part, url)
    reopen(page, None, "Latent Playground")
    latent_view(page)
    fresh = new_page()
    reopen(fresh, url, "Latent Playground")
    latent_view(fresh)


def test_a_drawn_digit_link_opens_an_empty_canvas_and_says_why(server, new_page):
    page = new_page()
    reopen(page, f"{server.url}/latent?from_source=Draw", "Latent Playground")
    expect(page.locator(".st-key-from_source").get_by_role("radio", name="Draw")).to_be_checked(timeout=WAIT)
    expect(page.get_by_text("cannot be put in a link").first).to_be_visible(timeout=WAIT)
    expect(page.get_by_text("Choose both digits above")).to_be_visible(timeout=WAIT)


def test_the_train_page_keeps_its_run_in_the_url(server, new_page):
    runs = sorted(p.name for p in server.runs.iterdir() if p.is_dir())
    if not runs:
        pytest.skip("no training run on this server yet (test_browser.py launches one)")
    page = open_page(new_page(), server, "train", "Train")
    expect(page).to_have_url(re.compile(r"run="), timeout=WAIT)
    url = page.url
    name = url.split("run=")[1].split("&")[0]
    reopen(page, None, "Train")
    expect(page).to_have_url(re.compile(f"run={name}"), timeout=WAIT)
    fresh = new_page()
    reopen(fresh, url, "Train")
    expect(fresh.get_by_test_id("stMain").get_by_role("combobox", name="Run", exact=True)).to_have_value(re.compile(f"^{name}"), timeout=WAIT)
