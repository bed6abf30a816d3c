"""The Layer Explorer: traces as arrays (flow/explore.py) and the page, driven through AppTest."""
import time
from functools import partial

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import app.catalog
import ui.sidebar
from app import jobs, learning
from app.catalog import CHECKPOINT_DIR, list_models
from flow import explore
from flow.checkpoint import load_checkpoint
from flow.data import load_mnist, make_toy
from flow.learning import list_snapshots
from flow.files import ROOT
from flow.model import build_model, prior_log_prob
from tests.app_helpers import chart, numbers
from tests.helpers import randomize

REALNVP = CHECKPOINT_DIR / "realnvp-mnist.safetensors"
SEED_MLP = CHECKPOINT_DIR / "seed-mlp-mnist.safetensors"
MOONS = CHECKPOINT_DIR / "toy-2d-moons.safetensors"
TOY_CHARTS = {"toy_chart", "toy_density", "toy_waterfall", "toy_ks"}  # the 2-D view, inference direction


@pytest.fixture(scope="module")
def digit() -> torch.Tensor:
    return load_mnist("test")[0][:1].unsqueeze(1)  # a 7, uint8 (1, 1, 28, 28)


def random_realnvp():
    return randomize(build_model("realnvp", width=8, res_blocks=1), 0.05).eval()


# ----- where every dimension goes ---------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["realnvp", "realnvp-fast", "seed-mlp"])
def test_every_state_is_a_permutation_of_the_input_pixels(preset):
    model = build_model(preset)
    entries = explore.layouts(model)
    assert len(entries) == 2 + len(model.names)  # input, logit, one per block
    for origin, parts in entries:
        assert np.array_equal(np.sort(origin), np.arange(784))
        assert sum(np.prod(p.shape) for p in parts) == 784
    if preset.startswith("realnvp"):
        assert [p.label for p in entries[-1][1]] == ["z1", "h"] and entries[-1][1][0].shape == (8, 7, 7)


def test_the_pixel_layout_puts_every_value_back_where_it_came_from(digit):
    """A fresh flow is the identity after the logit (zero s and t heads, ActNorm at 0 and 1): in the
    input layout every state must then be the logit image itself, through both squeezes and the split."""
    model = build_model("realnvp").eval()
    steps = explore.explore(model, digit)
    logit_image = steps.pixels(1)
    assert steps.kinds[1] == "preprocess" and not np.allclose(logit_image, steps.pixels(0))
    for i in range(2, len(steps)):
        assert np.allclose(steps.pixels(i), logit_image, atol=1e-6), steps.names[i]
    # ... while the raw states really are reordered by the squeezes
    assert not np.allclose(steps.states[-1, 0], steps.states[1, 0])


def test_squeeze_and_factor_out_move_values_without_changing_them(digit):
    steps = explore.explore(random_realnvp(), digit)
    for i, kind in enumerate(steps.kinds):
        if kind in ("squeeze", "factor-out"):
            assert np.array_equal(steps.pixels(i), steps.pixels(i - 1)) and steps.logdets[i] == 0
            assert np.array_equal(np.sort(steps.states[i, 0]), np.sort(steps.states[i - 1, 0]))
    i = steps.kinds.index("factor-out")
    code, where = steps.where(i)
    assert set(where[..., 0].ravel()) == {"z1", "h"} and (where[..., 0] == "z1").sum() == 392
    tiles = steps.tiles(i)
    assert [p.label for p, _ in tiles] == ["z1", "h"] and tiles[0][1].shape == (15, 31)  # 8 maps of 7x7, 4 x 2


def test_coupling_maps_are_the_blocks_own_mask_scale_and_shift(digit):
    model = random_realnvp()
    steps = explore.explore(model, digit)
    i = steps.kinds.index("coupling")
    maps = steps.block(i)
    assert set(maps) == {"input", "output", "change", "mask", "s", "t"}
    kept = maps["mask"] == 1
    assert kept.sum() == 392 and np.allclose(maps["change"][kept], 0, atol=1e-6)  # the kept half stays put
    expected = maps["input"] * np.exp(maps["s"]) + maps["t"]
    assert np.allclose(maps["output"], expected, atol=1e-4)  # paper Eq. 9, pixel by pixel
    assert np.isclose(maps["s"].sum(), steps.logdets[i], rtol=1e-4)  # log|det J| = sum of s
    after_split = steps.kinds.index("coupling", steps.kinds.index("factor-out"))
    assert np.isnan(steps.block(after_split)["s"]).sum() == 392  # z1 is no longer in the block


