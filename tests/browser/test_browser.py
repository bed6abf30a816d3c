"""The app in a real browser: every page by its URL, two students launching at once and a live chart, the
explorer's slider, an interpolation strip, bad uploads. Waits on Streamlit's DOM, never on fixed sleeps."""
import re
import socket

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import choose, open_page, own_addresses, screenshot, settle

PAGES = [("", "Real NVP Explorer", "home"), ("train", "Train", "train"),
         ("explorer", "Layer Explorer", "explorer"), ("latent", "Latent Playground", "latent")]


def chart(key: str, expression: str) -> str:
    """A JavaScript function: `expression` on the plotly chart with widget key `key` (d: its graph div), or null
    while it is not drawn. The current drawing, not the stale copy Streamlit may keep while it reruns."""
    return (f"() => {{ const d = document.querySelector('.st-key-{key}:not([data-stale=\"true\"]) .js-plotly-plot');"
            f" return d && d.data ? {expression} : null; }}")


@pytest.mark.parametrize("path, title, shot", PAGES)
def test_each_page_opened_by_its_url_has_the_picker_and_no_exception(server, new_page, path, title, shot):
    # a bookmark or a shared link, in a fresh session on a fresh server (the first tests of the file)
    page = open_page(new_page(), server, path, title)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_role("combobox", name="Model")).to_have_value(re.compile("^seed-mlp-mnist"))
    expect(page.get_by_text("Choose a model in the sidebar")).to_have_count(0)
    expect(sidebar.get_by_text("1 unusable checkpoint file(s)")).to_be_visible()  # the half-copied file
    screenshot(page, f"page-{shot}")
    page.reload()  # a reload lands on the same page, with the picker
    page.get_by_role("heading", name=title).first.wait_for()
    settle(page)
    assert page.url.split("?")[0].rstrip("/") == f"{server.url}/{path}".rstrip("/")  # the view's state may follow "?"
    expect(sidebar.get_by_role("combobox", name="Model")).to_have_value(re.compile("^seed-mlp-mnist"))


def fill_new_run(page, name: str) -> None:
    """A toy run that trains for as long as it is let: 8 steps of 64 points an epoch, a chart point every 2."""
    choose(page, "f_preset", "toy-2d")
    choose(page, "f_data", "moons (2-D)")
    for key, value in {"f_name": name, "f_epochs": 1000, "f_batch_size": 64, "f_limit_train": 512,
                       "f_limit_test": 256, "f_log_every": 2}.items():
        page.locator(f".st-key-{key} input").fill(str(value))


def test_two_students_launch_at_once_one_run_trains_its_chart_grows_and_it_stops(server, new_page):
    alice, bob = new_page(), new_page()
    for page, name in ((alice, "alice"), (bob, "bob")):
        open_page(page, server, "train", "Train")
        fill_new_run(page, name)
    launch = [p.get_by_role("button", name="Launch") for p in (alice, bob)]
    launch[0].click()
    launch[1].click()  # while alice's launch is still being handled
    for page in (alice, bob):
        page.get_by_test_id("stAlert").first.wait_for()
        settle(page)
    started = [p.name for p in server.runs.iterdir() if p.is_dir()]
    assert len(started) == 1, started  # REALNVP_MAX_RUNS=1
    winner, loser = (alice, bob) if started == ["alice"] else (bob, alice)
    expect(winner.get_by_test_id("stAlert").first).to_contain_text(f"Launched {started[0]}")
    expect(loser.get_by_test_id("stAlert").first).to_contain_text(f"'{started[0]}' is still training")
    screenshot(loser, "train-refused")

    # the live chart gains points while it trains
    count = "d._fullData.reduce((n, t) => n + (t._length || 0), 0)"  # points drawn, over the traces
    first = winner.wait_for_function(chart("live_chart", count), timeout=120_000).json_value()
    winner.wait_for_function(chart("live_chart", f"{count} > {first}"), timeout=120_000)
    screenshot(winner, "train-live", show=".st-key-live_chart")

    # the other session sees the same run once it reloads
    loser.reload()
    expect(loser.get_by_test_id("stMain")).to_contain_text(f"{started[0]}: running", timeout=120_000)

    winner.locator(".st-key-stop").get_by_role("button", name="Stop").click()
    expect(winner.get_by_test_id("stMain")).to_contain_text(f"{started[0]}: stopped", timeout=120_000)
    settle(winner)
    screenshot(winner, "train-stopped", show=".st-key-live_chart")


def test_the_explorer_slider_steps_to_the_next_block_and_the_picture_changes(server, page):
    open_page(page, server, "explorer", "Layer Explorer")
    maps = page.locator(".st-key-block_maps")
    maps.wait_for()
    before = maps.screenshot()
    slider = page.locator(".st-key-block").get_by_role("slider")
    expect(slider).to_have_value("0")
    slider.focus()
    slider.press("ArrowRight")
    expect(slider).to_have_value("1")
    expect(page.get_by_test_id("stMain")).to_contain_text("1. logit")
    settle(page)
    assert maps.screenshot() != before
    screenshot(page, "explorer-block-1")


def test_an_interpolation_strip_follows_the_frames_slider(server, page):
    open_page(page, server, "latent", "Latent Playground")
    frames = "d.data[1].hovertext.length"
    page.wait_for_function(chart("strip", f"{frames} === 16"))
    slider = page.locator(".st-key-frames").get_by_role("slider")
    slider.focus()
    slider.press("Home")  # the fewest frames: 4
    page.wait_for_function(chart("strip", f"{frames} === 4"))
    settle(page)
    labels = page.evaluate(chart("strip", "d.data[1].hovertext"))
    assert [label.split(" · ")[1] for label in labels] == ["t = 0.00", "t = 0.33", "t = 0.67", "t = 1.00"]
    screenshot(page, "latent-strip", show=".st-key-strip")


def test_a_non_image_upload_and_a_too_big_one_get_a_message(server, page):
    open_page(page, server, "latent", "Latent Playground")
    page.locator(".st-key-from_source").get_by_text("Upload", exact=True).click()
    upload = page.locator(".st-key-from_upload input[type='file']")
    upload.set_input_files({"name": "notes.txt", "mimeType": "text/plain", "buffer": b"my homework\n" * 50})
    alert = page.get_by_test_id("stAlert").filter(has_text="notes.txt")
    expect(alert).to_contain_text("not a picture")
    expect(page.get_by_text("Choose both digits above")).to_be_visible()
    settle(page)
    screenshot(page, "upload-not-an-image")
    # over the 5 MB cap of .streamlit/config.toml: refused in the browser, before it is sent
    upload.set_input_files({"name": "huge.png", "mimeType": "image/png", "buffer": b"\0" * (6 << 20)})
    expect(page.locator(".st-key-from_upload")).to_contain_text(re.compile(r"File must be 5(\.0)? ?MB or smaller"))
    screenshot(page, "upload-too-big")


def test_the_server_listens_on_localhost_only(server):
    addresses = own_addresses()
    if not addresses:
        pytest.skip("this machine has no network address besides loopback")
    for address in addresses:
        with pytest.raises(OSError), socket.create_connection((address, server.port), timeout=3):
            pass
    socket.create_connection(("127.0.0.1", server.port), timeout=3).close()
