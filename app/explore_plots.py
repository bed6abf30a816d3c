"""The Layer Explorer's plotly figures, drawn from the arrays of `flow.explore` (no model calls here)."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
import torch
from PIL import Image

from app.animation import animate
from flow.explore import Decomposition, Steps, histogram
from flow.viz import image_grid

VALUES = "RdBu_r"  # diverging, for signed values (logits, s, t, z, changes): 0 is white, the sign reads at a glance
PIXELS = {"colorscale": "gray", "cmin": 0.0, "cmax": 1.0}  # the image u in [0, 1]: white ink on black, as MNIST
HIGHLIGHT = "#f5a800"
BAR_COLOURS = {True: "#2a9d8f", False: "#e76f51"}  # raises log p / lowers it
TOTAL = "#555555"
CHANNELS = "Turbo"


def _bound(*arrays: np.ndarray) -> float:
    """The symmetric colour range that holds every finite value (at least 1e-6)."""
    finite = [np.abs(a[np.isfinite(a)]) for a in arrays]
    return max([1e-6] + [float(f.max()) for f in finite if f.size])


def _panels(panels: list[dict], colouraxes: dict[str, dict], cols: int | None = None,
            size: int = 230) -> go.Figure:
    """Square heatmaps in a grid of `cols` columns, each with its own axes; panels on one colour axis
    share its scale. NaN (dimensions the block does not see) is drawn grey."""
    cols = cols or len(panels)
    rows = math.ceil(len(panels) / cols)
    gap, title = 0.02, 26 / (rows * size)  # title: the height of a panel's title line, as a fraction
    width, height = (1 - gap * (cols - 1)) / cols, (1 - gap * (rows - 1)) / rows
    layout: dict = {"height": rows * size, "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "annotations": []}
    traces = []
    for k, p in enumerate(panels):
        ax = "" if k == 0 else str(k + 1)
        r, c = divmod(k, cols)
        x0, top = c * (width + gap), 1 - r * (height + gap)
        layout[f"xaxis{ax}"] = {"domain": [x0, x0 + width], "visible": False, "constrain": "domain"}
        layout[f"yaxis{ax}"] = {"domain": [top - height, top - title], "autorange": "reversed", "visible": False,
                                "scaleanchor": f"x{ax}", "constrain": "domain"}
        layout["annotations"].append({"text": p["title"], "x": x0 + width / 2, "y": top - title, "xref": "paper",
                                      "yref": "paper", "yanchor": "bottom", "showarrow": False,
                                      "font": {"size": 13}})
        heat = {"z": p["z"], "coloraxis": p["axis"], "xaxis": f"x{ax}", "yaxis": f"y{ax}",
                "hovertemplate": p.get("hover", "row %{y}, col %{x}: %{z:.3f}<extra></extra>")}
        if "customdata" in p:
            heat["customdata"] = p["customdata"]
        traces.append(go.Heatmap(heat))
        missing = np.isnan(p["z"])
        if missing.any():
            traces.append(go.Heatmap(z=np.where(missing, 0.0, np.nan), xaxis=f"x{ax}", yaxis=f"y{ax}",
                                     colorscale=[[0, "#cfcfcf"], [1, "#cfcfcf"]], showscale=False, hoverinfo="skip"))
    layout.update(colouraxes)
    return go.Figure(traces, layout)


def _colourbar(title: str, y: float, length: float, **extra) -> dict:
    return {"title": {"text": title, "side": "right"}, "y": y, "len": length, "thickness": 12, **extra}


def _sits(table: np.ndarray, position: bool = True) -> np.ndarray:
    """`Steps.where`'s (H, W, 4) table of where each input pixel's dimension sits, as hover text ("z1 channel 3
    at (5, 2)", or without the position): one string array, which plotly serialises at once (the object array
    took it 5 times as long)."""
    return np.array([f"{p} channel {c}" + (f" at ({r}, {q})" if position else "")
                     for p, c, r, q in table.reshape(-1, 4)]).reshape(table.shape[:2])


def block_figure(steps: Steps, i: int) -> go.Figure:
    """Entry i in the input layout: input, (mask b, s, t,) output, change. Images in [0, 1] are grey;
    signed values (input, t, output and change) share one diverging scale; s has its own, labelled
    with the factor exp(s) it multiplies by."""
    maps = steps.block(i)
    where = _sits(steps.where(i)[1])
    pixels_in = max(i - 1, 0) in steps.pixel_entries
    signed = [maps[k] for k in ("output", "t") if k in maps] + ([] if pixels_in else [maps["input"]])
    m = _bound(maps["change"], *signed)
    hover = "input pixel (%{y}, %{x}): %{z:.3f}<br>now %{customdata}<extra></extra>"
    axes = {"coloraxis": {"colorscale": VALUES, "cmin": -m, "cmax": m,
                          "colorbar": _colourbar("value", 0.75, 0.45)},
            "coloraxis4": {**PIXELS, "showscale": False}}
    panels = [{"title": "input u" if pixels_in else "input", "z": maps["input"],
               "axis": "coloraxis4" if pixels_in else "coloraxis"}]
    if steps.kinds[i] == "data":  # nothing has happened yet: only the input to show
        panels[0].update(customdata=where, hover=hover)
        axis = panels[0]["axis"]
        return _panels(panels, {axis: {**axes[axis], "showscale": True, "colorbar": _colourbar("value", 0.5, 0.9)}},
                       size=300)
    panels += [{"title": "output", "z": maps["output"], "axis": "coloraxis", "customdata": where, "hover": hover},
               {"title": "output − input", "z": maps["change"], "axis": "coloraxis"}]
    if not pixels_in:
        axes.pop("coloraxis4")
    if "s" in maps:  # a second row: the coupling's machinery
        sm = _bound(maps["s"])
        ticks = np.linspace(-sm, sm, 5)
        axes["coloraxis2"] = {"colorscale": "PuOr_r", "cmin": -sm, "cmax": sm, "colorbar": _colourbar(
            "s, as the factor exp(s)", 0.22, 0.42, tickvals=ticks, ticktext=[f"×{math.exp(t):.2f}" for t in ticks])}
        axes["coloraxis3"] = {"colorscale": [[0, "#222222"], [1, "#ffffff"]], "cmin": 0, "cmax": 1,
                              "showscale": False}
        panels += [{"title": "mask b", "z": maps["mask"], "axis": "coloraxis3",
                    "hover": "b = %{z:.0f}<extra></extra>"},
                   {"title": "scale s", "z": maps["s"], "axis": "coloraxis2",
                    "hover": "s = %{z:.3f}, exp(s) = %{customdata:.3f}<extra></extra>",
                    "customdata": np.exp(maps["s"])},
                   {"title": "shift t", "z": maps["t"], "axis": "coloraxis"}]
    else:
        axes["coloraxis"]["colorbar"].update(y=0.5, len=0.9)
    return _panels(panels, axes, cols=3)


def layout_figure(steps: Steps, i: int) -> go.Figure:
    """Where the dimensions go at a squeeze or factor-out: the tensors before and after as the network
    holds them (channels tiled), and each input pixel coloured by where its dimension now sits."""
    code, where = steps.where(i)
    tiles = [(f"in: {p.label} {_shape(p.shape)}", t) for p, t in steps.tiles(i - 1)]
    tiles += [(f"out: {p.label} {_shape(p.shape)}", t) for p, t in steps.tiles(i)]
    m = _bound(*(t for _, t in tiles))
    panels = [{"title": title, "z": t, "axis": "coloraxis"} for title, t in tiles]
    axes = {"coloraxis": {"colorscale": VALUES, "cmin": -m, "cmax": m, "colorbar": _colourbar("value", 0.78, 0.55)}}
    hover, sits = "input pixel (%{y}, %{x}) → %{customdata}<extra></extra>", _sits(where)
    if steps.kinds[i] == "factor-out":  # 1: leaves now as the newest z, 0: flows on as h, NaN: left earlier
        label, newest = where[..., 0], steps.parts[i][-2].label
        leaves = np.where(label == newest, 1.0, np.where(label == "h", 0.0, np.nan))
        panels.append({"title": f"orange: {newest}, blue: h", "z": leaves, "axis": "coloraxis2",
                       "customdata": sits, "hover": hover})
        axes["coloraxis2"] = {"colorscale": [[0, "#4c78a8"], [1, "#f58518"]], "cmin": 0, "cmax": 1,
                              "showscale": False}
    else:
        panels.append({"title": "channel of each pixel", "z": code, "axis": "coloraxis2", "customdata": sits,
                       "hover": hover})
        axes["coloraxis2"] = {"colorscale": CHANNELS, "colorbar": _colourbar("channel", 0.2, 0.4)}
    return _panels(panels, axes, size=200)


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def _waterfall(dec: Decomposition, units: str) -> tuple[list[tuple[str, float]], np.ndarray, np.ndarray]:
    """The decomposition's terms (name, value) in `units`, their values, and where each term's bar starts: the
    sum of the terms before it, so that the bars climb to the total."""
    terms = dec.terms(units)
    values = np.array([v for _, v in terms])
    return terms, values, np.concatenate([[0.0], np.cumsum(values)[:-1]])


def decomposition_figure(dec: Decomposition, units: str, highlight: int | None) -> go.Figure:
    """A waterfall: each term moves the running total; the last bar is log p(x) (or bits/dim).
    `highlight` is the index of a block in `dec.names` (the slider's block), or None."""
    terms, values, base = _waterfall(dec, units)
    offset = 1 if units != "nats" and dec.images else 0  # the 8-bit scale term comes first in bits/dim
    total = dec.log_prob if units == "nats" else dec.bits_per_dim
    lowers_bpd = units != "nats"  # in bits/dim a positive term is bad (a longer code)
    colours = [BAR_COLOURS[(v >= 0) != lowers_bpd] for v in values]
    lines = ["rgba(0,0,0,0)"] * len(terms)
    if highlight is not None:
        lines[highlight + offset] = HIGHLIGHT
        colours[highlight + offset] = HIGHLIGHT
    names = [n.split(" (")[0] for n, _ in terms]  # "coupling 3": the mask kind would not fit under a bar
    total_name = "log p(x)" if units == "nats" else "bits/dim"
    unit = "nats" if units == "nats" else "bits/dim"
    better = "raises log p (shorter code)" if units == "nats" else "lowers bits/dim (shorter code)"
    worse = "lowers log p (longer code)" if units == "nats" else "raises bits/dim (longer code)"
    key = [(better, BAR_COLOURS[True]), (worse, BAR_COLOURS[False]), ("this block", HIGHLIGHT),
           ("total", TOTAL)]
    legend = [go.Bar(x=[names[0]], y=[None], name=label, marker_color=colour, hoverinfo="skip")
              for label, colour in key]  # empty bars: the colours' key, nothing drawn
    return go.Figure([
        go.Bar(x=names, y=values, base=base, marker={"color": colours, "line": {"color": lines, "width": 3}},
               hovertemplate="%{x}: %{y:+.3f} " + unit + "<extra></extra>", showlegend=False),
        go.Bar(x=[total_name], y=[total], marker_color=TOTAL, showlegend=False,
               hovertemplate=total_name + " = %{y:.3f}<extra></extra>"),
        *legend,
    ], {"height": 380, "margin": {"l": 0, "r": 0, "t": 10, "b": 0}, "barmode": "overlay",
        "yaxis": {"title": {"text": unit}, "automargin": True},
        "xaxis": {"tickangle": -50, "tickfont": {"size": 12}, "automargin": True}, "bargap": 0.15,
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0, "font": {"size": 13}}})


