"""Every plotly animation has fixed axes that hold what each of its frames draws (issue 28: the Explorer opened at
block 0, whose scale s is all NaN, and plotly kept the axes it fitted to that empty panel, so every later block drew
a few huge cells instead of a 28x28 map)."""
import numpy as np
import pytest
import torch

from app import explore_plots as plots
from app.animation import animate, array
from app.catalog import CHECKPOINT_DIR, list_models
from app.learning import plane_view
from app.train_plots import plane_figure
from flow import explore
from flow.checkpoint import load_checkpoint
from flow.data import load_mnist, make_toy

REALNVP = CHECKPOINT_DIR / "realnvp-mnist.safetensors"
MOONS = CHECKPOINT_DIR / "toy-2d-moons.safetensors"


def _values(values) -> np.ndarray:
    """Finite numbers of a trace's x, y or base (category names and None dropped)."""
    flat = array(values).ravel() if values is not None else np.empty(0)
    return np.array([v for v in flat if isinstance(v, (int, float, np.number)) and np.isfinite(v)], float)


def outside(fig, outliers: float = 0.0) -> list[str]:
    """What some frame draws outside its fixed axes, as lines of text (empty: all inside). Each frame's axes are the
    figure's layout updated by the frame's own layout; every axis a trace uses must have a range and autorange off.
    A heat map must fill its axes exactly (cell -0.5 to columns - 0.5); bars (base to base + y) and markers must lie
    inside, up to a share `outliers` of a marker trace's points (a 2-D plane shows its central 99.5 %). Line traces
    (a 2-D flow's grid, which runs off the plane) are not checked."""
    whole = fig.to_plotly_json()
    data, problems = whole["data"], []
    for frame in [{"name": "figure", "data": data}, *whole.get("frames", [])]:
        layout = {k: {**v, **frame.get("layout", {}).get(k, {})} if isinstance(v, dict) else v
                  for k, v in whole["layout"].items()}
        for k, trace in zip(frame.get("traces", range(len(data))), frame["data"]):
            trace = {**data[k], **trace}
            kind, at = trace.get("type", "scatter"), f"frame {frame['name']} trace {k}"
            axes = [layout.get(trace.get(side + "axis", side)[0] + "axis" + trace.get(side + "axis", side)[1:], {})
                    for side in "xy"]
            if any(a.get("autorange") is not False or a.get("range") is None for a in axes):
                problems.append(f"{at}: an axis without a fixed range")
                continue
            (x0, x1), (y0, y1) = (sorted(a["range"]) for a in axes)
            if kind == "heatmap":
                rows, cols = array(trace["z"]).shape[:2]
                if trace.get("x") is None and [x0, x1] != pytest.approx([-0.5, cols - 0.5]) or \
                        trace.get("y") is None and [y0, y1] != pytest.approx([-0.5, rows - 0.5]):
                    problems.append(f"{at}: a {rows}x{cols} heat map on x {x0, x1}, y {y0, y1}")
                continue
            if kind == "bar":
                y = _values(trace["y"])
                base = _values(trace["base"]) if trace.get("base") is not None else np.zeros_like(y)
                ys = np.concatenate([base, base + y])
                if ys.size and (ys.min() < y0 - 1e-9 or ys.max() > y1 + 1e-9):
                    problems.append(f"{at}: bars from {ys.min():.3f} to {ys.max():.3f}, axis {y0:.3f} to {y1:.3f}")
                names = [v for v in array(trace.get("x", [])).ravel() if isinstance(v, str)]
                if names and (x0 > -0.5 or x1 < len(set(names)) - 0.5):
                    problems.append(f"{at}: {len(set(names))} bars on x {x0, x1}")
                continue
            if "lines" in trace.get("mode", "markers") and "markers" not in trace.get("mode", ""):
                continue
            x, y = _values(trace.get("x")), _values(trace.get("y"))
            out = np.mean((x < x0) | (x > x1) | (y < y0) | (y > y1)) if x.size else 0.0
            if out > outliers:
                problems.append(f"{at}: {out:.1%} of its points off the axes x {x0, x1}, y {y0, y1}")
    return problems


