"""How fast the Latent Playground answers on this machine: a 16-frame interpolation and a 64-sample
grid for the multi-scale MNIST model (target: under 300 ms each). Prints JSON.

    OMP_NUM_THREADS=1 python bench/latent_speed.py [--repeats 7] [--preset realnvp-fast]

"model" is what the numbers are computed with (encode 2 digits, decode the path, bits/dim of
every frame); "with pictures" adds what the page draws on top (the plotly grid, PNG and GIF).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from app import latent_plots
from app.catalog import find_checkpoint
from flow import latent
from flow.checkpoint import load_checkpoint
from flow.data import load_mnist
from flow.model import build_model


def timed(fn, repeats: int) -> dict[str, float]:
    fn()  # warm-up
    ms = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(ms), 1), "min_ms": round(min(ms), 1), "max_ms": round(max(ms), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--preset", choices=["realnvp", "realnvp-fast"], default="realnvp")
    args = parser.parse_args()
    path = find_checkpoint(args.preset)  # a fresh model (same architecture, same cost) if there is none
    model = load_checkpoint(path) if path else build_model(args.preset).eval()
    source = str(path) if path else f"fresh build_model({args.preset!r}) (no checkpoint yet)"
    images, labels = load_mnist("test")
    pair = torch.stack([images[int((labels == c).nonzero()[0])] for c in (3, 8)]).unsqueeze(1)

    def interpolation() -> tuple[torch.Tensor, torch.Tensor]:
        z = latent.encode_digits(model, pair)
        return latent.decode_with_bits(model, latent.interpolate(model, z[0], z[1], 16, "slerp"))

    def interpolation_pictures() -> None:
        frames, bits = interpolation()
        latent_plots.grid_figure(frames, 16, [f"{b:.3f}" for b in bits.tolist()])
        latent_plots.png_of(frames, 16)
        latent_plots.gif_of(frames)

    def samples() -> tuple[torch.Tensor, torch.Tensor]:
        return latent.decode_with_bits(model, model.latents(64, 0.7, seed=0))

    def samples_pictures() -> None:
        frames, bits = samples()
        latent_plots.grid_figure(frames, 8, [f"{b:.3f}" for b in bits.tolist()])
        latent_plots.png_of(frames, 8)

    result = {
        "model": source,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "target_ms": 300,
        "interpolation_16_frames": {"model": timed(interpolation, args.repeats),
                                    "with_pictures": timed(interpolation_pictures, args.repeats)},
        "samples_64": {"model": timed(samples, args.repeats), "with_pictures": timed(samples_pictures, args.repeats)},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
