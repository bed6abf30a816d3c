"""Classroom load: N students at once, each through a scripted lesson in headless Chromium, on the real server.

Starts `streamlit run streamlit_app.py` and prints one JSON line per N and a summary:

    python bench/classroom_load.py --sessions 1 5 10 20 --out bench/classroom_load.json

For each N a fresh server starts (an empty runs folder, the shipped checkpoints), one warm-up session opens
the Layer Explorer and the Latent Playground as a teacher would before class (not timed), then N sessions, one
browser context each in ONE Chromium, start 0-2 s apart and each runs the lesson:

    open_explorer   open /explorer (test digit #0)
    step            3 block steps: in the browser (a click on the plotly slider of the `flow_animation`
                    container) or, in an app without it, on the server (the `block_next` button)
    play            play a few blocks: "▶ play" of the animation, or the server player's Play button; each
                    frame's lateness against the player's own period (0 = on time)
    pause           (server player only) Pause
    details_step    (browser-animation app only) one step of the server-side stepper below (`block_next`)
    change_digit    type a test-digit index of its own (a rerun that traces a digit no one else has)
    open_latent     the sidebar link to the Latent Playground
    interpolate     type another index for the "From" digit
    sample_tab      the Sample tab (bound to the URL: a page rerun)
    sample          type a seed of its own

An action's time runs from the action to the finished update: for server actions until the script run it
started has ended (a MutationObserver records every change of stApp's data-test-script-state, so a fast run
is not missed) and the chart that depends on the action has been redrawn with new data (plotly's _fullData
built from the new gd.data); for browser actions until plotly has drawn the frame ('plotly_animated' after
the slider's active step moved). Each action has a time limit (--action-timeout); going past it, a Python
exception or a new st.exception element on the page counts as an error.

Server: peak RSS of the server process and its children, sampled every 0.2 s (psutil, or /proc without it),
and its CPU seconds; the browser's (Chromium and Playwright's driver) CPU seconds too, since both share the
machine's cores. Ctrl-C or SIGTERM stop the browser and the server.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

try:
    import psutil
except ImportError:  # not in requirements.txt: fall back on /proc (Linux)
    psutil = None

try:
    from tqdm import tqdm
except ImportError:
    tqdm = None

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 800}
TARGET_P95_S = 2.0
SERVER_PLAY_PERIOD_S = 1.2  # the server player's period (app_pages/explorer.py's player(..., seconds=1.2)) if unread
BROWSER_ACTIONS = {"step", "play"}  # in the browser-animation app; on the server in the other
POLL_MS = 50
LATENT_READY = "(m) => __clb.ranSince(m) && __clb.heading('Latent Playground') && __clb.drawn(__clb.chart('strip'))"

# Installed in every page before the app's own scripts: records every script-state change of stApp and,
# once hooked, every frame of the Explorer's plotly animation; predicates the lesson waits on.
JS_INIT = r"""
(() => {
  const S = window.__clb = {runs: [], frames: [], animated: [], old: {}};
  new MutationObserver(ms => {
    for (const m of ms) S.runs.push([performance.now(), m.target.getAttribute(m.attributeName)]);
  }).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-test-script-state']});
  S.mark = () => ({runs: S.runs.length, frames: S.frames.length, animated: S.animated.length, t: performance.now()});
  S.state = () => document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state');
  S.runsSince = m => S.runs.slice(m.runs).filter(r => r[1] === 'running').length;
  S.ranSince = m => S.runsSince(m) > 0 && S.state() === 'notRunning';
  S.runSpan = m => {  // seconds from the first script run's start to the last one's end since mark m
    const r = S.runs.slice(m.runs), i = r.findIndex(x => x[1] === 'running');
    const j = r.map(x => x[1]).lastIndexOf('notRunning');
    return i < 0 || j < i ? null : (r[j][0] - r[i][0]) / 1000;
  };
  S.chart = key => document.querySelector(`.st-key-${key} .js-plotly-plot`);
  S.has = key => !!document.querySelector(`.st-key-${key}`);
  S.drawn = gd => !!(gd && gd.data && gd._fullData && gd._fullData.length && gd._fullData[0]._input === gd.data[0]);
  S.visible = gd => !!gd && gd.getBoundingClientRect().width > 0;
  S.remember = keys => { for (const k of keys) { const gd = S.chart(k); S.old[k] = gd ? [gd, gd.data] : null; } };
  S.fresh = k => {  // drawn, and not the chart (or the data) remembered before the action
    const gd = S.chart(k), o = S.old[k];
    return S.drawn(gd) && (!o || o[0] !== gd || o[1] !== gd.data);
  };
  S.exceptions = () => document.querySelectorAll('[data-testid="stException"]').length;
  S.all = selector => [...document.querySelectorAll(selector)];
  S.exceptionText = () => S.all('[data-testid="stException"]').map(e => e.innerText.slice(0, 300));
  S.captions = () => S.all('[data-testid="stCaptionContainer"]').map(e => e.textContent).join('\n');
  S.slider = key => {
    const e = document.querySelector(`.st-key-${key} input[type=range]`);
    return e ? Number(e.value) : null;
  };
  S.heading = text => [...document.querySelectorAll('h1')].some(h => h.textContent.includes(text));
  // the Explorer's animation (app_pages/explorer.py: st.container(key="flow_animation"))
  S.anim = () => S.chart('flow_animation');
  S.hook = () => {
    const gd = S.anim();
    if (!gd || typeof gd.on !== 'function') return false;
    if (!gd.__clbHooked) {
      gd.__clbHooked = true;
      gd.on('plotly_animatingframe', e => S.frames.push([performance.now(), e && e.name]));
      gd.on('plotly_animated', () => S.animated.push(performance.now()));
      gd.on('plotly_animationinterrupted', () => S.animated.push(performance.now()));
    }
    return true;
  };
  S.animInfo = () => {
    const gd = S.anim(), L = gd && gd._fullLayout;
    if (!L) return null;
    const slider = (L.sliders || [])[0], menu = (L.updatemenus || [])[0];
    const buttons = menu ? menu.buttons.filter(b => b.visible !== false).map(b => ({label: b.label, args: b.args}))
                         : [];
    const rect = gd.querySelector('.slider-rail-touch-rect');
    return {active: slider ? slider.active : null,
            steps: slider ? slider.steps.filter(s => s.visible !== false)
                                        .map(s => (s.args && s.args[0] && s.args[0][0]) ?? s.label) : [],
            buttons, rail: rect ? rect.getBoundingClientRect().toJSON() : null,
            frames: ((gd._transitionData || {})._frames || []).length, plotly: typeof window.Plotly};
  };
  S.stepDone = (m, k) => { const i = S.animInfo(); return !!i && i.active === k && S.animated.length > m.animated; };
  S.jsStep = name => window.Plotly.animate(S.anim(), [name],
      {frame: {duration: 0, redraw: true}, transition: {duration: 0}, mode: 'immediate'});
  S.framesSince = m => S.frames.slice(m.frames);
  // what a lesson step waits for
  S.explorerReady = (m, n, fresh) => {
    const animated = S.has('flow_animation');
    const ok = k => fresh ? S.fresh(k) : S.drawn(S.chart(k));
    return S.ranSince(m) && S.captions().includes(`MNIST test image #${n} (`)
      && (S.has('block_maps') ? ok('block_maps') : true) && (animated ? ok('flow_animation') : true)
      && (S.has('block_maps') || animated);
  };
  S.blockReady = (m, k) => S.ranSince(m) && S.slider('block') === k && S.fresh('block_maps');
  S.debug = m => ({state: S.state(), runsSince: m ? S.runsSince(m) : null, url: location.pathname + location.search,
                   exceptions: S.exceptions(), lastRuns: S.runs.slice(-4)});
})();
"""


# ----- the server and what it costs ---------------------------------------------------------------------
class ProcTree:
    """CPU seconds and RSS of a process and its descendants (psutil, or /proc). Processes that have ended
    keep the CPU time last seen for them."""

    def __init__(self, pid: int, exclude: set[int] | None = None):
        self.pid, self.exclude = pid, exclude or set()
        self.cpu_seen: dict[tuple[int, float], float] = {}
        self.labels: dict[tuple[int, float], str] = {}

    def _members(self) -> list[int]:
        if psutil is not None:
            try:
                root = psutil.Process(self.pid)
                return [root.pid] + [c.pid for c in root.children(recursive=True)]
            except psutil.Error:
                return []
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                pass
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(children.get(p, []))
        return out

    @staticmethod
    def _one(pid: int) -> tuple[float, float, int] | None:
        """(start time, CPU seconds, RSS bytes)."""
        if psutil is not None:
            try:
                p = psutil.Process(pid)
                with p.oneshot():
                    t = p.cpu_times()
                    return p.create_time(), t.user + t.system, p.memory_info().rss
            except psutil.Error:
                return None
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
            return float(fields[19]), (int(fields[11]) + int(fields[12])) / tick, int(fields[21]) * page
        except (OSError, IndexError, ValueError):
            return None

    def sample(self) -> int:
        """Update CPU times; the tree's RSS now, in bytes."""
        rss = 0
        for pid in self._members():
            if pid in self.exclude:
                continue
            one = self._one(pid)
            if one is None:
                continue
            start, cpu, mem = one
            self.cpu_seen[(pid, start)] = cpu
            if self.labels.get((pid, start), "sh") == "sh":  # Debian's /usr/bin/chromium is a script that execs
                self.labels[(pid, start)] = self._label(pid)
            rss += mem
        return rss

    @staticmethod
    def _label(pid: int) -> str:
        """What a process is: chromium's --type (renderer, gpu-process, ...), node (Playwright's driver)."""
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            words = [a.decode(errors="replace") for a in args if a]
        except OSError:
            try:
                words = psutil.Process(pid).cmdline() if psutil is not None else []
            except Exception:  # noqa: BLE001 - a process that has gone: no label
                words = []
        if len(words) == 1:  # Chromium rewrites its command line as one string
            words = words[0].split()
        if not words:
            return "?"
        name = Path(words[0]).name
        kind = next((w.split("=", 1)[1] for w in words if w.startswith("--type=")), None)
        if "chrom" in name:
            return f"chromium {kind or 'browser'}"
        return "playwright driver (node)" if name == "node" else name

    def cpu(self) -> float:
        return sum(self.cpu_seen.values())

    def cpu_by_label(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, value in self.cpu_seen.items():
            label = self.labels.get(key, "?")
            out[label] = out.get(label, 0.0) + value
        return out


def system_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        if psutil is not None:
            t = psutil.cpu_times()
            return sum(t) - t.idle - getattr(t, "iowait", 0)
        return None


class Sampler(threading.Thread):
    """Every `period` seconds: the server tree's RSS (peak kept) and everybody's CPU time."""

    def __init__(self, server_pid: int, period: float = 0.2):
        super().__init__(daemon=True)
        self.server = ProcTree(server_pid)
        self.browser = ProcTree(os.getpid(), exclude={os.getpid()})  # our children but the server: driver + Chromium
        self.period, self.peak, self.browser_peak = period, 0, 0
        self.last = 0
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def tick(self) -> None:
        with self.lock:
            self.browser.exclude = {os.getpid(), *self.server._members()}
            self.last = self.server.sample()
            self.peak = max(self.peak, self.last)
            self.browser_peak = max(self.browser_peak, self.browser.sample())

    def run(self) -> None:
        while not self.stop_event.wait(self.period):
            self.tick()

    def reset_peak(self) -> None:
        with self.lock:
            self.peak = self.last

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)
        self.tick()