# ----- the numbers on the page ------------------------------------------------------------------------
@pytest.mark.integration  # traces the shipped realnvp
@pytest.mark.parametrize("path", [REALNVP, SEED_MLP])
def test_decomposition_adds_up_to_the_digits_bits_per_dim(digit, path):
    model = load_checkpoint(path)
    steps = explore.explore(model, digit, seed=4)
    assert steps.seed == 4 and np.allclose(steps.pixels(0), model.dequantize(digit, 4)[0, 0].numpy())
    dec = explore.decomposition(model, steps)
    log_prob = model.log_prob(model.dequantize(digit, 4)).item()
    assert dec.log_prob == pytest.approx(log_prob, rel=1e-5)
    assert sum(v for _, v in dec.terms("nats")) == pytest.approx(log_prob, rel=1e-5)
    bpd = model.bits_per_dim(digit, seed=4).item()
    assert dec.bits_per_dim == pytest.approx(bpd, abs=1e-5)
    assert sum(v for _, v in dec.terms("bpd")) == pytest.approx(bpd, abs=1e-5)
    centres = explore.decomposition(model, explore.explore(model, digit, seed=None))  # the labelled teaching view
    assert centres.log_prob == pytest.approx(model.log_prob(digit).item(), rel=1e-5)
    assert centres.bits_per_dim < bpd - 0.1  # the bin centre's density is far above the digit's probability


@pytest.mark.integration  # a 784 x 784 Jacobian per block
def test_every_block_inverts_and_its_logdet_matches_autograd(digit):
    model = load_checkpoint(REALNVP)
    steps = explore.explore(model, digit, seed=0)
    assert len(steps.roundtrip) == len(steps) and steps.roundtrip.max() < 1e-4 and steps.flow_roundtrip < 1e-4
    for i in (1, 2, 3, steps.kinds.index("actnorm"), len(steps) - 1):  # logit, squeeze, couplings, ActNorm
        claimed, built = explore.jacobian_check(model, steps, i)
        assert claimed == pytest.approx(built, abs=1e-3), steps.names[i]
    assert explore.jacobian_check(model, steps, steps.kinds.index("factor-out")) is None
    coupling = explore.blocks(model)[3]  # entry 3: coupling 1
    right = coupling.forward
    coupling.forward = lambda x: (right(x)[0], right(x)[1] + 0.5)  # a block whose log-det formula is off
    claimed, built = explore.jacobian_check(model, steps, 3)
    assert claimed - built == pytest.approx(0.5, abs=1e-3)  # ... is caught
    toy = load_checkpoint(MOONS)
    points = explore.explore(toy, make_toy("moons", 200, seed=2))
    for i in range(1, len(points)):
        claimed, built = explore.jacobian_check(toy, points, i)
        assert claimed == pytest.approx(built, abs=1e-4)


def test_gaussianity_numbers():
    g = np.random.default_rng(0)
    assert explore.ks_normal(g.standard_normal(5000)) < 0.03
    assert explore.ks_normal(g.uniform(0, 1, 5000)) > 0.45
    m = explore.moments(g.standard_normal(20000))
    assert abs(m["mean"]) < 0.03 and abs(m["std"] - 1) < 0.03 and abs(m["excess kurtosis"]) < 0.1
    cloud, moons = g.standard_normal((3000, 2)), make_toy("moons", 3000, seed=0).numpy()
    assert explore.ks_normal_sliced(cloud) < 0.05 < 0.1 < explore.ks_normal_sliced(moons)
    assert explore.ks_normal(moons) < 0.06  # pooled coordinates hide the moons: hence the projections
    centres, dens = explore.histogram(g.standard_normal(20000))
    assert np.isclose((dens * (centres[1] - centres[0])).sum(), 1.0)


