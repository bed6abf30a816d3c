"""Train a Real NVP: python -m flow.train --preset P --data D --epochs N [--resume ...].

Writes into the run folder: checkpoint.safetensors (each epoch, atomically), train_state.pt
(optimizer, for --resume), metrics.jsonl, samples/epoch_NNN.png (every epoch's samples decoded from the
same latents, samples/latents.safetensors), samples.png, status.json, and with --snapshot-every K
(default for 2-D models) snapshots/step_NNNNNNN.safetensors every K steps (`flow.learning`).
Works the same under `torchrun --nproc_per_node=N -m flow.train ...` (DDP; rank 0 writes).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from flow import distributed as dd
from flow.checkpoint import CheckpointError, atomic_write, load_checkpoint, model_problem, save_checkpoint
from flow.data import MNISTUnavailable, load_dataset
from flow.evaluate import evaluate_bpd
from flow.learning import block_stats, default_snapshot_every, run_latents, save_snapshot
from flow.layers import dequantize
from flow.model import PRESETS, FlowConfig, build_model, default_data, fits_data, prior_log_prob
from flow.options import (LEGACY_RECORD, OPTION, OPTIONS, add_arguments, kept_refusal, new_run_args,
                          resolve, set_flag)
from flow.run_protocol import EXIT_CRASHED, EXIT_DIVERGED, EXIT_REFUSED, EXIT_WRITE_FAILED, batch_problem
from flow.viz import samples_picture, write_png


class Stopper:
    """SIGTERM/SIGINT ask for a stop; training finishes its current step, saves and ends."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._request)
        # app.jobs starts the trainer with SIGTERM blocked: a stop sent before this handler existed
        # (while Python started and imported torch) has waited for it, and arrives now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})

    def _request(self, signum: int, frame: object) -> None:
        self.requested = True


class RunError(Exception):
    """Settings, data or a device a run cannot work with: the message says why and what to do instead."""


class WriteError(Exception):
    """The run folder cannot be written (disk full, not writable, removed)."""

    def __init__(self, run: RunFolder, error: OSError):
        self.run = run
        super().__init__(f"cannot write to the run folder {run.path} ({error.strerror or error})")


class RunFolder:
    """The files of one run; only rank 0 writes. Every file but the append-only metrics is written
    atomically, so a failed write (disk full) leaves the previous version, never half a file."""

    def __init__(self, path: Path, writer: bool):
        self.path, self.writer = path, writer
        self.checkpoint, self.state = path / "checkpoint.safetensors", path / "train_state.pt"
        self.running = False  # status.json says "running": an end without a final status must change it

    @contextmanager
    def writing(self) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            raise WriteError(self, e) from e

    def kept(self) -> str:
        return "the last good checkpoint is kept" if self.checkpoint.exists() else "no checkpoint had been written yet"

    def log(self, record: dict) -> None:
        if self.writer:
            with self.writing(), open(self.path / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def status(self, state: str, message: str = "", **extra: object) -> None:
        if self.writer:
            record = {"state": state, "message": message, "pid": os.getpid(), "updated": time.time(), **extra}
            with self.writing():  # the first write also makes the folder
                atomic_write(self.path / "status.json", lambda tmp: tmp.write_text(json.dumps(record)))
            self.running = state == "running"

    def fail(self, message: str, code: int) -> int:
        """Print the one `error:` line; if status.json says "running", it says "failed" now."""
        print(f"error: {message}", file=sys.stderr)
        if self.running:
            with suppress(WriteError):  # a small file may still fit
                self.status("failed", message)
        return code

    def save(self, model, optimizer, meta: dict) -> None:
        if not self.writer:
            return
        state = {"optimizer": optimizer.state_dict(), "epoch": meta["epoch"], "step": meta["step"]}
        with self.writing():
            save_checkpoint(model, self.checkpoint, **meta)
            atomic_write(self.state, lambda tmp: torch.save(state, tmp))

    def save_samples(self, model, z: torch.Tensor, name: str, step: int, epoch: float) -> None:
        """The samples decoded from the run's fixed latents z as samples/<name>.png and samples.png; the
        PNG's text says the step and the (fractional) epoch it shows."""
        if self.writer:
            img, text = samples_picture(model, z), {"step": str(step), "epoch": f"{epoch:.4f}"}
            with self.writing():
                for path in (self.path / "samples" / f"{name}.png", self.path / "samples.png"):
                    atomic_write(path, lambda tmp: write_png(img, tmp, text))

    def snapshot(self, model, z: torch.Tensor, step: int, epoch: float) -> None:
        """Weights after `step`, and for an image model its samples then (samples/step_NNNNNNN.png)."""
        if self.writer:
            with self.writing():
                save_snapshot(model, self.path, step, epoch)
            if len(model.config.shape) == 3:
                self.save_samples(model, z, f"step_{step:07d}", step, epoch)


def override(text: str) -> tuple[str, object]:
    """--set FIELD=VALUE -> (FIELD, VALUE read as JSON, or as a string where it is not JSON)."""
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"must be FIELD=VALUE, such as width=32 (got {text!r})")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def lr_factor(progress: float, step: int, warmup: int, schedule: str) -> float:
    """Linear warm-up over `warmup` steps, then constant, or cosine or linear decay to 0 at progress 1."""
    warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
    progress = min(progress, 1.0)
    decay = {"cosine": 0.5 * (1 + math.cos(math.pi * progress)), "linear": 1.0 - progress}.get(schedule, 1.0)
    return warm * decay


