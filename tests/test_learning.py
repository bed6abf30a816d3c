"""Watching a run learn: the fixed latents of its sample pictures, weight snapshots, block statistics, and the
Train page's views of them (issue 17). Real trainings of a few steps; the pictures are compared pixel by pixel."""
import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from app import learning
from app.catalog import list_models
from app.train_plots import block_figure, plane_figure, samples_figure, samples_gif
from flow import explore
from flow.checkpoint import load_checkpoint
from flow.data import load_dataset
from flow.evaluate import evaluate_bpd, main as evaluate_main
from flow.learning import (
    block_stats,
    default_snapshot_every,
    draw_latents,
    list_snapshots,
    read_latents,
    snapshot_path,
)
from flow.model import build_model
from flow.viz import samples_picture, write_png
from tests.app_helpers import app
from tests.helpers import SMALL_MULTISCALE, randomize, train

TINY_MNIST = ["--preset", "seed-mlp", "--data", "mnist", "--limit-train", "500", "--limit-test", "100",
              "--batch-size", "50", "--log-every", "5", "--warmup", "5"]
TINY_TOY = ["--preset", "toy-2d", "--data", "moons", "--limit-train", "512", "--limit-test", "256",
            "--batch-size", "64", "--log-every", "2", "--warmup", "0"]


@pytest.mark.integration
def test_a_one_digit_run_trains_and_is_scored_on_that_class_only(tmp_path, capsys):
    run = tmp_path / "runs" / "ones"  # where list_models(tmp_path) looks for runs
    train(*TINY_MNIST, "--digit", "1", "--epochs", "1", "--run-dir", str(run))
    model = load_checkpoint(run / "checkpoint.safetensors")
    assert model.metadata["digit"] == 1
    assert evaluate_main(["--checkpoint", str(run / "checkpoint.safetensors"), "--limit", "100"]) == 0
    result = json.loads(capsys.readouterr().out)
    ones = load_dataset("mnist", "test", digit=1)[:100]
    assert result["digit"] == 1 and result["test_bpd"] == pytest.approx(model.metadata["test_bpd"], abs=1e-4)
    assert result["test_bpd"] == pytest.approx(evaluate_bpd(model, ones, 100, 0)[0] / 100, abs=1e-4)
    entry = next(e for e in list_models(tmp_path) if e.name == "ones")
    assert entry.label.endswith(" (1s)") and "(the 1s only)" in entry.details


def pixels(picture) -> np.ndarray:
    return np.asarray(picture.convert("L") if isinstance(picture, Image.Image) else Image.open(picture).convert("L"))


def array(value) -> np.ndarray:
    """An array from plotly's JSON: a list, or a typed array {"dtype", "bdata" (base64), "shape"}."""
    if not isinstance(value, dict):
        return np.asarray(value)
    flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return flat.reshape([int(n) for n in str(value.get("shape", len(flat))).split(",")])


