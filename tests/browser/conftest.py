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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from app import jobs
from app.catalog import CHECKPOINT_DIR, CHECKPOINTS_ENV
from flow.files import ROOT
from tests.browser.helpers import TEACHER_KEY, screenshot
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


def _serve(base: Path, address: str | None = None, env: dict[str, str] | None = None, wrap: list[str] = ()):
    """Start the app with copies of two shipped models and one broken file in its checkpoints folder and an empty
    runs folder; yield its Server; stop it and any run it launched. `address`: --server.address (default: what
    .streamlit/config.toml says, localhost); `wrap`: a command prefix (ip netns exec NAME)."""
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
        proc = subprocess.Popen([*wrap, sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
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


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@contextmanager
def _namespace():
    """A network namespace of this run's own, joined to this machine by a veth pair on a private /30 of
    10.213.0.0/16: yields (its name, the namespace's address); both are removed afterwards, whatever happens.
    Skips (with the reason) where namespaces cannot be made: not root, no iproute2, no CAP_NET_ADMIN."""
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2): cannot make a network namespace for a student's address")
    tag = f"{os.getpid() % 100000}"
    name, host_end, ns_end = f"rnvp-cls-{tag}", f"rnvh{tag}", f"rnvn{tag}"
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    subnet = next((n for n in range(os.getpid() % 250, 250) if f"10.213.{n}." not in used), None)
    if subnet is None:
        pytest.skip("no free 10.213.N.0/30 test subnet for a network namespace")
    host_ip, ns_ip = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
    try:
        _ip("netns", "add", name)
    except (subprocess.CalledProcessError, OSError) as e:
        pytest.skip(f"cannot make a network namespace here ({getattr(e, 'stderr', b'') or e!s}): "
                    "a student's address needs root or CAP_NET_ADMIN")
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", name)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_end)
        _ip("link", "set", host_end, "up")
        _ip("-n", name, "addr", "add", f"{ns_ip}/30", "dev", ns_end)
        _ip("-n", name, "link", "set", ns_end, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield name, ns_ip
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, timeout=20)  # removes both ends
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


@pytest.fixture(scope="session")
def classroom_server(tmp_path_factory) -> Server:
    """The app opened to the classroom network, with a teacher key in the environment, as seen from a student's
    machine. How the student is simulated: the server runs inside a network namespace that this fixture makes (and
    removes), listening on the namespace's end of a veth pair (10.213.N.2); Chromium, on this machine, opens that
    address, so the connection arrives from the other end (10.213.N.1): the WebSocket's peer, the address Streamlit
    reports as st.context.ip_address, is not 127.0.0.1 or ::1, and to the app it is another machine. No test
    traffic leaves this machine: the pair joins it only to the namespace."""
    with _namespace() as (name, address):
        yield from _serve(tmp_path_factory.mktemp("classroom"), address, {TEACHER_KEY_ENV: TEACHER_KEY},
                          wrap=["ip", "netns", "exec", name])


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
