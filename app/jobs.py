"""Training runs as background processes: launch, stop, resume, delete, status, list, metrics.

A run is a folder `<runs root>/<name>/`. The trainer (`python -m flow.train`) writes checkpoints,
`metrics.jsonl` and `status.json` there; this module adds `job.json` (the command and the identity of
the process: pid and start time, so a recycled pid is not taken for the run) and `train.log` (the
trainer's stdout and stderr). Every answer is read from those files and from the process table, so
any number of app sessions, a page reload or a restarted app server see the same runs.
No Streamlit here: the Train page draws what these functions return.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, make_dataclass, replace
from pathlib import Path

import pandas as pd

from flow.checkpoint import CheckpointError, read_header
from flow.data import (DATASETS, TOY_SETS, class_note, data_label, dataset_size, default_data, example_shape,
                       fits_data, is_data_file)
from flow.files import ROOT, atomic_write
from flow.model import IMAGE_PRESETS, PRESETS
from flow.options import OPTIONS, Option, to_args
from flow.run_protocol import EXIT_DIVERGED, EXIT_REFUSED, EXIT_WRITE_FAILED, batch_problem

RUNS_ENV = "REALNVP_RUNS_DIR"  # where runs live; tests point it at a temporary folder
MAX_RUNS_ENV = "REALNVP_MAX_RUNS"  # how many runs may train at once (default 1: two CPU cores)
ACTIVE = ("running", "stopping")
FINAL = ("finished", "stopped", "diverged", "failed")  # states the trainer itself writes when it ends
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DATASETS_DIR = "datasets"  # <runs root>/datasets/ holds uploaded and drawn data sets (app.datasets), not a run

_children: dict[int, subprocess.Popen] = {}  # processes this server started: polled to get (and reap) exit codes
_children_lock = threading.Lock()


class JobError(Exception):
    """A request the job layer refuses; the message says what to do instead."""


def runs_root() -> Path:
    """$REALNVP_RUNS_DIR, or checkpoints/runs."""
    return Path(os.environ.get(RUNS_ENV) or ROOT / "checkpoints" / "runs")


def max_running() -> int:
    """$REALNVP_MAX_RUNS (default 1): runs allowed to train at the same time."""
    try:
        return max(1, int(os.environ.get(MAX_RUNS_ENV, "1")))
    except ValueError:
        return 1


def data_version(data: str) -> float:
    """The modification time of a data file (0 for a built-in set): a cache key; OSError if it is gone."""
    return os.stat(data).st_mtime if is_data_file(data) else 0.0


def data_shape(data: str | None) -> tuple[int, ...] | None:
    """The shape of one example of a data set (a name, or a data file: `flow.data.example_shape` reads it once per
    version of the file); None when it cannot be read."""
    try:
        return tuple(example_shape(data)) if data else None
    except (ValueError, OSError):  # a data file gone or broken since (DataFileError is a ValueError)
        return None


def data_kind(data: str | None) -> str | None:
    """"images" (examples with pixels), "points" (flat vectors), or None when the data cannot be read."""
    shape = data_shape(data)
    return None if shape is None else "images" if len(shape) > 1 else "points"


def data_dim(data: str) -> int:
    """D, the number of dimensions of one example: 784 for MNIST, 2 for the toy sets, a data file's own."""
    shape = data_shape(data)
    if shape is None:
        raise ValueError(f"the data set {data} cannot be read")
    return math.prod(shape)


def bpd_to_nats(bpd: float | pd.Series, dim: int) -> float | pd.Series:
    """Bits/dim -> negative log-likelihood in nats per example of `dim` dimensions: bpd * D * ln 2."""
    return bpd * dim * math.log(2)


FORM_OPTIONS = tuple(o for o in OPTIONS if o.label)  # the training options the New-run form asks for

RunSpec = make_dataclass("RunSpec", [(o.name, object, field(default=o.default)) for o in FORM_OPTIONS] + [
    ("name", str, field(default="")),  # the run folder's name; empty: preset-data-date-time
    ("threads", int, field(default=1)),  # OMP_NUM_THREADS of the trainer: the app server needs a core too
])
RunSpec.__doc__ = """What the New-run form asks for: its training options (`flow.options`; None is the preset's
own value, or its data set), the run's name and the trainer's CPU threads."""


