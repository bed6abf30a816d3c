"""Faults and bad input: a trainer killed mid-write, full and unwritable disks, broken checkpoint files,
a diverging run, hostile run names, many launches at once, and the safe defaults. Real processes, real
files, the real app under AppTest; the browser-level checks are in tests/browser."""
import json
import os
import pickle
import resource
import select
import shutil
import threading
import tomllib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from app import jobs
from app.catalog import CHECKPOINT_DIR, CHECKPOINTS_ENV, list_models
from flow.checkpoint import CheckpointError, load_checkpoint, read_header
from flow.files import ROOT
from flow.run_protocol import EXIT_DIVERGED, EXIT_WRITE_FAILED
from tests.app_helpers import APP, app, fill, texts, tiny
from tests.helpers import train, wait_for

pytestmark = pytest.mark.integration  # real trainings, full disks and the app under AppTest

TOY = ["--preset", "toy-2d", "--data", "moons", "--batch-size", "64", "--limit-train", "512", "--limit-test", "256",
       "--log-every", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished one-epoch run of 8 steps of 64 moons points, launched as the Train page does (its job.json keeps
    the small settings for a resume); tests copy it."""
    root = tmp_path_factory.mktemp("trained")
    run = jobs.launch(tiny("run", epochs=1), root=root)
    wait_for(lambda: jobs.read_run(run.path).state == "finished", "the first epoch", 120)
    return run.path


@pytest.fixture
def app_dirs(runs_root, tmp_path_factory, monkeypatch) -> tuple[Path, Path]:
    """(checkpoints folder, runs folder), both temporary and both what the app lists."""
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    monkeypatch.setenv(CHECKPOINTS_ENV, str(checkpoints))
    return checkpoints, runs_root


def copy_run(trained: Path, runs: Path, name: str) -> Path:
    shutil.copytree(trained, runs / name)
    return runs / name


def leftovers(folder: Path) -> list[str]:
    """Temporary files of interrupted writes."""
    return sorted(p.name for p in folder.rglob("*.tmp"))


@contextmanager
def file_size_limit(nbytes: int):
    """Writes past `nbytes` fail with EFBIG in this process and in the processes it starts meanwhile:
    a full disk, by the kernel's own means (RLIMIT_FSIZE; Python ignores SIGXFSZ, so writes raise OSError)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def page_says(name: str) -> AppTest:
    """The Train page with run `name` chosen (as its URL ?run=name does)."""
    return app("app_pages/train.py", run=name)


# ----- a trainer killed while it writes a checkpoint -------------------------------------------------------------

def test_sigkill_in_the_middle_of_a_checkpoint_write_keeps_the_previous_one_and_the_run_resumes(app_dirs, trained):
    _, runs = app_dirs
    path = copy_run(trained, runs, "killed")
    good = (path / "checkpoint.safetensors").read_bytes()
    run = jobs.resume("killed", 3)
    # The trainer writes its checkpoint to .checkpoint.safetensors.<pid>.tmp, then renames it. A named pipe in
    # that place makes the write deterministic: it blocks until we read, so we kill it with the file half written.
    pipe = path / f".checkpoint.safetensors.{run.pid}.tmp"
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert select.select([reader], [], [], 120)[0], "the trainer never started writing its checkpoint"
        assert len(os.read(reader, 4096)) > 0  # its header and first weights are out; the rest waits
        os.kill(run.pid, 9)
    finally:
        os.close(reader)
    failed = wait_for(lambda: (r := jobs.read_run(path)).state == "failed" and r, "state failed", 30)
    assert "SIGKILL" in failed.message
    assert (path / "checkpoint.safetensors").read_bytes() == good
    assert load_checkpoint(path / "checkpoint.safetensors").metadata["epoch"] == 1
    assert [e.path for e in list_models() if e.source == "run"] == [path / "checkpoint.safetensors"]

    at = page_says("killed")
    assert "killed: failed" in texts(at.markdown) and "SIGKILL" in texts(at.error)
    assert "running" not in texts(at.markdown)

    done = jobs.resume("killed", 2)  # from the intact epoch-1 checkpoint
    done = wait_for(lambda: (r := jobs.read_run(path)).state == "finished" and r, "state finished", 120)
    assert done.checkpoint_epoch == 2
    assert leftovers(path) == []  # the next save removed the dead writer's temporary file


# ----- full and unwritable disks ---------------------------------------------------------------------------------

def test_a_disk_full_mid_run_fails_the_run_with_a_message_and_keeps_the_last_good_files(app_dirs, trained):
    _, runs = app_dirs
    path = copy_run(trained, runs, "full")
    good = (path / "checkpoint.safetensors").read_bytes()
    assert len(good) > 100_000  # so the next checkpoint cannot be written; metrics, status and samples can
    with file_size_limit(100_000):
        jobs.resume("full", 3)
    failed = wait_for(lambda: (r := jobs.read_run(path)).state == "failed" and r, "state failed", 120)
    assert failed.job["returncode"] == EXIT_WRITE_FAILED
    for words in ("cannot write to the run folder", "File too large", "the last good checkpoint is kept", "resume"):
        assert words in failed.message
    assert (path / "checkpoint.safetensors").read_bytes() == good and leftovers(path) == []
    for png in path.rglob("*.png"):  # every picture there is whole
        Image.open(png).verify()
    at = page_says("full")
    assert "full: failed" in texts(at.markdown) and "cannot write to the run folder" in texts(at.error)
    assert not at.exception


def test_a_full_disk_at_launch_is_refused_and_leaves_no_half_made_run(runs_root):
    with file_size_limit(0), pytest.raises(jobs.JobError) as refused:
        jobs.launch(tiny("no-space"))
    assert "Cannot write to the runs folder" in str(refused.value) and "Free some disk space" in str(refused.value)
    assert not (runs_root / "no-space").exists() and leftovers(runs_root) == []


def test_an_unwritable_runs_folder_gets_a_clear_message_on_the_train_page(runs_root, monkeypatch):
    not_a_folder = runs_root / "a-file"
    not_a_folder.write_text("a regular file where a folder should be (chmod does not stop root)")
    monkeypatch.setenv(jobs.RUNS_ENV, str(not_a_folder / "runs"))
    at = fill(app("app_pages/train.py"), preset="toy-2d", data="moons", name="nowhere")
    assert not at.exception and not at.success
    assert "Cannot write to the runs folder" in texts(at.error) and "Not a directory" in texts(at.error)
    # the trainer started by hand on such a folder says the same, without a traceback
    proc = train(*TOY, "--epochs", "1", "--run-dir", str(not_a_folder / "run"), check=False)
    assert proc.returncode == EXIT_WRITE_FAILED
    assert "error: cannot write to the run folder" in proc.stderr and "Traceback" not in proc.stderr


# ----- broken checkpoint files -----------------------------------------------------------------------------------

class _Exploit:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['PWNED_PATH'], 'w').write('pwned')",))