def free_port(preferred: int) -> int:
    for port in [preferred, *range(preferred + 1, preferred + 50)]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise SystemExit(f"error: no free port from {preferred} to {preferred + 49}: pass --port")


class Server:
    """`streamlit run streamlit_app.py` in a process group of its own, on 127.0.0.1:port."""

    def __init__(self, app_dir: Path, port: int, workdir: Path, threads: int | None, cpus: set[int] | None = None):
        self.app_dir, self.port, self.workdir, self.cpus = app_dir, port, workdir, cpus
        self.url = f"http://127.0.0.1:{port}"
        runs = workdir / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "REALNVP_RUNS_DIR": str(runs), "PYTHONUNBUFFERED": "1"}
        self.env.pop("REALNVP_TEACHER_KEY", None)
        if threads:
            self.env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.log = workdir / f"server-{port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> float:
        started = time.perf_counter()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
                 "--server.port", str(self.port), "--server.address", "127.0.0.1",
                 "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                cwd=self.app_dir, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        if self.cpus:  # before the interpreter has started any thread: they all inherit it
            os.sched_setaffinity(self.proc.pid, self.cpus)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except OSError:
                pass
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"the server did not answer /_stcore/health in {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.25)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def tracebacks(self) -> int:
        try:
            return self.log.read_text(errors="replace").count("Traceback (most recent call last)")
        except OSError:
            return 0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