THREADS = Option("threads", int, 1, "The trainer's OMP_NUM_THREADS. Leave a core to the app: on 2 cores, 1 thread",
                 "CPU threads", low=1, high=os.cpu_count() or 1)


def read_form(fields: dict[str, object]) -> RunSpec:
    """A RunSpec from the New-run form's fields as typed: each number field's text read by its option's rule
    (`Option.read`: empty is None, text that is no number stays as typed, so `validate` names it)."""
    numbers = {o.name: o for o in (*FORM_OPTIONS, THREADS) if not o.choices}
    return RunSpec(**{k: numbers[k].read(v) if k in numbers else v for k, v in fields.items()})


def train_args(spec: RunSpec) -> list[str]:
    """The flow.train options a spec stands for (without --epochs, --run-dir and --resume)."""
    return to_args({o.name: getattr(spec, o.name) for o in FORM_OPTIONS if o.name != "epochs"})


def default_name(spec: RunSpec) -> str:
    only = f"-{spec.digit}s" if spec.digit is not None else ""
    data = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(data_label(spec.data)).stem)[:24] if is_data_file(spec.data) \
        else spec.data
    return f"{spec.preset}-{data}{only}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_options(run: Run) -> dict[str, object]:
    """The training options of a run (flow.options' names): the trainer's record in its checkpoint, else (a run
    trained before records) what job.json says it was launched with; {} when neither is there. Values that break
    their option's rule (a hand-edited file) are left out."""
    try:
        recorded = read_header(run.checkpoint)[1].get("options")
    except CheckpointError:
        recorded = None
    found = recorded if isinstance(recorded, dict) else run.job
    return {o.name: found[o.name] for o in OPTIONS if o.name in found and not o.problem(found[o.name])}


def scored_on(run: Run) -> str:
    """The data a run trains on and its test bits/dim measure, as the run list and the comparison chart name it:
    "MNIST", "MNIST (the 0s only)", "moons (2-D)", "MNIST (first 2000 test examples)". Runs named differently
    have figures that must not be compared as if alike."""
    options = run_options(run)
    notes = ["2-D"] if run.data in TOY_SETS or (is_data_file(run.data) and data_shape(run.data) == (2,)) else []
    notes += [class_note(options.get("digit")).strip(" ()")] if options.get("digit") is not None else []
    notes += [f"first {options['limit_test']} test examples"] if options.get("limit_test") is not None else []
    name = data_label(run.data) if run.data else "unknown data"
    return name + (f" ({', '.join(notes)})" if notes else "")