def ks_figure(steps: Steps, i: int, noise_level: float | None = None) -> go.Figure:
    """One number per block: the KS distance to N(0, 1), falling as the representation gets Gaussian;
    a dotted line at `noise_level`, the distance a true Gaussian sample stays below."""
    x = list(range(len(steps)))
    fig = go.Figure([
        go.Scatter(x=x, y=steps.ks, mode="lines+markers", customdata=steps.names, line={"color": "#7aa6c2"},
                   hovertemplate="%{customdata}: KS %{y:.3f}<extra></extra>", showlegend=False),
        go.Scatter(x=[i], y=[steps.ks[i]], mode="markers", marker={"color": HIGHLIGHT, "size": 14},
                   hoverinfo="skip", showlegend=False),
    ], {"height": 280, "margin": {"l": 0, "r": 0, "t": 30, "b": 0},
        "yaxis": {"rangemode": "tozero", "automargin": True},
        "title": {"text": "KS distance to N(0, 1)", "font": {"size": 13}},
        "xaxis": {"title": {"text": "block (slider position)"}, "automargin": True}})
    if noise_level is not None:
        fig.add_hline(noise_level, line_dash="dot", line_color="#222222",
                      annotation_text=f"sampling noise ≈ {noise_level:.2f}", annotation_position="top left")
    return fig


