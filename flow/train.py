"""Train a Real NVP: python -m flow.train --preset P --data D --epochs N [--resume ...].

D is a built-in data set or a data file (.npy, .npz, .pt: uint8 images (N, H, W) or (N, C, H, W), float points
(N, D)); the model's shape comes from the data. Writes into the run folder: checkpoint.safetensors (each epoch,
atomically), train_state.pt (optimizer, for --resume), metrics.jsonl, samples/epoch_NNN.png (every epoch's samples
decoded from the same latents, samples/latents.safetensors), samples.png, status.json, and with --snapshot-every K
(default for 2-D models) snapshots/step_NNNNNNN.safetensors every K steps (`flow.learning`).
Works the same under `torchrun --nproc_per_node=N -m flow.train ...` (DDP; rank 0 writes).
In Python, `fit(model, data, ...)` trains with the same loop, without a run folder.
"""
from __future__ import annotations

# torch and the modules that import it are imported after the command line is parsed (inside the functions):
# `--help` and a refused option answer at once
import argparse
import itertools
import json
import math
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from flow.config import IMAGE_PRESETS, PRESETS, FlowConfig
from flow.data import (TOY_SETS, MNISTUnavailable, data_label, default_data, example_shape, fits_data, is_data_file,
                       load_dataset, load_labels, read_data)
from flow.datafile import DataFileError, sha256_of
from flow.files import atomic_write
from flow.options import (LEGACY_RECORD, OPTION, OPTIONS, add_arguments, kept_refusal, new_run_args,
                          resolve, set_flag)
from flow.run_protocol import EXIT_CRASHED, EXIT_DIVERGED, EXIT_REFUSED, EXIT_WRITE_FAILED, batch_problem

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

    from flow.model import Flow


class Stopper:
    """SIGTERM/SIGINT ask for a stop; training finishes its current step, saves and ends. A context manager: on
    exit (an exception too) the handlers it found are back. Outside the main thread, where Python cannot install
    signal handlers, it installs none (the training then stops only when done)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._request)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():  # None: a handler not installed from Python
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _request(self, signum: int, frame: object) -> None:
        self.requested = True


class RunError(Exception):
    """Settings, data or a device a run cannot work with: the message says why and what to do instead."""


class Diverged(RuntimeError):
    """Training diverged: a loss that is not finite, or weights or a test bits/dim that are not (`fit` raises it;
    the command line ends the run as diverged). `before_update`: it happened before any optimizer step, so the
    data, not the learning rate, is the cause."""

    def __init__(self, what: str, step: int, lr: float, before_update: bool, epoch: int = 0):
        self.what, self.step, self.before_update, self.epoch = what, step, before_update, epoch
        super().__init__(f"{what} before any update, so the learning rate is not the cause: the training data "
                         "contains NaN or infinity, or values the model cannot take." if before_update else
                         f"training diverged at step {step} ({what}). Try a lower learning rate than {lr:g}.")


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
        import torch

        from flow.checkpoint import save_checkpoint

        if not self.writer:
            return
        state = {"optimizer": optimizer.state_dict(), "epoch": meta["epoch"], "step": meta["step"]}
        with self.writing():
            save_checkpoint(model, self.checkpoint, **meta)
            atomic_write(self.state, lambda tmp: torch.save(state, tmp))

    def save_samples(self, model, z: torch.Tensor, name: str, step: int, epoch: float) -> None:
        """The samples decoded from the run's fixed latents z as samples/<name>.png and samples.png; the
        PNG's text says the step and the (fractional) epoch it shows. Without Pillow: nothing (the run said so
        once when it started)."""
        from flow import viz

        if self.writer and viz.PILLOW:
            img, text = viz.samples_picture(model, z), {"step": str(step), "epoch": f"{epoch:.4f}"}
            with self.writing():
                for path in (self.path / "samples" / f"{name}.png", self.path / "samples.png"):
                    atomic_write(path, lambda tmp: viz.write_png(img, tmp, text))

    def snapshot(self, model, z: torch.Tensor, step: int, epoch: float) -> None:
        """Weights after `step`, and for an image model its samples then (samples/step_NNNNNNN.png)."""
        from flow.learning import save_snapshot

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
    p.add_argument("--conditional", action="store_true",
                   help="a class-conditional flow p(x | y) on the data's labels (MNIST's digits, a data file's y): "
                        "num_classes is the labels' count (kept by --resume: it is in the checkpoint's config)")
    p.add_argument("--init", type=Path, default=None, metavar="CHECKPOINT",
                   help="start from this checkpoint's weights (a model of the same architecture; an unconditional one "
                        "for a --conditional run, whose class priors then start at the identity)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast for the s/t networks' convolutions (a CUDA GPU, or a CPU with AVX-512 BF16 "
                        "or AMX); the couplings, log-dets and the loss stay float32")
    p.add_argument("--index-log", action="store_true",
                   help="append the example indices each process trains on to indices.rankN.txt (for checks)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the default folder's name: the preset, else the data file's name (its preset is known once the file is read)
    name = args.preset or (Path(args.data).stem if args.data and is_data_file(args.data) else
                           "toy-2d" if args.data in TOY_SETS else OPTION["preset"].default)
    run_dir = args.run_dir or Path("checkpoints/runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunFolder(run_dir, writer=int(os.environ.get("RANK", 0)) == 0)  # torchrun's rank, before setup
    with Stopper() as stopper:
        # app.jobs starts the trainer with SIGTERM blocked: a stop sent before this handler existed
        # (while Python started) has waited for it, and arrives now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        from flow import distributed as dd  # torch, once the command line is known to be good

        try:
            device = dd.pick_device(args.device)
            if args.bf16 and (problem := dd.bf16_problem(device)):
                raise RunError(problem)
            rank, world = dd.setup(device)
            return train(args, run, stopper, device, rank, world)
        except (RunError, dd.DeviceError) as e:
            return run.fail(str(e), EXIT_REFUSED)
        except WriteError as e:  # no traceback: say what happened and what is left
            return run.fail(f"{e}; {run.kept()}. Free some disk space (or make the folder writable), then resume the "
                            "run.", EXIT_WRITE_FAILED)
        except Exception as e:  # a bug: its traceback for the report, and never a run left "running"
            traceback.print_exc()
            return run.fail(f"the trainer crashed ({type(e).__name__}: {e}); {run.kept()}. This is a bug: please "
                            "report it with the traceback above.", EXIT_CRASHED)
        finally:
            dd.teardown()


def data_spec(text: str) -> str:
    """A data spec as a run records it: a data file by its absolute path, a built-in data set by its name."""
    return str(Path(text).expanduser().absolute()) if is_data_file(text) else text


def load_data(spec: str, limit_train: int | None, limit_test: int | None,
              digit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, test) examples, of one MNIST class if `digit`; RunError if the data cannot be read."""
    try:
        return (load_dataset(spec, "train", digit=digit)[:limit_train],
                load_dataset(spec, "test", digit=digit)[:limit_test])
    except (MNISTUnavailable, ValueError) as e:  # DataFileError is a ValueError
        raise RunError(str(e)) from e


