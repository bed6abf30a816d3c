"""Latent walks: interpolation hits its end digits, slerp geometry, coarse/fine parts, the paper's
manifold, temperature-0 samples, per-frame bits/dim, exports, and the Latent Playground page."""
import io
import json
import math
import shutil
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

import ui.sidebar
from app import latent_plots
from app.catalog import CHECKPOINT_DIR, list_models
from flow import explore, latent
from flow.checkpoint import load_checkpoint, save_checkpoint
from flow.data import load_mnist
from flow.files import ROOT
from flow.layers import dequantize
from flow.model import build_model
from tests.helpers import randomize


@pytest.fixture(scope="module")
def digits() -> dict[int, torch.Tensor]:
    """The first MNIST test digit of each class, uint8 (1, 1, 28, 28)."""
    x, y = load_mnist("test")
    return {c: x[int((y == c).nonzero()[0])].view(1, 1, 28, 28) for c in range(10)}


def small_realnvp():
    torch.manual_seed(1)
    return randomize(build_model("realnvp", width=8, res_blocks=1), 0.02).eval()


@pytest.fixture(scope="module", params=["seed-mlp", pytest.param("realnvp", marks=pytest.mark.integration)])
def model(request):
    """The shipped (trained) single-scale model, and a small multi-scale one with random weights."""
    if request.param == "seed-mlp":
        return load_checkpoint(CHECKPOINT_DIR / "seed-mlp-mnist.safetensors")
    return small_realnvp()


@pytest.mark.parametrize("method", latent.METHODS)
def test_interpolation_hits_both_digits_exactly(model, digits, method):
    z = latent.encode_digits(model, torch.cat([digits[3], digits[8]]))
    frames, _ = latent.decode_with_bits(model, latent.interpolate(model, z[0], z[1], 9, method))
    assert frames.shape == (9, 1, 28, 28)
    assert torch.allclose(frames[0], dequantize(digits[3], "mid")[0], atol=1e-4)
    assert torch.allclose(frames[-1], dequantize(digits[8], "mid")[0], atol=1e-4)
    assert torch.equal(latent.quantize(frames[[0, -1]]), torch.cat([digits[3], digits[8]]))
    assert not torch.allclose(frames[4], frames[0], atol=0.05)  # the middle is neither digit


def test_slerp_moves_the_direction_on_the_great_circle_and_the_norm_linearly():
    a, b = torch.randn(784), 1.5 * torch.randn(784)
    t = torch.linspace(0, 1, 11)
    path = latent.slerp(a, b, t)
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    assert torch.allclose(path.norm(dim=1), (1 - t) * a.norm() + t * b.norm(), rtol=1e-5)
    cos = lambda u, v: (u @ v) / (u.norm() * v.norm())  # noqa: E731
    omega = torch.acos(cos(a, b))
    angles = torch.stack([torch.acos(cos(a, p).clamp(-1, 1)) for p in path])
    assert torch.allclose(angles, t * omega, atol=1e-3)
    # a straight line between two Gaussian draws dips inside the shell they live on
    assert latent.lerp(a, b, t)[5].norm() < 0.8 * path[5].norm()


def test_slerp_falls_back_to_the_line_for_parallel_opposite_or_zero_end_points():
    a, t = torch.randn(784), torch.linspace(0, 1, 5)
    for b in (2 * a + 1e-9 * torch.randn(784), -a, torch.zeros(784)):
        path = latent.slerp(a, b, t)
        assert torch.isfinite(path).all()
        assert torch.allclose(path, latent.lerp(a, b, t), atol=1e-5)


def test_coarse_and_fine_interpolation_move_only_their_latents(digits):
    model = small_realnvp()
    assert latent.latent_parts(model) == ["all", "coarse", "fine"]
    coarse, fine = latent.part_mask(model, "coarse"), latent.part_mask(model, "fine")
    assert not (coarse & fine).any() and (coarse | fine).all()
    z = latent.encode_digits(model, torch.cat([digits[3], digits[8]]))
    ends = model.split_latent(z)  # [factored out at scale 1 (fine), final h (coarse)], each (2, 8, 7, 7)
    for part, moving, fixed in (("coarse", 1, 0), ("fine", 0, 1)):
        parts = model.split_latent(latent.interpolate(model, z[0], z[1], 6, "slerp", part))
        assert torch.equal(parts[fixed], ends[fixed][:1].expand_as(parts[fixed]))
        assert torch.allclose(parts[moving][[0, -1]], ends[moving], atol=1e-5)


def test_single_scale_models_offer_only_the_whole_latent():
    model = load_checkpoint(CHECKPOINT_DIR / "seed-mlp-mnist.safetensors")
    assert latent.latent_parts(model) == ["all"]
    with pytest.raises(ValueError, match="part must be one of"):
        latent.part_mask(model, "coarse")
    with pytest.raises(ValueError, match="method must be one of"):
        latent.interpolate(model, torch.zeros(784), torch.ones(784), 3, method="cubic")


