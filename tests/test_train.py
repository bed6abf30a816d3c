"""The training and evaluation command lines, run for real as processes on real MNIST."""
import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from flow.checkpoint import load_checkpoint
from flow.data import load_dataset
from flow.distributed import bf16_problem
from flow.evaluate import main as evaluate_main
from flow.files import ROOT
from flow.run_protocol import EXIT_REFUSED
from flow.train import lr_factor, main
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


# --- data files (issue 30): one tiny run per kind of file, trained once for the module --------------------------
TINY = ["--set", "width=8", "--set", "res_blocks=0", "--set", "couplings_per_half=1", "--set", "final_couplings=1"]


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    """Points (.npy, float64), 16x16 greyscale digits with labels (.npz), 32x32 colour images (.pt)."""
    folder = tmp_path_factory.mktemp("data")
    g = np.random.default_rng(0)
    np.save(folder / "points.npy", g.normal(size=(600, 5)) * [1, 2, 3, 1, 1])
    digits = torch.nn.functional.interpolate(load_dataset("mnist", "test")[:300].float(), size=16)
    np.savez(folder / "digits16.npz", x=digits[:, 0].to(torch.uint8).numpy(), y=np.arange(300) % 10)
    torch.save({"x": torch.from_numpy(g.integers(0, 256, (200, 3, 32, 32), dtype=np.uint8))}, folder / "colour32.pt")
    return folder


@pytest.fixture(scope="module")
def file_runs(data_files, tmp_path_factory):
    """{file name: its run folder}: the points by the command line as a process, the images by flow.train.main."""
    runs = tmp_path_factory.mktemp("runs")
    train("--data", str(data_files / "points.npy"), "--epochs", "1", "--batch-size", "64", "--run-dir",
          str(runs / "points.npy"))
    for name in ("digits16.npz", "colour32.pt"):
        assert main(["--data", str(data_files / name), "--epochs", "1", "--batch-size", "32", *TINY,
                     "--run-dir", str(runs / name)]) == 0
    return {name: runs / name for name in ("points.npy", "digits16.npz", "colour32.pt")}


def evaluate(capsys, *args: str) -> tuple[int, dict | None, str]:
    """flow.evaluate's main in-process: (exit code, its JSON report or None, stderr)."""
    code = evaluate_main(list(args))
    out, err = capsys.readouterr()
    return code, (json.loads(out.strip().splitlines()[-1]) if code == 0 else None), err


@pytest.mark.integration
@pytest.mark.parametrize("name, shape, preset", [("points.npy", (5,), "toy-2d"),
                                                 ("digits16.npz", (1, 16, 16), "realnvp"),
                                                 ("colour32.pt", (3, 32, 32), "realnvp")])
def test_a_run_on_a_data_file_takes_its_shape_records_it_and_evaluates_on_it(file_runs, data_files, capsys, name,
                                                                            shape, preset):
    model = load_checkpoint(file_runs[name] / "checkpoint.safetensors")
    meta, record = model.metadata, model.metadata["data_file"]
    assert model.config.shape == shape and meta["preset"] == preset == meta["options"]["preset"]
    assert meta["data"] == meta["options"]["data"] == str(data_files / name)
    assert record["file"] == name and record["shape"] == list(shape) and len(record["sha256"]) == 64
    assert record["train"] + record["test"] == {"points.npy": 600, "digits16.npz": 300, "colour32.pt": 200}[name]
    assert record["labels"] == (300 if name == "digits16.npz" else 0)
    assert ("float64 converted" in record["note"]) == (name == "points.npy")
    code, report, _ = evaluate(capsys, "--checkpoint", str(file_runs[name] / "checkpoint.safetensors"))
    assert code == 0 and report["n"] == record["test"]
    assert report["test_bpd"] == pytest.approx(meta["test_bpd"], abs=1e-4)  # the trainer's own test figure
    code, report, _ = evaluate(capsys, "--checkpoint", str(file_runs[name] / "checkpoint.safetensors"),
                               "--data", str(data_files / name), "--limit", "3")
    assert code == 0 and report["n"] == 3


