"""Test bits/dim of a checkpoint: python -m flow.evaluate --checkpoint PATH [--data FILE] [--limit N].

Scores the test examples of the data the checkpoint was trained on (the data file it recorded, or a built-in data
set), or of --data: a built-in data set or a .npy, .npz or .pt file (its x_test, or the part held out of x).
"""
from __future__ import annotations

# torch is imported once the command line is parsed: --help answers at once
import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from flow.data import MNISTUnavailable, data_label, is_data_file, load_dataset
from flow.datafile import DataFileError, sha256_of
from flow.options import OPTION, Option
from flow.run_protocol import EXIT_REFUSED

if TYPE_CHECKING:
    from torch import Tensor

    from flow.model import Flow


def evaluate_bpd(model: Flow, data: Tensor, batch_size: int = 500, seed: int = 0, rank: int = 0,
                 world: int = 1) -> tuple[float, int]:
    """(sum of per-example bits/dim, count) over this rank's shard data[rank::world], by
    `Flow.bits_per_dim` with the dequantization noise from `seed`. Each image's noise depends on the
    seed and the image alone, so one process and N processes, and every page showing that image with
    that seed, get the same numbers; the sum lets shards be added up across ranks."""
    import torch

    was_training = model.training
    model.eval()
    shard = data[rank::world]
    with torch.no_grad():
        total = sum(model.bits_per_dim(shard[i:i + batch_size], seed).double().sum().item()
                    for i in range(0, len(shard), batch_size))
    model.train(was_training)
    return total, len(shard)


def data_mismatch(model: Flow, data: Tensor, label: str) -> str | None:
    """Why the model cannot score these examples (their shape, or pixels against points), or None."""
    shape, images = tuple(data.shape[1:]), not data.is_floating_point()
    if shape != tuple(model.config.shape):
        return (f"the model takes examples of shape {tuple(model.config.shape)}, but {label}'s have shape {shape}: "
                "score it on data like the data it was trained on")
    if images != model.config.preprocess:
        return (f"the model takes {'8-bit images' if model.config.preprocess else 'float points'}, but {label} holds "
                f"{data.dtype} {'images' if images else 'points'}: score it on data like the data it was trained on")
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flow.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint")
    data = OPTION["data"]
    p.add_argument("--data", type=data.parse, default=None,
                   help=f"the data to score: {data.rule()}; default: the checkpoint's own")
    for option in (Option("limit", int, None, "only the first N test examples", low=1),
                   Option("batch_size", int, 500, "examples per forward pass", low=1),
                   Option("seed", int, 0, "seed of the dequantization noise", low=0, high=2**32 - 1)):
        p.add_argument(option.flag, type=option.parse, default=option.default, help=option.help)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from flow.checkpoint import CheckpointError, load_checkpoint
    from flow.distributed import DeviceError, pick_device

    try:
        model = load_checkpoint(args.checkpoint, pick_device(args.device))
        own = model.metadata.get("data", "mnist")
        data_name = own if args.data is None else args.data
        # a model trained on one class is scored on that class of its own data set
        digit = model.metadata.get("digit") if data_name == own else None
        record = model.metadata.get("data_file")
        if data_name == own and is_data_file(own) and isinstance(record, dict):
            try:
                if sha256_of(own) != record.get("sha256"):  # its held-out split may now hold other examples
                    print(f"warning: the data file {own} has changed since the model was trained on it",
                          file=sys.stderr)
            except OSError:
                pass  # load_dataset below says it is missing
        data = load_dataset(data_name, "test", digit=digit)[: args.limit]
        if problem := data_mismatch(model, data, data_label(data_name)):
            raise DataFileError(problem)
    except (CheckpointError, DeviceError, MNISTUnavailable, ValueError) as e:  # DataFileError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    start = time.time()
    total, n = evaluate_bpd(model, data, args.batch_size, args.seed)
    print(json.dumps({"checkpoint": args.checkpoint, "data": data_name, "digit": digit, "test_bpd": round(total / n, 5),
                      "n": n, "seconds": round(time.time() - start, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
