"""The floor under classroom_load.py: N students opening a one-line Streamlit app at once, in headless Chromium
on this machine. No model, no plot: what is left is Streamlit's page (its JavaScript, the websocket, one script
run) and the browser. If this alone takes more than the classroom target, no change to the app can meet it here.

    python bench/page_floor.py --sessions 1 5 10 20

Each N gets a fresh server (classroom_load's) serving a folder with one `streamlit_app.py`: st.title and st.write.
N browser contexts in one Chromium start 0-2 s apart (as classroom_load's students) and each opens the page; the
time runs from `page.goto` to the title drawn after a finished script run. Prints a JSON line per N.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from classroom_load import (CHROMIUM, CHROMIUM_ARGS, TARGET_P95_S, VIEWPORT, Sampler, Server, free_port, machine,
                            quantile)  # bench/ is sys.path[0] when this file runs as a script

APP = 'import streamlit as st\n\nst.title("Floor")\nst.write("One line: no model, no chart.")\n'
READY = ("() => document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state') === "
         "'notRunning' && [...document.querySelectorAll('h1')].some(h => h.textContent.includes('Floor'))")


async def open_pages(n: int, url: str, stagger: float, timeout_s: float, seed: int) -> tuple[list[float], int]:
    from playwright.async_api import async_playwright

    rng = random.Random(seed * 1000 + n)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        contexts = [await browser.new_context(viewport=VIEWPORT) for _ in range(n)]

        async def student(context) -> float | None:
            await asyncio.sleep(rng.uniform(0, stagger))
            page = await context.new_page()
            t0 = time.perf_counter()
            try:
                await page.goto(url, wait_until="commit")
                await page.wait_for_function(READY, timeout=timeout_s * 1000, polling=50)
            except Exception:  # noqa: BLE001 - a timeout: counted as an error
                return None
            return time.perf_counter() - t0

        times = await asyncio.gather(*(student(c) for c in contexts))
        await browser.close()
    done = [t for t in times if t is not None]
    return done, len(times) - len(done)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--stagger", type=float, default=2.0, help="pages open at random within this many seconds")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before an open counts as failed")
    parser.add_argument("--port", type=int, default=8671)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="page-floor-") as tmp:
        app_dir = Path(tmp) / "app"
        app_dir.mkdir()
        (app_dir / "streamlit_app.py").write_text(APP)
        for n in args.sessions:
            server = Server(app_dir, free_port(args.port), Path(tmp) / f"n{n}", threads=None)
            sampler = None
            try:
                server.start()
                sampler = Sampler(server.proc.pid)
                sampler.start()
                sampler.tick()
                server_cpu0 = sampler.server.cpu()  # without the server's start
                times, errors = asyncio.run(open_pages(n, server.url, args.stagger, args.timeout, args.seed))
                sampler.stop()
                print(json.dumps({
                    "sessions": n, "opened": len(times), "errors": errors,
                    "p50_s": round(quantile(times, 0.5), 2) if times else None,
                    "p95_s": round(quantile(times, 0.95), 2) if times else None,
                    "max_s": round(max(times), 2) if times else None, "target_p95_s": TARGET_P95_S,
                    "server_cpu_s": round(sampler.server.cpu() - server_cpu0, 2),
                    "browser_cpu_s": round(sampler.browser.cpu(), 2),
                    "machine": machine(Path(__file__).resolve().parents[1])}), flush=True)
            finally:
                if sampler is not None:
                    sampler.stop_event.set()
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