@pytest.mark.integration  # traces the shipped realnvp both ways
def test_trained_flow_makes_the_digit_gaussian_and_generation_inverts_it(digit):
    model = load_checkpoint(REALNVP)
    steps = explore.explore(model, digit, seed=0)
    assert steps.ks[-1] < explore.ks_noise_level(784) * 1.5 < steps.ks[1] / 2  # Gaussian noise, unlike the logits
    back = explore.generate(model, steps.states[-1])
    assert back.names[0] == "latent" and back.names[-1] == "undo the logit" and len(back) == len(steps)
    assert back.names[1] == f"undo {model.names[-1]}" and back.pixel_entries == (len(back) - 1,)
    assert np.allclose(back.pixels(len(back) - 1), model.dequantize(digit, 0)[0, 0].numpy(), atol=1e-4)
    for k in range(len(back)):  # step k backwards is the forward state before the last k blocks
        assert np.allclose(back.pixels(k), steps.pixels(len(steps) - 1 - k), atol=2e-3), back.names[k]
    noise = explore.generate(model, model.latents(1, 0.7, seed=3))
    assert 0 <= noise.pixels(len(noise) - 1).min() and noise.pixels(len(noise) - 1).max() <= 1
    assert np.array_equal(model.latents(1, 0.7, 3), model.latents(1, 0.7, 3))


def test_toy_traces_grid_and_density():
    model = load_checkpoint(MOONS)
    points = make_toy("moons", 500, seed=1)
    steps = explore.explore(model, points)
    assert steps.states.shape == (len(model.names) + 1, 500, 2) and steps.image_shape is None
    assert steps.ks[-1] < steps.ks[0]
    dec = explore.decomposition(model, steps)
    assert dec.log_prob == pytest.approx(model.log_prob(points).mean().item(), rel=1e-4)
    grid, per_line = explore.grid_lines(lines=5, points=7)
    assert grid.shape == (2 * 5 * 7, 2) and per_line == 7
    ticks, dens = explore.density(model, extent=4.0, n=60)
    cell = (ticks[1] - ticks[0]) ** 2
    assert dens.shape == (60, 60) and 0.8 < dens.sum() * cell < 1.05  # a density: integrates to ~1


# ----- the page -----------------------------------------------------------------------------------------
def open_page(model_path) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=90)
    at.session_state["model_path"] = str(model_path)
    at.switch_page("app_pages/explorer.py").run()
    assert not at.exception, at.exception
    return at


def heading(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("#### "))


@pytest.mark.integration
@pytest.mark.parametrize("path", [REALNVP, SEED_MLP])
def test_page_renders_for_mnist_models_and_the_slider_moves_the_block(path):
    at = open_page(path)
    assert heading(at).startswith("#### 0. input")
    shown = chart(at, "block_maps")
    assert len(shown["data"]) == 1 and shown["data"][0]["coloraxis"] == "coloraxis4"  # the input alone ...
    assert shown["layout"]["coloraxis4"]["colorscale"][0][1].replace(" ", "") == "rgb(0,0,0)"  # ... on a grey scale, 0 black
    at.slider(key="block").set_value(1).run()  # the logit: pixels in, signed logits out
    assert [d["coloraxis"] for d in chart(at, "block_maps")["data"]] == ["coloraxis4", "coloraxis", "coloraxis"]
    at.slider(key="block").set_value(3).run()
    assert not at.exception
    names = load_checkpoint(path).names
    assert heading(at).startswith(f"#### 3. {names[1]}")  # entries: input, logit, then the blocks
    shown = chart(at, "block_maps")
    titles = [a["text"] for a in shown["layout"]["annotations"]]
    assert "coupling" in names[1] and titles == ["input", "output", "output − input", "mask b", "scale s", "shift t"]
    assert shown["layout"]["coloraxis"]["colorscale"][0][1].replace(" ", "") == "rgb(5,48,97)"  # signed values: red/blue
    at.slider(key="block").set_value(len(names) + 1).run()  # the last block
    assert heading(at).startswith(f"#### {len(names) + 1}. {names[-1]}")


