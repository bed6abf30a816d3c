"""Files of valid JSON with values of the wrong type: a checkpoint's header (flow/checkpoint.py), a run folder's
job.json, status.json and metrics.jsonl (app/jobs.py), and checkpoints whose metadata names no data set or one
that contradicts the model's shape (app/catalog.py). Each is refused with its reason in the one reader, so the
app lists it as unusable instead of raising on a page."""
import json
import math
import shutil
from pathlib import Path

import pytest
from safetensors.torch import save_file

from app import jobs
from app.catalog import CHECKPOINT_DIR, CHECKPOINTS_ENV, list_models
from flow.checkpoint import FORMAT, CheckpointError, load_checkpoint, read_header, save_checkpoint, verify_checkpoint
from tests.app_helpers import app, texts

TOY, MNIST = CHECKPOINT_DIR / "toy-2d-moons.safetensors", CHECKPOINT_DIR / "seed-mlp-mnist.safetensors"
PAGES = ["app_pages/home.py", "app_pages/lesson.py", "app_pages/train.py", "app_pages/explorer.py",
         "app_pages/latent.py", "app_pages/lab.py", "app_pages/compare.py"]  # streamlit_app.py's navigation


def rewritten(path: Path, source: Path = TOY, config: object = ..., metadata: object = ..., **meta) -> Path:
    """`source`'s weights under a header of our making: `config` and `metadata` (JSON-able values, or ... for
    the source's own), the metadata's fields updated with `meta`."""
    cfg, stored = read_header(source)
    model = load_checkpoint(source)
    header = {"format": FORMAT,
              "config": json.dumps(cfg.__dict__ if config is ... else config),
              "metadata": json.dumps({**stored, **meta} if metadata is ... else metadata)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=header)
    return path


CONFIG = json.loads(json.dumps(read_header(TOY)[0].__dict__))
BAD_HEADERS = {  # file name: (rewritten's arguments, words of the reason)
    "config-null": ({"config": None}, "config is invalid"),
    "config-list": ({"config": [1, 2]}, "config is invalid"),
    "config-string": ({"config": "abc"}, "config is invalid"),
    "config-number": ({"config": 3}, "config is invalid"),
    "blocks-string": ({"config": {**CONFIG, "n_blocks": "3"}}, "n_blocks must be a whole number"),
    "shape-string": ({"config": {**CONFIG, "shape": "abc"}}, "shape must be a list"),
    "metadata-null": ({"metadata": None}, "metadata is NoneType, not an object"),
    "metadata-list": ({"metadata": [1]}, "metadata is list, not an object"),
    "epoch-string": ({"epoch": "2"}, "epoch must be a number of at least 0 (got '2')"),
    "epoch-negative": ({"epoch": -1.5}, "epoch must be a number of at least 0 (got -1.5)"),
    "bpd-string": ({"test_bpd": "1.2"}, "test bits/dim is 1.2 (not a finite number)"),
    "bpd-nan": ({"test_bpd": math.nan}, "test bits/dim is nan (not a finite number)"),
    "digit-11": ({"digit": 11}, "digit must be a digit 0-9 or null (got 11)"),
    "digit-true": ({"digit": True}, "digit must be a digit 0-9"),
    "data-number": ({"data": 5}, "data must be a string (got 5)"),
    "preset-list": ({"preset": ["toy-2d"]}, "preset must be a string"),
    "data-file-string": ({"data_file": "pts.npy"}, "data_file must be an object with the file's name, sha256"),
    "data-file-shape": ({"data_file": {"file": "pts.npy", "sha256": "ab", "shape": ["5"], "dtype": "float32",
                                       "train": 9, "test": 1}}, "data_file must be an object"),
    "data-file-count": ({"data_file": {"file": "pts.npy", "sha256": "ab", "shape": [5], "dtype": "float32",
                                       "train": 9.5, "test": 1}}, "data_file must be an object"),
}


@pytest.mark.parametrize("name", BAD_HEADERS)
def test_a_header_value_of_the_wrong_type_is_a_checkpoint_error_with_its_reason(tmp_path, name):
    kwargs, words = BAD_HEADERS[name]
    path = rewritten(tmp_path / f"{name}.safetensors", **kwargs)
    for reader in (read_header, verify_checkpoint, load_checkpoint):
        with pytest.raises(CheckpointError) as caught:
            reader(path)
        assert words in caught.value.reason, (reader.__name__, caught.value.reason)


def write_raw(path: Path, header: bytes, length: int | None = None, body: bytes = b"") -> Path:
    path.write_bytes((len(header) if length is None else length).to_bytes(8, "little") + header + body)
    return path