def validate(spec: RunSpec, root: Path | None = None, new: bool = True) -> list[str]:
    """Everything wrong with a spec, each as a sentence that says what to do; [] if it can start.
    `new`: the run folder must not exist yet."""
    problems = []
    if spec.name and (not NAME.fullmatch(spec.name) or ".." in spec.name):
        problems.append(f"Run name {spec.name!r} is not allowed: it names a folder, so use up to 64 letters, "
                        "digits, '-', '_' or '.', starting with a letter or digit (no '/' and no '..').")
    elif spec.name == DATASETS_DIR:
        problems.append(f"Run name {DATASETS_DIR!r} is taken by the folder of uploaded data sets: choose another.")
    elif new and spec.name and ((root or runs_root()) / spec.name).exists():
        problems.append(f"A run named {spec.name!r} already exists: choose another name, or pick it in the "
                        "run list to resume it.")
    if spec.preset not in PRESETS:
        problems.append(f"Unknown preset {spec.preset!r}: choose one of {', '.join(PRESETS)}.")
    data_ok = False
    if isinstance(spec.data, str) and is_data_file(spec.data):
        shape = data_shape(spec.data)
        if shape is None:
            problems.append(f"The data file {spec.data} cannot be read (gone, or not a data set): upload it again.")
        elif spec.preset in PRESETS and not fits_data(spec.preset, spec.data):
            problems.append(f"Preset {spec.preset} does not fit {data_label(spec.data)}, whose examples have shape "
                            f"{shape}: toy-2d models points; {', '.join(IMAGE_PRESETS)} model images (the multi-scale "
                            "ones need sides divisible by 4).")
        else:
            data_ok = True
    elif spec.data not in DATASETS:
        problems.append(f"Unknown data set {spec.data!r}: choose one of {', '.join(DATASETS)}, or upload a file.")
    elif spec.preset in PRESETS and not fits_data(spec.preset, spec.data):
        problems.append(f"Preset {spec.preset} does not fit data set {spec.data}: toy-2d models the 2-D toy sets "
                        f"({', '.join(TOY_SETS)}); {', '.join(IMAGE_PRESETS)} model MNIST images.")
    else:
        data_ok = True
    wrong = {o.name: o.problem(getattr(spec, o.name), o.label) for o in FORM_OPTIONS if not o.choices}
    problems += [p + "." for p in wrong.values() if p]
    if spec.digit is not None and not wrong["digit"] and spec.data != "mnist":
        what = f"the toy set {spec.data}" if spec.data in TOY_SETS else data_label(spec.data) if data_ok else None
        wrong["digit"] = f"Only this digit picks an MNIST class; {what or 'this data'} has none: leave it empty."
        problems.append(wrong["digit"])
    if spec.preset in PRESETS and data_ok and not any(wrong[k] for k in ("batch_size", "limit_train", "digit")):
        batch = spec.batch_size or PRESETS[spec.preset].batch_size  # empty: the preset's, as flow.train does
        try:
            examples = dataset_size(spec.data, "train", spec.digit)
        except (ValueError, OSError) as e:
            problems.append(f"{e}.")
        else:
            if problem := batch_problem(batch, min(spec.limit_train or examples, examples)):
                problems.append(problem[0].upper() + problem[1:])
    if problem := THREADS.problem(spec.threads, THREADS.label):
        problems.append(problem + ".")
    return problems


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class Run:
    """One run folder as it stands now."""

    name: str
    path: Path
    state: str  # running, stopping, finished, stopped, diverged, failed (crashed or killed), vanished
    message: str = ""
    preset: str | None = None
    data: str | None = None
    epochs: int | None = None  # planned (the latest --epochs)
    dim: int | None = None  # D of one example: from the data, else from the checkpoint's model (a data file gone)
    checkpoint_epoch: int | None = None  # epochs done in the latest checkpoint
    test_bpd: float | None = None  # of the latest checkpoint
    started: float | None = None  # when the latest process was launched (or the folder's time)
    pid: int | None = None
    job: dict = field(default_factory=dict, repr=False)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.safetensors"

    @property
    def samples(self) -> Path:
        return self.path / "samples.png"

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of train.log (tqdm's carriage-return updates count as lines)."""
        try:
            with open(self.path / "train.log", "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join([ln for ln in re.split(r"[\r\n]+", text) if ln.strip()][-lines:])


# ---- processes -------------------------------------------------------------------------------------

def _process_started(pid: int) -> float | None:
    """When process pid started (seconds since the epoch, Linux /proc); None if it does not exist
    or is a zombie (exited, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(float(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines()
                    if ln.startswith("btime"))
    except (OSError, StopIteration, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _alive(pid: int | None, started: float | None, not_after: float | None = None) -> bool:
    """Is pid still the process we mean? `started` is its recorded start time (job.json); for a run
    known only from status.json, `not_after` is when it wrote that file (it must have started before)."""
    if not pid:
        return False
    now_started = _process_started(pid)
    if now_started is None:
        if Path("/proc").is_dir():
            return False
        try:  # no /proc (macOS): trust the pid
            os.kill(pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    if started is not None:
        return abs(now_started - started) < 1.0
    return not_after is None or now_started <= not_after + 1.0


def _poll_child(pid: int) -> int | None:
    """The exit code of a process this server started, once it has ended (which also reaps it)."""
    with _children_lock:
        proc = _children.get(pid)
    return None if proc is None else proc.poll()  # kept after it ends: every session asking gets the code


def _exit_reason(code: int) -> str:
    if code == EXIT_REFUSED:
        return "refused its settings, its data or its device (the reason is at the end of its log below)"
    if code == EXIT_WRITE_FAILED:
        return "could not write to its run folder (disk full, or not writable?)"
    if code == EXIT_DIVERGED:
        return "stopped because the loss diverged"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


# ---- files -----------------------------------------------------------------------------------------

def _number(v: object) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _text(v: object) -> bool:
    return isinstance(v, str)


def _count(v: object) -> bool:
    return _is_int(v) and v >= 0


def _pid(v: object) -> bool:
    return _is_int(v) and v > 0


# the fields read from a run folder's JSON files and what each must be (None too, where written as null): a
# hand-edited or foreign file with a field of another type reads as if that field were absent
JSON_FIELDS = {
    "job.json": {"preset": _text, "data": _text, "epochs": _count, "started": _number, "pid": _pid,
                 "pid_started": _number, "returncode": _is_int, "stop_requested": _number, "attempt": _count,
                 "created": _number, "ended": _number, "name": _text},
    "status.json": {"state": _text, "message": _text, "pid": _pid, "updated": _number, "epochs": _count,
                    "epoch": _count, "step": _count},
}


def _read_json(path: Path) -> dict:
    """A run folder's JSON file as a dict ({} if missing or not an object), without the fields JSON_FIELDS
    says have the wrong type."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    rules = JSON_FIELDS.get(path.name, {})
    return {k: v for k, v in data.items() if v is None or k not in rules or rules[k](v)}


def _write_json(path: Path, data: dict) -> None:
    """Atomic (flow.files.atomic_write), so a reader never sees half a file. Into an existing run folder only:
    a folder deleted meanwhile is not made again."""
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no run folder {path.parent}")
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1)))