@pytest.mark.integration
def test_mismatched_data_files_are_refused_in_one_error_line(file_runs, data_files, capsys, tmp_path):
    points = str(file_runs["points.npy"] / "checkpoint.safetensors")
    for data, words in ((data_files / "digits16.npz", "shape (5,), but digits16.npz's have shape (1, 16, 16)"),
                        ("moons", "moons's have shape (2,)"), (tmp_path / "gone.npy", "check the path")):
        code, _, err = evaluate(capsys, "--checkpoint", points, "--data", str(data))
        assert code == EXIT_REFUSED and err.strip().count("\n") == 0 and err.startswith("error:") and words in err
    np.save(tmp_path / "odd30.npy", np.zeros((40, 30, 30), np.uint8))
    np.save(tmp_path / "ints.npy", np.zeros((40, 2), np.int64))
    for args, words in (
            (["--preset", "toy-2d", "--data", str(data_files / "digits16.npz")], "does not fit digits16.npz"),
            (["--data", str(data_files / "points.npy"), "--preset", "realnvp"], "use --preset toy-2d"),
            (["--data", str(tmp_path / "odd30.npy")], "multiples of 4 (such as 28 or 32)"),
            (["--data", str(tmp_path / "odd30.npy")], "--set n_scales=1"),
            (["--data", str(tmp_path / "ints.npy")], "points must be floats"),
            (["--data", str(tmp_path / "gone.npz")], "check the path")):
        assert main([*args, "--epochs", "1", "--run-dir", str(tmp_path / "run")]) == EXIT_REFUSED
        err = capsys.readouterr().err
        assert err.strip().count("\n") == 0 and err.startswith("error:") and words in err, err
    proc = train("--data", "points.csv", "--run-dir", str(tmp_path / "run"), check=False)  # by its rule, in words
    assert proc.returncode == 2 and "the path of a .npy, .npz or .pt data file (got 'points.csv')" in proc.stderr


@pytest.mark.integration
def test_resume_keeps_the_data_file_and_refuses_a_changed_one(data_files, tmp_path, capsys, monkeypatch):
    shutil.copy(data_files / "points.npy", tmp_path / "mine.npy")
    monkeypatch.chdir(tmp_path)  # a relative path names the same file as the absolute one the run recorded
    args = ["--run-dir", str(tmp_path / "run"), "--batch-size", "128", "--set", "n_blocks=2"]
    assert main(["--data", "mine.npy", "--epochs", "1", *args]) == 0
    assert main(["--data", "mine.npy", "--resume", "--epochs", "2", *args[:2]]) == 0
    assert load_checkpoint(tmp_path / "run" / "checkpoint.safetensors").metadata["epoch"] == 2
    np.save(tmp_path / "mine.npy", np.ones((600, 5)))
    capsys.readouterr()
    assert main(["--resume", "--epochs", "3", *args[:2]]) == EXIT_REFUSED
    err = capsys.readouterr().err
    assert "mine.npy has changed since the run started" in err and err.strip().count("\n") == 0


@pytest.mark.integration
@pytest.mark.parametrize("module", ["flow.train", "flow.evaluate"])
def test_help_answers_without_importing_torch(module):
    code = (f"import runpy, sys\nsys.argv = ['{module}', '--help']\ntry:\n    runpy.run_module('{module}', "
            "run_name='__main__')\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--data" in proc.stdout and proc.stdout.strip().endswith("False"), proc.stderr


@pytest.mark.integration
def test_without_pillow_a_run_trains_without_sample_pictures_and_says_so_once(data_files, tmp_path, capsys,
                                                                               monkeypatch):
    from flow import viz

    monkeypatch.setattr(viz, "PILLOW", False)  # as where Pillow is not installed (the core does not need it)
    assert main(["--data", str(data_files / "digits16.npz"), "--epochs", "2", "--batch-size", "64", *TINY,
                 "--run-dir", str(tmp_path / "run")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: Pillow is not installed, so this run draws no sample pictures (pip install pillow)"]
    assert (tmp_path / "run" / "checkpoint.safetensors").exists() and not list(tmp_path.rglob("*.png"))
