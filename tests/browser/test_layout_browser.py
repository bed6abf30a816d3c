"""The app on a classroom projector (1024x768 and 1280x720): no label, button, value or tab is cut, and the Latent
Playground shows its controls and its picture on one 1280x720 screen."""
import pytest

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
