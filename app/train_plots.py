"""Plotly figures of training: the curves (negative log-likelihood against step or epoch), the samples and the
2-D plane over training, the per-block view, and the GIF of the samples."""
from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from app.animation import animate
from app.explore_plots import density_figure, points_figure
from app.jobs import bpd_to_nats, data_dim
from app.learning import EXTENT, BlockHistory, Frame, PlaneView
from flow.explore import Decomposition

UNITS = ("bits/dim", "nats")
Y_TITLE = {"bits/dim": "NLL (bits/dim)", "nats": "NLL (nats per example)"}


def nll_columns(metrics: pd.DataFrame, dim: int | None, unit: str) -> pd.DataFrame:
    """train/test NLL in the chosen unit: bits/dim as logged, or nats = bits/dim * D * ln 2 (none where D, the
    size of one example, is unknown)."""
    out = metrics.copy()
    if unit == "nats":
        for col in ("train_bpd", "test_bpd"):
            out[col] = bpd_to_nats(out[col], dim) if dim else float("nan")
    return out


def nll_figure(runs: dict[str, tuple[pd.DataFrame, int | None]], unit: str = "bits/dim", x: str = "step",
               height: int = 360) -> go.Figure:
    """NLL curves of runs ({name: (metrics, D of one example)}): train (a point every few steps) and test (a point each
    epoch). One run: train and test in two colours; several: one colour a run, train dotted."""
    fig, single, palette = go.Figure(), len(runs) == 1, qualitative.Plotly
    for i, (name, (metrics, dim)) in enumerate(runs.items()):
        m = nll_columns(metrics, dim, unit)
        train, test = m[m.kind == "step"], m[m.kind == "epoch"]
        prefix = "" if single else f"{name} "
        color = palette[i % len(palette)]
        fig.add_scatter(x=train[x], y=train.train_bpd, mode="lines", name=prefix + "train", legendgroup=name,
                        line=dict(color=color, dash=None if single else "dot"), opacity=1.0 if single else 0.6)
        fig.add_scatter(x=test[x], y=test.test_bpd, mode="lines+markers", name=prefix + "test", legendgroup=name,
                        line=dict(color=palette[1] if single else color))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=x, yaxis_title=Y_TITLE[unit],
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0), uirevision="keep-zoom",
                      hovermode="x unified")
    return fig


# ----- watching a run learn (app.learning) -------------------------------------------------------------------
def samples_figure(frames: list[Frame]) -> go.Figure:
    """A run's sample pictures (the same latents decoded after each epoch or snapshot) as one picture with a
    slider and play/pause over them, opening on the latest."""
    sources = [_data_uri(f.path.read_bytes()) for f in frames]
    labels = [f.label for f in frames]
    fig = go.Figure([go.Image(source=sources[-1], hoverinfo="skip")])
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    fig.update_layout(height=360, margin=dict(l=0, r=0, t=0, b=0), dragmode=False)
    frames = [{"name": str(k), "data": [{"type": "image", "source": s}]} for k, s in enumerate(sources)]
    return animate(fig, frames, len(frames) - 1, "samples after ", labels)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def samples_gif(frames: list[Frame], ms: int = 500, scale: int = 2) -> bytes:
    """An animated GIF of the sample pictures, each with its label (epoch, step) in a band above it; the
    last picture is held three times as long."""
    band = 14 * scale
    images = []
    for f in frames:
        with Image.open(f.path) as img:
            pic = img.convert("L")
        pic = pic.resize((pic.width * scale, pic.height * scale), Image.NEAREST)
        page = Image.new("L", (pic.width, pic.height + band), 255)
        page.paste(pic, (0, band))
        ImageDraw.Draw(page).text((4, 2), f.label, fill=0, font=ImageFont.load_default(size=10 * scale))
        images.append(page)
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=[ms] * (len(images) - 1) + [3 * ms])
    return buf.getvalue()


def _plane_traces(view: PlaneView, data: np.ndarray) -> list:
    """The traces of `density_figure` (heat map, data) then of `points_figure` (grid lines, samples) moved to
    the second axes."""
    density = density_figure(view.ticks, view.density, data).data
    points = points_figure(view.samples, view.colour, view.grid, view.per_line, EXTENT, "").data
    for t in density:
        if isinstance(t, go.Heatmap):
            t.update(colorbar={"x": 0.45, "len": 0.9, "thickness": 12}, zsmooth="best")
    return [*density, *(t.update(xaxis="x2", yaxis="y2") for t in points)]


