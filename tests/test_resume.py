"""--resume keeps what a run was started with (flow.options declares, per option, what --resume does): the real
command line in processes of its own, on toy runs of 64 moons points (2 steps an epoch, seconds)."""
import shutil

import pytest
import torch

from app import jobs
from flow.checkpoint import load_checkpoint, save_checkpoint
from flow.options import CALL, KEPT, OPTIONS, TUNED, resolve
from flow.run_protocol import EXIT_REFUSED
from tests.helpers import metrics, train, wait_for

# every option away from its default, so that one falling back to its default shows
STARTED = {"--preset": "toy-2d", "--data": "moons", "--limit-train": "64", "--limit-test": "64", "--batch-size": "32",
           "--seed": "5", "--warmup": "7", "--schedule": "linear", "--weight-decay": "0.0001", "--grad-clip": "5.0",
           "--log-every": "1", "--snapshot-every": "3", "--lr": "0.002", "--beta2": "0.99", "--class-weight": "0.5"}
ARGS = [part for item in STARTED.items() for part in item]
RECORD = {"preset": "toy-2d", "data": "moons", "limit_train": 64, "limit_test": 64, "batch_size": 32, "seed": 5,
          "warmup": 7, "schedule": "linear", "weight_decay": 1e-4, "grad_clip": 5.0, "log_every": 1,
          "snapshot_every": 3, "lr": 2e-3, "beta2": 0.99, "digit": None, "class_weight": 0.5}


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """A finished one-epoch run, started with ARGS; tests that resume it work on a copy."""
    run = tmp_path_factory.mktemp("resume") / "started"
    train(*ARGS, "--epochs", "1", "--run-dir", str(run))
    return run


def copy(run, to):
    return shutil.copytree(run, to / run.name)


def steps(run) -> list[int]:
    return [m["step"] for m in metrics(run) if m["kind"] == "step"]


def snapshots(run) -> list[str]:
    return sorted(p.stem for p in (run / "snapshots").glob("*.safetensors"))


def options(run) -> dict:
    return load_checkpoint(run / "checkpoint.safetensors").metadata["options"]


def error_line(proc) -> str:
    """The command's one `error:` line, its last, with no traceback before it."""
    assert proc.returncode == EXIT_REFUSED and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and proc.stderr.count("error:") == 1, proc.stderr
    return last


@pytest.mark.integration
def test_the_readme_resume_keeps_every_option_the_run_was_started_with(started, tmp_path):
    assert options(started) == {**RECORD, "epochs": 1, "time_limit": None, "max_steps": None}
    run = copy(started, tmp_path)
    train("--run-dir", str(run), "--resume", "--epochs", "2")  # the README's command: nothing else given
    assert steps(run) == [1, 2, 3, 4]  # 64 points in steps of 32 (not 20,000 points: 625 steps an epoch)
    assert options(run) == {**RECORD, "epochs": 2, "time_limit": None, "max_steps": None}
    group = torch.load(run / "train_state.pt", weights_only=True)["optimizer"]["param_groups"][0]
    assert (group["weight_decay"], group["betas"]) == (1e-4, (0.9, 0.99))  # what the optimizer trained with
    assert snapshots(run) == ["step_0000000", "step_0000003"]  # every 3 steps, not the default's every step

    # the same values again are no change; a tuned option given again is taken, and kept for the next resume
    train(*ARGS, "--lr", "0.0005", "--warmup", "0", "--run-dir", str(run), "--resume", "--epochs", "3")
    assert steps(run) == [1, 2, 3, 4, 5, 6] and snapshots(run)[-1] == "step_0000006"
    assert options(run) == {**RECORD, "lr": 5e-4, "warmup": 0, "epochs": 3, "time_limit": None, "max_steps": None}


