"""Are a class-conditional model's samples of the class asked for? An independent judge, a 5-nearest-neighbour vote
on MNIST's 60,000 raw training digits (`flow.classes.nearest_neighbour_vote`, which knows nothing of the flow),
names the class of each sample; the judge's own accuracy on real test digits is printed beside it, as its
calibration. Writes the model card's grid (one row per class, the columns sharing their latents) with --grid.

    python bench/class_samples.py --checkpoint checkpoints/realnvp-res1-w64-cond-mnist.safetensors \
        [--per-class 100] [--temperature 0.7] [--seed 0] [--grid checkpoints/samples_by_class_T07.png]

Prints JSON: the share judged as their own class, overall and per class, and what the others were judged.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from flow import viz
from flow.checkpoint import load_checkpoint
from flow.classes import nearest_neighbour_vote, samples_by_class
from flow.data import load_mnist


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calibration", type=int, default=2000, help="real test digits the judge is scored on")
    p.add_argument("--grid", type=Path, default=None, help="write the first 10 samples of each class as a PNG")
    args = p.parse_args()

    model = load_checkpoint(args.checkpoint)
    train_x, train_y = load_mnist("train")
    test_x, test_y = load_mnist("test")
    start = time.time()
    samples, asked = samples_by_class(model, args.per_class, args.temperature, args.seed)
    sampling = time.time() - start
    judged = nearest_neighbour_vote(samples, train_x, train_y)
    calibration = nearest_neighbour_vote(test_x[:args.calibration], train_x, train_y)
    k = model.num_classes
    per_class = {c: round((judged[asked == c] == c).float().mean().item(), 3) for c in range(k)}
    confusions = {c: {int(j): int((judged[asked == c] == j).sum()) for j in judged[asked == c].unique() if j != c}
                  for c in range(k)}
    if args.grid:
        columns = min(10, args.per_class)
        keep = torch.cat([torch.arange(c * args.per_class, c * args.per_class + columns) for c in range(k)])
        viz.write_png(viz.image_grid(samples[keep], nrow=columns, scale=2), args.grid,
                      {"checkpoint": str(args.checkpoint), "temperature": str(args.temperature), "seed": str(args.seed),
                       "rows": "one per class, 0 at the top"})
    print(json.dumps({
        "checkpoint": str(args.checkpoint), "temperature": args.temperature, "seed": args.seed,
        "samples": len(samples), "judged_as_asked": round((judged == asked).float().mean().item(), 4),
        "per_class": per_class, "judged_otherwise": confusions,
        "judge": f"5-NN vote on {len(train_x)} raw training digits",
        "judge_accuracy_on_real_test_digits": round((calibration == test_y[:args.calibration]).float().mean().item(),
                                                    4),
        "sampling_seconds": round(sampling, 1)}, indent=1))


if __name__ == "__main__":
    main()
