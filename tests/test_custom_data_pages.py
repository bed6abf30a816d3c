"""Models trained on a data file (issue 30) in the app: the catalog vouches for the file, the Layer Explorer and the
Latent Playground work on a 16x16 greyscale model and on a 2-D points model with that file's own examples, and the
other pages say in one line what they need. The checkpoints are untrained models ActNorm-started on their file's
examples, saved as `flow.train --data FILE` saves them (metadata data = the file's absolute path, data_file = its
record): the pages are judged against the library's numbers on those same models."""
from __future__ import annotations

import math

import numpy as np
import pytest

from app import jobs
from app.catalog import CHECKPOINTS_ENV, list_models
from flow import explore, latent
from flow.checkpoint import load_checkpoint, save_checkpoint
from flow.data import load_dataset
from flow.datafile import read_data_file
from flow.model import FlowConfig, build_model
from tests.app_helpers import app, chart, numbers, texts

pytestmark = pytest.mark.integration

TINY_IMAGES = FlowConfig(shape=(1, 16, 16), n_scales=2, couplings_per_half=1, final_couplings=1, width=8,
                         res_blocks=0)


def save_trained_on(folder, name: str, data, config, **meta):
    """A model of `config` started on the file's training examples, saved as a run on `data` saves it."""
    record = read_data_file(data)
    model = build_model(config).initialize(record.x[:200]).eval()
    save_checkpoint(model, folder / f"{name}.safetensors", preset="custom", data=str(data.absolute()),
                    data_file=record.record, epoch=1, test_bpd=2.5, **meta)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Checkpoints of a 16x16 image file, a points file, a colour file and a 5-D points file, side by side."""
    root = tmp_path_factory.mktemp("custom")
    g = np.random.default_rng(0)
    rows, cols = np.mgrid[:16, :16]
    centres = g.uniform(4, 12, (60, 2, 1, 1))
    blobs = ((rows - centres[:, 0]) ** 2 + (cols - centres[:, 1]) ** 2 < 12) * 200 + g.integers(0, 50, (60, 16, 16))
    np.savez(root / "blobs16.npz", x=blobs.astype(np.uint8), y=np.arange(60) % 3)
    angle = g.uniform(0, 2 * math.pi, 300)
    np.save(root / "ring.npy", np.stack([np.cos(angle), np.sin(angle)], 1).astype(np.float32) * 2)
    np.save(root / "colour.npy", g.integers(0, 256, (20, 3, 8, 8), dtype=np.uint8))
    np.save(root / "five.npy", g.normal(size=(40, 5)).astype(np.float32))
    save_trained_on(root, "blobs", root / "blobs16.npz", TINY_IMAGES)
    save_trained_on(root, "ring", root / "ring.npy", build_model("toy-2d").config)
    save_trained_on(root, "colour", root / "colour.npy", FlowConfig(shape=(3, 8, 8), n_scales=1, couplings_per_half=1,
                                                                    final_couplings=1, width=8, res_blocks=0))
    save_trained_on(root, "five", root / "five.npy", build_model("toy-2d", shape=(5,)).config)
    return root


@pytest.fixture(autouse=True)
def listed_here(folder, monkeypatch):
    monkeypatch.setenv(CHECKPOINTS_ENV, str(folder))
    monkeypatch.setenv(jobs.RUNS_ENV, str(folder / "runs"))


def test_the_catalog_names_a_file_model_by_its_file_and_tells_what_the_pages_can_show(folder):
    listed = {e.name: e for e in list_models()}
    assert all(e.error is None for e in listed.values()), [e.error for e in listed.values()]
    assert {n: (e.kind, e.data_name, e.noun) for n, e in listed.items()} == {
        "blobs": ("images", "blobs16.npz", "image"), "ring": ("points", "ring.npy", "point"),
        "colour": ("colour", "colour.npy", "image"), "five": ("vectors", "five.npy", "point")}
    assert "custom on blobs16.npz, epoch 1" in listed["blobs"].details
    assert not any(e.is_image_model for e in listed.values())  # none of them runs MNIST's digits
    said = listed["blobs"].reword("A digit of 784 values in the 28×28 layout")
    assert said == "An image of 256 values in the 16×16 layout"


def test_a_missing_or_changed_data_file_makes_its_model_unusable_with_the_reason(tmp_path, monkeypatch):
    data = tmp_path / "points.npy"
    np.save(data, np.random.default_rng(1).normal(size=(50, 2)).astype(np.float32))
    save_trained_on(tmp_path, "gone", data, build_model("toy-2d").config)
    save_trained_on(tmp_path, "changed", data, build_model("toy-2d").config)
    assert all(e.error is None for e in list_models(tmp_path))
    np.save(data, np.random.default_rng(2).normal(size=(50, 2)).astype(np.float32))  # same shape, other points
    assert "has changed since training" in next(e for e in list_models(tmp_path) if e.name == "changed").error
    data.unlink()
    for e in list_models(tmp_path):
        assert e.error is not None and f"its data file {data} is missing" in e.error, e.error
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path))
    at = app("app_pages/home.py")  # the sidebar lists them apart, with the reason, and offers no model
    assert not at.exception and "No usable model yet" in texts(at.sidebar.warning)
    assert f"**gone.safetensors** (shipped): its data file {data} is missing" in texts(at.sidebar.caption)


def test_the_explorer_traces_a_test_image_of_the_file_and_scores_it_as_the_library_does(folder):
    at = app("app_pages/explorer.py", model="blobs")
    assert not at.exception and not at.error
    model = load_checkpoint(folder / "blobs.safetensors")
    example = load_dataset(str(folder / "blobs16.npz"), "test")[:1]  # the picker's default: test example 0
    expected = model.bits_per_dim(example, 0).item()  # the page's noise seed, 0
    total = next(m.value for m in at.markdown if "Total: **log p(u)" in m.value)
    assert f"{expected:.3f} bits/dim**" in total and "every block of this image" in total
    assert "784" not in total and f"the {model.dim} values" in total
    captions = texts(at.caption)
    assert "What the model sees: blobs16.npz test example #0 (class" in captions
    assert "drawing and uploading make 28×28 digits, and this model takes 16×16 images" in captions
    assert not [r for r in at.radio if r.key == "explorer_source"]  # no Draw or Upload for 16x16 images
    assert len(chart(at, "flow_chart")["frames"]) == len(explore.explore(model, example, 0))
    at.session_state["explorer_index"] = 5000  # left by an MNIST model (10,000 test digits): starts again
    at.run()
    assert not at.exception and at.number_input(key="explorer_index").value == 0
    at.number_input(key="explorer_index").set_value(3).run()  # another test image: its own figure
    assert not at.exception
    total = next(m.value for m in at.markdown if "Total: **log p(u)" in m.value)
    assert f"{model.bits_per_dim(load_dataset(str(folder / 'blobs16.npz'), 'test')[3:4], 0).item():.3f}" in total


def test_the_explorer_bends_the_plane_of_a_points_file(folder):
    at = app("app_pages/explorer.py", model="ring")
    assert not at.exception and not at.error
    model = load_checkpoint(folder / "ring.safetensors")
    points = load_dataset(str(folder / "ring.npy"), "train")  # all 270 training points (fewer than 1500)
    spread = float(explore.decomposition(model, explore.explore(model, points)).logdets.sum())
    intro = next(m.value for m in at.markdown if m.value.startswith("A 2-D flow"))
    assert f"Over the {len(points)} training points" in intro and f"**{spread:+.2f} nats**" in intro
    density = chart(at, "toy_density")
    shown = numbers(next(t for t in density["data"] if t.get("mode") == "markers")["x"])
    assert np.allclose(np.sort(shown), np.sort(points[:, 0].numpy()), atol=1e-5)  # the file's own points


def test_the_latent_playground_walks_between_two_test_images_of_the_file(folder):
    at = app("app_pages/latent.py", model="blobs")
    assert not at.exception and not at.error
    model = load_checkpoint(folder / "blobs.safetensors")
    test = load_dataset(str(folder / "blobs16.npz"), "test")
    z = latent.encode_digits(model, test[:2])  # the two pickers start on test images 0 and 1
    _, bits = latent.decode_with_bits(model, latent.interpolate(model, z[0], z[1], 16, "slerp"), 0)
    assert np.allclose(numbers(chart(at, "bits_chart")["data"][0]["y"]), bits.numpy(), atol=1e-4)
    assert "same size (256 numbers)" in texts(at.caption)
    at = app("app_pages/latent.py", model="blobs", tab="Sample")  # it decodes samples of the 16x16 model
    assert not at.exception and not at.error
    _, bits = latent.decode_with_bits(model, model.latents(64, 0.7, 0), 0)
    assert f"Mean {bits.mean():.3f} bits/dim" in texts(at.caption)


def test_the_latent_playground_walks_the_plane_of_a_points_file(folder):
    at = app("app_pages/latent.py", model="ring")
    assert not at.exception and not at.error and not at.info
    model, points = load_checkpoint(folder / "ring.safetensors"), load_dataset(str(folder / "ring.npy"), "train")
    walk = latent.plane_walk(model, points[[0, len(points) // 2]], 16, "slerp")  # the page's default points
    said = next(c.value for c in at.caption if c.value.startswith("Mean log p(x)"))
    assert f"decoded walk: **{walk['path_log_p'].mean():.2f} nats**" in said
    shown = chart(at, "plane_walk")
    assert np.allclose(numbers(shown["data"][1]["x"]), points[:, 0].numpy(), atol=1e-5)  # the file's points
    walked = next(t for t in shown["data"] if t.get("name") == "latent walk, decoded")
    assert np.allclose(numbers(walked["x"]), walk["path"][:, 0].numpy(), atol=1e-5)
    at.session_state["to_point"] = 1000  # left by a model with more points (moons: 1500): starts again
    at.run()
    assert not at.exception and at.number_input(key="to_point").value == len(points) // 2


@pytest.mark.parametrize("page, model, words", [
    ("app_pages/explorer.py", "colour", "**colour** is a colour model (3×8×8): the pages show greyscale models"),
    ("app_pages/latent.py", "colour", "the pages show greyscale models. Colour ones train and score on the command"),
    ("app_pages/explorer.py", "five", "**five** models 5-D points: the pages draw greyscale images and 2-D points"),
    ("app_pages/lab.py", "blobs", "pick an MNIST model in the sidebar (**blobs** was trained on blobs16.npz)"),
    ("app_pages/compare.py", "ring", "the sidebar's **ring**, trained on ring.npy, is not among them"),
])
def test_a_page_that_cannot_show_the_model_says_what_it_needs(page, model, words):
    at = app(page, model=model)
    assert not at.exception and not at.error
    assert words in texts(at.info), texts(at.info)


@pytest.mark.parametrize("model", ["blobs", "ring"])
def test_the_lesson_and_home_run_beside_a_file_model(model):
    for page in ("app_pages/lesson.py", "app_pages/home.py"):
        at = app(page, model=model)
        assert not at.exception and not at.error