@pytest.mark.integration
@pytest.mark.parametrize("given, was", [
    (["--limit-train", "256"], "with --limit-train 64"),
    (["--preset", "seed-mlp"], "with --preset toy-2d"),
    (["--data", "circles"], "with --data moons"),
    (["--set", "hidden=[32,32]"], "with --set hidden=[64,64]"),
    (["--seed", "0"], "with --seed 5"),
    (["--batch-size", "64", "--digit", "3"], "with --batch-size 32 and without --digit"),
])
def test_resume_refuses_to_change_a_kept_option_and_says_how_to_start_a_new_run(started, given, was):
    before = (started / "checkpoint.safetensors").read_bytes(), (started / "metrics.jsonl").read_text()
    proc = train("--run-dir", str(started), "--resume", "--epochs", "2", *given, check=False)
    line = error_line(proc)
    asked = ", ".join(f"{flag} {value}" for flag, value in zip(given[::2], given[1::2]))
    assert line.startswith(f"error: this run was started {was}, and --resume keeps ") and f"(asked: {asked})" in line
    new_run = line.split("start a new run: ")[1]
    assert new_run.startswith("python -m flow.train --run-dir NEW ") and " --limit-test 64" in new_run  # the run's
    assert all(f"{flag} {value}" in new_run for flag, value in zip(given[::2], given[1::2]))  # own, and the new
    assert ((started / "checkpoint.safetensors").read_bytes(), (started / "metrics.jsonl").read_text()) == before


@pytest.mark.integration
def test_a_run_recorded_before_its_options_were_still_resumes_on_what_its_checkpoint_names(started, tmp_path):
    run = copy(started, tmp_path)
    model = load_checkpoint(run / "checkpoint.safetensors")
    legacy = {k: v for k, v in model.metadata.items() if k not in ("options", "library")}
    save_checkpoint(model, run / "checkpoint.safetensors", **legacy)  # as the trainer saved it before
    # its batch size is in the checkpoint, so it is kept; its training set is not, so the command line says it
    refused = train("--run-dir", str(run), "--resume", "--epochs", "2", "--batch-size", "16", check=False)
    assert "with --batch-size 32, and --resume keeps it" in error_line(refused)
    proc = train("--run-dir", str(run), "--resume", "--epochs", "2", "--limit-train", "64", "--log-every", "1")
    assert "predates the record of its options" in proc.stderr
    assert steps(run) == [1, 2, 3, 4]
    recorded = options(run)  # recorded from now on: what it was resumed with, the rest the defaults it assumed
    assert (recorded["limit_train"], recorded["batch_size"], recorded["lr"], recorded["seed"]) == (64, 32, 2e-3, 0)


@pytest.mark.integration
def test_the_train_page_resume_of_a_command_line_run_keeps_its_options(started, runs_root):
    run = copy(started, runs_root)
    resumed = jobs.resume(run.name, 2)  # what the Train page's Resume button calls
    done = wait_for(lambda: (r := jobs.read_run(run)).state == "finished" and r, "the resumed run to finish", 120)
    assert done.job["returncode"] == 0 and "--limit-train" in resumed.job["command"]
    assert steps(run) == [1, 2, 3, 4] and options(run)["limit_train"] == 64
    assert (done.job["limit_train"], done.job["seed"], done.job["batch_size"]) == (64, 5, 32)  # shown on the page


def test_each_option_says_what_resume_does_with_it():
    kinds = {o.name: o.on_resume for o in OPTIONS}
    assert {k for k, v in kinds.items() if v == CALL} == {"epochs", "time_limit", "max_steps"}
    assert {k for k, v in kinds.items() if v == KEPT} == {"preset", "data", "batch_size", "seed", "limit_train",
                                                          "limit_test", "digit"}
    assert all(v == TUNED for k, v in kinds.items() if k in ("lr", "beta2", "schedule", "warmup", "weight_decay"))


def test_resolve_takes_the_record_unless_an_option_may_change_on_resume():
    fresh, changed = resolve({"preset": "toy-2d"}, None)
    assert fresh["seed"] == 0 and fresh["epochs"] == 10 and fresh["limit_train"] is None and changed == []
    values, changed = resolve({"epochs": 4, "lr": 0.5}, {**RECORD, "epochs": 1, "time_limit": 60.0})
    assert (values["epochs"], values["lr"], values["limit_train"], values["time_limit"]) == (4, 0.5, 64, None)
    assert changed == []
    _, changed = resolve({"seed": 5, "limit_train": 10, "limit_test": 64}, RECORD)
    assert changed == [("--limit-train", 64, 10)]
    # a record without options (an older run): what it has is kept, the rest is the command line's or the default
    values, changed = resolve({"limit_train": 10}, {"preset": "toy-2d", "batch_size": 32})
    assert (values["limit_train"], values["batch_size"], values["seed"]) == (10, 32, 0) and changed == []
