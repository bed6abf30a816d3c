"""Training and sampling images/s per preset, and forward+inverse time per block.

    python bench/throughput.py [--presets realnvp seed-mlp] [--batch-size 64] [--steps 10]

Random weights: speed does not depend on what the model has learned. Prints one JSON line per preset.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from flow.data import load_dataset
from flow.layers import dequantize
from flow.model import PRESETS, build_model


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def measure(preset: str, batch_size: int, steps: int) -> dict:
    model = build_model(preset)
    data = load_dataset("moons" if preset == "toy-2d" else "mnist", "train")[: batch_size * (steps + 1)]
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    batches = iter(data.split(batch_size))

    def train_step() -> None:
        batch = next(batches)
        x = dequantize(batch) if model.config.preprocess else batch
        loss = -model.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    train_s = timed(train_step, steps)
    model.eval()
    with torch.no_grad():
        sample_s = timed(lambda: model.sample(batch_size), 3)
        h = dequantize(data[:batch_size]) if model.config.preprocess else data[:batch_size]
        per_block = {}
        for entry, (name, step) in zip(model.transform.walk(h), model.transform.stages):
            if step is not None:  # factor-outs only move values
                per_block[name] = round(1000 * timed(lambda: step.inverse(step(h)[0]), 3), 2)
            h = entry.output
    return {"preset": preset, "params": sum(p.numel() for p in model.parameters()), "batch_size": batch_size,
            "threads": torch.get_num_threads(), "train_images_per_s": round(batch_size / train_s, 1),
            "sample_images_per_s": round(batch_size / sample_s, 1), "forward_inverse_ms_per_block": per_block}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=list(PRESETS))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    for preset in args.presets:
        print(json.dumps(measure(preset, args.batch_size, args.steps)), flush=True)


if __name__ == "__main__":
    main()