def _update_job(path: Path, **changes: object) -> dict:
    job = {**_read_json(path / "job.json"), **changes}
    _write_json(path / "job.json", job)
    return job


def read_run(path: Path) -> Run:
    """The state of the run in folder `path`, combining job.json, status.json, the process table
    and the exit code (when this server started the process)."""
    job, status = _read_json(path / "job.json"), _read_json(path / "status.json")
    run = Run(name=path.name, path=path, state="vanished", job=job, preset=job.get("preset"),
              data=job.get("data"), epochs=job.get("epochs") or status.get("epochs"), started=job.get("started"))
    try:
        config, meta = read_header(run.checkpoint)
        run.dim = math.prod(config.shape)
        run.checkpoint_epoch, run.test_bpd = meta.get("epoch"), meta.get("test_bpd")
        run.preset, run.data = run.preset or meta.get("preset"), run.data or meta.get("data")
        run.epochs = run.epochs or meta.get("epochs_planned")
    except CheckpointError:
        pass
    if (shape := data_shape(run.data)) is not None:
        run.dim = math.prod(shape)
    if run.started is None:
        run.started = status.get("updated") or path.stat().st_mtime

    if job:  # launched by this module: the pid and its start time are in job.json
        run.pid = job.get("pid")
        alive = job.get("returncode") is None and _alive(run.pid, job.get("pid_started"))
        if not alive and job.get("returncode") is None and run.pid:
            code = _poll_child(run.pid)  # an exited child of ours is a zombie until polled
            if code is not None:
                job = run.job = {**job, "returncode": code, "ended": time.time()}
                with suppress(OSError):  # disk full: this answer still holds, and poll() keeps the code
                    _write_json(path / "job.json", job)
        # a status.json older than this launch belongs to an earlier attempt
        current = status if status.get("updated", 0) >= job.get("started", 0) else {}
    else:  # a run started elsewhere (the command line): status.json names its pid
        run.pid = status.get("pid")
        alive = status.get("state") == "running" and _alive(run.pid, None, status.get("updated"))
        current = status

    code = job.get("returncode")
    if alive:
        if job.get("stop_requested"):
            run.state = "stopping"
            run.message = "stop requested: finishing the current step, then evaluating and saving"
        else:
            run.state = "running"
            starting = current.get("state") != "running"
            run.message = "starting: loading data, building the model" if starting else "training"
    elif current.get("state") in FINAL:
        run.state, run.message = current["state"], current.get("message", "")
    elif code is not None:
        run.state = "failed"
        run.message = (f"The training process {_exit_reason(code)} before writing a final status"
                       + (" (it crashed: see its log below)." if code > 0 and code != EXIT_REFUSED else "."))
    else:
        run.state = "vanished"
        run.message = ("The training process is gone without a final status (the app server was restarted, "
                       "or it was killed from outside?). Its last checkpoint is kept: Resume continues from it.")
    return run


def run_state(path: Path) -> str:
    return read_run(path).state


def list_runs(root: Path | None = None) -> list[Run]:
    """Every run folder under the runs root, newest launch first."""
    root = root or runs_root()
    if not root.is_dir():
        return []
    runs = [read_run(p) for p in root.iterdir() if _is_run_folder(p)]
    return sorted(runs, key=lambda r: r.started or 0, reverse=True)


def _is_run_folder(path: Path) -> bool:
    """A real folder (a symbolic link could lead stop, resume and delete outside the runs root)."""
    return path.is_dir() and not path.is_symlink() and not path.name.startswith(".") and path.name != DATASETS_DIR