def test_an_animation_that_opens_on_an_empty_panel_gets_the_axes_of_its_cells():
    """The check finds the fault of issue 28, and `animate` mends it: a 28x28 panel all NaN in frame 0."""
    empty, full = np.full((28, 28), np.nan), np.arange(784.0).reshape(28, 28)
    import plotly.graph_objects as go
    fig = go.Figure(go.Heatmap(z=empty), {"height": 300, "margin": {"t": 10, "b": 10},
                                          "yaxis": {"autorange": "reversed"}})
    frames = [{"name": str(i), "data": [{"type": "heatmap", "z": z}], "traces": [0]} for i, z in enumerate([empty, full])]
    unfixed = go.Figure({**fig.to_dict(), "frames": frames}, skip_invalid=True)
    assert outside(unfixed) and all("without a fixed range" in p for p in outside(unfixed))
    fixed = animate(fig, frames, 0, "Block ")
    assert outside(fixed) == []
    assert fixed.layout.xaxis.range == (-0.5, 27.5) and fixed.layout.yaxis.range == (27.5, -0.5)  # still reversed


@pytest.fixture(scope="module")
def digit() -> torch.Tensor:
    return load_mnist("test")[0][:1].unsqueeze(1)


@pytest.fixture(scope="module")
def traces(digit) -> dict:
    """The shipped model (the one the app opens on) and realnvp-mnist: each its trace and decomposition."""
    out = {}
    for path in (list_models()[0].path, REALNVP):
        model = load_checkpoint(path)
        steps = explore.explore(model, digit, 0)
        out[path.stem] = (model, steps, explore.decomposition(model, steps))
    return out


@pytest.mark.integration
@pytest.mark.parametrize("units", ["bpd", "nats"])
def test_the_explorer_animation_opening_at_block_0_keeps_every_block_on_its_axes(traces, units):
    assert list_models()[0].name == "realnvp-res1-w64-mnist"  # the model the issue met
    for name, (model, steps, dec) in traces.items():
        fig = plots.flow_animation(steps, dec, units, ["."] * len(steps), 0, explore.ks_noise_level(model.dim))
        assert np.isnan(steps.block(0).get("s", np.full(1, np.nan))).all()  # the s panel opens empty ...
        assert outside(fig) == [], name
        scale = fig.layout.xaxis2.range, fig.layout.yaxis2.range  # ... and still shows 28x28 cells
        assert scale == ((-0.5, 27.5), (27.5, -0.5)), name


@pytest.mark.integration
def test_the_generation_and_comparison_animations_keep_every_frame_on_their_axes(traces):
    (a, (model, steps, dec)), (b, (_, other, other_dec)) = traces.items()
    back = explore.generate(model, model.latents(1, 0.7, 0))
    assert outside(plots.steps_animation(back)) == []
    for start in (0, 10):
        assert outside(plots.compare_animation([(a, steps, dec), (b, other, other_dec)], start)) == []


@pytest.mark.integration
def test_the_2d_animations_keep_their_plane():
    model = load_checkpoint(MOONS)
    data = make_toy("moons", 400, seed=1)
    steps = explore.explore(model, data, None)
    grid, per_line = explore.grid_lines()
    lines = explore.explore(model, grid, None)
    extent = plots.plane_extent(steps.states)
    colour = np.arctan2(data[:, 1].numpy(), data[:, 0].numpy())
    fig = plots.points_animation(steps.states, colour, lines.states, per_line, extent, list(steps.names))
    assert outside(fig, outliers=0.005) == []
    z = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    replay = plane_figure([plane_view(model, z, s, s / 10) for s in (10, 20)], data.numpy())
    assert outside(replay, outliers=0.02) == []


def test_the_samples_replay_keeps_plotlys_fit_of_its_pictures(tmp_path):
    """The Train page's replay of sample pictures: an image trace given by its source has no x or y values, so a
    range made from them ([-0.04, 1.04]) showed one grey pixel of the picture; its axes keep plotly's own fit."""
    from PIL import Image

    from app.learning import Frame
    from app.train_plots import samples_figure

    frames = []
    for k in range(3):
        path = tmp_path / f"epoch_{k + 1:03d}.png"
        Image.fromarray(np.full((30, 40), 60 * k, np.uint8), mode="L").save(path)
        frames.append(Frame(path, float(k + 1), 10 * (k + 1), True))
    layout = samples_figure(frames).to_plotly_json()["layout"]
    for name in ("xaxis", "yaxis"):
        assert layout[name].get("range") is None and layout[name].get("autorange") is not False, layout[name]
