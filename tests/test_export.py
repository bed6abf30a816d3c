"""Take a run away (app.export): the zip of real tiny runs, unzipped and used as a student would, outside the
checkout: its script loads and samples, its command parses with flow.train's parser and trains the run again."""
import io
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app import export, jobs
from flow.checkpoint import read_header
from flow.train import build_parser
from flow.files import ROOT
from tests.helpers import ENV, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # real trainer processes

# outside the checkout, as after `pip install realnvp-explorer` (this checkout on the path, whether or not installed)
OUTSIDE = {**ENV, "PYTHONPATH": str(ROOT)}
TINY = ["--epochs", "2", "--batch-size", "32", "--log-every", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A toy-2d run on a points file and a seed-mlp run on an 8x8 image file, each a few steps, as the Train page
    stores uploads (<runs root>/datasets/<hash>/<name>)."""
    root = tmp_path_factory.mktemp("runs")
    g = np.random.default_rng(0)
    points = root / "datasets" / "0123456789ab" / "blobs.npy"
    points.parent.mkdir(parents=True)
    np.save(points, (g.normal(size=(200, 2)) + np.where(g.random((200, 1)) < 0.5, -1.5, 1.5)).astype(np.float32))
    images = root / "datasets" / "ba9876543210" / "tiles.npz"
    images.parent.mkdir(parents=True)
    np.savez(images, x=(g.random((100, 8, 8)) < 0.3).astype(np.uint8) * 255)
    train("--preset", "toy-2d", "--data", str(points), *TINY, "--run-dir", str(root / "blobs-run"))
    train("--preset", "seed-mlp", "--data", str(images), "--epochs", "1", "--batch-size", "30",
          "--run-dir", str(root / "tiles-run"), "--set", "hidden=[16,16]")
    return {name: jobs.read_run(root / name) for name in ("blobs-run", "tiles-run")}


def unzip(archive: bytes, where: Path, folder: str) -> Path:
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        z.extractall(where)
    return where / folder


def command(folder: Path) -> list[str]:
    line = (folder / "command.txt").read_text().strip()
    assert "\n" not in line
    return shlex.split(line)


def test_a_points_run_unzips_samples_and_retrains_to_the_same_figure(runs, tmp_path):
    run = runs["blobs-run"]
    folder = unzip(export.run_zip(run), tmp_path, run.name)
    assert {p.name for p in folder.iterdir()} == {"checkpoint.safetensors", "command.txt", "metrics.jsonl",
                                                  "metrics.csv", "load_and_sample.py", "README.txt", "data"}
    assert (folder / "data" / "blobs.npy").read_bytes() == Path(read_header(run.checkpoint)[1]["data"]).read_bytes()
    assert (folder / "metrics.jsonl").read_text() == (run.path / "metrics.jsonl").read_text()
    assert len((folder / "metrics.csv").read_text().splitlines()) == len(jobs.read_metrics(run.path)) + 1

    sampled = subprocess.run([sys.executable, "load_and_sample.py"], cwd=folder, env=OUTSIDE, capture_output=True,
                             text=True, timeout=120)
    assert sampled.returncode == 0, sampled.stderr
    assert "toy-2d on" in sampled.stdout and sampled.stdout.count("[") >= 10  # ten printed points

    # the command: flow.train's own parser takes it, with the data file in the zip, and every recorded option
    argv = command(folder)
    assert argv[:3] == ["python", "-m", "flow.train"]
    args = build_parser().parse_args(argv[3:])
    assert args.data == "data/blobs.npy" and (args.preset, args.epochs, args.batch_size, args.seed) == (
        "toy-2d", 2, 32, 3)
    # run from the unzipped folder it trains the same model again: the same test bits/dim to the last digit
    again = subprocess.run([sys.executable, *argv[1:]], cwd=folder, env=OUTSIDE, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert read_header(folder / "retrained" / "checkpoint.safetensors")[1]["test_bpd"] == run.test_bpd


def test_an_image_run_samples_to_a_png_and_keeps_its_architecture(runs, tmp_path):
    run = runs["tiles-run"]
    folder = unzip(export.run_zip(run), tmp_path, run.name)
    sampled = subprocess.run([sys.executable, "load_and_sample.py"], cwd=folder, env=OUTSIDE, capture_output=True,
                             text=True, timeout=120)
    assert sampled.returncode == 0, sampled.stderr
    from PIL import Image

    with Image.open(folder / "samples.png") as im:  # 8 x 8 samples of 8x8 pixels, 4x, with the grid's gaps
        assert im.mode == "L" and im.size[0] > 8 * 8 * 4
    args = build_parser().parse_args(command(folder)[3:])
    assert dict(args.overrides) == {"hidden": [16, 16]} and args.data == "data/tiles.npz"
    assert len([line for line in (folder / "load_and_sample.py").read_text().splitlines() if line.strip()]) <= 15


def test_a_data_set_too_large_for_the_zip_is_named_where_it_lives(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "DATA_IN_ZIP_MB", 0)
    run = runs["blobs-run"]
    folder = unzip(export.run_zip(run), tmp_path, run.name)
    data = read_header(run.checkpoint)[1]["data"]
    assert not (folder / "data").exists()
    assert build_parser().parse_args(command(folder)[3:]).data == data
    assert data in (folder / "README.txt").read_text()


def test_a_run_without_a_checkpoint_is_refused_by_name(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(export.ExportError, match="Run 'empty' has no readable checkpoint"):
        export.run_zip(jobs.read_run(tmp_path / "empty"))