# ----- one student -----------------------------------------------------------------------------------------
@dataclass
class Record:
    kind: str
    session: int
    seconds: float | None  # None: the action failed
    path: str = ""  # how it was done: server-button, plotly-slider-click, plotly-animate-js, ...
    error: str | None = None
    run_s: float | None = None  # server actions: from the script run's start to its end, as the page saw them


@dataclass
class Run:
    """Everything one N's sessions recorded."""
    records: list[Record] = field(default_factory=list)
    designs: dict[str, int] = field(default_factory=dict)
    browser_step_server_runs: int = 0  # script runs seen while a browser-side step or play was under way
    play_period: dict[str, float] = field(default_factory=dict)
    bar: object = None

    def add(self, rec: Record) -> None:
        self.records.append(rec)
        if self.bar is not None:
            self.bar.update(1)


def digit_index(session: int) -> int:
    return (17 + 389 * session) % 10000  # a test digit of its own for each session (class "any")


class Lesson:
    def __init__(self, page, session: int, run: Run, url: str, timeout_s: float, steps: int, play_frames: int,
                 app_dir: Path = ROOT):
        self.page, self.session, self.run, self.url, self.app_dir = page, session, run, url, app_dir
        self.timeout_ms, self.steps, self.play_frames = timeout_s * 1000, steps, play_frames
        self.design = "unknown"

    async def wait(self, expression: str, arg=None, timeout_ms: float | None = None) -> None:
        await self.page.wait_for_function(expression, arg=arg, polling=POLL_MS,
                                          timeout=self.timeout_ms if timeout_ms is None else timeout_ms)

    async def mark(self) -> dict:
        return await self.page.evaluate("__clb.mark()")

    async def timed(self, kind: str, act, ready: str, arg_of=None, path: str = "server",
                    remember: tuple[str, ...] = (), new_document: bool = False) -> float | None:
        """Do `act()`, wait for the JS predicate `ready(mark, arg)`; record the time or the error.
        `new_document`: the action loads a page, whose own records start from zero."""
        page = self.page
        before = await self.exceptions()
        try:
            if remember:
                await page.evaluate("keys => __clb.remember(keys)", list(remember))
            m = {"runs": 0, "frames": 0, "animated": 0, "t": 0} if new_document else await self.mark()
            start = time.perf_counter()
            await act()
            await self.wait(f"([m, a]) => ({ready})(m, a)", [m, arg_of])
            seconds = time.perf_counter() - start
        except Exception as e:  # noqa: BLE001 - a timeout, a closed page, a script error: counted as an error
            self.run.add(Record(kind, self.session, None, path, await self.describe(e)))
            return None
        after = await self.exceptions()
        error = None
        if after > before:
            error = f"st.exception on the page: {(await page.evaluate('__clb.exceptionText()'))[-1:]}"
        run_s = await page.evaluate("m => __clb.runSpan(m)", m) if path != "plotly-animate-js" else None
        self.run.add(Record(kind, self.session, seconds, path, error, run_s))
        return seconds

    async def exceptions(self) -> int:
        try:
            return await self.page.evaluate("__clb.exceptions()")
        except Exception:  # noqa: BLE001 - a closed page: the action's own error says so
            return 0

    async def describe(self, e: Exception) -> str:
        name = "timeout" if type(e).__name__ == "TimeoutError" else type(e).__name__
        try:
            state = await asyncio.wait_for(self.page.evaluate("__clb.debug(null)"), 5)
        except Exception:  # noqa: BLE001 - only a description
            state = None
        text = str(e).splitlines()[0][:200] if str(e) else ""
        return f"{name}: {text} | page: {json.dumps(state)[:300]}"

    # -- the lesson ---------------------------------------------------------------------------------------
    async def run_lesson(self) -> None:
        page = self.page
        await self.timed("open_explorer", lambda: page.goto(f"{self.url}/explorer", wait_until="commit"),
                         "(m, n) => __clb.explorerReady(m, n, false)", 0, new_document=True)
        if await page.locator(".st-key-flow_animation .js-plotly-plot").count():
            self.design = "browser-animation"
        elif await page.locator(".st-key-block_play").count():
            self.design = "server-player"
        else:
            self.design = "unknown"
        self.run.designs[self.design] = self.run.designs.get(self.design, 0) + 1
        if self.design == "browser-animation":
            await self.browser_steps()
            await self.browser_play()
            await self.server_step("details_step")
        else:
            for _ in range(self.steps):
                await self.server_step("step")
            await self.server_play()
        n = digit_index(self.session)
        index = page.locator(".st-key-explorer_index input")

        async def change() -> None:
            await index.fill(str(n))
            await index.press("Enter")
        await self.timed("change_digit", change, "(m, n) => __clb.explorerReady(m, n, true)", n,
                         remember=("block_maps", "flow_animation"))
        link = page.locator('[data-testid="stSidebarNav"] a[href*="latent"]').first
        await self.timed("open_latent", link.click, LATENT_READY)
        frm = page.locator(".st-key-from_index input")

        async def interpolate() -> None:
            await frm.fill(str((5 + 41 * self.session) % 1000))
            await frm.press("Enter")
        await self.timed("interpolate", interpolate, "(m) => __clb.ranSince(m) && __clb.fresh('strip')",
                         remember=("strip",))
        tab = page.locator('.st-key-tab [data-testid="stTab"]', has_text="Sample").first
        # bound to the URL, the tab reruns the page; were it ever not to, 1.5 s without a run counts as done
        await self.timed("sample_tab", tab.click,
                         "(m) => (__clb.runsSince(m) ? __clb.state() === 'notRunning' : performance.now() - m.t > 1500)"
                         " && __clb.visible(__clb.chart('samples_grid')) && __clb.drawn(__clb.chart('samples_grid'))")
        seed = page.locator(".st-key-seed input")

        async def sample() -> None:
            await seed.fill(str(1000 + self.session))
            await seed.press("Enter")
        await self.timed("sample", sample, "(m) => __clb.ranSince(m) && __clb.fresh('samples_grid')",
                         remember=("samples_grid",))

    async def server_step(self, kind: str) -> None:
        page = self.page
        value = await page.evaluate("__clb.slider('block')")
        if value is None:
            self.run.add(Record(kind, self.session, None, "server-button", "no block slider on the page"))
            return
        button = page.locator(".st-key-block_next button").filter(visible=True).first
        await self.timed(kind, button.click, "(m, k) => __clb.blockReady(m, k)", value + 1, path="server-button",
                         remember=("block_maps",))

    async def server_play(self) -> None:
        """The server player: Play, then each block the fragment's timer advances, late by how much."""
        page, period = self.page, self.run.play_period.setdefault("server-player", server_play_period(self.app_dir))
        start_value = await page.evaluate("__clb.slider('block')")
        button = page.locator(".st-key-block_play button").filter(visible=True).first
        try:
            t = time.perf_counter()
            await button.click()
            for k in range(1, self.play_frames + 1):
                await self.wait("k => __clb.slider('block') >= k", start_value + k)
                now = time.perf_counter()
                self.run.add(Record("play", self.session, max(0.0, now - t - period), "server-player"))
                t = now
        except Exception as e:  # noqa: BLE001 - counted as an error
            self.run.add(Record("play", self.session, None, "server-player", await self.describe(e)))
        await self.timed("pause", button.click,
                         "(m) => __clb.ranSince(m) && [...document.querySelectorAll('.st-key-block_play button')]"
                         ".some(b => b.textContent.includes('Play'))", path="server-player")

    async def browser_steps(self) -> None:
        """Steps on the animation's own slider: a real click on plotly's slider rail, at the next step; if a
        click misses its step, plotly's API (Plotly.animate) where the page exposes it."""
        page = self.page
        use_js = False
        for _ in range(self.steps):
            await page.evaluate("__clb.hook()")
            info = await page.evaluate("__clb.animInfo()")
            if not info or not info["steps"]:
                self.run.add(Record("step", self.session, None, "plotly-slider-click",
                                    f"no plotly slider in flow_animation: {info}"))
                return
            n = len(info["steps"])
            target = (info["active"] or 0) + 1
            target = 0 if target >= n else target
            before = await self.mark()
            if not use_js and not await self.slider_click(target, n):
                if info.get("plotly") in ("function", "object"):
                    use_js = True
                else:
                    self.run.add(Record("step", self.session, None, "plotly-slider-click",
                                        f"the click on the slider rail did not land on step {target} of {n}"))
            if use_js:
                name = info["steps"][target]
                await self.timed("step", lambda name=name: page.evaluate("name => __clb.jsStep(name)", name),
                                 "(m, k) => __clb.stepDone(m, k)", target, path="plotly-animate-js")
            self.run.browser_step_server_runs += await page.evaluate("m => __clb.runsSince(m)", before)

    async def slider_click(self, target: int, n: int) -> bool:
        """Click plotly's slider rail where step `target` of `n` sits (plotly leaves 10 px at both ends) and
        record the time until the frame is drawn. False, with nothing recorded, when the slider did not move
        to that step (the caller may try another way)."""
        page = self.page
        rail = page.locator(".st-key-flow_animation .slider-rail-touch-rect").first
        try:
            await rail.scroll_into_view_if_needed(timeout=self.timeout_ms)
            box = await rail.bounding_box()
            m = await self.mark()
            start = time.perf_counter()
            await rail.click(position={"x": 10 + (box["width"] - 20) * target / max(1, n - 1), "y": box["height"] / 2},
                             force=True, timeout=self.timeout_ms)
            try:
                await self.wait("([m, k]) => __clb.stepDone(m, k)", [m, target], timeout_ms=min(self.timeout_ms, 5000))
            except Exception:  # noqa: BLE001 - slow, or the click missed: which one, the slider says
                info = await page.evaluate("__clb.animInfo()")
                if info and info["active"] != target:
                    return False
                await self.wait("([m, k]) => __clb.stepDone(m, k)", [m, target])
            seconds = time.perf_counter() - start
        except Exception as e:  # noqa: BLE001 - counted as an error
            self.run.add(Record("step", self.session, None, "plotly-slider-click", await self.describe(e)))
            return True
        self.run.add(Record("step", self.session, seconds, "plotly-slider-click"))
        return True

    async def browser_play(self) -> None:
        """The animation's play button: each frame's lateness against its period (the first frame is due at
        once, the others one period after the one before)."""
        page = self.page
        path = "plotly-play-button"
        await page.evaluate("__clb.hook()")
        info = await page.evaluate("__clb.animInfo()")
        buttons = (info or {}).get("buttons") or []

        def is_play(b):  # plotly's convention: args [null | frame names, {frame: {duration > 0}}]
            args = b.get("args") or []
            return len(args) > 1 and args[0] is None and ((args[1] or {}).get("frame") or {}).get("duration", 0) > 0

        plays = [i for i, b in enumerate(buttons) if is_play(b)]
        pauses = [i for i, b in enumerate(buttons) if (b.get("args") or [None])[0] == [None]]
        if not plays:
            self.run.add(Record("play", self.session, None, path, f"no play button in flow_animation: {buttons}"))
            return
        # the middle speed when there are several (the app's "▶ play")
        which = plays[len(plays) // 2]
        period = buttons[which]["args"][1]["frame"]["duration"] / 1000
        self.run.play_period[f"{path}: {buttons[which]['label']}"] = period
        menu = page.locator(".st-key-flow_animation .updatemenu-button")
        runs_before = await self.mark()
        try:
            t0 = await page.evaluate("performance.now()")
            await menu.nth(which).click(timeout=self.timeout_ms)
            await self.wait("([m, k]) => __clb.framesSince(m).length >= k", [runs_before, self.play_frames])
            frames = await page.evaluate("m => __clb.framesSince(m)", runs_before)
            previous, due = t0, 0.0
            for stamp, _ in frames[:self.play_frames]:
                self.run.add(Record("play", self.session, max(0.0, (stamp - previous) / 1000 - due), path))
                previous, due = stamp, period
        except Exception as e:  # noqa: BLE001 - counted as an error
            self.run.add(Record("play", self.session, None, path, await self.describe(e)))
        try:  # pause (not timed)
            if pauses:
                await menu.nth(pauses[0]).click(timeout=self.timeout_ms)
            await asyncio.sleep(max(0.3, 2 * period))
        except Exception as e:  # noqa: BLE001 - counted as an error
            self.run.add(Record("pause", self.session, None, path, await self.describe(e)))
        self.run.browser_step_server_runs += await page.evaluate("m => __clb.runsSince(m)", runs_before)


def server_play_period(app_dir: Path) -> float:
    """The server player's period as app_pages/explorer.py passes it (seconds=...), else 1.2 s."""
    try:
        text = (app_dir / "app_pages" / "explorer.py").read_text()
        found = re.search(r'player\("block",[^)]*seconds=([0-9.]+)', text)
        return float(found.group(1)) if found else SERVER_PLAY_PERIOD_S
    except OSError:
        return SERVER_PLAY_PERIOD_S


# ----- N sessions at once ------------------------------------------------------------------------------
async def warm_up(browser, url: str, timeout_s: float) -> dict:
    """The teacher's tab: the Explorer on digit #0, then the Latent Playground (loads the model, MNIST, the
    default trace and encodings); not timed as part of the lesson."""
    context = await browser.new_context(viewport=VIEWPORT)
    await context.add_init_script(JS_INIT)
    page = await context.new_page()
    run = Run()
    lesson = Lesson(page, -1, run, url, max(timeout_s, 300.0), 0, 0)  # the first run loads the model and MNIST
    start = time.perf_counter()
    try:
        await lesson.timed("open_explorer", lambda: page.goto(f"{url}/explorer", wait_until="commit"),
                           "(m, n) => __clb.explorerReady(m, n, false)", 0, new_document=True)
        await lesson.timed("open_latent", page.locator('[data-testid="stSidebarNav"] a[href*="latent"]').first.click,
                           LATENT_READY)
    finally:
        await context.close()
    return {"seconds": round(time.perf_counter() - start, 2),
            "errors": [r.error for r in run.records if r.error]}


async def run_sessions(n: int, url: str, args, sampler: Sampler, bar_position: int = 0) -> tuple[Run, dict]:
    from playwright.async_api import async_playwright

    # SIGTERM cancels this task, so that the browser closes as on Ctrl-C (measure() turns it into KeyboardInterrupt)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    run = Run()
    rng = random.Random(args.seed * 1000 + n)
    per_session = 1 + args.steps + args.play_frames + 1 + 5
    if tqdm is not None and not args.quiet:
        run.bar = tqdm(total=n * per_session, desc=f"N={n}", unit="action", file=sys.stderr, leave=False)
    info: dict = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        info["chromium"] = browser.version
        try:
            info["warmup"] = await warm_up(browser, url, args.action_timeout)
            contexts = []
            for _ in range(n):
                context = await browser.new_context(viewport=VIEWPORT)
                await context.add_init_script(JS_INIT)
                contexts.append(context)

            async def student(i: int, context) -> None:
                await asyncio.sleep(rng.uniform(0, args.stagger))
                page = await context.new_page()
                lesson = Lesson(page, i, run, url, args.action_timeout, args.steps, args.play_frames, args.app_dir)
                try:
                    await lesson.run_lesson()
                except Exception as e:  # noqa: BLE001 - a bug in the lesson, a dead browser: the others go on
                    run.add(Record("lesson", i, None, "", f"{type(e).__name__}: {e}"[:300]))

            sampler.reset_peak()
            sampler.tick()
            cpu0 = (sampler.server.cpu(), sampler.browser.cpu(), system_busy_s(), time.perf_counter())
            by_label0 = sampler.browser.cpu_by_label()
            tasks = [asyncio.create_task(student(i, c)) for i, c in enumerate(contexts)]
            _, pending = await asyncio.wait(tasks, timeout=args.phase_timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                run.add(Record("lesson", -1, None, "", f"{len(pending)} lesson(s) cut off after --phase-timeout "
                                                        f"{args.phase_timeout:.0f} s"))
            sampler.tick()
            cpu1 = (sampler.server.cpu(), sampler.browser.cpu(), system_busy_s(), time.perf_counter())
            info["wall_s"] = round(cpu1[3] - cpu0[3], 2)
            info["server_cpu_s"] = round(cpu1[0] - cpu0[0], 2)
            info["browser_cpu_s"] = round(cpu1[1] - cpu0[1], 2)
            info["browser_cpu_by_process_s"] = {k: round(v - by_label0.get(k, 0.0), 2)
                                                for k, v in sorted(sampler.browser.cpu_by_label().items())}
            if cpu0[2] is not None and cpu1[2] is not None:
                busy = (cpu1[2] - cpu0[2]) - (cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1])
                info["other_cpu_s"] = round(max(0.0, busy), 2)  # the machine's CPU time outside server and browser
            for context in contexts:
                await context.close()
        finally:
            await browser.close()
            if run.bar is not None:
                run.bar.close()
    return run, info


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def stats(records: list[Record]) -> dict:
    times = [r.seconds for r in records if r.seconds is not None]
    errors = [r for r in records if r.error]
    out = {"count": len(records), "ok": len(times), "errors": len(errors)}
    if times:
        out.update(p50_s=round(quantile(times, 0.5), 3), p95_s=round(quantile(times, 0.95), 3),
                   max_s=round(max(times), 3))
    runs = [r.run_s for r in records if r.run_s is not None]
    if runs:  # how much of it the script run took (the rest: the request, the browser drawing, queueing)
        out.update(script_run_p50_s=round(quantile(runs, 0.5), 3), script_run_p95_s=round(quantile(runs, 0.95), 3))
    return out


def report(n: int, run: Run, info: dict, server: Server, sampler: Sampler, start_s: float, phase_s: float) -> dict:
    by_kind: dict[str, list[Record]] = {}
    for r in run.records:
        by_kind.setdefault(r.kind, []).append(r)
    browser_design = run.designs.get("browser-animation", 0) > 0
    in_browser = [r for r in run.records if r.kind in BROWSER_ACTIONS and r.path.startswith("plotly")]
    on_server = [r for r in run.records if r not in in_browser and r.kind != "lesson"]
    errors = [r for r in run.records if r.error]
    timeouts = [r for r in errors if r.error.startswith("timeout")]
    st_exc = [r for r in errors if r.error.startswith("st.exception")]
    paths: dict[str, dict[str, int]] = {}
    for r in run.records:
        if r.path:
            paths.setdefault(r.kind, {}).setdefault(r.path, 0)
            paths[r.kind][r.path] += 1
    overall = stats(run.records)
    mb = 1 / 2**20
    result = {
        "sessions": n,
        "design": "+".join(sorted(run.designs)) or "none",
        "paths": paths,
        "actions": {k: stats(v) for k, v in sorted(by_kind.items())},
        "overall": overall,
        "server_actions": stats(on_server),
        "browser_actions": stats(in_browser) if in_browser else None,
        "errors": {"count": len(errors), "timeouts": len(timeouts), "st_exception": len(st_exc),
                   "other": len(errors) - len(timeouts) - len(st_exc),
                   "server_tracebacks": server.tracebacks(),
                   "examples": [f"{r.kind} (session {r.session}): {r.error}" for r in errors[:6]]},
        "server": {"peak_rss_mb": round(sampler.peak * mb, 1), "rss_end_mb": round(sampler.last * mb, 1),
                   "cpu_s": info.get("server_cpu_s"), "cpu_total_s": round(sampler.server.cpu(), 2),
                   "start_s": round(start_s, 2)},
        "browser": {"cpu_s": info.get("browser_cpu_s"), "cpu_by_process_s": info.get("browser_cpu_by_process_s"),
                    "peak_rss_mb": round(sampler.browser_peak * mb, 1)},
        "other_cpu_s": info.get("other_cpu_s"),
        "wall_s": info.get("wall_s"),
        "phase_s": round(phase_s, 2),
        "warmup": info.get("warmup"),
        "play_period_s": run.play_period,
        "server_runs_during_browser_steps": run.browser_step_server_runs if browser_design else None,
        "load_average_before": info.get("load_before"),
    }
    result["target"] = {"p95_under_2s": overall.get("p95_s", float("inf")) < TARGET_P95_S,
                        "no_errors": not errors}
    return result


def machine(app_dir: Path) -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    memory = None
    try:
        kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        memory = round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=app_dir, capture_output=True, text=True, timeout=10,
                                  check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD")  # empty outside a git checkout
    dirty = git("status", "--porcelain", "--", "streamlit_app.py", "app_pages", "ui", "app", "flow") if commit else ""
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gb": memory, "python": platform.python_version(),
            "torch": version("torch"), "streamlit": version("streamlit"), "plotly": version("plotly"),
            "playwright": version("playwright"), "psutil": version("psutil"),
            "commit": commit or None,
            "app_files_changed_since_commit": len(dirty.splitlines()) if commit else None}