def test_manifold_at_zero_angles_gives_the_first_digit_and_corners_the_others(model, digits):
    four = torch.cat([digits[c] for c in (1, 4, 7, 0)])
    z = latent.encode_digits(model, four)
    n = 5
    grid = latent.manifold(z, n)
    assert grid.shape == (n * n, model.dim)
    frames, _ = latent.decode_with_bits(model, grid[[0, n - 1, n * (n - 1), n * n - 1]])
    assert torch.allclose(frames[0], dequantize(digits[1], "mid")[0], atol=1e-4)
    assert torch.equal(latent.quantize(frames[:1]), digits[1])
    assert torch.allclose(grid[[n - 1, n * (n - 1), n * n - 1]], z[1:], atol=1e-4)  # z2, z3, z4 at the corners


def test_manifold_keeps_the_norm_of_orthonormal_latents_all_the_way_round():
    z = torch.linalg.qr(torch.randn(784, 4))[0].T  # 4 orthonormal latents
    grid = latent.manifold(z, 8, full_turn=True)
    assert torch.allclose(latent.manifold_angles(8, True)[[0, 2, 4]], torch.tensor([0, math.pi / 2, math.pi],
                                                                                     dtype=torch.float64))
    assert torch.allclose(grid.norm(dim=1), torch.ones(64), atol=1e-5)
    assert torch.allclose(grid[2], z[1], atol=1e-6) and torch.allclose(grid[4], -z[0], atol=1e-6)
    with pytest.raises(ValueError, match="4 latents"):
        latent.manifold(z[:3], 3)


def test_samples_at_temperature_zero_are_the_decoded_zero_latent(model):
    frames, bits = latent.decode_with_bits(model, model.latents(4, 0.0, seed=7))
    zero = model.decode(torch.zeros(1, model.dim)).detach()
    assert torch.allclose(frames, zero.expand_as(frames), atol=1e-6)
    assert torch.allclose(bits, bits[0].expand(4))  # equal frames, equal numbers
    # the same draws as Flow.sample with the same seed
    ours, _ = latent.decode_with_bits(model, model.latents(3, 0.8, seed=7))
    with torch.no_grad():
        theirs = model.sample(3, 0.8, seed=7)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_frame_bits_are_the_bits_per_dim_of_the_quantized_frame(model, digits):
    z = latent.encode_digits(model, digits[3])
    _, bits = latent.decode_with_bits(model, z, seed=5)
    with torch.no_grad():
        expected = model.bits_per_dim(digits[3], seed=5)
    assert torch.allclose(bits, expected, atol=1e-5)
    assert torch.equal(latent.decode_with_bits(model, z, seed=5)[1], bits)  # stable from rerun to rerun


def test_gif_and_png_exports():
    frames = torch.rand(5, 1, 28, 28)
    gif = Image.open(io.BytesIO(latent_plots.gif_of(frames, scale=6)))
    assert gif.format == "GIF" and gif.is_animated and gif.size == (168, 168)
    assert gif.n_frames == 8  # 0 1 2 3 4 3 2 1, then it loops
    assert Image.open(io.BytesIO(latent_plots.gif_of(frames, boomerang=False))).n_frames == 5
    png = Image.open(io.BytesIO(latent_plots.png_of(frames, nrow=5, scale=4)))
    assert png.format == "PNG" and png.size == ((5 * 30 + 2) * 4, 32 * 4)


def test_grid_figure_puts_each_label_on_its_frame():
    frames = torch.zeros(6, 1, 28, 28)
    frames[4] = 1.0  # frame 4 (row 1, column 1 of a 3-column grid) is white
    fig = latent_plots.grid_figure(frames, 3, [f"frame {i}" for i in range(6)])
    marks = fig.data[1]
    assert list(marks.hovertext) == [f"frame {i}" for i in range(6)]
    grid = np.asarray(latent_plots.image_grid(frames, nrow=3))
    assert grid[round(marks.y[4]), round(marks.x[4])] == 255
    assert grid[round(marks.y[3]), round(marks.x[3])] == 0


def test_download_names_say_what_the_picture_shows():
    name = latent_plots.export_name("interpolation", "realnvp-res1-w64-mnist", "3-0", "to", "8-12", "slerp", "",
                                    ext="gif")
    assert name == "interpolation_realnvp-res1-w64-mnist_3-0_to_8-12_slerp.gif"
    assert latent_plots.export_name("manifold", "my run/../x y", ext="png") == "manifold_my-run-x-y.png"


