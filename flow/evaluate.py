"""Test bits/dim of a checkpoint: python -m flow.evaluate --checkpoint PATH [--limit N]."""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from torch import Tensor

from flow.checkpoint import CheckpointError, load_checkpoint
from flow.data import load_dataset
from flow.model import Flow


@torch.no_grad()
def evaluate_bpd(model: Flow, data: Tensor, batch_size: int = 500, seed: int = 0, rank: int = 0,
                 world: int = 1) -> tuple[float, int]:
    """(sum of per-example bits/dim, count) over this rank's shard data[rank::world].

    The dequantization noise is drawn for the whole set from `seed` before sharding, so one process
    and N processes evaluate the same noisy images; the sum lets shards be added up across ranks."""
    was_training = model.training
    model.eval()
    idx = torch.arange(rank, len(data), world)
    if data.dtype == torch.uint8:
        noise = torch.rand(data.shape, generator=torch.Generator().manual_seed(seed))[idx]
    total = 0.0
    for i in range(0, len(idx), batch_size):
        batch = data[idx[i:i + batch_size]]
        if data.dtype == torch.uint8:
            u = (batch.float() + noise[i:i + batch_size]) / 256.0
            bpd = model.bits_from_log_prob(model.log_prob(u.to(model.device)))
        else:
            bpd = model.bits_per_dim(batch.to(model.device))
        total += bpd.double().sum().item()
    model.train(was_training)
    return total, len(idx)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flow.evaluate", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint")
    p.add_argument("--limit", type=int, default=None, help="only the first N test examples")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="seed of the dequantization noise")
    args = p.parse_args(argv)
    try:
        model = load_checkpoint(args.checkpoint, args.device)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data_name = model.metadata.get("data", "mnist")
    data = load_dataset(data_name, "test")[: args.limit]
    start = time.time()
    total, n = evaluate_bpd(model, data, args.batch_size, args.seed)
    print(json.dumps({"checkpoint": args.checkpoint, "data": data_name, "test_bpd": round(total / n, 5), "n": n,
                      "seconds": round(time.time() - start, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
