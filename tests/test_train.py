"""The training and evaluation command lines, run for real as processes on real MNIST."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from flow.checkpoint import load_checkpoint
from flow.distributed import bf16_problem
from flow.files import ROOT
from flow.train import lr_factor
from tests.helpers import ENV, metrics, train

MNIST_SMALL = ["--preset", "seed-mlp", "--data", "mnist", "--limit-train", "3000", "--limit-test", "500",
               "--batch-size", "50", "--log-every", "10", "--warmup", "20"]


@pytest.mark.slow
def test_short_mnist_training_lowers_test_bpd_and_evaluate_agrees(tmp_path):
    run = tmp_path / "run"
    proc = train(*MNIST_SMALL, "--epochs", "2", "--run-dir", str(run))
    assert "epoch 1/2" in proc.stderr  # the tqdm bar
    epochs = [m for m in metrics(run) if m["kind"] == "epoch"]
    steps = [m for m in metrics(run) if m["kind"] == "step"]
    assert len(epochs) == 2 and len(steps) == 12
    assert all(m["train_bpd"] > 0 and m["images_per_s"] > 0 for m in steps)
    assert epochs[1]["test_bpd"] < epochs[0]["test_bpd"] < 9.0
    assert steps[-1]["train_bpd"] < steps[0]["train_bpd"]
    assert (run / "samples" / "epoch_001.png").exists() and (run / "samples" / "epoch_002.png").exists()
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished"
    model = load_checkpoint(run / "checkpoint.safetensors")
    assert model.metadata["epoch"] == 2 and model.metadata["preset"] == "seed-mlp"
    out = subprocess.run([sys.executable, "-m", "flow.evaluate", "--checkpoint", str(run / "checkpoint.safetensors"),
                          "--limit", "500"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    report = json.loads(out.stdout)
    assert report["n"] == 500
    assert report["test_bpd"] == pytest.approx(epochs[1]["test_bpd"], abs=1e-4)


@pytest.mark.slow
def test_resume_continues_from_the_saved_epoch_with_optimizer_state(tmp_path):
    run = tmp_path / "run"
    args = ["--preset", "toy-2d", "--data", "moons", "--run-dir", str(run)]
    train(*args, "--epochs", "1", "--beta2", "0.95")
    first = load_checkpoint(run / "checkpoint.safetensors").metadata
    state = torch.load(run / "train_state.pt", weights_only=True)
    assert state["epoch"] == 1 and state["optimizer"]["state"]
    assert first["beta2"] == 0.95 and state["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    train(*args, "--epochs", "2", "--resume")  # keeps the run's beta2
    second = load_checkpoint(run / "checkpoint.safetensors").metadata
    assert second["beta2"] == 0.95
    train(*args, "--epochs", "3", "--resume", "--beta2", "0.99")  # a new one wins over the saved optimizer's
    state = torch.load(run / "train_state.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.99)
    assert (first["epoch"], second["epoch"]) == (1, 2)
    assert second["step"] == 2 * first["step"]
    epochs = [m for m in metrics(run) if m["kind"] == "epoch"]
    assert [round(m["epoch"]) for m in epochs] == [1, 2, 3]


@pytest.mark.slow
def test_divergence_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    args = ["--preset", "toy-2d", "--data", "moons", "--run-dir", str(run)]
    train(*args, "--epochs", "1")
    good = (run / "checkpoint.safetensors").read_bytes()
    proc = train(*args, "--epochs", "2", "--resume", "--lr", "1000", "--warmup", "0", check=False)
    assert proc.returncode == 3
    assert "diverged" in proc.stderr and "lower learning rate" in proc.stderr
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "diverged" and "last good checkpoint is kept" in status["message"]
    assert (run / "checkpoint.safetensors").read_bytes() == good
    assert load_checkpoint(run / "checkpoint.safetensors").metadata["epoch"] == 1


@pytest.mark.slow
def test_sigterm_stops_after_the_current_step_and_saves(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "flow.train", "--preset", "toy-2d", "--data", "moons",
                             "--epochs", "500", "--log-every", "5", "--run-dir", str(run)], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (run / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (run / "metrics.jsonl").exists(), "training never logged a step"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped"
    model = load_checkpoint(run / "checkpoint.safetensors")
    assert model.metadata["step"] == status["step"] > 0
    assert model.metadata["epoch"] == status["epoch"] < 500
    # resuming a run stopped mid-epoch skips the batches it had already trained on
    train("--run-dir", str(run), "--resume", "--epochs", str(status["epoch"] + 1))
    resumed = load_checkpoint(run / "checkpoint.safetensors").metadata
    assert resumed["epoch"] == status["epoch"] + 1
    assert resumed["step"] == (status["epoch"] + 1) * (20000 // 256)
    assert resumed["preset"] == "toy-2d" and resumed["data"] == "moons"


@pytest.mark.slow
def test_bf16_training_is_recorded_or_refused_where_the_cpu_would_emulate_it(tmp_path):
    run = tmp_path / "run"
    proc = train(*MNIST_SMALL, "--epochs", "1", "--bf16", "--device", "cpu", "--run-dir", str(run), check=False)
    problem = bf16_problem(torch.device("cpu"))
    if problem:  # an honest refusal: emulated bf16 is slower than float32
        assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1] == f"error: {problem}"
        return
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = load_checkpoint(run / "checkpoint.safetensors")
    assert model.metadata["precision"] == "bf16 autocast" and model.metadata["test_bpd"] < 9.0
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps float32 weights


@pytest.mark.integration
def test_bad_arguments_are_refused(tmp_path):
    proc = train("--preset", "toy-2d", "--data", "mnist", "--run-dir", str(tmp_path / "r"), check=False)
    assert proc.returncode != 0 and "does not fit" in proc.stderr
    proc = train("--preset", "toy-2d", "--data", "moons", "--epochs", "0", "--run-dir", str(tmp_path / "r"),
                 check=False)
    assert proc.returncode != 0 and "--epochs" in proc.stderr
    proc = train("--help")
    assert all(p in proc.stdout for p in ("seed-mlp", "realnvp", "toy-2d"))


@pytest.mark.parametrize("schedule, expected", [
    ("constant", [0.25, 1.0, 1.0, 1.0, 1.0]),
    ("cosine", [0.25, 1.0, 0.5, 0.0, 0.0]),  # half way: cos(pi / 2) -> 0.5
    ("linear", [0.25, 1.0, 0.5, 0.0, 0.0]),
])
def test_learning_rate_warms_up_then_follows_its_schedule(schedule, expected):
    # (progress, step) after 0 and 3 of 4 warm-up steps, half way, at the end, past it (a time limit overrun)
    points = [(0.0, 0), (0.0, 3), (0.5, 100), (1.0, 200), (1.2, 240)]
    assert [lr_factor(p, s, 4, schedule) for p, s in points] == pytest.approx(expected)
    if schedule != "constant":  # the two decays part ways elsewhere: cosine stays higher early, lower late
        assert lr_factor(0.25, 50, 4, schedule) == pytest.approx(0.75 if schedule == "linear" else 0.8536, abs=1e-4)