def holds_images(spec: str) -> bool:
    """Whether a data set's examples are images (C, H, W) rather than points; RunError for an unusable file."""
    try:
        return len(example_shape(spec)) == 3
    except DataFileError as e:
        raise RunError(str(e)) from e


def preset_for(spec: str) -> str:
    """The preset a run on this data uses unless told: realnvp for images, toy-2d for points."""
    return OPTION["preset"].default if holds_images(spec) else "toy-2d"


def unfit_data(preset: str, spec: str) -> str:
    """The message refusing a preset that does not model this kind of data."""
    if not is_data_file(spec):
        return f"preset {preset} does not fit data set {spec}"
    images = holds_images(spec)
    return (f"preset {preset} does not fit {data_label(spec)}: it models {'points' if images else 'images'}, and the "
            f"file holds {'images' if images else 'points'} of shape {example_shape(spec)}; use "
            + (f"an image preset ({', '.join(IMAGE_PRESETS)})" if images else "--preset toy-2d"))


def squeeze_problem(config: FlowConfig, label: str) -> str | None:
    """Why the multi-scale flow cannot squeeze images of this config's size (each squeeze halves the height and
    width), naming the sizes that work and the --set that makes this size work; None where it can."""
    if config.coupling != "resnet":
        return None
    _, h, w = config.shape
    squeezes = int(config.squeeze_first) + config.n_scales - 1
    factor = 2 ** squeezes
    if h % factor == 0 and w % factor == 0:
        return None
    fits = next(k for k in range(64) if h % 2 ** (k + 1) or w % 2 ** (k + 1))  # the squeezes this size allows
    if config.squeeze_first:
        helps = f"--set n_scales={fits}" if fits else "--set squeeze_first=false --set n_scales=1"
    else:
        helps = f"--set n_scales={fits + 1}"
    sizes = sorted({max(factor, h // factor * factor), h // factor * factor + factor})
    return (f"{label}'s images are {h}x{w} pixels, but this model squeezes them {squeezes} time(s), so their height "
            f"and width must be multiples of {factor} (such as {' or '.join(map(str, sizes))}): crop or pad the "
            f"images, or train a model with fewer squeezes: {helps}")


def class_count(spec: str, digit: int | None) -> int:
    """The number of classes a --conditional run on this data models: the largest label plus one; RunError for
    data without labels, or one class."""
    labels = load_labels(spec, "train")
    if labels is None:
        raise RunError(f"--conditional trains on the data's classes, and {data_label(spec)} has no labels: use MNIST, "
                       "or a data file with a y array (.npz: x and y; .pt: a dict with x and y)")
    if digit is not None:
        raise RunError("--conditional models every class, and --digit keeps one: leave one of them out")
    if len(labels) == 0 or labels.min() < 0 or labels.max() < 1:
        raise RunError(f"{data_label(spec)}'s labels must be classes 0, 1, 2, ... (whole numbers of at least 0, two "
                       "classes or more)")
    return int(labels.max()) + 1


def load_classes(config: FlowConfig, spec: str, limit_train: int | None, limit_test: int | None,
                 digit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, test) classes of a conditional run's examples, as `load_data` cuts them; RunError if the data has
    no labels of each split or classes beyond the model's."""
    train_y, test_y = load_labels(spec, "train"), load_labels(spec, "test")
    if train_y is None or test_y is None or digit is not None:
        raise RunError(f"this model is class-conditional, and {data_label(spec)}"
                       + (" restricted to one digit" if digit is not None else " has no labels for both splits")
                       + ": train it on labelled data (MNIST, or a file with y)")
    train_y, test_y = train_y[:limit_train].long(), test_y[:limit_test].long()
    if max(int(train_y.max()), int(test_y.max())) >= config.num_classes:
        raise RunError(f"{data_label(spec)} has classes up to {max(int(train_y.max()), int(test_y.max()))}, but the "
                       f"model has {config.num_classes}: start a new run with --conditional")
    return train_y, test_y


def warm_start(model: Flow, path: Path) -> None:
    """Loads a checkpoint's weights into a new run's model (`--init`): the same architecture, except that a
    conditional model may start from an unconditional one (its class priors stay at the identity). RunError if
    the checkpoint cannot be read or does not fit."""
    from flow.checkpoint import CheckpointError, load_checkpoint

    try:
        source = load_checkpoint(path)
    except CheckpointError as e:
        raise RunError(f"cannot start from --init: {e}") from e
    mine = {**model.config.__dict__, "num_classes": 0}
    theirs = {**source.config.__dict__, "num_classes": 0}
    if mine != theirs or (source.num_classes and source.num_classes != model.num_classes):
        differ = sorted(k for k in mine if mine[k] != theirs[k]) or ["num_classes"]
        raise RunError(f"cannot start from --init {path}: its architecture differs from this run's in "
                       f"{', '.join(differ)}; pass the same --preset and --set as the model it holds")
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    if unexpected or any(not k.startswith("prior.") for k in missing):
        raise RunError(f"cannot start from --init {path}: its weights do not fit ({(unexpected + missing)[:3]})")


def check_fit(config: FlowConfig, data_name: str, train_x: torch.Tensor) -> None:
    """RunError unless the model takes the data set's examples: shape, and 8-bit pixels for the logit."""
    import torch

    label = data_label(data_name)
    if tuple(config.shape) != tuple(train_x.shape[1:]):
        raise RunError(f"the model takes examples of shape {tuple(config.shape)}, but {label}'s have shape "
                       f"{tuple(train_x.shape[1:])}: do not --set shape.")
    if config.preprocess != (train_x.dtype == torch.uint8):
        raise RunError(f"preprocess={config.preprocess} does not suit {label}: it must be true for 8-bit pixels and "
                       "false for points, so do not --set preprocess.")


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
    # not the shape: the data gives it (a data file's examples), and no --set may change it
    return {k: v for k, v in config.__dict__.items() if k in base and base[k] != v and k != "shape"}


def _log_prob_module(model: Flow) -> torch.nn.Module:
    """The model's own `log_prob` as a module's forward, for DistributedDataParallel to wrap (DDP calls forward);
    a subclass's base distribution (`prior_log_prob`) is thereby the one trained. With classes y (a conditional
    model), forward(x, y) gives (log p(x | y), log p(y | x)) from one pass (`Flow.class_log_probs`)."""
    import torch

    class LogProb(torch.nn.Module):
        def __init__(self, flow: Flow):
            super().__init__()
            self.flow = flow

        def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
            if y is None:
                return self.flow.log_prob(x)
            class_log_probs = self.flow.class_log_probs(x).float()
            return (class_log_probs.gather(1, y[:, None])[:, 0],
                    torch.log_softmax(class_log_probs, 1).gather(1, y[:, None])[:, 0])

    return LogProb(model)


def _tensor_batches(x: torch.Tensor, batch_size: int, seed: int, world: int = 1,
                    index_log: Callable[[torch.Tensor], None] | None = None,
                    labels: torch.Tensor | None = None) -> tuple[Callable[[int, int], Iterator], int]:
    """(epoch_batches(epoch, skip) -> the epoch's full batches (x, their `labels`, None without) after the first
    `skip`, the number of batches
    of an epoch). Each epoch's order depends only on (seed, epoch), so a run stopped mid-epoch resumes exactly
    where it stopped by skipping the batches it had already trained on. Under DDP a DistributedSampler gives each
    process its share. `index_log(indices)` sees the example indices of each batch."""
    import torch
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    dataset = TensorDataset(x, torch.arange(len(x)))
    g = torch.Generator()
    sampler = DistributedSampler(dataset, seed=seed) if world > 1 else RandomSampler(dataset, generator=g)
    loader = DataLoader(dataset, batch_size=None, sampler=BatchSampler(sampler, batch_size, drop_last=True))

    def epoch_batches(epoch: int, skip: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        sampler.set_epoch(epoch) if world > 1 else g.manual_seed(seed + epoch)
        for batch, indices in itertools.islice(loader, skip, None):
            if index_log:
                index_log(indices)
            yield batch, None if labels is None else labels[indices]

    return epoch_batches, len(loader)


class Progress:
    """Where a training loop is, for the hooks the command line adds (`_train_loop`)."""

    def __init__(self, step: int, epoch: int, steps_per_epoch: int | None, seconds: float):
        self.step, self.epoch, self.batches, self.steps_per_epoch = step, epoch, 0, steps_per_epoch
        self.seconds = seconds  # training seconds, a resumed run's earlier ones included
        self.ended, self.completed, self.test_bpd, self.test_accuracy = "finished", epoch, None, None

    @property
    def epochs(self) -> float:
        """Epochs trained, with the done fraction of the current one."""
        return self.epoch + (self.batches / self.steps_per_epoch if self.steps_per_epoch else 0.0)


def _train_loop(model: Flow, optimizer: torch.optim.Optimizer, epoch_batches: Callable[[int, int], Iterator],
                test: torch.Tensor | None, stopper: Stopper, *, epochs: int, lr: float, steps_per_epoch: int | None,
                seed: int, schedule: str, warmup: int, grad_clip: float, bf16: bool, max_steps: int | None,
                time_limit: float | None, device: torch.device, net: torch.nn.Module | None = None,
                test_labels: torch.Tensor | None = None, class_weight: float = 0.0,
                start_epoch: int = 0, step: int = 0, elapsed_before: float = 0.0, rank: int = 0, world: int = 1,
                progress: bool = True, on_step: Callable[[Progress, float, float], None] | None = None,
                on_epoch: Callable[[Progress, float, float], None] | None = None) -> tuple[list[dict], Progress]:
    """The one training loop (`fit` and the command line): from epoch `start_epoch` and step `step`, each step's
    loss the mean bits/dim of the model's own `log_prob` (`net`: it as a module, possibly DDP-wrapped) on a
    dequantized batch (images: fresh uniform noise from torch's generator), the learning rate warmed up and
    scheduled, gradients clipped, losses summed across processes; after each epoch the test bits/dim (`test`:
    None for none). Stops after `epochs`, `max_steps`, `time_limit` seconds or a stop request (`stopper`, any
    process's). `on_step(at, loss_sum, n)` after each step (sums over processes), `on_epoch(at, images, seconds)`
    after each epoch. Returns (history: one dict per epoch, with epoch, step, train_bpd, test_bpd and seconds;
    where it ended). Raises Diverged for a loss, weights or test bits/dim that are not finite (or above
    flow.checkpoint.MAX_TEST_BPD).

    Batches come as (examples, classes or None). With classes (a conditional model) the loss is the bits/dim of
    log p(x | y) plus `class_weight` times the cross-entropy -log p(y | x) in the same units (nats per example
    over D log 2): 0 trains the density alone. The test bits/dim are then the marginal's, and with `test_labels`
    the history also holds test_accuracy (`Flow.classify`)."""
    import torch
    from tqdm import tqdm

    from flow import distributed as dd
    from flow.checkpoint import model_problem
    from flow.evaluate import evaluate_bpd, evaluate_classes
    from flow.layers import dequantize

    net = net or _log_prob_module(model)
    per_run = steps_per_epoch * epochs if steps_per_epoch else None
    total_steps = min(max_steps or 10**12, per_run or 10**12)
    at, history, first_step, start = Progress(step, start_epoch, steps_per_epoch, elapsed_before), [], step, time.time()

    def elapsed() -> float:
        return elapsed_before + time.time() - start

    clock = elapsed_before  # training seconds as all ranks agree on them (their mean, updated every step)
    for epoch in range(start_epoch, epochs):
        at.epoch, at.batches = epoch, max(0, at.step - epoch * steps_per_epoch) if steps_per_epoch else 0
        net.train()
        bar = tqdm(epoch_batches(epoch, at.batches), desc=f"epoch {epoch + 1}/{epochs}", total=steps_per_epoch,
                   initial=at.batches, disable=rank != 0 or not progress, dynamic_ncols=True)
        epoch_loss, epoch_images, epoch_t, broke = 0.0, 0, time.time(), False
        for batch, y in bar:
            batch = batch.to(device, non_blocking=True)
            # how far the schedule has come: by steps (by epochs for a loader of unknown length), or by time
            done = at.step / total_steps if per_run or max_steps else epoch / epochs
            done = max(done, clock / time_limit if time_limit else 0.0)
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_factor(done, at.step, warmup, schedule)
            x = dequantize(batch, "uniform") if model.config.preprocess else batch
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):  # the s/t nets' convolutions
                log_prob = net(x) if y is None else net(x, y.to(device))
            if y is None:
                loss = objective = model.bits_from_log_prob(log_prob.float()).mean()
            else:  # the density's bits/dim (what is reported) and the weighted cross-entropy in its units
                loss = model.bits_from_log_prob(log_prob[0]).mean()
                objective = loss - class_weight * log_prob[1].mean() / (model.dim * math.log(2))
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            loss_sum, n_sum, stop_votes, clock = dd.all_sum(
                [loss.item() * len(batch), len(batch), float(stopper.requested), elapsed()], device)
            clock /= world  # one clock for every rank: the same learning rate and the same time to stop
            if not math.isfinite(loss_sum):
                raise Diverged(f"the loss became {loss_sum / n_sum}", at.step, lr, at.step == first_step, epoch)
            optimizer.step()
            at.step, at.batches, at.seconds = at.step + 1, at.batches + 1, elapsed()
            epoch_loss, epoch_images = epoch_loss + loss_sum, epoch_images + int(n_sum)
            bar.set_postfix(bpd=f"{loss_sum / n_sum:.3f}")
            if on_step:
                on_step(at, loss_sum, n_sum)
            if stop_votes:
                at.ended = "stopped"
            if stop_votes or at.step >= total_steps or (time_limit and clock >= time_limit):
                broke = True
                break
        bar.close()
        train_time = time.time() - epoch_t
        if test is None:
            total, right, n = 0.0, 0.0, 0
        elif test_labels is not None:
            total, right, n = evaluate_classes(model, test, test_labels, seed=seed, rank=rank, world=world)
        else:
            (total, n), right = evaluate_bpd(model, test, seed=seed, rank=rank, world=world), 0.0
        total, right, n, stop_votes = dd.all_sum([total, right, n, float(stopper.requested)], device)
        at.test_bpd = total / n if n else None
        at.test_accuracy = right / n if n and test_labels is not None else None
        if problem := model_problem(model.state_dict().values(), at.test_bpd):  # never saved as a good checkpoint
            raise Diverged(f"the model's {problem}", at.step, lr, at.step == first_step, epoch)
        if stop_votes and at.step < total_steps:
            at.ended = "stopped"
        full = at.batches == steps_per_epoch if steps_per_epoch else not broke
        at.completed = epoch + 1 if full else epoch
        history.append({"epoch": at.completed if full else round(at.epochs, 4), "step": at.step,
                        "train_bpd": epoch_loss / epoch_images if epoch_images else None, "test_bpd": at.test_bpd,
                        **({} if at.test_accuracy is None else {"test_accuracy": at.test_accuracy}),
                        "seconds": round(train_time, 3)})
        if on_epoch:
            on_epoch(at, epoch_images, train_time)
        if not full or at.step >= total_steps or at.ended == "stopped":
            break
    return history, at


def _examples(model: Flow, x: torch.Tensor, what: str) -> torch.Tensor:
    """`fit`'s tensor of examples checked against the model: its shape, and 8-bit pixels (any integer dtype) for an
    image model, floats (as float32) for points."""
    import torch

    shape = tuple(model.config.shape)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a tensor (or, for the training data, a DataLoader), not {type(x).__name__}")
    if tuple(x.shape[1:]) != shape or len(x) == 0:
        raise ValueError(f"{what} holds examples of shape {tuple(x.shape[1:])} ({len(x)} of them), but the model "
                         f"takes examples of shape {shape}: build it with FlowConfig(shape={tuple(x.shape[1:])}), or "
                         "reshape the data")
    if model.config.preprocess:
        if x.is_floating_point() or x.dtype == torch.bool:
            raise TypeError(f"{what} is {x.dtype}, but this image model takes 8-bit pixels (uint8, 0..255): pass "
                            "(x * 255).round().to(torch.uint8) for images in [0, 1]")
        if x.numel() and (x.min() < 0 or x.max() > 255):
            raise ValueError(f"{what} has pixel values from {x.min().item()} to {x.max().item()}: 8-bit images take "
                             "0..255")
        return x.to(torch.uint8)
    if not x.is_floating_point():
        raise TypeError(f"{what} is {x.dtype}, but this model takes points as floats: pass x.float()")
    x = x.float()
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or infinity: remove those examples")
    return x


def _classes(model: Flow, y: object, n: int, what: str) -> torch.Tensor:
    """`fit`'s class labels checked against the model: n integers in 0..K-1, as int64 on the CPU."""
    import torch

    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dtype == torch.bool or y.shape != (n,):
        got = f"{y.dtype} of shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise TypeError(f"{what} must be an integer tensor of shape ({n},), one class per example; got {got}")
    if n and (y.min() < 0 or y.max() >= model.num_classes):
        raise ValueError(f"{what} holds classes {y.min().item()}..{y.max().item()}, but the model's run from 0 to "
                         f"{model.num_classes - 1}: build it with FlowConfig(num_classes={y.max().item() + 1})")
    return y.long().cpu()


def fit(model: Flow, data: torch.Tensor | DataLoader, *, test: torch.Tensor | None = None, epochs: int, lr: float,
        batch_size: int | None = None, labels: torch.Tensor | None = None, test_labels: torch.Tensor | None = None,
        class_weight: float = 0.0, seed: int = 0, beta2: float = 0.999, weight_decay: float = 0.0,
        grad_clip: float = 100.0, schedule: str = "cosine", warmup: int = 200, max_steps: int | None = None,
        time_limit: float | None = None, bf16: bool = False, progress: bool = True) -> list[dict]:
    """Train `model` (a `Flow`, or a subclass: its own `log_prob` and base distribution are trained) on `data` with
    the loop `python -m flow.train` uses, and return the history: one dict per epoch with epoch, step, train_bpd
    (the epoch's mean training bits/dim), test_bpd (on `test`, None without) and seconds (its training time).

    data: a tensor of examples of the model's shape, uint8 images (N, C, H, W) (any integer dtype, 0..255) or float
    points (N, D), drawn in full batches of `batch_size` in an order fixed by `seed` and the epoch; or a DataLoader
    whose batches are such tensors (or tuples whose first item is one; `batch_size` is then its own). test: a tensor
    like data, scored after each epoch with `Flow.bits_per_dim` (noise from `seed`). The learning rate `lr` warms
    up over `warmup` steps, then follows `schedule` (cosine, linear, constant) to the end (`epochs`, `max_steps` or
    `time_limit` seconds); Adam with `beta2` and `weight_decay`; gradients clipped to norm `grad_clip` (0: off).
    `bf16`: autocast for the s/t nets (a GPU or a CPU with native bf16). Images are dequantized with fresh noise
    from torch's global generator (seed it with torch.manual_seed). A model whose ActNorm has not started yet sets
    it from the first training batch. Trains on the model's device; a tqdm bar unless `progress` is false.

    A class-conditional model (`FlowConfig.num_classes`) trains on p(x | y): `labels` (N,) gives each example's
    class (a DataLoader's batches are then (x, y) pairs), `class_weight` adds that many times the cross-entropy of
    `Flow.classify` to the loss (in the loss's units, nats per example; 0: the density alone), and with
    `test_labels` each epoch's dict also holds test_accuracy. test_bpd is then the marginal's.

    Ctrl-C (SIGINT) or SIGTERM stops after the current step and returns the history so far; the signal handlers
    are those found before, afterwards. Raises TypeError or ValueError for data or settings that cannot train
    (wrong shape or dtype, a batch larger than the data, ...), and `Diverged` when the loss or the weights stop
    being finite."""
    import torch
    from torch.utils.data import DataLoader

    for name, value in (("epochs", epochs), ("lr", lr), ("seed", seed), ("beta2", beta2), ("weight_decay",
                        weight_decay), ("grad_clip", grad_clip), ("schedule", schedule), ("warmup", warmup),
                        ("max_steps", max_steps), ("time_limit", time_limit)):
        if problem := OPTION[name].problem(value):
            raise ValueError(problem)
    if problem := OPTION["class_weight"].problem(class_weight):
        raise ValueError(problem)
    device = next(model.parameters()).device
    conditional = bool(model.num_classes)
    if isinstance(data, DataLoader):
        loader = data
        try:
            steps_per_epoch: int | None = len(loader)
        except TypeError:  # an iterable dataset: its length is unknown
            steps_per_epoch = None

        def epoch_batches(epoch: int, skip: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
            for item in loader:
                pair = isinstance(item, (tuple, list))
                if conditional and not (pair and len(item) >= 2):
                    raise ValueError("a conditional model trains on (x, y) batches: the DataLoader must give each "
                                     "batch's classes too")
                x = _examples(model, item[0] if pair else item, "a DataLoader's batch")
                yield x, _classes(model, item[1], len(x), "a DataLoader batch's y") if conditional else None
    else:
        x = _examples(model, data, "data")
        if conditional != (labels is not None):
            raise ValueError("a conditional model trains with labels=: each example's class" if conditional else
                             "labels are for a conditional model (FlowConfig(num_classes=K)); this one has none")
        labels = None if labels is None else _classes(model, labels, len(x), "labels")
        if batch_size is None or (problem := OPTION["batch_size"].problem(batch_size)):
            raise ValueError(problem if batch_size is not None else "fit on a tensor needs a batch_size")
        if problem := batch_problem(batch_size, len(x)):
            raise ValueError(problem)
        epoch_batches, steps_per_epoch = _tensor_batches(x, batch_size, seed, labels=labels)
    test = None if test is None else _examples(model, test, "test")
    if test_labels is not None:
        if test is None or not conditional:
            raise ValueError("test_labels go with test= and a conditional model")
        test_labels = _classes(model, test_labels, len(test), "test_labels")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, beta2), weight_decay=weight_decay,
                                 foreach=True)
    with Stopper() as stopper:
        history, at = _train_loop(model, optimizer, epoch_batches, test, stopper, epochs=epochs, lr=lr,
                                  steps_per_epoch=steps_per_epoch, seed=seed, schedule=schedule, warmup=warmup,
                                  grad_clip=grad_clip, bf16=bf16, max_steps=max_steps, time_limit=time_limit,
                                  device=device, progress=progress, test_labels=test_labels,
                                  class_weight=class_weight)
    if at.ended == "stopped":
        print(f"stopped after step {at.step} (a stop was asked for)", file=sys.stderr)
    return history


def train(args: argparse.Namespace, run: RunFolder, stopper: Stopper, device: torch.device, rank: int,
          world: int) -> int:
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from flow import distributed as dd
    from flow import viz
    from flow.checkpoint import CheckpointError, load_checkpoint, model_problem
    from flow.learning import block_stats, default_snapshot_every, run_latents
    from flow.model import build_model

    if args.data is not None:  # a file by its absolute path: the run's record, compared on --resume
        args.data = data_spec(args.data)
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
        if args.init is not None or (args.conditional and not config.num_classes):
            flag = "--init" if args.init is not None else "--conditional"
            raise RunError(f"{flag} starts a new run; --resume continues this one as it was started: leave {flag} out")
        if isinstance(recorded := meta.get("data_file"), dict) and is_data_file(data_name):
            try:
                now = sha256_of(data_name)
            except OSError as e:
                raise RunError(f"cannot resume: the run's data file {data_name} cannot be read ({e.strerror or e}): "
                               "put it back where it was") from e
            if now != recorded.get("sha256"):
                raise RunError(f"cannot resume: the data file {data_name} has changed since the run started (SHA-256 "
                               f"{str(recorded.get('sha256'))[:12]}..., now {now[:12]}...), and --resume trains on the "
                               "same data: restore the file, or start a new run on it: python -m flow.train --run-dir "
                               f"NEW --data {data_name}")
    else:
        if args.preset is None and args.data is not None:  # the kind of model the data needs
            args.preset = preset_for(args.data)
        vars(args).update(resolve({o.name: getattr(args, o.name) for o in OPTIONS}, None)[0])
        torch.manual_seed(args.seed)
        preset = args.preset
        data_name = args.data or default_data(preset)
        try:
            fits = fits_data(preset, data_name)
        except DataFileError as e:
            raise RunError(str(e)) from e
        if not fits:
            raise RunError(unfit_data(preset, data_name))
        # a file's examples give the model its shape (a preset's is MNIST's or 2-D)
        shape = {"shape": example_shape(data_name)} if is_data_file(data_name) else {}
        if args.conditional:  # as many classes as the labels have
            shape["num_classes"] = class_count(data_name, args.digit)
        try:
            config = FlowConfig.from_dict({**PRESETS[preset].config.__dict__, **shape, **dict(args.overrides)})
        except (ValueError, TypeError) as e:
            raise RunError(f"the model cannot be built: {e}") from e
        if shape and (problem := squeeze_problem(config, data_label(data_name))):  # a file's own image size
            raise RunError(problem)
        try:
            model = build_model(config).to(device)
        except ValueError as e:
            raise RunError(f"the model cannot be built: {e}") from e
        if args.init is not None:
            warm_start(model, args.init)
        start_epoch, step, elapsed_before = 0, 0, 0.0
    tuned = PRESETS.get(preset)  # the preset's settings are the defaults
    batch_size = args.batch_size or tuned.batch_size
    lr = args.lr if args.lr is not None else tuned.lr
    beta2 = args.beta2 or tuned.beta2
    previous = model.metadata if args.resume else {}

    digit = args.digit
    train_x, test_x = load_data(data_name, args.limit_train, args.limit_test, digit)
    check_fit(config, data_name, train_x)
    train_y, test_y = (None, None) if not config.num_classes else load_classes(config, data_name, args.limit_train,
                                                                                args.limit_test, digit)
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
    net = _log_prob_module(model)
    net = DistributedDataParallel(net) if world > 1 else net

    def index_log(indices: torch.Tensor) -> None:
        with open(run.path / f"indices.rank{rank}.txt", "a") as f:
            f.write(" ".join(map(str, indices.tolist())) + "\n")

    epoch_batches, steps_per_epoch = _tensor_batches(train_x, batch_size, args.seed, world,
                                                     index_log if args.index_log else None, train_y)
    total_steps = min(args.max_steps or 10**12, steps_per_epoch * args.epochs)
    snapshot_every = default_snapshot_every(args.snapshot_every, model, total_steps)
    with run.writing():
        sample_z = run_latents(run.path, model, run.writer)  # every sample picture decodes these latents
    probe = train_x[:64].to(device)  # a fixed batch for the per-block statistics in the metrics
    probe = model.dequantize(probe, args.seed) if config.preprocess else probe
    if run.writer and not viz.PILLOW:
        print("warning: Pillow is not installed, so this run draws no sample pictures (pip install pillow)",
              file=sys.stderr)

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
    if is_data_file(data_name):  # the file's name, SHA-256, shapes and split (flow.datafile)
        meta["data_file"] = read_data(data_name).record
    if args.init is not None or "init" in previous:  # where the weights started
        meta["init"] = previous.get("init") or str(args.init.expanduser().absolute())
    window = {"bpd": 0.0, "n": 0, "t": time.time()}  # the metrics line's average since the last one

    def on_step(at: Progress, loss_sum: float, n_sum: float) -> None:
        window["bpd"], window["n"] = window["bpd"] + loss_sum, window["n"] + int(n_sum)
        if snapshot_every and at.step % snapshot_every == 0:
            run.snapshot(model, sample_z, at.step, at.epochs)
        if at.step % args.log_every == 0:
            now = time.time()
            run.log({"kind": "step", "step": at.step, "epoch": at.epochs, "train_bpd": window["bpd"] / window["n"],
                     "test_bpd": None, "images_per_s": window["n"] / (now - window["t"]),
                     "wall_time": round(at.seconds, 2), "blocks": block_stats(model, probe) if run.writer else None})
            run.status("running", epoch=at.epoch, step=at.step, epochs=args.epochs, world_size=world)  # heartbeat
            window.update(bpd=0.0, n=0, t=now)

    def on_epoch(at: Progress, images: int, seconds: float) -> None:
        accuracy = {} if at.test_accuracy is None else {"test_accuracy": at.test_accuracy}
        run.log({"kind": "epoch", "step": at.step, "epoch": at.epochs, "train_bpd": None, "test_bpd": at.test_bpd,
                 **accuracy, "images_per_s": images / seconds, "wall_time": round(at.seconds, 2)})
        run.save_samples(model, sample_z, f"epoch_{at.epoch + 1:03d}", at.step, at.epochs)
        run.save(model, optimizer, {**meta, "epoch": at.completed, "step": at.step, "test_bpd": at.test_bpd,
                                    **accuracy, "train_seconds": round(at.seconds, 1)})
        dd.barrier()
        if rank == 0:
            from tqdm import tqdm

            tqdm.write(json.dumps({"epoch": at.epoch + 1, "step": at.step, "test_bpd": round(at.test_bpd, 4),
                                   **{k: round(v, 4) for k, v in accuracy.items()}}))

    if snapshot_every and step == 0:  # the starting point of the replay: the data-initialised identity
        run.snapshot(model, sample_z, step, 0.0)
    try:
        _, at = _train_loop(model, optimizer, epoch_batches, test_x, stopper, epochs=args.epochs, lr=lr,
                            steps_per_epoch=steps_per_epoch, seed=args.seed, schedule=args.schedule,
                            warmup=args.warmup, grad_clip=args.grad_clip, bf16=args.bf16, max_steps=args.max_steps,
                            time_limit=args.time_limit, device=device, net=net, start_epoch=start_epoch, step=step,
                            test_labels=test_y, class_weight=args.class_weight,
                            elapsed_before=elapsed_before, rank=rank, world=world, on_step=on_step, on_epoch=on_epoch)
    except Diverged as e:
        if e.before_update:  # no update in this process yet: the learning rate played no part
            raise RunError(str(e)) from e
        msg = f"training diverged at step {e.step} ({e.what}); {run.kept()}. Try a lower learning rate than {lr:g}."
        print(f"error: {msg}", file=sys.stderr)
        run.status("diverged", msg, epoch=e.epoch, step=e.step)
        return EXIT_DIVERGED
    run.status(at.ended, f"{at.ended} after {at.step} steps; test bits/dim {at.test_bpd:.4f}", epoch=at.completed,
               epochs=args.epochs, step=at.step, test_bpd=at.test_bpd, world_size=world)
    return 0


if __name__ == "__main__":
    sys.exit(main())