@pytest.mark.slow
def test_every_sample_picture_is_decoded_from_the_same_latents_also_after_resume(tmp_path):
    run = tmp_path / "run"
    train(*TINY_MNIST, "--epochs", "1", "--snapshot-every", "5", "--run-dir", str(run))
    z = read_latents(run)
    stored = (run / "samples" / "latents.safetensors").read_bytes()
    assert z.shape == (64, 784)
    # each snapshot's picture is those latents decoded by that snapshot's weights, the epoch's by the checkpoint
    assert [s for s, _ in list_snapshots(run)] == [0, 5, 10]
    for step, path in list_snapshots(run):
        picture = run / "samples" / f"step_{step:07d}.png"
        assert (pixels(samples_picture(load_checkpoint(path), z)) == pixels(picture)).all()
    first = load_checkpoint(run / "checkpoint.safetensors")
    assert (pixels(samples_picture(first, z)) == pixels(run / "samples" / "epoch_001.png")).all()
    # different latents would have drawn another picture: the comparison can tell
    other = draw_latents(first, seed=1)
    assert (pixels(samples_picture(first, other)) != pixels(run / "samples" / "epoch_001.png")).any()

    train(*TINY_MNIST, "--epochs", "2", "--snapshot-every", "5", "--run-dir", str(run), "--resume")
    assert (run / "samples" / "latents.safetensors").read_bytes() == stored  # kept, not drawn again
    second = load_checkpoint(run / "checkpoint.safetensors")
    assert (pixels(samples_picture(second, z)) == pixels(run / "samples" / "epoch_002.png")).all()

    frames = learning.sample_frames(run)  # what the Train page's slider steps through
    assert [(f.step, f.end_of_epoch) for f in frames] == [(0, False), (5, False), (10, True), (15, False),
                                                          (20, True)]
    assert frames[2].label == "epoch 1 · step 10" and frames[1].label == "step 5 · epoch 0.50"
    gif = Image.open(io.BytesIO(samples_gif(frames)))
    assert gif.n_frames == len(frames)
    figure = samples_figure(frames)
    assert len(figure.frames) == len(frames) and figure.layout.sliders[0].active == len(frames) - 1
    assert [s.label for s in figure.layout.sliders[0].steps] == [f.label for f in frames]


@pytest.mark.slow
@pytest.mark.integration
def test_a_toy_run_snapshots_at_the_asked_rate_and_the_page_shows_each_snapshots_density(tmp_path, runs_root):
    run = runs_root / "toy"
    train(*TINY_TOY, "--epochs", "2", "--snapshot-every", "4", "--run-dir", str(run))  # 8 steps an epoch
    snapshots = list_snapshots(run)
    assert [s for s, _ in snapshots] == [0, 4, 8, 12, 16]
    assert [load_checkpoint(p).metadata["step"] for _, p in snapshots] == [0, 4, 8, 12, 16]
    # the last snapshot is the model after step 16, which the final checkpoint also holds
    trained = load_checkpoint(run / "checkpoint.safetensors")
    assert trained.metadata["step"] == 16
    view = learning.snapshot_view(run, snapshot_path(run, 16))
    ticks, density = explore.density(trained, learning.EXTENT, learning.DENSITY_N)
    assert np.array_equal(view.density, density.astype(np.float32)) and np.array_equal(view.ticks, ticks)
    earlier = learning.snapshot_view(run, snapshot_path(run, 12))
    assert np.abs(earlier.density / view.density - 1).max() > 1e-2  # another step, another density
    assert np.array_equal(view.samples, trained.decode(read_latents(run)[:learning.POINTS]).detach().numpy())

    # the Train page replays every snapshot in the browser: one frame each, the density heat map first
    at = app("app_pages/train.py", run="toy")
    assert not at.exception
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    replay = next(c for c in charts if len(c.get("frames", [])) == 5)
    heat = replay["frames"][-1]["data"][0]
    assert heat["type"] == "heatmap" and np.array_equal(array(heat["z"]), density.astype(np.float32))
    assert replay["layout"]["sliders"][0]["steps"][0]["label"].startswith("step 0 ")


def test_snapshots_are_off_for_images_unless_asked_and_about_forty_for_a_2d_run():
    images, points = build_model("seed-mlp"), build_model("toy-2d")
    assert default_snapshot_every(None, images, 9370) == 0
    assert default_snapshot_every(7, images, 9370) == 7
    assert default_snapshot_every(None, points, 234) == 6  # 39 snapshots (and step 0)
    assert default_snapshot_every(0, points, 234) == 0


