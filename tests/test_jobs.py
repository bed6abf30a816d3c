"""The job layer with real background trainings (toy-2d on a 512-point subset of moons: seconds)."""
import json
import math
import os
import re
import signal
import subprocess
import threading
import time

import pytest
import torch

from app import jobs
from flow.checkpoint import save_checkpoint
from flow.data import dataset_size, example_shape, load_dataset
from flow.model import build_model
from flow.run_protocol import EXIT_REFUSED
from tests.app_helpers import tiny
from tests.helpers import wait_for


@pytest.mark.integration
def test_launch_metrics_stop_resume_finish_and_one_run_at_a_time(runs_root):
    # two sessions press Launch at the same moment: the file lock lets exactly one start
    results, barrier = {}, threading.Barrier(2)

    def press(name):
        barrier.wait()
        try:
            results[name] = jobs.launch(tiny(name))
        except jobs.JobError as e:
            results[name] = e

    threads = [threading.Thread(target=press, args=(n,)) for n in ("a", "b")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    started = [r for r in results.values() if isinstance(r, jobs.Run)]
    refused = [r for r in results.values() if isinstance(r, jobs.JobError)]
    assert len(started) == 1 and len(refused) == 1
    run = started[0]
    assert f"'{run.name}' is still training" in str(refused[0]) and jobs.MAX_RUNS_ENV in str(refused[0])
    assert sorted(p.name for p in runs_root.iterdir() if p.is_dir()) == [run.name]
    job = json.loads((run.path / "job.json").read_text())
    assert job["pid"] == run.pid and job["command"][1:3] == ["-m", "flow.train"] and job["pid_started"] > 0

    # metrics appear while it trains; it cannot be deleted meanwhile
    wait_for(lambda: len(jobs.read_metrics(run.path)) >= 6, "metrics")
    metrics = jobs.read_metrics(run.path)
    assert jobs.read_run(run.path).state == "running"
    assert metrics.step.is_monotonic_increasing and (metrics.train_bpd.dropna() > 0).all()
    with pytest.raises(jobs.JobError, match="stop it first"):
        jobs.delete(run.name)
    with pytest.raises(jobs.JobError, match="still training"):
        jobs.launch(tiny("c"))

    # stop: SIGTERM, the trainer saves and ends "stopped" with exit code 0
    wait_for(lambda: jobs.read_run(run.path).checkpoint_epoch, "a first checkpoint")
    assert jobs.stop(run.name).state == "stopping"
    stopped = wait_for(lambda: (r := jobs.read_run(run.path)).state == "stopped" and r, "state stopped", 60)
    assert stopped.job["returncode"] == 0 and stopped.checkpoint.exists()
    saved_epoch, saved_step = stopped.checkpoint_epoch, int(jobs.read_metrics(run.path).step.max())
    assert 1 <= saved_epoch < 1000

    # resume continues from the saved epoch (not from 0) and finishes
    with pytest.raises(jobs.JobError, match="more than"):
        jobs.resume(run.name, saved_epoch)
    resumed = jobs.resume(run.name, saved_epoch + 2)
    assert resumed.active and resumed.job["attempt"] == 2 and "--resume" in resumed.job["command"]
    done = wait_for(lambda: (r := jobs.read_run(run.path)).state == "finished" and r, "state finished", 60)
    after = jobs.read_metrics(run.path)
    new = after[after.step > saved_step]
    assert len(new) and new.epoch.min() > saved_epoch and new.step.min() <= saved_step + 2  # no restart at 0
    assert done.checkpoint_epoch == saved_epoch + 2 and done.job["returncode"] == 0
    assert "resume" in done.log_tail(100)
    jobs.delete(run.name)
    assert jobs.list_runs() == []


@pytest.mark.integration
def test_a_killed_run_is_reported_as_failed(runs_root):
    run = jobs.launch(tiny("killed"))
    wait_for(lambda: jobs.read_run(run.path).message == "training", "the trainer's running status")
    os.kill(run.pid, signal.SIGKILL)
    failed = wait_for(lambda: (r := jobs.read_run(run.path)).state == "failed" and r, "state failed", 10)
    assert "SIGKILL" in failed.message and failed.job["returncode"] == -signal.SIGKILL


@pytest.mark.integration
def test_a_crashing_run_is_reported_as_failed_with_its_log(runs_root):
    # a run made on the command line (no job.json) whose checkpoint has NaN weights: the trainer refuses to resume
    model = build_model("toy-2d")
    with torch.no_grad():
        next(model.parameters()).fill_(math.nan)
    save_checkpoint(model, runs_root / "broken" / "checkpoint.safetensors", preset="toy-2d", data="moons",
                    epoch=1, step=8)
    run = jobs.resume("broken", 3)
    failed = wait_for(lambda: (r := jobs.read_run(run.path)).state == "failed" and r, "state failed", 60)
    assert failed.job["returncode"] == EXIT_REFUSED and "refused" in failed.message
    assert "cannot resume" in failed.log_tail() and "NaN" in failed.log_tail()
    assert "Traceback" not in failed.log_tail(100)


@pytest.mark.integration
def test_a_process_gone_without_a_final_status_is_vanished_not_running(runs_root):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (runs_root / "cli").mkdir()  # started on the command line: only status.json names the pid
    (runs_root / "cli" / "status.json").write_text(json.dumps({"state": "running", "pid": dead.pid,
                                                               "updated": time.time()}))
    assert jobs.read_run(runs_root / "cli").state == "vanished"
    # a recycled pid: alive, but not the process that was launched
    (runs_root / "recycled").mkdir()
    (runs_root / "recycled" / "job.json").write_text(json.dumps({"pid": os.getpid(), "pid_started": 1.0,
                                                                  "started": 2.0}))
    recycled = jobs.read_run(runs_root / "recycled")
    assert recycled.state == "vanished" and "Resume" in recycled.message
    # the limit counts neither
    assert jobs.launch(tiny("next", epochs=1)).active


@pytest.mark.integration
def test_the_limit_counts_command_line_runs_and_is_a_setting(runs_root, monkeypatch):
    (runs_root / "cli").mkdir()  # its status.json names a live process (this one)
    (runs_root / "cli" / "status.json").write_text(json.dumps({"state": "running", "pid": os.getpid(),
                                                               "updated": time.time()}))
    assert jobs.read_run(runs_root / "cli").state == "running"
    with pytest.raises(jobs.JobError, match="'cli' is still training"):
        jobs.launch(tiny("x"))
    with pytest.raises(jobs.JobError, match="stop it first"):
        jobs.delete("cli")
    monkeypatch.setenv(jobs.MAX_RUNS_ENV, "2")
    assert jobs.launch(tiny("x", epochs=1)).active


@pytest.mark.parametrize("change, message", [
    ({"epochs": 0}, "Epochs must be a whole number of at least 1"),
    ({"lr": -0.001}, "Learning rate must be a number above 0, or empty for the default"),
    ({"lr": 0.0}, "Learning rate must be a number above 0"),
    ({"lr": "fast"}, "Learning rate must be a number above 0"),
    ({"log_every": 0}, "Log every (steps) must be a whole number of at least 1"),
    ({"name": "../escape"}, "no '/' and no '..'"),
    ({"name": "a/b"}, "no '/' and no '..'"),
    ({"name": "x..y"}, "no '/' and no '..'"),
    ({"batch_size": 0}, "Batch size must be a whole number of at least 1"),
    ({"batch_size": 1024}, "larger than the 512 training examples"),
    ({"batch_size": 30000, "limit_train": None}, "larger than the 20000 training examples"),
    ({"data": "mnist"}, "does not fit data set mnist"),
    ({"preset": "realnvp"}, "does not fit data set moons"),
    ({"seed": -1}, "Seed must be"),
    ({"threads": 0}, "CPU threads must be a whole number of at least 1"),
    ({"threads": "two"}, "CPU threads must be a whole number of at least 1"),
    ({"limit_train": 0}, "Training examples must be a whole number of at least 1, or empty"),
    ({"limit_test": 2.5}, "Test examples must be a whole number of at least 1, or empty"),
    ({"digit": 10}, "Only this digit must be a whole number of at least 0 and at most 9, or empty"),
    ({"digit": 3}, "the toy set moons has none: leave it empty"),
    ({"preset": "realnvp-fast", "data": "mnist", "digit": 1, "limit_train": None, "batch_size": 7000},
     "larger than the 6742 training examples"),  # the training 1s
])
def test_bad_specs_are_refused_before_anything_starts(runs_root, change, message):
    """The form's checks are the command line's (flow.options), worded with the form's labels."""
    spec = tiny("ok")
    for key, value in change.items():
        setattr(spec, key, value)
    assert any(message in p for p in jobs.validate(spec)), jobs.validate(spec)
    with pytest.raises(jobs.JobError, match="(?s)" + re.escape(message)):
        jobs.launch(spec)
    assert list(runs_root.iterdir()) == []


def test_the_form_s_text_is_read_by_each_option_s_rule():
    spec = jobs.read_form({"preset": "toy-2d", "data": "moons", "name": "r", "epochs": " 12 ", "batch_size": "1e9",
                           "lr": "2e-3", "limit_train": "", "digit": None, "seed": "ten", "threads": "1"})
    assert (spec.epochs, spec.batch_size, spec.lr, spec.limit_train, spec.digit, spec.threads) == (
        12, 10**9, 2e-3, None, None, 1)
    assert spec.seed == "ten" and "Seed must be a whole number of at least 0 and at most 4294967295 (got 'ten')." in \
        jobs.validate(spec)  # text that is no number is refused as typed, never dropped
    assert any("Batch size 1000000000 is larger than the 20000 training examples" in p for p in jobs.validate(spec))


def test_a_good_spec_passes_and_names_are_unique(runs_root):
    assert jobs.validate(tiny("fine")) == []
    (runs_root / "taken").mkdir()
    assert any("already exists" in p for p in jobs.validate(tiny("taken")))
    with pytest.raises(jobs.JobError, match="no run named"):
        jobs.get_run("../etc")


def test_metrics_progress_eta_and_units(tmp_path):
    lines = [{"kind": "step", "step": 10, "epoch": 0.5, "train_bpd": 2.0, "test_bpd": None, "images_per_s": 100.0,
              "wall_time": 30.0},
             {"kind": "epoch", "step": 20, "epoch": 1.0, "train_bpd": None, "test_bpd": 1.5, "images_per_s": 90.0,
              "wall_time": 60.0}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + '\n{"kind": "st')
    metrics = jobs.read_metrics(tmp_path)
    assert list(metrics.kind) == ["step", "epoch"]  # the line being written is skipped
    run = jobs.Run(name="r", path=tmp_path, state="running", epochs=4, data="mnist")
    p = jobs.progress(run, metrics)
    assert (p.epoch, p.fraction, p.step, p.images_per_s) == (1.0, 0.25, 20, 100.0)
    assert p.eta_s == pytest.approx(180.0)  # 3 epochs left at 60 s an epoch
    assert "epoch 1.00 / 4" in p.text and "3 min 00 s left" in p.text and "100 images/s" in p.text
    toy = jobs.progress(jobs.Run(name="t", path=tmp_path, state="running", epochs=4, data="moons"), metrics)
    assert "100 points/s" in toy.text  # a 2-D run trains on points, not images
    assert jobs.bpd_to_nats(1.0, jobs.data_dim("mnist")) == pytest.approx(784 * math.log(2))
    assert jobs.bpd_to_nats(1.0, jobs.data_dim("moons")) == pytest.approx(2 * math.log(2))
    assert jobs.progress(run, jobs.read_metrics(tmp_path / "none")) is None


@pytest.mark.parametrize("name", ["moons", "mnist"])
def test_sizes_and_shapes_match_the_data_sets(name):
    for split in ("train", "test"):
        data = load_dataset(name, split)
        assert dataset_size(name, split) == len(data) and example_shape(name) == tuple(data.shape[1:])
    assert jobs.data_dim(name) == math.prod(example_shape(name))


def test_a_data_file_spec_is_checked_by_its_shape_fit_and_size(runs_root):
    """A run on an uploaded file: the preset must suit its examples, the batch fit its training split (a tenth
    held out), the digit stay empty; a file gone since is named; the data sets' folder is no run and no run name."""
    import numpy as np

    folder = runs_root / jobs.DATASETS_DIR / "0123456789ab"
    folder.mkdir(parents=True)
    np.save(folder / "pts.npy", np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32))
    np.savez(folder / "tiles.npz", x=np.zeros((50, 12, 12), np.uint8))
    pts, tiles = str(folder / "pts.npy"), str(folder / "tiles.npz")
    assert jobs.validate(tiny("p", data=pts, batch_size=64, limit_train=None)) == []
    assert jobs.validate(tiny("t", preset="realnvp-fast", data=tiles, batch_size=16, limit_train=None)) == []
    assert (jobs.data_kind(pts), jobs.data_kind(tiles), jobs.data_dim(tiles)) == ("points", "images", 144)
    for change, message in [({"data": tiles}, "Preset toy-2d does not fit tiles.npz, whose examples have shape "
                                              "(1, 12, 12)"),
                            ({"batch_size": 100}, "Batch size 100 is larger than the 90 training examples"),
                            ({"digit": 3}, "pts.npy has none: leave it empty"),
                            ({"data": str(folder / "gone.npy")}, "gone.npy cannot be read (gone, or not a data set)"),
                            ({"name": jobs.DATASETS_DIR}, "taken by the folder of uploaded data sets")]:
        spec = tiny("p", data=pts, batch_size=64, limit_train=None)
        for key, value in change.items():
            setattr(spec, key, value)
        problems = jobs.validate(spec)
        assert any(message in p for p in problems), (change, problems)
    assert jobs.list_runs(runs_root) == []  # datasets/ is not listed as a (vanished) run
    assert jobs.default_name(tiny("", data=pts)).startswith("toy-2d-pts-")
