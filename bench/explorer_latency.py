"""How long the Layer Explorer takes from a block-stepper change to the new block, for the multi-scale
MNIST model on this CPU (target: under 150 ms median), and what its in-browser animation costs once per
digit. Prints JSON.

    OMP_NUM_THREADS=1 python bench/explorer_latency.py [--moves 25] [--preset realnvp-fast]

"trace" is the one-off cost per digit (the page caches it per model file and digit); "slider: data" is
what a slider move computes from the cached trace (the block's maps, where each pixel went, moments);
"slider: data + figures" adds the plotly figures the block view draws, serialised as Streamlit sends
them; "slider: page rerun" is a whole AppTest script run after moving the slider (the browser reruns
only the fragment holding the slider and the block view, so this is an upper bound). "animation" is
building and serialising the figure whose frames hold every block (sent once per digit: stepping and
playing it cost the server nothing), with its size.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from app import explore_plots as plots
from app.catalog import find_checkpoint
from flow import explore
from flow.checkpoint import load_checkpoint, save_checkpoint
from flow.data import load_mnist
from flow.files import ROOT
from flow.model import Flow, build_model

TARGET_MS = 150.0


def summary(ms: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(ms), 1), "p90_ms": round(sorted(ms)[int(0.9 * (len(ms) - 1))], 1),
            "max_ms": round(max(ms), 1)}


def timed(fn, args: list) -> list[float]:
    fn(args[0])  # warm-up
    out = []
    for a in args:
        start = time.perf_counter()
        fn(a)
        out.append((time.perf_counter() - start) * 1000)
    return out


def block_view(model: Flow, steps: explore.Steps, i: int) -> None:
    """Everything the page's block view builds for block i, serialised like st.plotly_chart does."""
    figures = [plots.block_figure(steps, i)]
    if steps.kinds[i] in ("squeeze", "factor-out"):
        figures.append(plots.layout_figure(steps, i))
    for fig in figures:
        fig.to_json()


def animation(model: Flow, steps: explore.Steps) -> str:
    """The page's animated figure of every block of one trace, serialised."""
    dec = explore.decomposition(model, steps)
    return plots.flow_animation(steps, dec, "bpd", steps.kinds, 0, explore.ks_noise_level(model.dim)).to_json()


def page_reruns(path: Path, blocks: list[int]) -> list[float]:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.session_state["model_path"] = str(path)
    at.switch_page("app_pages/explorer.py").run()
    out = []
    for i in blocks:
        at.slider(key="block").set_value(i)
        start = time.perf_counter()
        at.run()
        out.append((time.perf_counter() - start) * 1000)
        assert not at.exception, at.exception
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=25, help="slider moves to time")
    parser.add_argument("--preset", choices=["realnvp", "realnvp-fast"], default="realnvp")
    args = parser.parse_args()
    path = find_checkpoint(args.preset)  # a fresh model (same architecture, same cost) if there is none
    model = load_checkpoint(path) if path else build_model(args.preset).eval()
    images = load_mnist("test")[0]
    digits = [images[k].view(1, 1, 28, 28) for k in range(8)]
    steps = explore.explore(model, digits[0])
    rng = random.Random(0)
    blocks = [rng.randrange(len(steps)) for _ in range(args.moves)]

    def data(i: int) -> None:
        steps.block(i), steps.where(i), explore.moments(steps.states[i]), explore.histogram(steps.states[i])

    if path is None:  # the page needs a checkpoint file: save the fresh model to a temporary one
        path = ROOT / "artifacts" / f"bench-{args.preset}.safetensors"
        save_checkpoint(model, path, preset=args.preset, data="mnist", epoch=0)
    slider_data = timed(data, blocks)
    figures = timed(lambda i: (data(i), block_view(model, steps, i)), blocks)
    result = {
        "model": str(path), "blocks": len(steps), "cpu_threads": os.environ.get("OMP_NUM_THREADS", "all"),
        "load_average_1min": round(os.getloadavg()[0], 2), "target_median_ms": TARGET_MS,
        "trace (once per digit)": summary(timed(lambda x: explore.explore(model, x), digits)),
        "slider: data": summary(slider_data),
        "slider: data + figures": summary(figures),
        "slider: page rerun (AppTest, whole script)": summary(page_reruns(path, blocks)),
        "animation (once per digit)": summary(timed(lambda _: animation(model, steps), range(5))),
        "animation_json_kb": round(len(animation(model, steps)) / 1024),
    }
    result["meets_target"] = result["slider: data + figures"]["median_ms"] < TARGET_MS
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
