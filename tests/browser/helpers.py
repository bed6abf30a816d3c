"""What the browser tests do in a tab: open a page, wait for a script run to end, take a screenshot."""
from __future__ import annotations

import socket
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from flow.files import ROOT

SHOTS = ROOT / "artifacts" / "screenshots"
TEACHER_KEY = "chalk-and-board"  # the classroom_server's REALNVP_TEACHER_KEY


def screenshot(page, name: str, show: str | None = None) -> Path:
    """The tab as the student sees it (Streamlit scrolls inside the page: `show` a selector to bring into view)."""
    if show:  # in one step in the page: a fragment rerun may replace the element at any moment
        page.evaluate("selector => document.querySelector(selector)?.scrollIntoView()", show)
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def settle(page, timeout: float = 120_000) -> None:
    """Wait until the script run has ended (Streamlit marks it on stApp), then check no exception is drawn."""
    try:
        page.wait_for_selector('[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
                               '[data-test-script-state="notRunning"]', timeout=timeout)
    except PlaywrightTimeout:
        app = page.get_by_test_id("stApp")
        raise AssertionError(f"the app did not settle: connection {app.get_attribute('data-test-connection-state')}, "
                             f"script {app.get_attribute('data-test-script-state')}") from None
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text()


def choose(page, key: str, option: str, tries: int = 3) -> None:
    """Pick `option` in the selectbox with widget key `key`. A script run that ends just after the list opens
    redraws the box and closes the list (a user would open it again): so does this, up to `tries` times."""
    for attempt in range(tries):
        page.locator(f".st-key-{key}").get_by_role("combobox").click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=15_000)
            return
        except PlaywrightTimeout:
            if attempt == tries - 1:
                raise
            page.keyboard.press("Escape")
            settle(page)


def open_page(page, server, path: str, title: str):
    """Go to a page by its URL, as a bookmark or a shared link would, and wait until it is drawn."""
    page.goto(f"{server.url}/{path}")
    page.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
    settle(page)
    return page


def own_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback."""
    found = set()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.254.254.254", 1))  # no packet is sent: this only picks the outgoing interface
            found.add(s.getsockname()[0])
    except OSError:
        pass
    try:
        found.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET))
    except OSError:
        pass
    return sorted(a for a in found if not a.startswith("127."))