@pytest.mark.parametrize("header, length, words", [
    (b"[1, 2]", None, "its header is not a JSON object"),
    (b"{not json", None, "its header is not JSON"),
    (b'{"__metadata__": {"format": 5}}', None, "__metadata__ is not an object of strings"),
    (b'{"__metadata__": [1]}', None, "__metadata__ is not an object of strings"),
    (b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}', None, "end before its tensors do"),
    (b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": "abc"}}', None, "entry in its header is malformed"),
    (b"{}", 2**40, "header length does not fit"),
])
def test_a_malformed_safetensors_header_is_a_checkpoint_error(tmp_path, header, length, words):
    path = write_raw(tmp_path / "raw.safetensors", header, length)
    for reader in (read_header, verify_checkpoint):
        with pytest.raises(CheckpointError, match=words):
            reader(path)


def test_the_catalog_judges_a_model_by_its_shape_and_refuses_data_that_contradicts_it(tmp_path):
    toy, mnist = load_checkpoint(TOY), load_checkpoint(MNIST)
    save_checkpoint(mnist, tmp_path / "mnist-no-data.safetensors")  # the public API, no data=
    save_checkpoint(toy, tmp_path / "toy-no-data.safetensors")
    save_checkpoint(toy, tmp_path / "toy-unknown.safetensors", data="spirals3d")
    save_checkpoint(mnist, tmp_path / "mnist-as-moons.safetensors", data="moons")
    save_checkpoint(toy, tmp_path / "toy-as-mnist.safetensors", data="mnist")
    save_checkpoint(toy, tmp_path / "toy-circles.safetensors", data="circles", epoch=2)
    listed = {e.name: e for e in list_models(tmp_path)}
    assert listed["mnist-no-data"].error is None and listed["mnist-no-data"].is_image_model
    assert listed["mnist-no-data"].data == "mnist" and listed["mnist-no-data"].shape == (1, 28, 28)
    circles = listed["toy-circles"]
    assert circles.error is None and not circles.is_image_model and (circles.data, circles.epoch) == ("circles", 2)
    for name, words in {"toy-no-data": "a 2-D model needs its data set in its metadata",
                        "toy-unknown": "not 'spirals3d'",
                        "mnist-as-moons": "says data 'moons', but its config is an MNIST model",
                        "toy-as-mnist": "says data 'mnist', but its config is a 2-D model"}.items():
        assert words in (listed[name].error or ""), (name, listed[name].error)


def test_a_run_folder_with_fields_of_the_wrong_type_reads_without_them(tmp_path):
    run = tmp_path / "odd"
    run.mkdir()
    rewritten(run / "checkpoint.safetensors", epoch="2")
    (run / "job.json").write_text(json.dumps({"preset": 5, "data": ["moons"], "epochs": "30", "pid": "12",
                                              "started": "yesterday", "returncode": "0", "stop_requested": "yes"}))
    (run / "status.json").write_text(json.dumps({"state": 7, "message": None, "pid": -1, "updated": "now",
                                                 "epochs": 2.5}))
    good = {"kind": "step", "step": 2, "epoch": 0.25, "train_bpd": 1.5, "test_bpd": None, "images_per_s": 800.0,
            "wall_time": 1.0}
    lines = [good, [1, 2], "step", {**good, "step": "3"}, {**good, "kind": 1}, {**good, "wall_time": True}, 7]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    state = jobs.read_run(run)
    assert (state.preset, state.data, state.epochs, state.pid, state.checkpoint_epoch) == (None, None, None, None, None)
    assert state.state == "vanished" and isinstance(state.started, float)
    metrics = jobs.read_metrics(run)
    assert metrics.step.tolist() == [2.0]  # the one line of the right shape
    assert jobs.progress(state, metrics) is None  # no planned epochs known: no progress bar, no crash


@pytest.fixture
def checkpoints(runs_root, tmp_path_factory, monkeypatch) -> Path:
    folder = tmp_path_factory.mktemp("checkpoints")
    monkeypatch.setenv(CHECKPOINTS_ENV, str(folder))
    return folder


@pytest.mark.integration
def test_files_with_wrong_types_are_listed_as_unusable_on_the_home_page(checkpoints):
    shutil.copy(TOY, checkpoints)
    for name in ("config-null", "metadata-list", "epoch-string", "digit-11", "data-number"):
        rewritten(checkpoints / f"{name}.safetensors", **BAD_HEADERS[name][0])
    at = app()
    assert not at.error, texts(at.error)
    assert [o.split(" ·")[0] for o in at.sidebar.selectbox(key="model_path").options] == ["toy-2d-moons"]
    captions = texts(at.sidebar.expander[0].caption)
    for name in ("config-null", "metadata-list", "epoch-string", "digit-11", "data-number"):
        assert f"{name}.safetensors" in captions and BAD_HEADERS[name][1] in captions, name


@pytest.mark.integration
def test_a_run_whose_checkpoint_says_epoch_two_as_a_string_opens_on_the_train_page(checkpoints, runs_root):
    run = runs_root / "odd-epoch"
    run.mkdir()
    rewritten(run / "checkpoint.safetensors", epoch="2")
    at = app("app_pages/train.py", run="odd-epoch")
    assert at.selectbox(key="train_run").value == "odd-epoch" and not at.exception
    assert "epoch must be a number of at least 0 (got '2')" in texts(at.sidebar.expander[0].caption)


@pytest.mark.integration
def test_every_page_works_with_checkpoints_saved_without_or_with_the_wrong_data(checkpoints):
    toy, mnist = load_checkpoint(TOY), load_checkpoint(MNIST)
    save_checkpoint(mnist, checkpoints / "mnist-no-data.safetensors")
    save_checkpoint(toy, checkpoints / "toy-no-data.safetensors")
    save_checkpoint(mnist, checkpoints / "mnist-as-moons.safetensors", data="moons")
    for only in ("mnist-no-data", "toy-no-data", "mnist-as-moons"):
        at = app(model=only)
        for page in PAGES:
            at.switch_page(page).run()
            assert not at.exception, (only, page, at.exception)
    assert at.sidebar.selectbox(key="model_path").value.endswith("mnist-no-data.safetensors")