def _state(steps: Steps, i: int) -> tuple[dict, dict]:
    """The generative state at step i in the input layout (its heat map's values and hover) and its colour
    axis: pixels in grey, other values on their own diverging scale."""
    z = steps.pixels(i)
    m = _bound(z)
    scale = PIXELS if i in steps.pixel_entries else {"colorscale": VALUES, "cmin": -m, "cmax": m}
    heat = {"z": z, "customdata": _sits(steps.where(i)[1], position=False)}
    return heat, {**scale, "colorbar": _colourbar("value", 0.5, 0.9)}


def state_figure(steps: Steps, i: int) -> go.Figure:
    """The generative state at step i, with hover: where each value sits."""
    heat, axis = _state(steps, i)
    return _panels([{"title": steps.names[i], **heat, "axis": "coloraxis",
                     "hover": "pixel (%{y}, %{x}): %{z:.3f}<br>%{customdata}<extra></extra>"}],
                   {"coloraxis": axis}, size=320)


FILM = 10  # pictures at most in the generation filmstrip: about 80 px each across a 1280-px page, legible far off


def film_steps(n: int, most: int = FILM) -> list[int]:
    """Which of a trace's n steps the filmstrip shows: the first and the last and, between, steps evenly spaced,
    `most` in all (every step when there are no more)."""
    return sorted({round(k) for k in np.linspace(0, n - 1, min(n, most))})