def test_block_stats_add_up_to_the_log_likelihood_and_see_a_saturated_coupling():
    model = randomize(build_model(SMALL_MULTISCALE)).eval()
    u = torch.rand(16, 1, 8, 8)
    stats = block_stats(model, u)
    names = model.transform.names
    assert len(stats["logdet"]) == len(stats["saturation"]) == len(names)
    assert sum(stats["logdet"]) + stats["prior"] == pytest.approx(model.log_prob(u).mean().item(), abs=1e-2)
    couplings = [i for i, n in enumerate(names) if n.startswith("coupling")]
    assert all((s is None) == (i not in couplings) for i, s in enumerate(stats["saturation"]))
    assert all(0 <= stats["saturation"][i] < 1 for i in couplings)
    first = model.transform.stages[couplings[0]][1]
    with torch.no_grad():  # a huge raw scale: tanh at +-1 on every dimension the coupling transforms
        for p in first.net.parameters():
            p.mul_(100.0)
    assert block_stats(model, u)["saturation"][couplings[0]] == 1.0


def test_sample_frames_come_in_training_order_and_an_epochs_picture_wins_over_its_snapshots(tmp_path):
    folder = tmp_path / "samples"
    folder.mkdir()
    pic = Image.new("L", (4, 4))
    write_png(pic, folder / "step_0000000.png", {"step": "0", "epoch": "0.0000"})
    write_png(pic, folder / "step_0000008.png", {"step": "8", "epoch": "1.0000"})
    write_png(pic, folder / "epoch_001.png", {"step": "8", "epoch": "1.0000"})
    write_png(pic, folder / "step_0000012.png", {"step": "12", "epoch": "1.5000"})
    pic.save(folder / "epoch_002.png")  # from before the trainer wrote its step: the epoch from the name
    pic.save(folder / "samples.png")
    (folder / "latents.safetensors").write_bytes(b"")
    frames = learning.sample_frames(tmp_path)
    assert learning.picture_count(tmp_path) == 5  # not samples.png
    assert [f.path.name for f in frames] == ["step_0000000.png", "epoch_001.png", "step_0000012.png",
                                             "epoch_002.png"]
    assert [f.label for f in frames] == ["step 0 · epoch 0.00", "epoch 1 · step 8", "step 12 · epoch 1.50",
                                         "epoch 2"]


def test_the_plane_figure_replays_each_view_as_a_frame_and_keeps_the_data_still():
    model = build_model("toy-2d")
    z = model.latents(50, seed=0)
    views = [learning.plane_view(model, z, step, step / 8) for step in (0, 4, 8)]
    data = np.zeros((10, 2), np.float32)
    still = plane_figure(views[-1:], data)
    assert not still.frames and not still.layout.sliders
    replay = plane_figure(views, data)
    assert [s.label for s in replay.layout.sliders[0].steps] == ["step 0 · epoch 0.00", "step 4 · epoch 0.50",
                                                                 "step 8 · epoch 1.00"]
    assert all(list(f.traces) == [0, 2, 3] for f in replay.frames)  # the data (trace 1) is sent once
    assert np.array_equal(replay.frames[0].data[0].z, views[0].density)


def test_the_block_history_reads_the_metrics_and_the_figure_shows_each_log_det_in_bits_per_dim(tmp_path):
    model = randomize(build_model("toy-2d"), 0.05)
    records = [{"kind": "step", "step": step, "blocks": block_stats(model, torch.randn(32, 2))} for step in (2, 4)]
    lines = [json.dumps(r) for r in records] + ['{"kind": "epoch", "step": 4}', '{"kind": "st']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    history = learning.block_history(tmp_path, model.transform.names)
    assert list(history.steps) == [2, 4] and history.names == model.transform.names  # toy-2d: no logit
    assert history.logdet.shape == history.saturation.shape == (2, 16)
    assert np.isnan(history.saturation[:, 1::2]).all() and not np.isnan(history.saturation[:, ::2]).any()
    heat = block_figure(history, "moons").data[0]
    assert np.allclose(heat.z, -history.logdet.T / (2 * np.log(2)))  # bits/dim of a 2-D point
    assert learning.block_history(tmp_path / "none", model.transform.names) is None