def broken_files(folder: Path) -> dict[str, str]:
    """Write one of each kind of unusable file; {file name: words its listed reason must contain}."""
    good = (CHECKPOINT_DIR / "toy-2d-moons.safetensors").read_bytes()
    (folder / "empty.safetensors").write_bytes(b"")
    (folder / "truncated.safetensors").write_bytes(good[: len(good) // 2])
    (folder / "garbage.safetensors").write_bytes(b"\x00\x13 not a checkpoint" * 100)
    (folder / "evil.safetensors").write_bytes(pickle.dumps({"state_dict": _Exploit()}))
    config, meta = read_header(CHECKPOINT_DIR / "toy-2d-moons.safetensors")
    weights = load_checkpoint(CHECKPOINT_DIR / "toy-2d-moons.safetensors").state_dict()
    header = {"format": "realnvp-explorer/1", "config": json.dumps({**config.__dict__, "hidden": [32, 32]}),
              "metadata": json.dumps({**meta, "test_bpd": 0.1})}  # claims to be the best model: it must not be picked
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "other-architecture.safetensors"),
              metadata=header)
    return {"empty.safetensors": "empty", "truncated.safetensors": "truncated or corrupt",
            "garbage.safetensors": "truncated or corrupt", "evil.safetensors": "truncated or corrupt",
            "other-architecture.safetensors": "do not match its architecture"}


