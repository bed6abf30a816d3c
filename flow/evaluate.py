"""Test bits/dim of a checkpoint: python -m flow.evaluate --checkpoint PATH [--data FILE] [--limit N].

A class-conditional model's bits/dim are of its marginal p(x), and where the data have labels it also prints
test_accuracy, the share of test examples `Flow.classify` gives the most probability to their own class.

Scores the test examples of the data the checkpoint was trained on (the data file it recorded, or a built-in data
set), or of --data: a built-in data set or a .npy, .npz or .pt file (its x_test, or the part held out of x).
"""
from __future__ import annotations

# torch is imported once the command line is parsed: --help answers at once
import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from flow.data import MNISTUnavailable, data_label, is_data_file, load_dataset, load_labels
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
    (total,), n = _sums(model, data, None, batch_size, rank, world,
                        lambda x, _: (model.bits_per_dim(x, seed),), 1)
    return total, n


def evaluate_classes(model: Flow, data: Tensor, labels: Tensor, batch_size: int = 500, seed: int = 0,
                     rank: int = 0, world: int = 1) -> tuple[float, float, int]:
    """A conditional model's (sum of marginal bits/dim, number classified right, count) over this rank's shard,
    from one pass per batch: `Flow.class_log_probs` gives both the marginal (`Flow.marginal`, the number
    `evaluate_bpd` gives) and `Flow.classify`'s answer (its argmax). Noise and shards as `evaluate_bpd`'s."""
    def score(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        u = model.dequantize(x, seed) if model.config.preprocess else x
        class_log_probs = model.class_log_probs(u)
        right = (class_log_probs.argmax(1).cpu() == y).double()
        return model.bits_from_log_prob(model.marginal(class_log_probs)), right

    (total, right), n = _sums(model, data, labels, batch_size, rank, world, score, 2)
    return total, right, n


def _sums(model: Flow, data: Tensor, labels: Tensor | None, batch_size: int, rank: int, world: int,
          score: Callable[[Tensor, Tensor | None], tuple[Tensor, ...]], parts: int) -> tuple[list[float], int]:
    """The `parts` sums over this rank's shard of what `score(examples, labels)` gives per example, in eval mode
    without autograd (the model's mode is restored), and the shard's size."""
    import torch

    was_training = model.training
    model.eval()
    shard = data[rank::world]
    labels = None if labels is None else labels[rank::world]
    sums = [0.0] * parts
    with torch.no_grad():
        for i in range(0, len(shard), batch_size):
            scores = score(shard[i:i + batch_size], None if labels is None else labels[i:i + batch_size])
            sums = [total + part.double().sum().item() for total, part in zip(sums, scores)]
    model.train(was_training)
    return sums, len(shard)


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
        labels = load_labels(data_name, "test") if model.num_classes and digit is None else None
        if labels is not None:
            labels = labels[: args.limit]
    except (CheckpointError, DeviceError, MNISTUnavailable, ValueError) as e:  # DataFileError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    start = time.time()
    if labels is None:  # an unconditional model, or data without labels: the (marginal) bits/dim only
        (total, n), accuracy = evaluate_bpd(model, data, args.batch_size, args.seed), {}
    else:
        total, right, n = evaluate_classes(model, data, labels, args.batch_size, args.seed)
        accuracy = {"test_accuracy": round(right / n, 5)}
    print(json.dumps({"checkpoint": args.checkpoint, "data": data_name, "digit": digit, "test_bpd": round(total / n, 5),
                      **accuracy, "n": n, "seconds": round(time.time() - start, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