def filmstrip(steps: Steps, scale: int = 3, most: int = FILM) -> tuple[Image.Image, list[int]]:
    """The `film_steps` of a trace as grayscale pictures in a row (each stretched to its own range), and which
    steps they are."""
    shown = film_steps(len(steps), most)
    pics = torch.from_numpy(np.stack([steps.pixels(i) for i in shown]))[:, None]
    lo = pics.amin((1, 2, 3), keepdim=True)
    hi = pics.amax((1, 2, 3), keepdim=True)
    return image_grid((pics - lo) / (hi - lo).clamp_min(1e-6), nrow=len(shown), scale=scale), shown


# ----- 2-D models ------------------------------------------------------------------------------------------
def points_figure(points: np.ndarray, colour: np.ndarray, grid: np.ndarray, per_line: int, extent: float,
                  title: str) -> go.Figure:
    """Points (coloured by where they started) and the grid lines, as they are after some block."""
    lines = grid.reshape(-1, per_line, 2)
    gap = np.full((len(lines), 1, 2), np.nan)
    path = np.concatenate([lines, gap], 1).reshape(-1, 2)
    return go.Figure([
        go.Scattergl(x=path[:, 0], y=path[:, 1], mode="lines", line={"color": "rgba(80,80,80,0.45)", "width": 1},
                     hoverinfo="skip", showlegend=False),
        go.Scattergl(x=points[:, 0], y=points[:, 1], mode="markers", showlegend=False, hoverinfo="skip",
                     marker={"color": colour, "colorscale": "HSV", "cmin": -math.pi, "cmax": math.pi, "size": 4}),
    ], {"height": 460, "margin": {"l": 0, "r": 0, "t": 30, "b": 0}, "title": {"text": title, "font": {"size": 13}},
        "xaxis": {"range": [-extent, extent], "zeroline": False},
        "yaxis": {"range": [-extent, extent], "scaleanchor": "x", "zeroline": False}})


def plane_extent(states: np.ndarray, share: float = 99.5) -> float:
    """The half-width of a square plane, in whole units, that holds `share` % of the points of every state
    (S, N, 2) with half a unit to spare: the rare far point of one block does not shrink every frame."""
    reach = np.abs(np.asarray(states)).max(-1)  # (S, N): how far out each point is, along the farther axis
    return float(np.ceil(np.percentile(reach, share, axis=1).max() + 0.5))