def test_broken_checkpoint_files_are_listed_as_unusable_and_every_page_still_works(app_dirs, monkeypatch):
    checkpoints, _ = app_dirs
    marker = checkpoints.parent / "pwned"
    monkeypatch.setenv("PWNED_PATH", str(marker))
    for name in ("seed-mlp-mnist.safetensors", "toy-2d-moons.safetensors"):
        shutil.copy(CHECKPOINT_DIR / name, checkpoints)
    reasons = broken_files(checkpoints)
    (checkpoints / ".toy-2d-moons.safetensors.4194999.tmp").write_bytes(b"half")  # a dead writer's temporary

    listed = {e.path.name: e for e in list_models()}
    assert set(listed) == {"seed-mlp-mnist.safetensors", "toy-2d-moons.safetensors", *reasons}
    for name, words in reasons.items():
        assert words in listed[name].error, (name, listed[name].error)

    at = app()
    picker = at.sidebar.selectbox(key="model_path")  # only the usable models, the best MNIST one chosen
    assert [o.split(" ·")[0] for o in picker.options] == ["seed-mlp-mnist", "toy-2d-moons"]
    assert picker.value == str(checkpoints / "seed-mlp-mnist.safetensors")
    broken = at.sidebar.expander[0]
    assert broken.label == f"{len(reasons)} unusable checkpoint file(s)"
    for name, words in reasons.items():
        assert any(name in c.value and words in c.value for c in broken.caption), name
    for page in ("app_pages/train.py", "app_pages/explorer.py", "app_pages/latent.py"):
        at.switch_page(page).run()
        assert not at.exception and not at.error, (page, at.exception, texts(at.error))
    assert not marker.exists()  # the pickle was never unpickled