def get_run(name: str, root: Path | None = None) -> Run:
    root = root or runs_root()
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name or not _is_run_folder(root / name):
        raise JobError(f"There is no run named {name!r} in {root}.")
    return read_run(root / name)


# ---- actions -------------------------------------------------------------------------------------

@contextmanager
def _launch_lock(root: Path) -> Iterator[None]:
    """Serialises check-then-start across threads and processes (two sessions pressing Launch at once)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / ".launch.lock", "w")
    except OSError as e:
        raise _unwritable(root, e) from e
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _check_capacity(root: Path, limit: int | None) -> None:
    limit = limit or max_running()
    running = [r for r in list_runs(root) if r.active]
    if len(running) >= limit:
        names = ", ".join(f"'{r.name}'" for r in running)
        raise JobError(f"Run {names} is still training, and at most {limit} run{'s' if limit > 1 else ''} may train "
                       f"at a time (set {MAX_RUNS_ENV} to change this): stop it or wait until it ends.")


def _start(path: Path, spec: RunSpec, epochs: int, resume: bool) -> None:
    cmd = [sys.executable, "-m", "flow.train", *train_args(spec), "--epochs", str(epochs), "--run-dir", str(path)]
    cmd += ["--resume"] if resume else []
    env = {**os.environ, "OMP_NUM_THREADS": str(spec.threads), "PYTHONUNBUFFERED": "1",
           "TQDM_MININTERVAL": "5"}  # a tqdm line every 5 s keeps train.log small
    with open(path / "train.log", "ab") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd[1:])}\n".encode())
        log.flush()
        # Started with SIGTERM blocked (a thread's mask passes to its child): a Stop pressed before the trainer
        # has set up its handler waits for it, and so ends the run as "stopped" instead of killing it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:  # own session: the run outlives this script, a closed tab and a restart of the app server
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    with _children_lock:
        _children[proc.pid] = proc
    job = _read_json(path / "job.json")
    _write_json(path / "job.json", {
        **asdict(spec), "epochs": epochs, "command": cmd, "pid": proc.pid, "pid_started": _process_started(proc.pid),
        "started": time.time(), "attempt": job.get("attempt", 0) + 1, "returncode": None, "stop_requested": None,
        "created": job.get("created", time.time())})


def launch(spec: RunSpec, root: Path | None = None, limit: int | None = None) -> Run:
    """Start a new run in the background; JobError if the spec is invalid or too many runs train."""
    root = root or runs_root()
    data = spec.data or default_data(spec.preset)
    spec = RunSpec(**{**asdict(spec), "data": data, "name": spec.name or default_name(replace(spec, data=data))})
    problems = validate(spec, root)
    if problems:
        raise JobError("\n".join(problems))
    path = root / spec.name
    with _launch_lock(root):
        _check_capacity(root, limit)
        try:
            path.mkdir()
        except FileExistsError:
            raise JobError(f"A run named {spec.name!r} already exists: choose another name.") from None
        except OSError as e:
            raise _unwritable(root, e) from e
        try:
            _start(path, spec, spec.epochs, resume=False)
        except OSError as e:
            shutil.rmtree(path, ignore_errors=True)  # nothing half-made that looks like a run
            raise _unwritable(root, e) from e
    return read_run(path)


def resume(name: str, epochs: int, lr: float | None = None, root: Path | None = None,
           limit: int | None = None) -> Run:
    """Continue a run from its last checkpoint until `epochs` (optionally with a new learning rate)."""
    root = root or runs_root()
    with _launch_lock(root):
        run = get_run(name, root)
        if run.active:
            raise JobError(f"Run '{name}' is still training.")
        if run.checkpoint_epoch is None:
            raise JobError(f"Run '{name}' has no readable checkpoint to resume from: launch a new run instead.")
        if not _is_int(epochs) or epochs <= run.checkpoint_epoch:
            raise JobError(f"Run '{name}' has already trained {run.checkpoint_epoch} epoch(s): to continue, ask for "
                           f"more than {run.checkpoint_epoch} (got {epochs}).")
        # the options it was started with: flow.train refuses to resume with a kept one changed (and warns where a
        # run has no record of them), as on the command line, so the page passes what the run has
        known = {k: v for k, v in {"threads": run.job.get("threads", 1), **run_options(run)}.items()
                 if k in RunSpec.__dataclass_fields__}  # the trainer keeps the others itself
        spec = RunSpec(**{**known, "name": name, "preset": run.preset, "data": run.data, "epochs": epochs})
        spec.lr = lr if lr is not None else spec.lr
        problems = validate(spec, root, new=False)
        if problems:
            raise JobError("\n".join(problems))
        _check_capacity(root, limit)
        try:
            _start(run.path, spec, epochs, resume=True)
        except OSError as e:
            raise _unwritable(root, e) from e
    return read_run(run.path)


def _unwritable(root: Path, e: OSError) -> JobError:
    return JobError(f"Cannot write to the runs folder {root} ({e.strerror or e}). Free some disk space, or point "
                    f"{RUNS_ENV} at a writable folder, then try again.")


def stop(name: str, root: Path | None = None) -> Run:
    """Ask a run to stop: SIGTERM; the trainer finishes its step, evaluates, saves and ends 'stopped'."""
    run = get_run(name, root)
    if not run.active:
        raise JobError(f"Run '{name}' is not training (it is {run.state}).")
    try:
        if run.job and os.getpgid(run.pid) == run.pid:
            os.killpg(run.pid, signal.SIGTERM)  # the whole group: torchrun workers too, if any
        else:
            os.kill(run.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # ended meanwhile; read_run tells how
    if run.job:
        with suppress(OSError):  # disk full: the signal is sent all the same
            _update_job(run.path, stop_requested=time.time())
    return read_run(run.path)


def delete(name: str, root: Path | None = None) -> None:
    """Remove a run folder with its checkpoints; refused while it trains."""
    run = get_run(name, root)
    if run.active:
        raise JobError(f"Run '{name}' is still training: stop it first.")
    try:
        shutil.rmtree(run.path)
    except OSError as e:
        raise JobError(f"Run '{name}' could not be deleted completely ({e.strerror or e}).") from e


# ---- metrics -------------------------------------------------------------------------------------

METRIC_COLUMNS = ["kind", "step", "epoch", "train_bpd", "test_bpd", "images_per_s", "wall_time"]


def read_metrics(path: Path) -> pd.DataFrame:
    """metrics.jsonl as a table (one row a line; a line being written is skipped)."""
    rows = []
    try:
        with open(path / "metrics.jsonl") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                # a line of another shape (hand-edited, another program's) is skipped like a half-written one
                if (isinstance(row, dict) and isinstance(row.get("kind"), str)
                        and all(row.get(c) is None or _number(row[c]) for c in METRIC_COLUMNS[1:])):
                    rows.append(row)
    except (OSError, UnicodeDecodeError):
        pass
    return pd.DataFrame(rows, columns=METRIC_COLUMNS).astype({c: float for c in METRIC_COLUMNS[1:]})


@dataclass
class Progress:
    epoch: float  # epochs done, fractional
    epochs: int  # planned
    fraction: float
    step: int
    images_per_s: float | None  # examples per second: digits, or points of a 2-D set
    eta_s: float | None  # at the pace so far (training time per epoch, evaluations included)
    unit: str = "images"  # what an example is: "images" (MNIST) or "points" (the 2-D sets)

    @property
    def text(self) -> str:
        parts = [f"epoch {self.epoch:.2f} / {self.epochs}", f"step {self.step}"]
        if self.images_per_s:
            parts.append(f"{self.images_per_s:,.0f} {self.unit}/s")
        if self.eta_s is not None:
            parts.append(f"about {format_duration(self.eta_s)} left")
        return " · ".join(parts)


def progress(run: Run, metrics: pd.DataFrame) -> Progress | None:
    """Where a run stands from its metrics: epoch, speed and the time left to its planned epochs."""
    if metrics.empty or not run.epochs:
        return None
    last = metrics.iloc[-1]
    steps = metrics[metrics.kind == "step"]
    speed = float(steps.images_per_s.iloc[-1]) if len(steps) else None
    epoch, wall = float(last.epoch), float(last.wall_time)
    eta = max(0.0, (run.epochs - epoch) * wall / epoch) if epoch > 0 and run.active else None
    return Progress(epoch=epoch, epochs=run.epochs, fraction=min(1.0, max(0.0, epoch / run.epochs)),
                    step=int(last.step), images_per_s=speed, eta_s=eta,
                    unit="points" if data_kind(run.data) == "points" else "images")


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