def density_figure(ticks: np.ndarray, dens: np.ndarray, data: np.ndarray) -> go.Figure:
    """The learned density p(x) as a heat map, with a sample of the training data on top."""
    return go.Figure([
        go.Heatmap(x=ticks, y=ticks, z=dens, colorscale="Viridis", colorbar={"title": {"text": "p(x)"}},
                   hovertemplate="x = (%{x:.2f}, %{y:.2f}): p = %{z:.3f}<extra></extra>"),
        go.Scattergl(x=data[:, 0], y=data[:, 1], mode="markers", marker={"color": "white", "size": 2, "opacity": 0.5},
                     hoverinfo="skip", showlegend=False),
    ], {"height": 460, "margin": {"l": 0, "r": 0, "t": 30, "b": 0},
        "title": {"text": "learned density p(x) and the data", "font": {"size": 13}},
        "xaxis": {"range": [ticks[0], ticks[-1]]}, "yaxis": {"scaleanchor": "x", "range": [ticks[0], ticks[-1]]}})


# An animation's title: a bold line and a plain caption line under it, at the top left of the figure. plotly.js
# anchors a two-line title's top about a caption line (15 px) too high, which cut the bold line at the chart's top
# edge (issue 28): the pad makes up for it. TITLED: the top margin that holds both lines and the subplot titles.
TITLE = {"x": 0, "xanchor": "left", "yref": "container", "y": 1, "yanchor": "top", "pad": {"t": 21, "l": 4},
         "font": {"size": 16}}
TITLED = 74


# ----- animations (app.animation): every step sent once, stepped and played by plotly.js in the browser -------
def _frames(figures: list[go.Figure], keys: tuple[str, ...]) -> list[dict]:
    """One frame per figure: its traces and the layout entries `keys` (what differs between steps)."""
    out = []
    for i, f in enumerate(figures):
        d = f.to_dict()
        out.append({"name": str(i), "data": d["data"], "layout": {k: d["layout"][k] for k in keys}})
    return out


def steps_animation(steps: Steps, start: int = 0) -> go.Figure:
    """`state_figure` of every step as one animation (a generative trace: latent to picture). Frames are
    built as dicts: a figure per step took plotly 0.3 s to validate."""
    fig = state_figure(steps, start)
    title = fig.layout.annotations[0].to_plotly_json()
    frames = []
    for i in range(len(steps)):
        heat, axis = _state(steps, i)
        frames.append({"name": str(i), "data": [{"type": "heatmap", **heat}], "traces": [0],
                       "layout": {"annotations": [{**title, "text": steps.names[i]}], "coloraxis": axis}})
    return animate(fig, frames, start, "Step ")


def points_animation(states: np.ndarray, colour: np.ndarray, grids: np.ndarray, per_line: int, extent: float,
                     titles: list[str], start: int = 0) -> go.Figure:
    """`points_figure` after every block as one animation: states (S, N, 2) and grids (S, M, 2)."""
    figures = [points_figure(p, colour, g, per_line, extent, t) for p, g, t in zip(states, grids, titles)]
    return animate(go.Figure(figures[start]), _frames(figures, ("title",)), start, "Block ")


def _signed(values: np.ndarray, scale: str = VALUES) -> dict:
    m = _bound(values)
    return {"colorscale": scale, "cmin": -m, "cmax": m}