@pytest.mark.integration
def test_the_decomposition_on_screen_is_the_models_log_prob(digit):
    at = open_page(REALNVP)
    at.segmented_control(key="units").set_value("nats").run()
    shown = chart(at, "flow_chart")
    waterfall = shown["frames"][5]["data"][5]  # the frame of block 5; its sixth trace is the waterfall
    terms = numbers(waterfall["y"])
    total = numbers(next(d["y"] for d in shown["data"] if d.get("x") == ["total"]))[0]
    model = load_checkpoint(REALNVP)
    u = model.dequantize(digit, 0)  # the page's default: test image #0 with the noise of seed 0
    log_prob = model.log_prob(u).item()
    assert terms.sum() == pytest.approx(log_prob, rel=1e-4) and total == pytest.approx(log_prob, rel=1e-4)
    z = model.encode(u)
    assert terms[-1] == pytest.approx(prior_log_prob(z).item(), rel=1e-4)  # the last term is log N(z)
    colours = waterfall["marker"]["color"]
    assert colours[4] == "#f5a800" and colours.count("#f5a800") == 1  # block 5 = the 5th term, highlighted
    assert f"{log_prob:.1f} nats" in next(m.value for m in at.markdown if "Total:" in m.value)
    line = shown["layout"]["shapes"][0]
    assert line["y0"] == line["y1"] == pytest.approx(explore.ks_noise_level(784)) == pytest.approx(0.0486, abs=1e-4)
    ks = [numbers(f["data"][4]["y"])[0] for f in shown["frames"]]  # the marker on the KS curve, frame by frame
    assert ks == pytest.approx(explore.explore(model, digit, 0).ks.tolist(), abs=1e-6)


@pytest.mark.integration
def test_the_animation_holds_every_block_and_steps_in_the_browser():
    """Stepping and playing are plotly.js animations: every block is a frame, and the slider and the play
    buttons only call `animate` on those frames (no Streamlit widget: the server is not asked)."""
    at = open_page(REALNVP)
    shown = chart(at, "flow_chart")
    n = len(load_checkpoint(REALNVP).names) + 2  # the input, the logit, then the blocks
    assert [f["name"] for f in shown["frames"]] == [str(i) for i in range(n)]
    assert shown["frames"][3]["layout"]["title"]["text"].startswith("<b>3. coupling 1")
    slider = shown["layout"]["sliders"][0]
    assert slider["active"] == 0 and [s["args"][0] for s in slider["steps"]] == [[str(i)] for i in range(n)]
    assert all(s["method"] == "animate" for s in slider["steps"])
    plays = [b for b in shown["layout"]["updatemenus"][0]["buttons"] if b["args"][0] is None]
    assert sorted(b["args"][1]["frame"]["duration"] for b in plays) == [250, 800, 2000]  # three speeds
    assert all(b["method"] == "animate" for b in shown["layout"]["updatemenus"][0]["buttons"])
    at.slider(key="block").set_value(7).run()  # the formulas' stepper; a full rerun then opens the animation there
    at.segmented_control(key="units").set_value("nats").run()
    assert chart(at, "flow_chart")["layout"]["sliders"][0]["active"] == 7


@pytest.mark.integration
def test_squeeze_and_factor_out_show_where_the_dimensions_went():
    at = open_page(REALNVP)
    names = load_checkpoint(REALNVP).names
    at.slider(key="block").set_value(2 + names.index("factor-out 1")).run()
    titles = [a["text"] for a in chart(at, "layout_maps")["layout"]["annotations"]]
    assert titles == ["in: h 16×7×7", "out: z1 8×7×7", "out: h 8×7×7", "orange: z1, blue: h"]


