"""The guided lesson in Chromium, on the test server's models (seed-mlp-mnist and toy-2d-moons, no realnvp-mnist):
a link to a step opens it in a fresh tab, Next moves on and the address follows."""
from tests.browser.helpers import open_page, screenshot, settle


def test_a_link_to_step_4_opens_it_and_next_moves_to_step_5_in_the_url(page, server):
    open_page(page, server, "lesson?step=4", "4. Checkerboard and channel masks")
    # without the shipped realnvp-mnist the step says which model it runs on, and why it has nothing to draw
    page.get_by_text("this step runs on seed-mlp-mnist").first.wait_for()
    page.get_by_text("has no checkerboard and no channel block").first.wait_for()
    screenshot(page, "lesson-step-4")
    page.get_by_role("button", name="Next").click()
    page.get_by_role("heading", name="5. Squeeze and factor-out").wait_for()
    settle(page)
    page.wait_for_url("**step=5**")
    assert page.get_by_role("heading", name="4. Checkerboard").count() == 0
    # Next sets the step through the Session State API: the widget must not also get a default
    assert "was created with a default value" not in server.log.read_text()
    screenshot(page, "lesson-step-5")