def cpu_list(text: str) -> set[int]:
    """"0,1" or "2-15" or "0,2-3" -> a set of core numbers."""
    cores: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            cores.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of cores: {text!r} (e.g. 0,1 or 2-15)") from None
    if not cores:
        raise argparse.ArgumentTypeError("no cores given")
    return cores


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 5, 10, 20], help="the N to measure, in order")
    parser.add_argument("--out", type=Path, help="also write the whole result as JSON here")
    parser.add_argument("--port", type=int, default=8621, help="the server's port (the next free one from it)")
    parser.add_argument("--app-dir", type=Path, default=ROOT, help="the checkout to serve (default: this one)")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the server (default: unset, torch's own choice, as a teacher "
                             "runs it)")
    parser.add_argument("--server-cpus", type=cpu_list, default=None,
                        help="pin the server to these cores, e.g. 0,1 (Linux): with --browser-cpus on a bigger "
                             "machine, a 2-core teacher's laptop whose students' browsers run elsewhere")
    parser.add_argument("--browser-cpus", type=cpu_list, default=None,
                        help="pin Chromium, Playwright and this script to these cores, e.g. 2-15")
    parser.add_argument("--steps", type=int, default=3, help="block steps per session")
    parser.add_argument("--play-frames", type=int, default=3, help="frames timed while playing")
    parser.add_argument("--stagger", type=float, default=2.0, help="sessions start at random within this many seconds")
    parser.add_argument("--action-timeout", type=float, default=60.0, help="seconds before an action counts as failed")
    parser.add_argument("--phase-timeout", type=float, default=900.0, help="seconds before an N's lessons are cut off")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start stagger")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.sessions):
        parser.error("--sessions: each N must be at least 1")
    for name in ("server_cpus", "browser_cpus"):
        cores = getattr(args, name)
        if cores and not hasattr(os, "sched_setaffinity"):
            parser.error(f"--{name.replace('_', '-')} needs Linux (os.sched_setaffinity)")
        if cores and not cores <= os.sched_getaffinity(0):
            parser.error(f"--{name.replace('_', '-')}: this machine has cores {sorted(os.sched_getaffinity(0))}")
    if not Path(CHROMIUM).exists():
        parser.error(f"no Chromium at {CHROMIUM} (set CHROMIUM=/path/to/chromium)")
    return args


