"""The app on a classroom projector (1024x768 and 1280x720): no label, button, value or tab is cut, and the Latent
Playground shows its controls and its picture on one 1280x720 screen."""
import re
import shutil

import pytest

from app import explore_plots as plots
from tests.browser.helpers import open_page, screenshot

SIZES = [(1024, 768), (1280, 720)]
LATENT = "Latent Playground"
PAGES = [("", "Real NVP Explorer"), ("train", "Train"), ("explorer", "Layer Explorer"), ("latent", LATENT),
         ("latent?tab=Manifold", LATENT), ("latent?tab=Sample", LATENT), ("lab", "Likelihood lab"),
         ("lesson", "Real NVP in eight steps")]

# Every piece of text a widget shows (labels, button and tab text, select values, input values and placeholders,
# radio and toggle options, segmented controls, expander titles, page links) whose box is narrower than its text
# while the box hides the rest (overflow not visible, or an ellipsis through CSS text-overflow). Runs once the web
# fonts are in.
TRUNCATED = r"""async () => {
  await document.fonts.ready;
  const roots = ['button', 'input', '[role="tab"]', '[data-testid="stWidgetLabel"]', '[data-testid="stRadio"] label',
    '[data-testid="stCheckbox"] label', '[data-testid="stExpander"] summary', '[data-testid="stPageLink"]',
    '[data-testid="stSidebarNav"] a', '[data-testid="stMetric"]', '[data-baseweb="tag"]',
    '[data-testid="stButtonGroup"]'].join(', ');
  const ruler = document.createElement('canvas').getContext('2d');
  const cut = [];
  const name = el => {
    const widget = el.closest('[class*="st-key-"]');
    const key = widget ? [...widget.classList].find(c => c.startsWith('st-key-')) : '';
    return (el.closest('[data-testid="stSidebar"]') ? 'sidebar ' : '') +
      (el.closest('[data-testid]')?.dataset.testid || el.tagName) + (key ? ` (${key})` : '');
  };
  for (const root of document.querySelectorAll(
      `:is([data-testid="stMain"], [data-testid="stSidebar"]) :is(${roots})`)) {
    for (const el of [root, ...root.querySelectorAll('*')]) {
      if (el.matches('svg, svg *, [data-testid="stIconMaterial"]') || !el.getClientRects().length) continue;
      const box = el.getBoundingClientRect();
      if (box.width <= 1 || box.height <= 1) continue;  // text for screen readers only
      const style = getComputedStyle(el);
      if (el.tagName === 'INPUT') {  // a value scrolls inside its box; a placeholder is measured
        ruler.font = style.font;
        const [need, room] = el.value ? [el.scrollWidth, el.clientWidth] : [ruler.measureText(el.placeholder).width,
          el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight)];
        if (need > room + 1)
          cut.push(`${name(el)} "${el.value || el.placeholder}": ${Math.round(need)} px in ${Math.round(room)}`);
        continue;
      }
      const hides = style.overflowX !== 'visible' || style.textOverflow === 'ellipsis';
      const text = el.innerText.trim().replace(/\s+/g, ' ');
      if (hides && text && el.scrollWidth > el.clientWidth + 1)
        cut.push(`${name(el)} "${text}": ${el.scrollWidth} px in ${el.clientWidth}`);
    }
  }
  return [...new Set(cut)];
}"""


# Streamlit draws a grey placeholder for a widget until the widget's code has loaded: wait for the real thing
DRAWN = "() => !document.querySelector('[data-testid^=\"stSkeleton\"], [data-testid=\"stAppSkeleton\"]')"


def open_drawn(page, server, path: str, title: str, size: tuple[int, int]) -> None:
    page.set_viewport_size({"width": size[0], "height": size[1]})
    open_page(page, server, path, title)
    page.wait_for_function(DRAWN)


@pytest.mark.parametrize("path, title", PAGES, ids=[p or "home" for p, _ in PAGES])
def test_no_text_is_cut_on_a_projector(server, page, path, title):
    """Each page once, then every projector size in turn (the layout reflows in the browser: no new run)."""
    cut = []
    open_drawn(page, server, path, title, SIZES[0])
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(500)  # the reflow
        screenshot(page, f"projector-{(path or 'home').replace('?tab=', '-')}-{width}x{height}")
        cut += [f"{width}x{height}: {c}" for c in page.evaluate(TRUNCATED)]
    assert cut == [], "cut:\n" + "\n".join(cut)


def test_the_check_finds_a_cut_select_value_and_button_label(server, page):
    """The check above can fail: the sidebar's model box and a button squeezed narrower than their text are
    reported, each with its text."""
    open_drawn(page, server, "latent", LATENT, (1024, 768))
    page.locator(".st-key-strip .js-plotly-plot").wait_for()  # the download buttons come with the strip
    page.evaluate("""() => {
        document.querySelector('[data-testid="stSidebar"] .st-key-model_path').style.width = '120px';
        const button = document.querySelector('[data-testid="stDownloadButton"] button');
        button.style.width = button.style.maxWidth = '70px'; }""")
    cut = page.evaluate(TRUNCATED)
    assert len(cut) == 2, cut
    assert any(c.startswith('sidebar stSelectbox (st-key-model_path) "seed-mlp-mnist · 3.101"') for c in cut), cut
    assert any('"Strip (PNG)"' in c for c in cut), cut