@pytest.mark.integration
def test_a_non_image_upload_shows_a_clear_message_and_no_trace():
    at = open_page(REALNVP)
    at.radio(key="explorer_source").set_value("Upload").run()
    at.file_uploader(key="explorer_upload").set_value(("notes.pdf", b"%PDF-1.4 not a picture", "application/pdf")).run()
    assert not at.exception
    assert "not a picture" in at.error[0].value and "Save it as PNG or JPEG" in at.error[0].value
    assert not [c for c in at.get("plotly_chart")]  # nothing is traced from a non-image


@pytest.mark.integration
def test_generation_section_from_noise_and_from_the_code():
    at = open_page(REALNVP)
    at.slider(key="gen_temperature").set_value(0.5).run()
    frames = chart(at, "gen_chart")["frames"]
    assert not at.exception and len(frames) == len(load_checkpoint(REALNVP).names) + 2
    assert frames[4]["data"][0]["type"] == "heatmap" and frames[-1]["layout"]["coloraxis"]["cmin"] == 0  # ends in pixels
    at.radio(key="gen_start").set_value("the encoded digit").run()
    assert not at.exception


@pytest.mark.integration
def test_page_renders_for_a_2d_model_in_both_directions():
    at = open_page(MOONS)
    assert {c.key for c in at.get("plotly_chart")} == TOY_CHARTS
    model = load_checkpoint(MOONS)  # the introduction's log-det is the model's, over the points it names
    spread = explore.decomposition(model, explore.explore(model, make_toy("moons", 1500, seed=1), None)).logdets.sum()
    intro = next(m.value for m in at.markdown if m.value.startswith("A 2-D flow"))
    assert spread == pytest.approx(1.587, abs=0.01) and f"**{spread:+.2f} nats**: it expands space" in intro
    assert "where cells shrink" not in intro  # issue 28: expanding space going x -> z is what raises p(x)
    at.slider(key="block").set_value(4).run()
    assert not at.exception and heading(at).startswith("#### 4. ")
    assert chart(at, "toy_chart")["frames"][4]["layout"]["title"]["text"].startswith("4. ")
    at.radio(key="toy_direction").set_value("generation z → x").run()
    assert not at.exception and {c.key for c in at.get("plotly_chart")} == {"toy_chart", "toy_density"}


@pytest.mark.slow
@pytest.mark.integration
def test_without_any_2d_model_a_short_training_is_offered_run_and_explored(monkeypatch, tmp_path):
    """A real training run of about 20 s, launched from the page through app.jobs, then opened."""
    (tmp_path / "realnvp-mnist.safetensors").write_bytes(REALNVP.read_bytes())
    only_here = partial(list_models, tmp_path)  # tmp_path/*.safetensors and tmp_path/runs/*
    monkeypatch.setattr(ui.sidebar, "list_models", only_here)
    monkeypatch.setattr(app.catalog, "list_models", only_here)
    monkeypatch.setenv(jobs.RUNS_ENV, str(tmp_path / "runs"))
    at = open_page(tmp_path / "realnvp-mnist.safetensors")
    assert "no 2-D model yet" in at.info[0].value
    at.selectbox(key="toy_data").set_value("circles")
    at.button(key="toy_train").click().run()
    name = at.session_state["toy_run"]
    deadline = time.time() + 120
    while not list_snapshots(jobs.get_run(name).path) and time.time() < deadline:
        time.sleep(0.2)
    at.run()
    if jobs.get_run(name).active:  # almost always: it trains for about 20 s
        assert not at.exception and "plane_chart" in {c.key for c in at.get("plotly_chart")}
        assert any("Live: the newest snapshot" in c.value for c in at.caption) and at.get("progress")
    while jobs.get_run(name).active and time.time() < deadline:
        time.sleep(0.5)
    at.run()
    assert not at.exception and "is trained" in at.success[0].value
    replay = chart(at, "plane_chart")  # every snapshot, played in the browser
    assert len(replay["frames"]) == len(learning.replay_snapshots(jobs.get_run(name).path)) > 10
    at.button(key="toy_open").click().run()
    assert at.session_state["model_path"] == str(tmp_path / "runs" / name / "checkpoint.safetensors")
    assert {c.key for c in at.get("plotly_chart")} == TOY_CHARTS
