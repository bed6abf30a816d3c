"""End-to-end fixtures: a real `streamlit run streamlit_app.py` on a free localhost port, with checkpoints and
training runs in folders of its own, driven by Playwright in Debian's headless Chromium."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from app import jobs
from app.catalog import CHECKPOINT_DIR, CHECKPOINTS_ENV
from flow.files import ROOT
from tests.browser.helpers import TEACHER_KEY, own_addresses, screenshot
from ui.classroom import KEY_ENV as TEACHER_KEY_ENV

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
MODELS = ["seed-mlp-mnist.safetensors", "toy-2d-moons.safetensors"]  # small and quick to trace


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)


@dataclass
class Server:
    url: str
    port: int
    checkpoints: Path
    runs: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(base: Path, address: str | None = None, env: dict[str, str] | None = None):
    """Start the app with copies of two shipped models and one broken file in its checkpoints folder and an empty
    runs folder; yield its Server; stop it and any run it launched. `address`: --server.address (default: what
    .streamlit/config.toml says, localhost)."""
    checkpoints, runs = base / "checkpoints", base / "runs"
    checkpoints.mkdir()
    runs.mkdir()
    for name in MODELS:
        shutil.copy(CHECKPOINT_DIR / name, checkpoints / name)
    (checkpoints / "half-copied.safetensors").write_bytes((CHECKPOINT_DIR / MODELS[1]).read_bytes()[:5000])
    port = _free_port()
    env = {**os.environ, CHECKPOINTS_ENV: str(checkpoints), jobs.RUNS_ENV: str(runs), jobs.MAX_RUNS_ENV: "1",
           "OMP_NUM_THREADS": "1", **(env or {})}
    log = base / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
                                 "--server.port", str(port), "--server.headless", "true",
                                 "--browser.gatherUsageStats", "false"]
                                + (["--server.address", address] if address else []),
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{address or '127.0.0.1'}:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"streamlit did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.25)
    yield Server(url, port, checkpoints, runs, log)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    for run in jobs.list_runs(runs):  # a run the server launched outlives it (its own session): end it
        if run.active and run.pid:
            os.killpg(run.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    """The app as a teacher starts it (listening where .streamlit/config.toml says: localhost)."""
    yield from _serve(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="session")
def classroom_server(tmp_path_factory) -> Server:
    """The app opened to the classroom network, with a teacher key in the environment, as seen from a student's
    machine. How the student is simulated: the server listens on this machine's own non-loopback address (eth0's,
    e.g. 192.0.2.2; found by own_addresses()) instead of localhost, and Chromium opens that address. The kernel
    then connects from that interface's address, so the WebSocket's peer, the address Streamlit reports as
    st.context.ip_address, is 192.0.2.2, not 127.0.0.1 or ::1: to the app it is another machine. Only that
    address is bound (not 0.0.0.0), so nothing else on the network can reach the test server."""
    addresses = own_addresses()
    if not addresses:
        pytest.skip("this machine has no network address besides loopback: a student's browser cannot be simulated")
    yield from _serve(tmp_path_factory.mktemp("classroom"), addresses[0], {TEACHER_KEY_ENV: TEACHER_KEY})


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run does)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        item.failed = True
    return report


@pytest.fixture
def new_page(browser, request):
    """new_page() -> a tab in a browser context of its own: a separate Streamlit session, like another student."""
    contexts = []

    def make():
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(60_000)
        contexts.append(context)
        return context.new_page()

    yield make
    if getattr(request.node, "failed", False):  # what each tab showed when the test failed
        for i, context in enumerate(contexts):
            for page in context.pages:
                screenshot(page, f"FAILED-{request.node.name}-{i}")
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page):
    return new_page()