PLANE_TITLES = ("learned density p(x)<br>and the data", "samples and the z-grid,<br>pushed through the flow")


def plane_figure(views: list[PlaneView], data: np.ndarray) -> go.Figure:
    """A 2-D run's plane, left the learned density with the data, right samples from the run's fixed latents
    and the regular z-grid carried into data space. One view: a still of that step; several: frames (the
    heat map, grid and samples change; the data stays) with a slider and play/pause, replayed in the browser."""
    traces = _plane_traces(views[-1], data)
    moving = [i for i, t in enumerate(traces) if i != 1]  # all but the data
    labels = [f"step {v.step} · epoch {v.epoch:.2f}" for v in views]
    frames = [{"name": str(k), "traces": moving,
               "data": [t.to_plotly_json() for i, t in enumerate(_plane_traces(v, data)) if i != 1]}
              for k, v in enumerate(views)] if len(views) > 1 else None
    axis = {"range": [-EXTENT, EXTENT], "zeroline": False, "constrain": "domain"}
    fig = go.Figure(traces, frames=frames, layout={  # one layout dict: validated once (a live refresh builds it)
        "height": 440, "margin": {"l": 0, "r": 0, "t": 50, "b": 0},
        "showlegend": False, "uirevision": "plane",
        "xaxis": {**axis, "domain": [0, 0.43]}, "yaxis": {**axis, "scaleanchor": "x"},
        "xaxis2": {**axis, "domain": [0.55, 1], "anchor": "y2"},
        "yaxis2": {**axis, "scaleanchor": "x2", "anchor": "x2"},
        "annotations": [{"text": text, "x": x, "y": 1.0, "xref": "paper", "yref": "paper", "yanchor": "bottom",
                         "showarrow": False, "font": {"size": 13}} for text, x in zip(PLANE_TITLES, (0.2, 0.775))]})
    return animate(fig, frames, len(frames) - 1, "", labels) if frames else fig


def _bits_per_dim(logdets: np.ndarray, data: str) -> list[float]:
    """Each block's log-det (nats per example) as its term of bits/dim (`Decomposition.terms`)."""
    dec = Decomposition(names=[""] * len(logdets), logdets=logdets, prior=0.0, dim=data_dim(data), images=False,
                        bits_per_dim=0.0)
    return [v for _, v in dec.terms("bits/dim")[:-1]]  # the last term is the prior's


def block_figure(history: BlockHistory, data: str) -> go.Figure:
    """Two heat maps over training (x: step): each block's log-det as its share of bits/dim (negative: it
    shortens the code), and each coupling's saturation, the share of its scales with |tanh| above 0.95."""
    bits = np.array([_bits_per_dim(row, data) for row in history.logdet])
    m = float(np.abs(bits).max()) or 1.0
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.12, subplot_titles=(
        "each block's log-det, in bits/dim", "coupling saturation: share of |tanh| > 0.95"))
    fig.add_heatmap(x=history.steps, y=history.names, z=bits.T, colorscale="RdBu_r", zmin=-m, zmax=m, row=1, col=1,
                    colorbar={"x": 0.445, "thickness": 12, "title": {"text": "bits/dim"}},
                    hovertemplate="%{y} at step %{x}: %{z:+.3f} bits/dim<extra></extra>")
    fig.add_heatmap(x=history.steps, y=history.names, z=history.saturation.T, colorscale="Reds", zmin=0, zmax=1,
                    row=1, col=2, colorbar={"thickness": 12, "tickformat": ".0%"}, hoverongaps=False,
                    hovertemplate="%{y} at step %{x}: %{z:.1%} saturated<extra></extra>")
    fig.update_yaxes(autorange="reversed", tickfont={"size": 10})
    fig.update_xaxes(title_text="step")
    fig.update_layout(height=max(300, 16 * len(history.names) + 120), margin=dict(l=0, r=0, t=30, b=0))
    return fig


def points_preview_figure(points: np.ndarray, title: str) -> go.Figure:
    """2-D points as a square scatter on the plane view's fixed axes (where the flow will draw them)."""
    axis = {"range": [-EXTENT, EXTENT], "zeroline": False, "constrain": "domain"}
    return go.Figure(go.Scattergl(x=points[:, 0], y=points[:, 1], mode="markers",
                                  marker={"size": 3, "opacity": 0.6}, hoverinfo="skip"),
                     layout={"height": 330, "margin": {"l": 0, "r": 0, "t": 40, "b": 0}, "title": {"text": title},
                             "xaxis": axis, "yaxis": {**axis, "scaleanchor": "x"}, "showlegend": False})
