"""The Layer Explorer's animations run in the browser: stepping and playing a digit's blocks, or a 2-D
model's, must not send a single message to the server (counted on the app's websocket)."""
import re

from playwright.sync_api import expect

from tests.browser.helpers import open_page, screenshot, settle

WAIT = 60_000


def listen(page) -> list[str]:
    """Every websocket frame the tab sends from now on (Streamlit's BackMsgs: reruns, widget values)."""
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(str(payload)[:80])))
    return sent


def step_to(chart, k: int, n: int) -> None:
    """Click plotly's slider rail where step k of n sits (a user's click on the slider)."""
    chart.scroll_into_view_if_needed()
    rail = chart.locator(".slider-rail-touch-rect").bounding_box()
    chart.page.mouse.click(rail["x"] + rail["width"] * k / (n - 1), rail["y"] + rail["height"] / 2)


def test_stepping_and_playing_the_blocks_send_nothing_to_the_server(server, page):
    sent = listen(page)
    open_page(page, server, "explorer", "Layer Explorer")
    chart = page.locator(".st-key-flow_animation .js-plotly-plot")
    expect(chart.locator(".gtitle")).to_contain_text("0. input", timeout=WAIT)
    n = page.evaluate("() => document.querySelector('.st-key-flow_animation .js-plotly-plot')"
                      "._fullLayout.sliders[0].steps.length")
    settle(page)
    page.wait_for_timeout(1000)  # let the session's opening messages go out
    before = len(sent)
    step_to(chart, 3, n)
    expect(chart.locator(".gtitle")).to_contain_text(re.compile(r"^3\. "), timeout=10_000)
    screenshot(page, "explorer-animation-block-3", show=".st-key-flow_animation")
    chart.get_by_text("▶▶ fast").click()
    expect(chart.locator(".gtitle")).to_contain_text(re.compile(rf"^{n - 1}\. "), timeout=30_000)
    assert sent[before:] == [], f"the browser asked the server: {sent[before:]}"
    assert page.get_by_test_id("stApp").get_attribute("data-test-script-state") == "notRunning"
    step_to(chart, 0, n)  # and back to the start by hand
    expect(chart.locator(".gtitle")).to_contain_text("0. input", timeout=10_000)
    assert sent[before:] == []


def test_a_2d_models_blocks_play_in_the_browser(server, page):
    sent = listen(page)
    open_page(page, server, "explorer", "Layer Explorer")
    page.get_by_test_id("stSidebar").get_by_role("combobox", name=re.compile("Model")).click()
    page.get_by_role("option", name=re.compile("^toy-2d-moons")).click()
    settle(page)
    chart = page.locator(".st-key-toy_animation .js-plotly-plot")
    expect(chart.locator(".gtitle")).to_contain_text("0. input", timeout=WAIT)
    page.wait_for_timeout(1000)
    before = len(sent)
    chart.get_by_text("▶▶ fast").click()
    expect(chart.locator(".gtitle")).to_contain_text(re.compile(r"KS to N\(0, I\)"), timeout=10_000)
    page.wait_for_function("() => document.querySelector('.st-key-toy_animation .js-plotly-plot')"
                           "._fullLayout.sliders[0].active > 3", timeout=30_000)
    assert sent[before:] == [], f"the browser asked the server: {sent[before:]}"
    screenshot(page, "explorer-toy-animation", show=".st-key-toy_animation")