# ----- the page ------------------------------------------------------------------------------
@pytest.fixture
def catalog(tmp_path, monkeypatch):
    """A checkpoint folder with a multi-scale MNIST model and a 2-D model; the sidebar lists it."""
    save_checkpoint(small_realnvp(), tmp_path / "realnvp-small.safetensors", preset="realnvp", data="mnist",
                    epoch=1, test_bpd=3.5)
    shutil.copy(CHECKPOINT_DIR / "toy-2d-moons.safetensors", tmp_path)
    monkeypatch.setattr(ui.sidebar, "list_models", partial(list_models, tmp_path))
    return tmp_path


def open_page(model_path, tab: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    at.session_state["model_path"] = str(model_path)
    if tab:
        at.query_params["tab"] = tab
    at.switch_page("app_pages/latent.py").run()
    assert not at.exception
    return at


def hover_labels(at: AppTest, key: str) -> list[str]:
    chart = next(c for c in at.get("plotly_chart") if c.key == key)
    return json.loads(chart.proto.spec)["data"][1]["hovertext"]


@pytest.mark.integration
def test_page_renders_its_controls_and_answers_them(catalog):
    at = open_page(catalog / "realnvp-small.safetensors")
    assert at.selectbox(key="from_class").value == "3" and at.selectbox(key="to_class").value == "8"
    assert at.radio(key="part").options == ["all", "coarse", "fine"]
    assert [at.selectbox(key=f"m{i}_class").value for i in range(1, 5)] == ["1", "4", "7", "0"]
    assert at.slider(key="temperature").value == 0.7  # every tab's controls are drawn ...
    assert {c.key for c in at.get("plotly_chart")} == {"strip", "bits_chart"}  # ... but only the open one decodes
    assert [b.proto.label for b in at.get("download_button")] == ["Strip (PNG)", "Animation (GIF)"]
    assert len(hover_labels(at, "strip")) == 16 and "bits/dim" in hover_labels(at, "strip")[0]
    model, (images, labels) = load_checkpoint(catalog / "realnvp-small.safetensors"), load_mnist("test")
    ends = torch.stack([images[(labels == c).nonzero()[0, 0]] for c in (3, 8)]).unsqueeze(1)  # index 0 of each
    z = latent.encode_digits(model, ends)
    mids = torch.stack([latent.interpolate(model, z[0], z[1], 3, m)[1] for m in latent.METHODS])
    bits = dict(zip(latent.METHODS, latent.decode_with_bits(model, mids, 0)[1].tolist()))
    why = next(c.value for c in at.caption if c.value.startswith("**Half-way"))
    assert f"linear midpoint scores {bits['linear']:.3f} bits/dim and slerp's {bits['slerp']:.3f}" in why
    assert ("High density is not typicality" in why) == (bits["linear"] < bits["slerp"])
    at.slider(key="frames").set_value(6)
    at.radio(key="method").set_value("linear")
    at.radio(key="part").set_value("coarse").run()
    assert not at.exception and len(hover_labels(at, "strip")) == 6

    at = open_page(catalog / "realnvp-small.safetensors", "Manifold")
    assert {c.key for c in at.get("plotly_chart")} == {"manifold_grid"} and len(hover_labels(at, "manifold_grid")) == 81
    assert [b.proto.label for b in at.get("download_button")] == ["Manifold (PNG)"]
    assert any("Bits/dim of the cells:" in c.value for c in at.caption)  # the footnote's figure is on the tab

    at = open_page(catalog / "realnvp-small.safetensors", "Sample")
    assert {c.key for c in at.get("plotly_chart")} == {"samples_grid"} and len(hover_labels(at, "samples_grid")) == 64
    at.slider(key="temperature").set_value(0.0)
    at.select_slider(key="n_samples").set_value(16).run()
    assert not at.exception and len(hover_labels(at, "samples_grid")) == 16
    assert len({label.split("· ")[1] for label in hover_labels(at, "samples_grid")}) == 1  # T = 0: one sample


@pytest.mark.integration
def test_a_2d_model_walks_between_the_codes_of_two_points_in_the_plane(catalog):
    at = open_page(catalog / "toy-2d-moons.safetensors")
    assert {c.key for c in at.get("plotly_chart")} == {"plane_walk"} and not at.info
    model, points = load_checkpoint(catalog / "toy-2d-moons.safetensors"), explore.plane_data("moons")
    walk = latent.plane_walk(model, points[[0, len(points) // 2]], 16, "slerp")  # the page's defaults
    said = next(c.value for c in at.caption if c.value.startswith("Mean log p(x)"))
    assert f"decoded walk: **{walk['path_log_p'].mean():.2f} nats**" in said
    assert f"straight line in the plane: **{walk['line_log_p'].mean():.2f} nats**" in said
    # the decoded walk starts and ends on the two data points: the flow inverts
    assert torch.allclose(walk["path"][[0, -1]], points[[0, len(points) // 2]], atol=1e-4)
