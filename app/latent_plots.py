"""The Latent Playground's pictures of decoded frames (`flow.latent`): a hoverable plotly grid, PNG and GIF."""
from __future__ import annotations

import io
import re
from collections.abc import Sequence

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
from PIL import Image
from torch import Tensor

from flow.viz import PAD, image_grid

MIN_HEIGHT = 40  # px: a long strip's frames stay big enough to see


def export_name(what: str, *details: str, ext: str) -> str:
    """A download's file name that says what it shows: "interpolation_realnvp-mnist_3-0_to_8-0_slerp.png".
    Each detail is cut down to letters, digits, '.', '-' and '+' (a run's name or an upload's could hold
    anything), and empty details are left out."""
    parts = [re.sub(r"-+", "-", re.sub(r"\.\.+", "", re.sub(r"[^A-Za-z0-9.+-]+", "-", d))).strip("-.")
             for d in (what, *details)]  # no "..": a name, never a path
    return "_".join(p for p in parts if p) + "." + ext


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def grid_figure(frames: Tensor, nrow: int, labels: Sequence[str], width: int = 900) -> go.Figure:
    """A grid of frames as one plotly picture; hovering a frame shows its label (e.g. bits/dim).
    An invisible marker sits on each frame's centre and the nearest one answers the hover. `width`: about the
    width it is drawn at, in px; its height follows the grid's shape, so no blank band pads a strip."""
    n, _, h, w = frames.shape
    grid = np.asarray(image_grid(frames, nrow=nrow))
    fig = px.imshow(grid, binary_string=True)
    fig.update_traces(hoverinfo="skip", hovertemplate=None)
    idx = np.arange(n)
    fig.add_trace(go.Scatter(
        x=PAD + (idx % nrow) * (w + PAD) + (w - 1) / 2, y=PAD + (idx // nrow) * (h + PAD) + (h - 1) / 2,
        mode="markers", marker={"opacity": 0, "size": 1}, hovertext=list(labels), hoverinfo="text",
        showlegend=False))
    gh, gw = grid.shape
    fig.update_layout(hoverdistance=-1, height=max(MIN_HEIGHT, width * gh // gw),
                      margin={"l": 0, "r": 0, "t": 0, "b": 0})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def bits_figure(t: Tensor, bits: Tensor, test_bpd: float | None, height: int = 260, noun: str = "digit") -> go.Figure:
    """The bits/dim of each frame of a path against t, with the model's test-set average as a dotted line; `noun`
    names the two ends (a digit, an image)."""
    fig = px.line(x=t, y=bits, markers=True, labels={"x": f"t (0 = first {noun}, 1 = second)", "y": "bits/dim"})
    if test_bpd is not None:
        fig.add_hline(test_bpd, line_dash="dot", annotation_text=f"test-set average {test_bpd:.2f}")
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 10, "b": 0})
    return fig


def png_of(frames: Tensor, nrow: int, scale: int = 4) -> bytes:
    """A grid or strip of frames as PNG bytes, pixels enlarged `scale` times."""
    return png_bytes(image_grid(frames, nrow=nrow, scale=scale))


def gif_of(frames: Tensor, ms_per_frame: int = 120, scale: int = 6, boomerang: bool = True) -> bytes:
    """An animated GIF of the frames (looping; with boomerang it plays back and forth)."""
    arr = (frames.detach().cpu().clamp(0, 1)[:, 0].numpy() * 255).round().astype(np.uint8)
    order = list(range(len(arr))) + (list(range(len(arr) - 2, 0, -1)) if boomerang else [])
    h, w = arr.shape[1:]
    images = [Image.fromarray(arr[i]).resize((w * scale, h * scale), Image.NEAREST) for i in order]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)
    return buf.getvalue()


def plane_walk_figure(base: go.Figure, walk: dict[str, Tensor], samples: Tensor, height: int = 460) -> go.Figure:
    """A 2-D model's plane (`base`: the learned density and the data, `explore_plots.density_figure`) with
    samples, the straight line between two data points and the decoded latent walk between them
    (`flow.latent.plane_walk`), each point of the walk hoverable with its log p(x)."""
    fig = go.Figure(base)
    fig.add_scatter(x=samples[:, 0].numpy(), y=samples[:, 1].numpy(), mode="markers", name="samples",
                    marker={"color": "#f58518", "size": 4, "opacity": 0.8}, hoverinfo="skip")
    for key, name, style in (("line", "straight line in x", {"color": "#c7c7c7", "dash": "dot", "width": 2}),
                             ("path", "latent walk, decoded", {"color": "#e45756", "width": 3})):
        points, log_p = walk[key].numpy(), walk[f"{key}_log_p"].numpy()
        fig.add_scatter(x=points[:, 0], y=points[:, 1], mode="lines+markers", name=name, line=style,
                        marker={"size": 6}, customdata=log_p,
                        hovertemplate=f"{name}: log p = %{{customdata:.2f}} nats<extra></extra>")
    fig.update_layout(height=height, showlegend=True,
                      legend={"orientation": "h", "yanchor": "top", "y": -0.06, "x": 0, "bgcolor": "rgba(0,0,0,0)"},
                      title={"text": "the plane: density, data, samples and the walk"})
    return fig
