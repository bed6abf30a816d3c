"""The figure of the flow as a classifier (`flow.classes.ClassVerdict`), drawn from its numbers (no model calls)."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

ANSWER, OTHER, COST = "#2a6fdb", "#9db7e8", "#e76f51"


def verdict_figure(probabilities: Tensor, bits: Tensor, answer: int, height: int = 260) -> go.Figure:
    """Two bar charts over the classes, side by side: p(y | x) (the answer in the strong colour) and how many more
    bits per pixel x costs under each class than under the answer (0 for the answer: the bits/dim differences are
    what Bayes' rule turns into the probabilities, D ln 2 nats per bit per pixel)."""
    classes = [str(k) for k in range(len(probabilities))]
    extra = (bits - bits[answer]).tolist()
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=["p(y | x): which class?", "extra bits/dim under each class"])
    colours = [ANSWER if k == answer else OTHER for k in range(len(classes))]
    fig.add_trace(go.Bar(x=classes, y=probabilities.tolist(), marker_color=colours,
                         text=[f"{p:.2f}" if p >= 0.005 else "" for p in probabilities.tolist()], textposition="outside",
                         hovertemplate="class %{x}: p = %{y:.4f}<extra></extra>"), 1, 1)
    fig.add_trace(go.Bar(x=classes, y=extra, marker_color=[ANSWER if k == answer else COST for k in range(len(classes))],
                         customdata=bits.tolist(),
                         hovertemplate="class %{x}: %{customdata:.4f} bits/dim (+%{y:.4f})<extra></extra>"), 1, 2)
    fig.update_yaxes(range=[0, 1.15], tickformat=".0%", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", title={"text": "bits/dim", "standoff": 4}, row=1, col=2)
    fig.update_xaxes(type="category", title={"text": "class y", "standoff": 2})
    fig.update_annotations(font={"size": 13})
    fig.update_layout(height=height, showlegend=False, margin={"l": 10, "r": 10, "t": 28, "b": 10})
    return fig