# (tab, the widgets to set it, the picture they make): all of them on the first 1280x720 screen, unscrolled
ONE_SCREEN = [("Interpolate", ["from_class", "to_class", "frames", "method", "part"], "strip"),
              ("Manifold", ["m1_class", "m2_class", "manifold_n", "full_turn"], "manifold_grid"),
              ("Sample", ["temperature", "seed", "n_samples"], "samples_grid")]


@pytest.mark.parametrize("tab, controls, picture", ONE_SCREEN, ids=[t for t, _, _ in ONE_SCREEN])
def test_the_latent_playground_shows_controls_and_picture_on_one_screen(server, page, tab, controls, picture):
    open_drawn(page, server, f"latent?tab={tab}", LATENT, (1280, 720))
    page.locator(f".st-key-{picture} .js-plotly-plot").wait_for()
    off = page.evaluate("""keys => keys.filter(key => {
        const box = document.querySelector(`.st-key-${key}`)?.getBoundingClientRect();
        return !box || box.top < 0 || box.bottom > innerHeight || box.height === 0; })""", [*controls, picture])
    assert off == [], f"below the first screen or not drawn: {off}"


# (page, the animation's container, its title's start): issue 28 met both titles cut at the top
ANIMATIONS = [("explorer", "Layer Explorer", "flow_animation", "0. input"),
              ("compare", "Compare models", "compare_animation", "0% of the way")]

# every text of a plotly chart (its title, subplot titles, tick labels, slider marks, buttons) whose box is not
# inside the chart's own box, as "text: box"
OUT_OF_CHART = """chart => {
  const frame = chart.getBoundingClientRect();
  const cut = [];
  for (const t of chart.querySelectorAll('text')) {
    const b = t.getBoundingClientRect();
    if (!t.textContent.trim() || b.width === 0) continue;
    if (b.top < frame.top - 0.5 || b.bottom > frame.bottom + 0.5 || b.left < frame.left - 0.5 ||
        b.right > frame.right + 0.5)
      cut.push(`${t.textContent.slice(0, 40)}: ${[b.left, b.top, b.right, b.bottom].map(Math.round)} in ` +
               `${[frame.left, frame.top, frame.right, frame.bottom].map(Math.round)}`);
  }
  return cut;
}"""


@pytest.mark.parametrize("path, title, key, first", ANIMATIONS, ids=[a[0] for a in ANIMATIONS])
def test_an_animations_title_and_labels_are_inside_its_chart(server, page, path, title, key, first):
    """At 1280x720 and 1024x768 the title (plotly's .gtitle) and every other text of the animation lie inside the
    chart's box: nothing is cut at its top or sides."""
    cut = []
    second = server.checkpoints / "seed-mlp-copy.safetensors"  # Compare needs two MNIST models; the server has one
    if path == "compare":
        shutil.copy(server.checkpoints / "seed-mlp-mnist.safetensors", second)
    try:
        open_drawn(page, server, path, title, SIZES[1])
        look(page, key, first, cut)
    finally:
        second.unlink(missing_ok=True)
    assert cut == [], "outside the chart:\n" + "\n".join(cut)


def look(page, key: str, first: str, cut: list[str]) -> None:
    """At each projector size: the title's box within the chart's, and every text outside the chart into `cut`."""
    chart = page.locator(f".st-key-{key} .js-plotly-plot")
    chart.locator(".gtitle").wait_for()
    for width, height in reversed(SIZES):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(800)  # the reflow, and plotly's redraw at the new width
        chart.scroll_into_view_if_needed()
        assert chart.locator(".gtitle").text_content().startswith(first)
        frame, head = chart.bounding_box(), chart.locator(".gtitle").bounding_box()
        assert frame["y"] <= head["y"] and head["y"] + head["height"] <= frame["y"] + frame["height"], (head, frame)
        cut += [f"{width}x{height}: {c}" for c in chart.evaluate(OUT_OF_CHART)]
        screenshot(page, f"animation-{key}-{width}x{height}", show=f".st-key-{key}")


def test_the_explorers_animation_starts_on_the_first_projector_screen(server, page):
    """At 1280x720 the digit's animation begins above the fold: its title and the top of its maps are on the
    first screen, unscrolled (it began at 655 px of 720, under the controls). The generation filmstrip's pictures
    are at least 56 px wide at 1280x720 and 1400x900 (45 of about 18 px were)."""
    open_drawn(page, server, "explorer", "Layer Explorer", (1280, 720))
    page.locator(".st-key-flow_animation .js-plotly-plot .gtitle").wait_for()
    top = page.evaluate("() => document.querySelector('.st-key-flow_animation').getBoundingClientRect().top")
    screenshot(page, "explorer-first-screen-1280x720")
    assert top < 720 - 200, f"the animation starts at {top:.0f} px of 720"  # its title and the maps top rows
    for size in [(1280, 720), (1400, 900)]:  # the generation filmstrip: each of its pictures at least 56 px wide
        page.set_viewport_size({"width": size[0], "height": size[1]})
        page.wait_for_timeout(500)
        film = page.locator(".st-key-filmstrip img")
        film.scroll_into_view_if_needed()
        width = film.bounding_box()["width"]
        shown = re.search(r"Steps ([\d, ]+) of", page.locator(".st-key-filmstrip").inner_text()).group(1).split(",")
        screenshot(page, f"explorer-filmstrip-{size[0]}x{size[1]}", show=".st-key-filmstrip")
        assert 1 < len(shown) <= plots.FILM and width / len(shown) >= 56, f"{width:.0f} px for {shown} at {size}"