def flow_animation(steps: Steps, dec: Decomposition, units: str, captions: list[str], start: int = 0,
                   noise_level: float | None = None) -> go.Figure:
    """The whole forward trace of one digit as one animated figure, a frame per block: the state after the
    block, its scale s and what it changed (input layout), the values against N(0, 1), the KS distance
    block by block and the likelihood's waterfall with the block highlighted. `captions[i]` is a line of
    plain text under frame i's title."""
    terms, values, base = _waterfall(dec, units)
    offset = 1 if units != "nats" and dec.images else 0
    bars = (["8-bit"] if offset else []) + [str(k) for k in range(1, len(steps))] + ["N(z)"]
    fig = make_subplots(rows=2, cols=3, row_heights=[0.56, 0.44], vertical_spacing=0.12, horizontal_spacing=0.06,
                        subplot_titles=["after this block (red +, blue −)", "scale s (orange: ×e^s > 1)",
                                        "output − input", "its values and N(0, 1)", "KS distance to N(0, 1), by block",
                                        "log p(u), nats" if units == "nats" else "bits/dim"])
    better = (values >= 0) != (units != "nats")
    total = dec.log_prob if units == "nats" else dec.bits_per_dim
    unit = "nats" if units == "nats" else "bits/dim"
    centres = histogram(steps.states[0])[0]
    xs = np.linspace(-5, 5, 201)

    def maps(i: int) -> list[np.ndarray]:
        block = steps.block(i)
        return [block["output"], block.get("s", np.full(steps.image_shape, np.nan, np.float32)), block["change"]]

    def dynamic(i: int) -> list[dict]:
        state, s, change = maps(i)
        colours = [BAR_COLOURS[b] for b in better]
        if i > 0:
            colours[i - 1 + offset] = HIGHLIGHT
        hover = "row %{y}, col %{x}: %{z:.3f}<extra></extra>"
        return [{"type": "heatmap", "z": state, "coloraxis": "coloraxis", "hovertemplate": hover},
                {"type": "heatmap", "z": s, "coloraxis": "coloraxis2", "hovertemplate": "s = %{z:.3f}<extra></extra>"},
                {"type": "heatmap", "z": change, "coloraxis": "coloraxis3", "hovertemplate": hover},
                {"type": "bar", "x": centres, "y": histogram(steps.states[i])[1], "marker": {"color": "#7aa6c2"},
                 "hoverinfo": "skip"},
                {"type": "scatter", "x": [i], "y": [steps.ks[i]], "mode": "markers",
                 "marker": {"color": HIGHLIGHT, "size": 12}, "hoverinfo": "skip"},
                {"type": "bar", "x": bars, "y": values, "base": base, "marker": {"color": colours},
                 "customdata": [n for n, _ in terms], "hovertemplate": "%{customdata}: %{y:+.3f} " + unit + "<extra></extra>"}]

    def look(i: int) -> dict:
        state, s, change = maps(i)
        pixels = PIXELS if i in steps.pixel_entries else _signed(state)
        name = f"<b>{i}. {steps.names[i]}</b>" + (f" · log-det {steps.logdets[i]:+.1f} nats" if i else "")
        return {"title": {"text": f"{name} · KS {steps.ks[i]:.3f}<br><span style='font-size:12px;font-weight:normal'>"
                                  f"{captions[i]}</span>"},
                "coloraxis": {**pixels, "showscale": False},
                "coloraxis2": {**_signed(s, "PuOr_r"), "showscale": False},
                "coloraxis3": {**_signed(change), "showscale": False}}

    cells = [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    first = dynamic(start)
    for trace, cell in zip(first, [*cells[:5], cells[5]]):
        fig.add_trace(trace, *cell)
    fig.add_trace(go.Scatter(x=xs, y=np.exp(-xs ** 2 / 2) / math.sqrt(2 * math.pi), mode="lines",
                             line={"color": "#222222", "width": 1.5}, hoverinfo="skip"), 2, 1)
    fig.add_trace(go.Scatter(x=list(range(len(steps))), y=steps.ks, mode="lines", line={"color": "#7aa6c2"},
                             customdata=steps.names, hovertemplate="%{x}. %{customdata}: KS %{y:.3f}<extra></extra>"),
                  2, 2)
    fig.add_trace(go.Bar(x=["total"], y=[total], marker_color=TOTAL,
                         hovertemplate=f"{'log p(u)' if units == 'nats' else 'bits/dim'} = %{{y:.3f}}<extra></extra>"),
                  2, 3)
    if noise_level is not None:
        fig.add_hline(noise_level, line_dash="dot", line_color="#222222", row=2, col=2)
    for k in (1, 2, 3):
        fig.update_xaxes(visible=False, constrain="domain", row=1, col=k)
        fig.update_yaxes(visible=False, autorange="reversed", scaleanchor=f"x{'' if k == 1 else k}",
                         constrain="domain", row=1, col=k)
    fig.update_xaxes(range=[-5, 5], row=2, col=1)
    fig.update_yaxes(rangemode="tozero", row=2, col=2)
    fig.update_xaxes(type="category", nticks=7, tickfont={"size": 12}, tickangle=0, row=2, col=3)
    fig.update_xaxes(tickfont={"size": 12}, row=2)
    fig.update_yaxes(tickfont={"size": 12}, row=2)
    fig.update_annotations(font={"size": 13})
    fig.update_layout(look(start), height=500, showlegend=False, barmode="overlay", bargap=0.1,
                      margin={"l": 10, "r": 10, "t": TITLED, "b": 10}, title=TITLE)
    frames = [{"name": str(i), "data": dynamic(i), "traces": list(range(6)), "layout": look(i)} for i in range(len(steps))]
    return animate(fig, frames, start, "Block ")


# ----- two models side by side ------------------------------------------------------------------------------
FRACTIONS = np.linspace(0.0, 1.0, 21)  # the comparison's steps: 0 %, 5 %, ..., 100 % of each flow


def at_fraction(n: int, fraction: float) -> int:
    """The entry of an n-entry trace at `fraction` of the way through it (0: the input, 1: the last block)."""
    return round(fraction * (n - 1))


def compare_animation(sides: list[tuple[str, Steps, Decomposition]], start: int = 0) -> go.Figure:
    """Two traces of one digit, one column each (`sides`: (name, forward Steps, its Decomposition)), stepped
    together at the same fraction of each flow: the state in the input layout, and the bits/dim waterfall
    with that block highlighted. A frame per fraction in `FRACTIONS`, played in the browser."""
    fig = make_subplots(rows=2, cols=2, row_heights=[0.55, 0.45], vertical_spacing=0.1, horizontal_spacing=0.08,
                        subplot_titles=[name for name, _, _ in sides] + [
                            f"{dec.bits_per_dim:.3f} bits/dim, term by term" for _, _, dec in sides])
    terms, values, bases = zip(*(_waterfall(dec, "bpd") for _, _, dec in sides))  # per side, the same every frame

    def dynamic(f: float) -> list[dict]:
        traces = []
        for (_, steps, _), side_terms, side_values, base in zip(sides, terms, values, bases):
            i = at_fraction(len(steps), f)
            state = steps.pixels(i)
            scale = PIXELS if i in steps.pixel_entries else _signed(state)
            colours = [BAR_COLOURS[bool(v < 0)] for v in side_values]
            if i > 0:
                colours[i] = HIGHLIGHT  # term 0 is the 8-bit scale; block i's term follows it
            traces += [{"type": "heatmap", "z": state, "colorscale": scale["colorscale"], "zmin": scale["cmin"],
                        "zmax": scale["cmax"], "showscale": False,
                        "hovertemplate": "row %{y}, col %{x}: %{z:.3f}<extra></extra>"},
                       {"type": "bar", "y": side_values, "base": base,
                        "marker": {"color": colours}, "customdata": [n for n, _ in side_terms],
                        "hovertemplate": "%{customdata}: %{y:+.3f} bits/dim<extra></extra>"}]
        return traces

    def look(f: float) -> dict:
        where = [f"{name}: {i}. {steps.names[i]}" for name, steps, _ in sides
                 for i in [at_fraction(len(steps), f)]]
        return {"title": {"text": f"<b>{f:.0%} of the way through each flow</b><br>"
                                  f"<span style='font-size:12px;font-weight:normal'>{' · '.join(where)}</span>"}}

    first = dynamic(FRACTIONS[start])
    for k, trace in enumerate(first):
        fig.add_trace(trace, k % 2 + 1, k // 2 + 1)
    for col in (1, 2):
        fig.update_xaxes(visible=False, constrain="domain", row=1, col=col)
        fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x" if col == 1 else "x2",
                         constrain="domain", row=1, col=col)
        fig.update_yaxes(matches="y3", row=2, col=col)  # one bits/dim scale for both models
    fig.update_annotations(font={"size": 13})
    fig.update_layout(look(FRACTIONS[start]), height=560, showlegend=False, barmode="overlay",
                      margin={"l": 10, "r": 10, "t": TITLED, "b": 10}, title=TITLE)
    frames = [{"name": str(k), "data": dynamic(f), "traces": list(range(4)), "layout": look(f)}
              for k, f in enumerate(FRACTIONS)]
    return animate(fig, frames, start, "", [f"{f:.0%}" for f in FRACTIONS])