def build_parser() -> argparse.ArgumentParser:
    presets = "\n".join(f"  {name:12s} {p.summary} (batch {p.batch_size}, lr {p.lr:g}, beta2 {p.beta2:g})"
                         for name, p in PRESETS.items())
    p = argparse.ArgumentParser(prog="python -m flow.train", description=__doc__ + "\npresets:\n" + presets,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)  # the options the app's New-run form offers too (flow.options)
    p.add_argument("--run-dir", type=Path, default=None, help="default: checkpoints/runs/<preset>-<time>")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run folder's last checkpoint, with the options the run was started with "
                        "(each option above says whether --resume keeps it)")
    p.add_argument("--set", dest="overrides", type=override, action="append", default=[], metavar="FIELD=VALUE",
                   help="override an architecture field of the preset, e.g. --set width=32 (kept by --resume)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast for the s/t networks' convolutions (a CUDA GPU, or a CPU with AVX-512 BF16 "
                        "or AMX); the couplings, log-dets and the loss stay float32")
    p.add_argument("--index-log", action="store_true",
                   help="append the example indices each process trains on to indices.rankN.txt (for checks)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stopper = Stopper()
    preset = args.preset or OPTION["preset"].default
    run_dir = args.run_dir or Path("checkpoints/runs") / f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunFolder(run_dir, writer=int(os.environ.get("RANK", 0)) == 0)  # torchrun's rank, before setup
    try:
        device = dd.pick_device(args.device)
        if args.bf16 and (problem := dd.bf16_problem(device)):
            raise RunError(problem)
        rank, world = dd.setup(device)
        return train(args, run, stopper, device, rank, world)
    except (RunError, dd.DeviceError) as e:
        return run.fail(str(e), EXIT_REFUSED)
    except WriteError as e:  # no traceback: say what happened and what is left
        return run.fail(f"{e}; {run.kept()}. Free some disk space (or make the folder writable), then resume the run.",
                        EXIT_WRITE_FAILED)
    except Exception as e:  # a bug: its traceback for the report, and never a run left "running"
        traceback.print_exc()
        return run.fail(f"the trainer crashed ({type(e).__name__}: {e}); {run.kept()}. This is a bug: please report "
                        "it with the traceback above.", EXIT_CRASHED)
    finally:
        dd.teardown()


def load_data(name: str, limit_train: int | None, limit_test: int | None,
              digit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, test) examples, of one MNIST class if `digit`; RunError if the data set cannot be read."""
    try:
        return (load_dataset(name, "train", digit=digit)[:limit_train],
                load_dataset(name, "test", digit=digit)[:limit_test])
    except (MNISTUnavailable, ValueError) as e:
        raise RunError(str(e)) from e


def check_fit(config: FlowConfig, data_name: str, train_x: torch.Tensor) -> None:
    """RunError unless the model takes the data set's examples: shape, and 8-bit pixels for the logit."""
    if tuple(config.shape) != tuple(train_x.shape[1:]):
        raise RunError(f"the model takes examples of shape {tuple(config.shape)}, but {data_name}'s have shape "
                       f"{tuple(train_x.shape[1:])}: do not --set shape.")
    if config.preprocess != (train_x.dtype == torch.uint8):
        raise RunError(f"preprocess={config.preprocess} does not suit {data_name}: it must be true for MNIST's "
                       "8-bit pixels and false for the 2-D toy sets, so do not --set preprocess.")


def resume_options(args: argparse.Namespace, model, warn: bool = True) -> dict[str, object]:
    """The options a resumed run trains with (flow.options.resolve on the record in its checkpoint); RunError
    naming every kept option (--set fields too) given with another value than the run's. `warn`: say so when the
    run has no record (one process of many says it)."""
    given, meta = {o.name: getattr(args, o.name) for o in OPTIONS}, model.metadata
    recorded = meta.get("options")
    if not isinstance(recorded, dict):  # saved before runs recorded their options
        recorded = {k: meta[k] for k in LEGACY_RECORD if k in meta}
        if warn:
            print("warning: this run's checkpoint predates the record of its options: it keeps the preset, data set, "
                  "digit, batch size, learning rate and beta2 the checkpoint names; every other option (seed, "
                  "training and test limits, schedule, warm-up, ...) is this command's, or its default.",
                  file=sys.stderr)
    values, changed = resolve(given, recorded)
    config, asked = model.config, dict(args.overrides)
    try:
        wanted = FlowConfig.from_dict({**config.__dict__, **asked})
    except (ValueError, TypeError) as e:
        raise RunError(f"the model cannot be built: {e}") from e
    changed += [(f"--set {k}", getattr(config, k), getattr(wanted, k)) for k in asked
                if getattr(wanted, k) != getattr(config, k)]
    if changed:
        sets = {**architecture_changes(config, recorded.get("preset", meta["preset"])), **asked}
        raise RunError(kept_refusal(changed, new_run_args(recorded, given) + [
            part for k, v in sets.items() for part in set_flag(k, v)]))
    return values


def architecture_changes(config: FlowConfig, preset: str) -> dict[str, object]:
    """The fields in which `config` differs from its preset's: the --set a run was built with."""
    base = PRESETS[preset].config.__dict__ if preset in PRESETS else {}
    return {k: v for k, v in config.__dict__.items() if k in base and base[k] != v}


def train(args: argparse.Namespace, run: RunFolder, stopper: Stopper, device: torch.device, rank: int,
          world: int) -> int:
    if args.resume:  # the checkpoint fixes the architecture and the kept options (flow.options)
        if args.run_dir is None:
            raise RunError("--resume needs --run-dir, the folder of the run to continue")
        try:
            model = load_checkpoint(run.checkpoint, device)
        except CheckpointError as e:
            raise RunError(f"cannot resume: {e}. Start a new run instead.") from e
        vars(args).update(resume_options(args, model, run.writer))
        torch.manual_seed(args.seed)
        meta = model.metadata
        config, start_epoch, step = model.config, meta["epoch"], meta["step"]
        preset, data_name, elapsed_before = meta["preset"], meta["data"], meta.get("train_seconds", 0.0)
        if start_epoch >= args.epochs:
            raise RunError(f"the run has already trained {start_epoch} epochs; pass --epochs above that")
    else:
        vars(args).update(resolve({o.name: getattr(args, o.name) for o in OPTIONS}, None)[0])
        torch.manual_seed(args.seed)
        preset = args.preset
        data_name = args.data or default_data(preset)
        if not fits_data(preset, data_name):
            raise RunError(f"preset {preset} does not fit data set {data_name}")
        try:
            config = build_model(preset, **dict(args.overrides)).config
        except ValueError as e:
            raise RunError(f"the model cannot be built: {e}") from e
        model = build_model(config).to(device)
        start_epoch, step, elapsed_before = 0, 0, 0.0
    tuned = PRESETS.get(preset)  # the preset's settings are the defaults
    batch_size = args.batch_size or tuned.batch_size
    lr = args.lr if args.lr is not None else tuned.lr
    beta2 = args.beta2 or tuned.beta2
    previous = model.metadata if args.resume else {}

    digit = args.digit
    train_x, test_x = load_data(data_name, args.limit_train, args.limit_test, digit)
    check_fit(config, data_name, train_x)
    per_process = math.ceil(len(train_x) / world)  # DistributedSampler pads every rank's share to this
    if problem := batch_problem(batch_size, per_process):
        raise RunError(problem if world == 1 else f"per process (each of {world} trains on {per_process}): {problem}")
    if not args.resume:  # ActNorm's data-dependent initialisation, before DDP copies rank 0's weights
        model.train()
        try:
            with torch.no_grad():
                model.bits_per_dim(train_x[:512].to(device)) if config.preprocess else model(train_x[:512].to(device))
        except (ValueError, TypeError) as e:  # the model's own check of its input
            raise RunError(f"the training examples do not suit the model: {e}") from e
        if problem := model_problem(model.state_dict().values()):
            raise RunError(f"ActNorm's initialisation from the first training examples left {problem}: "
                           "the data contains NaN or infinity.")

    settings = {"betas": (0.9, beta2), "weight_decay": args.weight_decay}
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=True, **settings)
    if args.resume and run.state.exists():
        try:
            state = torch.load(run.state, map_location=device, weights_only=True)
            if state["epoch"] != start_epoch or state["step"] != step:
                raise ValueError("it is from another epoch")
            optimizer.load_state_dict(state["optimizer"])
            for group in optimizer.param_groups:  # the saved groups hold the settings they were saved with
                group.update(settings)
        except (OSError, RuntimeError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as e:
            print(f"warning: the optimizer state in {run.state} is not usable ({e}); starting it afresh",
                  file=sys.stderr)
    net = DistributedDataParallel(model) if world > 1 else model

    dataset = TensorDataset(train_x, torch.arange(len(train_x)))
    g = torch.Generator()
    sampler = DistributedSampler(dataset, seed=args.seed) if world > 1 else RandomSampler(dataset, generator=g)
    loader = DataLoader(dataset, batch_size=None, sampler=BatchSampler(sampler, batch_size, drop_last=True))
    steps_per_epoch = len(loader)
    total_steps = min(args.max_steps or 10**12, steps_per_epoch * args.epochs)
    snapshot_every = default_snapshot_every(args.snapshot_every, model, total_steps)
    with run.writing():
        sample_z = run_latents(run.path, model, run.writer)  # every sample picture decodes these latents
    probe = train_x[:64].to(device)  # a fixed batch for the per-block statistics in the metrics
    probe = model.dequantize(probe, args.seed) if config.preprocess else probe

    if dd.all_sum([float(stopper.requested)], device)[0]:  # asked to stop while it was starting
        run.status("stopped", f"stopped before step {step + 1}; {run.kept()}", epoch=start_epoch, step=step,
                   epochs=args.epochs, test_bpd=previous.get("test_bpd"), world_size=world)
        return 0
    run.status("running", epoch=start_epoch, step=step, epochs=args.epochs, world_size=world)
    # every option it trains with, for --resume to keep (flow.options); --set is in the config
    options = {**{o.name: getattr(args, o.name) for o in OPTIONS}, "preset": preset, "data": data_name,
               "batch_size": batch_size, "lr": lr, "beta2": beta2}
    meta = {"preset": preset, "data": data_name, "digit": digit, "epochs_planned": args.epochs,
            "batch_size": batch_size, "lr": lr, "beta2": beta2, "world_size": world, "device": str(device),
            "precision": "bf16 autocast" if args.bf16 else "float32",
            "hardware": dd.describe(device), "options": options}
    start = time.time()

    def elapsed() -> float:
        return elapsed_before + time.time() - start

    def checkpoint(epoch: int, test_bpd: float | None) -> None:
        run.save(model, optimizer, {**meta, "epoch": epoch, "step": step, "test_bpd": test_bpd,
                                    "train_seconds": round(elapsed(), 1)})

    def diverged(what: str, epoch: int) -> int:
        if step == first_step:  # no update in this process yet: the learning rate played no part
            raise RunError(f"{what} before any update, so the learning rate is not the cause: the training data "
                           "contains NaN or infinity, or values the model cannot take.")
        msg = f"training diverged at step {step} ({what}); {run.kept()}. Try a lower learning rate than {lr:g}."
        print(f"error: {msg}", file=sys.stderr)
        run.status("diverged", msg, epoch=epoch, step=step)
        return EXIT_DIVERGED

    first_step = step
    if snapshot_every and step == 0:  # the starting point of the replay: the data-initialised identity
        run.snapshot(model, sample_z, step, 0.0)
    last_test_bpd, ended, completed = None, "finished", start_epoch
    clock = elapsed_before  # training seconds as all ranks agree on them (their mean, updated every step)
    for epoch in range(start_epoch, args.epochs):
        # Each epoch's order depends only on (seed, epoch), so a run stopped mid-epoch resumes exactly
        # where it stopped by skipping the batches it had already trained on.
        sampler.set_epoch(epoch) if world > 1 else g.manual_seed(args.seed + epoch)
        batches = max(0, step - epoch * steps_per_epoch)
        net.train()
        bar = tqdm(itertools.islice(loader, batches, None), desc=f"epoch {epoch + 1}/{args.epochs}",
                   total=steps_per_epoch, initial=batches, disable=rank != 0, dynamic_ncols=True)
        window_bpd, window_n, window_t = 0.0, 0, time.time()
        epoch_images, epoch_t = 0, time.time()
        for batch, indices in bar:
            if args.index_log:
                with open(run.path / f"indices.rank{rank}.txt", "a") as f:
                    f.write(" ".join(map(str, indices.tolist())) + "\n")
            batch = batch.to(device, non_blocking=True)
            progress = max(step / total_steps, clock / args.time_limit if args.time_limit else 0.0)
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_factor(progress, step, args.warmup, args.schedule)
            x = dequantize(batch, "uniform") if config.preprocess else batch
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                z, logdet = net(x)
            loss = model.bits_from_log_prob(prior_log_prob(z.float()) + logdet.float()).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            loss_sum, n_sum, stop_votes, clock = dd.all_sum(
                [loss.item() * len(batch), len(batch), float(stopper.requested), elapsed()], device)
            clock /= world  # one clock for every rank: the same learning rate and the same time to stop
            if not math.isfinite(loss_sum):
                return diverged(f"the loss became {loss_sum / n_sum}", epoch)
            optimizer.step()
            step, batches = step + 1, batches + 1
            window_bpd, window_n, epoch_images = window_bpd + loss_sum, window_n + int(n_sum), epoch_images + int(n_sum)
            bar.set_postfix(bpd=f"{loss_sum / n_sum:.3f}")
            if snapshot_every and step % snapshot_every == 0:
                run.snapshot(model, sample_z, step, epoch + batches / steps_per_epoch)
            if step % args.log_every == 0:
                now = time.time()
                run.log({"kind": "step", "step": step, "epoch": epoch + batches / steps_per_epoch,
                         "train_bpd": window_bpd / window_n, "test_bpd": None,
                         "images_per_s": window_n / (now - window_t), "wall_time": round(elapsed(), 2),
                         "blocks": block_stats(model, probe) if run.writer else None})
                run.status("running", epoch=epoch, step=step, epochs=args.epochs, world_size=world)  # heartbeat
                window_bpd, window_n, window_t = 0.0, 0, now
            if stop_votes:
                ended = "stopped"
            if stop_votes or step >= total_steps or (args.time_limit and clock >= args.time_limit):
                break
        bar.close()
        train_time = time.time() - epoch_t
        total, n, stop_votes = dd.all_sum(
            [*evaluate_bpd(model, test_x, seed=args.seed, rank=rank, world=world), float(stopper.requested)], device)
        last_test_bpd = total / n
        if problem := model_problem(model.state_dict().values(), last_test_bpd):  # never saved as a good checkpoint
            return diverged(f"the model's {problem}", epoch)
        if stop_votes and step < total_steps:
            ended = "stopped"
        run.log({"kind": "epoch", "step": step, "epoch": epoch + batches / steps_per_epoch, "train_bpd": None,
                 "test_bpd": last_test_bpd, "images_per_s": epoch_images / train_time, "wall_time": round(elapsed(), 2)})
        run.save_samples(model, sample_z, f"epoch_{epoch + 1:03d}", step, epoch + batches / steps_per_epoch)
        completed = epoch + 1 if batches == steps_per_epoch else epoch
        checkpoint(completed, last_test_bpd)
        dd.barrier()
        if rank == 0:
            tqdm.write(json.dumps({"epoch": epoch + 1, "step": step, "test_bpd": round(last_test_bpd, 4)}))
        if batches < steps_per_epoch or step >= total_steps or ended == "stopped":
            break
    run.status(ended, f"{ended} after {step} steps; test bits/dim {last_test_bpd:.4f}", epoch=completed,
               epochs=args.epochs, step=step, test_bpd=last_test_bpd, world_size=world)
    return 0


if __name__ == "__main__":
    sys.exit(main())
