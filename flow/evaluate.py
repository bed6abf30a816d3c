"""Test bits/dim of a checkpoint: python -m flow.evaluate --checkpoint PATH [--limit N]."""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from torch import Tensor

from flow.checkpoint import CheckpointError, load_checkpoint
from flow.data import MNISTUnavailable, load_dataset
from flow.distributed import DeviceError, pick_device
from flow.model import Flow
from flow.options import Option
from flow.run_protocol import EXIT_REFUSED


@torch.no_grad()
def evaluate_bpd(model: Flow, data: Tensor, batch_size: int = 500, seed: int = 0, rank: int = 0,
                 world: int = 1) -> tuple[float, int]:
    """(sum of per-example bits/dim, count) over this rank's shard data[rank::world], by
    `Flow.bits_per_dim` with the dequantization noise from `seed`. Each image's noise depends on the
    seed and the image alone, so one process and N processes, and every page showing that image with
    that seed, get the same numbers; the sum lets shards be added up across ranks."""
    was_training = model.training
    model.eval()
    shard = data[rank::world]
    total = sum(model.bits_per_dim(shard[i:i + batch_size], seed).double().sum().item()
                for i in range(0, len(shard), batch_size))
    model.train(was_training)
    return total, len(shard)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flow.evaluate", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint")
    for option in (Option("limit", int, None, "only the first N test examples", low=1),
                   Option("batch_size", int, 500, "examples per forward pass", low=1),
                   Option("seed", int, 0, "seed of the dequantization noise", low=0, high=2**32 - 1)):
        p.add_argument(option.flag, type=option.parse, default=option.default, help=option.help)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    args = p.parse_args(argv)
    try:
        model = load_checkpoint(args.checkpoint, pick_device(args.device))
        data_name = model.metadata.get("data", "mnist")
        digit = model.metadata.get("digit")  # a model trained on one class is scored on that class
        data = load_dataset(data_name, "test", digit=digit)[: args.limit]
    except (CheckpointError, DeviceError, MNISTUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    start = time.time()
    total, n = evaluate_bpd(model, data, args.batch_size, args.seed)
    print(json.dumps({"checkpoint": args.checkpoint, "data": data_name, "digit": digit, "test_bpd": round(total / n, 5), "n": n,
                      "seconds": round(time.time() - start, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
