"""The likelihood lab's figures, drawn from the numbers of `flow.lab` (no model calls here)."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

LOW, HIGH = 0.5, 120.0  # bits/dim: the log axis covers every kind (noise reaches about 100)
TEST = "#2a6fdb"
OTHER = "#e76f51"
YOURS = "#f5a800"


def _step_histogram(values: np.ndarray, bins: int = 70) -> tuple[np.ndarray, np.ndarray]:
    """A histogram on a log axis: bins equal in log10, as a step line (x, share of inputs per bin)."""
    edges = np.linspace(math.log10(LOW), math.log10(HIGH), bins + 1)
    counts, _ = np.histogram(np.log10(np.clip(values, LOW, HIGH)), edges)
    return 10 ** ((edges[:-1] + edges[1:]) / 2), counts / len(values)


def kinds_figure(results: dict[str, np.ndarray], titles: dict[str, str], yours: float | None = None) -> go.Figure:
    """One small histogram of bits/dim per kind of input, on a shared log axis, the test digits' median as a
    dotted line through all of them, and `yours` (an input's bits/dim) as an orange line."""
    kinds = list(results)
    median = float(np.median(results[kinds[0]]))
    fig = make_subplots(rows=len(kinds), cols=1, shared_xaxes=True, vertical_spacing=0.035,
                        subplot_titles=[titles[k] for k in kinds])
    for row, kind in enumerate(kinds, 1):
        x, share = _step_histogram(results[kind])
        colour = TEST if row == 1 else OTHER
        fig.add_trace(go.Scatter(x=x, y=share, mode="lines", line={"shape": "hvh", "color": colour, "width": 1.5},
                                 fill="tozeroy", name=kind, hovertemplate=kind + ": %{y:.0%} at %{x:.2f} bits/dim"
                                 "<extra></extra>"), row, 1)
        fig.add_vline(median, line_dash="dot", line_color="#222222", row=row, col=1)
        if yours is not None:
            fig.add_vline(yours, line_color=YOURS, line_width=2, row=row, col=1)
        fig.update_yaxes(showticklabels=False, rangemode="tozero", row=row, col=1)
    fig.update_xaxes(type="log", range=[math.log10(LOW), math.log10(HIGH)])  # every row: the lines are in data units
    fig.update_xaxes(title={"text": "bits/dim (log scale; lower = the model finds it more likely)"}, row=len(kinds),
                     col=1)
    fig.update_annotations(font={"size": 12}, x=0, xanchor="left")
    fig.update_layout(height=78 * len(kinds) + 60, showlegend=False, margin={"l": 10, "r": 10, "t": 24, "b": 10})
    return fig


def box_range(values: list[np.ndarray], band: tuple[float, float]) -> tuple[float, float]:
    """A y-range that shows every box whole and `band`, but not far outliers: from the lowest value to the highest
    upper whisker (Tukey's fence, Q3 + 1.5 IQR, at most the box's largest value), padded by 5 %. One sample at
    10 bits/dim among others at 1 to 2 would otherwise squash every box into a line."""
    fences = [min(float(np.max(v)), q3 + 1.5 * (q3 - q1)) for v in values for q1, q3 in [np.percentile(v, [25, 75])]]
    lo = min(band[0], *(float(np.min(v)) for v in values))
    hi = max(band[1], *fences)
    pad = 0.05 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def temperature_figure(sweep: dict[float, np.ndarray], test: np.ndarray) -> go.Figure:
    """Bits/dim of the samples at each temperature (a box each) against the test digits' 5-95 % band
    and median. The y-axis is linear and cut at `box_range`'s top: samples above it are drawn as ▲ on the top
    edge, their value in the hover and the count under the tick label ("T = 1.5<br>1 ▲ off scale")."""
    lo, mid, hi = np.percentile(test, [5, 50, 95])
    bottom, top = box_range(list(sweep.values()), (lo, hi))
    names = {t: f"T = {t:g}" + (f"<br>{int((b > top).sum())} ▲ off scale" if (b > top).any() else "")
             for t, b in sweep.items()}
    boxes = [go.Box(y=b, x=[names[t]] * len(b), name=names[t], marker_color=OTHER, boxpoints="all", jitter=0.4,
                    pointpos=0, hovertemplate="%{y:.3f} bits/dim<extra></extra>", showlegend=False)
             for t, b in sweep.items()]
    off = [(names[t], v) for t, b in sweep.items() for v in b[b > top]]
    marks = [go.Scatter(x=[n for n, _ in off], y=[top] * len(off), customdata=[v for _, v in off], mode="markers",
                        marker={"symbol": "triangle-up", "size": 11, "color": OTHER}, cliponaxis=False,
                        name="off scale (above the top)", hovertemplate="%{customdata:.3f} bits/dim, off scale"
                        "<extra></extra>")] if off else []
    key = [go.Scatter(x=[None], y=[None], mode="lines", line={"color": TEST, "width": 10}, opacity=0.25,
                      name="test digits, 5-95 %"),
           go.Scatter(x=[None], y=[None], mode="lines", line={"color": TEST, "dash": "dot"},
                      name=f"median test digit {mid:.2f}")]  # the band's and the line's key, in the legend
    fig = go.Figure([*boxes, *marks, *key])
    fig.add_hrect(lo, hi, fillcolor=TEST, opacity=0.12, line_width=0, layer="below")
    fig.add_hline(mid, line_dash="dot", line_color=TEST)
    fig.update_layout(height=400, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "font": {"size": 13}},
                      xaxis={"tickfont": {"size": 13}, "automargin": True},
                      yaxis={"title": {"text": "bits/dim of the 8-bit sample"}, "automargin": True,
                             "range": [bottom, top], "autorange": False, "tickfont": {"size": 13}})
    return fig
