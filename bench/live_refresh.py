"""The Train page's live 2-D view: the server time of one refresh, and that the refreshing stops when the run ends.

    python bench/live_refresh.py [--epochs 3] [--snapshot-every 5] [--watch-epochs 10]

1. Launches a real toy-2d run on moons (app.jobs, as the page's Launch button does) and, while it trains, times
   what one refresh of the live fragment (ui.training.plane) does on the server, each time on a snapshot not
   seen before (no cache): read the run's state, find the newest snapshot, load it and compute its plane view
   (density, samples, grid), build the figure and serialise it as st.plotly_chart does. Target: under 300 ms.
   The app computes a snapshot's view on one torch thread (`app.learning.one_thread`): with two, the second
   thread waits on the core the trainer holds.
2. Opens the Train page on that run in headless Chromium and counts the WebSocket messages the server sends:
   while the run trains (a refresh every second) and for 10 s after it has ended (expected: none).
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from app import jobs, learning
from app.train_plots import plane_figure
from flow.data import make_toy
from flow.files import ROOT

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def one_refresh(run: jobs.Run, data) -> tuple[float, int]:
    """Seconds of server work for one live refresh, and the step of the snapshot it showed."""
    start = time.perf_counter()
    jobs.read_run(run.path)
    newest = learning.newest_snapshot(run.path)
    view = learning.snapshot_view(run.path, newest)
    plane_figure([view], data).to_json()
    return time.perf_counter() - start, view.step


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--snapshot-every", type=int, default=5)
    p.add_argument("--watch-epochs", type=int, default=10, help="of the run watched in the browser: long enough "
                   "to be still training once the page has loaded")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="live-refresh-"))
    os.environ[jobs.RUNS_ENV] = str(root)
    data = make_toy("moons", 1000, seed=1).numpy()

    # 1. server time per refresh, on fresh snapshots while the run trains
    run = jobs.launch(jobs.RunSpec(preset="toy-2d", data="moons", epochs=args.epochs, name="bench",
                                   snapshot_every=args.snapshot_every))
    times, seen = [], set()
    while jobs.read_run(run.path).active:
        newest = learning.newest_snapshot(run.path)
        if newest is not None and newest not in seen:
            seen.add(newest)
            times.append(one_refresh(run, data)[0])
        time.sleep(0.2)
    snapshots = learning.list_snapshots(run.path)
    sizes = [p.stat().st_size for _, p in snapshots]

    # 2. in the browser: messages while a second run trains, none once it has ended
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless",
                               "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                              cwd=ROOT, env=os.environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        second = jobs.launch(jobs.RunSpec(preset="toy-2d", data="moons", epochs=args.watch_epochs, name="watched",
                                          snapshot_every=args.snapshot_every))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            received: list[float] = []
            page.on("websocket", lambda ws: ws.on("framereceived", lambda _: received.append(time.time())))
            for _ in range(60):
                try:
                    page.goto(f"http://127.0.0.1:{port}/train?run=watched", timeout=60000)
                    break
                except Exception:  # the server is still starting
                    time.sleep(1)
            page.wait_for_selector(".st-key-plane_chart", timeout=120000)
            training_from = time.time()
            while jobs.read_run(second.path).active:
                page.wait_for_timeout(500)  # not time.sleep: Playwright delivers the page's events only while it waits
            ended = time.time()
            during = [t for t in received if training_from <= t <= ended]
            page.wait_for_selector("text=Replay of", timeout=600000)  # the page has redrawn for the ended run
            page.wait_for_timeout(2000)
            quiet_from = time.time()
            page.wait_for_timeout(10000)
            after = [t for t in received if t >= quiet_from]
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps({
        "refresh_ms": {"target": 300, "median": round(1000 * statistics.median(times), 1),
                       "p95": round(1000 * sorted(times)[int(0.95 * (len(times) - 1))], 1),
                       "max": round(1000 * max(times), 1), "n": len(times)},
        "torch_threads": torch.get_num_threads(),
        "snapshots": len(snapshots), "snapshot_bytes": {"min": min(sizes), "max": max(sizes)},
        "browser": {"messages_per_s_while_training": round(len(during) / max(1e-9, ended - training_from), 2),
                    "training_s": round(ended - training_from, 1), "messages_in_10_s_after_the_end": len(after)},
        "cpus": os.cpu_count(), "load_average": os.getloadavg(), "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