def test_a_checkpoint_with_nan_weights_is_listed_as_unusable_and_never_picked(app_dirs):
    checkpoints, _ = app_dirs
    shutil.copy(CHECKPOINT_DIR / "toy-2d-moons.safetensors", checkpoints)
    model = load_checkpoint(CHECKPOINT_DIR / "seed-mlp-mnist.safetensors")
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    next(v for v in state.values() if v.is_floating_point()).fill_(float("nan"))
    config, meta = read_header(CHECKPOINT_DIR / "seed-mlp-mnist.safetensors")
    save_file(state, str(checkpoints / "nan.safetensors"), metadata={
        "format": "realnvp-explorer/1", "config": json.dumps(config.__dict__), "metadata": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(checkpoints / "nan.safetensors")
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["model_path"] = str(checkpoints / "nan.safetensors")  # as an old session may hold it
    at.switch_page("app_pages/latent.py").run()
    assert not at.exception
    picker = at.sidebar.selectbox(key="model_path")  # a diverged model is no model: not offered, not kept
    assert [o.split(" ·")[0] for o in picker.options] == ["toy-2d-moons"]
    assert picker.value == str(checkpoints / "toy-2d-moons.safetensors")
    assert any("nan.safetensors" in c.value and "NaN" in c.value for c in at.sidebar.expander[0].caption)


# ----- a learning rate that makes training diverge -----------------------------------------------------------------

def test_a_diverged_run_says_so_on_the_train_page_and_suggests_a_lower_rate(app_dirs, trained):
    _, runs = app_dirs
    path = copy_run(trained, runs, "too-fast")
    good = (path / "checkpoint.safetensors").read_bytes()
    proc = train("--run-dir", str(path), "--resume", "--epochs", "3", "--lr", "1000", "--warmup", "0", check=False)
    assert proc.returncode == EXIT_DIVERGED
    at = page_says("too-fast")
    assert not at.exception and "too-fast: diverged" in texts(at.markdown)
    message = texts(at.error)
    assert "diverged" in message and "the last good checkpoint is kept" in message
    assert "Try a lower learning rate than 1000" in message
    assert (path / "checkpoint.safetensors").read_bytes() == good
    assert [e.run_state for e in list_models() if e.name == "too-fast"] == ["diverged"]  # still offered: epoch 1


# ----- hostile run names and paths --------------------------------------------------------------------------------

HOSTILE = ["../escape", "../../etc/passwd", "/tmp/abs", "a/../../b", "..", ".", "x\x00y", "run\n", "~root", "-rf",
           "a" * 65, "%2e%2e%2fx", "C:\\temp", "name with spaces", "ǅ", ""]


def test_hostile_run_names_never_reach_outside_the_runs_folder(runs_root):
    outside = runs_root.parent
    before = sorted(p.name for p in outside.iterdir())
    for name in HOSTILE:
        if name:  # an empty name means "make one up"
            assert jobs.validate(tiny(name)), name
            with pytest.raises(jobs.JobError):
                jobs.launch(tiny(name))
        for action in (jobs.get_run, jobs.stop, jobs.delete, lambda n: jobs.resume(n, 5)):
            with pytest.raises(jobs.JobError, match="no run named"):
                action(name)
    assert sorted(p.name for p in outside.iterdir()) == before and jobs.list_runs() == []


def test_a_run_folder_that_is_a_link_elsewhere_is_not_a_run(runs_root, tmp_path):
    elsewhere = tmp_path.parent / f"{tmp_path.name}-precious"
    elsewhere.mkdir()
    (elsewhere / "thesis.tex").write_text("do not delete")
    (runs_root / "link").symlink_to(elsewhere, target_is_directory=True)
    assert jobs.list_runs() == []
    with pytest.raises(jobs.JobError, match="no run named"):
        jobs.delete("link")
    assert (elsewhere / "thesis.tex").exists()


@pytest.mark.parametrize("query", ["../../etc", "/etc/passwd", "x\x00"])
def test_a_hostile_run_in_the_url_is_ignored(runs_root, query):
    at = page_says(query)
    assert not at.exception and not at.error and "No runs yet" in texts(at.info)


# ----- several sessions at once ----------------------------------------------------------------------------------

def test_many_launches_at_the_same_moment_start_at_most_the_allowed_number(runs_root, monkeypatch):
    monkeypatch.setenv(jobs.MAX_RUNS_ENV, "2")
    names = [f"student{i}" for i in range(5)]
    barrier = threading.Barrier(len(names))  # five sessions press Launch together

    def press(name: str) -> jobs.Run | jobs.JobError:
        barrier.wait()
        try:
            return jobs.launch(tiny(name))
        except jobs.JobError as e:
            return e

    with ThreadPoolExecutor(len(names)) as pool:
        outcomes = list(pool.map(press, names))
    started = sorted(r.name for r in outcomes if isinstance(r, jobs.Run))
    assert len(started) == 2, outcomes
    assert all("at most 2 runs may train" in str(r) for r in outcomes if isinstance(r, jobs.JobError))
    assert sorted(r.name for r in jobs.list_runs()) == started  # what every session lists


# ----- safe defaults ---------------------------------------------------------------------------------------------

def test_the_server_is_local_with_small_uploads_by_default_and_the_readme_says_how_to_open_it():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] in ("localhost", "127.0.0.1")
    assert config["server"]["maxUploadSize"] <= 5
    assert "--server.address 0.0.0.0" in (ROOT / "README.md").read_text()


def test_no_pages_folder_that_streamlit_would_run_without_the_navigation():
    assert not (ROOT / "pages").exists(), ("page scripts belong in app_pages/: Streamlit runs a pages/ folder's "
                                          "scripts on their own when a page URL is opened directly")

