"""What the browser tests do in a tab: open a page, wait for a script run to end, take a screenshot."""
from __future__ import annotations

import socket
import threading
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
    """Go to a page by its URL, as a bookmark or a shared link would, and wait until it is drawn. A first load that
    draws nothing in 60 s is reloaded once, as a user would: 2 of 5 full runs on 2026-12-03 saw the first page of
    the classroom server (in its network namespace) never drawn, a load that passes alone."""
    page.goto(f"{server.url}/{path}")
    heading = page.get_by_role("heading", name=title).first
    try:
        heading.wait_for(timeout=60_000)
    except PlaywrightTimeout:
        page.reload()
        heading.wait_for(timeout=120_000)
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


class ForwardingProxy:
    """A reverse proxy on this machine's loopback, as one in front of the app would be: it passes every byte between
    the browser and the server at `target` (a URL) and adds `X-Forwarded-For: <forwarded_for>` to the head of every
    request it sees, the WebSocket's handshake included (after that, the connection is a plain byte stream).
    Chromium 150 no longer adds a context's extra HTTP headers to WebSocket handshakes, so the header must come from
    a proxy, as it does in a real deployment. A context manager; `url` is where the browser goes instead."""

    def __init__(self, target: str, forwarded_for: str):
        host, _, port = target.split("//", 1)[1].rstrip("/").rpartition(":")
        self.target, self.header = (host, int(port)), f"X-Forwarded-For: {forwarded_for}\r\n".encode()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def __enter__(self) -> ForwardingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                s.close()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        """Request heads get the header (bodies of a Content-Length pass as they are); an upgrade ends the parsing."""
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = client.recv(65536)
                    if not data:
                        raise OSError("closed")
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                first, _, rest = head.partition(b"\r\n")
                upstream.sendall(first + b"\r\n" + self.header + rest + (b"\r\n" if rest else b"") + b"\r\n")
                lines = [line.lower() for line in rest.split(b"\r\n")]
                if any(line.startswith(b"upgrade:") for line in lines):
                    upstream.sendall(buffer)
                    return self._pipe(client, upstream)
                length = next((int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length:")),
                              0)
                while len(buffer) < length:
                    data = client.recv(65536)
                    if not data:
                        raise OSError("closed")
                    buffer += data
                upstream.sendall(buffer[:length])
                buffer = buffer[length:]
        except OSError:
            for s in (client, upstream):
                s.close()