def measure(n: int, args, workdir: Path) -> dict:
    server = Server(args.app_dir.resolve(), free_port(args.port), workdir / f"n{n}", args.threads, args.server_cpus)
    sampler = None
    phase = time.perf_counter()
    try:
        load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
        start_s = server.start()
        sampler = Sampler(server.proc.pid)
        sampler.start()
        try:
            run, info = asyncio.run(run_sessions(n, server.url, args, sampler))
        except asyncio.CancelledError:  # SIGTERM
            raise KeyboardInterrupt from None
        finally:
            signal.signal(signal.SIGTERM, _terminate)  # asyncio put the default back
        info["load_before"] = [round(v, 2) for v in load_before] if load_before else None
        sampler.stop()
        return report(n, run, info, server, sampler, start_s, time.perf_counter() - phase)
    finally:
        if sampler is not None:
            sampler.stop_event.set()
        server.stop()


def _terminate(signum, frame):  # SIGTERM outside the event loop: the same clean-up as Ctrl-C
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.browser_cpus:  # Playwright's driver and Chromium inherit it
        os.sched_setaffinity(0, args.browser_cpus)
    started = dt.datetime.now().astimezone()
    about = {"date": started.isoformat(timespec="seconds"), "machine": machine(args.app_dir.resolve()),
             "settings": {"sessions": args.sessions, "steps": args.steps, "play_frames": args.play_frames,
                          "stagger_s": args.stagger, "action_timeout_s": args.action_timeout,
                          "server_threads": args.threads or "default", "app_dir": str(args.app_dir.resolve()),
                          "server_cpus": sorted(args.server_cpus) if args.server_cpus else "all",
                          "browser_cpus": sorted(args.browser_cpus) if args.browser_cpus else "all",
                          "viewport": VIEWPORT, "poll_ms": POLL_MS, "target_p95_s": TARGET_P95_S}}
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="classroom-load-"))
    try:
        for n in args.sessions:
            result = measure(n, args, workdir)
            results.append(result)
            print(json.dumps(result), flush=True)
    except KeyboardInterrupt:
        print("interrupted: the server and the browser are stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {"summary": {**about, "wall_s": round((dt.datetime.now().astimezone() - started).total_seconds(), 1),
                           "results": [{"sessions": r["sessions"], "design": r["design"],
                                        "p50_s": r["overall"].get("p50_s"), "p95_s": r["overall"].get("p95_s"),
                                        "server_p95_s": r["server_actions"].get("p95_s"),
                                        "browser_p95_s": (r["browser_actions"] or {}).get("p95_s"),
                                        "actions": r["overall"]["count"], "errors": r["errors"]["count"],
                                        "server_peak_rss_mb": r["server"]["peak_rss_mb"],
                                        "server_cpu_s": r["server"]["cpu_s"], "browser_cpu_s": r["browser"]["cpu_s"],
                                        "wall_s": r["wall_s"], "target_met": all(r["target"].values())}
                                       for r in results]}}
    print(json.dumps(summary), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**summary["summary"], "runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
