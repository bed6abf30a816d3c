"""Draw your own 2-D data set (GAN Lab's signature) in a real browser: strokes painted with the mouse become points,
one button trains a toy-2d flow on them in the background, and the plane view appears and bends as it learns."""
import math

from playwright.sync_api import expect

from tests.browser.helpers import open_page, screenshot, settle

WAIT = 60_000
# where the samples pushed through the flow lie (the plane's last trace): they move with every new snapshot
PLANE = ("() => { const d = document.querySelector('.st-key-plane_chart:not([data-stale=\"true\"]) .js-plotly-plot');"
         " return d && d.data ? JSON.stringify([d.data[d.data.length - 1].x, d.data[d.data.length - 1].y]) : null; }")


def stroke(page, points) -> None:
    page.mouse.move(*points[0])
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*p, steps=2)
    page.mouse.up()


def test_drawn_strokes_train_a_flow_whose_plane_bends_live(server, new_page):
    page = open_page(new_page(), server, "train", "Train")
    page.get_by_text("Draw your own 2-D data set").click()
    expect(page.get_by_text("Paint a shape on the black square")).to_be_visible(timeout=WAIT)
    canvas = page.locator(".st-key-draw_canvas canvas").last  # fabric.js's top canvas takes the mouse
    canvas.wait_for(timeout=WAIT)
    settle(page)
    page.wait_for_timeout(1000)  # fabric.js sets up its brush after the canvas appears: a stroke before is lost

    def centre() -> tuple[float, float]:  # where the canvas is now (the page reflows after each stroke)
        canvas.evaluate("c => c.scrollIntoView({block: 'center'})")  # the mouse draws where it is on screen
        box = canvas.bounding_box()
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def drawn() -> int:
        note = page.get_by_text("points drawn").last  # .last: a redraw may show the old line beside the new
        expect(note).to_be_visible(timeout=WAIT)
        return int(note.inner_text().split(" points")[0].replace(",", ""))

    # a ring on the left and a bar on the right: two shapes a Gaussian has to be split and bent into
    cx, cy = centre()
    stroke(page, [(cx - 70 + 45 * math.cos(t / 12 * math.pi), cy + 45 * math.sin(t / 12 * math.pi))
                  for t in range(25)])
    ring = drawn()
    settle(page)
    cx, cy = centre()
    stroke(page, [(cx + 60, cy - 80 + 8 * k) for k in range(21)])
    page.wait_for_function(f"() => [...document.querySelectorAll('p')].some(p => /^\\d+ points drawn/.test("
                           f"p.innerText) && parseInt(p.innerText) > {ring})", timeout=WAIT)
    assert ring > 20 and drawn() > ring + 20  # both strokes, sampled every few pixels
    # .last: while Streamlit redraws the chart, the old plot and the new one stand side by side for a moment
    expect(page.locator(".st-key-draw_points .js-plotly-plot").last).to_be_visible(timeout=WAIT)
    settle(page)
    screenshot(page, "train-draw-canvas", ".st-key-draw_canvas")

    page.locator(".st-key-draw_train").get_by_role("button").click()
    expect(page.get_by_text("its plane appears below").last).to_be_visible(timeout=WAIT)
    try:
        page.wait_for_function(PLANE, timeout=WAIT)  # the live plane of the newest snapshot
    except Exception:
        raise AssertionError(page.get_by_test_id("stMain").inner_text()[-3000:]) from None
    first = page.evaluate(PLANE)
    page.wait_for_function(f"() => {{ const now = ({PLANE})(); return now && now !== {first!r}; }}", timeout=WAIT)
    screenshot(page, "train-draw-plane", ".st-key-plane_chart")
    stop = page.locator(".st-key-stop").get_by_role("button")  # it trained long enough to be seen learning
    if stop.count():
        stop.click()
